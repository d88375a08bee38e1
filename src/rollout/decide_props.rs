//! Property test of `decide`: arbitrary canary specs (extreme numbers included) and arbitrary
//! observed states. It never panics, and the invariants of a release hold whatever it sees.

use super::*;
use crate::api::rollout::{RolloutSpec, RolloutStatus};
use crate::rollout::replicas::{Limits, stable_replicas};
use crate::rollout::test_support::{at, hash, last_weight, template};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use serde_json::json;

/// Small numbers, and numbers at the edge of `i32`.
fn num() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => 0..6i32,
        1 => (i32::MAX - 3)..=i32::MAX,
        1 => Just(i32::MAX / 2),
    ]
}

fn count_or_percent() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        num().prop_map(IntOrString::Int),
        prop_oneof![0..=100i32, Just(1_000), Just(i32::MAX)]
            .prop_map(|p| IntOrString::String(format!("{p}%"))),
    ]
}

fn weight() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0..=100i32, 1 => Just(i32::MAX), 1 => Just(-1), 1 => Just(i32::MIN)]
}

fn a_step() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        weight().prop_map(|w| json!({"setWeight": w})),
        Just(json!({"pause": {}})),
        prop_oneof![
            Just(json!("5s")),
            Just(json!(i32::MAX)),
            Just(json!("2562047788015215h")),
            Just(json!(0)),
        ]
        .prop_map(|d| json!({"pause": {"duration": d}})),
        num().prop_map(|r| json!({"setCanaryScale": {"replicas": r}})),
        weight().prop_map(|w| json!({"setCanaryScale": {"weight": w}})),
        Just(json!({"setCanaryScale": {"matchTrafficWeight": true}})),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    routed: bool,
    dynamic: bool,
    spec: RolloutSpec,
    status: Option<RolloutStatus>,
    image: &'static str,
    sets: Vec<ObservedRs>,
}

fn observed_rs(image: &'static str) -> impl Strategy<Value = ObservedRs> {
    (num(), num(), num(), any::<bool>()).prop_map(move |(replicas, ready, available, failing)| {
        ObservedRs {
            name: format!("web-{}", hash(image)),
            hash: hash(image),
            replicas,
            ready,
            available,
            created: Some(at(0)),
            failure: failing.then(|| crate::rollout::observe::PodFailure {
                pod: "p".into(),
                container: "web".into(),
                reason: "CrashLoopBackOff".into(),
                exit_code: Some(1),
                restarts: 3,
                message: String::new(),
            }),
            ..Default::default()
        }
    })
}

fn status() -> impl Strategy<Value = Option<RolloutStatus>> {
    let step_index = prop_oneof![0..6i32, Just(i32::MAX), Just(-1)];
    let current = prop_oneof![Just("web:1"), Just("web:2")];
    let prev_weight = 0..=100i32;
    proptest::option::of(
        (
            step_index,
            current,
            any::<bool>(),
            any::<bool>(),
            prop_oneof![0..3i32, Just(i32::MAX)],
            prev_weight,
            any::<bool>(),
        )
            .prop_map(
                |(idx, current, abort, paused, releases, prev_weight, promote_full)| {
                    RolloutStatus {
                        stable_rs: Some(hash("web:1")),
                        current_pod_hash: Some(hash(current)),
                        current_step_index: Some(idx),
                        abort: abort.then_some(true),
                        aborted_at: abort.then(|| Time(at(0))),
                        controller_pause: paused.then_some(true),
                        release_count: Some(releases),
                        promote_full: promote_full.then_some(true),
                        canary: last_weight(prev_weight),
                        ..Default::default()
                    }
                },
            ),
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        num(),
        count_or_percent(),
        count_or_percent(),
        proptest::collection::vec(a_step(), 0..6),
        prop_oneof![num(), Just(-1)],
        status(),
        prop_oneof![Just("web:1"), Just("web:2")],
        proptest::collection::vec(
            prop_oneof![observed_rs("web:1"), observed_rs("web:2"), observed_rs("web:0")],
            0..4,
        ),
    )
        .prop_map(
            |(routed, dynamic, replicas, surge, unavailable, steps, deadline, status, image, sets)| {
                let mut canary = json!({
                    "stableService": "web-stable", "canaryService": "web-canary",
                    "maxSurge": surge, "maxUnavailable": unavailable, "steps": steps,
                    "abortScaleDownDelaySeconds": 30,
                });
                if routed {
                    canary["trafficRouting"] =
                        json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
                    canary["dynamicStableScale"] = json!(dynamic);
                }
                let spec: RolloutSpec = serde_json::from_value(json!({
                    "replicas": replicas,
                    "progressDeadlineSeconds": deadline,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": template(image),
                    "strategy": {"canary": canary}
                }))
                .expect("spec");
                // One ReplicaSet per revision, as the API server would hold them.
                let mut seen = std::collections::BTreeSet::new();
                let sets = sets.into_iter().filter(|r| seen.insert(r.hash.clone())).collect();
                Case {
                    routed,
                    dynamic: routed && dynamic,
                    spec,
                    status,
                    image,
                    sets,
                }
            },
        )
}

fn planned(plan: &Plan, obs: &Observed, hash: &str) -> i64 {
    let now = plan.replica_sets.iter().find(|r| r.hash == hash);
    let before = obs.replica_sets.iter().find(|r| r.hash == hash);
    i64::from(
        now.map(|r| r.replicas)
            .or(before.map(|r| r.replicas))
            .unwrap_or(0),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn decide_never_panics_and_keeps_the_invariants(c in case()) {
        let mut ro = Rollout::new("web", c.spec.clone());
        ro.metadata.generation = Some(1);
        ro.status = c.status.clone();
        let obs = Observed {
            template: Some(template(c.image)),
            replica_sets: c.sets.clone(),
            services: [("web-stable", true), ("web-canary", true)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        };
        let plan = decide(&ro, &obs, at(100));
        // Deciding again on its own status neither panics nor changes a transition time
        // whose condition kept its status.
        let mut again = ro.clone();
        again.status = Some(plan.status.clone());
        let second = decide(&again, &obs, at(200));
        for cond in &second.status.conditions {
            if let Some(first) = conditions::get(&plan.status.conditions, &cond.type_)
                && first.status == cond.status
            {
                prop_assert_eq!(&first.last_transition_time, &cond.last_transition_time);
            }
        }

        for p in [&plan, &second] {
            if let Some(w) = p.status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
                prop_assert!((0..=100).contains(&w.canary.weight), "{w:?}");
                prop_assert!((0..=100).contains(&w.stable.weight), "{w:?}");
                prop_assert_eq!(w.canary.weight + w.stable.weight, 100);
            }
            if let Some(t) = &p.traffic {
                prop_assert!((0..=100).contains(&t.weights.canary));
                prop_assert_eq!(t.weights.canary + t.weights.stable, 100);
            }
            prop_assert!(p.replica_sets.iter().all(|r| r.replicas >= 0), "{:?}", p.replica_sets);
        }
        let invalid = conditions::get(&plan.status.conditions, condition::INVALID_SPEC).is_some();
        let canary = c.spec.strategy.canary.as_ref().expect("canary");
        let desired = hash(c.image);
        let aborted = plan.status.abort == Some(true);
        if !invalid && !c.routed {
            // Without a router the pods are the traffic: at most `replicas + maxSurge` (plus the
            // one pod both round-ups may need), or fewer than now when above it.
            let replicas = c.spec.replicas();
            let limits = Limits::resolve(replicas, &canary.max_surge(), &canary.max_unavailable())
                .expect("valid limits");
            let ceiling = i64::from(replicas) + i64::from(limits.max_surge) + 1;
            let hashes: std::collections::BTreeSet<&str> = obs
                .replica_sets
                .iter()
                .map(|r| r.hash.as_str())
                .chain(plan.replica_sets.iter().map(|r| r.hash.as_str()))
                .collect();
            let after: i64 = hashes.iter().map(|h| planned(&plan, &obs, h)).sum();
            let before: i64 = obs.replica_sets.iter().map(|r| i64::from(r.replicas.max(0))).sum();
            prop_assert!(after <= ceiling.max(before), "{after} pods planned, ceiling {ceiling}, {before} now");
            if before <= ceiling {
                prop_assert!(after <= ceiling, "{after} pods planned, ceiling {ceiling}");
            }
            if aborted && plan.status.stable_rs.as_deref() != Some(desired.as_str()) {
                let now = obs.replica_sets.iter().find(|r| r.hash == desired).map_or(0, |r| i64::from(r.replicas.max(0)));
                prop_assert!(planned(&plan, &obs, &desired) <= now, "an abort never adds canary pods");
            }
        }
        if !invalid && c.routed && !c.dynamic && aborted {
            let w = plan.traffic.as_ref().map_or(0, |t| t.weights.canary);
            prop_assert_eq!(w, 0, "an aborted release sends nothing to the canary");
        }
        let stable = ro.status.as_ref().and_then(|s| s.stable_rs.clone());
        if !invalid && c.dynamic && stable.is_some() && plan.status.stable_rs == stable && stable.as_deref() != Some(desired.as_str()) {
            // dynamicStableScale: the stable has the pods for its share of the traffic, both
            // the share it had and the share this plan gives it.
            let stable = stable.unwrap_or_default();
            let before = ro.status.as_ref().and_then(|s| s.canary.as_ref()).and_then(|c| c.weights.as_ref()).map_or(0, |w| w.canary.weight.clamp(0, 100));
            let after = plan.traffic.as_ref().map_or(0, |t| t.weights.canary);
            let needed = stable_replicas(c.spec.replicas(), before.min(after));
            prop_assert!(planned(&plan, &obs, &stable) >= i64::from(needed), "stable planned {} for weights {before} -> {after}, needs {needed}", planned(&plan, &obs, &stable));
        }
        if aborted {
            let before = ro.status.as_ref().and_then(|s| s.canary.as_ref()).and_then(|c| c.weights.as_ref()).map_or(0, |w| w.canary.weight.clamp(0, 100));
            let after = plan.status.canary.as_ref().and_then(|c| c.weights.as_ref()).map_or(0, |w| w.canary.weight);
            if c.routed {
                prop_assert!(after <= before || after == 0, "aborted: weight {before} -> {after}");
            }
        }
    }
}

proptest! {
    /// `spec.paused` (Argo Rollouts' haltProgress): no step advances, and the canary never
    /// gains pods beyond what it has or what the steps already done ask for.
    #[test]
    fn a_paused_release_never_advances_nor_grows_the_canary(
        replicas in 1i32..10,
        weights in proptest::collection::vec(0i32..=100, 1..4),
        idx in 0usize..6,
        canary_now in 0i32..10,
        stable_now in 0i32..10,
        routed in any::<bool>(),
    ) {
        let steps: Vec<serde_json::Value> = weights
            .iter()
            .flat_map(|w| [json!({"setWeight": w}), json!({"pause": {}})])
            .collect();
        let mut canary = json!({"stableService": "web-stable", "canaryService": "web-canary",
            "maxSurge": 1, "maxUnavailable": 0, "steps": steps});
        if routed {
            canary["trafficRouting"] =
                json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
        }
        let spec: RolloutSpec = serde_json::from_value(json!({
            "replicas": replicas, "paused": true,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web:2"),
            "strategy": {"canary": canary}
        }))
        .expect("spec");
        let idx = idx.min(steps.len() - 1);
        let mut ro = Rollout::new("web", spec);
        ro.status = Some(RolloutStatus {
            stable_rs: Some(hash("web:1")),
            current_pod_hash: Some(hash("web:2")),
            current_step_index: Some(idx as i32),
            ..Default::default()
        });
        let rs = |image: &str, n: i32| ObservedRs {
            name: format!("web-{}", hash(image)),
            hash: hash(image),
            replicas: n,
            ready: n,
            available: n,
            created: Some(at(0)),
            ..Default::default()
        };
        let obs = Observed {
            template: Some(template("web:2")),
            replica_sets: vec![rs("web:1", stable_now), rs("web:2", canary_now)],
            services: [("web-stable".to_string(), true), ("web-canary".to_string(), true)].into(),
            ..Default::default()
        };
        let plan = decide(&ro, &obs, at(100));
        prop_assert_eq!(plan.status.current_step_index, Some(idx as i32));
        let done = steps[..idx].iter().filter_map(|s| s["setWeight"].as_i64()).next_back().unwrap_or(0);
        let allowed = canary_now.max(crate::rollout::replicas::canary_replicas(replicas, done as i32));
        let planned = plan.replica_sets.iter().find(|r| r.hash == hash("web:2")).map_or(canary_now, |r| r.replicas);
        prop_assert!(planned <= allowed, "canary {canary_now} -> {planned}, steps done ask {allowed}");
    }
}
