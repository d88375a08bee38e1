//! What the controller knows about a Rollout's world at one moment: the `Observed` value that
//! the pure `decide` reads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

/// One ReplicaSet owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRs {
    pub name: String,
    /// The pod-template-hash label.
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub created: Option<Timestamp>,
    /// When Sluice may scale it to zero (kept in an annotation on the ReplicaSet).
    pub scale_down_at: Option<Timestamp>,
    /// The first failing pod, if any (fail fast).
    pub failure: Option<PodFailure>,
}

/// Why a pod of a revision cannot run, as a person would want to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFailure {
    pub pod: String,
    pub container: String,
    pub reason: String,
    pub exit_code: Option<i32>,
    pub restarts: i32,
    pub message: String,
}

impl PodFailure {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "pod {} container {}: {}",
            self.pod, self.container, self.reason
        );
        if let Some(code) = self.exit_code {
            s.push_str(&format!(", last exit code {code}"));
        }
        if self.restarts > 0 {
            s.push_str(&format!(", {} restarts", self.restarts));
        }
        if !self.message.is_empty() {
            s.push_str(&format!(": {}", self.message));
        }
        s
    }
}

/// Reasons that mean a container will not come up on its own.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
];

/// The first pod in `pods` that is failing: a fatal waiting reason, an OOM kill, or a crash
/// loop with at least `restart_threshold` restarts.
pub fn diagnose(pods: &[Pod], restart_threshold: i32) -> Option<PodFailure> {
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for c in statuses.into_iter().flatten() {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
            let oom = last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
            let crash = reason == "CrashLoopBackOff" && c.restart_count >= restart_threshold;
            if FATAL_WAITING.contains(&reason.as_str()) || crash || oom {
                return Some(PodFailure {
                    pod: name,
                    container: c.name.clone(),
                    reason: if oom { "OOMKilled".to_string() } else { reason },
                    exit_code: last.map(|t| t.exit_code),
                    restarts: c.restart_count,
                    message: waiting
                        .and_then(|w| w.message.clone())
                        .or_else(|| last.and_then(|t| t.message.clone()))
                        .unwrap_or_default(),
                });
            }
        }
    }
    None
}

/// Everything `decide` needs besides the Rollout and the clock.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The pod template to run: the Rollout's own, or its `workloadRef` Deployment's. `None`
    /// when the referenced Deployment does not exist.
    pub template: Option<PodTemplateSpec>,
    /// The referenced Deployment's name and spec replicas, when `workloadRef` is used.
    pub workload_replicas: Option<i32>,
    pub replica_sets: Vec<ObservedRs>,
    /// Services the Rollout names, with whether each exists.
    pub services: BTreeMap<String, bool>,
}
