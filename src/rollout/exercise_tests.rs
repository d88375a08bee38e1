//! A rollback exercise through `decide`: the faulty revision is released through the steps,
//! never promoted, never takes pods from the stable, and its moments are recorded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::api::exercise::{ExerciseInForce, Fault};
use crate::api::rollout::{Rollout, RolloutPhase, RolloutStatus};
use crate::rollout::decide::{AbortCause, Plan};
use crate::rollout::observe::policy;
use crate::rollout::observe::{Observed, ObservedExercise, ObservedRs, PodFailure};
use crate::rollout::test_support::{at, hash, reasons, rollout_of, rs, step, template};

const REPLICAS: i32 = 4;

/// A healthy Rollout of `web:1` (4 pods) with `strategy`, with exercise `drill` in force.
fn exercised(strategy: serde_json::Value) -> Rollout {
    rollout_of(
        json!({
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web:1"),
            "strategy": strategy
        }),
        RolloutStatus {
            stable_rs: Some(hash("web:1")),
            current_pod_hash: Some(hash("web:1")),
            current_step_index: Some(4),
            phase: Some(RolloutPhase::Healthy),
            exercise: Some(in_force()),
            ..Default::default()
        },
    )
}

fn in_force() -> ExerciseInForce {
    ExerciseInForce {
        name: "drill".into(),
        run: 1,
        fault: Fault {
            json_patch: Some(json!([
                {"op": "replace", "path": "/spec/containers/0/image", "value": "web:bad"}
            ])),
            ..Fault::default()
        },
        stable_revision: hash("web:1"),
        started_at: Some(Time(at(0))),
        ..Default::default()
    }
}

/// What observe sees while the exercise is in force: the faulty template, and `sets`.
fn world(ro: &Rollout, sets: Vec<ObservedRs>, services: &[&str]) -> Observed {
    let (template, exercise) = policy::exercise(ro, ro.spec.template.clone());
    Observed {
        template,
        exercise,
        replica_sets: sets,
        services: services.iter().map(|s| (s.to_string(), true)).collect(),
        ..Default::default()
    }
}

/// Plays `rounds` reconciles 10 s apart; each plan is carried out at once and every pod it
/// asks for becomes available (`failure` marks the faulty revision's pods as failing).
/// `check` sees every plan.
fn play(
    ro: &mut Rollout,
    services: &[&str],
    failure: Option<PodFailure>,
    rounds: usize,
    mut check: impl FnMut(&Plan),
) -> Plan {
    let mut sets = vec![rs("web:1", REPLICAS, REPLICAS)];
    let mut last = None;
    for i in 0..rounds {
        let obs = world(ro, sets.clone(), services);
        let plan = step(ro, &obs, at(10 + i as i64 * 10));
        check(&plan);
        for p in &plan.replica_sets {
            let image = if p.hash == hash("web:1") {
                "web:1"
            } else {
                "web:bad"
            };
            let mut next = rs(image, p.replicas, p.replicas);
            if image == "web:bad" && failure.is_some() && p.replicas > 0 {
                next.available = 0;
                next.ready = 0;
                next.failure = failure.clone();
            }
            match sets.iter_mut().find(|s| s.hash == p.hash) {
                Some(s) => *s = next,
                None => sets.push(next),
            }
        }
        last = Some(plan);
    }
    last.expect("rounds")
}

fn stable_kept(plan: &Plan) {
    for p in &plan.replica_sets {
        if p.hash == hash("web:1") {
            assert_eq!(p.replicas, REPLICAS, "the stable keeps its size: {plan:?}");
        }
    }
}

fn exercise(ro: &Rollout) -> ExerciseInForce {
    ro.status
        .as_ref()
        .and_then(|s| s.exercise.clone())
        .expect("status.exercise")
}

#[test]
fn an_uncaught_fault_is_stopped_before_a_pause_only_a_person_ends() {
    let steps = json!([{"setWeight": 25}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {}}]);
    let mut ro = exercised(json!({"canary": {"steps": steps}}));
    let mut aborts = Vec::new();
    let last = play(&mut ro, &[], None, 12, |plan| {
        stable_kept(plan);
        aborts.extend(plan.aborted);
        assert!(
            !reasons(plan).contains(&"RolloutCompleted"),
            "an exercise is never promoted"
        );
    });
    assert_eq!(
        aborts,
        vec![AbortCause::SafetyStop],
        "stopped once, by the safety stop"
    );
    let status = ro.status.clone().expect("status");
    assert_eq!(status.stable_rs, Some(hash("web:1")));
    assert_eq!(
        status.current_step_index,
        Some(3),
        "stopped at the pause, not in it"
    );
    assert!(status.pause_conditions.is_empty());
    assert_eq!(last.status.phase, Some(RolloutPhase::Degraded));
    let ex = exercise(&ro);
    assert_eq!(ex.revision, Some(hash("web:bad")));
    assert_eq!(ex.abort_cause.as_deref(), Some("SafetyStop"));
    let (live, aborted, safe) = (
        ex.live_at.clone().expect("live"),
        ex.aborted_at.clone().expect("aborted"),
        ex.safe_at.clone().expect("safe"),
    );
    assert!(live.0 < aborted.0 && aborted.0 <= safe.0, "{ex:?}");
    // Without a router the weight is the canary's real share of the ready pods: at step 2, 2
    // of 6, the stable keeping its 4 (a real release would have 2 of 4).
    assert_eq!(ex.peak_weight, Some(33));
    assert_eq!(
        last.replica_sets
            .iter()
            .find(|p| p.hash == hash("web:bad"))
            .map(|p| p.replicas),
        Some(0),
        "the faulty revision is scaled away"
    );
}

#[test]
fn the_last_step_done_is_a_safety_stop_not_a_promotion() {
    let steps = json!([{"setWeight": 50}, {"pause": {"duration": "5s"}}]);
    let mut ro = exercised(json!({"canary": {"steps": steps}}));
    let mut aborts = Vec::new();
    play(&mut ro, &[], None, 8, |plan| {
        stable_kept(plan);
        aborts.extend(plan.aborted);
    });
    assert_eq!(aborts, vec![AbortCause::SafetyStop]);
    let status = ro.status.clone().expect("status");
    assert_eq!(status.stable_rs, Some(hash("web:1")));
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .map(|c| c.message.clone());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("exercise safety stop") && m.contains("its promotion")),
        "{message:?}"
    );
}

#[test]
fn a_fault_caught_by_the_pod_checks_records_pods_failing() {
    let steps = json!([{"setWeight": 25}, {"pause": {}}]);
    let mut ro = exercised(json!({"canary": {"steps": steps}}));
    let crash = PodFailure {
        pod: "web-bad-1".into(),
        container: "web".into(),
        reason: "CrashLoopBackOff".into(),
        exit_code: Some(1),
        restarts: 3,
        message: String::new(),
    };
    let mut aborts = Vec::new();
    play(&mut ro, &[], Some(crash), 5, |plan| {
        stable_kept(plan);
        aborts.extend(plan.aborted);
    });
    assert_eq!(aborts, vec![AbortCause::PodsFailing]);
    let ex = exercise(&ro);
    assert_eq!(ex.abort_cause.as_deref(), Some("PodsFailing"));
    assert_eq!(ex.live_at, None, "no pod of it was ever available");
    assert!(ex.safe_at.is_some());
}

#[test]
fn a_full_promotion_during_an_exercise_stops_it_instead() {
    let steps = json!([{"setWeight": 25}, {"pause": {"duration": "1h"}}]);
    let mut ro = exercised(json!({"canary": {"steps": steps}}));
    play(&mut ro, &[], None, 3, stable_kept);
    if let Some(s) = ro.status.as_mut() {
        s.promote_full = Some(true);
    }
    let mut aborts = Vec::new();
    play(&mut ro, &[], None, 2, |plan| aborts.extend(plan.aborted));
    assert_eq!(aborts, vec![AbortCause::SafetyStop]);
    let status = ro.status.clone().expect("status");
    assert_eq!(status.stable_rs, Some(hash("web:1")));
    assert_eq!(status.promote_full, None);
}

#[test]
fn a_blue_green_exercise_stops_before_the_switch() {
    let mut ro = exercised(
        json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview"}}),
    );
    let mut aborts = Vec::new();
    let last = play(&mut ro, &["web-active", "web-preview"], None, 5, |plan| {
        stable_kept(plan);
        aborts.extend(plan.aborted);
        for s in &plan.services {
            if s.name == "web-active" {
                assert_eq!(s.hash, hash("web:1"), "the active Service never switches");
            }
        }
    });
    assert_eq!(aborts, vec![AbortCause::SafetyStop]);
    assert_eq!(last.status.stable_rs, Some(hash("web:1")));
    let ex = exercise(&ro);
    assert!(ex.live_at.is_some() && ex.safe_at.is_some(), "{ex:?}");
}

#[test]
fn the_exercise_over_the_rollout_goes_back_to_stable_without_steps() {
    let steps = json!([{"setWeight": 25}, {"pause": {}}]);
    let mut ro = exercised(json!({"canary": {"steps": steps}}));
    play(&mut ro, &[], None, 4, stable_kept);
    assert_eq!(ro.status.as_ref().and_then(|s| s.abort), Some(true));
    // The exercise controller marks the block ended: the template is the stable's again.
    if let Some(ex) = ro.status.as_mut().and_then(|s| s.exercise.as_mut()) {
        ex.ended = Some(crate::api::exercise::ExerciseEnd {
            result: crate::api::exercise::ExerciseResult::Failed,
            message: "not caught".into(),
        });
    }
    let sets = vec![rs("web:1", REPLICAS, REPLICAS), rs("web:bad", 0, 0)];
    let obs = world(&ro, sets, &[]);
    assert_eq!(obs.template, Some(template("web:1")));
    let plan = step(&mut ro, &obs, at(500));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(plan.status.abort, None);
    assert_eq!(plan.status.current_pod_hash, Some(hash("web:1")));
    assert_eq!(plan.aborted, None);
    assert_eq!(plan.status.exercise, None, "the block goes");
    let told: Vec<(&str, &str)> = plan
        .events
        .iter()
        .map(|e| (e.reason, e.message.as_str()))
        .collect();
    assert!(
        told.contains(&("ExerciseFailed", "exercise drill run 1 Failed: not caught")),
        "{told:?}"
    );
    assert!(
        told.iter()
            .any(|(r, m)| *r == "FastTrackRollback" && m.starts_with("exercise drill over")),
        "{told:?}"
    );
}

#[test]
fn a_real_release_wins_over_the_exercise() {
    let mut ro = exercised(json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}));
    ro.spec.template = Some(template("web:2"));
    let obs = world(&ro, vec![rs("web:1", REPLICAS, REPLICAS)], &[]);
    assert_eq!(
        obs.template,
        Some(template("web:2")),
        "the spec's own template"
    );
    let refused = obs
        .exercise
        .clone()
        .and_then(|e| e.refused)
        .unwrap_or_default();
    assert!(refused.contains("a real release began"), "{refused}");
    let plan = step(&mut ro, &obs, at(10));
    assert_eq!(plan.status.current_pod_hash, Some(hash("web:2")));
    let ex = exercise(&ro);
    assert_eq!(ex.revision, None);
    assert_eq!(ex.refused, Some(refused));
}

#[test]
fn a_fault_that_does_not_apply_is_refused_and_nothing_is_released() {
    let mut ro = exercised(json!({"canary": {"steps": [{"setWeight": 25}]}}));
    if let Some(ex) = ro.status.as_mut().and_then(|s| s.exercise.as_mut()) {
        ex.fault = Fault {
            strategic_merge_patch: Some(json!({"metadata": {"labels": {"app": "other"}}})),
            ..Fault::default()
        };
    }
    let obs = world(&ro, vec![rs("web:1", REPLICAS, REPLICAS)], &[]);
    assert_eq!(
        obs.exercise,
        Some(ObservedExercise {
            revision: None,
            refused: Some(
                "the fault changes the pod label \"app\", which the Rollout's selector uses".into()
            )
        })
    );
    let plan = step(&mut ro, &obs, at(10));
    assert_eq!(plan.status.current_pod_hash, Some(hash("web:1")));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Healthy));
}
