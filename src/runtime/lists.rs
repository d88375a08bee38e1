//! How the controller's caches get their first lists: streamed (a watch with
//! `sendInitialEvents=true`, served from the API server's watch cache one object at a time, as
//! client-go's informers do with `WatchListClient`) or paged (a list of 500 objects at a time,
//! then a watch).
//!
//! Streamed, neither side builds a whole list at once: the API server encodes each object as
//! a watch event from its cache, and the controller decodes and strips it as it comes, so the
//! peak after a restart is the cache, not the cache plus a list of every Rollout in one body.
//! It needs the API server's `WatchList` feature (beta and on by default in Kubernetes 1.37,
//! this project's version) and an etcd with RequestWatchProgress (3.7 answers; Debian's 3.4
//! gets a 500 from the API server). `auto`, the default, asks the API server once at start: a
//! streamed watch of Rollouts that selects none must end its initial events with the bookmark
//! that says so; anything else (an error, as an API server without the feature or with an old
//! etcd answers, or no bookmark in time) means paged.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

/// The annotation of the bookmark that ends a streamed watch's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A label no object carries: the probe's watch selects nothing.
const PROBE_SELECTOR: &str = "sluice.dev/list-probe";

/// How long the probe waits for its bookmark.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The first lists of the caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InitialLists {
    /// Streamed when the API server can, else paged (asked once at start).
    #[default]
    Auto,
    /// Streamed from the API server's watch cache (`sendInitialEvents`).
    Streamed,
    /// Paged lists of 500, then a watch.
    Paged,
}

impl InitialLists {
    /// The words used in logs and in `--initial-lists`.
    pub fn as_str(self) -> &'static str {
        match self {
            InitialLists::Auto => "auto",
            InitialLists::Streamed => "streamed",
            InitialLists::Paged => "paged",
        }
    }

    /// A watcher configuration with this strategy: streamed reads the API server's watch
    /// cache (any resourceVersion, as client-go's informers do); paged reads 500 at a time,
    /// from the watch cache too when `from_cache` (`resourceVersion=0`), else from etcd.
    /// `Auto` is never passed here (see [`decide`]); it is taken as paged.
    pub fn config(self, from_cache: bool) -> watcher::Config {
        match self {
            InitialLists::Streamed => watcher::Config::default().streaming_lists(),
            InitialLists::Auto | InitialLists::Paged if from_cache => {
                watcher::Config::default().any_semantic()
            }
            InitialLists::Auto | InitialLists::Paged => watcher::Config::default(),
        }
    }
}

/// What the probe saw: streamed lists work, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The initial events ended with the bookmark that marks their end.
    Streams,
    /// They did not; why.
    Refused(String),
}

/// Whether the initial events of a streamed watch, as `events` delivers them, end with the
/// bookmark that marks their end (a stream that ends first, or an error, is a refusal).
pub async fn judge<K, S>(mut events: S) -> Probe
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    loop {
        match events.try_next().await {
            Ok(Some(WatchEvent::Bookmark(b))) => {
                if b.metadata.annotations.contains_key(INITIAL_EVENTS_END) {
                    return Probe::Streams;
                }
            }
            Ok(Some(WatchEvent::Error(e))) => {
                return Probe::Refused(format!("the watch answered {}: {}", e.code, e.message));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Probe::Refused(
                    "the watch ended with no end-of-initial-events bookmark".into(),
                );
            }
            Err(e) => return Probe::Refused(format!("the watch failed: {e}")),
        }
    }
}

/// Asks the API server, through `api`, whether it streams initial lists.
pub async fn probe<K>(api: &Api<K>, limit: Duration) -> Probe
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let secs = u32::try_from(limit.as_secs()).unwrap_or(u32::MAX).max(1);
    let wp = WatchParams::default()
        .labels(PROBE_SELECTOR)
        .timeout(secs)
        .initial_events();
    let asked = async {
        match api.watch(&wp, "0").await {
            Ok(events) => judge(events.boxed()).await,
            Err(e) => Probe::Refused(format!("the watch was refused: {e}")),
        }
    };
    match tokio::time::timeout(limit, asked).await {
        Ok(p) => p,
        Err(_) => Probe::Refused(format!(
            "no end-of-initial-events bookmark within {} s",
            limit.as_secs()
        )),
    }
}

/// The strategy to use: `asked` unless it is `Auto`, then what the probe says.
pub async fn decide<K>(asked: InitialLists, api: &Api<K>) -> InitialLists
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    if asked != InitialLists::Auto {
        tracing::info!(initial_lists = asked.as_str(), "first lists as told");
        return asked;
    }
    match probe(api, PROBE_LIMIT).await {
        Probe::Streams => {
            tracing::info!(
                initial_lists = "streamed",
                "the API server streams initial lists: caches fill from its watch cache"
            );
            InitialLists::Streamed
        }
        Probe::Refused(why) => {
            tracing::info!(
                initial_lists = "paged",
                reason = %why,
                "the API server does not stream initial lists: caches fill from paged lists"
            );
            InitialLists::Paged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::{Status, watch::Bookmark};

    fn bookmark(end: bool) -> WatchEvent<Pod> {
        let mut annotations = std::collections::BTreeMap::new();
        if end {
            annotations.insert(INITIAL_EVENTS_END.to_string(), "true".to_string());
        }
        let b: Bookmark = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"resourceVersion": "7", "annotations": annotations}
        }))
        .expect("a bookmark");
        WatchEvent::Bookmark(b)
    }

    fn judged(events: Vec<kube::Result<WatchEvent<Pod>>>) -> Probe {
        futures::executor::block_on(judge(futures::stream::iter(events)))
    }

    #[test]
    fn the_end_of_initial_events_bookmark_means_streamed() {
        assert_eq!(
            judged(vec![Ok(bookmark(false)), Ok(bookmark(true))]),
            Probe::Streams
        );
    }

    #[test]
    fn a_stream_without_that_bookmark_or_with_an_error_means_paged() {
        let Probe::Refused(why) = judged(vec![Ok(bookmark(false))]) else {
            panic!("a watch with no end bookmark streams nothing");
        };
        assert!(why.contains("no end-of-initial-events"), "{why}");
        let refused = WatchEvent::Error(Box::new(
            serde_json::from_value::<Status>(serde_json::json!({
                "status": "Failure", "code": 422, "reason": "Invalid",
                "message": "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
            }))
            .expect("an error"),
        ));
        let Probe::Refused(why) = judged(vec![Ok(refused)]) else {
            panic!("an error streams nothing");
        };
        assert!(why.contains("422") && why.contains("WatchList"), "{why}");
    }

    #[test]
    fn each_strategy_makes_its_watcher_configuration() {
        use kube::runtime::watcher::{InitialListStrategy, ListSemantic};
        let s = InitialLists::Streamed.config(false);
        assert_eq!(s.initial_list_strategy, InitialListStrategy::StreamingList);
        let p = InitialLists::Paged.config(true);
        assert_eq!(p.initial_list_strategy, InitialListStrategy::ListWatch);
        assert_eq!(p.list_semantic, ListSemantic::Any);
        assert_eq!(p.page_size, Some(500));
        let p = InitialLists::Paged.config(false);
        assert_eq!(p.list_semantic, ListSemantic::MostRecent);
    }
}
