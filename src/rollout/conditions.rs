//! Status conditions in the metav1 shape, set by a pure function that keeps
//! `lastTransitionTime` when a condition's status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::constants::condition;
use crate::api::rollout::{Rollout, RolloutStatus};

use super::observe::Observed;

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

/// The reason Argo Rollouts gives its `Available` condition, kept for tools that read it.
pub const AVAILABLE_REASON: &str = "AvailableReason";

/// Whether the Rollout serves at full strength, and the message that says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Availability {
    pub available: bool,
    pub message: String,
}

/// Whether the Rollout serves at full strength, as Argo Rollouts' `Available` condition means
/// it, with the message that says why. Blue-green: the revision the active Service selects
/// has at least `replicas` available pods (a preview, however ready, serves nobody). Canary:
/// at least `replicas` pods are available across all revisions.
pub fn available(ro: &Rollout, status: &RolloutStatus, obs: &Observed) -> Availability {
    let replicas = ro.spec.replicas().max(0);
    if ro.spec.strategy.blue_green.is_some() {
        let active = status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
            .or(status.stable_rs.as_deref());
        let Some(rs) = active.and_then(|h| obs.replica_sets.iter().find(|r| r.hash == h)) else {
            return Availability {
                available: false,
                message: "no active revision".into(),
            };
        };
        let message = format!(
            "{} of {replicas} pods of active revision {} available",
            rs.available, rs.hash
        );
        return Availability {
            available: rs.available >= replicas,
            message,
        };
    }
    let available: i64 = obs
        .replica_sets
        .iter()
        .map(|r| i64::from(r.available))
        .sum();
    Availability {
        available: available >= i64::from(replicas),
        message: format!("{available} of {replicas} pods available"),
    }
}

/// Sets the `Available` condition from `available` (its transition time moves only when it
/// flips).
pub fn available_condition(
    status: &mut RolloutStatus,
    ro: &Rollout,
    obs: &Observed,
    now: Timestamp,
) {
    let Availability { available, message } = available(ro, status, obs);
    set(
        &mut status.conditions,
        condition::AVAILABLE,
        available,
        AVAILABLE_REASON,
        &message,
        ro.metadata.generation,
        now,
    );
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

    mod availability {
        use super::super::*;
        use crate::rollout::test_support::{at, blue_green, blue_green_world, hash, rs};
        use serde_json::json;

        fn active_on(image: &str) -> Rollout {
            let mut ro = blue_green(json!({}));
            if let Some(s) = ro.status.as_mut() {
                s.blue_green = Some(crate::api::rollout::BlueGreenStatus {
                    active_selector: Some(hash(image)),
                    ..Default::default()
                });
            }
            ro
        }

        fn canary() -> Rollout {
            let mut ro = blue_green(json!({}));
            ro.spec.strategy = serde_json::from_value(json!({"canary": {}})).expect("strategy");
            ro
        }

        fn check(ro: &Rollout, obs: &Observed) -> bool {
            available(ro, ro.status.as_ref().expect("status"), obs).available
        }

        #[test]
        fn blue_green_is_available_when_the_active_revision_has_every_pod() {
            let ro = active_on("web:1");
            assert!(check(&ro, &blue_green_world(vec![rs("web:1", 3, 3)])));
            assert!(!check(&ro, &blue_green_world(vec![rs("web:1", 3, 2)])));
            // A preview at full strength serves nobody.
            assert!(!check(
                &ro,
                &blue_green_world(vec![rs("web:1", 3, 1), rs("web:2", 3, 3)])
            ));
            // No active revision at all.
            assert!(!check(&ro, &blue_green_world(vec![rs("web:2", 3, 3)])));
        }

        #[test]
        fn blue_green_without_an_active_selector_reads_the_stable_revision() {
            let ro = blue_green(json!({}));
            assert!(check(&ro, &blue_green_world(vec![rs("web:1", 3, 3)])));
        }

        #[test]
        fn canary_counts_available_pods_of_every_revision() {
            let ro = canary();
            assert!(check(
                &ro,
                &blue_green_world(vec![rs("web:1", 2, 2), rs("web:2", 1, 1)])
            ));
            assert!(!check(
                &ro,
                &blue_green_world(vec![rs("web:1", 3, 1), rs("web:2", 1, 1)])
            ));
        }

        #[test]
        fn the_condition_moves_only_when_availability_flips() {
            let ro = active_on("web:1");
            let mut status = ro.status.clone().expect("status");
            available_condition(
                &mut status,
                &ro,
                &blue_green_world(vec![rs("web:1", 3, 2)]),
                at(0),
            );
            let c = get(&status.conditions, condition::AVAILABLE).expect("Available");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", AVAILABLE_REASON)
            );
            assert!(c.message.contains("2 of 3"), "{}", c.message);
            available_condition(
                &mut status,
                &ro,
                &blue_green_world(vec![rs("web:1", 3, 3)]),
                at(5),
            );
            available_condition(
                &mut status,
                &ro,
                &blue_green_world(vec![rs("web:1", 3, 3)]),
                at(9),
            );
            let c = get(&status.conditions, condition::AVAILABLE).expect("Available");
            assert_eq!(c.status, "True");
            assert_eq!(c.last_transition_time, Time(at(5)));
        }
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
