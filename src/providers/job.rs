//! The `job` provider: runs a Kubernetes Job from the metric's template; the Job's success or
//! failure is the measurement. The Job is owned by the AnalysisRun, so it goes with it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, Resource};

use super::{KUBE_READ_TIMEOUT, MeasureContext, Provider, provider_error};
use crate::analysis::judge::Outcome;
use crate::api::analysis::{AnalysisPhase, AnalysisRun, JobMetric, Measurement, Metric};
use crate::api::constants::FIELD_MANAGER_CONTROLLER;
use crate::rollout::hash::dns_label;

/// Label on a Job: the AnalysisRun it measures for.
pub const LABEL_ANALYSIS_RUN: &str = "sluice.dev/analysis-run";
/// Label on a Job: the metric it measures.
pub const LABEL_METRIC: &str = "sluice.dev/metric";
/// How often a running Job is looked at.
pub const JOB_POLL: Duration = Duration::from_secs(2);

pub struct JobProvider;

/// The Job of the `attempt`-th measurement of `metric` (deterministic, so a restarted
/// controller finds the Job it created).
pub fn job_name(run: &str, metric: &str, attempt: i32) -> String {
    dns_label(&[run, metric, &attempt.to_string()])
}

fn later(now: Timestamp) -> Timestamp {
    SignedDuration::try_from(JOB_POLL)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now)
}

impl Provider for JobProvider {
    type Spec = JobMetric;

    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        metric: &Metric,
        spec: &JobMetric,
        resume: Option<&Measurement>,
    ) -> Outcome {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), ctx.namespace);
        let running = resume
            .and_then(|m| m.metadata.as_ref())
            .and_then(|md| md.get("job-name"));
        let name = match running {
            Some(n) => n.clone(),
            None => match start(ctx, &api, &metric.name, spec).await {
                Ok(name) => name,
                Err(outcome) => return outcome,
            },
        };
        look_at(ctx, &api, &name).await
    }
}

/// Creates the Job of this attempt (one already there from before a restart is taken as
/// it is) and returns its name, or the provider error.
async fn start(
    ctx: &MeasureContext<'_>,
    api: &Api<Job>,
    metric: &str,
    spec: &JobMetric,
) -> Result<String, Outcome> {
    let job = build_job(ctx.run, metric, spec, ctx.attempt)
        .map_err(|e| provider_error(e, BTreeMap::new()))?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    match tokio::time::timeout(KUBE_READ_TIMEOUT, api.create(&pp, &job)).await {
        Err(_) => Err(provider_error(
            "creating the Job timed out",
            BTreeMap::new(),
        )),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Ok(name),
        Ok(Err(e)) => Err(provider_error(
            format!("cannot create Job {name:?}: {e}"),
            BTreeMap::new(),
        )),
        Ok(Ok(_)) => Ok(name),
    }
}

/// Reads the Job: its verdict once it has finished, else a look again shortly.
async fn look_at(ctx: &MeasureContext<'_>, api: &Api<Job>, name: &str) -> Outcome {
    let metadata = BTreeMap::from([("job-name".to_string(), name.to_string())]);
    // A failed read is not a verdict and must not lose the Job: look again shortly.
    match tokio::time::timeout(KUBE_READ_TIMEOUT, api.get_opt(name)).await {
        Err(_) => look_again(metadata, ctx.now),
        Ok(Err(e)) => {
            tracing::debug!(job = name, error = %e, "cannot read the Job; looking again");
            look_again(metadata, ctx.now)
        }
        Ok(Ok(None)) => provider_error(format!("Job {name:?} was deleted"), metadata),
        Ok(Ok(Some(job))) => match verdict_of(&job, name, metadata, ctx.now) {
            Outcome::Pending { metadata, .. } => unless_stuck(ctx, &job, name, metadata).await,
            decided => decided,
        },
    }
}

/// A Job still running: an error measurement when its pod cannot start (the controller
/// deletes the Job once the status records it, so that its pod stops trying), else a look
/// again shortly.
async fn unless_stuck(
    ctx: &MeasureContext<'_>,
    job: &Job,
    name: &str,
    metadata: BTreeMap<String, String>,
) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ctx.namespace);
    let lp = ListParams::default().labels(&format!("job-name={name}"));
    let listed = match tokio::time::timeout(KUBE_READ_TIMEOUT, pods.list(&lp)).await {
        Ok(Ok(list)) => list.items,
        _ => return look_again(metadata, ctx.now),
    };
    let age = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(ctx.now.duration_since(t.0)).ok())
        .unwrap_or_default();
    let Some(why) = cannot_start(&listed, age) else {
        return look_again(metadata, ctx.now);
    };
    provider_error(format!("Job {name:?} cannot run: {why}"), metadata)
}

/// Waiting reasons of a container that will not start on its own (the kubelet keeps retrying
/// an image pull, but a retry that succeeds is the next measurement's business).
pub const CANNOT_START: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// How long a Job's pods may stay unstarted (unschedulable, volumes not mounted, no reason
/// given) before the measurement is an error.
pub const JOB_START_LIMIT: Duration = Duration::from_secs(300);

/// Why the Job's pods cannot start, if they cannot: a container (init containers included)
/// waiting for one of the `CANNOT_START` reasons, or, once the Job is `JOB_START_LIMIT` old,
/// no pod that ever started.
pub fn cannot_start(pods: &[Pod], age: Duration) -> Option<String> {
    let live = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    for pod in live.clone() {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let containers = status
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(
                status
                    .and_then(|s| s.container_statuses.as_ref())
                    .into_iter()
                    .flatten(),
            );
        for c in containers {
            let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = w.reason.clone().unwrap_or_default();
            if CANNOT_START.contains(&reason.as_str()) {
                let message = w
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                return Some(format!(
                    "pod {name:?} container {:?} cannot start: {reason}{message}",
                    c.name
                ));
            }
        }
    }
    let started = |p: &Pod| {
        let s = p.status.as_ref();
        matches!(
            s.and_then(|s| s.phase.as_deref()),
            Some("Running" | "Succeeded" | "Failed")
        )
    };
    if age >= JOB_START_LIMIT && !live.clone().any(started) {
        let why = live
            .filter_map(|p| p.status.as_ref()?.conditions.as_ref())
            .flatten()
            .find(|c| c.status == "False" && c.reason.is_some())
            .map(|c| {
                format!(
                    " ({}: {})",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        return Some(format!(
            "no pod started within {}s{why}",
            JOB_START_LIMIT.as_secs()
        ));
    }
    None
}

fn look_again(metadata: BTreeMap<String, String>, now: Timestamp) -> Outcome {
    Outcome::Pending {
        metadata,
        resume_at: later(now),
    }
}

/// What a Job's conditions say: succeeded, failed (with the reason), or still running.
fn verdict_of(
    job: &Job,
    name: &str,
    metadata: BTreeMap<String, String>,
    now: Timestamp,
) -> Outcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let is_true = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Complete").is_some() || is_true("SuccessCriteriaMet").is_some() {
        Outcome::Decided {
            phase: AnalysisPhase::Successful,
            value: Some("true".into()),
            message: None,
            metadata,
        }
    } else if let Some(c) = is_true("Failed") {
        let detail = c
            .message
            .as_ref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Outcome::Decided {
            phase: AnalysisPhase::Failed,
            value: Some("false".into()),
            message: Some(format!(
                "Job {name:?} failed: {}{detail}",
                c.reason.clone().unwrap_or_default(),
            )),
            metadata,
        }
    } else {
        look_again(metadata, now)
    }
}

fn build_job(run: &AnalysisRun, metric: &str, jm: &JobMetric, attempt: i32) -> Result<Job, String> {
    let run_name = run.metadata.name.clone().unwrap_or_default();
    let owner: OwnerReference = run
        .controller_owner_ref(&())
        .ok_or_else(|| "the AnalysisRun has no uid yet".to_string())?;
    let mut labels = jm
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(LABEL_ANALYSIS_RUN.into(), dns_label(&[&run_name]));
    labels.insert(LABEL_METRIC.into(), dns_label(&[metric]));
    let annotations = jm.metadata.as_ref().and_then(|m| m.annotations.clone());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&run_name, metric, attempt)),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(jm.spec.clone()),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    fn pod(name: &str, phase: &str, waiting: Option<(&str, &str)>, init: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {
                "phase": phase,
                "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": "0/3 nodes are available"}],
                (if init { "initContainerStatuses" } else { "containerStatuses" }): [{
                    "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": waiting.map_or(serde_json::json!({"waiting": {}}), |(r, m)|
                        serde_json::json!({"waiting": {"reason": r, "message": m}}))
                }]
            }
        }))
        .expect("a pod")
    }

    // Argo Rollouts: metricproviders/job/job.go Resume after PR #4692 looks at the Job's
    // pods, init containers included, for ErrImagePull, ImagePullBackOff, InvalidImageName.
    #[test]
    fn a_pod_that_cannot_start_is_reported_with_its_reason() {
        let pull = pod(
            "smoke-1-x",
            "Pending",
            Some(("ImagePullBackOff", "Back-off pulling image \"nope\"")),
            false,
        );
        assert_eq!(
            cannot_start(&[pull], Duration::ZERO).as_deref(),
            Some(
                "pod \"smoke-1-x\" container \"c\" cannot start: ImagePullBackOff: \
                 Back-off pulling image \"nope\""
            )
        );
        let init = pod(
            "p",
            "Pending",
            Some(("CreateContainerConfigError", "no secret")),
            true,
        );
        assert!(
            cannot_start(&[init], Duration::ZERO)
                .is_some_and(|w| w.contains("CreateContainerConfigError"))
        );
        // Waiting for another reason: fine until the limit, then an error with the reason.
        let creating = pod("p", "Pending", Some(("ContainerCreating", "")), false);
        assert_eq!(
            cannot_start(std::slice::from_ref(&creating), Duration::from_secs(299)),
            None
        );
        assert_eq!(
            cannot_start(&[creating], JOB_START_LIMIT).as_deref(),
            Some("no pod started within 300s (Unschedulable: 0/3 nodes are available)")
        );
        let running = pod("p", "Running", None, false);
        assert_eq!(cannot_start(&[running], JOB_START_LIMIT * 2), None);
    }

    #[test]
    fn job_names_are_deterministic_labels() {
        assert_eq!(job_name("shop-abc-2", "smoke", 1), "shop-abc-2-smoke-1");
        assert_eq!(
            job_name("shop-abc-2", "smoke", 1),
            job_name("shop-abc-2", "smoke", 1)
        );
        assert_ne!(
            job_name("shop-abc-2", "smoke", 1),
            job_name("shop-abc-2", "smoke", 2)
        );
        assert!(job_name(&"r".repeat(60), "metric", 3).len() <= 63);
    }

    fn job_with(conditions: &[(&str, &str)]) -> Job {
        let conditions = conditions
            .iter()
            .map(|(t, status)| JobCondition {
                type_: (*t).into(),
                status: (*status).into(),
                reason: Some("BackoffLimitExceeded".into()),
                message: Some("Job has reached the specified backoff limit".into()),
                ..Default::default()
            })
            .collect();
        Job {
            status: Some(JobStatus {
                conditions: Some(conditions),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("a timestamp")
    }

    fn phase(o: &Outcome) -> Option<AnalysisPhase> {
        match o {
            Outcome::Decided { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    #[test]
    fn a_job_is_judged_by_its_true_conditions_only() {
        let v = |c: &[(&str, &str)]| verdict_of(&job_with(c), "smoke-1", BTreeMap::new(), now());
        assert_eq!(
            phase(&v(&[("Complete", "True")])),
            Some(AnalysisPhase::Successful)
        );
        assert_eq!(
            phase(&v(&[("SuccessCriteriaMet", "True")])),
            Some(AnalysisPhase::Successful)
        );
        match v(&[("Failed", "True")]) {
            Outcome::Decided {
                phase: AnalysisPhase::Failed,
                message: Some(m),
                ..
            } => assert_eq!(
                m,
                "Job \"smoke-1\" failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
            ),
            other => panic!("not a failure: {other:?}"),
        }
        for running in [&[][..], &[("Failed", "False"), ("Complete", "False")][..]] {
            assert_eq!(
                v(running),
                Outcome::Pending {
                    metadata: BTreeMap::new(),
                    resume_at: later(now()),
                }
            );
        }
        assert!(later(now()) > now());
    }
}
