//! Table tests of blue-green decisions.

use super::*;
use crate::api::constants::condition;
use crate::api::rollout::{PauseCondition, Rollout};
use crate::rollout::conditions;
use crate::rollout::decide::{PromotionCause, decide as decide_all};
use crate::rollout::observe::ObservedRun;
use crate::rollout::test_support::{
    at, blue_green as rollout, blue_green_world as observed, hash, reasons, replicas_of, rs,
    service, step,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

#[test]
fn preview_runs_beside_the_active_until_available() {
    let mut ro = rollout(json!({"previewReplicaCount": 1}));
    let plan = step(&mut ro, &observed(vec![rs("web:1", 3, 3)]), at(0));
    assert_eq!(replicas_of(&plan, "web:2"), Some(1));
    assert_eq!(replicas_of(&plan, "web:1"), Some(3));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:1")));
    assert_eq!(service(&plan, "web-preview"), Some(hash("web:2")));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
}

#[test]
fn auto_promotion_scales_up_then_switches_the_active_service_at_once() {
    let mut ro = rollout(json!({"previewReplicaCount": 1}));
    step(&mut ro, &observed(vec![rs("web:1", 3, 3)]), at(0));
    let promoting = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 3), rs("web:2", 1, 1)]),
        at(1),
    );
    assert!(reasons(&promoting).contains(&"Promoted"));
    assert_eq!(promoting.promotions, vec![PromotionCause::Automatic]);
    assert_eq!(
        replicas_of(&promoting, "web:2"),
        Some(3),
        "scaled to full size before the switch"
    );
    assert_eq!(
        service(&promoting, "web-active"),
        Some(hash("web:1")),
        "no switch before every pod is available"
    );
    let partial = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 2)]),
        at(2),
    );
    assert_eq!(service(&partial, "web-active"), Some(hash("web:1")));
    let switched = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]),
        at(3),
    );
    assert_eq!(service(&switched, "web-active"), Some(hash("web:2")));
    assert_eq!(switched.status.stable_rs, Some(hash("web:2")));
    assert!(reasons(&switched).contains(&"RolloutCompleted"));
    assert_eq!(switched.status.phase, Some(RolloutPhase::Healthy));
    // The old revision keeps its pods for scaleDownDelaySeconds.
    let old = switched
        .replica_sets
        .iter()
        .find(|r| r.hash == hash("web:1"))
        .expect("old plan");
    assert_eq!((old.replicas, old.scale_down_at), (3, Some(at(13))));
    let mut later = rs("web:1", 3, 3);
    later.scale_down_at = Some(at(13));
    let waiting = step(
        &mut ro,
        &observed(vec![later.clone(), rs("web:2", 3, 3)]),
        at(5),
    );
    assert_eq!(
        replicas_of(&waiting, "web:1"),
        None,
        "no write while waiting"
    );
    let gone = step(&mut ro, &observed(vec![later, rs("web:2", 3, 3)]), at(14));
    assert_eq!(replicas_of(&gone, "web:1"), Some(0));
}

#[test]
fn manual_promotion_waits_for_the_pause_to_be_cleared() {
    let mut ro = rollout(json!({"autoPromotionEnabled": false}));
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let paused = step(&mut ro, &obs, at(0));
    assert_eq!(paused.status.phase, Some(RolloutPhase::Paused));
    assert_eq!(service(&paused, "web-active"), Some(hash("web:1")));
    assert_eq!(
        step(&mut ro, &obs, at(1000)).status.stable_rs,
        Some(hash("web:1"))
    );
    if let Some(s) = ro.status.as_mut() {
        s.pause_conditions.clear();
    }
    let promoted = step(&mut ro, &obs, at(1001));
    assert_eq!(service(&promoted, "web-active"), Some(hash("web:2")));
    assert_eq!(promoted.promotions, vec![PromotionCause::Manual]);
}

#[test]
fn spec_paused_and_a_user_pause_hold_the_promotion() {
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let mut ro = rollout(json!({}));
    ro.spec.paused = Some(true);
    assert_eq!(
        service(&step(&mut ro, &obs, at(0)), "web-active"),
        Some(hash("web:1"))
    );
    ro.spec.paused = None;
    if let Some(s) = ro.status.as_mut() {
        s.pause_conditions = vec![PauseCondition {
            reason: PauseReason::UserPause,
            start_time: Time(at(0)),
        }];
    }
    assert_eq!(
        service(&step(&mut ro, &obs, at(1)), "web-active"),
        Some(hash("web:1"))
    );
    if let Some(s) = ro.status.as_mut() {
        s.pause_conditions.clear();
    }
    assert_eq!(
        service(&step(&mut ro, &obs, at(2)), "web-active"),
        Some(hash("web:2"))
    );
}

#[test]
fn auto_promotion_seconds_delays_the_switch() {
    let mut ro = rollout(json!({"autoPromotionSeconds": 20}));
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let first = step(&mut ro, &obs, at(0));
    assert_eq!(
        first.requeue_after,
        Some(std::time::Duration::from_secs(20))
    );
    assert_eq!(
        service(&step(&mut ro, &obs, at(10)), "web-active"),
        Some(hash("web:1"))
    );
    assert_eq!(
        service(&step(&mut ro, &obs, at(21)), "web-active"),
        Some(hash("web:2"))
    );
}

#[test]
fn abort_leaves_the_preview_on_the_aborted_revision_and_scales_it_down_later() {
    // Argo Rollouts: the preview Service keeps the aborted revision (TestBlueGreenPostPromotionFail:
    // active 1, preview 2); the delay (5 s here) counts from a fully available stable.
    let mut ro = rollout(json!({"autoPromotionEnabled": false}));
    if let Some(s) = ro.status.as_mut() {
        s.abort = Some(true);
    }
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let plan = step(&mut ro, &obs, at(0));
    assert_eq!(service(&plan, "web-preview"), Some(hash("web:2")));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:1")));
    assert_eq!(
        plan.status
            .blue_green
            .as_ref()
            .and_then(|b| b.preview_selector.clone()),
        Some(hash("web:2"))
    );
    assert_eq!(replicas_of(&plan, "web:2"), Some(3));
    let deadline = plan
        .replica_sets
        .iter()
        .find(|r| r.hash == hash("web:2"))
        .and_then(|r| r.scale_down_at);
    assert_eq!(deadline, Some(at(5)));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
    // The deadline is read back from the ReplicaSet's annotation.
    let mut annotated = rs("web:2", 3, 3);
    annotated.scale_down_at = deadline;
    let obs = observed(vec![rs("web:1", 3, 3), annotated]);
    assert_eq!(replicas_of(&step(&mut ro, &obs, at(4)), "web:2"), Some(3));
    let later = step(&mut ro, &obs, at(6));
    assert_eq!(replicas_of(&later, "web:2"), Some(0));
    assert_eq!(service(&later, "web-preview"), Some(hash("web:2")));
}

#[test]
fn the_abort_delay_starts_once_the_stable_is_fully_available() {
    let mut ro = rollout(json!({"autoPromotionEnabled": false}));
    if let Some(s) = ro.status.as_mut() {
        s.abort = Some(true);
    }
    // The stable is one pod short: no clock yet, however long it takes.
    let short = observed(vec![rs("web:1", 3, 2), rs("web:2", 3, 3)]);
    let plan = step(&mut ro, &short, at(100));
    assert_eq!(replicas_of(&plan, "web:2"), Some(3));
    assert!(plan.replica_sets.iter().all(|r| r.scale_down_at.is_none()));
    // Full: the clock starts now.
    let full = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let plan = step(&mut ro, &full, at(200));
    let deadline = plan
        .replica_sets
        .iter()
        .find(|r| r.hash == hash("web:2"))
        .and_then(|r| r.scale_down_at);
    assert_eq!(deadline, Some(at(205)));
}

#[test]
fn abort_scale_down_delay_zero_keeps_the_preview_and_unset_is_thirty_seconds() {
    let aborted = |strategy, delay: Option<i32>| {
        let mut ro = rollout(strategy);
        if let Some(b) = ro.spec.strategy.blue_green.as_mut() {
            b.abort_scale_down_delay_seconds = delay;
        }
        if let Some(s) = ro.status.as_mut() {
            s.abort = Some(true);
        }
        ro
    };
    // Explicit 0 (Argo's TestBlueGreenPrePromotionFail): the preview keeps its
    // previewReplicaCount pods, with no deadline, long after the abort.
    let mut ro = aborted(json!({"previewReplicaCount": 1}), Some(0));
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 1, 1)]);
    for t in [0, 3600, 86_400] {
        let plan = step(&mut ro, &obs, at(t));
        assert_eq!(replicas_of(&plan, "web:2"), Some(1), "at {t}s");
        assert!(plan.replica_sets.iter().all(|r| r.scale_down_at.is_none()));
    }
    // Unset: Argo's default of 30 s.
    let mut ro = aborted(json!({}), None);
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    let deadline = step(&mut ro, &obs, at(0))
        .replica_sets
        .iter()
        .find(|r| r.hash == hash("web:2"))
        .and_then(|r| r.scale_down_at);
    assert_eq!(deadline, Some(at(30)));
}

#[test]
fn a_retry_after_the_abort_takes_the_deadline_off_the_preview() {
    let mut ro = rollout(json!({"autoPromotionEnabled": false}));
    if let Some(s) = ro.status.as_mut() {
        s.abort = Some(true);
    }
    let obs = observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]);
    step(&mut ro, &obs, at(0));
    if let Some(s) = ro.status.as_mut() {
        s.abort = Some(false);
    }
    let mut annotated = rs("web:2", 3, 3);
    annotated.scale_down_at = Some(at(5));
    let plan = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 3), annotated]),
        at(1),
    );
    let new = plan.replica_sets.iter().find(|r| r.hash == hash("web:2"));
    assert_eq!(new.map(|r| (r.replicas, r.scale_down_at)), Some((3, None)));
    assert_eq!(service(&plan, "web-preview"), Some(hash("web:2")));
}

/// A Healthy blue-green Rollout of `web:2` keeping `limit` old revisions.
fn settled(limit: i32) -> Rollout {
    let mut ro = rollout(json!({}));
    ro.spec.revision_history_limit = Some(limit);
    if let Some(s) = ro.status.as_mut() {
        s.stable_rs = Some(hash("web:2"));
        s.blue_green = Some(BlueGreenStatus {
            active_selector: Some(hash("web:2")),
            ..Default::default()
        });
    }
    ro
}

/// An old revision created `age` seconds ago with `replicas` pods.
fn old(image: &str, replicas: i32, age: i64) -> crate::rollout::observe::ObservedRs {
    let mut r = rs(image, replicas, replicas);
    r.created = Some(at(-age));
    r
}

/// A finished run of kind `kind` that judged the revision of `image`.
fn finished_run(image: &str, kind: &str) -> ObservedRun {
    ObservedRun {
        name: format!("web-{}-1-{kind}", hash(image)),
        hash: hash(image),
        phase: Some(crate::api::analysis::AnalysisPhase::Successful),
        message: None,
        terminated: false,
        measuring: false,
        decided_by: None,
    }
}

#[test]
fn old_revisions_scaled_to_zero_beyond_the_history_limit_are_deleted_oldest_first() {
    let ro = settled(1);
    let sets = vec![
        rs("web:2", 3, 3),
        old("web:a", 0, 300),
        old("web:b", 0, 200),
        old("web:c", 0, 100),
    ];
    let plan = decide_all(&ro, &observed(sets), at(0));
    assert_eq!(
        plan.delete_replica_sets,
        vec![
            format!("web-{}", hash("web:a")),
            format!("web-{}", hash("web:b"))
        ]
    );
}

#[test]
fn an_old_revision_still_holding_pods_is_not_pruned_nor_counted() {
    // web:a is the oldest but still serves out its scale-down delay: it stays, and web:b, the
    // one scaled-down revision, fits the limit.
    let ro = settled(1);
    let mut serving = old("web:a", 3, 300);
    serving.scale_down_at = Some(at(5));
    let sets = vec![rs("web:2", 3, 3), serving, old("web:b", 0, 200)];
    let plan = decide_all(&ro, &observed(sets), at(0));
    assert!(
        plan.delete_replica_sets.is_empty(),
        "{:?}",
        plan.delete_replica_sets
    );
}

#[test]
fn the_new_and_the_active_revision_are_never_pruned() {
    // A release whose new ReplicaSet has no pods yet, with a history limit of zero: only the
    // old revision goes.
    let mut ro = rollout(json!({}));
    ro.spec.revision_history_limit = Some(0);
    let sets = vec![
        old("web:1", 3, 100),
        old("web:2", 0, 0),
        old("web:0", 0, 200),
    ];
    let plan = decide_all(&ro, &observed(sets), at(0));
    assert_eq!(
        plan.delete_replica_sets,
        vec![format!("web-{}", hash("web:0"))]
    );
}

#[test]
fn the_analysis_runs_of_a_pruned_revision_go_with_it() {
    let ro = settled(1);
    let mut world = observed(vec![
        rs("web:2", 3, 3),
        old("web:a", 0, 300),
        old("web:b", 0, 200),
    ]);
    let mut still_measuring = finished_run("web:a", "post");
    still_measuring.measuring = true;
    still_measuring.phase = Some(crate::api::analysis::AnalysisPhase::Running);
    world.runs = vec![
        finished_run("web:a", "pre"),
        still_measuring.clone(),
        finished_run("web:b", "pre"),
        finished_run("web:2", "pre"),
    ];
    let plan = decide_all(&ro, &world, at(0));
    assert_eq!(
        plan.delete_replica_sets,
        vec![format!("web-{}", hash("web:a"))]
    );
    assert_eq!(plan.delete_runs, vec![finished_run("web:a", "pre").name]);
    // A run still measuring is stopped first and deleted once it has finished.
    assert_eq!(plan.terminate_runs, vec![still_measuring.name]);
}

proptest! {
    #[test]
    fn the_active_service_never_points_at_a_revision_not_fully_available(new in 0i32..4, avail in 0i32..4, promoting in any::<bool>(), secs in 0i64..50) {
        let mut ro = rollout(json!({"previewReplicaCount": 1}));
        if let Some(s) = ro.status.as_mut() {
            s.blue_green = Some(BlueGreenStatus { scale_up_preview_check_point: promoting.then_some(true), ..Default::default() });
        }
        let plan = decide_all(&ro, &observed(vec![rs("web:1", 3, 3), rs("web:2", new, avail.min(new))]), at(secs));
        if service(&plan, "web-active") == Some(hash("web:2")) {
            prop_assert!(new == 3 && avail >= 3);
        }
    }
}

#[test]
fn available_follows_the_active_revision_not_the_preview() {
    let mut ro = rollout(json!({"autoPromotionEnabled": false}));
    let available = |plan: &Plan| {
        conditions::get(&plan.status.conditions, condition::AVAILABLE).map(|c| c.status.clone())
    };
    // The preview is ready, the active revision is one pod short.
    let short = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 2), rs("web:2", 3, 3)]),
        at(0),
    );
    assert_eq!(available(&short).as_deref(), Some("False"));
    let full = step(
        &mut ro,
        &observed(vec![rs("web:1", 3, 3), rs("web:2", 3, 3)]),
        at(1),
    );
    assert_eq!(available(&full).as_deref(), Some("True"));
}

#[test]
fn created_paused_the_first_revision_scales_up_but_no_service_is_switched() {
    // Argo Rollouts (v1.10.2, run side by side on the local control plane): a blue-green
    // Rollout created with `spec.paused: true` scales its ReplicaSet to `replicas`, leaves
    // the active and preview Services alone and is Paused; resumed, it switches them.
    let mut ro = rollout(json!({}));
    ro.spec.template = Some(crate::rollout::test_support::template("web:1"));
    ro.spec.paused = Some(true);
    ro.status = None;
    let world = |sets| {
        let mut w = observed(sets);
        w.template = Some(crate::rollout::test_support::template("web:1"));
        w
    };
    let plan = step(&mut ro, &world(vec![]), at(0));
    assert_eq!(plan.status.stable_rs, Some(hash("web:1")));
    assert_eq!(replicas_of(&plan, "web:1"), Some(3));
    assert_eq!(
        service(&plan, "web-active"),
        None,
        "active Service untouched"
    );
    assert_eq!(
        service(&plan, "web-preview"),
        None,
        "preview Service untouched"
    );
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    let bg = plan.status.blue_green.clone().unwrap_or_default();
    assert_eq!(bg.active_selector, None);

    // Its pods available, still paused: still no switch.
    let obs = world(vec![rs("web:1", 3, 3)]);
    let plan = step(&mut ro, &obs, at(10));
    assert_eq!(service(&plan, "web-active"), None);
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    let again = decide_all(&ro, &obs, at(20));
    assert_eq!(
        again.status, plan.status,
        "a held Rollout writes nothing new"
    );

    // Resumed: both Services switch to it and it is Healthy.
    ro.spec.paused = None;
    let plan = step(&mut ro, &obs, at(30));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:1")));
    assert_eq!(service(&plan, "web-preview"), Some(hash("web:1")));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));

    // Paused again later: the Services stay where they are (no longer created paused).
    ro.spec.paused = Some(true);
    let plan = step(&mut ro, &obs, at(40));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:1")));
}
