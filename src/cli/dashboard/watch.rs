//! The dashboard's caches: reflectors over the Rollouts, AnalysisRuns, Sluice's ReplicaSets and
//! the Events about Sluice's objects in scope, and a counter that moves on every change, so the
//! pages re-render from watches instead of polling.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::analysis::AnalysisRun;
use crate::api::constants::{GROUP, LABEL_ROLLOUT, VERSION};
use crate::api::rollout::Rollout;
use crate::runtime::malformed::Parsed;

/// Which namespaces the dashboard shows: one, or all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    All,
}

impl Scope {
    /// `namespace shop`, `all namespaces`.
    pub fn describe(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("namespace {ns}"),
            Scope::All => "all namespaces".into(),
        }
    }

    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = ()>,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
            Scope::All => Api::all(client.clone()),
        }
    }
}

/// The field selector of the Event watch: Events about Sluice's objects only. Events written
/// through `events.k8s.io/v1` (as Sluice writes them) and through `core/v1` are one resource
/// in the API server, so this one watch sees both.
pub fn events_selector() -> String {
    format!("regarding.apiVersion={GROUP}/{VERSION}")
}

/// What the pages read, kept current by [`Watches::start`]'s driver.
#[derive(Clone)]
pub struct Watches {
    pub rollouts: Store<Parsed<Rollout>>,
    pub runs: Store<Parsed<AnalysisRun>>,
    pub replica_sets: Store<ReplicaSet>,
    pub events: Store<Event>,
    /// Moves on every change to any of them.
    pub changes: watch::Receiver<u64>,
    /// Watches failing now (`watching events: ...`), by kind.
    problems: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Watches {
    /// The caches, and the future that fills them (to be spawned; it runs until dropped). Each
    /// watch is ended by the API server after `timeout` seconds and resumed where it was, so a
    /// quiet stream never meets the client's read timeout (which would show as a failed watch).
    pub fn start(client: &Client, scope: &Scope, timeout: u32) -> (Self, BoxFuture<'static, ()>) {
        let config = || watcher::Config::default().timeout(timeout);
        let (tx, changes) = watch::channel(0u64);
        let problems: Arc<Mutex<BTreeMap<&'static str, String>>> = Arc::default();
        let (rollouts, w_rollouts) = reflector::store();
        let (runs, w_runs) = reflector::store();
        let (replica_sets, w_replica_sets) = reflector::store();
        let (events, w_events) = reflector::store();
        let feed = Feed {
            tx: Arc::new(tx),
            problems: problems.clone(),
        };
        let driver = futures::future::join4(
            feed.drive(
                "rollouts",
                scope.api::<Parsed<Rollout>>(client),
                config().any_semantic(),
                w_rollouts,
            ),
            feed.drive(
                "analysisruns",
                scope.api::<Parsed<AnalysisRun>>(client),
                config().any_semantic().labels(LABEL_ROLLOUT),
                w_runs,
            ),
            feed.drive(
                "replicasets",
                scope.api::<ReplicaSet>(client),
                config().labels(LABEL_ROLLOUT),
                w_replica_sets,
            ),
            feed.drive(
                "events",
                scope.api::<Event>(client),
                config().fields(&events_selector()),
                w_events,
            ),
        )
        .map(|_| ())
        .boxed();
        (
            Watches {
                rollouts,
                runs,
                replica_sets,
                events,
                changes,
                problems,
            },
            driver,
        )
    }

    /// Waits until every cache has its first list, or `limit` passes.
    pub async fn ready(&self, limit: Duration) {
        let all = async {
            let _ = self.rollouts.wait_until_ready().await;
            let _ = self.runs.wait_until_ready().await;
            let _ = self.replica_sets.wait_until_ready().await;
            let _ = self.events.wait_until_ready().await;
        };
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// The failing watches, each in a sentence.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(kind, e)| format!("watching {kind}: {e}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Where the watches report: the change counter and the problems.
#[derive(Clone)]
struct Feed {
    tx: Arc<watch::Sender<u64>>,
    problems: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Feed {
    fn drive<K>(
        &self,
        kind: &'static str,
        api: Api<K>,
        config: watcher::Config,
        writer: reflector::store::Writer<K>,
    ) -> BoxFuture<'static, ()>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    {
        let feed = self.clone();
        watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .reflect(writer)
            .for_each(move |event| {
                let feed = feed.clone();
                async move {
                    if let Ok(mut p) = feed.problems.lock() {
                        match &event {
                            Ok(_) => {
                                p.remove(kind);
                            }
                            Err(e) => {
                                eprintln!("dashboard: watching {kind}: {e}");
                                p.insert(kind, e.to_string());
                            }
                        }
                    }
                    feed.tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            })
            .boxed()
    }
}
