//! Watch caches of the objects traffic routers edit (Istio VirtualServices and
//! DestinationRules, Gateway API HTTPRoutes), read as `DynamicObject`s.
//!
//! A kind is watched only while its CustomResourceDefinition exists: the CRDs' metadata is
//! watched (small: no schemas), and a kind's reflector starts when its CRD appears (also after
//! Sluice started) and stops when it goes. Every change to a cached object, and every CRD that
//! comes or goes, is sent on a channel so the Rollouts that name the object reconcile at once
//! (a GitOps sync that writes git's weights back mid-canary is undone within moments).
//!
//! Objects keep their annotations: Sluice replaces them whole (under their resourceVersion),
//! so whatever is cached is what is written back; only `managedFields` is dropped (a write
//! without it leaves the server's as they are).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use super::given_back::{ANNOTATION_ROUTED_BY, RoutedBy};
use super::router::TargetKind;
use crate::runtime::index::Index;
use crate::runtime::listed::{Listed, MarkListed, listed};

/// Something a Rollout may route through changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterChange {
    /// An object of `kind` changed (or appeared, or went).
    Object {
        kind: TargetKind,
        namespace: String,
        name: String,
    },
    /// The kind's CRD was installed or removed.
    Kind(TargetKind),
}

/// What the cache knows of one object.
#[derive(Clone, Debug)]
pub enum Cached {
    Found(Arc<DynamicObject>),
    /// The kind is served and watched, and no such object exists.
    Missing,
    /// The kind's CRD is not installed.
    NoCrd,
    /// Outside the namespace Sluice watches: read it from the API server.
    Unwatched,
}

/// The cache did not sync in time (the API server is slow, or refuses the list).
#[derive(Debug, thiserror::Error)]
#[error("the {0} watch cache is not synced yet")]
pub struct NotSynced(pub &'static str);

/// How long a read waits for a cache's first sync before giving up (the reconcile retries).
const SYNC_WAIT: Duration = Duration::from_secs(30);

struct Running {
    store: Store<DynamicObject>,
    /// Whether `store` has its first full list (any number of reconciles wait on it).
    listed: Listed,
    /// The objects by the Rollout their `sluice.dev/routed-by` mark names.
    marks: Index<DynamicObject, (String, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Inner {
    client: Client,
    /// The namespaces watched (all when empty).
    namespaces: Vec<String>,
    crds: Store<PartialObjectMeta<CustomResourceDefinition>>,
    crds_listed: Listed,
    /// Set when Sluice may not read CRDs: every kind is then watched, served or not.
    crds_refused: std::sync::atomic::AtomicBool,
    kinds: Mutex<BTreeMap<TargetKind, Running>>,
    changes: UnboundedSender<RouterChange>,
}

/// The router caches. Cheap to clone.
#[derive(Clone)]
pub struct RouterCaches(Arc<Inner>);

fn api_resource(kind: TargetKind) -> ApiResource {
    let (group, version, kind) = kind.gvk();
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl RouterCaches {
    /// Starts watching the CRDs (the kinds follow); changes are sent on `changes`. The watches
    /// run until the last clone is dropped and [`RouterCaches::stop`] is called. Without
    /// `read_crds` (RBAC with Roles only), every router kind is watched at once, whether its
    /// CRD exists or not, as when the CRDs' list is refused.
    pub fn start(
        client: Client,
        namespaces: Vec<String>,
        read_crds: bool,
        changes: UnboundedSender<RouterChange>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (crds, writer) = reflector::store();
        let (mark, crds_listed) = listed();
        let caches = RouterCaches(Arc::new(Inner {
            client: client.clone(),
            namespaces,
            crds,
            crds_listed,
            crds_refused: std::sync::atomic::AtomicBool::new(!read_crds),
            kinds: Mutex::default(),
            changes,
        }));
        if !read_crds {
            for kind in TargetKind::ALL {
                caches.sync_kind(kind);
            }
            return (caches, tokio::spawn(async {}));
        }
        let weak = Arc::downgrade(&caches.0);
        let task = tokio::spawn(watch_crds(client, writer, mark, weak));
        (caches, task)
    }

    /// Stops every kind's watch.
    pub fn stop(&self) {
        if let Ok(mut k) = self.0.kinds.lock() {
            k.clear();
        }
    }

    fn crd_present(&self, kind: TargetKind) -> bool {
        self.0
            .crds_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            || self
                .0
                .crds
                .get(&ObjectRef::new(kind.crd()))
                .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
    }

    /// Starts or stops the kind's watch to match whether its CRD exists; returns its store
    /// and whether that has its first list.
    fn sync_kind(&self, kind: TargetKind) -> Option<(Store<DynamicObject>, Listed)> {
        let present = self.crd_present(kind);
        let Ok(mut kinds) = self.0.kinds.lock() else {
            return None;
        };
        if !present {
            if kinds.remove(&kind).is_some() {
                tracing::info!(kind = kind.crd(), "CRD removed; no longer watched");
                let _ = self.0.changes.unbounded_send(RouterChange::Kind(kind));
            }
            return None;
        }
        if let Some(r) = kinds.get(&kind) {
            return Some((r.store.clone(), r.listed.clone()));
        }
        tracing::info!(kind = kind.crd(), "CRD found; watching its objects");
        let ar = api_resource(kind);
        let apis: Vec<(String, Api<DynamicObject>)> = if self.0.namespaces.is_empty() {
            vec![(String::new(), Api::all_with(self.0.client.clone(), &ar))]
        } else {
            self.0
                .namespaces
                .iter()
                .map(|ns| {
                    let api = Api::namespaced_with(self.0.client.clone(), ns, &ar);
                    (ns.clone(), api)
                })
                .collect()
        };
        let writer = Writer::new(ar.clone());
        let store = writer.as_reader();
        let events = crate::rollout::cache::watch_events(
            apis,
            watcher::Config::default(),
            |o: &mut DynamicObject| o.meta_mut().managed_fields = None,
            store.clone(),
        );
        let marks = Index::new(store.clone(), ar, marked_by);
        let feed = marks.clone();
        let changes = self.0.changes.clone();
        let (mark, kind_listed) = listed();
        let task = tokio::spawn(async move {
            let stream = events
                .inspect(move |e| {
                    if let Ok(e) = e {
                        feed.apply(e);
                    }
                })
                .reflect(writer)
                .inspect(move |e| mark.saw(e))
                .touched_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(o) => {
                        let change = RouterChange::Object {
                            kind,
                            namespace: o.metadata.namespace.clone().unwrap_or_default(),
                            name: o.metadata.name.clone().unwrap_or_default(),
                        };
                        if changes.unbounded_send(change).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(kind = kind.crd(), error = %e, "router watch"),
                }
            }
        });
        kinds.insert(
            kind,
            Running {
                store: store.clone(),
                listed: kind_listed.clone(),
                marks,
                task,
            },
        );
        let _ = self.0.changes.unbounded_send(RouterChange::Kind(kind));
        Some((store, kind_listed))
    }

    /// Waits for the CRD watch's first sync (or its refusal).
    async fn crds_known(&self) -> Result<(), NotSynced> {
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            if self
                .0
                .crds_refused
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Ok(());
            }
            match tokio::time::timeout(Duration::from_millis(200), self.0.crds_listed.wait()).await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) => return Err(NotSynced("CustomResourceDefinition")),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(NotSynced("CustomResourceDefinition"));
                }
                Err(_) => {}
            }
        }
    }

    /// The cached objects of `kind` marked as routed by Rollout `rollout` in `namespace`.
    pub fn marked_by(
        &self,
        kind: TargetKind,
        namespace: &str,
        rollout: &str,
    ) -> Vec<Arc<DynamicObject>> {
        let Ok(kinds) = self.0.kinds.lock() else {
            return Vec::new();
        };
        kinds
            .get(&kind)
            .map(|r| r.marks.get(&(namespace.to_string(), rollout.to_string())))
            .unwrap_or_default()
    }

    /// The object `name` of `kind` in `namespace`, from the cache.
    pub async fn get(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
    ) -> Result<Cached, NotSynced> {
        let namespaces = &self.0.namespaces;
        if !namespaces.is_empty() && !namespaces.iter().any(|w| w == namespace) {
            return Ok(Cached::Unwatched);
        }
        self.crds_known().await?;
        let Some((store, listed)) = self.sync_kind(kind) else {
            return Ok(Cached::NoCrd);
        };
        match tokio::time::timeout(SYNC_WAIT, listed.wait()).await {
            Ok(Ok(())) => {}
            _ => return Err(NotSynced(kind.crd())),
        }
        let key = ObjectRef::new_with(name, api_resource(kind)).within(namespace);
        Ok(match store.get(&key) {
            Some(o) => Cached::Found(o),
            None => Cached::Missing,
        })
    }
}

/// The Rollout an object's `sluice.dev/routed-by` mark names, if it has one that reads.
fn marked_by(o: &DynamicObject) -> Vec<(String, String)> {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROUTED_BY))
        .and_then(|m| serde_json::from_str::<RoutedBy>(m).ok())
        .map(|m| (m.namespace, m.rollout))
        .into_iter()
        .collect()
}

/// Follows the CRDs: starts a kind's watch when its CRD appears, stops it when it goes.
async fn watch_crds(
    client: Client,
    writer: Writer<PartialObjectMeta<CustomResourceDefinition>>,
    mark: MarkListed,
    caches: std::sync::Weak<Inner>,
) {
    // Metadata only: CRDs carry whole schemas, and only their names matter here.
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client);
    let stream = watcher(api, watcher::Config::default())
        .modify(|o| o.metadata.managed_fields = None)
        .default_backoff()
        .reflect(writer)
        .inspect(move |e| mark.saw(e));
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        let Some(inner) = caches.upgrade() else {
            return;
        };
        let caches = RouterCaches(inner);
        match ev {
            Ok(watcher::Event::InitApply(_) | watcher::Event::Init) => continue,
            Ok(_) => {}
            Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) if e.code == 403 => {
                if !caches
                    .0
                    .crds_refused
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(error = %e.message, "Sluice may not read CustomResourceDefinitions; watching every router kind whether served or not");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "CustomResourceDefinition watch");
                continue;
            }
        }
        for kind in TargetKind::ALL {
            caches.sync_kind(kind);
        }
    }
}
