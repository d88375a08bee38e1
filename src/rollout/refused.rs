//! A request the API server refused (forbidden, invalid, denied by admission) is shown on the
//! Rollout, not only in the controller's log: the `WriteRefused` condition carries the API
//! server's message, and one Warning Event is published per distinct refusal, not per retry.

use k8s_openapi::jiff::Timestamp;

use crate::api::constants::condition::WRITE_REFUSED;
use crate::api::rollout::RolloutStatus;

use super::conditions;
use crate::runtime::error::Refusal;

/// The status to write after `refusal`, or `None` when the Rollout already shows exactly this
/// refusal (then nothing is written and no second Event is published).
pub fn refused_status(
    status: Option<&RolloutStatus>,
    refusal: &Refusal,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<RolloutStatus> {
    let mut next = status.cloned().unwrap_or_default();
    let message = refusal.describe();
    let shown = conditions::get(&next.conditions, WRITE_REFUSED)
        .is_some_and(|c| c.status == "True" && c.reason == refusal.reason && c.message == message);
    if shown {
        return None;
    }
    conditions::set(
        &mut next.conditions,
        WRITE_REFUSED,
        true,
        &refusal.reason,
        &message,
        generation,
        now,
    );
    Some(next)
}

/// Takes the refusal off a status that is about to be written after every write of a
/// reconcile went through.
pub fn clear(status: &mut RolloutStatus) {
    conditions::remove(&mut status.conditions, WRITE_REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    fn refusal(message: &str) -> Refusal {
        Refusal {
            what: "apply ReplicaSet",
            reason: "Invalid".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_refusal_is_shown_once_and_a_new_one_replaces_it() {
        let first = refused_status(None, &refusal("denied: no latest tags"), Some(3), at(10))
            .expect("a new refusal is written");
        let c = conditions::get(&first.conditions, WRITE_REFUSED).expect("condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Invalid"));
        assert_eq!(
            c.message,
            "apply ReplicaSet refused by the API server: denied: no latest tags"
        );
        assert_eq!(c.observed_generation, Some(3));

        // The same refusal again: nothing to write, so no second Event either.
        assert_eq!(
            refused_status(
                Some(&first),
                &refusal("denied: no latest tags"),
                Some(3),
                at(20)
            ),
            None
        );

        // A different one replaces it, keeping the transition time (still refused).
        let second = refused_status(Some(&first), &refusal("denied: other"), Some(3), at(30))
            .expect("a different refusal is written");
        let c2 = conditions::get(&second.conditions, WRITE_REFUSED).expect("condition");
        assert!(c2.message.ends_with("denied: other"));
        assert_eq!(c2.last_transition_time, c.last_transition_time);
        assert_eq!(second.conditions.len(), 1);
    }

    #[test]
    fn clearing_removes_only_the_refusal() {
        let mut st = refused_status(None, &refusal("x"), None, at(1)).expect("written");
        conditions::set(
            &mut st.conditions,
            "Progressing",
            true,
            "R",
            "m",
            None,
            at(1),
        );
        clear(&mut st);
        assert!(conditions::get(&st.conditions, WRITE_REFUSED).is_none());
        assert!(conditions::get(&st.conditions, "Progressing").is_some());
    }
}
