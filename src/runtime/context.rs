//! What every reconcile of every controller shares, and what happens after one fails.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::backoff::Backoff;
use super::error::Error;
use super::events::Events;
use super::malformed::Reported;
use super::writes::WriteCounter;
use crate::telemetry::{ErrorLabels, Metrics};

/// The parts of a controller's context that do not depend on what it reconciles.
pub struct Shared {
    pub client: Client,
    /// Where Events go (published in the background).
    pub events: Events,
    pub writes: WriteCounter,
    pub metrics: Arc<Metrics>,
    /// Consecutive failed reconciles per object, for exponential retry delays.
    pub backoff: Backoff,
    /// Objects that do not read, as already reported.
    pub malformed: Reported,
}

impl Shared {
    /// A context with its own write counter and no failures or reports yet.
    pub fn new(client: Client, events: Events, metrics: Arc<Metrics>) -> Self {
        Shared {
            client,
            events,
            writes: WriteCounter::new(metrics.clone()),
            metrics,
            backoff: Backoff::default(),
            malformed: Reported::default(),
        }
    }

    /// When to try again after the reconcile of `key` failed with `error` (`what` names the
    /// controller in the log): at once for the failures [`retry_at_once`] names, else after
    /// the object's backoff.
    pub fn retry_after(&self, key: &str, error: &Error, what: &str) -> Action {
        Action::requeue(self.retry_wait(key, error, what))
    }

    /// How long before a failed reconcile of `key` is tried again (counted and logged).
    pub fn retry_wait(&self, key: &str, error: &Error, what: &str) -> Duration {
        self.metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: what.to_string(),
                reason: error.reason().to_string(),
            })
            .inc();
        if let Some(wait) = retry_at_once(error) {
            tracing::debug!(%error, ?wait, "trying again without backoff");
            return wait;
        }
        let wait = self.backoff.failed(key);
        warn!(reason = error.reason(), %error, retry_in = ?wait, "{what} reconcile failed");
        wait
    }
}

/// When a reconcile that gave up waiting for the caches' first lists waits again.
pub const NOT_LISTED_RETRY: Duration = Duration::from_secs(1);

/// The wait before trying again after `error`, for the failures that are not the object's and
/// so take no backoff; `None` for the rest. A conflict (the object changed since it was read,
/// often by Sluice's own last write) is decided again at once on the fresh object: nothing was
/// lost, what was not written is decided anew. A reconcile that gave up waiting for the
/// caches' first lists waits for them again at once (each wait ends as soon as the lists are
/// in): with the backoff it would sit minutes after them, and nothing else wakes it, since
/// the objects of a first list wake no reconcile (`rollout::cache::Wakes`).
pub fn retry_at_once(error: &Error) -> Option<Duration> {
    match error.reason() {
        "Conflict" => Some(Duration::from_millis(100)),
        "CachesNotListed" => Some(NOT_LISTED_RETRY),
        _ => None,
    }
}

/// The `namespace/name` an object is known by in the per-object maps (backoff, reports, own
/// writes).
pub fn key<K: Resource>(o: &K) -> String {
    key_of(o.namespace().as_deref(), &o.name_any())
}

/// The same key from a namespace and a name (of a reference, an owner).
pub fn key_of(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::Rollout;
    use serde_json::json;

    #[test]
    fn only_conflicts_and_unlisted_caches_are_tried_again_without_backoff() {
        use kube::runtime::finalizer::Error as Fin;
        assert_eq!(
            retry_at_once(&Error::CachesNotListed("no first list yet of pods".into())),
            Some(NOT_LISTED_RETRY)
        );
        // As a Rollout's reconcile returns it, through the finalizer.
        let wrapped = Error::Finalizer(Box::new(Fin::ApplyFailed(Error::CachesNotListed(
            "no first list yet of pods".into(),
        ))));
        assert_eq!(retry_at_once(&wrapped), Some(NOT_LISTED_RETRY));
        let conflict = Error::Kube {
            what: "write status",
            source: kube::Error::Api(
                kube::core::Status::failure("changed", "Conflict")
                    .with_code(409)
                    .boxed(),
            ),
        };
        assert_eq!(retry_at_once(&conflict), Some(Duration::from_millis(100)));
        assert_eq!(retry_at_once(&Error::Timeout { what: "get" }), None);
        assert_eq!(retry_at_once(&Error::NoNamespace), None);
    }

    #[test]
    fn an_object_is_known_by_namespace_and_name() {
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"strategy": {"canary": {}}}
        }))
        .expect("rollout");
        assert_eq!(key(&ro), "shop/web");
    }
}
