//! Fixtures shared by the pure core's table tests.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::decide::{Plan, decide};
use super::hash::pod_template_hash;
use super::observe::{Observed, ObservedRs};
use crate::api::rollout::{
    CanaryStatus, Rollout, RolloutSpec, RolloutStatus, TrafficWeights, WeightDestination,
};

/// A fixed instant plus `s` seconds.
pub fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
}

/// The pod template of app `web` running `image`.
pub fn template(image: &str) -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    }))
    .expect("template")
}

/// The revision hash of `template(image)`.
pub fn hash(image: &str) -> String {
    pod_template_hash(&template(image))
}

/// An observed ReplicaSet of `template(image)` with `available` of its `replicas` ready.
pub fn rs(image: &str, replicas: i32, available: i32) -> ObservedRs {
    ObservedRs {
        name: format!("web-{}", hash(image)),
        hash: hash(image),
        replicas,
        ready: available,
        available,
        created: Some(at(0)),
        ..Default::default()
    }
}

/// Runs decide, then feeds its status back as the Rollout's, as the controller would.
pub fn step(ro: &mut Rollout, obs: &Observed, now: Timestamp) -> Plan {
    let plan = decide(ro, obs, now);
    ro.status = Some(plan.status.clone());
    plan
}

/// The replicas the plan wants for the revision of `image`.
pub fn replicas_of(plan: &Plan, image: &str) -> Option<i32> {
    plan.replica_sets
        .iter()
        .find(|r| r.hash == hash(image))
        .map(|r| r.replicas)
}

/// The reasons of the plan's Events, in order.
pub fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

/// The hash the plan puts in the selector of Service `name`.
pub fn service(plan: &Plan, name: &str) -> Option<String> {
    plan.services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.hash.clone())
}

/// Rollout `web` (generation 1) with `spec`, a JSON `RolloutSpec`, and `status`.
pub fn rollout_of(spec: serde_json::Value, status: RolloutStatus) -> Rollout {
    let spec: RolloutSpec = serde_json::from_value(spec).expect("spec");
    let mut ro = Rollout::new("web", spec);
    ro.metadata.generation = Some(1);
    ro.status = Some(status);
    ro
}

/// A Rollout of `replicas` pods of `template("web:2")` with `strategy`, releasing `web:2`
/// over stable `web:1` (`status` fills the rest).
pub fn releasing_web2(
    replicas: i32,
    strategy: serde_json::Value,
    status: RolloutStatus,
) -> Rollout {
    rollout_of(
        json!({
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web:2"),
            "strategy": strategy
        }),
        RolloutStatus {
            stable_rs: Some(hash("web:1")),
            current_pod_hash: Some(hash("web:2")),
            ..status
        },
    )
}

/// A canary release of `web:2` at step 0, in the Rollout's second release.
pub fn at_first_step() -> RolloutStatus {
    RolloutStatus {
        current_step_index: Some(0),
        release_count: Some(2),
        ..Default::default()
    }
}

/// A blue-green Rollout of `web:2` over stable `web:1` (3 replicas), with `extra` merged into
/// its strategy.
pub fn blue_green(extra: serde_json::Value) -> Rollout {
    let mut strategy = json!({"activeService": "web-active", "previewService": "web-preview", "scaleDownDelaySeconds": 10, "abortScaleDownDelaySeconds": 5});
    if let (Some(s), Some(extra)) = (strategy.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    releasing_web2(3, json!({"blueGreen": strategy}), RolloutStatus::default())
}

/// What a Rollout of `web:2` sees: its template, `sets`, and the Services named, all present.
pub fn world_with(services: &[&str], sets: Vec<ObservedRs>) -> Observed {
    Observed {
        template: Some(template("web:2")),
        replica_sets: sets,
        services: services.iter().map(|k| (k.to_string(), true)).collect(),
        ..Default::default()
    }
}

/// A canary status whose weights say the router last sent `weight`% to the canary.
pub fn last_weight(weight: i32) -> Option<CanaryStatus> {
    Some(CanaryStatus {
        weights: Some(TrafficWeights {
            canary: WeightDestination {
                weight,
                ..Default::default()
            },
            stable: WeightDestination {
                weight: 100 - weight,
                ..Default::default()
            },
        }),
        ..Default::default()
    })
}

/// What a blue-green Rollout sees: its template, `sets`, and both Services.
pub fn blue_green_world(sets: Vec<ObservedRs>) -> Observed {
    world_with(&["web-active", "web-preview"], sets)
}
