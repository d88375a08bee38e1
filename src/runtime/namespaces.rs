//! The watch of one kind over several namespaces, as one watch stream for one store: a
//! controller told `--namespace a --namespace b` (RBAC with Roles in each) watches each
//! namespace apart, since it may not list across the cluster.
//!
//! A store takes one watch stream: at each `Init` it starts a new list aside and at `InitDone`
//! swaps that in whole. Namespaces merged as they come would wipe each other (the first
//! namespace's `InitDone` swaps in a list without the others). So the merged stream:
//!
//! - begins with one `Init`; every namespace's first list goes into it, and one `InitDone`
//!   ends it when every namespace has listed. A namespace's changes that come while others
//!   are still listing are held and passed on after that `InitDone` (the store would apply
//!   them to the old contents, which the swap throws away);
//! - after that, passes a namespace's changes as they are, and turns its re-list (after a
//!   dropped watch: `Init`, `InitApply`..., `InitDone`) into changes: each listed object an
//!   `Apply`, then a `Delete` for each object of that namespace the store holds and the list
//!   did not (deleted while the watch was down).
//!
//! The store is read for those deletions only when the merged stream is asked for its next
//! event, so every event passed before has been applied to it.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};

type Item<K> = Result<Event<K>, watcher::Error>;

/// What the merged stream passes on next.
enum Next<K> {
    Pass(Item<K>),
    /// The `Delete`s of a namespace's objects its latest list did not have, read from the
    /// store when this is reached.
    Gone(usize),
}

/// Per namespace: its name, whether its first list is in, and while a list is open (from its
/// `Init` to the deletions after its `InitDone`) the names it holds.
struct Namespace {
    name: String,
    listed: bool,
    holds: Option<HashSet<String>>,
}

/// The watches of several namespaces as one stream (see the module's documentation).
pub struct Merged<K: Resource + Clone + 'static>
where
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    inner: SelectAll<BoxStream<'static, (usize, Item<K>)>>,
    namespaces: Vec<Namespace>,
    store: Store<K>,
    /// The one `Init` was passed.
    begun: bool,
    /// The one `InitDone` was passed: every namespace has listed.
    whole: bool,
    /// Changes held while other namespaces list.
    held: Vec<Item<K>>,
    queue: VecDeque<Next<K>>,
}

/// Merges `watches` (namespace name, its watch) into one stream for the store `store` reads.
pub fn merged<K>(watches: Vec<(String, BoxStream<'static, Item<K>>)>, store: Store<K>) -> Merged<K>
where
    K: Resource + Clone + Send + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    let mut inner = SelectAll::new();
    let mut namespaces = Vec::new();
    for (i, (name, watch)) in watches.into_iter().enumerate() {
        inner.push(watch.map(move |e| (i, e)).boxed());
        namespaces.push(Namespace {
            name,
            listed: false,
            holds: None,
        });
    }
    Merged {
        inner,
        namespaces,
        store,
        begun: false,
        whole: false,
        held: Vec::new(),
        queue: VecDeque::new(),
    }
}

fn name_of<K: Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

impl<K> Merged<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    /// Takes in one event of namespace `i`.
    fn take(&mut self, i: usize, item: Item<K>) {
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                self.queue.push_back(Next::Pass(Err(e)));
                return;
            }
        };
        let ns = &mut self.namespaces[i];
        match event {
            Event::Init => {
                ns.holds = Some(HashSet::new());
                if !self.begun {
                    self.begun = true;
                    self.queue.push_back(Next::Pass(Ok(Event::Init)));
                }
            }
            Event::InitApply(o) => {
                if let Some(h) = ns.holds.as_mut() {
                    h.insert(name_of(&o));
                }
                let e = if self.whole {
                    Event::Apply(o)
                } else {
                    Event::InitApply(o)
                };
                self.queue.push_back(Next::Pass(Ok(e)));
            }
            Event::InitDone => {
                ns.listed = true;
                if self.whole {
                    self.queue.push_back(Next::Gone(i));
                } else if self.namespaces.iter().all(|n| n.listed) {
                    self.whole = true;
                    self.queue.push_back(Next::Pass(Ok(Event::InitDone)));
                    for e in std::mem::take(&mut self.held) {
                        self.queue.push_back(Next::Pass(e));
                    }
                    // A namespace that listed again while others listed may have left
                    // objects in the first list that are gone.
                    for (j, n) in self.namespaces.iter().enumerate() {
                        if n.holds.is_some() {
                            self.queue.push_back(Next::Gone(j));
                        }
                    }
                }
            }
            Event::Apply(o) => {
                if let Some(h) = ns.holds.as_mut() {
                    h.insert(name_of(&o));
                }
                self.pass_or_hold(Event::Apply(o));
            }
            Event::Delete(o) => {
                if let Some(h) = ns.holds.as_mut() {
                    h.remove(&name_of(&o));
                }
                self.pass_or_hold(Event::Delete(o));
            }
        }
    }

    fn pass_or_hold(&mut self, e: Event<K>) {
        if self.whole {
            self.queue.push_back(Next::Pass(Ok(e)));
        } else {
            self.held.push(Ok(e));
        }
    }

    /// The `Delete`s for namespace `i`'s objects in the store that its latest list did not
    /// have; its list is closed.
    fn gone(&mut self, i: usize) -> Vec<Item<K>> {
        let ns = &mut self.namespaces[i];
        let Some(holds) = ns.holds.take() else {
            return Vec::new();
        };
        self.store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns.name.as_str()))
            .filter(|o| !holds.contains(&name_of(o.as_ref())))
            .map(|o| Ok(Event::Delete(o.as_ref().clone())))
            .collect()
    }
}

impl<K> Stream for Merged<K>
where
    K: Resource + Clone + Unpin + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Unpin,
{
    type Item = Item<K>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.queue.pop_front() {
                Some(Next::Pass(item)) => return Poll::Ready(Some(item)),
                Some(Next::Gone(i)) => {
                    let deletes = this.gone(i);
                    for d in deletes.into_iter().rev() {
                        this.queue.push_front(Next::Pass(d));
                    }
                    continue;
                }
                None => {}
            }
            match this.inner.poll_next_unpin(cx) {
                Poll::Ready(Some((i, item))) => this.take(i, item),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::{self, ObjectRef};

    fn cm(ns: &str, name: &str, v: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([("v".to_string(), v.to_string())].into()),
            ..Default::default()
        }
    }

    type Feed = mpsc::UnboundedSender<Item<ConfigMap>>;

    /// Two namespaces merged into a store; their feeds, the store, and the reflected stream.
    fn two() -> (
        Feed,
        Feed,
        Store<ConfigMap>,
        BoxStream<'static, Item<ConfigMap>>,
    ) {
        let (a_tx, a_rx) = mpsc::unbounded();
        let (b_tx, b_rx) = mpsc::unbounded();
        let (store, writer) = reflector::store();
        let stream = merged(
            vec![("a".into(), a_rx.boxed()), ("b".into(), b_rx.boxed())],
            store.clone(),
        )
        .reflect(writer)
        .boxed();
        (a_tx, b_tx, store, stream)
    }

    fn send(tx: &Feed, e: Event<ConfigMap>) {
        tx.unbounded_send(Ok(e)).expect("feed");
    }

    /// Polls `stream` until it has nothing ready; returns what it passed.
    async fn drain(stream: &mut BoxStream<'static, Item<ConfigMap>>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await
        {
            seen.push(match item {
                Ok(Event::Init) => "Init".to_string(),
                Ok(Event::InitDone) => "InitDone".to_string(),
                Ok(Event::InitApply(o)) => format!("InitApply {}", name_of(&o)),
                Ok(Event::Apply(o)) => format!("Apply {}", name_of(&o)),
                Ok(Event::Delete(o)) => format!("Delete {}", name_of(&o)),
                Err(e) => format!("Err {e}"),
            });
        }
        seen
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut n: Vec<String> = store
            .state()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    name_of(o.as_ref())
                )
            })
            .collect();
        n.sort();
        n
    }

    #[tokio::test]
    async fn the_store_holds_every_namespace_once_all_have_listed() {
        let (a, b, store, mut stream) = two();
        send(&a, Event::Init);
        send(&a, Event::InitApply(cm("a", "one", "1")));
        send(&a, Event::InitDone);
        // a's change while b still lists: held, not lost in the swap.
        send(&a, Event::Apply(cm("a", "two", "1")));
        send(&b, Event::Init);
        send(&b, Event::InitApply(cm("b", "one", "1")));
        let early = drain(&mut stream).await;
        assert_eq!(early, vec!["Init", "InitApply one", "InitApply one"]);
        assert!(names(&store).is_empty(), "no namespace swapped in alone");
        send(&b, Event::InitDone);
        let done = drain(&mut stream).await;
        assert_eq!(done, vec!["InitDone", "Apply two"]);
        assert_eq!(names(&store), vec!["a/one", "a/two", "b/one"]);
        // Later changes pass as they come.
        send(&b, Event::Delete(cm("b", "one", "1")));
        send(&a, Event::Apply(cm("a", "one", "2")));
        drain(&mut stream).await;
        assert_eq!(names(&store), vec!["a/one", "a/two"]);
        let one = store
            .get(&ObjectRef::new("one").within("a"))
            .expect("a/one");
        assert_eq!(
            one.data
                .as_ref()
                .and_then(|d| d.get("v"))
                .map(String::as_str),
            Some("2")
        );
    }

    #[tokio::test]
    async fn a_relist_of_one_namespace_leaves_the_others_and_drops_what_is_gone() {
        let (a, b, store, mut stream) = two();
        for (tx, ns) in [(&a, "a"), (&b, "b")] {
            send(tx, Event::Init);
            send(tx, Event::InitApply(cm(ns, "one", "1")));
            send(tx, Event::InitApply(cm(ns, "two", "1")));
            send(tx, Event::InitDone);
        }
        drain(&mut stream).await;
        assert_eq!(names(&store), vec!["a/one", "a/two", "b/one", "b/two"]);
        // a's watch dropped: a/two was deleted and a/three created meanwhile.
        send(&a, Event::Init);
        send(&a, Event::InitApply(cm("a", "one", "1")));
        send(&a, Event::InitApply(cm("a", "three", "1")));
        // A change that comes while the list is open counts as held by it.
        send(&a, Event::Apply(cm("a", "four", "1")));
        send(&a, Event::InitDone);
        let relist = drain(&mut stream).await;
        assert_eq!(
            relist,
            vec!["Apply one", "Apply three", "Apply four", "Delete two"],
            "no Init or InitDone: the store is not swapped"
        );
        assert_eq!(
            names(&store),
            vec!["a/four", "a/one", "a/three", "b/one", "b/two"]
        );
    }

    #[tokio::test]
    async fn a_namespace_that_lists_again_while_others_list_drops_what_went() {
        let (a, b, store, mut stream) = two();
        send(&a, Event::Init);
        send(&a, Event::InitApply(cm("a", "one", "1")));
        send(&a, Event::InitApply(cm("a", "two", "1")));
        send(&a, Event::InitDone);
        send(&a, Event::Init);
        send(&a, Event::InitApply(cm("a", "one", "1")));
        send(&a, Event::InitDone);
        send(&b, Event::Init);
        send(&b, Event::InitDone);
        drain(&mut stream).await;
        assert_eq!(names(&store), vec!["a/one"]);
    }

    #[tokio::test]
    async fn errors_pass_through() {
        let (a, _b, _store, mut stream) = two();
        a.unbounded_send(Err(watcher::Error::NoResourceVersion))
            .expect("feed");
        let seen = drain(&mut stream).await;
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("Err"), "{seen:?}");
    }
}
