//! What the Rollout's status says, pure: its phase and message (with the kstatus conditions
//! that mirror them) and the replica counts of all its ReplicaSets.

use k8s_openapi::jiff::Timestamp;

use crate::api::constants::condition;
use crate::api::rollout::{RolloutPhase, RolloutStatus};

use super::conditions;
use super::observe::{Observed, ObservedRs};

/// A phase and the message that explains it, decided before it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PhaseLine {
    pub phase: RolloutPhase,
    pub message: String,
}

impl PhaseLine {
    pub fn new(phase: RolloutPhase, message: impl Into<String>) -> Self {
        PhaseLine {
            phase,
            message: message.into(),
        }
    }

    pub fn healthy() -> Self {
        PhaseLine::new(RolloutPhase::Healthy, "")
    }
}

/// Sets phase and message, and the kstatus conditions that mirror them (`Ready`,
/// `Reconciling`, `Stalled`), so Flux and Argo CD read the same verdict.
pub(super) fn set_phase(
    st: &mut RolloutStatus,
    phase: RolloutPhase,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    st.phase = Some(phase);
    st.message = (!message.is_empty()).then(|| message.to_string());
    let reason = format!("{phase:?}");
    let c = &mut st.conditions;
    let healthy = phase == RolloutPhase::Healthy;
    for (type_, on) in [
        (condition::READY, healthy),
        (condition::HEALTHY, healthy),
        (condition::PAUSED, phase == RolloutPhase::Paused),
    ] {
        conditions::set(c, type_, on, &reason, message, generation, now);
    }
    let (on, off) = match phase {
        RolloutPhase::Progressing | RolloutPhase::Paused => {
            (Some(condition::RECONCILING), condition::STALLED)
        }
        RolloutPhase::Degraded => (Some(condition::STALLED), condition::RECONCILING),
        RolloutPhase::Healthy => {
            conditions::remove(c, condition::RECONCILING);
            (None, condition::STALLED)
        }
    };
    if let Some(type_) = on {
        conditions::set(c, type_, true, &reason, message, generation, now);
    }
    conditions::remove(c, off);
}

/// Replica counts over every ReplicaSet of the Rollout; `updatedReplicas` counts the current
/// revision's.
pub(super) fn fill_counts(st: &mut RolloutStatus, obs: &Observed) {
    let sum = |f: fn(&ObservedRs) -> i32| {
        obs.replica_sets
            .iter()
            .map(f)
            .fold(0i32, i32::saturating_add)
    };
    st.replicas = Some(sum(|r| r.replicas));
    st.ready_replicas = Some(sum(|r| r.ready));
    st.available_replicas = Some(sum(|r| r.available));
    let desired = st.current_pod_hash.clone();
    st.updated_replicas = Some(
        obs.replica_sets
            .iter()
            .filter(|r| Some(&r.hash) == desired.as_ref())
            .map(|r| r.replicas)
            .fold(0i32, i32::saturating_add),
    );
}
