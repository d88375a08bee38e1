//! The RolloutExercise reconciler: read (the exercise, and from the Rollout controller's
//! caches its Rollout and AnalysisRuns) → decide (`run`, pure) → write (the exercise's status,
//! then the Rollout's `status.exercise`), with Events and metrics.
//!
//! An exercise with a run under way is looked at every couple of seconds; that reads only the
//! caches, and writes nothing unless something changed. A deleted exercise takes its block off
//! the Rollout first (a finalizer), so a Rollout is never left releasing a fault nobody owns.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::analysis::AnalysisPhase;
use crate::api::constants::FIELD_MANAGER_CONTROLLER;
use crate::api::exercise::{ExerciseEnd, ExerciseResult, ExerciseRun, RolloutExercise};
use crate::api::rollout::Rollout;
use crate::rollout::cache::Caches;
use crate::runtime::calls::timed;
use crate::runtime::context::{Shared, key};
use crate::runtime::error::Error;
use crate::runtime::events;
use crate::runtime::malformed::Parsed;
use crate::telemetry::{ExerciseLabels, ExerciseRunLabels, Metrics};

use super::run::{Decision, RolloutWrite, Seen, decide};

/// The finalizer that takes an exercise's block off its Rollout before it goes.
pub const FINALIZER: &str = "sluice.dev/exercise";
/// How long a Prometheus query for the request counts may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

struct Context {
    shared: Shared,
    /// The Rollout controller's caches: Rollouts and AnalysisRuns are read from them, once
    /// they have their first full list (before it, a Rollout not yet listed is not gone).
    caches: Caches,
}

/// Runs the exercise controller until `shutdown` resolves, reading Rollouts and AnalysisRuns
/// from the Rollout controller's caches.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
    events: crate::runtime::events::Events,
    caches: Caches,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context {
        shared: Shared::new(client.clone(), events, metrics),
        caches,
    });
    info!(?namespaces, "exercise controller started");
    let controller = match namespaces.as_slice() {
        [] => Controller::new(
            Api::<Parsed<RolloutExercise>>::all(client),
            watcher::Config::default(),
        ),
        [one] => Controller::new(
            Api::<Parsed<RolloutExercise>>::namespaced(client, one),
            watcher::Config::default(),
        ),
        several => {
            let (store, writer) = reflector::store();
            let apis = several
                .iter()
                .map(|ns| (ns.clone(), Api::namespaced(client.clone(), ns)))
                .collect();
            let stream = crate::rollout::cache::watch_events(
                apis,
                watcher::Config::default(),
                |_: &mut Parsed<RolloutExercise>| {},
                store.clone(),
            )
            .reflect(writer)
            .touched_objects();
            Controller::for_stream(stream, store)
        }
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "exercise controller");
            }
        })
        .await;
    info!("exercise controller stopped");
}

fn error_policy(ex: Arc<Parsed<RolloutExercise>>, error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(
        ctx.shared
            .retry_wait(&key(ex.as_ref()), error, "RolloutExercise"),
    )
}

async fn reconcile(
    parsed: Arc<Parsed<RolloutExercise>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ex = match &parsed.0 {
        Ok(ex) => Arc::new(ex.clone()),
        Err(bad) => {
            let message = format!("the RolloutExercise cannot be read: {}", bad.describe());
            if ctx.shared.malformed.first(
                format!("RolloutExercise {}", key(parsed.as_ref())),
                &message,
            ) {
                warn!(%message, "RolloutExercise does not read");
                let reference = kube::Resource::object_ref(parsed.as_ref(), &());
                crate::runtime::malformed::publish(&ctx.shared.events, &reference, &message);
            }
            return Ok(Action::await_change());
        }
    };
    let ns = ex.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<RolloutExercise> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, ex, |event| async {
        match event {
            FinalizerEvent::Apply(ex) => reconcile_exercise(&ex, &ctx).await,
            FinalizerEvent::Cleanup(ex) => cleanup(&ex, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.shared.backoff.succeeded(&key(parsed.as_ref()));
    Ok(action)
}

/// The exercise's Rollout, when it exists and reads.
fn rollout_of(ex: &RolloutExercise, ctx: &Context) -> Option<Rollout> {
    let ns = ex.namespace()?;
    let cached = ctx
        .caches
        .rollouts
        .get(&ObjectRef::new(&ex.spec.rollout_name).within(&ns))?;
    cached.to_parsed().0.ok()
}

async fn reconcile_exercise(ex: &RolloutExercise, ctx: &Context) -> Result<Action, Error> {
    synced(ctx).await?;
    let rollout = rollout_of(ex, ctx);
    let first_failure = first_failure(ex, rollout.as_ref(), ctx);
    let mut seen = Seen {
        rollout: rollout.as_ref(),
        first_failure,
        requests: None,
    };
    let mut d = decide(ex, &seen, Timestamp::now());
    if d.measure {
        seen.requests = Some(count_requests(ex, rollout.as_ref()).await);
        d = decide(ex, &seen, Timestamp::now());
    }
    write(ex, rollout.as_ref(), &d, ctx).await?;
    Ok(match d.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Carries out `d`: the exercise's status, then the Rollout's block; Events and metrics once
/// both are written.
async fn write(
    ex: &RolloutExercise,
    rollout: Option<&Rollout>,
    d: &Decision,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = ex.namespace().ok_or(Error::NoNamespace)?;
    if ex.status.as_ref() != Some(&d.status) {
        let api: Api<RolloutExercise> = Api::namespaced(ctx.shared.client.clone(), &ns);
        let mut next = ex.clone();
        next.status = Some(d.status.clone());
        next.metadata.managed_fields = None;
        ctx.shared.writes.add();
        timed(
            "write the RolloutExercise's status",
            api.replace_status(&ex.name_any(), &PostParams::default(), &next),
        )
        .await?;
    }
    if let (Some(w), Some(ro)) = (&d.rollout, rollout) {
        write_rollout(ro, w, ctx).await?;
    }
    let reference = kube::Resource::object_ref(ex, &());
    for (warning, reason, message) in &d.events {
        info!(exercise = ex.name_any(), reason, %message, "event");
        let type_ = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        events::publish(
            &ctx.shared.events,
            &reference,
            type_,
            reason,
            message,
            message,
        );
    }
    if let Some(run) = &d.finished {
        observe(ex, run, &ctx.shared.metrics);
    }
    Ok(())
}

/// The Rollout's `status.exercise`, changed only if the Rollout is still the one read.
async fn write_rollout(ro: &Rollout, w: &RolloutWrite, ctx: &Context) -> Result<(), Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let block = match w {
        RolloutWrite::Start(block) => serde_json::to_value(block).map_err(Error::Serialize)?,
        RolloutWrite::End { end, .. } => json!({"ended": end}),
    };
    let patch = json!({
        "metadata": {"resourceVersion": ro.resource_version()},
        "status": {"exercise": block}
    });
    let api: Api<Rollout> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    ctx.shared.writes.add();
    timed(
        "write the exercise into the Rollout's status",
        api.patch_status(&ro.name_any(), &params, &Patch::Merge(patch)),
    )
    .await?;
    Ok(())
}

/// Waits for the caches' first full list: after a restart, a Rollout not yet listed must not
/// read as gone (a run under way would be ended as Cancelled).
async fn synced(ctx: &Context) -> Result<(), Error> {
    ctx.caches
        .synced()
        .await
        .map_err(|missing| Error::CachesNotListed(missing.to_string()))
}

/// The exercise is being deleted: a block of it still on the Rollout is ended first.
async fn cleanup(ex: &RolloutExercise, ctx: &Context) -> Result<Action, Error> {
    synced(ctx).await?;
    let rollout = rollout_of(ex, ctx);
    let block = rollout
        .as_ref()
        .and_then(|ro| ro.status.as_ref()?.exercise.as_ref())
        .filter(|b| b.name == ex.name_any() && b.ended.is_none());
    if let (Some(ro), Some(b)) = (rollout.as_ref(), block) {
        let end = ExerciseEnd {
            result: ExerciseResult::Cancelled,
            message: "the RolloutExercise was deleted".into(),
        };
        write_rollout(ro, &RolloutWrite::End { run: b.run, end }, ctx).await?;
    }
    let labels = ExerciseLabels {
        namespace: ex.namespace().unwrap_or_default(),
        exercise: ex.name_any(),
    };
    let m = &ctx.shared.metrics;
    m.exercises.time_to_detect.remove(&labels);
    m.exercises.time_to_safe.remove(&labels);
    m.exercises.failed_requests.remove(&labels);
    Ok(Action::await_change())
}

/// The first failed measurement of the analysis run the Rollout's block names.
fn first_failure(ex: &RolloutExercise, ro: Option<&Rollout>, ctx: &Context) -> Option<Timestamp> {
    let block = ro?.status.as_ref()?.exercise.as_ref()?;
    let analysis = block.analysis.as_ref()?;
    let ns = ex.namespace()?;
    let run = ctx
        .caches
        .runs
        .get(&ObjectRef::new(&analysis.run).within(&ns))?;
    let run = run.0.as_ref().ok()?;
    let status = run.status.as_ref()?;
    status
        .metric_results
        .iter()
        .filter(|m| analysis.metric.as_ref().is_none_or(|name| &m.name == name))
        .flat_map(|m| m.measurements.iter())
        .filter(|m| m.phase == Some(AnalysisPhase::Failed))
        .filter_map(|m| {
            m.finished_at
                .as_ref()
                .or(m.started_at.as_ref())
                .map(|t| t.0)
        })
        .min()
}

/// The faulty revision's requests from Prometheus: all, and failed.
async fn count_requests(ex: &RolloutExercise, ro: Option<&Rollout>) -> Result<(i64, i64), String> {
    let Some(spec) = &ex.spec.requests else {
        return Err("no requests counter is set".into());
    };
    let Some(block) = ro.and_then(|r| r.status.as_ref()?.exercise.as_ref()) else {
        return Err("the Rollout no longer shows the run".into());
    };
    let Some(revision) = block.revision.clone() else {
        return Err("the faulty revision was never built".into());
    };
    let started = block.started_at.as_ref().map_or(Timestamp::now(), |t| t.0);
    let window = Timestamp::now().duration_since(started).as_secs().max(60) + 60;
    let vars = super::requests::Vars {
        namespace: ex.namespace().unwrap_or_default(),
        rollout: ex.spec.rollout_name.clone(),
        revision,
        window: format!("{window}s"),
    };
    let (total, failed) = super::requests::queries(spec, &vars);
    let client = prometheus_http_query::Client::try_from(spec.prometheus_address.as_str())
        .map_err(|e| format!("bad Prometheus address {:?}: {e}", spec.prometheus_address))?;
    let all = query_count(&client, &total).await?;
    let bad = query_count(&client, &failed).await?;
    Ok((all, bad))
}

/// One instant query whose answer is a single number (an empty answer is 0).
async fn query_count(client: &prometheus_http_query::Client, query: &str) -> Result<i64, String> {
    use prometheus_http_query::response::Data;
    let res = tokio::time::timeout(QUERY_TIMEOUT, client.query(query).get())
        .await
        .map_err(|_| {
            format!(
                "Prometheus did not answer within {}s",
                QUERY_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| {
            format!(
                "Prometheus query failed: {}",
                crate::providers::describe_error(&e)
            )
        })?;
    let value = match res.data() {
        Data::Scalar(s) => s.value(),
        Data::Vector(v) => v.iter().map(|s| s.sample().value()).sum(),
        Data::Matrix(_) => return Err(format!("{query} returned a range vector")),
    };
    Ok(value.round() as i64)
}

/// The run's result and figures, as metrics.
fn observe(ex: &RolloutExercise, run: &ExerciseRun, m: &Metrics) {
    let (namespace, exercise) = (ex.namespace().unwrap_or_default(), ex.name_any());
    let result = run.result.map_or("Unknown", ExerciseResult::as_str);
    m.exercises
        .runs
        .get_or_create(&ExerciseRunLabels {
            namespace: namespace.clone(),
            exercise: exercise.clone(),
            result: result.into(),
        })
        .inc();
    let labels = ExerciseLabels {
        namespace,
        exercise,
    };
    let secs = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| crate::api::duration::parse_duration(t).ok())
            .map(|d| d.as_secs_f64())
    };
    if let Some(v) = secs(&run.time_to_detect) {
        m.exercises.time_to_detect.get_or_create(&labels).set(v);
    }
    if let Some(v) = secs(&run.time_to_safe) {
        m.exercises.time_to_safe.get_or_create(&labels).set(v);
    }
    if let Some(n) = run.failed_requests {
        m.exercises.failed_requests.get_or_create(&labels).set(n);
    }
}
