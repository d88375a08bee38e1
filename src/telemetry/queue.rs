//! The depth of the Rollout work queue, as `sluice_workqueue_depth`: Rollouts due for a
//! reconcile that has not started yet. kube-runtime's scheduler does not say how much it holds,
//! so the controller tells this what it tells the scheduler: a change woke a Rollout, a
//! reconcile asked to come back in so long, a failed one is retried after its backoff. A
//! Rollout is due from then until its next reconcile starts. A growing depth means reconciles
//! do not keep up with what wakes them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug, Default)]
struct Inner {
    /// When each Rollout comes due (a wake is due at once).
    due: HashMap<Box<str>, Instant>,
    /// The requeue a reconcile under way asked for, taken in when it ends.
    planned: HashMap<Box<str>, Duration>,
}

/// The Rollouts waiting for a reconcile, by `namespace/name`.
#[derive(Debug, Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Due at `at`, unless due earlier already (the scheduler keeps the earlier too).
    fn due_at(inner: &mut Inner, key: &str, at: Instant) {
        match inner.due.get_mut(key) {
            Some(t) => *t = (*t).min(at),
            None => {
                inner.due.insert(key.into(), at);
            }
        }
    }

    /// A change woke `key`: due now.
    pub fn woken(&self, key: &str) {
        Self::due_at(&mut self.lock(), key, Instant::now());
    }

    /// The reconcile under way asks to come back after `after` (taken in by `finished`).
    pub fn plan_requeue(&self, key: &str, after: Duration) {
        self.lock().planned.insert(key.into(), after);
    }

    /// The queue started a reconcile of `key`: no longer waiting.
    pub fn started(&self, key: &str) {
        let mut inner = self.lock();
        inner.due.remove(key);
        inner.planned.remove(key);
    }

    /// The queue's reconcile of `key` ended; when it succeeded, the requeue it asked for is
    /// due in its time.
    pub fn finished(&self, key: &str, succeeded: bool) {
        let mut inner = self.lock();
        let planned = inner.planned.remove(key);
        if let Some(after) = planned.filter(|_| succeeded) {
            Self::due_at(&mut inner, key, Instant::now() + after);
        }
    }

    /// A failed reconcile of `key` is retried after `after`.
    pub fn retry(&self, key: &str, after: Duration) {
        Self::due_at(&mut self.lock(), key, Instant::now() + after);
    }

    /// `key` is gone (the queue found no such Rollout): nothing waits for it.
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        inner.due.remove(key);
        inner.planned.remove(key);
    }

    /// Rollouts due by `now` whose reconcile has not started.
    pub fn depth(&self, now: Instant) -> usize {
        self.lock().due.values().filter(|&&t| t <= now).count()
    }
}

/// `sluice_workqueue_depth`, counted when scraped.
#[derive(Debug, Default)]
pub struct DepthCollector(pub std::sync::Arc<WorkQueue>);

impl Collector for DepthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depth = i64::try_from(self.0.depth(Instant::now())).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(depth);
        let metric = encoder.encode_descriptor(
            "workqueue_depth",
            "Rollouts due for a reconcile that has not started (woken by a change, a retry or a requeue come due).",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_waits_from_its_wake_to_the_start_of_its_reconcile() {
        let q = WorkQueue::default();
        let now = || Instant::now();
        assert_eq!(q.depth(now()), 0);
        q.woken("shop/web");
        q.woken("shop/web");
        q.woken("shop/api");
        assert_eq!(q.depth(now()), 2, "one place per Rollout, as the scheduler");
        q.started("shop/web");
        assert_eq!(q.depth(now()), 1);
        // Woken again while its reconcile runs: it waits for another.
        q.woken("shop/web");
        q.plan_requeue("shop/web", Duration::from_secs(300));
        q.finished("shop/web", true);
        assert_eq!(
            q.depth(now()),
            2,
            "the wake stands, earlier than the requeue"
        );
        q.started("shop/web");
        q.plan_requeue("shop/web", Duration::from_secs(300));
        q.finished("shop/web", true);
        assert_eq!(q.depth(now()), 1, "a requeue is not due before its time");
        assert_eq!(
            q.depth(now() + Duration::from_secs(301)),
            2,
            "and is when it comes"
        );
        q.forget("shop/api");
        assert_eq!(q.depth(now()), 0);
    }

    #[test]
    fn a_failed_reconcile_is_due_after_its_backoff_not_its_plan() {
        let q = WorkQueue::default();
        q.started("shop/web");
        q.plan_requeue("shop/web", Duration::from_secs(1));
        q.finished("shop/web", false);
        q.retry("shop/web", Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(q.depth(now + Duration::from_secs(30)), 0);
        assert_eq!(q.depth(now + Duration::from_secs(61)), 1);
    }

    #[test]
    fn the_depth_is_a_gauge_named_by_prometheus_conventions() {
        let m = crate::telemetry::Metrics::new();
        m.queue.woken("shop/web");
        let text = m.render();
        assert!(
            text.contains("# TYPE sluice_workqueue_depth gauge"),
            "{text}"
        );
        assert!(text.contains("\nsluice_workqueue_depth 1\n"), "{text}");
    }
}
