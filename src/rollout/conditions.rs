//! Status conditions in the metav1 shape, set by a pure function that keeps
//! `lastTransitionTime` when a condition's status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets (or replaces) the condition of type `type_`. The transition time moves only when the
/// status changes; reason and message follow the latest observation.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let cond = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

/// Keeps the `lastTransitionTime` of `before` for every condition in `after` whose status did
/// not change between them: a condition set, flipped and set back within one decision did not
/// transition.
pub fn keep_transition_times(before: &[Condition], after: &mut [Condition]) {
    for c in after.iter_mut() {
        if let Some(b) = get(before, &c.type_)
            && b.status == c.status
        {
            c.last_transition_time = b.last_transition_time.clone();
        }
    }
}

/// Removes the condition of type `type_`, if present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of type `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "Progressing", "a", Some(1), at(10));
        set(&mut c, "Ready", false, "Progressing", "b", Some(2), at(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(at(10)));
        assert_eq!(c[0].message, "b");
        set(&mut c, "Ready", true, "Healthy", "c", Some(2), at(30));
        assert_eq!(c[0].last_transition_time, Time(at(30)));
        remove(&mut c, "Ready");
        assert!(get(&c, "Ready").is_none());
    }

    #[test]
    fn a_flip_and_back_within_one_decision_is_no_transition() {
        let mut before = Vec::new();
        set(
            &mut before,
            "Progressing",
            false,
            "Deadline",
            "x",
            Some(1),
            at(10),
        );
        set(
            &mut before,
            "Ready",
            false,
            "Degraded",
            "x",
            Some(1),
            at(10),
        );
        let mut after = before.clone();
        set(
            &mut after,
            "Progressing",
            true,
            "Updated",
            "y",
            Some(1),
            at(50),
        );
        set(
            &mut after,
            "Progressing",
            false,
            "Deadline",
            "x",
            Some(1),
            at(50),
        );
        set(&mut after, "Ready", true, "Healthy", "", Some(1), at(50));
        set(
            &mut after,
            "Stalled",
            true,
            "Degraded",
            "x",
            Some(1),
            at(50),
        );
        keep_transition_times(&before, &mut after);
        let ltt = |c: &[Condition], t: &str| get(c, t).map(|c| c.last_transition_time.clone());
        assert_eq!(
            ltt(&after, "Progressing"),
            Some(Time(at(10))),
            "same status"
        );
        assert_eq!(
            ltt(&after, "Ready"),
            Some(Time(at(50))),
            "a real transition"
        );
        assert_eq!(
            ltt(&after, "Stalled"),
            Some(Time(at(50))),
            "a new condition"
        );
    }
}
