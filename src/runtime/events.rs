//! Publishing Events, best effort and off the reconcile path.
//!
//! A reconcile hands its Events to [`Events`] and goes on: lanes in the background publish
//! them, each lane in order, as client-go's event broadcaster does for Argo Rollouts and
//! kube-controller-manager. An Event reports a change already made; a reconcile that waited
//! for its Events would hold its work-queue slot through one more request per Event, and under
//! a client budget that thousands of releases fill, that wait is as long as the write's.
//!
//! Events of one object always go through the same lane, so they reach the API server in the
//! order they were decided (the recorder folds a repeat into the series of the one before).
//! A lane holds at most [`LANE_CAPACITY`] Events; when the API server is too slow or gone,
//! newer Events are dropped and counted (`sluice_events_dropped_total`), never queued without
//! bound and never in the way of a reconcile. At shutdown [`Events::flush`] gives the lanes a
//! moment to empty.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::warn;

use super::calls::timed;

/// Lanes publishing at once: Events of different objects do not wait for each other.
pub const LANES: usize = 8;
/// Events one lane may hold before newer ones are dropped (client-go's broadcaster holds
/// 1,000 in all; eight lanes of 128 hold about as many).
pub const LANE_CAPACITY: usize = 128;

/// One Event waiting for its lane.
struct Pending {
    event: Event,
    reference: ObjectReference,
}

/// Where reconciles hand their Events (cheap to clone; every clone feeds the same lanes).
#[derive(Clone)]
pub struct Events {
    lanes: Arc<[mpsc::Sender<Pending>]>,
    /// Events handed over and not yet published (or given up).
    pending: Arc<AtomicUsize>,
    dropped: Counter,
}

impl Events {
    /// Starts the lanes, publishing through `recorder`. Must be called inside the runtime.
    pub fn start(recorder: Recorder, dropped: Counter) -> Self {
        let pending = Arc::new(AtomicUsize::new(0));
        let lanes: Vec<mpsc::Sender<Pending>> = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Pending>(LANE_CAPACITY);
                let (recorder, pending) = (recorder.clone(), pending.clone());
                tokio::spawn(async move {
                    while let Some(p) = rx.recv().await {
                        send(&recorder, &p).await;
                        pending.fetch_sub(1, Ordering::AcqRel);
                    }
                });
                tx
            })
            .collect();
        Events {
            lanes: lanes.into(),
            pending,
            dropped,
        }
    }

    /// Hands `event` about `reference` to its lane and returns at once. A full lane drops it
    /// (counted, and logged on the first drop and every hundredth after).
    fn hand_over(&self, event: Event, reference: &ObjectReference) {
        let lane = &self.lanes[lane_of(reference, self.lanes.len())];
        self.pending.fetch_add(1, Ordering::AcqRel);
        let p = Pending {
            event,
            reference: reference.clone(),
        };
        if let Err(e) = lane.try_send(p) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            let (why, p) = match e {
                TrySendError::Full(p) => ("its lane is full", p),
                TrySendError::Closed(p) => ("its lane has stopped", p),
            };
            self.dropped.inc();
            let n = self.dropped.get();
            if n == 1 || n.is_multiple_of(100) {
                warn!(
                    reason = p.event.reason,
                    object = p.reference.name.as_deref().unwrap_or_default(),
                    dropped = n,
                    "an Event was dropped: {why} (the API server is slow to take Events)"
                );
            }
        }
    }

    /// Events handed over and not yet published or given up.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until every Event handed over is published or given up, at most `limit`; returns
    /// whether the lanes emptied.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    pending = self.pending(),
                    "stopping with Events not yet published"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The lane of an object's Events: by its uid, or its namespace, kind and name.
fn lane_of(reference: &ObjectReference, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &reference.uid {
        Some(uid) => uid.hash(&mut h),
        None => (&reference.namespace, &reference.kind, &reference.name).hash(&mut h),
    }
    (h.finish() % lanes.max(1) as u64) as usize
}

/// Publishes one Event now. A failure is logged, never returned: an Event reports a change,
/// it is not one.
async fn send(recorder: &Recorder, p: &Pending) {
    if let Err(e) = timed("publish Event", recorder.publish(&p.event, &p.reference)).await {
        warn!(error = %e, reason = p.event.reason, "could not publish an Event");
    }
}

/// Publishes one Event about `reference`, in the background (see the module's
/// documentation). The recorder folds Events with the same reason and action into one series,
/// keeping the first note: `action` says what makes an Event its own (a decision's message
/// keeps each decision apart while true repeats still fold).
pub fn publish(
    events: &Events,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.chars().take(128).collect(),
        secondary: None,
    };
    events.hand_over(event, reference);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::events::Reporter;

    fn reference(name: &str, uid: Option<&str>) -> ObjectReference {
        ObjectReference {
            kind: Some("Rollout".into()),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            uid: uid.map(str::to_string),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn an_objects_events_keep_one_lane() {
        let a = reference("web", Some("u-1"));
        assert_eq!(lane_of(&a, LANES), lane_of(&a.clone(), LANES));
        let no_uid = reference("web", None);
        assert_eq!(lane_of(&no_uid, LANES), lane_of(&no_uid, LANES));
        // Many objects spread over the lanes.
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| lane_of(&reference(&format!("r{i}"), Some(&format!("u{i}"))), LANES))
            .collect();
        assert_eq!(used.len(), LANES);
        assert_eq!(lane_of(&a, 0), 0);
    }

    /// An API server that takes connections and never answers: each lane's first Event hangs
    /// in its request, so the lane fills and the rest are dropped; handing over never waits.
    #[tokio::test]
    async fn a_full_lane_drops_and_counts_without_waiting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let config = kube::Config::new(url.parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "sluice-test".into(),
                instance: None,
            },
        );
        let dropped = Counter::default();
        let events = Events::start(recorder, dropped.clone());
        let r = reference("web", Some("u-1"));
        let extra = 50;
        for i in 0..LANE_CAPACITY + 1 + extra {
            let note = format!("step {i}");
            publish(
                &events,
                &r,
                EventType::Normal,
                "StepCompleted",
                &note,
                &note,
            );
        }
        // The lane holds LANE_CAPACITY, and its task may have taken one out to send.
        let d = dropped.get() as usize;
        assert!((extra..=extra + 1).contains(&d), "dropped {d}");
        assert_eq!(events.pending(), LANE_CAPACITY + 1 + extra - d);
        // Nothing is answered, so nothing empties the lane within a short flush.
        assert!(!events.flush(Duration::from_millis(100)).await);
        drop(listener);
    }
}
