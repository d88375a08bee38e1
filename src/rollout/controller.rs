//! The Rollout reconciler: observe (I/O) → decide (pure) → apply (I/O).
//!
//! Watches Rollouts, their ReplicaSets and pods (by the `sluice.dev/rollout` label, never every
//! ReplicaSet in the cluster) and the Services they name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, instrument, warn};

use crate::analysis::judge;
use crate::analysis::template::{ArgContext, build_run, merge_templates};
use crate::api::analysis::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate,
};
use crate::api::constants::{
    ANNOTATION_SCALE_DOWN_AT, FINALIZER, LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT,
};
use crate::api::rollout::AnalysisTemplateRef;
use crate::api::rollout::Rollout;
use crate::telemetry::{Metrics, ReasonLabels};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};

use super::apply::{apply, selector_patch, timed, traffic_params};
use super::decide::{DEFAULT_RESTART_THRESHOLD, decide};
use super::error::{Error, Refusal};
use super::hash::pod_template_hash;
use super::observe::{Observed, ObservedRs, ObservedRun, diagnose};
use crate::traffic::RouteState;
use crate::traffic::router::router_for;

/// Counts API writes, so a reconcile that changes nothing can be seen to write nothing (in the
/// log per reconcile, and in `sluice_api_writes_total`).
#[derive(Clone)]
pub struct WriteCounter(Arc<AtomicU64>, Arc<Metrics>);

impl WriteCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        WriteCounter(Arc::default(), metrics)
    }
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1.api_writes.inc();
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub writes: WriteCounter,
    pub metrics: Arc<Metrics>,
    /// Restarts of a crash-looping container before the release is aborted.
    pub restart_threshold: i32,
    /// Consecutive failed reconciles per Rollout, for exponential retry delays.
    pub backoff: super::backoff::Backoff,
}

/// Options of the controller process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace only (default: all).
    pub namespace: Option<String>,
    pub restart_threshold: i32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            restart_threshold: DEFAULT_RESTART_THRESHOLD,
        }
    }
}

/// The I/O half of observation: reads what `decide` needs.
struct World {
    observed: Observed,
    replica_sets: Vec<ReplicaSet>,
    services: BTreeMap<String, Service>,
}

async fn observe(ro: &Rollout, ctx: &Context) -> Result<World, Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let name = ro.name_any();
    let uid = ro.uid().unwrap_or_default();
    let client = &ctx.client;
    let selector = format!("{LABEL_ROLLOUT}={name}");

    let (template, workload_replicas) = match (&ro.spec.template, &ro.spec.workload_ref) {
        (Some(t), _) => (Some(t.clone()), None),
        (None, Some(w)) => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let d = timed("get workloadRef Deployment", api.get_opt(&w.name)).await?;
            (
                d.as_ref()
                    .and_then(|d| d.spec.as_ref())
                    .map(|s| s.template.clone()),
                d.and_then(|d| d.spec.and_then(|s| s.replicas)),
            )
        }
        (None, None) => (None, None),
    };

    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let replica_sets: Vec<ReplicaSet> = timed(
        "list ReplicaSets",
        rs_api.list(&ListParams::default().labels(&selector)),
    )
    .await?
    .items
    .into_iter()
    .filter(|rs| {
        rs.owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true))
    })
    .collect();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pods = timed(
        "list pods",
        pod_api.list(&ListParams::default().labels(&selector)),
    )
    .await?
    .items;

    let mut observed_sets = Vec::new();
    for rs in &replica_sets {
        let Some(hash) = rs.labels().get(LABEL_POD_TEMPLATE_HASH).cloned() else {
            continue;
        };
        let status = rs.status.clone().unwrap_or_default();
        let own_pods: Vec<Pod> = pods
            .iter()
            .filter(|p| p.labels().get(LABEL_POD_TEMPLATE_HASH) == Some(&hash))
            .cloned()
            .collect();
        observed_sets.push(ObservedRs {
            name: rs.name_any(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            scale_down_at: rs
                .annotations()
                .get(ANNOTATION_SCALE_DOWN_AT)
                .and_then(|v| v.parse::<Timestamp>().ok()),
            failure: diagnose(&own_pods, ctx.restart_threshold),
            hash,
        });
    }

    let mut services = BTreeMap::new();
    let mut exists = BTreeMap::new();
    let named = named_services(ro);
    {
        let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
        for n in named {
            let s = timed("get Service", svc_api.get_opt(n)).await?;
            exists.insert(n.clone(), s.is_some());
            if let Some(s) = s {
                services.insert(n.clone(), s);
            }
        }
    }
    let run_api: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns);
    let runs = timed(
        "list AnalysisRuns",
        run_api.list(&ListParams::default().labels(&selector)),
    )
    .await?
    .items
    .into_iter()
    .filter(|r| {
        r.owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true))
    })
    .map(|r| {
        let status = r.status.clone().unwrap_or_default();
        let policies = judge::policies(&r.spec).unwrap_or_default();
        let terminated = r.spec.terminate == Some(true);
        ObservedRun {
            name: r.name_any(),
            hash: r
                .labels()
                .get(LABEL_POD_TEMPLATE_HASH)
                .cloned()
                .unwrap_or_default(),
            phase: status.phase,
            message: status.message.clone(),
            terminated,
            measuring: !terminated && judge::is_measuring(&status, &policies),
        }
    })
    .collect();
    let analysis = match &template {
        Some(t) => declared_analysis(ro, client, &ns, &pod_template_hash(t)).await?,
        None => BTreeMap::new(),
    };
    let traffic = traffic_problems(ro, client, &ns).await?;
    Ok(World {
        observed: Observed {
            template,
            workload_replicas,
            replica_sets: observed_sets,
            services: exists,
            analysis,
            runs,
            traffic,
        },
        replica_sets,
        services,
    })
}

#[instrument(skip_all, fields(namespace = ro.namespace().unwrap_or_default(), rollout = ro.name_any()))]
async fn reconcile(ro: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let key = format!("{ns}/{}", ro.name_any());
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, ro, |event| async {
        match event {
            FinalizerEvent::Apply(ro) => reconcile_rollout(ro, &ctx).await,
            FinalizerEvent::Cleanup(ro) => cleanup(ro, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}

/// Shows a refused request on the Rollout: the `WriteRefused` condition with the API server's
/// message and one Warning Event, both only when this refusal is not already shown. Best
/// effort: the reconcile fails either way and is retried with backoff.
async fn report_refusal(ro: &Rollout, refusal: &Refusal, ctx: &Context) {
    let Some(status) = super::refused::refused_status(
        ro.status.as_ref(),
        refusal,
        ro.metadata.generation,
        Timestamp::now(),
    ) else {
        return;
    };
    let (ns, name) = (ro.namespace().unwrap_or_default(), ro.name_any());
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let mut updated = ro.clone();
    updated.status = Some(status);
    updated.metadata.managed_fields = None;
    ctx.writes.add();
    let params = kube::api::PostParams {
        field_manager: Some(crate::api::constants::FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    if let Err(e) = timed(
        "show the refusal in the Rollout's status",
        api.replace_status(&name, &params, &updated),
    )
    .await
    {
        warn!(error = %e, "could not show a refused request on the Rollout");
        return;
    }
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: crate::api::constants::condition::WRITE_REFUSED.into(),
        note: Some(refusal.describe().chars().take(1000).collect()),
        action: refusal.describe().chars().take(128).collect(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(ro, &());
    if let Err(e) = timed("publish Event", ctx.recorder.publish(&event, &reference)).await {
        warn!(error = %e, "could not publish an Event");
    }
}

/// The Rollout is being deleted: take Sluice's key out of each Service's selector (the
/// ReplicaSets go with the Rollout through their owner references).
async fn cleanup(ro: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    for name in named_services(&ro) {
        if timed("get Service", api.get_opt(name)).await?.is_none() {
            continue;
        }
        ctx.writes.add();
        timed(
            "give the Service back",
            api.patch(name, &traffic_params(), &selector_patch(None)),
        )
        .await?;
    }
    if let Some(router) = ro.spec.strategy.canary.as_ref().and_then(router_for) {
        // Objects another Rollout routes are its own: this one never wrote them.
        let skip: Vec<String> = claimed_by_others(&ro, &ctx.client, &ns, router.as_ref())
            .await?
            .into_keys()
            .collect();
        crate::traffic::kube::restore(&ctx.client, &ns, router.as_ref(), &skip, &ctx.writes)
            .await?;
    }
    ctx.metrics.forget_rollout(&ns, &ro.name_any());
    info!("Rollout deleted; Services and traffic routes given back");
    Ok(Action::await_change())
}

/// Every analysis the Rollout declares, by field path, with the run spec its templates make
/// for revision `desired` (or why they cannot make one).
async fn declared_analysis(
    ro: &Rollout,
    client: &Client,
    ns: &str,
    desired: &str,
) -> Result<BTreeMap<String, Result<AnalysisRunSpec, String>>, Error> {
    let mut wanted: Vec<(String, AnalysisUse)> = Vec::new();
    if let Some(c) = &ro.spec.strategy.canary {
        for (i, step) in c.steps().iter().enumerate() {
            if let Some(a) = &step.analysis {
                wanted.push((
                    format!("spec.strategy.canary.steps[{i}].analysis"),
                    AnalysisUse::of(a),
                ));
            }
        }
        if let Some(a) = &c.analysis {
            wanted.push((
                "spec.strategy.canary.analysis".into(),
                AnalysisUse {
                    templates: a.templates.clone(),
                    args: a.args.clone().unwrap_or_default(),
                    dry_run: a.dry_run.clone(),
                    retention: a.measurement_retention.clone(),
                },
            ));
        }
    }
    if let Some(b) = &ro.spec.strategy.blue_green {
        if let Some(a) = &b.pre_promotion_analysis {
            wanted.push((
                "spec.strategy.blueGreen.prePromotionAnalysis".into(),
                AnalysisUse::of(a),
            ));
        }
        if let Some(a) = &b.post_promotion_analysis {
            wanted.push((
                "spec.strategy.blueGreen.postPromotionAnalysis".into(),
                AnalysisUse::of(a),
            ));
        }
    }
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let needs_cluster = wanted
        .iter()
        .flat_map(|(_, u)| u.templates.iter())
        .any(|t| t.cluster_scope == Some(true));
    // Refused reads are the Rollout's problem (InvalidSpec, naming them); anything else
    // (a timeout, an unavailable API server) is retried.
    let local: Result<Vec<AnalysisTemplate>, String> = refused(
        timed(
            "list AnalysisTemplates",
            Api::<AnalysisTemplate>::namespaced(client.clone(), ns).list(&ListParams::default()),
        )
        .await
        .map(|l| l.items),
    )?;
    let cluster: Result<Vec<ClusterAnalysisTemplate>, String> = if needs_cluster {
        refused(
            timed(
                "list ClusterAnalysisTemplates",
                Api::<ClusterAnalysisTemplate>::all(client.clone()).list(&ListParams::default()),
            )
            .await
            .map(|l| l.items),
        )?
    } else {
        Ok(Vec::new())
    };
    let ctx = ArgContext {
        stable_hash: ro
            .status
            .as_ref()
            .and_then(|s| s.stable_rs.clone())
            .or_else(|| Some(desired.to_string())),
        latest_hash: Some(desired.to_string()),
        rollout: serde_json::to_value(ro).unwrap_or_default(),
    };
    for (field, u) in wanted {
        let built = match (&local, &cluster) {
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            (Ok(local), Ok(cluster)) => {
                let lookup = |r: &AnalysisTemplateRef| -> Option<AnalysisTemplateSpec> {
                    if r.cluster_scope == Some(true) {
                        cluster
                            .iter()
                            .find(|t| t.name_any() == r.template_name)
                            .map(|t| t.spec.clone().into())
                    } else {
                        local
                            .iter()
                            .find(|t| t.name_any() == r.template_name)
                            .map(|t| t.spec.clone())
                    }
                };
                merge_templates(&u.templates, &lookup)
                    .and_then(|merged| build_run(&merged, &u.args, &ctx))
                    .map(|mut spec| {
                        if let Some(d) = u.dry_run {
                            spec.dry_run.get_or_insert_with(Vec::new).extend(d);
                        }
                        if let Some(r) = u.retention {
                            spec.measurement_retention
                                .get_or_insert_with(Vec::new)
                                .extend(r);
                        }
                        spec
                    })
                    .map_err(|e| e.to_string())
            }
        };
        out.insert(field, built);
    }
    Ok(out)
}

/// What the traffic router's objects lack, by the Rollout field that names them; also
/// refuses an object another (older) Rollout already routes.
async fn traffic_problems(
    ro: &Rollout,
    client: &Client,
    ns: &str,
) -> Result<BTreeMap<String, Result<(), String>>, Error> {
    let Some(canary) = &ro.spec.strategy.canary else {
        return Ok(BTreeMap::new());
    };
    let Some(router) = router_for(canary) else {
        return Ok(BTreeMap::new());
    };
    // Checked against every header route any step sets, so a step never fails later.
    let mut header_routes: Vec<(String, Vec<crate::traffic::HeaderMatch>)> = Vec::new();
    for h in canary
        .steps()
        .iter()
        .filter_map(|s| s.set_header_route.as_ref())
    {
        let m: Vec<_> = h
            .matches
            .iter()
            .flatten()
            .filter_map(crate::traffic::HeaderMatch::from_api)
            .collect();
        if !m.is_empty() && !header_routes.iter().any(|(n, _)| n == &h.name) {
            header_routes.push((h.name.clone(), m));
        }
    }
    let state = RouteState {
        header_routes,
        stable_hash: "stable".into(),
        canary_hash: "canary".into(),
        ..Default::default()
    };
    let mut out = crate::traffic::kube::verify(client, ns, router.as_ref(), &state).await?;
    // Two Rollouts must not route one object: the younger one is refused.
    for (field, why) in claimed_by_others(ro, client, ns, router.as_ref()).await? {
        out.insert(field, Err(why));
    }
    Ok(out)
}

/// The objects of `router` that an older Rollout in the namespace already routes, by the
/// field that names them, with why.
async fn claimed_by_others(
    ro: &Rollout,
    client: &Client,
    ns: &str,
    router: &dyn crate::traffic::router::TrafficRouter,
) -> Result<BTreeMap<String, String>, Error> {
    let others = timed(
        "list Rollouts",
        Api::<Rollout>::namespaced(client.clone(), ns).list(&ListParams::default()),
    )
    .await?
    .items;
    let key = |r: &Rollout| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    };
    let mut out = BTreeMap::new();
    for other in others
        .iter()
        .filter(|o| o.uid() != ro.uid() && key(o) < key(ro))
    {
        let Some(theirs) = other.spec.strategy.canary.as_ref().and_then(router_for) else {
            continue;
        };
        let theirs = theirs.targets();
        for t in router.targets() {
            let same = theirs.iter().any(|o| {
                o.kind == t.kind
                    && o.name == t.name
                    && o.namespace.as_deref().unwrap_or(ns) == t.namespace.as_deref().unwrap_or(ns)
            });
            if same {
                out.insert(
                    t.field.clone(),
                    format!(
                        "{} is already routed by Rollout {:?}",
                        t.describe(),
                        other.name_any()
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// A read the API server refused (403) becomes the Rollout's problem; other errors stay
/// errors, to be retried.
#[allow(clippy::type_complexity)]
fn refused<T>(r: Result<Vec<T>, Error>) -> Result<Result<Vec<T>, String>, Error> {
    match r {
        Err(Error::Kube {
            source: kube::Error::Api(e),
            what,
        }) if e.code == 403 => Ok(Err(format!("{what}: {}", e.message))),
        Err(e) => Err(e),
        Ok(v) => Ok(Ok(v)),
    }
}

/// True when one of the Rollout's analyses names the (namespaced) template.
fn uses_template(ro: &Rollout, name: &str) -> bool {
    let named = |refs: &[AnalysisTemplateRef]| {
        refs.iter()
            .any(|r| r.cluster_scope != Some(true) && r.template_name == name)
    };
    let s = &ro.spec.strategy;
    s.canary.as_ref().is_some_and(|c| {
        c.analysis.as_ref().is_some_and(|a| named(&a.templates))
            || c.steps()
                .iter()
                .filter_map(|st| st.analysis.as_ref())
                .any(|a| named(&a.templates))
    }) || s.blue_green.as_ref().is_some_and(|b| {
        [&b.pre_promotion_analysis, &b.post_promotion_analysis]
            .into_iter()
            .flatten()
            .any(|a| named(&a.templates))
    })
}

/// The parts of a step, background or promotion analysis that make its run.
struct AnalysisUse {
    templates: Vec<AnalysisTemplateRef>,
    args: Vec<crate::api::analysis::Argument>,
    dry_run: Option<Vec<crate::api::analysis::DryRun>>,
    retention: Option<Vec<crate::api::analysis::MeasurementRetention>>,
}

impl AnalysisUse {
    fn of(a: &crate::api::rollout::RolloutAnalysis) -> Self {
        AnalysisUse {
            templates: a.templates.clone(),
            args: a.args.clone().unwrap_or_default(),
            dry_run: a.dry_run.clone(),
            retention: a.measurement_retention.clone(),
        }
    }
}

/// The Services a Rollout names.
fn named_services(ro: &Rollout) -> Vec<&String> {
    match (&ro.spec.strategy.canary, &ro.spec.strategy.blue_green) {
        (Some(c), _) => [&c.stable_service, &c.canary_service]
            .into_iter()
            .flatten()
            .collect(),
        (None, Some(b)) => std::iter::once(&b.active_service)
            .chain(b.preview_service.as_ref())
            .collect(),
        (None, None) => Vec::new(),
    }
}

async fn reconcile_rollout(ro: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let now = Timestamp::now();
    let world = observe(&ro, ctx).await?;
    let mut plan = decide(&ro, &world.observed, now);
    // The status is written last, after every other write of the plan went through: a refusal
    // shown earlier is over by then.
    super::refused::clear(&mut plan.status);
    let before = ctx.writes.get();
    let template = world.observed.template.as_ref();
    let applied = apply(
        ctx,
        &ro,
        &plan,
        &world.replica_sets,
        template,
        &world.services,
    )
    .await;
    if let Err(e) = applied {
        if let Some(refusal) = e.refusal() {
            report_refusal(&ro, &refusal, ctx).await;
        }
        return Err(e);
    }
    let writes = ctx.writes.get() - before;
    let (ns, name) = (ro.namespace().unwrap_or_default(), ro.name_any());
    for e in &plan.events {
        info!(reason = e.reason, message = %e.message, "event");
        ctx.metrics.decision(&ns, &name, e.reason);
    }
    let weight = plan
        .status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight);
    ctx.metrics.observe_rollout(
        &ns,
        &name,
        plan.status.phase,
        plan.status.current_step_index,
        weight,
    );
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    // The resourceVersion decided on, so a test (or a person) can find the reconcile of one
    // particular change in the log.
    let resource_version = ro.resource_version().unwrap_or_default();
    tracing::debug!(%resource_version, writes, step = ?plan.status.current_step_index, phase = ?plan.status.phase, "reconciled");
    Ok(match plan.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

fn error_policy(ro: Arc<Rollout>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: error.reason().to_string(),
        })
        .inc();
    match error.reason() {
        // The Rollout changed since it was read (often by Sluice's own last write): decide
        // again on the fresh object. Nothing was lost: what was not written is decided anew.
        "Conflict" => {
            tracing::debug!(%error, "conflict; deciding again");
            Action::requeue(Duration::from_millis(100))
        }
        _ => {
            let key = format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any());
            let wait = ctx.backoff.failed(&key);
            warn!(reason = error.reason(), %error, retry_in = ?wait, "reconcile failed");
            Action::requeue(wait)
        }
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    opts: Options,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = opts.namespace.clone();
    let api = |c: &Client| -> (Api<Rollout>, Api<ReplicaSet>, Api<Pod>, Api<Service>) {
        match &ns {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
            ),
        }
    };
    let (rollouts, sets, pods, services) = api(&client);
    let deployments: Api<Deployment> = match &ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let runs: Api<AnalysisRun> = match &ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let owned = watcher::Config::default().labels(LABEL_ROLLOUT);
    let controller = Controller::new(rollouts, watcher::Config::default());
    let store = controller.store();
    let workload_store = controller.store();
    let template_store = controller.store();
    let templates: Api<AnalysisTemplate> = match &ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    // One shutdown for both controllers.
    let shutdown = shutdown.shared();
    let analysis = crate::analysis::controller::run(
        client.clone(),
        opts.namespace.clone(),
        metrics.clone(),
        recorder.clone(),
        shutdown.clone(),
    );
    let ctx = Arc::new(Context {
        recorder,
        client,
        writes: WriteCounter::new(metrics.clone()),
        metrics,
        restart_threshold: opts.restart_threshold,
        backoff: Default::default(),
    });
    info!(namespace = ?opts.namespace, "sluice controller started");
    let rollouts = controller
        .owns(sets, owned.clone())
        .owns(runs, owned.clone())
        .watches(pods, owned, |pod: Pod| {
            let ns = pod.namespace();
            pod.labels().get(LABEL_ROLLOUT).map(|name| {
                ObjectRef::<Rollout>::new(name).within(ns.as_deref().unwrap_or_default())
            })
        })
        .watches(services, watcher::Config::default(), move |svc: Service| {
            let ns = svc.namespace().unwrap_or_default();
            let name = svc.name_any();
            store
                .state()
                .into_iter()
                .filter(|ro| ro.namespace().as_deref() == Some(ns.as_str()))
                .filter(|ro| named_services(ro).contains(&&name))
                .map(|ro| ObjectRef::from(ro.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| {
                // A change to a workloadRef Deployment's template is a new revision.
                let ns = d.namespace().unwrap_or_default();
                let name = d.name_any();
                workload_store
                    .state()
                    .into_iter()
                    .filter(|ro| ro.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|ro| {
                        ro.spec
                            .workload_ref
                            .as_ref()
                            .is_some_and(|w| w.name == name)
                    })
                    .map(|ro| ObjectRef::from(ro.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            templates,
            watcher::Config::default(),
            move |t: AnalysisTemplate| {
                // A template created or changed: Rollouts that use it check again (an
                // InvalidSpec for a missing template recovers at once).
                let ns = t.namespace().unwrap_or_default();
                let name = t.name_any();
                template_store
                    .state()
                    .into_iter()
                    .filter(|ro| ro.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|ro| uses_template(ro, &name))
                    .map(|ro| ObjectRef::from(ro.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller");
            }
        });
    tokio::join!(rollouts, analysis);
    info!("sluice controller stopped");
}
