//! A secondary index beside a reflector store: which objects have a given key (their
//! namespace, the Rollout they belong to, the Services they name...), so a reconcile or a
//! trigger finds what it reads in O(hits) instead of scanning the whole watch cache.
//!
//! The index is fed the watch's events *before* the store is (`.inspect` ahead of
//! `.reflect(writer)`): the store then still holds the previous copy of a
//! changed object, whose keys are the ones to leave. An `Init` ... `InitDone` re-list builds a
//! new index aside and swaps it in whole at `InitDone`, as the store does. Lookups read the
//! objects from the store and keep only those that have the key now, so a lookup made between
//! the index's update and the store's never returns an object without the key.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// Where an object is: its namespace (none when cluster-scoped) and name.
///
/// Kept as one string, `namespace/name` or `name` (neither has a `/`): one allocation of the
/// two names' length where a pair of `String`s took two and 48 bytes besides; an index holds
/// one per object and key (about 14 per Rollout across the indexes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Place(Box<str>);

impl Place {
    fn new(namespace: Option<&str>, name: &str) -> Self {
        Place(match namespace {
            Some(ns) => format!("{ns}/{name}").into(),
            None => name.into(),
        })
    }

    /// Its namespace (none when cluster-scoped) and name.
    fn parts(&self) -> (Option<&str>, &str) {
        match self.0.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, &self.0),
        }
    }
}

/// The keys of an object (none, one or several).
pub type KeysOf<K, Q> = Arc<dyn Fn(&K) -> Vec<Q> + Send + Sync>;

/// The places of the objects with one key: a short list while few (most keys have one to a
/// handful: a hash set of one costs several times its entry), a hash set once many (a
/// namespace's Rollouts).
enum Places {
    Few(Vec<Place>),
    Many(HashSet<Place>),
}

/// Places a key holds in a list before they move to a hash set.
const FEW: usize = 16;

impl Places {
    fn insert(&mut self, place: &Place) {
        match self {
            Places::Few(v) if v.contains(place) => {}
            Places::Few(v) if v.len() < FEW => v.push(place.clone()),
            Places::Few(v) => {
                let mut set: HashSet<Place> = v.drain(..).collect();
                set.insert(place.clone());
                *self = Places::Many(set);
            }
            Places::Many(set) => {
                set.insert(place.clone());
            }
        }
    }

    fn remove(&mut self, place: &Place) {
        match self {
            Places::Few(v) => {
                if let Some(i) = v.iter().position(|p| p == place) {
                    v.swap_remove(i);
                }
            }
            Places::Many(set) => {
                set.remove(place);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Places::Few(v) => v.is_empty(),
            Places::Many(set) => set.is_empty(),
        }
    }

    fn to_vec(&self) -> Vec<Place> {
        match self {
            Places::Few(v) => v.clone(),
            Places::Many(set) => set.iter().cloned().collect(),
        }
    }
}

struct Table<Q> {
    by_key: HashMap<Q, Places>,
}

impl<Q: Hash + Eq> Default for Table<Q> {
    fn default() -> Self {
        Table {
            by_key: HashMap::new(),
        }
    }
}

impl<Q: Hash + Eq> Table<Q> {
    fn insert(&mut self, keys: Vec<Q>, place: &Place) {
        for k in keys {
            self.by_key
                .entry(k)
                .or_insert_with(|| Places::Few(Vec::with_capacity(1)))
                .insert(place);
        }
    }

    fn remove(&mut self, keys: Vec<Q>, place: &Place) {
        for k in keys {
            if let Some(places) = self.by_key.get_mut(&k) {
                places.remove(place);
                if places.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }
}

struct State<Q> {
    live: Table<Q>,
    /// The index a re-list is building, swapped in at `InitDone`.
    building: Option<Table<Q>>,
}

/// Objects of a store by key. Cheap to clone (clones share the index).
pub struct Index<K: Resource + 'static, Q>
where
    K::DynamicType: Eq + Hash,
{
    store: Store<K>,
    dyntype: K::DynamicType,
    keys: KeysOf<K, Q>,
    state: Arc<RwLock<State<Q>>>,
}

impl<K: Resource + 'static, Q> Clone for Index<K, Q>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Index {
            store: self.store.clone(),
            dyntype: self.dyntype.clone(),
            keys: self.keys.clone(),
            state: self.state.clone(),
        }
    }
}

fn place_of<K: Resource>(o: &K) -> Place {
    let m = o.meta();
    Place::new(
        m.namespace.as_deref(),
        m.name.as_deref().unwrap_or_default(),
    )
}

impl<K, Q> Index<K, Q>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
    Q: Hash + Eq,
{
    /// An empty index over `store` (of objects of `dyntype`), keyed by `keys`. It must be fed
    /// every event of the store's watch, each before the store is.
    pub fn new(
        store: Store<K>,
        dyntype: K::DynamicType,
        keys: impl Fn(&K) -> Vec<Q> + Send + Sync + 'static,
    ) -> Self {
        Index {
            store,
            dyntype,
            keys: Arc::new(keys),
            state: Arc::new(RwLock::new(State {
                live: Table::default(),
                building: None,
            })),
        }
    }

    fn object_ref(&self, place: &Place) -> ObjectRef<K> {
        let (namespace, name) = place.parts();
        let r = ObjectRef::new_with(name, self.dyntype.clone());
        match namespace {
            Some(ns) => r.within(ns),
            None => r,
        }
    }

    /// The store's copy of the object at `place` (the one before an event is applied).
    fn cached(&self, place: &Place) -> Option<Arc<K>> {
        self.store.get(&self.object_ref(place))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<Q>> {
        // A panic while holding the lock leaves the tables whole (no update is half made of
        // anything but set inserts and removes): carry on with them.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one watch event into the index; call it before the store applies the event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => {
                let place = place_of(o);
                let old = self.cached(&place).map(|c| (self.keys)(&c));
                let new = (self.keys)(o);
                let mut state = self.write();
                if let Some(old) = old {
                    state.live.remove(old, &place);
                }
                state.live.insert(new, &place);
            }
            watcher::Event::Delete(o) => {
                let place = place_of(o);
                let old = self.cached(&place).map(|c| (self.keys)(&c));
                let last = (self.keys)(o);
                let mut state = self.write();
                if let Some(old) = old {
                    state.live.remove(old, &place);
                }
                state.live.remove(last, &place);
            }
            watcher::Event::Init => self.write().building = Some(Table::default()),
            watcher::Event::InitApply(o) => {
                let (place, keys) = (place_of(o), (self.keys)(o));
                self.write()
                    .building
                    .get_or_insert_with(Table::default)
                    .insert(keys, &place);
            }
            watcher::Event::InitDone => {
                let mut state = self.write();
                state.live = state.building.take().unwrap_or_default();
            }
        }
    }

    /// The objects that have `key` now.
    pub fn get(&self, key: &Q) -> Vec<Arc<K>> {
        let places: Vec<Place> = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            match state.live.by_key.get(key) {
                Some(places) => places.to_vec(),
                None => return Vec::new(),
            }
        };
        places
            .iter()
            .filter_map(|p| self.cached(p))
            .filter(|o| (self.keys)(o).contains(key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::{self, store::Writer};
    use watcher::Event;

    #[test]
    fn a_place_reads_back_its_namespace_and_name() {
        let namespaced = Place::new(Some("shop"), "web-6d4f");
        assert_eq!(namespaced.parts(), (Some("shop"), "web-6d4f"));
        let cluster = Place::new(None, "web-check");
        assert_eq!(cluster.parts(), (None, "web-check"));
        assert_ne!(Place::new(Some("a"), "b"), Place::new(None, "b"));
        assert_eq!(std::mem::size_of::<Place>(), 16);
    }

    /// A ConfigMap in `ns` whose `app` label is `app` (none when empty).
    fn cm(ns: &str, name: &str, app: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        if !app.is_empty() {
            c.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        }
        c
    }

    /// Keyed by namespace and `app` label; unlabelled objects have no key.
    fn by_app(c: &ConfigMap) -> Vec<(String, String)> {
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        c.metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| *k == "app")
            .map(|(_, v)| (ns.clone(), v.clone()))
            .collect()
    }

    struct Fixture {
        index: Index<ConfigMap, (String, String)>,
        writer: Writer<ConfigMap>,
    }

    impl Fixture {
        fn new() -> Self {
            let (store, writer) = reflector::store();
            Fixture {
                index: Index::new(store, (), by_app),
                writer,
            }
        }

        /// As the watch stream does: the index first, then the store.
        fn feed(&mut self, ev: Event<ConfigMap>) {
            self.index.apply(&ev);
            self.writer.apply_watcher_event(&ev);
        }

        fn names(&self, ns: &str, app: &str) -> Vec<String> {
            let mut n: Vec<String> = self
                .index
                .get(&(ns.into(), app.into()))
                .iter()
                .map(|c| c.metadata.name.clone().unwrap_or_default())
                .collect();
            n.sort();
            n
        }

        fn keys(&self) -> usize {
            self.index.state.read().expect("lock").live.by_key.len()
        }
    }

    #[test]
    fn an_initial_list_shows_only_once_done_and_then_by_key() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitApply(cm("a", "one", "web")));
        f.feed(Event::InitApply(cm("a", "two", "web")));
        f.feed(Event::InitApply(cm("b", "one", "web")));
        f.feed(Event::InitApply(cm("a", "bare", "")));
        assert!(f.names("a", "web").is_empty(), "nothing before InitDone");
        f.feed(Event::InitDone);
        assert_eq!(f.names("a", "web"), ["one", "two"]);
        assert_eq!(f.names("b", "web"), ["one"]);
        assert!(f.names("a", "api").is_empty());
        assert_eq!(f.keys(), 2, "the unlabelled object has no key");
    }

    #[test]
    fn applies_add_and_deletes_remove() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitDone);
        f.feed(Event::Apply(cm("a", "one", "web")));
        f.feed(Event::Apply(cm("a", "two", "web")));
        assert_eq!(f.names("a", "web"), ["one", "two"]);
        // The same object again (a status change): still once.
        f.feed(Event::Apply(cm("a", "one", "web")));
        assert_eq!(f.names("a", "web"), ["one", "two"]);
        f.feed(Event::Delete(cm("a", "one", "web")));
        assert_eq!(f.names("a", "web"), ["two"]);
        f.feed(Event::Delete(cm("a", "two", "web")));
        assert!(f.names("a", "web").is_empty());
        assert_eq!(f.keys(), 0, "no empty sets are kept");
    }

    #[test]
    fn a_key_with_many_objects_keeps_each_once_and_lets_each_go() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitDone);
        let all: Vec<String> = (0..3 * FEW).map(|i| format!("o{i:03}")).collect();
        for n in &all {
            f.feed(Event::Apply(cm("a", n, "web")));
            f.feed(Event::Apply(cm("a", n, "web")));
        }
        assert_eq!(f.names("a", "web"), all);
        for n in all.iter().skip(1) {
            f.feed(Event::Delete(cm("a", n, "web")));
        }
        assert_eq!(f.names("a", "web"), ["o000"]);
        f.feed(Event::Delete(cm("a", "o000", "web")));
        assert_eq!(f.keys(), 0);
    }

    #[test]
    fn a_changed_key_moves_the_object() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitApply(cm("a", "one", "web")));
        f.feed(Event::InitDone);
        f.feed(Event::Apply(cm("a", "one", "api")));
        assert!(f.names("a", "web").is_empty());
        assert_eq!(f.names("a", "api"), ["one"]);
        // Label removed: no key at all.
        f.feed(Event::Apply(cm("a", "one", "")));
        assert!(f.names("a", "api").is_empty());
        assert_eq!(f.keys(), 0);
        // And back; then deleted with a last state whose label differs from the cached one.
        f.feed(Event::Apply(cm("a", "one", "web")));
        assert_eq!(f.names("a", "web"), ["one"]);
        f.feed(Event::Delete(cm("a", "one", "api")));
        assert!(f.names("a", "web").is_empty());
        assert_eq!(f.keys(), 0);
    }

    #[test]
    fn a_relist_replaces_the_whole_index_at_once() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitApply(cm("a", "gone", "web")));
        f.feed(Event::InitApply(cm("a", "kept", "web")));
        f.feed(Event::InitApply(cm("a", "moved", "web")));
        f.feed(Event::InitDone);
        // The watch restarts: "gone" was deleted and "moved" relabelled while it was down.
        f.feed(Event::Init);
        f.feed(Event::InitApply(cm("a", "kept", "web")));
        f.feed(Event::InitApply(cm("a", "moved", "api")));
        f.feed(Event::InitApply(cm("a", "new", "web")));
        assert_eq!(
            f.names("a", "web"),
            ["gone", "kept", "moved"],
            "the old index stands until the list is done"
        );
        f.feed(Event::InitDone);
        assert_eq!(f.names("a", "web"), ["kept", "new"]);
        assert_eq!(f.names("a", "api"), ["moved"]);
    }

    #[test]
    fn a_lookup_never_returns_an_object_without_the_key() {
        let mut f = Fixture::new();
        f.feed(Event::Init);
        f.feed(Event::InitApply(cm("a", "one", "web")));
        f.feed(Event::InitDone);
        // The index has taken the relabel, the store not yet.
        f.index.apply(&Event::Apply(cm("a", "one", "api")));
        assert!(f.names("a", "web").is_empty());
        assert!(
            f.names("a", "api").is_empty(),
            "the store's copy is still labelled web"
        );
        f.writer
            .apply_watcher_event(&Event::Apply(cm("a", "one", "api")));
        assert_eq!(f.names("a", "api"), ["one"]);
    }

    #[tokio::test]
    async fn fed_from_the_stream_ahead_of_the_store() {
        let (store, writer) = reflector::store();
        let index = Index::new(store.clone(), (), by_app);
        let events: Vec<Result<Event<ConfigMap>, watcher::Error>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(cm("a", "one", "web"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(cm("a", "one", "api"))),
            Ok(Event::Apply(cm("a", "two", "web"))),
        ];
        let feed = index.clone();
        let seen: Vec<_> = futures::stream::iter(events)
            .inspect(move |e| {
                if let Ok(e) = e {
                    feed.apply(e)
                }
            })
            .reflect(writer)
            .collect()
            .await;
        assert_eq!(seen.len(), 5);
        let names = |app: &str| -> Vec<String> {
            index
                .get(&("a".into(), app.into()))
                .iter()
                .map(|c| c.metadata.name.clone().unwrap_or_default())
                .collect()
        };
        assert_eq!(names("web"), ["two"]);
        assert_eq!(names("api"), ["one"]);
        assert_eq!(store.state().len(), 2);
    }
}
