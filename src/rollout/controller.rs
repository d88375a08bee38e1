//! The Rollout reconciler: observe (I/O) → decide (pure) → apply (I/O).
//!
//! Reads the world from watch caches (`cache`): Rollouts, their ReplicaSets, pods and
//! AnalysisRuns (by the `sluice.dev/rollout` label, never every ReplicaSet in the cluster), and
//! the Services, Deployments, AnalysisTemplates and traffic router objects they name. Each
//! cache's changes wake the Rollouts that read the changed object, so a reconcile with nothing
//! to do sends no request at all. Reconciles run at most `concurrency` at a time, and the
//! periodic requeue of each Rollout is spread with jitter.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};

use crate::runtime::events::Events;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::api::constants::{FINALIZER, LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT, condition};
use crate::api::rollout::Rollout;
use crate::runtime::calls::timed;
use crate::runtime::context::{Shared, key, key_of};
use crate::runtime::error::{Error, Refusal};
use crate::runtime::events;
use crate::runtime::locks::KeyLocks;
use crate::runtime::malformed::{self, Malformed, Parsed, Reported};
use crate::runtime::own_writes::OwnWrites;
use crate::runtime::throttle;
use crate::telemetry::{Metrics, Reconciled, WorkQueue};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};

use super::apply::{
    Current, StatusOf, apply, readable_status, selector_patch, traffic_params, write_status,
};
use super::cache::{Caches, Reads, Triggers};
use super::cached::{CachedPod, CachedRollout, CachedService};
use super::decide::{DEFAULT_RESTART_THRESHOLD, decide};
use super::observe::policy::named_services;
use super::observe::{Sources, claimed_by_others, observe, resolve_selector};
use crate::traffic::router::router_for;
use crate::traffic::watch::{RouterCaches, RouterChange};

/// What every reconcile of a Rollout shares.
pub struct Context {
    /// What every controller's context has (client, Events, write counter, metrics, backoff,
    /// Rollouts that do not read as already reported).
    pub shared: Shared,
    /// Restarts of a crash-looping container before the release is aborted.
    pub restart_threshold: i32,
    /// Status writes the Rollout cache may not have seen yet.
    pub own_writes: OwnWrites,
    /// What reconciles read, instead of the API server.
    pub caches: Caches,
    /// How often a Rollout with nothing scheduled is reconciled anyway (spread with jitter).
    pub requeue: Duration,
    /// One reconcile per Rollout at a time, across the queue and the urgent lane.
    pub locks: KeyLocks,
    /// Tells receivers of decisions, when notifications are configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// Reconciles that may run at once, by default (as Argo Rollouts' `--rollout-threads`).
pub const DEFAULT_CONCURRENCY: u16 = 10;
/// The periodic requeue of a Rollout with nothing scheduled, by default.
pub const DEFAULT_REQUEUE: Duration = Duration::from_secs(300);

/// Options of the controller process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch these namespaces only (default, when empty: all).
    pub namespaces: Vec<String>,
    pub restart_threshold: i32,
    /// Reconciles that may run at once (0: no limit).
    pub concurrency: u16,
    /// The periodic requeue, before jitter.
    pub requeue: Duration,
    /// Read the cluster-scoped kinds (CustomResourceDefinitions, to know which router kinds
    /// are served; ClusterAnalysisTemplates). Off for RBAC with Roles only: every router kind
    /// is then watched whether served or not, and a Rollout naming a ClusterAnalysisTemplate
    /// gets InvalidSpec saying it is not read.
    pub cluster_reads: bool,
    /// The ConfigMap (and Secret) of the notifications' configuration; none: no
    /// notifications.
    pub notifications: Option<crate::notify::Source>,
    /// How the caches read their first lists (`Auto`: asked of the API server at start).
    pub initial_lists: crate::runtime::lists::InitialLists,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespaces: Vec::new(),
            restart_threshold: DEFAULT_RESTART_THRESHOLD,
            concurrency: DEFAULT_CONCURRENCY,
            requeue: DEFAULT_REQUEUE,
            cluster_reads: true,
            notifications: None,
            initial_lists: crate::runtime::lists::InitialLists::Auto,
        }
    }
}

/// `period` stretched or shrunk by up to a fifth: `unit` in [0, 1) picks where.
pub fn spread(period: Duration, unit: f64) -> Duration {
    period.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// [`spread`] at a random point, so Rollouts reconciled together drift apart.
fn jittered(period: Duration) -> Duration {
    use std::hash::BuildHasher;
    // Each RandomState is freshly keyed: its hash of anything is a random number.
    let r = std::collections::hash_map::RandomState::new().hash_one(0u8);
    spread(period, (r >> 11) as f64 / (1u64 << 53) as f64)
}

/// Reconciles the Rollout once no other reconcile of it runs (see `runtime::locks`).
async fn reconcile(cached: Arc<CachedRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _one_at_a_time = ctx.locks.lock(&key(cached.as_ref())).await;
    reconcile_held(cached, ctx.clone()).await
}

/// Reconciles the Rollout, its lock held by the caller.
#[instrument(name = "reconcile", skip_all, fields(namespace = cached.namespace().unwrap_or_default(), rollout = cached.name_any()))]
async fn reconcile_held(cached: Arc<CachedRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let parsed = cached.to_parsed();
    let ro = match parsed.0 {
        Ok(ro) => Arc::new(ro),
        Err(ref bad) => return report_malformed(&parsed, bad, &ctx).await,
    };
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let key = key(ro.as_ref());
    ctx.shared.malformed.forget(&format!("Rollout {key}"));
    let api: Api<Rollout> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, ro, |event| async {
        match event {
            FinalizerEvent::Apply(ro) => reconcile_rollout(ro, &ctx).await,
            FinalizerEvent::Cleanup(ro) => cleanup(ro, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.shared.backoff.succeeded(&key);
    Ok(action)
}

/// A Rollout that does not read: the `InvalidSpec` condition naming the field (its conditions
/// only; the spec is the user's) and one Warning Event per distinct error, then nothing until
/// the Rollout changes. One being deleted loses Sluice's finalizer at once: what the cleanup
/// would give back is named in the part that does not read.
async fn report_malformed(
    parsed: &Parsed<Rollout>,
    bad: &Malformed,
    ctx: &Context,
) -> Result<Action, Error> {
    if parsed.meta().deletion_timestamp.is_some() {
        release_finalizer(parsed, bad, ctx).await?;
        return Ok(Action::await_change());
    }
    let message = format!("the Rollout cannot be read: {}", bad.describe());
    warn!(%message, "Rollout does not read");
    let mut status = readable_status(parsed);
    let shown = super::conditions::get(&status.conditions, condition::INVALID_SPEC)
        .is_some_and(|c| c.status == "True" && c.message == message);
    if shown {
        return Ok(Action::await_change());
    }
    super::conditions::set(
        &mut status.conditions,
        condition::INVALID_SPEC,
        true,
        malformed::REASON,
        &message,
        parsed.meta().generation,
        Timestamp::now(),
    );
    let what = "show InvalidSpec in the Rollout's status";
    if let Err(e) = write_status(ctx, StatusOf::Unread(parsed), &status, what).await {
        warn!(error = %e, "could not show InvalidSpec on the Rollout");
    }
    if ctx
        .shared
        .malformed
        .first(format!("Rollout {}", key(parsed)), &message)
    {
        let reference = kube::Resource::object_ref(parsed, &());
        malformed::publish(&ctx.shared.events, &reference, &message);
    }
    Ok(Action::await_change())
}

/// Takes Sluice's finalizer off a Rollout that does not read and is being deleted; Services
/// and routes are left as they are.
async fn release_finalizer(
    parsed: &Parsed<Rollout>,
    bad: &Malformed,
    ctx: &Context,
) -> Result<(), Error> {
    let meta = parsed.meta();
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let ns = parsed.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Parsed<Rollout>> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": rest, "resourceVersion": meta.resource_version}});
    ctx.shared.writes.add();
    timed(
        "remove the finalizer of a Rollout that does not read",
        api.patch(
            &parsed.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        ),
    )
    .await?;
    warn!(error = %bad.describe(), "Rollout deleted while it does not read; Services and routes left as they are");
    Ok(())
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
    let what = "show the refusal in the Rollout's status";
    if let Err(e) = write_status(ctx, StatusOf::Read(ro), &status, what).await {
        warn!(error = %e, "could not show a refused request on the Rollout");
        return;
    }
    let describe = refusal.describe();
    events::publish(
        &ctx.shared.events,
        &kube::Resource::object_ref(ro, &()),
        EventType::Warning,
        condition::WRITE_REFUSED,
        &describe,
        &describe,
    );
}

/// The Rollout is being deleted: take Sluice's key out of each Service's selector (the
/// ReplicaSets go with the Rollout through their owner references).
async fn cleanup(ro: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    ctx.caches
        .synced()
        .await
        .map_err(|missing| Error::CachesNotListed(missing.to_string()))?;
    let api: Api<Service> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let keyed = |s: &CachedService| {
        s.selector()
            .is_some_and(|s| s.contains_key(LABEL_POD_TEMPLATE_HASH))
    };
    for name in named_services(&ro) {
        // Gone, or without Sluice's key: nothing to give back.
        let cached = ctx.caches.services.get(&ObjectRef::new(name).within(&ns));
        if !cached.is_some_and(|s| keyed(&s)) {
            continue;
        }
        ctx.shared.writes.add();
        timed(
            "give the Service back",
            api.patch(name, &traffic_params(), &selector_patch(None)),
        )
        .await?;
    }
    if let Some(router) = ro.spec.strategy.canary.as_ref().and_then(router_for) {
        // Objects another Rollout routes are its own: this one never wrote them.
        let skip: Vec<String> = claimed_by_others(&ro, &ctx.caches, &ns, router.as_ref())
            .into_keys()
            .collect();
        crate::traffic::kube::restore(
            &ctx.caches.routers,
            &ctx.shared.client,
            &ns,
            router.as_ref(),
            &skip,
            &ctx.shared.writes,
        )
        .await?;
    }
    ctx.shared.metrics.rollouts().forget(&ns, &ro.name_any());
    info!("Rollout deleted; Services and traffic routes given back");
    Ok(Action::await_change())
}

async fn reconcile_rollout(ro: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.shared.metrics.reconciles.inc();
    ctx.caches
        .synced()
        .await
        .map_err(|missing| Error::CachesNotListed(missing.to_string()))?;
    if ctx.own_writes.cache_is_behind(
        &key(ro.as_ref()),
        &ro.resource_version().unwrap_or_default(),
    ) {
        // The watch delivers Sluice's own write in a moment and wakes this Rollout again; the
        // requeue is only a safety net.
        tracing::debug!("the cache has not seen Sluice's last status write yet; waiting for it");
        return Ok(requeue(ctx, &ro, Duration::from_secs(2)));
    }
    if let Some(n) = &ctx.notifier {
        n.synced().await;
    }
    let now = Timestamp::now();
    let sources = Sources {
        caches: &ctx.caches,
        client: &ctx.shared.client,
        restart_threshold: ctx.restart_threshold,
    };
    let ro = resolve_selector(ro, &ctx.caches);
    let world = observe(&ro, &sources).await?;
    let mut plan = decide(&ro, &world.observed, now);
    if let Some(n) = &ctx.notifier {
        n.record(&ro, &mut plan, now);
    }
    // The status is written last, after every other write of the plan went through: a refusal
    // shown earlier is over by then.
    super::refused::clear(&mut plan.status);
    let pod_plan = super::pods::plan(&ro, &world.observed, &mut plan, now);
    let before = ctx.shared.writes.get();
    let current = Current {
        replica_sets: &world.replica_sets,
        template: world.observed.template.as_ref(),
        services: &world.services,
        pods: &world.pods,
    };
    let applied = apply(ctx, &ro, &plan, &pod_plan, &current).await;
    if let Err(e) = applied {
        if let Some(refusal) = e.refusal() {
            report_refusal(&ro, &refusal, ctx).await;
        }
        return Err(e);
    }
    let writes = ctx.shared.writes.get() - before;
    if let Some(n) = &ctx.notifier {
        // Delivered apart: the decision is written, and no receiver holds the next one.
        n.deliver(&ro, &plan.status);
    }
    let (ns, name) = (ro.namespace().unwrap_or_default(), ro.name_any());
    for e in &plan.events {
        info!(reason = e.reason, message = %e.message, "event");
        ctx.shared.metrics.rollouts().decision(&ns, &name, e.reason);
    }
    let weight = plan
        .status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight);
    ctx.shared.metrics.rollouts().observe(
        &ns,
        &name,
        plan.status.phase,
        plan.status.current_step_index,
        weight,
    );
    let replicas = role_replicas(&plan, &world.observed);
    ctx.shared.metrics.rollouts().replicas(&ns, &name, replicas);
    ctx.shared.metrics.rollouts().reconciled(
        &ns,
        &name,
        &reconciled(&plan, replicas, started, std::time::Instant::now()),
    );
    ctx.shared
        .metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    // The resourceVersion decided on, so a test (or a person) can find the reconcile of one
    // particular change in the log.
    let resource_version = ro.resource_version().unwrap_or_default();
    tracing::debug!(%resource_version, writes, step = ?plan.status.current_step_index, phase = ?plan.status.phase, "reconciled");
    let after = plan.requeue_after.unwrap_or_else(|| jittered(ctx.requeue));
    Ok(requeue(ctx, &ro, after))
}

/// Come back after `after`, told to the work queue's depth too.
fn requeue(ctx: &Context, ro: &Rollout, after: Duration) -> Action {
    ctx.shared.metrics.queue.plan_requeue(&key(ro), after);
    Action::requeue(after)
}

/// A reconcile from the queue (the urgent lane calls `reconcile` itself): the work queue's
/// depth counts the Rollout as waiting until here, and as due again when its requeue comes.
async fn reconcile_queued(cached: Arc<CachedRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let k = key(cached.as_ref());
    ctx.shared.metrics.queue.started(&k);
    let result = reconcile(cached, ctx.clone()).await;
    ctx.shared.metrics.queue.finished(&k, result.is_ok());
    result
}

fn error_policy(ro: Arc<CachedRollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let k = key(ro.as_ref());
    let wait = ctx.shared.retry_wait(&k, error, "Rollout");
    ctx.shared.metrics.queue.retry(&k, wait);
    Action::requeue(wait)
}

/// The Rollouts (that read) which read `what`, as reconcile requests: an index lookup, never
/// a scan of every Rollout.
fn rollouts_reading(caches: &Caches, what: Reads) -> Vec<ObjectRef<CachedRollout>> {
    caches
        .rollouts_reading(&what)
        .into_iter()
        .filter(|ro| ro.reads())
        .map(|ro| ObjectRef::from(ro.as_ref()))
        .collect()
}

/// The Rollouts a router change concerns.
fn woken_by(caches: &Caches, change: &RouterChange) -> Vec<ObjectRef<CachedRollout>> {
    match change {
        RouterChange::Object {
            kind,
            namespace,
            name,
        } => rollouts_reading(
            caches,
            Reads::RouterObject {
                kind: *kind,
                namespace: namespace.clone(),
                name: name.clone(),
            },
        ),
        RouterChange::Kind(kind) => rollouts_reading(caches, Reads::RouterKind(*kind)),
    }
}

/// One Warning Event per distinct error on an (Cluster)AnalysisTemplate that does not read; the
/// Rollouts that use it show `InvalidSpec` naming it.
fn report_template<K>(t: &Parsed<K>, events: &Events, reported: &Arc<Reported>)
where
    K: kube::Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let key = format!("{kind} {}", key(t));
    let Err(bad) = &t.0 else {
        reported.forget(&key);
        return;
    };
    let message = format!("the {kind} cannot be read: {}", bad.describe());
    if !reported.first(key, &message) {
        return;
    }
    warn!(%message, template = t.name_any(), "template does not read");
    let reference = kube::Resource::object_ref(t, &());
    malformed::publish(events, &reference, &message);
}

/// The caches over the watched namespaces, their first lists streamed or paged as
/// `opts.initial_lists` says (`auto`: asked of the API server once, through the Rollouts).
async fn caches(client: &Client, opts: &Options, routers: RouterCaches) -> (Caches, Triggers) {
    let ns = &opts.namespaces;
    let probe: kube::Api<crate::rollout::cached::CachedRollout> = match ns.first() {
        Some(first) => kube::Api::namespaced(client.clone(), first),
        None => kube::Api::all(client.clone()),
    };
    let lists = crate::runtime::lists::decide(opts.initial_lists, &probe).await;
    Caches::new(client, ns, opts.cluster_reads, routers, lists)
}

/// The lanes that publish Events in the background, as controller `sluice`.
fn event_lanes(client: &Client, metrics: &Metrics) -> Events {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    Events::start(recorder, metrics.events_dropped.clone())
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    opts: Options,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = opts.namespaces.clone();
    let (changes_tx, changes_rx) = futures::channel::mpsc::unbounded::<RouterChange>();
    let (routers, crd_watch) =
        RouterCaches::start(client.clone(), ns.clone(), opts.cluster_reads, changes_tx);
    let (caches, triggers) = caches(&client, &opts, routers.clone()).await;
    // One set of Event lanes for the three controllers.
    let events = event_lanes(&client, &metrics);
    // One shutdown for both controllers.
    let shutdown = shutdown.shared();
    let analysis = crate::analysis::controller::run(
        client.clone(),
        ns,
        metrics.clone(),
        events.clone(),
        shutdown.clone(),
    );
    let exercises = crate::exercise::controller::run(
        client.clone(),
        opts.namespaces.clone(),
        metrics.clone(),
        events.clone(),
        caches.clone(),
        shutdown.clone(),
    );
    let notifier = opts.notifications.clone().map(|source| {
        crate::notify::Notifier::start(
            client.clone(),
            source,
            metrics.clone(),
            caches.rollouts.clone(),
        )
    });
    let ctx = Arc::new(Context {
        notifier,
        shared: Shared::new(client, events, metrics),
        restart_threshold: opts.restart_threshold,
        own_writes: OwnWrites::default(),
        caches: caches.clone(),
        requeue: opts.requeue,
        locks: KeyLocks::default(),
    });
    info!(namespaces = ?opts.namespaces, concurrency = opts.concurrency, "sluice controller started");
    {
        let caches = caches.clone();
        let since = std::time::Instant::now();
        tokio::spawn(async move { caches.report_sync(since).await });
    }
    let (urgent_tx, urgent_rx) = futures::channel::mpsc::unbounded();
    let triggers = Triggers {
        runs: failed_verdicts_to(urgent_tx, triggers.runs),
        ..triggers
    };
    let (lane, stop) = (urgent_lane(urgent_rx, ctx.clone()), shutdown.clone());
    let urgent = async move {
        tokio::select! {
            () = lane => {}
            () = stop => {}
        }
    };
    let rollouts = woken_by_what_they_read(triggers, changes_rx, &ctx)
        .with_config(controller::Config::default().concurrency(opts.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile_queued, error_policy, ctx.clone())
        .for_each(|res| {
            if let Err(controller::Error::ObjectNotFound(gone)) = &res {
                let k = key_of(gone.namespace.as_deref(), &gone.name);
                ctx.shared.metrics.queue.forget(&k);
            }
            async move {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "controller");
                }
            }
        });
    tokio::join!(rollouts, analysis, exercises, urgent);
    // The Events of the last reconciles, while the API server still takes them.
    ctx.shared.events.flush(EVENTS_FLUSH).await;
    if let Some(n) = &ctx.notifier {
        n.stop();
    }
    crd_watch.abort();
    routers.stop();
    info!("sluice controller stopped");
}

/// How long a stopping controller waits for its Events to be published.
const EVENTS_FLUSH: Duration = Duration::from_secs(5);

/// Reconciles that may run at once in the urgent lane.
const URGENT_CONCURRENCY: usize = 4;

/// A Rollout for the urgent lane, with when its failed run was seen.
type UrgentRequest = (ObjectRef<CachedRollout>, std::time::Instant);

/// Passes the AnalysisRun watch through, and sends to the urgent lane each Rollout whose run
/// failed (or errored) while the controller watched it measuring. A run already failed when
/// first seen (after a restart, say) goes through the queue as any change does: a restart must
/// not turn every old failure into requests that skip the rate limit.
fn failed_verdicts_to(
    urgent: futures::channel::mpsc::UnboundedSender<UrgentRequest>,
    runs: crate::rollout::cache::Trigger<Parsed<AnalysisRun>>,
) -> crate::rollout::cache::Trigger<Parsed<AnalysisRun>> {
    let mut watch = FreshFailures::default();
    runs.inspect(move |r| {
        if let Ok(run) = r
            && let Some(rollout) = watch.saw(run)
        {
            let _ = urgent.unbounded_send((rollout, std::time::Instant::now()));
        }
    })
    .boxed()
}

/// The runs seen measuring (by uid), to tell a failure seen happening from one found.
#[derive(Default)]
pub struct FreshFailures {
    measuring: std::collections::HashSet<String>,
}

impl FreshFailures {
    /// Notes `run`'s phase; returns its Rollout when it failed since it was seen measuring.
    pub fn saw(&mut self, run: &Parsed<AnalysisRun>) -> Option<ObjectRef<CachedRollout>> {
        let uid = run.uid()?;
        let phase = run.0.as_ref().ok()?.status.as_ref().and_then(|s| s.phase);
        match phase {
            None | Some(AnalysisPhase::Pending | AnalysisPhase::Running) => {
                if run.meta().deletion_timestamp.is_none() {
                    self.measuring.insert(uid);
                } else {
                    self.measuring.remove(&uid);
                }
                None
            }
            Some(AnalysisPhase::Failed | AnalysisPhase::Error) => {
                if !self.measuring.remove(&uid) {
                    return None;
                }
                let owner = run
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Rollout")?;
                Some(ObjectRef::new(&owner.name).within(&run.namespace()?))
            }
            Some(_) => {
                self.measuring.remove(&uid);
                None
            }
        }
    }
}

/// Reconciles, at once and in the urgent lane, each Rollout whose analysis just failed: its
/// abort neither waits its turn behind routine reconciles nor queues behind their requests
/// (see `runtime::throttle`). The queue reconciles it too, afterwards, and finds it done. Each
/// is logged with, from the failure's watch event, how long until its reconcile began
/// (`waited_ms`: for a place in the lane and for any reconcile of the same Rollout already
/// running) and until its writes were done (`ms`).
async fn urgent_lane(
    rx: futures::channel::mpsc::UnboundedReceiver<UrgentRequest>,
    ctx: Arc<Context>,
) {
    rx.for_each_concurrent(URGENT_CONCURRENCY, |(r, seen)| {
        let ctx = ctx.clone();
        async move {
            let namespace = r.namespace.as_deref().unwrap_or_default();
            let lock = ctx
                .locks
                .lock(&key_of(r.namespace.as_deref(), &r.name))
                .await;
            let waited_ms = seen.elapsed().as_millis() as u64;
            // Read after the lock: a reconcile that held it may have changed the Rollout.
            let Some(parsed) = ctx.caches.rollouts.get(&r) else {
                return;
            };
            let result = throttle::urgent(reconcile_held(parsed, ctx.clone())).await;
            drop(lock);
            let ms = seen.elapsed().as_millis() as u64;
            match result {
                Ok(_) => info!(
                    namespace,
                    rollout = r.name,
                    waited_ms,
                    ms,
                    "urgent reconcile after a failed analysis"
                ),
                Err(e) => warn!(
                    namespace,
                    rollout = r.name,
                    waited_ms,
                    ms,
                    error = %e,
                    "urgent reconcile after a failed analysis (the queue retries)"
                ),
            }
        }
    })
    .await
}

/// The Rollout controller over the caches' watches: a change to anything a Rollout reads
/// wakes that Rollout (and only Rollouts that exist and read it).
fn woken_by_what_they_read(
    triggers: Triggers,
    router_changes: UnboundedReceiver<RouterChange>,
    ctx: &Context,
) -> Controller<CachedRollout> {
    let store = ctx.caches.rollouts.clone();
    let events = ctx.shared.events.clone();
    let reported = Arc::new(Reported::default());
    let s_pods = store.clone();
    let (c_svc, c_dep, c_tmpl, c_cluster, c_router) = (
        ctx.caches.clone(),
        ctx.caches.clone(),
        ctx.caches.clone(),
        ctx.caches.clone(),
        ctx.caches.clone(),
    );
    let (t_events, t_reported) = (events.clone(), reported.clone());
    let queue = ctx.shared.metrics.queue.clone();
    let (q_ro, q_rs, q_run, q_pod, q_svc, q_dep, q_tmpl, q_cluster, q_router) = (
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue.clone(),
        queue,
    );
    let rollouts = triggers.rollouts.inspect(move |r| {
        if let Ok(ro) = r {
            q_ro.woken(&key(ro));
        }
    });
    let replica_sets = triggers
        .replica_sets
        .inspect(move |r| wakes_owner(&q_rs, r.as_ref().ok()));
    let runs = triggers
        .runs
        .inspect(move |r| wakes_owner(&q_run, r.as_ref().ok()));
    Controller::for_stream(rollouts, store)
        .owns_stream(replica_sets)
        .owns_stream(runs)
        .watches_stream(triggers.pods, move |pod: CachedPod| {
            noted(&q_pod, pod_wakes(&s_pods, &pod))
        })
        .watches_stream(triggers.services, move |svc: CachedService| {
            noted(&q_svc, service_wakes(&c_svc, &svc))
        })
        .watches_stream(triggers.deployments, move |d: Deployment| {
            noted(&q_dep, deployment_wakes(&c_dep, &d))
        })
        .watches_stream(triggers.templates, move |t: Parsed<AnalysisTemplate>| {
            // A template created or changed: Rollouts that use it check again (an
            // InvalidSpec for a missing or unreadable template recovers at once).
            report_template(&t, &t_events, &t_reported);
            let what = Reads::Template {
                namespace: t.namespace().unwrap_or_default(),
                name: t.name_any(),
            };
            noted(&q_tmpl, rollouts_reading(&c_tmpl, what))
        })
        .watches_stream(
            triggers.cluster_templates,
            move |t: Parsed<ClusterAnalysisTemplate>| {
                report_template(&t, &events, &reported);
                noted(
                    &q_cluster,
                    rollouts_reading(&c_cluster, Reads::ClusterTemplate(t.name_any())),
                )
            },
        )
        .reconcile_on(
            router_changes.flat_map(move |c| {
                futures::stream::iter(noted(&q_router, woken_by(&c_router, &c)))
            }),
        )
}

/// The Rollouts a change wakes, told to the work queue's depth on their way to the queue.
fn noted(
    queue: &WorkQueue,
    woken: impl IntoIterator<Item = ObjectRef<CachedRollout>>,
) -> Vec<ObjectRef<CachedRollout>> {
    let woken: Vec<_> = woken.into_iter().collect();
    for r in &woken {
        queue.woken(&key_of(r.namespace.as_deref(), &r.name));
    }
    woken
}

/// An owned object changed: each Rollout named among its owners is woken (as
/// `owns_stream` does).
fn wakes_owner<K: Resource>(queue: &WorkQueue, owned: Option<&K>) {
    let Some(owned) = owned else {
        return;
    };
    let ns = owned.meta().namespace.as_deref().unwrap_or_default();
    for o in owned.meta().owner_references.iter().flatten() {
        if o.kind == "Rollout" && o.api_version == Rollout::api_version(&()) {
            queue.woken(&key_of(Some(ns), &o.name));
        }
    }
}

/// The Rollout a pod belongs to, if it still exists: pods outlive their Rollout for a moment.
fn pod_wakes(store: &Store<CachedRollout>, pod: &CachedPod) -> Option<ObjectRef<CachedRollout>> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.label(LABEL_ROLLOUT)?;
    let key = ObjectRef::<CachedRollout>::new(&name).within(&ns);
    store.get(&key).map(|_| key)
}

/// The Rollouts that name a Service.
fn service_wakes(caches: &Caches, svc: &CachedService) -> Vec<ObjectRef<CachedRollout>> {
    let what = Reads::Service {
        namespace: svc.namespace().unwrap_or_default(),
        name: svc.name_any(),
    };
    rollouts_reading(caches, what)
}

/// The Rollouts whose `workloadRef` is a Deployment: a change to its template is a new
/// revision.
fn deployment_wakes(caches: &Caches, d: &Deployment) -> Vec<ObjectRef<CachedRollout>> {
    let what = Reads::Deployment {
        namespace: d.namespace().unwrap_or_default(),
        name: d.name_any(),
    };
    rollouts_reading(caches, what)
}

/// Desired (as planned, else as it is) and available replicas of the stable revision and of
/// the canary (the revision being released, when it is not the stable one).
/// What the durations and the cause counters need of one applied plan.
fn reconciled(
    plan: &super::decide::Plan,
    replicas: crate::telemetry::RoleReplicas,
    decided: std::time::Instant,
    written: std::time::Instant,
) -> Reconciled<'_> {
    let reasons = |r: &str| plan.events.iter().any(|e| e.reason == r);
    Reconciled {
        decided: Some(decided),
        written: Some(written),
        release_started: reasons("RolloutStarted") || reasons("RolloutRetried"),
        release_completed: reasons("RolloutCompleted"),
        aborted: plan.aborted,
        aborting: plan.status.abort == Some(true),
        off_the_new_revision: off_the_new_revision(plan, replicas),
        promotions: &plan.promotions,
        step: plan.status.current_step_index,
    }
}

/// No traffic goes to the revision being released: a traffic router's canary weight is 0, a
/// blue-green active Service selects the stable, or (a canary without a router, where pods
/// carry the traffic) the canary is planned no pods.
fn off_the_new_revision(
    plan: &super::decide::Plan,
    replicas: crate::telemetry::RoleReplicas,
) -> bool {
    let status = &plan.status;
    if let Some(w) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
        return w.canary.weight == 0;
    }
    if let Some(bg) = &status.blue_green {
        return bg.active_selector == status.stable_rs;
    }
    replicas.canary_desired == 0
}

fn role_replicas(
    plan: &super::decide::Plan,
    observed: &super::observe::Observed,
) -> crate::telemetry::RoleReplicas {
    let of = |hash: Option<&str>| -> (i32, i32) {
        let Some(hash) = hash else {
            return (0, 0);
        };
        let seen = observed.replica_sets.iter().find(|r| r.hash == hash);
        let desired = plan
            .replica_sets
            .iter()
            .find(|p| p.hash == hash)
            .map(|p| p.replicas)
            .or(seen.map(|r| r.replicas))
            .unwrap_or(0);
        (desired, seen.map_or(0, |r| r.available))
    };
    let stable = plan.status.stable_rs.as_deref();
    let canary = plan
        .status
        .current_pod_hash
        .as_deref()
        .filter(|h| Some(*h) != stable);
    let (stable_desired, stable_available) = of(stable);
    let (canary_desired, canary_available) = of(canary);
    crate::telemetry::RoleReplicas {
        stable_desired,
        stable_available,
        canary_desired,
        canary_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::router::TargetKind;
    use serde_json::json;

    fn run_in(phase: Option<&str>, uid: &str) -> Parsed<AnalysisRun> {
        let mut v = json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "AnalysisRun",
            "metadata": {
                "name": "web-abc-2-step2", "namespace": "shop", "uid": uid,
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web",
                    "uid": "r1", "controller": true
                }]
            },
            "spec": {"metrics": []}
        });
        if let Some(p) = phase {
            v["status"] = json!({ "phase": p });
        }
        Parsed(Ok(serde_json::from_value(v).expect("run")))
    }

    #[test]
    fn only_a_failure_seen_happening_goes_in_the_urgent_lane() {
        let mut w = FreshFailures::default();
        // Found failed (a restart): the queue handles it.
        assert_eq!(w.saw(&run_in(Some("Failed"), "old")), None);
        // Seen measuring, then failed: its Rollout, once.
        assert_eq!(w.saw(&run_in(None, "u1")), None);
        assert_eq!(w.saw(&run_in(Some("Running"), "u1")), None);
        let r = w.saw(&run_in(Some("Failed"), "u1")).expect("urgent");
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("web", Some("shop"))
        );
        assert_eq!(w.saw(&run_in(Some("Failed"), "u1")), None);
        // An error counts; success and inconclusive do not, and forget the run.
        assert_eq!(w.saw(&run_in(Some("Running"), "u2")), None);
        assert!(w.saw(&run_in(Some("Error"), "u2")).is_some());
        assert_eq!(w.saw(&run_in(Some("Running"), "u3")), None);
        assert_eq!(w.saw(&run_in(Some("Successful"), "u3")), None);
        assert_eq!(w.saw(&run_in(Some("Running"), "u4")), None);
        assert_eq!(w.saw(&run_in(Some("Inconclusive"), "u4")), None);
        assert!(w.measuring.is_empty(), "{:?}", w.measuring);
    }

    #[test]
    fn periodic_requeues_spread_a_fifth_either_way() {
        let p = Duration::from_secs(300);
        assert_eq!(spread(p, 0.0), Duration::from_secs(240));
        assert_eq!(spread(p, 0.5), Duration::from_secs(300));
        assert_eq!(spread(p, 1.0), Duration::from_secs(360));
        let draws: Vec<Duration> = (0..200).map(|_| jittered(p)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_secs(240) && *d <= Duration::from_secs(360))
        );
        let early = draws.iter().filter(|d| **d < p).count();
        // 200 fair coin flips: fewer than 50 on one side happens about once in 10^13 runs.
        assert!((50..=150).contains(&early), "{early} of 200 early");
    }

    fn routed(name: &str, ns: &str, traffic: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"strategy": {"canary": {
                "stableService": "s", "canaryService": "c", "trafficRouting": traffic}}}
        }))
        .expect("rollout")
    }

    fn names(refs: Vec<ObjectRef<CachedRollout>>) -> Vec<String> {
        let mut n: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        n.sort();
        n
    }

    #[tokio::test]
    async fn a_router_object_wakes_the_rollouts_that_name_it_and_no_other() {
        use crate::rollout::cache::fake;
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        let vs = routed(
            "a",
            "shop",
            json!({"istio": {"virtualService": {"name": "web"}}}),
        );
        let elsewhere = routed(
            "b",
            "shop",
            json!({"istio": {"virtualService": {"name": "web.mesh"}}}),
        );
        let route = routed("c", "shop", json!({"gatewayAPI": {"httpRoute": "web"}}));
        feeds.rollouts.list(
            [vs, elsewhere, route]
                .into_iter()
                .map(|r| CachedRollout::from(Parsed(Ok(r))))
                .collect(),
        );
        let object = |kind, namespace: &str, name: &str| {
            names(woken_by(
                &caches,
                &RouterChange::Object {
                    kind,
                    namespace: namespace.into(),
                    name: name.into(),
                },
            ))
        };
        assert_eq!(object(TargetKind::VirtualService, "shop", "web"), ["a"]);
        assert!(object(TargetKind::VirtualService, "other", "web").is_empty());
        assert!(object(TargetKind::HttpRoute, "other", "web").is_empty());
        assert_eq!(object(TargetKind::HttpRoute, "shop", "web"), ["c"]);
        assert_eq!(object(TargetKind::VirtualService, "mesh", "web"), ["b"]);
        let kind = |k| names(woken_by(&caches, &RouterChange::Kind(k)));
        assert_eq!(kind(TargetKind::VirtualService), ["a", "b"]);
        assert_eq!(kind(TargetKind::HttpRoute), ["c"]);
        assert!(kind(TargetKind::DestinationRule).is_empty());
    }

    #[tokio::test]
    async fn services_deployments_and_templates_wake_the_rollouts_that_read_them() {
        use crate::rollout::cache::fake;
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        let canary: Rollout = serde_json::from_value(json!({
            "metadata": {"name": "canary", "namespace": "shop"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "strategy": {"canary": {
                "stableService": "stable", "canaryService": "preview",
                "steps": [{"analysis": {"templates": [{"templateName": "rate"}]}}],
                "analysis": {"templates": [{"templateName": "slo", "clusterScope": true}]}}}}
        }))
        .expect("rollout");
        let blue_green: Rollout = serde_json::from_value(json!({
            "metadata": {"name": "bg", "namespace": "shop"},
            "spec": {"strategy": {"blueGreen": {
                "activeService": "stable", "previewService": "preview",
                "prePromotionAnalysis": {"templates": [{"templateName": "rate"}]}}}}
        }))
        .expect("rollout");
        let mut other_ns = canary.clone();
        other_ns.metadata.namespace = Some("bar".into());
        other_ns.metadata.name = Some("far".into());
        feeds.rollouts.list(
            [canary, blue_green, other_ns]
                .into_iter()
                .map(|r| CachedRollout::from(Parsed(Ok(r))))
                .collect(),
        );
        let service = |ns: &str, name: &str| {
            let mut s = CachedService::default();
            s.meta_mut().namespace = Some(ns.into());
            s.meta_mut().name = Some(name.into());
            names(service_wakes(&caches, &s))
        };
        assert_eq!(service("shop", "stable"), ["bg", "canary"]);
        assert_eq!(service("shop", "preview"), ["bg", "canary"]);
        assert_eq!(service("bar", "stable"), ["far"]);
        assert!(service("shop", "web").is_empty());
        let deployment = |ns: &str, name: &str| {
            let mut d = Deployment::default();
            d.metadata.namespace = Some(ns.into());
            d.metadata.name = Some(name.into());
            names(deployment_wakes(&caches, &d))
        };
        assert_eq!(deployment("shop", "web"), ["canary"]);
        assert!(deployment("shop", "api").is_empty());
        let template = |ns: &str, name: &str| {
            let what = Reads::Template {
                namespace: ns.into(),
                name: name.into(),
            };
            names(rollouts_reading(&caches, what))
        };
        assert_eq!(template("shop", "rate"), ["bg", "canary"]);
        assert!(template("shop", "slo").is_empty(), "slo is cluster-scoped");
        let cluster = |name: &str| {
            names(rollouts_reading(
                &caches,
                Reads::ClusterTemplate(name.into()),
            ))
        };
        assert_eq!(cluster("slo"), ["canary", "far"]);
        assert!(cluster("rate").is_empty());
        // The Rollout changes: what it no longer reads no longer wakes it.
        let mut moved: Rollout = serde_json::from_value(json!({
            "metadata": {"name": "bg", "namespace": "shop"},
            "spec": {"strategy": {"blueGreen": {"activeService": "api"}}}
        }))
        .expect("rollout");
        feeds
            .rollouts
            .event(kube::runtime::watcher::Event::Apply(CachedRollout::from(
                Parsed(Ok(moved.clone())),
            )));
        assert_eq!(service("shop", "stable"), ["canary"]);
        assert_eq!(service("shop", "api"), ["bg"]);
        assert_eq!(template("shop", "rate"), ["canary"]);
        moved.metadata.name = Some("bg".into());
        feeds
            .rollouts
            .event(kube::runtime::watcher::Event::Delete(CachedRollout::from(
                Parsed(Ok(moved)),
            )));
        assert!(service("shop", "api").is_empty());
    }

    /// Not a test: prints what waking Rollouts for Service events costs with 10,000 Rollouts
    /// cached (at start-up every Service is an event): `cargo test --lib service_wakes_cost --
    /// --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn service_wakes_cost_at_10000_rollouts() {
        use crate::rollout::cache::fake;
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        fake::fill(&mut feeds, 100, 100);
        let services = caches.services.state();
        let events = 2_000;
        let started = std::time::Instant::now();
        let mut woken = 0;
        for s in services.iter().take(events) {
            woken += service_wakes(&caches, s).len();
        }
        let took = started.elapsed();
        assert_eq!(woken, events);
        println!(
            "{events} Service events woke {woken} Rollouts in {took:?}; all {} would take {:?}",
            services.len(),
            took * (services.len() / events) as u32
        );
    }
}
