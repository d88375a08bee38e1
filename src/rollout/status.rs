//! What the Rollout's status says, pure: its phase and message (with the kstatus conditions
//! that mirror them) and the replica counts of all its ReplicaSets.

use k8s_openapi::jiff::Timestamp;

use crate::api::constants::{LABEL_POD_TEMPLATE_HASH, condition};
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

/// Replica counts with Argo Rollouts' meaning (`calculateBaseStatus`,
/// `syncRolloutStatusCanary`): pods the ReplicaSets report (`status.replicas`, not their spec)
/// over every revision; `updatedReplicas` the current revision's pods; ready and available
/// pods over every revision.
pub(super) fn fill_counts(st: &mut RolloutStatus, obs: &Observed) {
    let sum = |f: fn(&ObservedRs) -> i32| {
        obs.replica_sets
            .iter()
            .map(f)
            .fold(0i32, i32::saturating_add)
    };
    st.replicas = Some(sum(|r| r.pods));
    st.ready_replicas = Some(sum(|r| r.ready));
    st.available_replicas = Some(sum(|r| r.available));
    let desired = st.current_pod_hash.clone();
    st.updated_replicas = Some(
        obs.replica_sets
            .iter()
            .filter(|r| Some(&r.hash) == desired.as_ref())
            .map(|r| r.pods)
            .fold(0i32, i32::saturating_add),
    );
}

/// Blue-green counts (`syncRolloutStatusBlueGreen`): as [`fill_counts`], except that ready
/// and available pods are the active revision's (the one the active Service selects), when it
/// has a ReplicaSet: the AVAILABLE column and health checks count the pods that serve. The
/// selector the scale subresource reports (for an HPA) is then the active revision's too.
pub(super) fn fill_blue_green_counts(st: &mut RolloutStatus, obs: &Observed) {
    fill_counts(st, obs);
    let active = st
        .blue_green
        .as_ref()
        .and_then(|b| b.active_selector.clone());
    if let Some(rs) = active.and_then(|h| obs.replica_sets.iter().find(|r| r.hash == h)) {
        st.ready_replicas = Some(rs.ready);
        st.available_replicas = Some(rs.available);
        let hash = format!("{LABEL_POD_TEMPLATE_HASH}={}", rs.hash);
        let mut parts: Vec<String> = st
            .selector
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|p| !p.is_empty() && !p.starts_with(&format!("{LABEL_POD_TEMPLATE_HASH}=")))
            .map(str::to_string)
            .chain(std::iter::once(hash))
            .collect();
        parts.sort();
        st.selector = Some(parts.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::BlueGreenStatus;

    fn rs(hash: &str, spec: i32, pods: i32, ready: i32, available: i32) -> ObservedRs {
        ObservedRs {
            name: format!("web-{hash}"),
            hash: hash.into(),
            replicas: spec,
            pods,
            ready,
            available,
            ..Default::default()
        }
    }

    fn world(sets: Vec<ObservedRs>) -> Observed {
        Observed {
            replica_sets: sets,
            ..Default::default()
        }
    }

    #[test]
    fn counts_are_the_pods_the_replica_sets_report_not_their_spec() {
        // A new revision asked for 2 pods of which 1 exists yet; the stable has 4.
        let obs = world(vec![rs("old", 4, 4, 4, 4), rs("new", 2, 1, 0, 0)]);
        let mut st = RolloutStatus {
            current_pod_hash: Some("new".into()),
            ..Default::default()
        };
        fill_counts(&mut st, &obs);
        assert_eq!(st.replicas, Some(5));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.ready_replicas, Some(4));
        assert_eq!(st.available_replicas, Some(4));
    }

    #[test]
    fn blue_green_ready_and_available_are_the_active_revisions() {
        // Argo's TestBlueGreenKitchenSink, paused before promotion: replicas 2, preview 1.
        let obs = world(vec![rs("v1", 2, 2, 2, 2), rs("v2", 1, 1, 1, 1)]);
        let mut st = RolloutStatus {
            current_pod_hash: Some("v2".into()),
            selector: Some("app=web".into()),
            blue_green: Some(BlueGreenStatus {
                active_selector: Some("v1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        fill_blue_green_counts(&mut st, &obs);
        let counts = (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas,
        );
        assert_eq!(counts, (Some(3), Some(1), Some(2), Some(2)));
        // An HPA scales on the active revision's pods.
        assert_eq!(
            st.selector.as_deref(),
            Some("app=web,rollouts-pod-template-hash=v1")
        );
        // Without an active revision yet (no ReplicaSet for it), every revision counts.
        st.blue_green = Some(BlueGreenStatus {
            active_selector: Some("gone".into()),
            ..Default::default()
        });
        fill_blue_green_counts(&mut st, &obs);
        assert_eq!(st.available_replicas, Some(3));
    }
}
