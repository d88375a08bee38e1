//! What the controller knows about a Rollout's world at one moment: the `Observed` value that
//! the pure `decide` reads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::analysis::AnalysisKey;
use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};

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
    /// The referenced Deployment's `spec.replicas`, when `workloadRef` is used.
    pub workload_replicas: Option<i32>,
    pub replica_sets: Vec<ObservedRs>,
    /// Services the Rollout names, with whether each exists.
    pub services: BTreeMap<String, bool>,
    /// Each analysis the Rollout declares: the AnalysisRun its templates make, or why they
    /// cannot make one.
    pub analysis: BTreeMap<AnalysisKey, Result<AnalysisRunSpec, String>>,
    /// The AnalysisRuns the Rollout owns.
    pub runs: Vec<ObservedRun>,
    /// Each object the traffic router names, by the Rollout field that names it: whether it
    /// has everything the Rollout needs (`Err` says what is missing).
    pub traffic: BTreeMap<String, Result<(), String>>,
}

/// An AnalysisRun owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRun {
    pub name: String,
    /// The revision it judges (its `rollouts-pod-template-hash` label).
    pub hash: String,
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    /// `spec.terminate` is set: Sluice no longer acts on its verdict.
    pub terminated: bool,
    /// Still taking measurements (not final, or final only through a provider outage).
    pub measuring: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(waiting: Option<(&str, &str)>, last: Option<(&str, i32)>, restarts: i32) -> Pod {
        let mut status = json!({"name": "web", "image": "web:2", "imageID": "", "ready": false, "restartCount": restarts});
        if let Some((reason, message)) = waiting {
            status["state"] = json!({"waiting": {"reason": reason, "message": message}});
        } else {
            status["state"] = json!({"running": {}});
        }
        if let Some((reason, code)) = last {
            status["lastState"] = json!({"terminated": {"reason": reason, "exitCode": code}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc"},
            "status": {"containerStatuses": [status]}
        }))
        .expect("pod")
    }

    #[test]
    fn each_fatal_reason_is_diagnosed_with_its_details() {
        let cases = [
            (
                pod(
                    Some(("CrashLoopBackOff", "back-off 10s")),
                    Some(("Error", 3)),
                    2,
                ),
                Some(("CrashLoopBackOff", Some(3))),
            ),
            (
                pod(
                    Some(("CrashLoopBackOff", "back-off 10s")),
                    Some(("Error", 3)),
                    1,
                ),
                None,
            ),
            (
                pod(
                    Some(("ImagePullBackOff", "Back-off pulling image")),
                    None,
                    0,
                ),
                Some(("ImagePullBackOff", None)),
            ),
            (
                pod(Some(("ErrImagePull", "not found")), None, 0),
                Some(("ErrImagePull", None)),
            ),
            (
                pod(
                    Some(("CreateContainerConfigError", "secret \"db\" not found")),
                    None,
                    0,
                ),
                Some(("CreateContainerConfigError", None)),
            ),
            (
                pod(None, Some(("OOMKilled", 137)), 1),
                Some(("OOMKilled", Some(137))),
            ),
            (pod(None, None, 0), None),
            (pod(Some(("ContainerCreating", "")), None, 0), None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let got = diagnose(&[p], 2).map(|f| (f.reason.clone(), f.exit_code));
            let want = want.map(|(r, c)| (r.to_string(), c));
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn the_diagnosis_reads_like_a_sentence() {
        let f = diagnose(
            &[pod(
                Some(("CrashLoopBackOff", "back-off 10s")),
                Some(("Error", 3)),
                4,
            )],
            2,
        )
        .expect("failure");
        assert_eq!(
            f.describe(),
            "pod web-abc container web: CrashLoopBackOff, last exit code 3, 4 restarts: back-off 10s"
        );
    }
}
