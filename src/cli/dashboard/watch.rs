//! The dashboard's caches: reflectors over the Rollouts, AnalysisRuns, Sluice's ReplicaSets and
//! the Events about Sluice's objects in scope, and a counter that moves on every change, so the
//! pages re-render from watches instead of polling.

use std::collections::{BTreeMap, BTreeSet};
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
    /// The kinds whose first list has not ended yet.
    unlisted: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Watches {
    /// The caches, and the future that fills them (to be spawned; it runs until dropped). Each
    /// watch is ended by the API server after `timeout` seconds and resumed where it was, so a
    /// quiet stream never meets the client's read timeout (which would show as a failed watch).
    pub fn start(client: &Client, scope: &Scope, timeout: u32) -> (Self, BoxFuture<'static, ()>) {
        let config = || watcher::Config::default().timeout(timeout);
        let (tx, changes) = watch::channel(0u64);
        let problems: Arc<Mutex<BTreeMap<&'static str, String>>> = Arc::default();
        let unlisted: Arc<Mutex<BTreeSet<&'static str>>> = Arc::default();
        let (rollouts, w_rollouts) = reflector::store();
        let (runs, w_runs) = reflector::store();
        let (replica_sets, w_replica_sets) = reflector::store();
        let (events, w_events) = reflector::store();
        let feed = Feed {
            tx: Arc::new(tx),
            problems: problems.clone(),
            unlisted: unlisted.clone(),
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
                unlisted,
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

    /// True until every watch has had its first list: an empty view then means "not read
    /// yet", not "none".
    pub fn loading(&self) -> bool {
        self.unlisted.lock().map(|u| !u.is_empty()).unwrap_or(false)
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

/// Where the watches report: the change counter, the problems and the first lists' ends.
#[derive(Clone)]
struct Feed {
    tx: Arc<watch::Sender<u64>>,
    problems: Arc<Mutex<BTreeMap<&'static str, String>>>,
    unlisted: Arc<Mutex<BTreeSet<&'static str>>>,
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
        self.expect_list(kind);
        let feed = self.clone();
        watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .reflect(writer)
            .for_each(move |event| {
                feed.saw(kind, &event);
                futures::future::ready(())
            })
            .boxed()
    }

    /// Counts `kind` as loading until its watch's first list ends (see [`Feed::saw`]).
    fn expect_list(&self, kind: &'static str) {
        if let Ok(mut u) = self.unlisted.lock() {
            u.insert(kind);
        }
    }

    /// Takes note of one event of `kind`'s watch: the end of a first list, a failure, or a
    /// success after one; and wakes the pages.
    fn saw<K, E: std::fmt::Display>(
        &self,
        kind: &'static str,
        event: &Result<watcher::Event<K>, E>,
    ) {
        if let (Ok(watcher::Event::InitDone), Ok(mut u)) = (event, self.unlisted.lock()) {
            u.remove(kind);
        }
        if let Ok(mut p) = self.problems.lock() {
            match event {
                Ok(_) => {
                    p.remove(kind);
                }
                Err(e) => {
                    eprintln!("dashboard: watching {kind}: {e}");
                    p.insert(kind, e.to_string());
                }
            }
        }
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> (Feed, Watches) {
        let (tx, changes) = watch::channel(0u64);
        let (rollouts, _) = reflector::store();
        let (runs, _) = reflector::store();
        let (replica_sets, _) = reflector::store();
        let (events, _) = reflector::store();
        let feed = Feed {
            tx: Arc::new(tx),
            problems: Arc::default(),
            unlisted: Arc::default(),
        };
        let watches = Watches {
            rollouts,
            runs,
            replica_sets,
            events,
            changes,
            problems: feed.problems.clone(),
            unlisted: feed.unlisted.clone(),
        };
        for kind in KINDS {
            feed.expect_list(kind);
        }
        (feed, watches)
    }

    const KINDS: [&str; 4] = ["rollouts", "analysisruns", "replicasets", "events"];

    type Seen = Result<watcher::Event<ReplicaSet>, String>;

    #[test]
    fn loading_until_every_watch_ends_its_first_list() {
        let (feed, watches) = feed();
        assert!(watches.loading());
        for kind in KINDS {
            let started: Seen = Ok(watcher::Event::Init);
            feed.saw(kind, &started);
            let one: Seen = Ok(watcher::Event::InitApply(ReplicaSet::default()));
            feed.saw(kind, &one);
        }
        assert!(watches.loading(), "no first list has ended");
        for (i, kind) in KINDS.iter().enumerate() {
            assert!(watches.loading(), "{i} of {} lists ended", KINDS.len());
            let done: Seen = Ok(watcher::Event::InitDone);
            feed.saw(kind, &done);
        }
        assert!(!watches.loading(), "every first list ended");
        assert_eq!(*watches.changes.borrow(), 3 * KINDS.len() as u64);
    }

    #[test]
    fn a_failure_after_the_first_list_is_a_problem_not_loading() {
        let (feed, watches) = feed();
        for kind in KINDS {
            let done: Seen = Ok(watcher::Event::InitDone);
            feed.saw(kind, &done);
        }
        let failed: Seen = Err("the API server went away".into());
        feed.saw("events", &failed);
        assert!(!watches.loading());
        assert_eq!(
            watches.problems(),
            vec!["watching events: the API server went away".to_string()]
        );
        let back: Seen = Ok(watcher::Event::Init);
        feed.saw("events", &back);
        assert!(watches.problems().is_empty());
        assert!(!watches.loading(), "a re-list does not hide what is held");
    }
}
