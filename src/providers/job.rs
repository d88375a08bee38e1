//! The `job` provider: runs a Kubernetes Job from the metric's template; the Job's success or
//! failure is the measurement. The Job is owned by the AnalysisRun, so it goes with it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Resource};

use super::{KUBE_READ_TIMEOUT, MeasureContext, Provider, provider_error};
use crate::analysis::judge::Outcome;
use crate::api::analysis::{AnalysisPhase, AnalysisRun, Measurement, Metric};
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
    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        metric: &Metric,
        resume: Option<&Measurement>,
    ) -> Outcome {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), ctx.namespace);
        let name = match resume
            .and_then(|m| m.metadata.as_ref())
            .and_then(|md| md.get("job-name"))
        {
            Some(n) => n.clone(),
            None => {
                let attempt = ctx.attempt;
                let job = match build_job(ctx.run, metric, attempt) {
                    Ok(j) => j,
                    Err(e) => return provider_error(e, BTreeMap::new()),
                };
                let name = job.metadata.name.clone().unwrap_or_default();
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
                    ..Default::default()
                };
                match tokio::time::timeout(KUBE_READ_TIMEOUT, api.create(&pp, &job)).await {
                    Err(_) => return provider_error("creating the Job timed out", BTreeMap::new()),
                    Ok(Err(kube::Error::Api(s))) if s.code == 409 => {}
                    Ok(Err(e)) => {
                        return provider_error(
                            format!("cannot create Job {name:?}: {e}"),
                            BTreeMap::new(),
                        );
                    }
                    Ok(Ok(_)) => {}
                }
                name
            }
        };
        let metadata = BTreeMap::from([("job-name".to_string(), name.clone())]);
        // A failed read is not a verdict and must not lose the Job: look again shortly.
        let again = |metadata| Outcome::Pending {
            metadata,
            resume_at: later(ctx.now),
        };
        let job = match tokio::time::timeout(KUBE_READ_TIMEOUT, api.get_opt(&name)).await {
            Err(_) => return again(metadata),
            Ok(Err(e)) => {
                tracing::debug!(job = name, error = %e, "cannot read the Job; looking again");
                return again(metadata);
            }
            Ok(Ok(None)) => {
                return provider_error(format!("Job {name:?} was deleted"), metadata);
            }
            Ok(Ok(Some(j))) => j,
        };
        let conditions = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
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
            Outcome::Decided {
                phase: AnalysisPhase::Failed,
                value: Some("false".into()),
                message: Some(format!(
                    "Job {name:?} failed: {}{}",
                    c.reason.clone().unwrap_or_default(),
                    c.message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                )),
                metadata,
            }
        } else {
            Outcome::Pending {
                metadata,
                resume_at: later(ctx.now),
            }
        }
    }
}

fn build_job(run: &AnalysisRun, metric: &Metric, attempt: i32) -> Result<Job, String> {
    let Some(jm) = metric.provider.job.as_ref() else {
        return Err("not a job metric".into());
    };
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
    labels.insert(LABEL_METRIC.into(), dns_label(&[&metric.name]));
    let annotations = jm.metadata.as_ref().and_then(|m| m.annotations.clone());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&run_name, &metric.name, attempt)),
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
}
