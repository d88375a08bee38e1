//! The AnalysisRun reconciler: measure what is due (providers, I/O), judge (pure), write the
//! status. The status holds every measurement and counter, so a restarted controller resumes
//! where the last one stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::judge::{self, Outcome, is_terminal};
use super::template::{run_arguments, substitute_metric};
use super::value::MetricValue;
use crate::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, Metric};
use crate::api::constants::LABEL_ROLLOUT;
use crate::providers::{self, MeasureContext, secret_value};
use crate::runtime::calls::timed;
use crate::runtime::context::{Shared, key};
use crate::runtime::error::Error;
use crate::runtime::events;
use crate::runtime::malformed::{self, Malformed, Parsed};
use crate::runtime::status::replace_status;
use crate::runtime::throttle;
use crate::telemetry::{MeasurementLabels, Metrics, ProviderLabels, VerdictLabels};

/// What every reconcile of an AnalysisRun shares: nothing beyond what every controller does.
pub type AnalysisContext = Shared;

/// A secret as it may appear in text: as is, and percent-encoded (as in a URL an error
/// message repeats).
fn secret_forms(secrets: &[String]) -> Vec<String> {
    let mut forms = Vec::new();
    for v in secrets.iter().filter(|v| !v.is_empty()) {
        forms.push(v.clone());
        let encoded: String = v
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        if encoded != *v {
            forms.push(encoded);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// Replaces every secret value in `s` with `*****`.
fn scrub(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_string();
    for v in secrets {
        out = out.replace(v.as_str(), "*****");
    }
    out
}

fn scrub_json(v: serde_json::Value, secrets: &[String]) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(scrub(&s, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| scrub_json(i, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, i)| (scrub(&k, secrets), scrub_json(i, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// Masks every secret in what a provider reported: messages, metadata, and the value itself
/// (an endpoint may echo a header back).
fn scrub_outcome(o: Outcome, secrets: &[String]) -> Outcome {
    let secrets = &secret_forms(secrets);
    if secrets.is_empty() {
        return o;
    }
    let md = |m: BTreeMap<String, String>| {
        m.into_iter()
            .map(|(k, v)| (k, scrub(&v, secrets)))
            .collect::<BTreeMap<_, _>>()
    };
    match o {
        Outcome::Value { value, metadata } => Outcome::Value {
            value: match value {
                MetricValue::Json(j) => MetricValue::Json(scrub_json(j, secrets)),
                other => other,
            },
            metadata: md(metadata),
        },
        Outcome::Decided {
            phase,
            value,
            message,
            metadata,
        } => Outcome::Decided {
            phase,
            value: value.map(|v| scrub(&v, secrets)),
            message: message.map(|m| scrub(&m, secrets)),
            metadata: md(metadata),
        },
        Outcome::Pending {
            metadata,
            resume_at,
        } => Outcome::Pending {
            metadata: md(metadata),
            resume_at,
        },
        Outcome::ProviderError { message, metadata } => Outcome::ProviderError {
            message: scrub(&message, secrets),
            metadata: md(metadata),
        },
    }
}

/// The values of the run's secret arguments, read now (never stored).
async fn secret_args(
    run: &AnalysisRun,
    client: &Client,
    ns: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in run.spec.args.iter().flatten() {
        if a.value.is_some() {
            continue;
        }
        if let Some(r) = a
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            let v = secret_value(client, ns, r)
                .await
                .map_err(|e| format!("argument {:?}: {e}", a.name))?;
            out.insert(a.name.clone(), v);
        }
    }
    Ok(out)
}

#[instrument(skip_all, fields(namespace = parsed.namespace().unwrap_or_default(), run = parsed.name_any()))]
async fn reconcile(
    parsed: Arc<Parsed<AnalysisRun>>,
    ctx: Arc<AnalysisContext>,
) -> Result<Action, Error> {
    let key = key(parsed.as_ref());
    let run = match &parsed.0 {
        Ok(run) => Arc::new(run.clone()),
        Err(bad) => {
            report_malformed(&parsed, bad, &key, &ctx).await;
            return Ok(Action::await_change());
        }
    };
    ctx.malformed.forget(&key);
    let action = reconcile_run(run, ctx.clone()).await?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}

/// A run that does not read is not measured: one Warning Event per distinct error, then nothing
/// until it changes (its Rollout sees it as a run in error).
async fn report_malformed(
    parsed: &Parsed<AnalysisRun>,
    bad: &Malformed,
    key: &str,
    ctx: &AnalysisContext,
) {
    let message = format!("the AnalysisRun cannot be read: {}", bad.describe());
    warn!(%message, "AnalysisRun does not read");
    if ctx.malformed.first(key.to_string(), &message) {
        malformed::publish(&ctx.events, &parsed.object_ref(&()), &message);
    }
}

async fn reconcile_run(run: Arc<AnalysisRun>, ctx: Arc<AnalysisContext>) -> Result<Action, Error> {
    let ns = run.namespace().ok_or(Error::NoNamespace)?;
    let status = run.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let pols = judge::policies(&run.spec).unwrap_or_default();
    let sched = judge::schedule(&run.spec, &status, &pols, now);
    let outcomes = measure_due(&ctx, &run, &ns, &status, &sched.due, now).await;
    let measured: Vec<String> = outcomes.iter().map(|(m, _, _)| m.clone()).collect();
    let failed_jobs = errored_jobs(&outcomes);
    let measured_count = outcomes.len();
    let next = judge::step(&run.spec, &status, outcomes, now);
    count_measurements(&ctx, &run, &measured, &next);
    let changed = run.status.as_ref() != Some(&next);
    if changed {
        let mut updated = (*run).clone();
        updated.status = Some(next.clone());
        let write = replace_status(
            &ctx.client,
            &ctx.writes,
            updated,
            "replace AnalysisRun status",
        );
        // A verdict that fails a release goes in the urgent lane: its Rollout aborts on it.
        let fails = matches!(
            next.phase,
            Some(AnalysisPhase::Failed | AnalysisPhase::Error)
        ) && status.phase != next.phase;
        if fails {
            let started = std::time::Instant::now();
            throttle::urgent(write).await?;
            info!(
                ms = started.elapsed().as_millis() as u64,
                "failing verdict written (urgent lane)"
            );
        } else {
            write.await?;
        }
        report_verdict(&ctx, &run, &status, &next).await;
    }
    // Only once the status says why: deleted first, a lost status write would leave a Job
    // that is gone and a measurement that no longer knows its reason.
    delete_jobs(&ctx, failed_jobs, &ns).await;
    let terminated = run.spec.terminate == Some(true);
    if terminated || (is_terminal(next.phase) && !judge::is_measuring(&next, &pols)) {
        stop_jobs(&ctx, &next, &ns).await;
        return Ok(Action::await_change());
    }
    let later = judge::schedule(&run.spec, &next, &pols, Timestamp::now());
    let wait = later
        .wake_at
        .map(|w| {
            let d = w.duration_since(Timestamp::now());
            Duration::try_from(d).unwrap_or(Duration::ZERO)
        })
        .unwrap_or(Duration::from_secs(300));
    let wait = wait.max(Duration::from_millis(200));
    tracing::debug!(
        resource_version = run.resource_version().unwrap_or_default(),
        measured = measured_count,
        wrote = changed,
        phase = ?next.phase,
        wait_ms = wait.as_millis() as u64,
        "analysis run reconciled"
    );
    Ok(Action::requeue(wait))
}

/// Takes every measurement that is `due`, at once: by metric, when it started, and what the
/// provider reported (every secret it read masked).
async fn measure_due(
    ctx: &AnalysisContext,
    run: &AnalysisRun,
    ns: &str,
    status: &AnalysisRunStatus,
    due: &[judge::Due],
    now: Timestamp,
) -> Vec<(String, Timestamp, Outcome)> {
    if due.is_empty() {
        return Vec::new();
    }
    let secrets = secret_args(run, &ctx.client, ns).await;
    let measurements = due.iter().map(|due| {
        let result = status.metric_results.iter().find(|r| r.name == due.metric);
        let one = Measuring {
            ctx,
            run,
            ns,
            now,
            secrets: &secrets,
            attempt: result.map_or(0, |r| r.count + r.error) + 1,
        };
        one.measure(due)
    });
    futures::future::join_all(measurements).await
}

/// One measurement of a run, and what it needs.
struct Measuring<'a> {
    ctx: &'a AnalysisContext,
    run: &'a AnalysisRun,
    ns: &'a str,
    now: Timestamp,
    /// The values of the run's secret arguments, or why they cannot be read.
    secrets: &'a Result<BTreeMap<String, String>, String>,
    /// 1 for a metric's first measurement, 2 for the next (errors included).
    attempt: i32,
}

impl Measuring<'_> {
    async fn measure(self, due: &judge::Due) -> (String, Timestamp, Outcome) {
        let metric: Option<&Metric> = self.run.spec.metrics.iter().find(|m| m.name == due.metric);
        let started = due
            .resume
            .as_ref()
            .and_then(|m| m.started_at.as_ref())
            .map(|t| t.0)
            .unwrap_or(self.now);
        let clock = std::time::Instant::now();
        let mut read: Vec<String> = match self.secrets {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let outcome = match (metric, self.secrets) {
            (None, _) => providers::provider_error("no such metric", BTreeMap::new()),
            (Some(_), Err(e)) => providers::provider_error(e.clone(), BTreeMap::new()),
            (Some(m), Ok(secrets)) => match substitute_metric(
                m,
                &run_arguments(&self.run.spec)
                    .0
                    .into_iter()
                    .chain(secrets.clone())
                    .collect(),
                &BTreeSet::new(),
            ) {
                Err(e) => providers::provider_error(e.to_string(), BTreeMap::new()),
                Ok(m) => {
                    let mctx = MeasureContext {
                        client: &self.ctx.client,
                        run: self.run,
                        namespace: self.ns,
                        now: self.now,
                        attempt: self.attempt,
                        secrets: Default::default(),
                    };
                    let outcome = providers::measure(&mctx, &m, due.resume.as_ref()).await;
                    read.extend(mctx.secrets_read());
                    outcome
                }
            },
        };
        let provider = metric.map(provider_name).unwrap_or("none");
        self.ctx
            .metrics
            .provider_duration
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .observe(clock.elapsed().as_secs_f64());
        (due.metric.clone(), started, scrub_outcome(outcome, &read))
    }
}

/// Counts each measurement taken, by provider and the phase it ended in.
fn count_measurements(
    ctx: &AnalysisContext,
    run: &AnalysisRun,
    measured: &[String],
    next: &AnalysisRunStatus,
) {
    for name in measured {
        let provider = run
            .spec
            .metrics
            .iter()
            .find(|m| &m.name == name)
            .map(provider_name)
            .unwrap_or("none");
        let last = next
            .metric_results
            .iter()
            .find(|r| &r.name == name)
            .and_then(|r| r.measurements.last());
        let Some((phase, m)) = last.and_then(|m| Some((m.phase?, m))) else {
            continue;
        };
        let phase = format!("{phase:?}");
        if let Some(rollout) = run.labels().get(LABEL_ROLLOUT) {
            let value = m.value.as_deref().and_then(number);
            ctx.metrics.rollouts().measured(
                &run.namespace().unwrap_or_default(),
                rollout,
                name,
                value,
                &phase,
            );
        }
        ctx.metrics
            .measurements
            .get_or_create(&MeasurementLabels {
                provider: provider.to_string(),
                phase,
            })
            .inc();
    }
}

/// A measurement's value as one number: `0.95`, or a list of one, `[0.95]`.
fn number(value: &str) -> Option<f64> {
    let inner = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value)
        .trim();
    inner.parse().ok()
}

/// A verdict reached (or measuring resumed after an outage), once written: counted, and an
/// Event.
async fn report_verdict(
    ctx: &AnalysisContext,
    run: &AnalysisRun,
    before: &AnalysisRunStatus,
    next: &AnalysisRunStatus,
) {
    if next.phase == before.phase {
        return;
    }
    if is_terminal(next.phase) {
        ctx.metrics
            .analysis_verdicts
            .get_or_create(&VerdictLabels {
                phase: next.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
            })
            .inc();
    }
    let resumed = before.phase == Some(AnalysisPhase::Inconclusive)
        && next.phase == Some(AnalysisPhase::Running);
    if is_terminal(next.phase) || resumed {
        publish_verdict(ctx, run, next).await;
    }
}

/// The provider a metric names, as a metric label.
fn provider_name(m: &Metric) -> &'static str {
    if m.provider.prometheus.is_some() {
        "prometheus"
    } else if m.provider.web.is_some() {
        "web"
    } else if m.provider.job.is_some() {
        "job"
    } else if m.provider.compare.is_some() {
        "compare"
    } else if m.provider.burn_rate.is_some() {
        "burnRate"
    } else {
        "none"
    }
}

async fn publish_verdict(ctx: &AnalysisContext, run: &AnalysisRun, s: &AnalysisRunStatus) {
    let (type_, reason) = match s.phase {
        Some(AnalysisPhase::Successful) => (EventType::Normal, "AnalysisRunSuccessful"),
        Some(AnalysisPhase::Failed) => (EventType::Warning, "AnalysisRunFailed"),
        Some(AnalysisPhase::Error) => (EventType::Warning, "AnalysisRunError"),
        Some(AnalysisPhase::Inconclusive) => (EventType::Warning, "AnalysisRunInconclusive"),
        Some(AnalysisPhase::Running) => (EventType::Normal, "AnalysisRunResumed"),
        _ => return,
    };
    let message = s
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "the provider answers again; measuring goes on".into());
    info!(reason, %message, "analysis verdict");
    let reference = run.object_ref(&());
    events::publish(&ctx.events, &reference, type_, reason, &message, &message);
}

/// The Jobs of the measurements that just ended in an error (a pod that cannot start): they
/// measure nothing more, and their pods would keep trying.
fn errored_jobs(outcomes: &[(String, Timestamp, Outcome)]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(_, _, o)| match o {
            Outcome::ProviderError { metadata, .. } => metadata.get("job-name").cloned(),
            _ => None,
        })
        .collect()
}

/// A finished run leaves no Job running.
async fn stop_jobs(ctx: &AnalysisContext, status: &AnalysisRunStatus, ns: &str) {
    let running = status
        .metric_results
        .iter()
        .filter_map(|r| r.measurements.last())
        .filter(|m| m.phase == Some(AnalysisPhase::Running))
        .filter_map(|m| {
            m.metadata
                .as_ref()
                .and_then(|md| md.get("job-name"))
                .cloned()
        })
        .collect::<Vec<_>>();
    delete_jobs(ctx, running, ns).await;
}

async fn delete_jobs(ctx: &AnalysisContext, names: Vec<String>, ns: &str) {
    if names.is_empty() {
        return;
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let dp = kube::api::DeleteParams::background();
    for name in names {
        ctx.writes.add();
        if let Err(e) = timed("delete Job", api.delete(&name, &dp)).await {
            tracing::debug!(error = %e, job = name, "could not delete the Job");
        }
    }
}

fn error_policy(run: Arc<Parsed<AnalysisRun>>, error: &Error, ctx: Arc<AnalysisContext>) -> Action {
    ctx.retry_after(&key(run.as_ref()), error, "AnalysisRun")
}

/// How often runs still measuring are looked at even when nothing woke them.
const SWEEP: Duration = Duration::from_secs(10);

/// The runs that may still measure: every readable run not yet Successful, Failed or Error.
fn still_measuring(runs: &[Arc<Parsed<AnalysisRun>>]) -> Vec<ObjectRef<Parsed<AnalysisRun>>> {
    runs.iter()
        .filter(|p| match &p.0 {
            Ok(run) => !matches!(
                run.status.as_ref().and_then(|s| s.phase),
                Some(AnalysisPhase::Successful | AnalysisPhase::Failed | AnalysisPhase::Error)
            ),
            Err(_) => false,
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Runs the AnalysisRun controller until `shutdown` resolves, over `namespaces` (all when
/// none; each watched apart when several).
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
    events: crate::runtime::events::Events,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Shared::new(client.clone(), events, metrics));
    info!(?namespaces, "analysis controller started");
    let jobs_config = || watcher::Config::default().labels(providers::job::LABEL_ANALYSIS_RUN);
    // Read as `Parsed`: a run that does not deserialize cannot stall the others.
    let controller = match namespaces.as_slice() {
        [] => Controller::new(
            Api::<Parsed<AnalysisRun>>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Job>::all(client), jobs_config()),
        [one] => Controller::new(
            Api::<Parsed<AnalysisRun>>::namespaced(client.clone(), one),
            watcher::Config::default(),
        )
        .owns(Api::<Job>::namespaced(client, one), jobs_config()),
        several => {
            let (store, writer) = reflector::store();
            let runs = several
                .iter()
                .map(|ns| (ns.clone(), Api::namespaced(client.clone(), ns)))
                .collect();
            let runs = crate::rollout::cache::watch_events(
                runs,
                watcher::Config::default(),
                |_: &mut Parsed<AnalysisRun>| {},
                store.clone(),
            )
            .reflect(writer)
            .touched_objects();
            let jobs = futures::stream::select_all(several.iter().map(|ns| {
                watcher::watcher(Api::<Job>::namespaced(client.clone(), ns), jobs_config())
                    .default_backoff()
                    .touched_objects()
                    .boxed()
            }));
            Controller::for_stream(runs, store).owns_stream(jobs)
        }
    };
    let store = controller.store();
    // A safety net under the runs' own wake-ups: every `SWEEP`, each run still measuring is
    // looked at again (a look before a measurement is due changes nothing and writes nothing).
    let sweep = futures::stream::unfold((), |()| async {
        tokio::time::sleep(SWEEP).await;
        Some(((), ()))
    })
    .flat_map(move |()| futures::stream::iter(still_measuring(&store.state())));
    controller
        .reconcile_on(sweep)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "analysis controller");
            }
        })
        .await;
    info!("analysis controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_looks_only_at_runs_that_may_still_measure() {
        let run = |name: &str, phase: Option<AnalysisPhase>| {
            let mut r = AnalysisRun::new(name, Default::default());
            r.metadata.namespace = Some("ns".into());
            r.status = phase.map(|phase| AnalysisRunStatus {
                phase: Some(phase),
                ..Default::default()
            });
            Arc::new(Parsed(Ok(r)))
        };
        let runs = vec![
            run("new", None),
            run("running", Some(AnalysisPhase::Running)),
            run("inconclusive", Some(AnalysisPhase::Inconclusive)),
            run("ok", Some(AnalysisPhase::Successful)),
            run("failed", Some(AnalysisPhase::Failed)),
            run("error", Some(AnalysisPhase::Error)),
        ];
        let names: Vec<String> = still_measuring(&runs).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["new", "running", "inconclusive"]);
    }

    #[test]
    fn secrets_are_masked_everywhere_a_provider_may_repeat_them() {
        let secrets = vec!["s3cr3t/+key".to_string()];
        let o = Outcome::ProviderError {
            message: "GET https://x/?t=s3cr3t%2F%2Bkey failed; token s3cr3t/+key".into(),
            metadata: BTreeMap::from([("url".to_string(), "https://x/s3cr3t/+key".to_string())]),
        };
        let Outcome::ProviderError { message, metadata } = scrub_outcome(o, &secrets) else {
            panic!("same kind");
        };
        assert_eq!(message, "GET https://x/?t=***** failed; token *****");
        assert_eq!(metadata["url"], "https://x/*****");
        let v = Outcome::Value {
            value: MetricValue::Json(
                serde_json::json!({"headers": {"authorization": "Bearer s3cr3t/+key"}}),
            ),
            metadata: BTreeMap::new(),
        };
        let Outcome::Value { value, .. } = scrub_outcome(v, &secrets) else {
            panic!("same kind");
        };
        assert_eq!(
            value.to_string(),
            r#"{"headers":{"authorization":"Bearer *****"}}"#
        );
    }
}
