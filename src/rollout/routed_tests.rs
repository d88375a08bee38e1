//! Table tests of a canary with a traffic router: the router carries the weight, pods come
//! first, the stable keeps its pods until the switch and drains after it.

use crate::api::rollout::{Rollout, RolloutPhase, RolloutStatus};
use crate::rollout::decide::{Plan, decide};
use crate::rollout::observe::{Observed, ObservedRs};
use crate::rollout::test_support::{
    at, at_first_step, hash, last_weight, reasons, releasing_web2, replicas_of, rs, service, step,
    world_with,
};
use crate::traffic::HeaderMatch;
use crate::traffic::MatchValue;
use serde_json::json;

fn routed(steps: serde_json::Value) -> Rollout {
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 20, "abortScaleDownDelaySeconds": 10,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}},
                           "managedRoutes": [{"name": "beta"}]},
        "steps": steps
    }});
    releasing_web2(4, strategy, at_first_step())
}

fn world(sets: Vec<ObservedRs>) -> Observed {
    world_with(&["web-stable", "web-canary"], sets)
}

fn weight(plan: &Plan) -> i32 {
    plan.traffic.as_ref().expect("traffic").weights.canary
}

/// Puts `ro` at step `idx` with the router last at `weight`%; returns its status for more.
fn resumed(ro: &mut Rollout, idx: i32, weight: i32) -> &mut RolloutStatus {
    let s = ro.status.get_or_insert_with(Default::default);
    s.current_step_index = Some(idx);
    s.canary = last_weight(weight);
    s
}

const STEPS: &str = r#"[{"setWeight": 25}, {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "1"}}]}}, {"pause": {}}, {"setWeight": 50}]"#;

#[test]
fn canary_pods_are_ready_before_the_weight_reaches_them_and_the_stable_keeps_its_pods() {
    let mut ro = routed(serde_json::from_str(STEPS).expect("steps"));
    let plan = step(&mut ro, &world(vec![rs("web:1", 4, 4)]), at(0));
    assert_eq!(replicas_of(&plan, "web:2"), Some(1), "25% of 4");
    assert_eq!(
        replicas_of(&plan, "web:1"),
        Some(4),
        "the router moves traffic, not pods"
    );
    assert_eq!(weight(&plan), 0, "no traffic before the pod is ready");
    assert_eq!(plan.status.current_step_index, Some(0));
    // The canary pod is ready: 25% goes to it, the header route comes, then the pause.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(5),
    );
    assert_eq!(plan.status.current_step_index, Some(2));
    assert_eq!(weight(&plan), 25);
    let t = plan.traffic.as_ref().expect("traffic");
    assert_eq!(
        t.header_routes,
        vec![(
            "beta".to_string(),
            vec![HeaderMatch {
                name: "x-beta".into(),
                value: MatchValue::Exact("1".into())
            }]
        )]
    );
    assert_eq!(t.canary_hash, hash("web:2"));
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:2")));
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:1")));
    let w = plan
        .status
        .canary
        .as_ref()
        .and_then(|c| c.weights.clone())
        .expect("weights");
    assert_eq!((w.canary.weight, w.stable.weight), (25, 75));
}

#[test]
fn the_switch_sends_everything_to_the_new_stable_and_the_old_pods_drain_after_a_delay() {
    let mut ro = routed(json!([{"setWeight": 50}]));
    ro.status.as_mut().expect("status").current_step_index = Some(1);
    let sets = vec![rs("web:1", 4, 4), rs("web:2", 4, 4)];
    let plan = step(&mut ro, &world(sets.clone()), at(0));
    assert_eq!(plan.status.stable_rs, Some(hash("web:2")));
    assert_eq!(
        weight(&plan),
        0,
        "the stable Service now selects the new pods"
    );
    assert!(plan.traffic.as_ref().expect("t").header_routes.is_empty());
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:2")));
    let old = plan
        .replica_sets
        .iter()
        .find(|r| r.hash == hash("web:1"))
        .expect("old");
    assert_eq!(
        old.replicas, 4,
        "the old stable keeps serving while traffic drains"
    );
    assert_eq!(old.scale_down_at, Some(at(20)));
    assert!(reasons(&plan).contains(&"RolloutCompleted"));
    // After the delay it goes to zero.
    let mut drained = sets.clone();
    drained[0].scale_down_at = Some(at(20));
    let plan = step(&mut ro, &world(drained), at(21));
    assert_eq!(replicas_of(&plan, "web:1"), Some(0));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
}

/// Argo Rollouts: rollout/trafficrouting.go `reconcileTrafficRouting` (SetMirrorRoute, then
/// RemoveManagedRoutes at the end of a release or an abort); a step without `match` removes
/// its route (`reconcileVirtualServiceMirrorRoutes`); the step completes at once
/// (rollout/canary.go `completedCurrentCanaryStep`).
#[test]
fn mirror_routes_follow_the_steps_and_go_at_an_abort() {
    let steps = json!([{"setWeight": 20},
        {"setMirrorRoute": {"name": "beta", "percentage": 50, "match": [{"path": {"prefix": "/"}}]}},
        {"pause": {}},
        {"setMirrorRoute": {"name": "beta"}},
        {"pause": {}}]);
    let mut ro = routed(steps);
    let sets = vec![rs("web:1", 4, 4), rs("web:2", 1, 1)];
    let plan = step(&mut ro, &world(sets.clone()), at(0));
    assert_eq!(
        plan.status.current_step_index,
        Some(2),
        "the mirror step is done at once"
    );
    let mirrors = &plan.traffic.as_ref().expect("t").mirror_routes;
    assert_eq!(
        mirrors
            .iter()
            .map(|m| (m.name.as_str(), m.percentage, m.matches.clone()))
            .collect::<Vec<_>>(),
        [("beta", 50, vec![json!({"uri": {"prefix": "/"}})])]
    );
    // Promoted past the pause: the match-less step takes the route away.
    ro.status.as_mut().expect("status").current_step_index = Some(3);
    let plan = step(&mut ro, &world(sets.clone()), at(1));
    assert_eq!(plan.status.current_step_index, Some(4));
    assert!(plan.traffic.as_ref().expect("t").mirror_routes.is_empty());
    // An abort at the first pause removes it too.
    let s = ro.status.as_mut().expect("status");
    s.current_step_index = Some(2);
    s.abort = Some(true);
    let plan = step(&mut ro, &world(sets), at(2));
    assert!(plan.traffic.as_ref().expect("t").mirror_routes.is_empty());
}

#[test]
fn an_abort_takes_all_traffic_and_header_routes_away_first() {
    let mut ro = routed(serde_json::from_str(STEPS).expect("steps"));
    let s = ro.status.as_mut().expect("status");
    s.current_step_index = Some(2);
    s.abort = Some(true);
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(0),
    );
    assert_eq!(weight(&plan), 0);
    assert!(plan.traffic.as_ref().expect("t").header_routes.is_empty());
    let canary_rs = |plan: &Plan| {
        plan.replica_sets
            .iter()
            .find(|r| r.hash == hash("web:2"))
            .map(|r| (r.replicas, r.scale_down_at))
    };
    assert_eq!(
        canary_rs(&plan),
        Some((1, Some(at(10)))),
        "kept for abortScaleDownDelaySeconds, its deadline written on the ReplicaSet"
    );
    assert_eq!(replicas_of(&plan, "web:1"), Some(4));
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
    let mut annotated = rs("web:2", 1, 1);
    annotated.scale_down_at = Some(at(10));
    let plan = step(&mut ro, &world(vec![rs("web:1", 4, 4), annotated]), at(11));
    assert_eq!(replicas_of(&plan, "web:2"), Some(0));
}

#[test]
fn the_abort_delay_starts_once_the_stable_is_fully_available_and_zero_keeps_the_canary() {
    // Argo Rollouts: rollout/replicaset.go reconcileNewReplicaSet (shouldDelayScaleDownOnAbort).
    let mut ro = routed(json!([{"setWeight": 50}, {"pause": {}}]));
    resumed(&mut ro, 1, 50).abort = Some(true);
    let canary_rs = |plan: &Plan| {
        plan.replica_sets
            .iter()
            .find(|r| r.hash == hash("web:2"))
            .map(|r| (r.replicas, r.scale_down_at))
    };
    // The stable lost a pod: the canary keeps its 2 pods, no clock yet, long past the delay.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 3), rs("web:2", 2, 2)]),
        at(100),
    );
    assert_eq!(canary_rs(&plan), Some((2, None)));
    assert_eq!(weight(&plan), 0, "traffic left the canary at once");
    // The stable is whole again: the 10 s start now.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 2, 2)]),
        at(200),
    );
    assert_eq!(canary_rs(&plan), Some((2, Some(at(210)))));

    // An explicit 0: the canary keeps its pods, with no deadline, however long it waits.
    let mut ro = routed(json!([{"setWeight": 50}, {"pause": {}}]));
    let canary = ro.spec.strategy.canary.as_mut().expect("canary");
    canary.abort_scale_down_delay_seconds = Some(0);
    resumed(&mut ro, 1, 50).abort = Some(true);
    for t in [0, 1_000, 100_000] {
        let plan = step(
            &mut ro,
            &world(vec![rs("web:1", 4, 4), rs("web:2", 2, 2)]),
            at(t),
        );
        assert_eq!(canary_rs(&plan), Some((2, None)), "at {t}s");
        assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
    }
}

#[test]
fn a_full_promotion_does_not_raise_the_weight_before_the_pods() {
    let mut ro = routed(json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 90}]));
    resumed(&mut ro, 1, 10).promote_full = Some(true);
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(0),
    );
    assert_eq!(weight(&plan), 10);
    assert_eq!(replicas_of(&plan, "web:2"), Some(4));
}

#[test]
fn a_header_route_not_in_managed_routes_or_a_missing_route_is_invalid() {
    let ro = routed(
        json!([{"setHeaderRoute": {"name": "other", "match": [{"headerName": "x", "headerValue": {"exact": "1"}}]}}]),
    );
    let plan = decide(&ro, &world(vec![rs("web:1", 4, 4)]), at(0));
    let msg = plan.status.message.expect("message");
    assert!(
        msg.contains("setHeaderRoute.name") && msg.contains("managedRoutes"),
        "{msg}"
    );

    let ro = routed(json!([{"setWeight": 10}]));
    let mut obs = world(vec![rs("web:1", 4, 4)]);
    obs.traffic.insert(
        "spec.strategy.canary.trafficRouting.istio.virtualService".into(),
        Err("VirtualService \"web\" has no http route named \"primary\"".into()),
    );
    let plan = decide(&ro, &obs, at(0));
    let msg = plan.status.message.expect("message");
    assert!(
        msg.contains("virtualService: VirtualService \"web\" has no http route"),
        "{msg}"
    );
    assert!(
        plan.traffic.is_none() && plan.replica_sets.is_empty(),
        "nothing is half-written"
    );
}

/// A routed canary with dynamicStableScale (and no scaleDownDelaySeconds, which it refuses).
fn dynamic(steps: serde_json::Value) -> Rollout {
    let mut ro = routed(steps);
    let canary = ro.spec.strategy.canary.as_mut().expect("canary");
    canary.dynamic_stable_scale = Some(true);
    canary.scale_down_delay_seconds = None;
    ro
}

fn status_weight(plan: &Plan) -> i32 {
    plan.status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map_or(0, |w| w.canary.weight)
}

#[test]
fn dynamic_stable_scale_shrinks_the_stable_only_after_traffic_left_it() {
    let mut ro =
        dynamic(json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]));
    // (stable pods, canary pods) observed -> (weight, stable planned, canary planned).
    let plan = step(&mut ro, &world(vec![rs("web:1", 4, 4)]), at(0));
    assert_eq!(
        (
            weight(&plan),
            replicas_of(&plan, "web:1"),
            replicas_of(&plan, "web:2")
        ),
        (0, Some(4), Some(1))
    );
    // The canary pod is ready: 25% moves to it, the stable still holds the 100% it had.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(1),
    );
    assert_eq!((weight(&plan), replicas_of(&plan, "web:1")), (25, Some(4)));
    assert_eq!(plan.status.current_step_index, Some(1), "paused at step 1");
    // The router says 25%: the stable goes to 75% of 4.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(2),
    );
    assert_eq!((weight(&plan), replicas_of(&plan, "web:1")), (25, Some(3)));
    // Promoted: the canary grows to 2, the stable keeps 3 until 50% moved.
    ro.status.as_mut().expect("status").pause_conditions.clear();
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 1, 1)];
    let plan = step(&mut ro, &world(sets), at(3));
    assert_eq!(
        (
            weight(&plan),
            replicas_of(&plan, "web:1"),
            replicas_of(&plan, "web:2")
        ),
        (25, Some(3), Some(2)),
        "a stable not at full size does not hold the step"
    );
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 2, 2)];
    let plan = step(&mut ro, &world(sets.clone()), at(4));
    assert_eq!((weight(&plan), replicas_of(&plan, "web:1")), (50, Some(3)));
    let plan = step(&mut ro, &world(sets), at(5));
    assert_eq!((weight(&plan), replicas_of(&plan, "web:1")), (50, Some(2)));
}

#[test]
fn dynamic_stable_scale_abort_grows_the_stable_before_traffic_returns_to_it() {
    let mut ro = dynamic(json!([{"setWeight": 50}, {"pause": {}}]));
    // No explicit abortScaleDownDelaySeconds: as in Argo Rollouts, only the traffic keeps
    // the canary's pods.
    let canary = ro.spec.strategy.canary.as_mut().expect("canary");
    canary.abort_scale_down_delay_seconds = None;
    resumed(&mut ro, 1, 50).abort = Some(true);
    // Stable at 2 of 4: it grows back to 4 while the canary keeps half the traffic.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 2, 2), rs("web:2", 2, 2)]),
        at(0),
    );
    assert_eq!(weight(&plan), 50);
    assert_eq!(replicas_of(&plan, "web:1"), Some(4));
    assert_eq!(replicas_of(&plan, "web:2"), Some(2));
    assert_eq!(
        service(&plan, "web-canary"),
        Some(hash("web:2")),
        "still serving"
    );
    assert_eq!(plan.traffic.as_ref().expect("t").canary_hash, hash("web:2"));
    // 3 of 4 stable pods available: 25% stays on the canary.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 3), rs("web:2", 2, 2)]),
        at(11),
    );
    assert_eq!((weight(&plan), status_weight(&plan)), (25, 25));
    assert_eq!(
        replicas_of(&plan, "web:2"),
        Some(2),
        "the last weight was 50%"
    );
    // A flapping stable never raises the canary's weight again.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 2), rs("web:2", 2, 2)]),
        at(12),
    );
    assert_eq!(weight(&plan), 25);
    // All stable pods available: all traffic back, the Services select the stable.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 2, 2)]),
        at(13),
    );
    assert_eq!(weight(&plan), 0);
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
    assert_eq!(plan.traffic.as_ref().expect("t").canary_hash, hash("web:1"));
    assert_eq!(
        replicas_of(&plan, "web:2"),
        Some(1),
        "the router still sent it 25% until now"
    );
    // Then the canary goes.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4), rs("web:2", 1, 1)]),
        at(14),
    );
    assert_eq!(replicas_of(&plan, "web:2"), Some(0));
}

#[test]
fn dynamic_stable_scale_needs_a_router_and_no_scale_down_delay() {
    let mut ro = dynamic(json!([{"setWeight": 50}]));
    ro.spec
        .strategy
        .canary
        .as_mut()
        .expect("canary")
        .scale_down_delay_seconds = Some(5);
    let plan = decide(&ro, &world(vec![rs("web:1", 4, 4)]), at(0));
    let msg = plan.status.message.expect("message");
    assert!(
        msg.contains("dynamicStableScale: cannot be used with scaleDownDelaySeconds"),
        "{msg}"
    );
    let mut ro = dynamic(json!([{"setWeight": 50}]));
    ro.spec
        .strategy
        .canary
        .as_mut()
        .expect("canary")
        .traffic_routing = None;
    let plan = decide(&ro, &world(vec![rs("web:1", 4, 4)]), at(0));
    let msg = plan.status.message.expect("message");
    assert!(
        msg.contains("dynamicStableScale: can only be used with trafficRouting"),
        "{msg}"
    );
}

#[test]
fn scale_down_delay_revision_limit_keeps_only_the_newest_old_revisions() {
    // Argo Rollouts: rollout/replicaset.go scaleDownDelayHelper; canary_test.go
    // TestCanaryScaleDownDelay. Settled on web:2; web:1 was just replaced, web:0 before it.
    let old = |image: &str, deadline: Option<i64>| ObservedRs {
        scale_down_at: deadline.map(at),
        ..rs(image, 4, 4)
    };
    for (limit, web0) in [(Some(1), Some(0)), (None, None), (Some(0), Some(0))] {
        let mut ro = routed(json!([{"setWeight": 50}]));
        let canary = ro.spec.strategy.canary.as_mut().expect("canary");
        canary.scale_down_delay_revision_limit = limit;
        let st = ro.status.as_mut().expect("status");
        st.stable_rs = Some(hash("web:2"));
        st.current_step_index = Some(1);
        let sets = vec![
            old("web:0", Some(50)),
            old("web:1", None),
            rs("web:2", 4, 4),
        ];
        let plan = step(&mut ro, &world(sets), at(10));
        assert_eq!(replicas_of(&plan, "web:0"), web0, "limit {limit:?}");
        let web1 = plan.replica_sets.iter().find(|r| r.hash == hash("web:1"));
        if limit == Some(0) {
            assert_eq!(
                web1.map(|r| r.replicas),
                Some(0),
                "limit 0: no delay at all"
            );
        } else {
            assert_eq!(
                web1.map(|r| (r.replicas, r.scale_down_at)),
                Some((4, Some(at(30))))
            );
        }
    }
}
