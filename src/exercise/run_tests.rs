//! Table tests of the exercise controller's decisions, one per transition.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::api::exercise::{
    ExerciseInForce, ExercisePhase, ExerciseResult, ExerciseRun, RolloutExercise,
    RolloutExerciseSpec, RolloutExerciseStatus,
};
use crate::api::rollout::{NotifiedAnalysis, Rollout, RolloutPhase, RolloutStatus};
use crate::rollout::test_support::{hash, rollout_of, template};

/// A fixed instant plus `s` seconds; 1,800,000,000 is a whole hour (08:00 UTC), so cron
/// times are easy to write.
fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
}

fn exercise(extra: serde_json::Value) -> RolloutExercise {
    let mut spec = json!({
        "rolloutName": "web",
        "fault": {"strategicMergePatch": {"metadata": {"annotations": {"sim.sluice.dev/error-rate": "0.2"}}}}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let spec: RolloutExerciseSpec = serde_json::from_value(spec).expect("spec");
    let mut ex = RolloutExercise::new("drill", spec);
    ex.metadata.namespace = Some("shop".into());
    ex.metadata.generation = Some(1);
    ex.metadata.creation_timestamp = Some(Time(at(0)));
    ex
}

fn healthy() -> Rollout {
    let mut ro = rollout_of(
        json!({
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web:1"),
            "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}
        }),
        RolloutStatus {
            observed_generation: Some(1),
            stable_rs: Some(hash("web:1")),
            current_pod_hash: Some(hash("web:1")),
            phase: Some(RolloutPhase::Healthy),
            ..Default::default()
        },
    );
    ro.metadata.namespace = Some("shop".into());
    ro
}

fn with_block(mut ro: Rollout, block: ExerciseInForce) -> Rollout {
    if let Some(s) = ro.status.as_mut() {
        s.exercise = Some(block);
    }
    ro
}

fn seen(ro: &Rollout) -> Seen<'_> {
    Seen {
        rollout: Some(ro),
        ..Seen::default()
    }
}

/// `ex` after `d`, as the next reconcile reads it.
fn after(mut ex: RolloutExercise, d: &Decision) -> RolloutExercise {
    ex.status = Some(d.status.clone());
    ex
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.1).collect()
}

fn started(number: i32, trigger: &str, at_s: i64) -> ExerciseRun {
    ExerciseRun {
        number,
        trigger: trigger.into(),
        due_at: Some(Time(at(at_s))),
        started_at: Some(Time(at(at_s))),
        stable_revision: Some(hash("web:1")),
        ..Default::default()
    }
}

fn running(ex: RolloutExercise, run: ExerciseRun) -> RolloutExercise {
    let mut ex = ex;
    ex.status = Some(RolloutExerciseStatus {
        runs: run.number,
        phase: Some(ExercisePhase::Running),
        current: Some(run),
        ..Default::default()
    });
    ex
}

/// The block the Rollout controller would show after an analysis abort at 40 s, the canary
/// live at 20 s and off traffic at 41 s.
fn caught_block() -> ExerciseInForce {
    ExerciseInForce {
        name: "drill".into(),
        run: 1,
        stable_revision: hash("web:1"),
        started_at: Some(Time(at(10))),
        revision: Some(hash("web:bad")),
        live_at: Some(Time(at(20))),
        peak_weight: Some(25),
        aborted_at: Some(Time(at(40))),
        abort_cause: Some("AnalysisFailed".into()),
        analysis: Some(NotifiedAnalysis {
            run: "web-bad-1-step-1".into(),
            metric: Some("success-rate".into()),
            value: Some("0.79".into()),
            condition: Some("result[0] >= 0.95".into()),
        }),
        safe_at: Some(Time(at(41))),
        ..Default::default()
    }
}

#[test]
fn an_exercise_without_a_schedule_starts_once_created_on_a_healthy_rollout() {
    let ex = exercise(json!({}));
    let ro = healthy();
    let d = decide(&ex, &seen(&ro), at(10));
    assert_eq!(reasons(&d), vec!["ExerciseStarted"]);
    assert_eq!(d.status.phase, Some(ExercisePhase::Running));
    let run = d.status.current.clone().expect("current run");
    assert_eq!((run.number, run.trigger.as_str()), (1, "Created"));
    assert_eq!(run.stable_revision, Some(hash("web:1")));
    match &d.rollout {
        Some(RolloutWrite::Start(block)) => {
            assert_eq!(block.name, "drill");
            assert_eq!(block.run, 1);
            assert_eq!(block.stable_revision, hash("web:1"));
            assert_eq!(block.fault, ex.spec.fault);
        }
        other => panic!("expected a start, got {other:?}"),
    }
    // Once started it is not started again, even before the Rollout shows the block.
    let d2 = decide(&after(ex, &d), &seen(&ro), at(12));
    assert_eq!(d2.rollout, None);
    assert!(reasons(&d2).is_empty());
}

#[test]
fn an_asked_for_run_waits_while_the_rollout_releases_and_then_starts() {
    let ex = exercise(json!({}));
    let mut ro = healthy();
    if let Some(s) = ro.status.as_mut() {
        s.current_pod_hash = Some(hash("web:2"));
        s.phase = Some(RolloutPhase::Progressing);
    }
    let d = decide(&ex, &seen(&ro), at(10));
    assert_eq!(d.status.phase, Some(ExercisePhase::Waiting));
    let message = d.status.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("releasing revision {}", hash("web:2"))),
        "{message}"
    );
    assert_eq!(d.rollout, None);
    assert_eq!(reasons(&d), vec!["ExerciseWaiting"]);
    let waiting = after(ex, &d);
    let d2 = decide(&waiting, &seen(&ro), at(12));
    assert!(reasons(&d2).is_empty(), "the same wait is told once");
    let d3 = decide(&after(waiting, &d2), &seen(&healthy()), at(30));
    assert!(matches!(d3.rollout, Some(RolloutWrite::Start(_))));
    assert_eq!(
        d3.status.current.and_then(|r| r.started_at),
        Some(Time(at(30)))
    );
}

#[test]
fn a_caught_fault_passes_with_its_figures() {
    let ex = running(
        exercise(json!({"objectives": {"maxTimeToSafe": "1m", "maxTimeToDetect": "30s"}})),
        started(1, "Created", 10),
    );
    let ro = with_block(healthy(), caught_block());
    let s = Seen {
        rollout: Some(&ro),
        first_failure: Some(at(35)),
        requests: None,
    };
    let d = decide(&ex, &s, at(45));
    assert_eq!(reasons(&d), vec!["ExercisePassed"]);
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Passed));
    assert_eq!(run.time_to_detect.as_deref(), Some("15.0s"), "35 s - 20 s");
    assert_eq!(run.time_to_safe.as_deref(), Some("21.0s"), "41 s - 20 s");
    assert_eq!(run.peak_weight, Some(25));
    assert_eq!(run.detected_at, Some(Time(at(35))));
    assert!(run.objectives.iter().all(|o| o.met), "{:?}", run.objectives);
    assert_eq!(run.objectives.len(), 3);
    let message = run.message.clone().unwrap_or_default();
    assert!(
        message.contains("caught by analysis web-bad-1-step-1, metric success-rate = 0.79"),
        "{message}"
    );
    assert_eq!(d.status.current, None);
    assert_eq!(d.status.phase, Some(ExercisePhase::Idle));
    assert_eq!(
        d.rollout,
        Some(RolloutWrite::End {
            run: 1,
            end: ExerciseEnd {
                result: ExerciseResult::Passed,
                message
            }
        })
    );
    assert_eq!(d.finished.map(|r| r.number), Some(1));
}

#[test]
fn a_safety_stop_fails_the_run() {
    let ex = running(exercise(json!({})), started(1, "Created", 10));
    let block = ExerciseInForce {
        abort_cause: Some("SafetyStop".into()),
        analysis: None,
        ..caught_block()
    };
    let ro = with_block(healthy(), block);
    let d = decide(&ex, &seen(&ro), at(45));
    assert_eq!(reasons(&d), vec!["ExerciseFailed"]);
    assert!(d.events[0].0, "a failed run is a Warning");
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Failed));
    assert_eq!(run.detected_at, None);
    assert_eq!(run.time_to_detect, None);
    let must = run
        .objectives
        .iter()
        .find(|o| o.name == "mustDetect")
        .expect("mustDetect");
    assert!(!must.met);
    assert!(must.got.contains("safety stop"), "{}", must.got);
}

#[test]
fn a_slow_detection_fails_its_objective() {
    let ex = running(
        exercise(json!({"objectives": {"maxTimeToDetect": "10s"}})),
        started(1, "Created", 10),
    );
    let ro = with_block(healthy(), caught_block());
    let s = Seen {
        rollout: Some(&ro),
        first_failure: Some(at(35)),
        requests: None,
    };
    let d = decide(&ex, &s, at(45));
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Failed));
    let message = run.message.unwrap_or_default();
    assert!(
        message.contains("objective maxTimeToDetect not met: wanted at most 10s, got 15.0s"),
        "{message}"
    );
}

#[test]
fn requests_are_counted_after_prometheus_settles_and_judged() {
    let spec = json!({
        "requests": {"prometheusAddress": "http://prometheus:9090", "settle": "5s"},
        "objectives": {"maxFailedRequests": 100}
    });
    let ex = running(exercise(spec), started(1, "Created", 10));
    let ro = with_block(healthy(), caught_block());
    let d = decide(&ex, &seen(&ro), at(43));
    assert_eq!(d.status.phase, Some(ExercisePhase::Measuring));
    assert!(!d.measure);
    assert_eq!(
        d.requeue,
        Some(std::time::Duration::from_secs(3)),
        "until 41 s + 5 s"
    );
    let d = decide(&ex, &seen(&ro), at(47));
    assert!(d.measure, "ask for the count");
    assert!(d.status.history.is_empty());
    let s = Seen {
        rollout: Some(&ro),
        first_failure: Some(at(35)),
        requests: Some(Ok((1200, 240))),
    };
    let d = decide(&ex, &s, at(47));
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!((run.requests, run.failed_requests), (Some(1200), Some(240)));
    assert_eq!(run.result, Some(ExerciseResult::Failed));
    let o = run
        .objectives
        .iter()
        .find(|o| o.name == "maxFailedRequests")
        .expect("objective");
    assert_eq!((o.got.as_str(), o.met), ("240", false));
    let s = Seen {
        requests: Some(Err("Prometheus did not answer within 10s".into())),
        ..s
    };
    let run = decide(&ex, &s, at(47))
        .status
        .history
        .first()
        .cloned()
        .expect("history");
    assert_eq!(
        run.requests_message.as_deref(),
        Some("Prometheus did not answer within 10s")
    );
    let o = run
        .objectives
        .iter()
        .find(|o| o.name == "maxFailedRequests")
        .expect("objective");
    assert!(
        !o.met && o.got.starts_with("not measured: Prometheus"),
        "{o:?}"
    );
}

#[test]
fn a_scheduled_run_is_skipped_while_a_release_is_under_way_and_runs_at_the_next_time() {
    let ex = exercise(json!({"schedule": "*/5 * * * *"}));
    let mut busy = healthy();
    if let Some(s) = busy.status.as_mut() {
        s.current_pod_hash = Some(hash("web:2"));
        s.phase = Some(RolloutPhase::Paused);
    }
    let d = decide(&ex, &seen(&busy), at(60));
    assert_eq!(
        d.status.phase,
        Some(ExercisePhase::Idle),
        "nothing due before 5 min"
    );
    assert_eq!(d.status.next_run_at, Some(Time(at(300))));
    assert_eq!(d.requeue, Some(std::time::Duration::from_secs(240)));
    let d = decide(&ex, &seen(&busy), at(301));
    assert_eq!(reasons(&d), vec!["ExerciseSkipped"]);
    let skipped = d.status.history.first().cloned().expect("history");
    assert_eq!(skipped.result, Some(ExerciseResult::Skipped));
    assert_eq!(skipped.trigger, "Schedule");
    assert!(
        skipped
            .message
            .clone()
            .unwrap_or_default()
            .contains("is releasing revision")
    );
    assert_eq!(d.status.last_schedule_at, Some(Time(at(300))));
    assert_eq!(d.status.next_run_at, Some(Time(at(600))));
    assert_eq!(d.rollout, None);
    let ex = after(ex, &d);
    let d = decide(&ex, &seen(&busy), at(302));
    assert!(
        reasons(&d).is_empty(),
        "the skipped time is not taken again"
    );
    let d = decide(&ex, &seen(&healthy()), at(600));
    let run = d.status.current.clone().expect("started");
    assert_eq!((run.number, run.trigger.as_str()), (2, "Schedule"));
    assert!(matches!(d.rollout, Some(RolloutWrite::Start(_))));
}

#[test]
fn a_scheduled_run_outside_its_window_is_skipped() {
    let ex =
        exercise(json!({"schedule": "*/5 * * * *", "window": {"start": "00:00", "end": "00:01"}}));
    let d = decide(&ex, &seen(&healthy()), at(301));
    let skipped = d.status.history.first().cloned().expect("history");
    assert_eq!(skipped.result, Some(ExerciseResult::Skipped));
    assert!(
        skipped
            .message
            .unwrap_or_default()
            .contains("outside its window (00:00-00:01 UTC)")
    );
}

#[test]
fn a_request_starts_a_run_once_per_request() {
    let mut ex = exercise(json!({"schedule": "0 3 * * *"}));
    ex.metadata.annotations = Some(BTreeMap::from([(
        RUN_REQUESTED.to_string(),
        at(100).to_string(),
    )]));
    let d = decide(&ex, &seen(&healthy()), at(120));
    let run = d.status.current.clone().expect("started");
    assert_eq!(
        (run.trigger.as_str(), run.due_at.clone()),
        ("Request", Some(Time(at(100))))
    );
    assert_eq!(d.status.last_request, Some(at(100).to_string()));
}

#[test]
fn a_cancel_request_ends_the_run_and_the_rollout_is_told() {
    let mut ex = running(exercise(json!({})), started(1, "Created", 10));
    ex.metadata.annotations = Some(BTreeMap::from([(
        CANCEL_REQUESTED.to_string(),
        at(20).to_string(),
    )]));
    let block = ExerciseInForce {
        aborted_at: None,
        safe_at: None,
        abort_cause: None,
        ..caught_block()
    };
    let ro = with_block(healthy(), block);
    let d = decide(&ex, &seen(&ro), at(25));
    assert_eq!(reasons(&d), vec!["ExerciseCancelled"]);
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Cancelled));
    assert!(run.objectives.is_empty(), "a cancelled run is not judged");
    assert!(matches!(d.rollout, Some(RolloutWrite::End { run: 1, .. })));
}

#[test]
fn a_real_release_cancels_the_run_and_a_long_run_fails() {
    let ex = running(
        exercise(json!({"maxDuration": "5m"})),
        started(1, "Created", 10),
    );
    let block = ExerciseInForce {
        refused: Some(
            "a real release began: the template is revision x, the exercise started from y".into(),
        ),
        ..ExerciseInForce {
            name: "drill".into(),
            run: 1,
            stable_revision: hash("web:1"),
            ..Default::default()
        }
    };
    let ro = with_block(healthy(), block);
    let run = decide(&ex, &seen(&ro), at(30))
        .status
        .history
        .first()
        .cloned()
        .expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Cancelled));

    let block = ExerciseInForce {
        safe_at: None,
        aborted_at: None,
        abort_cause: None,
        ..caught_block()
    };
    let ro = with_block(healthy(), block);
    let d = decide(&ex, &seen(&ro), at(200));
    assert_eq!(d.status.phase, Some(ExercisePhase::Running));
    assert_eq!(d.requeue, Some(std::time::Duration::from_secs(2)));
    let run = decide(&ex, &seen(&ro), at(320))
        .status
        .history
        .first()
        .cloned()
        .expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Failed));
    assert!(
        run.message
            .unwrap_or_default()
            .contains("longer than maxDuration (5m)")
    );
}

#[test]
fn a_block_left_behind_by_a_restart_is_ended_with_the_recorded_result() {
    let mut ex = exercise(json!({}));
    ex.status = Some(RolloutExerciseStatus {
        runs: 1,
        phase: Some(ExercisePhase::Idle),
        history: vec![ExerciseRun {
            result: Some(ExerciseResult::Passed),
            message: Some("caught".into()),
            ..started(1, "Created", 10)
        }],
        ..Default::default()
    });
    let ro = with_block(healthy(), caught_block());
    let d = decide(&ex, &seen(&ro), at(60));
    assert_eq!(
        d.rollout,
        Some(RolloutWrite::End {
            run: 1,
            end: ExerciseEnd {
                result: ExerciseResult::Passed,
                message: "caught".into()
            }
        })
    );
    assert_eq!(
        d.status.current, None,
        "no new run while the Rollout still has one"
    );
}

#[test]
fn a_block_missing_after_the_grace_is_written_again() {
    let ex = running(exercise(json!({})), started(1, "Created", 10));
    let d = decide(&ex, &seen(&healthy()), at(15));
    assert_eq!(d.rollout, None, "the cache may be behind for a moment");
    let d = decide(&ex, &seen(&healthy()), at(30));
    assert!(matches!(d.rollout, Some(RolloutWrite::Start(ref b)) if b.run == 1));
}

#[test]
fn a_spec_that_cannot_run_is_invalid_and_said_once() {
    let ex =
        exercise(json!({"fault": {"strategicMergePatch": {"metadata": {"labels": {"app": "x"}}}}}));
    let d = decide(&ex, &seen(&healthy()), at(10));
    assert_eq!(d.status.phase, Some(ExercisePhase::Invalid));
    assert_eq!(reasons(&d), vec!["InvalidSpec"]);
    assert_eq!(d.rollout, None);
    let d2 = decide(&after(ex, &d), &seen(&healthy()), at(20));
    assert!(reasons(&d2).is_empty());
    for (field, bad) in [
        ("schedule", json!("61 * * * *")),
        ("timeZone", json!("Mars/Olympus")),
        ("maxDuration", json!("soon")),
    ] {
        let ex = exercise(json!({ field: bad }));
        let d = decide(&ex, &seen(&healthy()), at(10));
        assert_eq!(d.status.phase, Some(ExercisePhase::Invalid), "{field}");
    }
    let ex = exercise(json!({"requests": {"prometheusAddress": "prometheus:9090"}}));
    let message = decide(&ex, &seen(&healthy()), at(10))
        .status
        .message
        .unwrap_or_default();
    assert!(message.contains("must start with http://"), "{message}");
}

#[test]
fn busy_names_what_keeps_a_run_from_starting() {
    assert_eq!(busy(&healthy()), None);
    let mut paused = healthy();
    paused.spec.paused = Some(true);
    assert!(busy(&paused).unwrap_or_default().contains("is paused"));
    let mut changed = healthy();
    changed.metadata.generation = Some(2);
    assert!(
        busy(&changed)
            .unwrap_or_default()
            .contains("not acted on yet")
    );
    let other = with_block(
        healthy(),
        ExerciseInForce {
            name: "other".into(),
            ..Default::default()
        },
    );
    assert!(
        busy(&other)
            .unwrap_or_default()
            .contains("exercise other is running")
    );
}

#[test]
fn an_ended_run_keeps_its_figures_whatever_ended_it() {
    let mut ex = running(exercise(json!({})), started(1, "Created", 10));
    ex.metadata.annotations = Some(BTreeMap::from([(
        CANCEL_REQUESTED.to_string(),
        at(30).to_string(),
    )]));
    let block = ExerciseInForce {
        aborted_at: None,
        safe_at: None,
        abort_cause: None,
        ..caught_block()
    };
    let ro = with_block(healthy(), block);
    let run = decide(&ex, &seen(&ro), at(31))
        .status
        .history
        .first()
        .cloned()
        .expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Cancelled));
    assert_eq!(run.revision, Some(hash("web:bad")));
    assert_eq!(
        (run.live_at, run.peak_weight),
        (Some(Time(at(20))), Some(25))
    );
}

#[test]
fn a_waiting_run_can_be_cancelled() {
    let mut ex = exercise(json!({}));
    ex.status = Some(RolloutExerciseStatus {
        runs: 1,
        phase: Some(ExercisePhase::Waiting),
        current: Some(ExerciseRun {
            number: 1,
            trigger: "Created".into(),
            due_at: Some(Time(at(0))),
            ..Default::default()
        }),
        ..Default::default()
    });
    ex.metadata.annotations = Some(BTreeMap::from([(
        CANCEL_REQUESTED.to_string(),
        at(5).to_string(),
    )]));
    let d = decide(&ex, &seen(&healthy()), at(10));
    assert_eq!(d.rollout, None, "never started");
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Cancelled));
    assert_eq!(d.status.current, None);
}

#[test]
fn a_spec_made_invalid_mid_run_ends_the_run_and_tells_the_rollout() {
    let mut ex = running(exercise(json!({})), started(1, "Created", 10));
    ex.spec.max_duration = Some(crate::api::duration::DurationString("soon".into()));
    let block = ExerciseInForce {
        safe_at: None,
        aborted_at: None,
        abort_cause: None,
        ..caught_block()
    };
    let ro = with_block(healthy(), block);
    let d = decide(&ex, &seen(&ro), at(30));
    assert_eq!(d.status.phase, Some(ExercisePhase::Invalid));
    let run = d.status.history.first().cloned().expect("history");
    assert_eq!(run.result, Some(ExerciseResult::Failed));
    assert!(matches!(d.rollout, Some(RolloutWrite::End { run: 1, .. })));
}
