//! Publishing Events, best effort.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use super::calls::timed;

/// Publishes one Event about `reference`. The recorder folds Events with the same reason and
/// action into one series, keeping the first note: `action` says what makes an Event its own
/// (a decision's message keeps each decision apart while true repeats still fold). A failure
/// is logged, never returned: an Event reports a change, it is not one.
pub async fn publish(
    recorder: &Recorder,
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
    if let Err(e) = timed("publish Event", recorder.publish(&event, reference)).await {
        warn!(error = %e, reason, "could not publish an Event");
    }
}
