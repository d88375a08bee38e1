//! Watch caches of everything the Rollout controller reads each reconcile, so a reconcile
//! reads memory, not the API server (a reconcile that changes nothing sends no request).
//!
//! What is cached, narrowed to what Sluice owns or may name:
//! - Rollouts; ReplicaSets, pods and AnalysisRuns carrying the `sluice.dev/rollout` label
//!   (Sluice puts it on everything it creates), never every ReplicaSet or pod of the cluster;
//! - AnalysisTemplates, ClusterAnalysisTemplates, Services and Deployments (a Rollout may
//!   name any of them);
//! - traffic routers' objects, while their CRDs exist (`traffic::watch`).
//!
//! Before caching, `managedFields` and the `kubectl apply` annotation (a copy of the whole
//! object) are dropped, and so are the parts Sluice never reads: Deployments' status; pods,
//! Services, ReplicaSets and Rollouts are cached in forms of their own (`cached`): of a pod its
//! metadata, the Ready condition, the containers' waiting reasons, last terminations and
//! restart counts; of a Service its metadata and selector; of a ReplicaSet and a Rollout all
//! of it. Their labels, annotations and selectors, a ReplicaSet's pod template and a Rollout's
//! spec are kept as compact JSON, read back when a reconcile reads the object.
//! Secrets are not cached: providers read them when they measure.
//!
//! AnalysisTemplates, ClusterAnalysisTemplates and AnalysisRuns are cached as [`Parsed`], and
//! Rollouts as `CachedRollout`, which keeps the same distinction: one the API server accepted
//! but Sluice cannot read is kept as what is wrong with it, so it cannot fail the list of its
//! kind (and stall every other object of it).
//!
//! Each watch is also a trigger of the controller (see `controller::run`): a change to
//! anything a Rollout reads wakes that Rollout.
//!
//! Beside the stores, secondary indexes ([`Index`]) find what one reconcile or one trigger
//! reads without scanning a whole cache: Rollouts by what they read ([`Reads`]), ReplicaSets
//! and AnalysisRuns by the Rollout that controls them, pods by their `sluice.dev/rollout`
//! label, AnalysisTemplates by namespace, Services by the revision their selector pins. With
//! 10,000 Rollouts (40,000 pods) a reconcile then costs what its own objects cost.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::api::constants::{LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT};
use crate::rollout::cached::{CachedPod, CachedReplicaSet, CachedRollout, CachedService};
use crate::rollout::observe::policy::{analysis_uses, named_services};
use crate::runtime::index::Index;
use crate::runtime::listed::{Listed, MarkListed, listed};
use crate::runtime::lists::InitialLists;
use crate::traffic::router::{TargetKind, router_for};
use crate::traffic::watch::RouterCaches;

use crate::runtime::malformed::Parsed;
use kube::runtime::reflector::store::Writer;

/// The annotation `kubectl apply` keeps a copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How long a reconcile waits for the caches' first sync before it gives up (and retries).
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

/// A watch's objects as the controller's trigger stream wants them.
pub type Trigger<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Drops what no reader needs from every cached object.
pub fn strip_meta<K: Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// The readers of every cache.
#[derive(Clone)]
pub struct Caches {
    pub rollouts: Store<CachedRollout>,
    pub replica_sets: Store<CachedReplicaSet>,
    pub pods: Store<CachedPod>,
    pub runs: Store<Parsed<AnalysisRun>>,
    pub templates: Store<Parsed<AnalysisTemplate>>,
    pub cluster_templates: Store<Parsed<ClusterAnalysisTemplate>>,
    /// Why ClusterAnalysisTemplates cannot be listed (RBAC), while that is so.
    pub cluster_templates_refused: Arc<Mutex<Option<String>>>,
    pub services: Store<CachedService>,
    pub deployments: Store<Deployment>,
    pub routers: RouterCaches,
    rollouts_by: Index<CachedRollout, Reads>,
    replica_sets_by: Index<CachedReplicaSet, Owner>,
    pods_by: Index<CachedPod, (String, String)>,
    runs_by: Index<Parsed<AnalysisRun>, Owner>,
    templates_by: Index<Parsed<AnalysisTemplate>, String>,
    services_by: Index<CachedService, (String, String)>,
    listed: AllListed,
}

/// How many objects a cache holds now.
type ObjectCount<'a> = Box<dyn Fn() -> usize + Send + Sync + 'a>;

/// Whether each cache has its first full list (see [`Listed`]: never the stores'
/// `wait_until_ready` where more than one task may wait).
#[derive(Clone)]
struct AllListed {
    rollouts: Listed,
    replica_sets: Listed,
    pods: Listed,
    runs: Listed,
    templates: Listed,
    cluster_templates: Listed,
    services: Listed,
    deployments: Listed,
}

/// Something a Rollout reads, as the Rollout index keys it (see [`reads`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reads {
    /// Its namespace: every Rollout has this key.
    Namespace(String),
    /// A Service it names (stable, canary, active, preview).
    Service { namespace: String, name: String },
    /// The Deployment of its `workloadRef`.
    Deployment { namespace: String, name: String },
    /// An AnalysisTemplate one of its analyses names.
    Template { namespace: String, name: String },
    /// A ClusterAnalysisTemplate one of its analyses names.
    ClusterTemplate(String),
    /// An object its traffic router edits.
    RouterObject {
        kind: TargetKind,
        namespace: String,
        name: String,
    },
    /// A kind of object its traffic router edits.
    RouterKind(TargetKind),
}

/// Everything the Rollout reads that the Rollout index keys; a Rollout that does not read
/// has only its namespace.
pub fn reads(c: &CachedRollout) -> Vec<Reads> {
    let ns = c.meta().namespace.clone().unwrap_or_default();
    let mut out = vec![Reads::Namespace(ns.clone())];
    let p = c.to_parsed();
    let Ok(ro) = &p.0 else {
        return out;
    };
    for name in named_services(ro) {
        out.push(Reads::Service {
            namespace: ns.clone(),
            name: name.clone(),
        });
    }
    if let Some(w) = &ro.spec.workload_ref {
        out.push(Reads::Deployment {
            namespace: ns.clone(),
            name: w.name.clone(),
        });
    }
    for (_, u) in analysis_uses(ro) {
        for t in u.templates {
            out.push(if t.cluster_scope == Some(true) {
                Reads::ClusterTemplate(t.template_name)
            } else {
                Reads::Template {
                    namespace: ns.clone(),
                    name: t.template_name,
                }
            });
        }
    }
    if let Some(router) = ro.spec.strategy.canary.as_ref().and_then(router_for) {
        for t in router.targets() {
            out.push(Reads::RouterKind(t.kind));
            out.push(Reads::RouterObject {
                kind: t.kind,
                namespace: t.namespace.unwrap_or_else(|| ns.clone()),
                name: t.name,
            });
        }
    }
    out
}

/// The namespace and uid of an object's controller.
type Owner = (String, String);

/// The controllers of `o` (at most one, as the API server allows), with `o`'s namespace.
fn controllers<K: Resource>(o: &K) -> Vec<Owner> {
    let ns = o.meta().namespace.clone().unwrap_or_default();
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
        .map(|r| (ns.clone(), r.uid.clone()))
        .collect()
}

/// The namespace of a pod and its `sluice.dev/rollout` label, if it has one.
fn rollout_label(p: &CachedPod) -> Vec<(String, String)> {
    let ns = p.meta().namespace.clone().unwrap_or_default();
    p.label(LABEL_ROLLOUT)
        .map(|r| (ns, r))
        .into_iter()
        .collect()
}

fn namespace_of<K: Resource>(o: &K) -> Vec<String> {
    o.meta().namespace.clone().into_iter().collect()
}

/// The namespace of a Service and the revision its selector pins, if it pins one.
fn pinned_revision(s: &CachedService) -> Vec<(String, String)> {
    let ns = s.meta().namespace.clone().unwrap_or_default();
    s.selector()
        .and_then(|mut s| s.remove(LABEL_POD_TEMPLATE_HASH))
        .map(|h| (ns, h))
        .into_iter()
        .collect()
}

/// How a watch event reaches the indexes of its cache (ahead of the store).
type IndexFeed<K> = Box<dyn Fn(&watcher::Event<K>) + Send + Sync>;

/// One cache's writing side: its store's writer and what feeds its indexes.
struct Writing<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    index: IndexFeed<K>,
    /// Marked once the store holds the watch's first full list.
    listed: MarkListed,
}

fn unindexed<K: Resource + Clone + 'static>(writer: Writer<K>, listed: MarkListed) -> Writing<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    Writing {
        writer,
        index: Box::new(|_| {}),
        listed,
    }
}

fn indexed<K, Q>(writer: Writer<K>, index: &Index<K, Q>, listed: MarkListed) -> Writing<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
    Q: Hash + Eq + Send + Sync + 'static,
{
    let index = index.clone();
    Writing {
        writer,
        index: Box::new(move |e| index.apply(e)),
        listed,
    }
}

/// The writing sides of every cache of [`Caches`].
struct Writings {
    rollouts: Writing<CachedRollout>,
    replica_sets: Writing<CachedReplicaSet>,
    pods: Writing<CachedPod>,
    runs: Writing<Parsed<AnalysisRun>>,
    templates: Writing<Parsed<AnalysisTemplate>>,
    cluster_templates: Writing<Parsed<ClusterAnalysisTemplate>>,
    services: Writing<CachedService>,
    deployments: Writing<Deployment>,
}

/// The watches behind [`Caches`]; each must be polled (the controller does, as its triggers).
pub struct Triggers {
    pub rollouts: Trigger<CachedRollout>,
    pub replica_sets: Trigger<CachedReplicaSet>,
    pub pods: Trigger<CachedPod>,
    pub runs: Trigger<Parsed<AnalysisRun>>,
    pub templates: Trigger<Parsed<AnalysisTemplate>>,
    pub cluster_templates: Trigger<Parsed<ClusterAnalysisTemplate>>,
    pub services: Trigger<CachedService>,
    pub deployments: Trigger<Deployment>,
}

/// Where a kind is watched: across the cluster (no namespace named), or in each namespace
/// named, apart.
fn api<K>(client: &Client, namespaces: &[String]) -> Vec<(String, Api<K>)>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        return vec![(String::new(), Api::all(client.clone()))];
    }
    namespaces
        .iter()
        .map(|ns| (ns.clone(), Api::namespaced(client.clone(), ns)))
        .collect()
}

/// The watch events of `apis` (one, or one per namespace merged for one store: see
/// `runtime::namespaces`), each object stripped as it comes.
pub fn watch_events<K>(
    apis: Vec<(String, Api<K>)>,
    wc: watcher::Config,
    strip: fn(&mut K),
    store: Store<K>,
) -> BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + Unpin + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync + Unpin,
{
    let mut watches: Vec<(String, BoxStream<'static, _>)> = apis
        .into_iter()
        .map(|(ns, api)| {
            let events = watcher(api, wc.clone())
                .modify(strip)
                .default_backoff()
                .boxed();
            (ns, events)
        })
        .collect();
    if watches.len() == 1
        && let Some((_, only)) = watches.pop()
    {
        return only;
    }
    crate::runtime::namespaces::merged(watches, store).boxed()
}

/// Which of a cache's objects wake reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakes {
    /// Every object the watch brings, its first list's included (Rollouts: each is reconciled
    /// because its cache brought it; AnalysisRuns and templates, whose triggers also note
    /// runs seen measuring and report templates that do not read).
    Always,
    /// Every object after the cache's first full list (pods, ReplicaSets, Services,
    /// Deployments). No reconcile reads a cache before every cache has its first list
    /// (`Caches::synced`), and each Rollout is reconciled once its own cache brings it, so
    /// waking its Rollout for an object of a first list would only reconcile it a second time
    /// (kube-runtime runs a request that comes during a reconcile of the same Rollout again
    /// after it). A later re-list (after the watch lost its place) wakes as any change does.
    AfterFirstList,
}

/// The objects of `events` that wake reconciles, as `wakes` says: kube-runtime's
/// `touched_objects`, less a first list's objects for [`Wakes::AfterFirstList`].
pub fn waking<K, S>(
    events: S,
    wakes: Wakes,
) -> impl futures::Stream<Item = Result<K, watcher::Error>>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut first_list_done = wakes == Wakes::Always;
    events.filter_map(move |e| {
        let woken = match e {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => Some(Ok(o)),
            Ok(watcher::Event::InitApply(o)) => first_list_done.then_some(Ok(o)),
            Ok(watcher::Event::Init) => None,
            Ok(watcher::Event::InitDone) => {
                first_list_done = true;
                None
            }
        };
        future::ready(woken)
    })
}

/// Says in the log why the watch of cache `what` failed (a list RBAC refuses, an API server
/// away): the watcher tries again with backoff (growing to 30 s, plus jitter), and until the
/// cache has its first list every reconcile waits for it. kube-runtime warns only of a 403,
/// without naming the cache; other failures it logs at debug, which would leave Rollouts
/// untouched and the log silent. An expired place in the watch (410), which the watcher
/// answers with a new list, is routine and logged at debug.
fn log_watch_error(what: &'static str, e: &watcher::Error) {
    if matches!(e, watcher::Error::WatchError(s) if s.code == 410) {
        tracing::debug!(cache = what, error = %e, "watch expired; listing again");
    } else {
        let error = describe_watch_error(e);
        tracing::warn!(cache = what, %error, "watch failed; trying again with backoff");
    }
}

/// A watch's failure in a line: the API server's own message for a request it answered
/// (kube's display adds the whole status in its debug form).
fn describe_watch_error(e: &watcher::Error) -> String {
    use watcher::Error as W;
    match e {
        W::InitialListFailed(kube::Error::Api(s)) => format!("list: {} ({})", s.message, s.reason),
        W::WatchStartFailed(kube::Error::Api(s)) => format!("watch: {} ({})", s.message, s.reason),
        W::WatchFailed(kube::Error::Api(s)) => format!("watch: {} ({})", s.message, s.reason),
        W::WatchError(s) => format!("watch: {} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

/// A reflector over `apis` filling `into` (its indexes first, then its store); the stream
/// that fills it yields each object that changed, as `wakes` says. A failure of its watch is
/// logged as the cache `what`'s.
fn reflect<K>(
    what: &'static str,
    apis: Vec<(String, Api<K>)>,
    wc: watcher::Config,
    strip: fn(&mut K),
    into: Writing<K>,
    wakes: Wakes,
) -> Trigger<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + Unpin + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync + Unpin,
{
    let Writing {
        writer,
        index,
        listed,
    } = into;
    let store = writer.as_reader();
    let events = watch_events(apis, wc, strip, store)
        .inspect(move |e| {
            if let Ok(e) = e {
                index(e);
            }
        })
        .reflect(writer)
        .inspect(move |e| {
            listed.saw(e);
            if let Err(e) = e {
                log_watch_error(what, e);
            }
        });
    waking(events, wakes).boxed()
}

/// The watch of a custom resource kind (Rollouts, analysis templates and runs). Streamed, its
/// first list comes from the API server's watch cache one object at a time; paged, its lists
/// are read from the watch cache too (`resourceVersion=0`), as client-go's informers read
/// theirs, not paged from etcd. A page of 500 custom resources read from etcd costs the API
/// server about 0.25 s (it decodes, defaults and prunes each as JSON); 10,000 Rollouts took
/// 5.0 s paged against 1.8 s from the watch cache, on this project's 2-core machine. As with
/// client-go's informers, the list may be a moment older than etcd's latest: the watch that
/// follows brings every later change, and a Rollout's status is written under the
/// resourceVersion it was read at. Built-in kinds (pods, ReplicaSets, Services, Deployments)
/// are paged from etcd when not streamed: they are cheaper to read from etcd (10,000 pods:
/// 1.7 s paged, 1.0 s whole), and one page at a time keeps the controller's memory from
/// taking a whole list of 30,000 pods at once. Both measured once with `kubectl get --raw` on
/// an idle API server. See `runtime::lists` for the choice between streamed and paged.
fn custom_resources(lists: InitialLists) -> watcher::Config {
    lists.config(true)
}

/// For the forms (`cached`) that drop what no reader needs as they are read.
fn as_read<K>(_: &mut K) {}

fn strip_deployment(d: &mut Deployment) {
    strip_meta(d);
    d.status = None;
}

/// Why ClusterAnalysisTemplates are not there when the controller was told not to read
/// cluster-scoped kinds.
pub const NOT_READ: &str = "ClusterAnalysisTemplates are not read: the controller runs with --no-cluster-reads (RBAC with Roles only); use an AnalysisTemplate in the Rollout's namespace";

/// Why a kind cannot be listed (RBAC), while that is so.
pub type ListRefused = Arc<Mutex<Option<String>>>;

/// The namespaced caches still without their first full list, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotListed(pub Vec<&'static str>);

impl NotListed {
    fn of(caches: &[(&'static str, &Listed, ObjectCount<'_>)]) -> Self {
        NotListed(
            caches
                .iter()
                .filter(|(_, listed, _)| !listed.is_listed())
                .map(|(what, _, _)| *what)
                .collect(),
        )
    }
}

impl std::fmt::Display for NotListed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no first list yet of {}",
            if self.0.is_empty() {
                "(none)".to_string()
            } else {
                self.0.join(", ")
            }
        )
    }
}

/// The ClusterAnalysisTemplate watch, and why the templates cannot be listed while that is
/// so: a list refused by RBAC is the Rollouts' problem (an InvalidSpec naming it), not a
/// reason to wait forever.
fn cluster_templates(
    client: &Client,
    into: Writing<Parsed<ClusterAnalysisTemplate>>,
    refused: ListRefused,
    lists: InitialLists,
) -> Trigger<Parsed<ClusterAnalysisTemplate>> {
    let trigger = reflect(
        "ClusterAnalysisTemplates",
        vec![(
            String::new(),
            Api::<Parsed<ClusterAnalysisTemplate>>::all(client.clone()),
        )],
        custom_resources(lists),
        strip_meta,
        into,
        Wakes::Always,
    );
    trigger
        .inspect(move |r| {
            let why = match r {
                Err(e) => match refused_by_rbac(e) {
                    Some(message) => Some(format!("list ClusterAnalysisTemplates: {message}")),
                    None => return,
                },
                Ok(_) => None,
            };
            if let Ok(mut s) = refused.lock() {
                *s = why;
            }
        })
        .boxed()
}

/// The API server's message when RBAC refused a watch's first list: a 403 to the list (paged
/// lists) or to the watch that streams it (WatchList).
fn refused_by_rbac(e: &watcher::Error) -> Option<&str> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            if s.code == 403 =>
        {
            Some(&s.message)
        }
        _ => None,
    }
}

impl Caches {
    /// Empty caches with their indexes, and their writing sides.
    fn empty(routers: RouterCaches) -> (Self, Writings) {
        let (rollouts, w_rollouts) = reflector::store();
        let (replica_sets, w_sets) = reflector::store();
        let (pods, w_pods) = reflector::store();
        let (runs, w_runs) = reflector::store();
        let (templates, w_templates) = reflector::store();
        let (cluster_templates, w_cluster) = reflector::store();
        let (services, w_services) = reflector::store();
        let (deployments, w_deployments) = reflector::store();
        let rollouts_by = Index::new(rollouts.clone(), (), reads);
        let replica_sets_by = Index::new(replica_sets.clone(), (), controllers);
        let pods_by = Index::new(pods.clone(), (), rollout_label);
        let runs_by = Index::new(runs.clone(), (), controllers);
        let templates_by = Index::new(templates.clone(), (), namespace_of);
        let services_by = Index::new(services.clone(), (), pinned_revision);
        let (m_rollouts, rollouts_listed) = listed();
        let (m_sets, sets_listed) = listed();
        let (m_pods, pods_listed) = listed();
        let (m_runs, runs_listed) = listed();
        let (m_templates, templates_listed) = listed();
        let (m_cluster, cluster_listed) = listed();
        let (m_services, services_listed) = listed();
        let (m_deployments, deployments_listed) = listed();
        let writings = Writings {
            rollouts: indexed(w_rollouts, &rollouts_by, m_rollouts),
            replica_sets: indexed(w_sets, &replica_sets_by, m_sets),
            pods: indexed(w_pods, &pods_by, m_pods),
            runs: indexed(w_runs, &runs_by, m_runs),
            templates: indexed(w_templates, &templates_by, m_templates),
            cluster_templates: unindexed(w_cluster, m_cluster),
            services: indexed(w_services, &services_by, m_services),
            deployments: unindexed(w_deployments, m_deployments),
        };
        let caches = Caches {
            rollouts,
            replica_sets,
            pods,
            runs,
            templates,
            cluster_templates,
            cluster_templates_refused: ListRefused::default(),
            services,
            deployments,
            routers,
            rollouts_by,
            replica_sets_by,
            pods_by,
            runs_by,
            templates_by,
            services_by,
            listed: AllListed {
                rollouts: rollouts_listed,
                replica_sets: sets_listed,
                pods: pods_listed,
                runs: runs_listed,
                templates: templates_listed,
                cluster_templates: cluster_listed,
                services: services_listed,
                deployments: deployments_listed,
            },
        };
        (caches, writings)
    }

    /// Builds every cache over `namespaces` (all namespaces when none). Nothing is read until
    /// the returned triggers are polled; the router caches start at once.
    /// Without `cluster_reads` (RBAC with Roles only) ClusterAnalysisTemplates are not read,
    /// and a Rollout that names one is told why. `lists` says how the first lists are read
    /// (streamed or paged; `Auto` is taken as paged: decide it first, `runtime::lists`).
    pub fn new(
        client: &Client,
        namespaces: &[String],
        cluster_reads: bool,
        routers: RouterCaches,
        lists: InitialLists,
    ) -> (Self, Triggers) {
        let (caches, w) = Caches::empty(routers);
        let owned = || lists.config(false).labels(LABEL_ROLLOUT);
        let all = || lists.config(false);
        let triggers = Triggers {
            rollouts: reflect(
                "Rollouts",
                api::<CachedRollout>(client, namespaces),
                custom_resources(lists),
                strip_meta,
                w.rollouts,
                Wakes::Always,
            ),
            replica_sets: reflect(
                "ReplicaSets",
                api(client, namespaces),
                owned(),
                as_read,
                w.replica_sets,
                Wakes::AfterFirstList,
            ),
            pods: reflect(
                "pods",
                api(client, namespaces),
                owned(),
                CachedPod::strip,
                w.pods,
                Wakes::AfterFirstList,
            ),
            runs: reflect(
                "AnalysisRuns",
                api::<Parsed<AnalysisRun>>(client, namespaces),
                custom_resources(lists).labels(LABEL_ROLLOUT),
                strip_meta,
                w.runs,
                Wakes::Always,
            ),
            templates: reflect(
                "AnalysisTemplates",
                api::<Parsed<AnalysisTemplate>>(client, namespaces),
                custom_resources(lists),
                strip_meta,
                w.templates,
                Wakes::Always,
            ),
            cluster_templates: if cluster_reads {
                cluster_templates(
                    client,
                    w.cluster_templates,
                    caches.cluster_templates_refused.clone(),
                    lists,
                )
            } else {
                if let Ok(mut s) = caches.cluster_templates_refused.lock() {
                    *s = Some(NOT_READ.to_string());
                }
                futures::stream::pending().boxed()
            },
            services: reflect(
                "Services",
                api(client, namespaces),
                all(),
                as_read,
                w.services,
                Wakes::AfterFirstList,
            ),
            deployments: reflect(
                "Deployments",
                api(client, namespaces),
                all(),
                strip_deployment,
                w.deployments,
                Wakes::AfterFirstList,
            ),
        };
        (caches, triggers)
    }

    /// The Rollouts of namespace `ns`.
    pub fn rollouts_in(&self, ns: &str) -> Vec<Arc<CachedRollout>> {
        self.rollouts_by.get(&Reads::Namespace(ns.to_string()))
    }

    /// The Rollouts that read `what`.
    pub fn rollouts_reading(&self, what: &Reads) -> Vec<Arc<CachedRollout>> {
        self.rollouts_by.get(what)
    }

    /// The ReplicaSets in `ns` that the object with `uid` controls.
    pub fn replica_sets_of(&self, ns: &str, uid: &str) -> Vec<ReplicaSet> {
        let cached = self.replica_sets_by.get(&(ns.to_string(), uid.to_string()));
        cached.iter().map(|rs| rs.to_replica_set()).collect()
    }

    /// The AnalysisRuns in `ns` that the object with `uid` controls.
    pub fn runs_of(&self, ns: &str, uid: &str) -> Vec<Arc<Parsed<AnalysisRun>>> {
        self.runs_by.get(&(ns.to_string(), uid.to_string()))
    }

    /// The pods in `ns` labelled as Rollout `rollout`'s.
    pub fn pods_of(&self, ns: &str, rollout: &str) -> Vec<Arc<Pod>> {
        let cached = self.pods_by.get(&(ns.to_string(), rollout.to_string()));
        cached.iter().map(|p| Arc::new(p.to_pod())).collect()
    }

    /// The AnalysisTemplates of namespace `ns`.
    pub fn templates_in(&self, ns: &str) -> Vec<Arc<Parsed<AnalysisTemplate>>> {
        self.templates_by.get(&ns.to_string())
    }

    /// The Services in `ns` whose selector pins revision `hash` (Sluice's key).
    pub fn services_pinned_to(&self, ns: &str, hash: &str) -> Vec<Arc<Service>> {
        let cached = self.services_by.get(&(ns.to_string(), hash.to_string()));
        cached.iter().map(|s| Arc::new(s.to_service())).collect()
    }

    /// The Service `name` in `ns`, as a reconcile reads it, if it exists.
    pub fn service(&self, ns: &str, name: &str) -> Option<Service> {
        let cached = self.services.get(&ObjectRef::new(name).within(ns))?;
        Some(cached.to_service())
    }

    /// Each namespaced cache (those a reconcile waits for): its name, whether it has its
    /// first full list, and how many objects it holds.
    fn namespaced(&self) -> [(&'static str, &Listed, ObjectCount<'_>); 7] {
        let l = &self.listed;
        [
            ("Rollouts", &l.rollouts, Box::new(|| self.rollouts.len())),
            (
                "ReplicaSets",
                &l.replica_sets,
                Box::new(|| self.replica_sets.len()),
            ),
            ("pods", &l.pods, Box::new(|| self.pods.len())),
            ("AnalysisRuns", &l.runs, Box::new(|| self.runs.len())),
            (
                "AnalysisTemplates",
                &l.templates,
                Box::new(|| self.templates.len()),
            ),
            ("Services", &l.services, Box::new(|| self.services.len())),
            (
                "Deployments",
                &l.deployments,
                Box::new(|| self.deployments.len()),
            ),
        ]
    }

    /// Waits until every namespaced cache has its first full list (a Rollout reconciled
    /// before would see a world with parts missing). After [`SYNC_WAIT`], the caches still
    /// without one.
    pub async fn synced(&self) -> Result<(), NotListed> {
        self.synced_within(SYNC_WAIT).await
    }

    /// [`Caches::synced`], giving up after `limit`.
    async fn synced_within(&self, limit: Duration) -> Result<(), NotListed> {
        let caches = self.namespaced();
        let all = future::try_join_all(caches.iter().map(|(_, listed, _)| listed.wait()));
        match tokio::time::timeout(limit, all).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NotListed::of(&caches)),
        }
    }

    /// Logs each namespaced cache's first full list as it completes (objects held, seconds
    /// since `since`), then the moment all have: after a restart this splits the time to the
    /// first full pass into reading the world and reconciling it. Every [`SYNC_WAIT`] until
    /// then, a warning names the caches still without their first list (the reconciles wait
    /// for them; the watches' own warnings say why they fail).
    pub async fn report_sync(&self, since: std::time::Instant) {
        let caches = self.namespaced();
        let all = future::join_all(caches.iter().map(|(what, listed, count)| async move {
            if listed.wait().await.is_ok() {
                tracing::info!(
                    cache = what,
                    objects = count(),
                    secs = since.elapsed().as_secs_f64(),
                    "watch cache listed"
                );
            }
        }));
        let mut all = std::pin::pin!(all);
        while tokio::time::timeout(SYNC_WAIT, &mut all).await.is_err() {
            let missing = NotListed::of(&caches);
            tracing::warn!(
                secs = since.elapsed().as_secs_f64(),
                "{missing}: every reconcile waits for them"
            );
        }
        // Every wait ended: each list came in, or a watch stopped (the controller stops).
        if NotListed::of(&caches).0.is_empty() {
            tracing::info!(
                secs = since.elapsed().as_secs_f64(),
                "every watch cache listed; reconciles proceed"
            );
        }
    }

    /// Every ClusterAnalysisTemplate, or why they cannot be read (`Ok(Err)`); `Err(())` when
    /// the cache has not synced in time.
    pub async fn cluster_templates(
        &self,
    ) -> Result<Result<Vec<Arc<Parsed<ClusterAnalysisTemplate>>>, String>, ()> {
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            // Listed wins: a refusal noted before a grant is not cleared when the list that
            // follows holds no template (no object passes the inspection that clears it).
            if self.listed.cluster_templates.is_listed() {
                return Ok(Ok(self.cluster_templates.state()));
            }
            if let Some(why) = self
                .cluster_templates_refused
                .lock()
                .ok()
                .and_then(|s| s.clone())
            {
                return Ok(Err(why));
            }
            let waited = tokio::time::timeout(
                Duration::from_millis(200),
                self.listed.cluster_templates.wait(),
            )
            .await;
            if let Ok(Ok(())) = waited {
                return Ok(Ok(self.cluster_templates.state()));
            }
            if matches!(waited, Ok(Err(_))) || tokio::time::Instant::now() >= deadline {
                return Err(());
            }
        }
    }
}

/// Caches filled by hand, without an API server (unit tests and measurements).
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// One cache's writing side: events go where the watch's events go (indexes, then store).
    pub struct Feed<K: Resource + Clone + 'static>(Writing<K>)
    where
        K::DynamicType: Eq + Hash + Clone;

    impl<K: Resource + Clone + 'static> Feed<K>
    where
        K::DynamicType: Eq + Hash + Clone,
    {
        /// One watch event, as the watch stream delivers it.
        pub fn event(&mut self, ev: watcher::Event<K>) {
            (self.0.index)(&ev);
            self.0.writer.apply_watcher_event(&ev);
            self.0.listed.saw(&Ok(ev));
        }

        /// A full list: what the cache holds afterwards is `objects`.
        pub fn list(&mut self, objects: Vec<K>) {
            self.event(watcher::Event::Init);
            for o in objects {
                self.event(watcher::Event::InitApply(o));
            }
            self.event(watcher::Event::InitDone);
        }
    }

    /// The writing side of every cache of [`fake::caches`].
    pub struct Feeds {
        pub rollouts: Feed<CachedRollout>,
        pub replica_sets: Feed<CachedReplicaSet>,
        pub pods: Feed<CachedPod>,
        pub runs: Feed<Parsed<AnalysisRun>>,
        pub templates: Feed<Parsed<AnalysisTemplate>>,
        pub cluster_templates: Feed<Parsed<ClusterAnalysisTemplate>>,
        pub services: Feed<CachedService>,
        pub deployments: Feed<Deployment>,
    }

    /// Empty caches (not yet synced: list each) and their writing sides.
    pub fn caches(routers: RouterCaches) -> (Caches, Feeds) {
        let (caches, w) = Caches::empty(routers);
        let feeds = Feeds {
            rollouts: Feed(w.rollouts),
            replica_sets: Feed(w.replica_sets),
            pods: Feed(w.pods),
            runs: Feed(w.runs),
            templates: Feed(w.templates),
            cluster_templates: Feed(w.cluster_templates),
            services: Feed(w.services),
            deployments: Feed(w.deployments),
        };
        (caches, feeds)
    }

    /// A world of `namespaces` x `per_namespace` canary Rollouts as the benchmark makes them:
    /// each with two ReplicaSets (3 stable pods, 1 canary pod), two Services selecting a
    /// revision, one AnalysisRun; one AnalysisTemplate per namespace. Rollout `i` of namespace
    /// `n` is `r{i}` in `ns{n}`, with uid `uid-{n}-{i}`.
    pub fn fill(feeds: &mut Feeds, namespaces: usize, per_namespace: usize) {
        use crate::api::constants::LABEL_POD_TEMPLATE_HASH;
        use serde_json::json;
        let (mut rollouts, mut sets, mut pods, mut runs, mut templates, mut services) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for n in 0..namespaces {
            let ns = format!("ns{n}");
            let mut t = AnalysisTemplate::new("success-rate", Default::default());
            t.metadata.namespace = Some(ns.clone());
            templates.push(Parsed(Ok(t)));
            for i in 0..per_namespace {
                let name = format!("r{i}");
                let uid = format!("uid-{n}-{i}");
                let ro: crate::api::rollout::Rollout = serde_json::from_value(json!({
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                    "metadata": {"name": name, "namespace": ns, "uid": uid,
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                        "strategy": {"canary": {
                            "stableService": format!("{name}-stable"),
                            "canaryService": format!("{name}-canary"),
                            "steps": [{"setWeight": 25}, {"pause": {}},
                                      {"analysis": {"templates": [{"templateName": "success-rate"}]}},
                                      {"setWeight": 75}]}}}
                }))
                .expect("rollout");
                rollouts.push(CachedRollout::from(Parsed(Ok(ro))));
                let owner = json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                    "name": name, "uid": uid, "controller": true}]);
                for (rev, replicas) in [("a", 3), ("b", 1)] {
                    let hash = format!("{rev}{n}x{i}");
                    let labels = json!({LABEL_ROLLOUT: name, LABEL_POD_TEMPLATE_HASH: hash});
                    sets.push(
                        serde_json::from_value(json!({
                            "metadata": {"name": format!("{name}-{hash}"), "namespace": ns,
                                         "labels": labels, "ownerReferences": owner},
                            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}},
                            "status": {"replicas": replicas, "readyReplicas": replicas,
                                       "availableReplicas": replicas}
                        }))
                        .expect("replica set"),
                    );
                    for p in 0..replicas {
                        pods.push(
                            serde_json::from_value(json!({
                                "metadata": {"name": format!("{name}-{hash}-{p}"),
                                             "namespace": ns, "labels": labels},
                                "status": {"phase": "Running"}
                            }))
                            .expect("pod"),
                        );
                    }
                    let role = if rev == "a" { "stable" } else { "canary" };
                    services.push(
                        serde_json::from_value(json!({
                            "metadata": {"name": format!("{name}-{role}"), "namespace": ns},
                            "spec": {"selector": {"app": name, LABEL_POD_TEMPLATE_HASH: hash}}
                        }))
                        .expect("service"),
                    );
                }
                let mut run = AnalysisRun::new(&format!("{name}-run"), Default::default());
                run.metadata.namespace = Some(ns.clone());
                run.metadata.labels = Some([(LABEL_ROLLOUT.to_string(), name.clone())].into());
                run.metadata.owner_references = Some(serde_json::from_value(owner).expect("owner"));
                runs.push(Parsed(Ok(run)));
            }
        }
        feeds.rollouts.list(rollouts);
        feeds.replica_sets.list(sets);
        feeds.pods.list(pods);
        feeds.runs.list(runs);
        feeds.templates.list(templates);
        feeds.cluster_templates.list(vec![]);
        feeds.services.list(services);
        feeds.deployments.list(vec![]);
    }

    /// A client that reaches nothing (requests fail at once): for code that must not call.
    pub fn offline_client() -> Client {
        let url = "http://127.0.0.1:9".parse().expect("url");
        Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Router caches over [`offline_client`]: no router kind is ever watched.
    pub fn offline_routers() -> RouterCaches {
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let (routers, task) = RouterCaches::start(offline_client(), Vec::new(), true, tx);
        task.abort();
        routers
    }
}

#[cfg(test)]
mod tests {
    use super::{NotListed, Wakes, fake, waking};
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    /// The events of a first list, a change, a re-list and a deletion, as a watch yields them.
    fn first_list_then_changes() -> Vec<Result<Event<&'static str>, kube::runtime::watcher::Error>>
    {
        vec![
            Ok(Event::Init),
            Ok(Event::InitApply("listed first")),
            Ok(Event::InitApply("listed first too")),
            Ok(Event::InitDone),
            Ok(Event::Apply("changed")),
            Err(kube::runtime::watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitApply("re-listed")),
            Ok(Event::InitDone),
            Ok(Event::Delete("deleted")),
        ]
    }

    #[test]
    fn a_watch_failure_is_said_in_the_api_server_s_words() {
        use kube::runtime::watcher::Error as W;
        let forbidden = || {
            kube::core::Status::failure(
                "deployments.apps is forbidden: User \"u\" cannot watch resource \"deployments\"",
                "Forbidden",
            )
            .with_code(403)
        };
        assert_eq!(
            super::describe_watch_error(&W::WatchStartFailed(kube::Error::Api(
                forbidden().boxed()
            ))),
            "watch: deployments.apps is forbidden: User \"u\" cannot watch resource \"deployments\" (Forbidden)"
        );
        assert_eq!(
            super::describe_watch_error(&W::InitialListFailed(kube::Error::Api(
                forbidden().boxed()
            ))),
            "list: deployments.apps is forbidden: User \"u\" cannot watch resource \"deployments\" (Forbidden)"
        );
        assert_eq!(
            super::describe_watch_error(&W::NoResourceVersion),
            W::NoResourceVersion.to_string()
        );
    }

    /// A refusal noted before the list was granted does not outlive the list that follows,
    /// even one with no template in it (nothing then passes the inspection that clears it).
    #[tokio::test]
    async fn a_list_of_cluster_templates_once_in_wins_over_an_old_refusal() {
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        if let Ok(mut s) = caches.cluster_templates_refused.lock() {
            *s = Some("list ClusterAnalysisTemplates: forbidden".into());
        }
        let refused = caches.cluster_templates().await;
        assert_eq!(
            refused.map(|r| r.map(|t| t.len())),
            Ok(Err("list ClusterAnalysisTemplates: forbidden".to_string()))
        );
        feeds.cluster_templates.list(vec![]);
        let granted = caches.cluster_templates().await;
        assert_eq!(granted.map(|r| r.map(|t| t.len())), Ok(Ok(0)));
    }

    #[test]
    fn a_refused_first_list_is_told_apart_streamed_or_paged() {
        use kube::runtime::watcher::Error as W;
        let status = |code| kube::core::Status::failure("no", "Forbidden").with_code(code);
        let api = |code| kube::Error::Api(status(code).boxed());
        assert_eq!(
            super::refused_by_rbac(&W::InitialListFailed(api(403))),
            Some("no")
        );
        assert_eq!(
            super::refused_by_rbac(&W::WatchStartFailed(api(403))),
            Some("no")
        );
        assert_eq!(super::refused_by_rbac(&W::WatchStartFailed(api(500))), None);
        assert_eq!(super::refused_by_rbac(&W::WatchFailed(api(403))), None);
        assert_eq!(super::refused_by_rbac(&W::NoResourceVersion), None);
    }

    /// The objects `wakes` lets through, and how many errors.
    async fn woken(wakes: Wakes) -> (Vec<&'static str>, usize) {
        let got: Vec<_> = waking(futures::stream::iter(first_list_then_changes()), wakes)
            .collect()
            .await;
        let errors = got.iter().filter(|r| r.is_err()).count();
        (got.into_iter().filter_map(Result::ok).collect(), errors)
    }

    #[tokio::test]
    async fn after_the_first_list_wakes_for_every_change_and_re_list_but_not_the_first_list() {
        let (objects, errors) = woken(Wakes::AfterFirstList).await;
        assert_eq!(objects, ["changed", "re-listed", "deleted"]);
        assert_eq!(errors, 1, "the watch's error still reaches the controller");
    }

    #[tokio::test]
    async fn always_wakes_for_every_object_as_touched_objects_does() {
        let (objects, errors) = woken(Wakes::Always).await;
        assert_eq!(errors, 1);
        assert_eq!(
            objects,
            [
                "listed first",
                "listed first too",
                "changed",
                "re-listed",
                "deleted"
            ]
        );
    }

    /// After a restart every reconcile worker waits for the caches at once; each must go on
    /// as soon as the lists are in (kube-runtime's own readiness wakes only the last to wait,
    /// and the others slept until their 30 s timeout).
    #[tokio::test]
    async fn every_reconcile_waiting_for_the_first_lists_goes_on_when_they_are_in() {
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let c = caches.clone();
                tokio::spawn(async move { c.synced().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        feeds.rollouts.list(vec![]);
        feeds.pods.list(vec![]);
        let missing = caches.synced_within(Duration::from_millis(200)).await;
        let expected = [
            "ReplicaSets",
            "AnalysisRuns",
            "AnalysisTemplates",
            "Services",
            "Deployments",
        ];
        assert_eq!(
            missing,
            Err(NotListed(expected.to_vec())),
            "not synced while these are unlisted, and they are named"
        );
        assert_eq!(
            NotListed(expected.to_vec()).to_string(),
            "no first list yet of ReplicaSets, AnalysisRuns, AnalysisTemplates, Services, Deployments"
        );
        fake::fill(&mut feeds, 2, 3);
        for w in waiting {
            let done = tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("every waiter goes on within 10 s, well before the 30 s sync limit");
            assert_eq!(done.expect("task"), Ok(()));
        }
    }
}
