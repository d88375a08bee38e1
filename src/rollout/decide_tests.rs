//! Table tests of `decide`, one per transition, named after the behaviour.

use super::*;
use crate::api::rollout::{PauseCondition, PauseReason, RolloutPhase};
use crate::api::rollout::{RolloutSpec, RolloutStatus};
use crate::rollout::observe::PodFailure;
use crate::rollout::test_support::{at, hash, reasons, replicas_of, rs, service, step, template};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

fn rollout(steps: serde_json::Value, services: bool) -> Rollout {
    let mut canary = json!({"steps": steps, "maxSurge": 1, "maxUnavailable": 0});
    if services {
        canary["stableService"] = json!("web-stable");
        canary["canaryService"] = json!("web-canary");
    }
    let spec: RolloutSpec = serde_json::from_value(json!({
        "replicas": 4,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template("web:1"),
        "strategy": {"canary": canary}
    }))
    .expect("spec");
    let mut ro = Rollout::new("web", spec);
    ro.metadata.generation = Some(1);
    ro
}

fn observed(image: &str, sets: Vec<ObservedRs>) -> Observed {
    let mut services = std::collections::BTreeMap::new();
    services.insert("web-stable".to_string(), true);
    services.insert("web-canary".to_string(), true);
    Observed {
        template: Some(template(image)),
        replica_sets: sets,
        services,
        ..Default::default()
    }
}

/// A Rollout whose stable is `web:1` (fully available) and whose template now says `web:2`.
fn releasing(steps: serde_json::Value, services: bool, status: RolloutStatus) -> Rollout {
    let mut ro = rollout(steps, services);
    ro.spec.template = Some(template("web:2"));
    ro.status = Some(RolloutStatus {
        stable_rs: Some(hash("web:1")),
        current_pod_hash: Some(hash("web:1")),
        ..status
    });
    ro
}

/// The release of `web:2` (steps: 50%, pause), aborted by request while paused at step 1.
fn aborted_at_step_1() -> Rollout {
    let status = RolloutStatus {
        current_step_index: Some(1),
        abort: Some(true),
        ..Default::default()
    };
    let mut ro = releasing(json!([{"setWeight": 50}, {"pause": {}}]), true, status);
    started(&mut ro);
    ro
}

/// Marks the release of `web:2` as already started (its first reconcile is behind us).
fn started(ro: &mut Rollout) {
    if let Some(s) = ro.status.as_mut() {
        s.current_pod_hash = Some(hash("web:2"));
    }
}

#[test]
fn first_revision_becomes_stable_without_steps() {
    let ro = rollout(json!([{"setWeight": 50}, {"pause": {}}]), false);
    let plan = decide(&ro, &observed("web:1", vec![]), at(0));
    assert_eq!(plan.status.stable_rs, Some(hash("web:1")));
    assert_eq!(replicas_of(&plan, "web:1"), Some(4));
    assert_eq!(reasons(&plan), vec!["FirstRevision", "ScalingReplicaSet"]);
    assert_eq!(
        plan.events[1].message,
        "Scaled up replica set web-wmqnbst42q from 0 to 4"
    );
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
}

#[test]
fn steady_state_is_healthy_and_deciding_again_changes_nothing() {
    let mut ro = rollout(json!([{"setWeight": 50}]), true);
    let obs = observed("web:1", vec![rs("web:1", 4, 4)]);
    let first = step(&mut ro, &obs, at(0));
    assert_eq!(first.status.phase, Some(RolloutPhase::Healthy));
    let again = decide(&ro, &obs, at(100));
    assert_eq!(
        again.status, first.status,
        "a reconcile that finds nothing new changes no status"
    );
    assert!(again.events.is_empty());
    assert_eq!(service(&again, "web-stable"), Some(hash("web:1")));
    assert_eq!(service(&again, "web-canary"), Some(hash("web:1")));
}

#[test]
fn new_template_starts_at_step_zero_and_surges_one_canary_pod() {
    let ro = releasing(
        json!([{"setWeight": 25}, {"pause": {}}]),
        true,
        Default::default(),
    );
    let plan = decide(&ro, &observed("web:2", vec![rs("web:1", 4, 4)]), at(0));
    assert_eq!(plan.status.current_step_index, Some(0));
    assert_eq!(plan.status.current_pod_hash, Some(hash("web:2")));
    assert_eq!(reasons(&plan), vec!["RolloutStarted", "ScalingReplicaSet"]);
    assert_eq!(replicas_of(&plan, "web:2"), Some(1), "maxSurge 1");
    assert_eq!(
        replicas_of(&plan, "web:1"),
        Some(4),
        "maxUnavailable 0 keeps the stable until the canary is ready"
    );
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:2")));
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:1")));
}

#[test]
fn weight_step_completes_when_pods_are_available_then_pause_starts() {
    let mut ro = releasing(
        json!([{"setWeight": 25}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]),
        true,
        Default::default(),
    );
    step(&mut ro, &observed("web:2", vec![rs("web:1", 4, 4)]), at(0));
    let obs = observed("web:2", vec![rs("web:1", 3, 3), rs("web:2", 1, 1)]);
    let plan = step(&mut ro, &obs, at(5));
    assert_eq!(plan.status.current_step_index, Some(1));
    assert_eq!(reasons(&plan), vec!["StepCompleted", "Paused"]);
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    assert_eq!(plan.status.pause_conditions.len(), 1);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(
        plan.status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| (w.canary.weight, w.stable.weight)),
        Some((25, 75))
    );

    // Still paused before the duration ends; advanced after it.
    let mid = step(&mut ro, &obs, at(20));
    assert_eq!(mid.status.current_step_index, Some(1));
    let end = step(&mut ro, &obs, at(36));
    assert_eq!(end.status.current_step_index, Some(2));
    assert!(end.status.pause_conditions.is_empty());
    assert_eq!(
        replicas_of(&end, "web:2"),
        Some(2),
        "weight 50 of 4 replicas"
    );
}

#[test]
fn indefinite_pause_waits_for_a_promotion() {
    let mut ro = releasing(
        json!([{"pause": {}}, {"setWeight": 50}]),
        true,
        Default::default(),
    );
    let obs = observed("web:2", vec![rs("web:1", 4, 4)]);
    let paused = step(&mut ro, &obs, at(0));
    assert_eq!(paused.status.phase, Some(RolloutPhase::Paused));
    assert_eq!(paused.requeue_after, None);
    let still = step(&mut ro, &obs, at(10_000));
    assert_eq!(still.status.current_step_index, Some(0));
    // `kubectl sluice promote`: clear the pause conditions.
    if let Some(st) = ro.status.as_mut() {
        st.pause_conditions.clear();
    }
    let promoted = step(&mut ro, &obs, at(10_001));
    assert_eq!(promoted.status.current_step_index, Some(1));
    assert!(reasons(&promoted).contains(&"Promoted"));
    assert_eq!(promoted.promotions, vec![PromotionCause::Manual]);
    assert!(still.promotions.is_empty() && paused.promotions.is_empty());
}

#[test]
fn abort_without_a_router_moves_traffic_first_then_rolls_back_within_the_limits() {
    // Argo Rollouts: utils/replicaset/canary.go CalculateReplicaCountsForBasicCanary; the
    // abort delay is ignored without trafficRouting (utils/defaults GetAbortScaleDownDelay...).
    let mut ro = aborted_at_step_1();
    if let Some(c) = ro.spec.strategy.canary.as_mut() {
        c.abort_scale_down_delay_seconds = Some(60);
    }
    let obs = observed("web:2", vec![rs("web:1", 2, 2), rs("web:2", 2, 2)]);
    let plan = step(&mut ro, &obs, at(0));
    assert_eq!(
        service(&plan, "web-canary"),
        Some(hash("web:1")),
        "traffic on stable in the same reconcile"
    );
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:1")));
    assert_eq!(
        (replicas_of(&plan, "web:1"), replicas_of(&plan, "web:2")),
        (Some(3), Some(2)),
        "the stable surges first; the canary stays until a stable pod is available"
    );
    assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
    assert!(reasons(&plan).contains(&"RolloutAborted"));
    assert_eq!(plan.aborted, Some(AbortCause::Request), "set by a person");
    // No 60 s hold: the canary goes as fast as availability allows (maxUnavailable 0).
    let later = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 3, 3), rs("web:2", 2, 2)]),
        at(1),
    );
    assert_eq!(replicas_of(&later, "web:2"), Some(1));
    assert!(
        !reasons(&later).contains(&"RolloutAborted"),
        "the abort Event is sent once"
    );
    assert_eq!(later.aborted, None, "and the abort counted once");
    let done = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(2),
    );
    assert_eq!(replicas_of(&done, "web:2"), Some(0));
}

#[test]
fn retry_after_abort_restarts_from_the_first_step() {
    let mut ro = aborted_at_step_1();
    let obs = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 0, 0)]);
    step(&mut ro, &obs, at(0));
    if let Some(s) = ro.status.as_mut() {
        s.abort = Some(false);
    }
    let plan = step(&mut ro, &obs, at(100));
    assert_eq!(plan.status.current_step_index, Some(0));
    assert!(reasons(&plan).contains(&"RolloutRetried"));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
    assert_eq!(replicas_of(&plan, "web:2"), Some(1));
}

#[test]
fn crash_looping_canary_aborts_with_the_diagnosis() {
    let mut ro = releasing(
        json!([{"setWeight": 50}, {"pause": {}}]),
        true,
        Default::default(),
    );
    let mut bad = rs("web:2", 1, 0);
    bad.failure = Some(PodFailure {
        pod: "web-x".into(),
        container: "web".into(),
        reason: "CrashLoopBackOff".into(),
        exit_code: Some(3),
        restarts: 2,
        message: "back-off".into(),
    });
    let plan = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 4, 4), bad]),
        at(0),
    );
    assert_eq!(plan.status.abort, Some(true));
    let event = plan
        .events
        .iter()
        .find(|e| e.reason == "RolloutAborted")
        .expect("abort event");
    assert_eq!(event.type_, EventType::Warning);
    assert!(
        event
            .message
            .contains("container web: CrashLoopBackOff, last exit code 3"),
        "{}",
        event.message
    );
    let cond = conditions::get(&plan.status.conditions, condition::PROGRESSING).expect("condition");
    assert_eq!(cond.reason, "RolloutAborted");
    assert!(cond.message.contains("CrashLoopBackOff"));
    assert_eq!(plan.aborted, Some(AbortCause::PodsFailing));
    assert!(AbortCause::PodsFailing.is_automatic() && !AbortCause::Request.is_automatic());
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let status = RolloutStatus {
        promote_full: Some(true),
        ..Default::default()
    };
    let mut ro = releasing(json!([{"setWeight": 10}, {"pause": {}}]), true, status);
    started(&mut ro);
    let plan = step(&mut ro, &observed("web:2", vec![rs("web:1", 4, 4)]), at(0));
    assert_eq!(plan.status.current_step_index, Some(2));
    assert!(reasons(&plan).contains(&"PromotedFull"));
    assert_eq!(plan.promotions, vec![PromotionCause::Full]);
    assert_eq!(
        replicas_of(&plan, "web:2"),
        Some(1),
        "scaling up within maxSurge"
    );
}

#[test]
fn last_step_done_promotes_the_new_revision_to_stable() {
    let status = RolloutStatus {
        current_step_index: Some(1),
        ..Default::default()
    };
    let mut ro = releasing(json!([{"setWeight": 50}]), true, status);
    started(&mut ro);
    let plan = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 0, 0), rs("web:2", 4, 4)]),
        at(0),
    );
    assert_eq!(plan.status.stable_rs, Some(hash("web:2")));
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:2")));
    assert!(reasons(&plan).contains(&"RolloutCompleted"));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    // The next reconcile sees a steady state.
    let again = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 0, 0), rs("web:2", 4, 4)]),
        at(1),
    );
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.status.phase, Some(RolloutPhase::Healthy));
}

#[test]
fn template_back_to_stable_is_a_fast_track_rollback() {
    let mut ro = rollout(json!([{"setWeight": 50}, {"pause": {}}]), true);
    ro.status = Some(RolloutStatus {
        stable_rs: Some(hash("web:1")),
        current_pod_hash: Some(hash("web:2")),
        current_step_index: Some(1),
        pause_conditions: vec![PauseCondition {
            reason: PauseReason::CanaryPauseStep,
            start_time: Time(at(0)),
        }],
        controller_pause: Some(true),
        ..Default::default()
    });
    let plan = step(
        &mut ro,
        &observed("web:1", vec![rs("web:1", 2, 2), rs("web:2", 2, 2)]),
        at(5),
    );
    assert!(reasons(&plan).contains(&"FastTrackRollback"));
    assert!(plan.status.pause_conditions.is_empty());
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
    assert_eq!(
        replicas_of(&plan, "web:1"),
        Some(3),
        "stable grows within maxSurge"
    );
}

#[test]
fn invalid_spec_is_reported_once_and_recovers_when_fixed() {
    let mut ro = rollout(json!([{"setWeight": 50}]), true);
    let mut obs = observed("web:1", vec![]);
    obs.services.insert("web-canary".into(), false);
    let plan = step(&mut ro, &obs, at(0));
    let cond =
        conditions::get(&plan.status.conditions, condition::INVALID_SPEC).expect("InvalidSpec");
    assert!(
        cond.message.contains("spec.strategy.canary.canaryService"),
        "{}",
        cond.message
    );
    assert!(
        plan.replica_sets.is_empty() && plan.services.is_empty(),
        "nothing else changes"
    );
    assert_eq!(reasons(&plan), vec!["InvalidSpec"]);
    assert!(
        step(&mut ro, &obs, at(1)).events.is_empty(),
        "no Event storm"
    );
    obs.services.insert("web-canary".into(), true);
    let fixed = step(&mut ro, &obs, at(2));
    assert!(conditions::get(&fixed.status.conditions, condition::INVALID_SPEC).is_none());
    assert_eq!(replicas_of(&fixed, "web:1"), Some(4));
}

#[test]
fn a_lower_weight_scales_the_stable_up_first_then_the_canary_down() {
    // Argo Rollouts' TestReduceWeightAndHonorMaxUnavailable: 3 replicas, maxSurge 2,
    // maxUnavailable 0, steps 100%, pause, 0%, pause; promoted past the first pause.
    let strategy = json!({"canary": {"maxSurge": 2, "maxUnavailable": 0, "steps": [
        {"setWeight": 100}, {"pause": {}}, {"setWeight": 0}, {"pause": {}}]}});
    let status = RolloutStatus {
        current_step_index: Some(2),
        ..crate::rollout::test_support::at_first_step()
    };
    let mut ro = crate::rollout::test_support::releasing_web2(3, strategy, status);
    let world = |stable: (i32, i32), new: (i32, i32)| {
        crate::rollout::test_support::world_with(
            &[],
            vec![rs("web:1", stable.0, stable.1), rs("web:2", new.0, new.1)],
        )
    };
    let plan = step(&mut ro, &world((0, 0), (3, 3)), at(0));
    assert!(
        conditions::get(&plan.status.conditions, condition::INVALID_SPEC).is_none(),
        "a lower weight is allowed"
    );
    assert_eq!(
        (replicas_of(&plan, "web:2"), replicas_of(&plan, "web:1")),
        (Some(3), Some(2)),
        "the stable surges first; no canary pod goes before the stable's are available"
    );
    assert_eq!(plan.status.current_step_index, Some(2));
    let plan = step(&mut ro, &world((2, 2), (3, 3)), at(5));
    assert_eq!(replicas_of(&plan, "web:2"), Some(1), "then the canary goes");
    let plan = step(&mut ro, &world((3, 3), (0, 0)), at(10));
    assert_eq!(
        plan.status.current_step_index,
        Some(3),
        "step 2 reached at 0%"
    );
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
}

#[test]
fn selector_that_does_not_match_the_template_is_invalid() {
    let mut ro = rollout(json!([]), false);
    ro.spec.selector = serde_json::from_value(json!({"matchLabels": {"app": "other"}})).ok();
    let plan = decide(&ro, &observed("web:1", vec![]), at(0));
    let cond =
        conditions::get(&plan.status.conditions, condition::INVALID_SPEC).expect("InvalidSpec");
    assert!(cond.message.contains("spec.selector"), "{}", cond.message);
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
    let mut ro = rollout(json!([]), false);
    ro.spec.revision_history_limit = Some(1);
    let mut old_a = rs("web:a", 0, 0);
    old_a.created = Some(at(-200));
    let mut old_b = rs("web:b", 0, 0);
    old_b.created = Some(at(-100));
    let plan = decide(
        &ro,
        &observed("web:1", vec![rs("web:1", 4, 4), old_a.clone(), old_b]),
        at(0),
    );
    assert_eq!(plan.delete_replica_sets, vec![old_a.name]);
}

fn weights(plan: &Plan) -> (i32, i32) {
    plan.status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| (w.canary.weight, w.stable.weight))
        .unwrap_or((0, 100))
}

proptest! {
    #[test]
    fn weights_always_sum_to_100(stable in 0i32..8, stable_av in 0i32..8, new in 0i32..8, new_av in 0i32..8, idx in 0i32..3) {
        let status = RolloutStatus { current_step_index: Some(idx), ..Default::default() };
        let mut ro = releasing(json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}]), true, status);
        started(&mut ro);
        let plan = decide(&ro, &observed("web:2", vec![rs("web:1", stable, stable_av.min(stable)), rs("web:2", new, new_av.min(new))]), at(0));
        let (c, s) = weights(&plan);
        prop_assert_eq!(c + s, 100);
        prop_assert!((0..=100).contains(&c));
    }

    #[test]
    fn an_aborted_rollout_never_grows_the_canary(stable in 0i32..8, new in 0i32..8, new_av in 0i32..8, secs in 0i64..100, services in any::<bool>()) {
        let status = RolloutStatus { abort: Some(true), aborted_at: Some(Time(at(0))), current_step_index: Some(1), ..Default::default() };
        let mut ro = releasing(json!([{"setWeight": 50}, {"pause": {}}]), services, status);
        started(&mut ro);
        let plan = decide(&ro, &observed("web:2", vec![rs("web:1", stable, stable), rs("web:2", new, new_av.min(new))]), at(secs));
        prop_assert!(replicas_of(&plan, "web:2").unwrap_or(0) <= new);
        if services {
            prop_assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
        }
    }

    #[test]
    fn pods_never_exceed_replicas_plus_surge(stable in 0i32..=4, new in 0i32..=1, idx in 0i32..4) {
        // From any state within the limits, the plan stays within them.
        let status = RolloutStatus { current_step_index: Some(idx), ..Default::default() };
        let mut ro = releasing(json!([{"setWeight": 25}, {"setWeight": 50}, {"setWeight": 75}]), false, status);
        started(&mut ro);
        let plan = decide(&ro, &observed("web:2", vec![rs("web:1", stable, stable), rs("web:2", new, new)]), at(0));
        let total: i32 = plan.replica_sets.iter().map(|r| r.replicas).sum();
        prop_assert!(total <= (4 + 1).max(stable + new), "total {} from {} + {}", total, stable, new);
    }
}

#[test]
fn workload_deployment_is_scaled_down_once_the_rollouts_pods_are_available() {
    let mut ro = rollout(json!([]), false);
    ro.spec.template = None;
    ro.spec.workload_ref = serde_json::from_value(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}),
    )
    .ok();
    let mut obs = observed("web:1", vec![rs("web:1", 4, 2)]);
    obs.workload_replicas = Some(3);
    let waiting = decide(&ro, &obs, at(0));
    assert_eq!(
        waiting.workload_replicas, None,
        "the Deployment keeps serving until Sluice's pods are available"
    );
    obs.replica_sets = vec![rs("web:1", 4, 4)];
    let plan = decide(&ro, &obs, at(1));
    assert_eq!(plan.workload_replicas, Some(0));
    assert!(reasons(&plan).contains(&"WorkloadScaledDown"));
    obs.workload_replicas = Some(0);
    assert_eq!(
        decide(&ro, &obs, at(2)).workload_replicas,
        None,
        "no write once it is at zero"
    );
    ro.spec.workload_ref = serde_json::from_value(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": "never"}),
    )
    .ok();
    obs.workload_replicas = Some(3);
    assert_eq!(decide(&ro, &obs, at(3)).workload_replicas, None);
}

#[test]
fn progressively_the_deployment_keeps_the_pods_the_rollout_does_not_yet_have() {
    let mut ro = rollout(json!([]), false);
    ro.spec.template = None;
    ro.spec.workload_ref = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "scaleDown": "progressively"
    }))
    .ok();
    let mut obs = observed("web:1", vec![rs("web:1", 4, 0)]);
    obs.workload_replicas = Some(4);
    // (Rollout pods available, Deployment replicas now) -> Deployment target.
    let table = [
        (0, 4, None),
        (1, 4, Some(3)),
        (2, 3, Some(2)),
        (2, 2, None),
        (3, 2, Some(1)),
        (4, 1, Some(0)),
        (4, 0, None),
        // A Rollout pod lost later does not grow the Deployment again.
        (3, 0, None),
    ];
    for (i, (available, current, want)) in table.into_iter().enumerate() {
        obs.replica_sets = vec![rs("web:1", 4, available)];
        obs.workload_replicas = Some(current);
        let plan = decide(&ro, &obs, at(i as i64));
        assert_eq!(
            plan.workload_replicas, want,
            "{available} available, Deployment at {current}"
        );
        assert_eq!(
            reasons(&plan).contains(&"WorkloadScaledDown"),
            want.is_some(),
            "one Event per scale-down"
        );
    }
}

#[test]
fn missing_workload_deployment_is_invalid() {
    let mut ro = rollout(json!([]), false);
    ro.spec.template = None;
    ro.spec.workload_ref = serde_json::from_value(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "nope"}),
    )
    .ok();
    let mut obs = observed("web:1", vec![]);
    obs.template = None;
    let plan = decide(&ro, &obs, at(0));
    let cond =
        conditions::get(&plan.status.conditions, condition::INVALID_SPEC).expect("InvalidSpec");
    assert!(
        cond.message.contains("spec.workloadRef") && cond.message.contains("\"nope\""),
        "{}",
        cond.message
    );
}

#[test]
fn a_release_without_progress_passes_its_deadline_once() {
    let mut ro = releasing(
        json!([{"setWeight": 50}, {"pause": {}}]),
        true,
        Default::default(),
    );
    ro.spec.progress_deadline_seconds = Some(60);
    let stuck = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 1, 0)]);
    let first = step(&mut ro, &stuck, at(0));
    assert_eq!(first.requeue_after, Some(Duration::from_secs(60)));
    let before = step(&mut ro, &stuck, at(59));
    assert_eq!(before.status.phase, Some(RolloutPhase::Progressing));
    let late = step(&mut ro, &stuck, at(61));
    assert_eq!(late.status.phase, Some(RolloutPhase::Degraded));
    let cond =
        conditions::get(&late.status.conditions, condition::PROGRESSING).expect("Progressing");
    assert_eq!(cond.reason, "ProgressDeadlineExceeded");
    assert!(
        cond.message.contains("0 of 1 new pods available"),
        "{}",
        cond.message
    );
    assert!(reasons(&late).contains(&"ProgressDeadlineExceeded"));
    assert_eq!(
        late.status.abort, None,
        "reported, not aborted, without progressDeadlineAbort"
    );
    assert!(
        !reasons(&step(&mut ro, &stuck, at(70))).contains(&"ProgressDeadlineExceeded"),
        "one Event"
    );
    // Progress again clears it.
    let moving = step(
        &mut ro,
        &observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(80),
    );
    assert_ne!(moving.status.phase, Some(RolloutPhase::Degraded));
}

#[test]
fn progress_deadline_abort_aborts_and_a_pause_never_times_out() {
    let mut ro = releasing(
        json!([{"setWeight": 50}, {"pause": {}}]),
        true,
        Default::default(),
    );
    ro.spec.progress_deadline_seconds = Some(60);
    ro.spec.progress_deadline_abort = Some(true);
    let stuck = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 1, 0)]);
    step(&mut ro, &stuck, at(0));
    let late = step(&mut ro, &stuck, at(61));
    assert_eq!(late.status.abort, Some(true));
    assert_eq!(late.aborted, Some(AbortCause::ProgressDeadline));
    let next = step(&mut ro, &stuck, at(62));
    assert_eq!(next.aborted, None, "decided once, at the deadline");
    assert_eq!(
        service(&next, "web-canary"),
        Some(hash("web:1")),
        "traffic back to stable"
    );

    let mut paused = releasing(json!([{"pause": {}}]), true, Default::default());
    paused.spec.progress_deadline_seconds = Some(60);
    let obs = observed("web:2", vec![rs("web:1", 4, 4)]);
    step(&mut paused, &obs, at(0));
    let much_later = step(&mut paused, &obs, at(10_000));
    assert_eq!(much_later.status.phase, Some(RolloutPhase::Paused));
}

#[test]
fn a_user_pause_holds_the_release_until_lifted() {
    let mut ro = releasing(
        json!([{"setWeight": 25}, {"setWeight": 50}]),
        true,
        Default::default(),
    );
    started(&mut ro);
    if let Some(s) = ro.status.as_mut() {
        s.pause_conditions = vec![PauseCondition {
            reason: PauseReason::UserPause,
            start_time: Time(at(0)),
        }];
    }
    let ready_for_next = observed("web:2", vec![rs("web:1", 3, 3), rs("web:2", 1, 1)]);
    let held = step(&mut ro, &ready_for_next, at(1));
    assert_eq!(
        held.status.current_step_index,
        Some(0),
        "no step advances while paused"
    );
    assert_eq!(held.status.phase, Some(RolloutPhase::Paused));
    if let Some(s) = ro.status.as_mut() {
        s.pause_conditions.clear();
    }
    let resumed = step(&mut ro, &ready_for_next, at(2));
    assert_eq!(resumed.status.current_step_index, Some(1));
}

#[test]
fn set_canary_scale_sizes_the_canary_apart_from_its_weight() {
    let steps = json!([{"setCanaryScale": {"replicas": 3}}, {"setWeight": 25}, {"setCanaryScale": {"matchTrafficWeight": true}}, {"setWeight": 50}]);
    let mut ro = releasing(steps, false, Default::default());
    started(&mut ro);
    // At setWeight 25 with a canary scale of 3 pods the canary grows to 3 (within maxSurge),
    // where the weight alone would give it 1.
    if let Some(s) = ro.status.as_mut() {
        s.current_step_index = Some(1);
    }
    let plan = decide(
        &ro,
        &observed("web:2", vec![rs("web:1", 2, 2), rs("web:2", 2, 2)]),
        at(0),
    );
    assert_eq!(replicas_of(&plan, "web:2"), Some(3));
    // matchTrafficWeight: back to sizing by weight (50% of 4).
    if let Some(s) = ro.status.as_mut() {
        s.current_step_index = Some(3);
    }
    let plan = decide(
        &ro,
        &observed("web:2", vec![rs("web:1", 2, 2), rs("web:2", 3, 3)]),
        at(1),
    );
    assert_eq!(replicas_of(&plan, "web:2"), Some(2));
}

#[test]
fn every_event_reason_is_in_the_bounded_list() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rollout");
    let mut seen = 0;
    for file in [
        "decide.rs",
        "release.rs",
        "canary.rs",
        "basic.rs",
        "routed.rs",
        "bluegreen.rs",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("source");
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for part in flat.split("EventType::").skip(1) {
            let Some(rest) = part.split_once(", \"") else {
                continue;
            };
            let reason: String = rest
                .1
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if reason.is_empty() || !rest.0.chars().all(|c| c.is_ascii_alphabetic()) {
                continue;
            }
            assert!(
                EVENT_REASONS.contains(&reason.as_str()),
                "{reason} (in {file}) is missing from EVENT_REASONS"
            );
            seen += 1;
        }
    }
    assert!(seen >= 10, "found only {seen} Events in the source");
}

/// Plays a release of `web:2` over `web:1` without a router or Services: each plan is carried
/// out at once and every pod it asks for becomes ready (the stable's only if `stable_ready`).
/// Returns the last plan; `check` sees every observed state on the way.
fn play(
    ro: &mut Rollout,
    stable_ready: bool,
    stable_failure: Option<PodFailure>,
    rounds: usize,
    mut check: impl FnMut(&Observed, &Plan),
) -> Plan {
    let mut sets = vec![rs("web:1", ro.spec.replicas(), 0)];
    sets[0].failure = stable_failure;
    if stable_ready {
        sets[0].available = sets[0].replicas;
        sets[0].ready = sets[0].replicas;
    }
    let mut last = None;
    for i in 0..rounds {
        let mut obs = observed("web:2", sets.clone());
        obs.services.clear();
        let plan = step(ro, &obs, at(i as i64 * 10));
        check(&obs, &plan);
        for p in &plan.replica_sets {
            let image = if p.hash == hash("web:1") {
                "web:1"
            } else {
                "web:2"
            };
            let ready = if image == "web:1" && !stable_ready {
                0
            } else {
                p.replicas
            };
            let next = rs(image, p.replicas, ready);
            match sets.iter_mut().find(|s| s.hash == p.hash) {
                Some(s) => {
                    *s = ObservedRs {
                        failure: s.failure.clone(),
                        ..next
                    }
                }
                None => sets.push(next),
            }
        }
        last = Some(plan);
    }
    last.expect("at least one round")
}

fn crash() -> PodFailure {
    PodFailure {
        pod: "web-1".into(),
        container: "web".into(),
        reason: "CrashLoopBackOff".into(),
        exit_code: Some(1),
        restarts: 3,
        message: String::new(),
    }
}

fn basic(replicas: i32, canary: serde_json::Value) -> Rollout {
    let mut ro = releasing(json!([]), false, Default::default());
    ro.spec.replicas = Some(replicas);
    ro.spec.strategy.canary = Some(serde_json::from_value(canary).expect("canary"));
    ro
}

#[test]
fn basic_canary_surges_and_keeps_the_stable_at_its_share() {
    // (replicas, weight, canary pods, stable pods, weight in status): default maxSurge and
    // maxUnavailable (25%), as the issue replayed them.
    let table = [
        (1, 25, 1, 1, 50),
        (1, 50, 1, 1, 50),
        (3, 20, 1, 3, 25),
        (2, 10, 1, 2, 33),
        (4, 25, 1, 3, 25),
        (10, 30, 3, 7, 30),
    ];
    for (replicas, weight, canary, stable, shown) in table {
        let mut ro = basic(
            replicas,
            json!({"steps": [{"setWeight": weight}, {"pause": {}}]}),
        );
        let most = (replicas * weight + 99) / 100;
        let plan = play(&mut ro, true, None, 8, |obs, _| {
            let c = find(obs, &hash("web:2")).map_or(0, |r| r.ready);
            let s = find(obs, &hash("web:1")).map_or(0, |r| r.ready);
            assert!(c <= most, "{replicas}@{weight}%: {c} canary pods ready");
            assert!(
                c == 0 || s > 0,
                "{replicas}@{weight}%: the canary serves alone"
            );
        });
        let at = format!("{replicas} replicas at {weight}%");
        assert_eq!(plan.status.current_step_index, Some(1), "{at}");
        assert_eq!(replicas_of(&plan, "web:2"), Some(canary), "{at}");
        assert_eq!(replicas_of(&plan, "web:1"), Some(stable), "{at}");
        let w = plan.status.canary.as_ref().and_then(|c| c.weights.clone());
        assert_eq!(
            w.map(|w| (w.canary.weight, w.stable.weight)),
            Some((shown, 100 - shown)),
            "{at}: the real share of ready pods"
        );
    }
}

#[test]
fn a_broken_stable_does_not_hold_a_fixed_revision_at_step_zero() {
    for failing in [true, false] {
        let mut ro = basic(
            2,
            json!({"maxSurge": 1, "maxUnavailable": 0,
                   "steps": [{"setWeight": 50}, {"pause": {"duration": 5}}]}),
        );
        if let Some(s) = ro.status.as_mut() {
            s.current_pod_hash = Some(hash("web:2"));
        }
        // The stable's pods crash-loop (diagnosed) or never become ready.
        let plan = play(&mut ro, false, failing.then(crash), 12, |_, _| {});
        assert_eq!(
            plan.status.stable_rs,
            Some(hash("web:2")),
            "the fix is released: {:?}",
            plan.status.message
        );
        assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    }
}

#[test]
fn a_broken_first_revision_past_its_deadline_rewrites_nothing() {
    let mut ro = rollout(json!([{"setWeight": 50}]), false);
    ro.spec.progress_deadline_seconds = Some(5);
    let mut broken = rs("web:1", 4, 0);
    broken.failure = Some(crash());
    let obs = observed("web:1", vec![broken]);
    step(&mut ro, &obs, at(0));
    let stuck = step(&mut ro, &obs, at(10));
    assert_eq!(stuck.status.phase, Some(RolloutPhase::Degraded));
    for later in [20, 30, 300] {
        let again = decide(&ro, &obs, at(later));
        assert_eq!(
            again.status, stuck.status,
            "at {later}s: nothing new, nothing written"
        );
    }
}

/// Issue 11: Argo Rollouts parity of the canary's controls, pauses and rollbacks.
mod parity {
    use super::*;
    use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};
    use crate::rollout::analysis::AnalysisKey;
    use crate::rollout::observe::ObservedRun;
    use crate::rollout::test_support::{at_first_step, blue_green, blue_green_world};

    #[test]
    fn a_full_promotion_lifts_an_abort_and_skips_the_steps_and_analysis() {
        // Argo Rollouts: rollout/canary.go syncRolloutStatusCanary (PromoteFull clears the
        // abort), rollout/analysis.go reconcileAnalysisRuns (no run under promoteFull).
        let status = RolloutStatus {
            current_step_index: Some(1),
            abort: Some(true),
            ..Default::default()
        };
        let steps = json!([{"setWeight": 50}, {"pause": {}}, {"analysis": {"templates": [{"templateName": "rate"}]}}]);
        let mut ro = releasing(steps, true, status);
        started(&mut ro);
        let mut obs = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 2, 2)]);
        obs.analysis
            .insert(AnalysisKey::Step(2), Ok(AnalysisRunSpec::default()));
        let plan = step(&mut ro, &obs, at(0));
        assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
        ro.status.as_mut().expect("status").promote_full = Some(true);
        let plan = step(&mut ro, &obs, at(5));
        assert_eq!(plan.status.abort, None, "the abort is lifted");
        assert_eq!(plan.status.aborted_at, None);
        assert_eq!(
            plan.status.current_step_index,
            Some(3),
            "every step skipped"
        );
        assert!(
            plan.create_runs.is_empty(),
            "no analysis: {:?}",
            plan.create_runs
        );
        assert_eq!(
            replicas_of(&plan, "web:2"),
            Some(2),
            "kept, and grown to full size as maxSurge allows (6 pods are above 4 + 1 now)"
        );
        assert_eq!(service(&plan, "web-canary"), Some(hash("web:2")));
        assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
        assert!(reasons(&plan).contains(&"PromotedFull"));
        assert!(!reasons(&plan).contains(&"RolloutRetried"), "not a retry");
        // Once every pod is available the new revision is stable and promoteFull is spent.
        let obs = observed("web:2", vec![rs("web:1", 0, 0), rs("web:2", 4, 4)]);
        step(&mut ro, &obs, at(10));
        let plan = step(&mut ro, &obs, at(11));
        assert_eq!(plan.status.stable_rs, Some(hash("web:2")));
        assert_eq!(plan.status.promote_full, None);
        assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    }

    #[test]
    fn spec_paused_freezes_the_release_where_it_stands_and_follows_replicas() {
        // Argo Rollouts: rollout/context.go haltProgress, rollout/canary.go
        // reconcileCanaryReplicaSets. Sluice keeps honouring `replicas` while paused (Argo
        // issue #4261 is a bug against its own documentation).
        let steps = json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]);
        let mut ro = releasing(steps, true, at_first_step());
        ro.spec.paused = Some(true);
        let obs = observed("web:2", vec![rs("web:1", 4, 4)]);
        let plan = step(&mut ro, &obs, at(0));
        assert_eq!(
            replicas_of(&plan, "web:2"),
            Some(0),
            "the new revision is not scaled"
        );
        assert_eq!(replicas_of(&plan, "web:1"), Some(4));
        assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
        let plan = step(&mut ro, &obs, at(100));
        assert_eq!(plan.status.current_step_index, Some(0), "no step advances");
        assert_eq!(replicas_of(&plan, "web:2"), Some(0));

        // Paused halfway into step 0 (1 of 2 canary pods): the canary keeps its pod.
        let obs = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]);
        let plan = step(&mut ro, &obs, at(110));
        assert_eq!(replicas_of(&plan, "web:2"), Some(1));
        assert_eq!(replicas_of(&plan, "web:1"), Some(4));

        // At the pause step (50%: 2 + 2), scaled to 8: the ratio of the steps done is kept.
        let status = RolloutStatus {
            current_step_index: Some(1),
            ..at_first_step()
        };
        let mut ro = releasing(
            json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]),
            true,
            status,
        );
        started(&mut ro);
        ro.spec.paused = Some(true);
        ro.spec.replicas = Some(8);
        let obs = observed("web:2", vec![rs("web:1", 2, 2), rs("web:2", 2, 2)]);
        let plan = step(&mut ro, &obs, at(0));
        assert_eq!(
            (replicas_of(&plan, "web:2"), replicas_of(&plan, "web:1")),
            (Some(4), Some(4)),
            "50% of 8 each"
        );
        assert_eq!(plan.status.current_step_index, Some(1));
        let obs = observed("web:2", vec![rs("web:1", 4, 4), rs("web:2", 4, 4)]);
        // Unpaused: the release goes on from where it stood.
        ro.spec.paused = None;
        let plan = step(&mut ro, &obs, at(10));
        assert_eq!(plan.status.current_step_index, Some(1));
        assert_eq!(
            plan.status.phase,
            Some(RolloutPhase::Paused),
            "the pause step's own pause"
        );
        assert!(has_pause(&plan, PauseReason::CanaryPauseStep));
    }

    fn has_pause(plan: &Plan, reason: PauseReason) -> bool {
        plan.status
            .pause_conditions
            .iter()
            .any(|p| p.reason == reason)
    }

    #[test]
    fn an_inconclusive_background_run_freezes_the_counts_and_a_promotion_starts_a_new_one() {
        // Argo Rollouts: rollout/analysis.go reconcileBackgroundAnalysisRun and
        // needsNewAnalysisRun; rollout/context.go haltProgress.
        let strategy = json!({"canary": {"maxSurge": 1, "maxUnavailable": 0,
            "stableService": "web-stable", "canaryService": "web-canary",
            "analysis": {"templates": [{"templateName": "rate"}]},
            "steps": [{"setWeight": 25}, {"setWeight": 50}, {"pause": {}}]}});
        let status = RolloutStatus {
            current_step_index: Some(1),
            ..at_first_step()
        };
        let mut ro = crate::rollout::test_support::releasing_web2(4, strategy, status);
        let bg = format!("web-{}-2-background", hash("web:2"));
        let world = |runs: Vec<ObservedRun>| Observed {
            analysis: [(AnalysisKey::Background, Ok(AnalysisRunSpec::default()))].into(),
            runs,
            ..crate::rollout::test_support::world_with(
                &["web-stable", "web-canary"],
                vec![rs("web:1", 3, 3), rs("web:2", 1, 1)],
            )
        };
        let run = |name: &str, terminated: bool| ObservedRun {
            name: name.into(),
            hash: hash("web:2"),
            phase: Some(AnalysisPhase::Inconclusive),
            message: Some("both conditions false".into()),
            terminated,
            measuring: false,
            decided_by: None,
        };
        let plan = step(&mut ro, &world(vec![run(&bg, false)]), at(0));
        assert!(has_pause(&plan, PauseReason::InconclusiveAnalysis));
        assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
        assert_eq!(
            (replicas_of(&plan, "web:2"), replicas_of(&plan, "web:1")),
            (Some(1), Some(3)),
            "no replica moves towards 50% while inconclusive"
        );
        // A person promotes (clears the pause): the run is accepted, and a new one starts.
        ro.status.as_mut().expect("status").pause_conditions.clear();
        let plan = step(&mut ro, &world(vec![run(&bg, false)]), at(10));
        assert!(
            plan.terminate_runs.contains(&bg),
            "{:?}",
            plan.terminate_runs
        );
        let plan = step(&mut ro, &world(vec![run(&bg, true)]), at(11));
        let created: Vec<&str> = plan.create_runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(created.len(), 1, "{created:?}");
        assert_ne!(created[0], bg);
        assert!(created[0].contains("background"), "{created:?}");
        assert!(!has_pause(&plan, PauseReason::InconclusiveAnalysis));
    }

    /// A Rollout whose stable is `web:3` and whose template went back to `web:1`, with
    /// `web:1`, `web:2`, `web:3` created in that order.
    fn rolled_back(window: Option<i32>) -> (Rollout, Observed) {
        let steps =
            json!([{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "rate"}]}}]);
        let mut ro = rollout(steps, true);
        if let Some(n) = window {
            ro.spec.rollback_window =
                Some(crate::api::rollout::RollbackWindow { revisions: Some(n) });
        }
        ro.status = Some(RolloutStatus {
            stable_rs: Some(hash("web:3")),
            current_pod_hash: Some(hash("web:3")),
            current_step_index: Some(2),
            release_count: Some(3),
            ..Default::default()
        });
        let created = |image: &str, replicas: i32, t: i64| ObservedRs {
            created: Some(at(t)),
            ..rs(image, replicas, replicas)
        };
        let mut obs = observed(
            "web:1",
            vec![
                created("web:1", 0, 0),
                created("web:2", 0, 10),
                created("web:3", 4, 20),
            ],
        );
        obs.analysis
            .insert(AnalysisKey::Step(1), Ok(AnalysisRunSpec::default()));
        (ro, obs)
    }

    #[test]
    fn a_rollback_within_the_window_skips_steps_and_analysis() {
        // Argo Rollouts: rollout/sync.go isRollbackWithinWindow; docs/features/rollback.md.
        let (mut ro, obs) = rolled_back(Some(2));
        let plan = step(&mut ro, &obs, at(100));
        assert!(
            reasons(&plan).contains(&"FastTrackRollback"),
            "{:?}",
            reasons(&plan)
        );
        assert_eq!(plan.status.current_step_index, Some(2));
        assert!(plan.create_runs.is_empty());
        assert_eq!(
            replicas_of(&plan, "web:1"),
            Some(1),
            "to full size, within maxSurge"
        );
        // One revision between, window 1: a normal release.
        let (mut ro, obs) = rolled_back(Some(1));
        let plan = step(&mut ro, &obs, at(100));
        assert!(!reasons(&plan).contains(&"FastTrackRollback"));
        assert_eq!(plan.status.current_step_index, Some(0));
        assert_eq!(plan.status.promote_full, None);
        // No window: a normal release too.
        let (mut ro, obs) = rolled_back(None);
        let plan = step(&mut ro, &obs, at(100));
        assert_eq!(plan.status.current_step_index, Some(0));
    }

    #[test]
    fn revisions_created_in_the_same_second_never_widen_the_window() {
        // Creation times have whole seconds: web:2 created in web:1's second counts as
        // between them, so window 1 is a normal release; a target in the stable's second is
        // not known to be older.
        let set_created = |obs: &mut Observed, image: &str, t: i64| {
            let h = hash(image);
            if let Some(rs) = obs.replica_sets.iter_mut().find(|rs| rs.hash == h) {
                rs.created = Some(at(t));
            }
        };
        let (mut ro, mut obs) = rolled_back(Some(1));
        set_created(&mut obs, "web:2", 0);
        let plan = step(&mut ro, &obs, at(100));
        assert!(!reasons(&plan).contains(&"FastTrackRollback"));
        assert_eq!(plan.status.current_step_index, Some(0));
        let (mut ro, mut obs) = rolled_back(Some(5));
        set_created(&mut obs, "web:1", 20);
        let plan = step(&mut ro, &obs, at(100));
        assert!(!reasons(&plan).contains(&"FastTrackRollback"));
        let (mut ro, mut obs) = rolled_back(Some(2));
        set_created(&mut obs, "web:2", 20);
        let plan = step(&mut ro, &obs, at(100));
        assert!(
            reasons(&plan).contains(&"FastTrackRollback"),
            "one between, window 2"
        );
    }

    #[test]
    fn blue_green_back_to_a_revision_within_its_scale_down_delay_is_fast_tracked() {
        // Argo Rollouts: rollout/bluegreen.go isBlueGreenFastTracked, rollout/analysis.go
        // (rollbackToScaleDownDelay skips analysis).
        let mut ro = blue_green(json!({"autoPromotionEnabled": false}));
        let st = ro.status.as_mut().expect("status");
        st.stable_rs = Some(hash("web:1"));
        st.current_pod_hash = Some(hash("web:1"));
        let mut replaced = rs("web:2", 3, 3);
        replaced.scale_down_at = Some(at(50));
        let plan = step(
            &mut ro,
            &blue_green_world(vec![rs("web:1", 3, 3), replaced]),
            at(10),
        );
        assert!(
            reasons(&plan).contains(&"FastTrackRollback"),
            "{:?}",
            reasons(&plan)
        );
        assert_eq!(plan.status.promote_full, Some(true));
        // Past its delay (scaled to zero): a normal release.
        let mut ro = blue_green(json!({"autoPromotionEnabled": false}));
        let st = ro.status.as_mut().expect("status");
        st.stable_rs = Some(hash("web:1"));
        st.current_pod_hash = Some(hash("web:1"));
        let plan = step(
            &mut ro,
            &blue_green_world(vec![rs("web:1", 3, 3), rs("web:2", 0, 0)]),
            at(10),
        );
        assert!(!reasons(&plan).contains(&"FastTrackRollback"));
        assert_eq!(plan.status.promote_full, None);
    }

    #[test]
    fn blue_green_scale_down_revision_limit_keeps_only_the_newest_old_revisions() {
        // Argo Rollouts: rollout/bluegreen.go scaleDownOldReplicaSetsForBlueGreen,
        // rollout/replicaset.go scaleDownDelayHelper; e2e TestBlueGreenScaleDownDelay.
        let mut ro = blue_green(json!({"scaleDownDelayRevisionLimit": 1}));
        let st = ro.status.as_mut().expect("status");
        st.stable_rs = Some(hash("web:2"));
        st.current_pod_hash = Some(hash("web:2"));
        let mut older = rs("web:0", 3, 3);
        older.scale_down_at = Some(at(50));
        let sets = vec![older, rs("web:1", 3, 3), rs("web:2", 3, 3)];
        let plan = step(&mut ro, &blue_green_world(sets), at(10));
        assert_eq!(
            replicas_of(&plan, "web:0"),
            Some(0),
            "beyond the limit: at once"
        );
        let web1 = plan.replica_sets.iter().find(|r| r.hash == hash("web:1"));
        assert_eq!(
            web1.map(|r| (r.replicas, r.scale_down_at)),
            Some((3, Some(at(20)))),
            "the newest old revision serves out its delay"
        );
    }

    #[test]
    fn blue_green_scale_down_revision_limit_must_fit_the_history() {
        // Argo Rollouts: pkg/apis/rollouts/validation/validation.go ValidateRolloutStrategyBlueGreen.
        let mut ro = blue_green(json!({"scaleDownDelayRevisionLimit": 2}));
        ro.spec.revision_history_limit = Some(1);
        let plan = decide(&ro, &blue_green_world(vec![rs("web:1", 3, 3)]), at(0));
        let cond =
            conditions::get(&plan.status.conditions, condition::INVALID_SPEC).expect("InvalidSpec");
        assert!(
            cond.message
                .starts_with("spec.strategy.blueGreen.scaleDownDelayRevisionLimit"),
            "{}",
            cond.message
        );
    }
}

/// Argo Rollouts' scaling e2e cases (test/e2e/canary_test.go), replayed on `decide`.
mod scaling {
    use super::*;
    use crate::rollout::test_support::{at_first_step, releasing_web2, world_with};

    fn sized(ro: &mut Rollout, replicas: i32, v1: (i32, i32), v2: (i32, i32)) -> (i32, i32) {
        ro.spec.replicas = Some(replicas);
        let obs = world_with(
            &["web-stable", "web-canary"],
            vec![rs("web:1", v1.0, v1.1), rs("web:2", v2.0, v2.1)],
        );
        let plan = decide(ro, &obs, at(0));
        (
            replicas_of(&plan, "web:2").unwrap_or(0),
            replicas_of(&plan, "web:1").unwrap_or(0),
        )
    }

    #[test]
    fn scaling_while_paused_keeps_the_steps_ratio() {
        // TestRolloutScalingWhenPaused: 1 replica at 25% -> (1, 1); 8 -> (2, 6); 4 -> (1, 3).
        let status = RolloutStatus {
            current_step_index: Some(1),
            ..at_first_step()
        };
        let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
            "maxSurge": "25%", "maxUnavailable": 0, "steps": [{"setWeight": 25}, {"pause": {}}]}});
        let mut ro = releasing_web2(1, strategy, status);
        assert_eq!(sized(&mut ro, 1, (1, 1), (1, 1)), (1, 1));
        assert_eq!(sized(&mut ro, 8, (6, 6), (2, 2)), (2, 6));
        assert_eq!(sized(&mut ro, 4, (3, 3), (1, 1)), (1, 3));
    }

    #[test]
    fn scaling_a_canary_that_never_gets_ready() {
        // TestRolloutScalingDuringUpdate: 4 replicas, maxSurge 2, maxUnavailable 0, no steps,
        // canary never available: (2, 4); scaled to 8: (6, 4); back to 4: (2, 4).
        let strategy = json!({"canary": {"maxSurge": 2, "maxUnavailable": 0}});
        let mut ro = releasing_web2(4, strategy, at_first_step());
        assert_eq!(sized(&mut ro, 4, (4, 4), (0, 0)), (2, 4));
        assert_eq!(sized(&mut ro, 8, (4, 4), (2, 0)), (6, 4));
        assert_eq!(sized(&mut ro, 4, (4, 4), (6, 0)), (2, 4));
        // TestRolloutWithMaxSurgeScalingDuringUpdate: maxSurge 100%: (4, 3); 8: (8, 3); 4:
        // (4, 3), reached in two moves (back under the ceiling first).
        let strategy = json!({"canary": {"maxSurge": "100%"}});
        let mut ro = releasing_web2(4, strategy, at_first_step());
        assert_eq!(sized(&mut ro, 4, (4, 4), (4, 0)), (4, 3));
        assert_eq!(sized(&mut ro, 8, (3, 3), (4, 0)), (8, 3));
        let first = sized(&mut ro, 4, (3, 3), (8, 0));
        assert!(first.0 + first.1 <= 8 && first.1 == 3, "{first:?}");
        assert_eq!(sized(&mut ro, 4, (3, 3), (first.0, 0)), (4, 3));
    }

    #[test]
    fn a_routed_canary_scales_with_replicas_unless_set_canary_scale_fixes_it() {
        // CalculateReplicaCountsForTrafficRoutedCanary: canary ceil(replicas x weight), the
        // stable at full size; setCanaryScale.replicas is independent of replicas.
        let routed = |steps: serde_json::Value| {
            let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                "steps": steps}});
            let status = RolloutStatus {
                current_step_index: Some(1),
                ..at_first_step()
            };
            releasing_web2(10, strategy, status)
        };
        let mut ro = routed(json!([{"setWeight": 30}, {"pause": {}}]));
        assert_eq!(sized(&mut ro, 10, (10, 10), (3, 3)), (3, 10));
        assert_eq!(sized(&mut ro, 20, (10, 10), (3, 3)), (6, 20));
        let mut ro = routed(json!([{"setCanaryScale": {"replicas": 2}}, {"pause": {}}]));
        assert_eq!(sized(&mut ro, 10, (10, 10), (2, 2)), (2, 10));
        assert_eq!(sized(&mut ro, 20, (10, 10), (2, 2)), (2, 20));
    }
}

#[test]
fn created_paused_the_first_revision_stays_at_zero_until_resumed() {
    // Argo Rollouts (v1.10.2, run side by side on the local control plane, and the spec's
    // `paused` field: "If true at initial creation of Rollout, replicas are not scaled up
    // automatically from zero unless manually promoted"): the ReplicaSet is created with 0
    // replicas, the Rollout is Paused with its steps done, and resuming scales it up.
    let mut ro = rollout(json!([{"setWeight": 50}, {"pause": {}}]), true);
    ro.spec.paused = Some(true);
    let plan = step(&mut ro, &observed("web:1", vec![]), at(0));
    assert_eq!(plan.status.stable_rs, Some(hash("web:1")));
    assert_eq!(replicas_of(&plan, "web:1"), Some(0), "created at zero");
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    assert_eq!(plan.status.current_step_index, Some(2));
    assert!(
        plan.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("created paused")),
        "{:?}",
        plan.status.message
    );
    assert_eq!(reasons(&plan), vec!["FirstRevision"], "nothing scaled");

    // Still paused, scaled to 6: nothing comes up from zero.
    ro.spec.replicas = Some(6);
    let obs = observed("web:1", vec![rs("web:1", 0, 0)]);
    let plan = step(&mut ro, &obs, at(10));
    assert_eq!(replicas_of(&plan, "web:1"), Some(0));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    let again = decide(&ro, &obs, at(20));
    assert_eq!(
        again.status, plan.status,
        "a held Rollout writes nothing new"
    );

    // Resumed: the first revision scales up to `replicas`, with no steps to go through.
    ro.spec.paused = None;
    let plan = step(&mut ro, &obs, at(30));
    assert_eq!(replicas_of(&plan, "web:1"), Some(6));
    assert_eq!(reasons(&plan), vec!["ScalingReplicaSet"]);
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
    let plan = step(&mut ro, &observed("web:1", vec![rs("web:1", 6, 6)]), at(40));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));

    // Paused again once it has pods: it is no longer "created paused", and a scaling
    // while paused is followed (see spec_paused_freezes_the_release_where_it_stands...).
    ro.spec.paused = Some(true);
    ro.spec.replicas = Some(8);
    let plan = step(&mut ro, &observed("web:1", vec![rs("web:1", 6, 6)]), at(50));
    assert_eq!(replicas_of(&plan, "web:1"), Some(8));
}

#[test]
fn created_paused_with_a_traffic_router_stays_at_zero_too() {
    let spec: RolloutSpec = serde_json::from_value(json!({
        "replicas": 3,
        "paused": true,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template("web:1"),
        "strategy": {"canary": {
            "stableService": "web-stable",
            "canaryService": "web-canary",
            "trafficRouting": {"istio": {"virtualService": {"name": "web"}}},
            "steps": [{"setWeight": 20}, {"pause": {}}]
        }}
    }))
    .expect("spec");
    let mut ro = Rollout::new("web", spec);
    ro.metadata.generation = Some(1);
    let plan = step(&mut ro, &observed("web:1", vec![]), at(0));
    assert_eq!(replicas_of(&plan, "web:1"), Some(0));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    ro.spec.paused = Some(false);
    let plan = step(&mut ro, &observed("web:1", vec![rs("web:1", 0, 0)]), at(10));
    assert_eq!(replicas_of(&plan, "web:1"), Some(3));
}
