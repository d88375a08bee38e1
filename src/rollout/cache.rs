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
//! object) are dropped, and so are the parts Sluice never reads: pods' spec, Deployments' and
//! Services' status. Secrets are not cached: providers read them when they measure.
//!
//! Rollouts, AnalysisTemplates, ClusterAnalysisTemplates and AnalysisRuns are cached as
//! [`Parsed`]: one the API server accepted but Sluice cannot read is kept as what is wrong with
//! it, so it cannot fail the list of its kind (and stall every other object of it).
//!
//! Each watch is also a trigger of the controller (see `controller::run`): a change to
//! anything a Rollout reads wakes that Rollout.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::api::constants::LABEL_ROLLOUT;
use crate::api::rollout::Rollout;
use crate::traffic::watch::RouterCaches;

use crate::runtime::malformed::Parsed;

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
    pub rollouts: Store<Parsed<Rollout>>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    pub runs: Store<Parsed<AnalysisRun>>,
    pub templates: Store<Parsed<AnalysisTemplate>>,
    pub cluster_templates: Store<Parsed<ClusterAnalysisTemplate>>,
    /// Why ClusterAnalysisTemplates cannot be listed (RBAC), while that is so.
    pub cluster_templates_refused: Arc<Mutex<Option<String>>>,
    pub services: Store<Service>,
    pub deployments: Store<Deployment>,
    pub routers: RouterCaches,
}

/// The watches behind [`Caches`]; each must be polled (the controller does, as its triggers).
pub struct Triggers {
    pub rollouts: Trigger<Parsed<Rollout>>,
    pub replica_sets: Trigger<ReplicaSet>,
    pub pods: Trigger<Pod>,
    pub runs: Trigger<Parsed<AnalysisRun>>,
    pub templates: Trigger<Parsed<AnalysisTemplate>>,
    pub cluster_templates: Trigger<Parsed<ClusterAnalysisTemplate>>,
    pub services: Trigger<Service>,
    pub deployments: Trigger<Deployment>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A reflector over `api`: its store, and the stream that fills it (yielding each object that
/// changed).
fn reflect<K>(api: Api<K>, wc: watcher::Config, strip: fn(&mut K)) -> (Store<K>, Trigger<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, wc)
        .modify(strip)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

fn strip_pod(p: &mut Pod) {
    strip_meta(p);
    p.spec = None;
}

fn strip_service(s: &mut Service) {
    strip_meta(s);
    s.status = None;
}

fn strip_deployment(d: &mut Deployment) {
    strip_meta(d);
    d.status = None;
}

/// Why a kind cannot be listed (RBAC), while that is so.
pub type ListRefused = Arc<Mutex<Option<String>>>;

/// The ClusterAnalysisTemplate cache, its trigger, and why the templates cannot be listed
/// while that is so: a list refused by RBAC is the Rollouts' problem (an InvalidSpec naming
/// it), not a reason to wait forever.
fn cluster_templates(
    client: &Client,
) -> (
    Store<Parsed<ClusterAnalysisTemplate>>,
    Trigger<Parsed<ClusterAnalysisTemplate>>,
    ListRefused,
) {
    let (store, trigger) = reflect(
        Api::<Parsed<ClusterAnalysisTemplate>>::all(client.clone()),
        watcher::Config::default(),
        strip_meta,
    );
    let refused = ListRefused::default();
    let seen = refused.clone();
    let trigger = trigger
        .inspect(move |r| {
            let why = match r {
                Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) if e.code == 403 => {
                    Some(format!("list ClusterAnalysisTemplates: {}", e.message))
                }
                Err(_) => return,
                Ok(_) => None,
            };
            if let Ok(mut s) = seen.lock() {
                *s = why;
            }
        })
        .boxed();
    (store, trigger, refused)
}

impl Caches {
    /// Builds every cache over `namespace` (all namespaces when `None`). Nothing is read until
    /// the returned triggers are polled; the router caches start at once.
    pub fn new(
        client: &Client,
        namespace: Option<&str>,
        routers: RouterCaches,
    ) -> (Self, Triggers) {
        let owned = || watcher::Config::default().labels(LABEL_ROLLOUT);
        let (rollouts, t_rollouts) = reflect(
            api::<Parsed<Rollout>>(client, namespace),
            watcher::Config::default(),
            strip_meta,
        );
        let (replica_sets, t_sets) = reflect(api(client, namespace), owned(), strip_meta);
        let (pods, t_pods) = reflect(api(client, namespace), owned(), strip_pod);
        let (runs, t_runs) = reflect(
            api::<Parsed<AnalysisRun>>(client, namespace),
            owned(),
            strip_meta,
        );
        let (templates, t_templates) = reflect(
            api::<Parsed<AnalysisTemplate>>(client, namespace),
            watcher::Config::default(),
            strip_meta,
        );
        let (services, t_services) = reflect(
            api(client, namespace),
            watcher::Config::default(),
            strip_service,
        );
        let (deployments, t_deployments) = reflect(
            api(client, namespace),
            watcher::Config::default(),
            strip_deployment,
        );
        let (cluster_templates, t_cluster, refused) = cluster_templates(client);
        (
            Caches {
                rollouts,
                replica_sets,
                pods,
                runs,
                templates,
                cluster_templates,
                cluster_templates_refused: refused,
                services,
                deployments,
                routers,
            },
            Triggers {
                rollouts: t_rollouts,
                replica_sets: t_sets,
                pods: t_pods,
                runs: t_runs,
                templates: t_templates,
                cluster_templates: t_cluster,
                services: t_services,
                deployments: t_deployments,
            },
        )
    }

    /// Waits until every namespaced cache has its first full list (a Rollout reconciled
    /// before would see a world with parts missing). `Err` after [`SYNC_WAIT`].
    pub async fn synced(&self) -> Result<(), ()> {
        let all = future::try_join_all([
            self.rollouts.wait_until_ready().boxed(),
            self.replica_sets.wait_until_ready().boxed(),
            self.pods.wait_until_ready().boxed(),
            self.runs.wait_until_ready().boxed(),
            self.templates.wait_until_ready().boxed(),
            self.services.wait_until_ready().boxed(),
            self.deployments.wait_until_ready().boxed(),
        ]);
        match tokio::time::timeout(SYNC_WAIT, all).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(()),
        }
    }

    /// Every ClusterAnalysisTemplate, or why they cannot be read (`Ok(Err)`); `Err(())` when
    /// the cache has not synced in time.
    pub async fn cluster_templates(
        &self,
    ) -> Result<Result<Vec<Arc<Parsed<ClusterAnalysisTemplate>>>, String>, ()> {
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            let waited = tokio::time::timeout(
                Duration::from_millis(200),
                self.cluster_templates.wait_until_ready(),
            )
            .await;
            if let Ok(Ok(())) = waited {
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
            if matches!(waited, Ok(Err(_))) || tokio::time::Instant::now() >= deadline {
                return Err(());
            }
        }
    }
}

/// Objects of a namespaced store in `ns`.
pub fn in_namespace<K: Resource + Clone>(store: &Store<K>, ns: &str) -> Vec<Arc<K>>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.state_filter(|o| o.meta().namespace.as_deref() == Some(ns))
}

/// The objects `uid` controls among `objects`.
pub fn controlled_by<K: Resource>(objects: Vec<Arc<K>>, uid: &str) -> Vec<Arc<K>> {
    objects
        .into_iter()
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

/// Caches filled by hand, without an API server (unit tests and measurements).
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use kube::runtime::reflector::store::Writer;

    /// One cache's writing side: events go where the watch's events go.
    pub struct Feed<K: Resource + Clone + 'static>
    where
        K::DynamicType: Eq + Hash + Clone,
    {
        writer: Writer<K>,
    }

    impl<K: Resource + Clone + 'static> Feed<K>
    where
        K::DynamicType: Eq + Hash + Clone + Default,
    {
        fn new() -> (Store<K>, Self) {
            let (reader, writer) = reflector::store();
            (reader, Feed { writer })
        }

        /// One watch event, as the watch stream delivers it.
        pub fn event(&mut self, ev: watcher::Event<K>) {
            self.writer.apply_watcher_event(&ev);
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
        pub rollouts: Feed<Parsed<Rollout>>,
        pub replica_sets: Feed<ReplicaSet>,
        pub pods: Feed<Pod>,
        pub runs: Feed<Parsed<AnalysisRun>>,
        pub templates: Feed<Parsed<AnalysisTemplate>>,
        pub cluster_templates: Feed<Parsed<ClusterAnalysisTemplate>>,
        pub services: Feed<Service>,
        pub deployments: Feed<Deployment>,
    }

    /// Empty caches (not yet synced: list each) and their writing sides.
    pub fn caches(routers: RouterCaches) -> (Caches, Feeds) {
        let (rollouts, f_rollouts) = Feed::new();
        let (replica_sets, f_sets) = Feed::new();
        let (pods, f_pods) = Feed::new();
        let (runs, f_runs) = Feed::new();
        let (templates, f_templates) = Feed::new();
        let (cluster_templates, f_cluster) = Feed::new();
        let (services, f_services) = Feed::new();
        let (deployments, f_deployments) = Feed::new();
        (
            Caches {
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
            },
            Feeds {
                rollouts: f_rollouts,
                replica_sets: f_sets,
                pods: f_pods,
                runs: f_runs,
                templates: f_templates,
                cluster_templates: f_cluster,
                services: f_services,
                deployments: f_deployments,
            },
        )
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
                let ro: Rollout = serde_json::from_value(json!({
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
                rollouts.push(Parsed(Ok(ro)));
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
        let (routers, task) = RouterCaches::start(offline_client(), None, tx);
        task.abort();
        routers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn stripping_keeps_what_is_read_and_drops_the_bulk() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "web-abc",
                "labels": {"app": "web"},
                "annotations": {LAST_APPLIED: "{...}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            "status": {"phase": "Running"}
        }))
        .expect("pod");
        strip_pod(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(
            pod.metadata.annotations,
            Some(BTreeMap::from([("keep".to_string(), "me".to_string())]))
        );
        assert!(pod.spec.is_none());
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }
}
