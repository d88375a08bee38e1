//! Table tests of the pods' part of a reconcile: role metadata and restarts.

use super::*;
use crate::api::rollout::RolloutStatus;
use crate::rollout::test_support::{at, blue_green, hash, releasing_web2, rs, world_with};

fn md(labels: &[(&str, &str)]) -> PodTemplateMetadata {
    PodTemplateMetadata {
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        annotations: None,
    }
}

fn plan_of(ro: &Rollout) -> Plan {
    Plan {
        status: ro.status.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn canary(extra: serde_json::Value, status: RolloutStatus) -> Rollout {
    let mut strategy = serde_json::json!({"stableService": "web-stable", "canaryService": "web-canary",
        "canaryMetadata": {"labels": {"role": "canary"}}, "stableMetadata": {"labels": {"role": "stable"}}});
    if let (Some(s), Some(e)) = (strategy.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    releasing_web2(4, serde_json::json!({ "canary": strategy }), status)
}

#[test]
fn each_role_has_its_metadata_and_the_new_revision_takes_the_stables_once_stable() {
    // Argo Rollouts' TestEphemeralMetadata: during the release canary pods `role=canary`,
    // stable pods `role=stable`; after promotion the new revision's pods `role=stable`.
    let ro = canary(serde_json::json!({}), RolloutStatus::default());
    let roles = role_metadata(&ro, &plan_of(&ro));
    assert_eq!(roles.get(&hash("web:2")), Some(&md(&[("role", "canary")])));
    assert_eq!(roles.get(&hash("web:1")), Some(&md(&[("role", "stable")])));
    let mut done = plan_of(&ro);
    done.status.stable_rs = Some(hash("web:2"));
    let roles = role_metadata(&ro, &done);
    assert_eq!(roles.get(&hash("web:2")), Some(&md(&[("role", "stable")])));
    assert_eq!(roles.get(&hash("web:1")), None, "an old revision has none");
}

#[test]
fn blue_green_preview_metadata_stays_until_the_new_revision_is_stable() {
    let mut ro = blue_green(serde_json::json!({
        "previewMetadata": {"labels": {"role": "preview"}},
        "activeMetadata": {"labels": {"role": "active"}}
    }));
    let roles = role_metadata(&ro, &plan_of(&ro));
    assert_eq!(roles.get(&hash("web:2")), Some(&md(&[("role", "preview")])));
    assert_eq!(roles.get(&hash("web:1")), Some(&md(&[("role", "active")])));
    if let Some(s) = ro.status.as_mut() {
        s.stable_rs = Some(hash("web:2"));
    }
    let roles = role_metadata(&ro, &plan_of(&ro));
    assert_eq!(roles.get(&hash("web:2")), Some(&md(&[("role", "active")])));
    assert_eq!(roles.len(), 1);
}

#[test]
fn a_role_change_swaps_only_the_keys_sluice_put_on() {
    let meta = ObjectMeta {
        labels: Some(BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("role".to_string(), "canary".to_string()),
        ])),
        ..Default::default()
    };
    let old = md(&[("role", "canary")]);
    let want = md(&[("role2", "canary2")]);
    let next = with_role(&meta, &old, &want);
    let labels = next.labels.unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(labels.get("role"), None);
    assert_eq!(labels.get("role2").map(String::as_str), Some("canary2"));
    assert_eq!(
        pod_patch(&meta, &old, &want),
        Some(serde_json::json!({"metadata": {
            "labels": {"role": null, "role2": "canary2"}, "annotations": {}
        }}))
    );
    // Nothing to change: no patch, no write.
    let done = with_role(&meta, &old, &want);
    assert_eq!(pod_patch(&done, &want, &want), None);
    // A label the user put on a pod is never taken off.
    assert_eq!(pod_patch(&meta, &md(&[]), &md(&[])), None);
}

#[test]
fn the_record_round_trips_and_an_empty_role_has_none() {
    let m = md(&[("role", "stable")]);
    let r = record(&m);
    assert_eq!(parse_record(r.as_ref()), m);
    assert_eq!(record(&md(&[])), None);
    assert_eq!(
        parse_record(Some(&"not json".to_string())),
        PodTemplateMetadata::default()
    );
}

fn pod(image: &str, name: &str, created: i64, ready: bool) -> ObservedPod {
    ObservedPod {
        name: name.into(),
        hash: hash(image),
        created: Some(at(created)),
        ready_since: ready.then(|| at(created + 1)),
        deleting: false,
    }
}

fn settled_with_restart(strategy: serde_json::Value, restart_at: i64) -> Rollout {
    let mut ro = releasing_web2(
        4,
        strategy,
        RolloutStatus {
            stable_rs: Some(hash("web:2")),
            ..Default::default()
        },
    );
    ro.spec.restart_at = Some(Time(at(restart_at)));
    ro
}

fn four_pods(created: i64) -> Observed {
    let mut obs = world_with(&[], vec![rs("web:2", 4, 4)]);
    obs.pods = (0..4)
        .map(|i| pod("web:2", &format!("p{i}"), created + i, true))
        .collect();
    obs
}

#[test]
fn restart_evicts_old_pods_within_max_unavailable() {
    // Argo Rollouts' TestRolloutRestart: maxUnavailable 75% of 4 → three at a time.
    let ro = settled_with_restart(
        serde_json::json!({"canary": {"maxUnavailable": "75%"}}),
        100,
    );
    let obs = four_pods(0);
    let mut plan = plan_of(&ro);
    let evict = restart(&ro, &obs, &mut plan, at(101));
    assert_eq!(evict, vec!["p0", "p1", "p2"]);
    assert_eq!(plan.status.restarted_at, None);
    // Default 25% of 4 is one; blue-green has no maxUnavailable: one at a time.
    let ro = settled_with_restart(serde_json::json!({"canary": {}}), 100);
    assert_eq!(restart(&ro, &obs, &mut plan_of(&ro), at(101)), vec!["p0"]);
    let mut ro = settled_with_restart(
        serde_json::json!({"blueGreen": {"activeService": "a"}}),
        100,
    );
    if let Some(s) = ro.status.as_mut() {
        s.current_pod_hash = Some(hash("web:2"));
    }
    assert_eq!(restart(&ro, &obs, &mut plan_of(&ro), at(101)), vec!["p0"]);
}

#[test]
fn restart_waits_while_a_pod_is_unavailable_and_for_its_time() {
    let ro = settled_with_restart(serde_json::json!({"canary": {}}), 100);
    let mut obs = four_pods(0);
    obs.pods[3].ready_since = None;
    // One pod short already: nothing more may go.
    let mut plan = plan_of(&ro);
    assert!(restart(&ro, &obs, &mut plan, at(101)).is_empty());
    assert!(plan.requeue_after.is_some(), "looks again later");
    // Not yet its time: nothing, and a requeue for then.
    let mut plan = plan_of(&ro);
    assert!(restart(&ro, &four_pods(0), &mut plan, at(90)).is_empty());
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(10)));
}

#[test]
fn restart_is_done_when_every_pod_is_newer_and_then_does_nothing() {
    let ro = settled_with_restart(serde_json::json!({"canary": {}}), 100);
    let mut plan = plan_of(&ro);
    assert!(restart(&ro, &four_pods(200), &mut plan, at(300)).is_empty());
    assert_eq!(plan.status.restarted_at, Some(Time(at(100))));
    // Recorded: old pods appearing later (they cannot, but) are left alone.
    let mut ro = ro;
    ro.status = Some(plan.status.clone());
    assert!(restart(&ro, &four_pods(0), &mut plan_of(&ro), at(300)).is_empty());
    // A pod being deleted still counts as not restarted.
    let ro = settled_with_restart(serde_json::json!({"canary": {}}), 100);
    let mut obs = four_pods(200);
    obs.pods.push(ObservedPod {
        deleting: true,
        ..pod("web:2", "old", 0, true)
    });
    let mut plan = plan_of(&ro);
    restart(&ro, &obs, &mut plan, at(300));
    assert_eq!(plan.status.restarted_at, None);
}

#[test]
fn the_stable_revisions_pods_restart_first() {
    let mut ro = canary(
        serde_json::json!({"maxUnavailable": 1}),
        RolloutStatus::default(),
    );
    ro.spec.restart_at = Some(Time(at(100)));
    let mut obs = world_with(&[], vec![rs("web:2", 1, 1), rs("web:1", 4, 4)]);
    obs.pods = vec![pod("web:2", "canary", 0, true)];
    obs.pods
        .extend((0..4).map(|i| pod("web:1", &format!("stable{i}"), 5 + i, true)));
    // 5 available of max(4, 5) with one unavailable allowed: one goes, the stable's first.
    assert_eq!(
        restart(&ro, &obs, &mut plan_of(&ro), at(101)),
        vec!["stable0"]
    );
}

#[test]
fn a_new_release_ends_a_restart_under_way() {
    let mut ro = settled_with_restart(serde_json::json!({"canary": {}}), 100);
    let mut plan = plan_of(&ro);
    plan.status.current_pod_hash = Some(hash("web:2"));
    if let Some(s) = ro.status.as_mut() {
        s.current_pod_hash = Some(hash("web:1"));
    }
    assert!(restart(&ro, &four_pods(0), &mut plan, at(101)).is_empty());
    assert_eq!(plan.status.restarted_at, Some(Time(at(100))));
}
