use serde_json::json;

use super::*;

const AT: &str = "2026-12-01T10:00:00.5Z";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn exercise(annotations: serde_json::Value, status: serde_json::Value) -> RolloutExercise {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutExercise",
        "metadata": {"name": "drill", "namespace": "shop", "generation": 1,
                     "resourceVersion": "42", "annotations": annotations},
        "spec": {"rolloutName": "web", "fault": {"strategicMergePatch": {}}},
        "status": status
    }))
    .expect("exercise")
}

fn idle(runs: i32) -> RolloutExercise {
    exercise(
        json!({}),
        json!({"observedGeneration": 1, "phase": "Idle", "runs": runs}),
    )
}

/// Run `n` under way in `phase` with `message`, the request `AT` taken.
fn under_way(n: i32, started: bool, phase: &str, message: &str) -> RolloutExercise {
    let mut run = json!({"number": n, "trigger": "Request", "dueAt": "2026-12-01T10:00:00Z",
                         "stableRevision": "6f7d8c"});
    if started {
        run["startedAt"] = json!("2026-12-01T10:00:02Z");
    }
    exercise(
        json!({RUN_REQUESTED: AT}),
        json!({"observedGeneration": 1, "phase": phase, "message": message, "runs": n,
               "lastRequest": AT, "current": run}),
    )
}

fn finished(n: i32, result: &str) -> RolloutExercise {
    exercise(
        json!({RUN_REQUESTED: AT}),
        json!({"observedGeneration": 1, "phase": "Idle", "runs": n, "lastRequest": AT,
               "history": [{"number": n, "trigger": "Request", "result": result,
                            "message": "caught by analysis"}]}),
    )
}

fn invalid_exercise(generation: i64) -> RolloutExercise {
    let mut ex = exercise(
        json!({}),
        json!({"observedGeneration": 1, "phase": "Invalid",
               "message": "InvalidSpec: schedule: 6 fields",
               "conditions": [{"type": "InvalidSpec", "status": "True", "reason": "InvalidSpec",
                               "message": "InvalidSpec: schedule \"* * * * * *\": 6 fields, not 5",
                               "lastTransitionTime": "2026-12-01T10:00:00Z"}]}),
    );
    ex.metadata.generation = Some(generation);
    ex
}

#[test]
fn start_asks_for_a_run_follows_one_under_way_and_refuses_an_invalid_spec() {
    assert_eq!(plan_start(&idle(4)), StartPlan::Ask { runs_before: 4 });
    let mut new = idle(0);
    new.status = None;
    assert_eq!(plan_start(&new), StartPlan::Ask { runs_before: 0 });
    match plan_start(&under_way(
        5,
        true,
        "Running",
        "run 5: releasing revision 7c9b5d",
    )) {
        StartPlan::Follow { run, line } => {
            assert_eq!(run, 5);
            assert_eq!(
                line,
                "exercise drill: run 5 (Request) is already under way (Running: run 5: releasing revision 7c9b5d); following it instead of asking for another\n"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan_start(&under_way(5, false, "Waiting", "run 5 waits")),
        StartPlan::Follow { run: 5, .. }
    ));
    assert_eq!(
        plan_start(&invalid_exercise(1)),
        StartPlan::Invalid("InvalidSpec: schedule \"* * * * * *\": 6 fields, not 5".into())
    );
    // The spec changed since it was found invalid: the controller decides again.
    assert_eq!(
        plan_start(&invalid_exercise(2)),
        StartPlan::Ask { runs_before: 0 }
    );
}

#[test]
fn the_patch_is_one_annotation_of_the_metadata_guarded_by_the_version_read() {
    let patch = annotation_patch(&idle(0), RUN_REQUESTED, ts(AT));
    assert_eq!(
        patch,
        json!({"metadata": {"resourceVersion": "42",
                            "annotations": {RUN_REQUESTED: "2026-12-01T10:00:00.5Z"}}})
    );
}

#[test]
fn cancel_with_nothing_running_writes_nothing() {
    match plan_cancel(&idle(3), ts(AT)) {
        CancelPlan::Nothing(line) => assert_eq!(
            line,
            "exercise drill has no run under way: nothing to cancel; nothing written\n"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_of_a_waiting_run_is_refused_because_only_a_started_run_is_cancelled() {
    match plan_cancel(
        &under_way(2, false, "Waiting", "run 2 waits: Rollout web is Paused"),
        ts(AT),
    ) {
        CancelPlan::Waiting(m) => assert!(
            m.starts_with(
                "run 2 of exercise drill has not started (run 2 waits: Rollout web is Paused)"
            ),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_of_a_started_run_says_the_rollout_goes_back_to_stable() {
    let ex = under_way(2, true, "Running", "run 2: revision 7c9b5d is live");
    let now = ts("2026-12-01T10:00:30Z");
    match plan_cancel(&ex, now) {
        CancelPlan::Cancel { at, line } => {
            assert_eq!(at, now);
            assert_eq!(
                line,
                "exercise drill: cancel of run 2 asked for (sluice.dev/cancel-requested-at). Sluice ends it as Cancelled (no objectives judged) and Rollout web goes back to its stable revision 6f7d8c: the faulty revision's traffic goes back to stable, then its pods go.\n"
            );
        }
        other => panic!("{other:?}"),
    }
    // A clock behind the controller's still cancels the run under way.
    match plan_cancel(&ex, ts("2026-12-01T09:59:00Z")) {
        CancelPlan::Cancel { at, .. } => assert_eq!(at, ts("2026-12-01T10:00:02Z")),
        other => panic!("{other:?}"),
    }
    let measuring = under_way(2, true, "Measuring", "run 2: safe; counting requests");
    match plan_cancel(&measuring, now) {
        CancelPlan::Cancel { line, .. } => {
            assert!(line.contains("already off traffic"), "{line}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_cancel_of_the_same_run_writes_nothing() {
    let mut ex = under_way(2, true, "Running", "run 2: revision 7c9b5d is live");
    ex.metadata.annotations = Some(
        [(
            CANCEL_REQUESTED.to_string(),
            "2026-12-01T10:00:20Z".to_string(),
        )]
        .into(),
    );
    assert!(matches!(
        plan_cancel(&ex, ts("2026-12-01T10:00:30Z")),
        CancelPlan::Already(_)
    ));
    // A cancel from before this run started is not this run's.
    ex.metadata.annotations = Some(
        [(
            CANCEL_REQUESTED.to_string(),
            "2026-12-01T09:00:00Z".to_string(),
        )]
        .into(),
    );
    assert!(matches!(
        plan_cancel(&ex, ts("2026-12-01T10:00:30Z")),
        CancelPlan::Cancel { .. }
    ));
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn following_a_request_prints_each_change_of_phase_or_message_then_ends_with_the_run() {
    let mut f = Follow::request(AT, 4);
    // Not taken yet: the old status says nothing of this run.
    let mut before = idle(4);
    before.metadata.annotations = Some([(RUN_REQUESTED.to_string(), AT.to_string())].into());
    assert_eq!(f.see(&before, secs(0), Style::PLAIN), Step::default());
    assert_eq!(f.run_number(), None);

    let s = f.see(
        &under_way(5, true, "Running", "run 5: releasing the faulty revision"),
        secs(1),
        Style::PLAIN,
    );
    assert_eq!(
        s.lines,
        ["    +1s  Running    run 5: releasing the faulty revision\n"]
    );
    assert_eq!((f.run_number(), s.end), (Some(5), None));
    // The same again (another field changed): nothing printed.
    let s = f.see(
        &under_way(5, true, "Running", "run 5: releasing the faulty revision"),
        secs(2),
        Style::PLAIN,
    );
    assert!(s.lines.is_empty());
    let s = f.see(
        &under_way(5, true, "Measuring", "run 5: safe; counting requests"),
        secs(75),
        Style::PLAIN,
    );
    assert_eq!(
        s.lines,
        [" +1m15s  Measuring  run 5: safe; counting requests\n"]
    );
    let s = f.see(&finished(5, "Passed"), secs(80), Style::PLAIN);
    match s.end {
        Some(End::Finished(run)) => {
            assert_eq!(run.number, 5);
            assert_eq!(StartOutcome::of(run.result), StartOutcome::Passed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn in_colour_the_phase_is_painted_and_the_message_column_stays_in_place() {
    let mut f = Follow::run(5);
    let s = f.see(
        &under_way(5, true, "Running", "run 5: releasing"),
        secs(1),
        Style { color: true },
    );
    assert_eq!(
        s.lines,
        ["    +1s  \x1b[33m◌ Running\x1b[0m  run 5: releasing\n"]
    );
}

#[test]
fn a_request_whose_run_ended_between_two_looks_is_still_found() {
    let mut f = Follow::request(AT, 4);
    let s = f.see(&finished(5, "Cancelled"), secs(3), Style::PLAIN);
    assert!(
        matches!(&s.end, Some(End::Finished(run)) if run.number == 5),
        "{s:?}"
    );
}

#[test]
fn a_run_of_an_earlier_request_is_not_taken_for_this_one() {
    // The status still shows the request before ours (another time) taken.
    let mut f = Follow::request(AT, 4);
    let mut old = finished(4, "Passed");
    if let Some(s) = old.status.as_mut() {
        s.last_request = Some("2026-11-30T10:00:00Z".into());
    }
    old.metadata.annotations = Some([(RUN_REQUESTED.to_string(), AT.to_string())].into());
    assert_eq!(f.see(&old, secs(1), Style::PLAIN), Step::default());
    assert_eq!(f.run_number(), None);
}

#[test]
fn a_request_replaced_by_another_follows_that_one() {
    let mut f = Follow::request("2026-12-01T09:59:59Z", 4);
    let s = f.see(
        &under_way(5, true, "Running", "run 5: releasing"),
        secs(1),
        Style::PLAIN,
    );
    assert!(
        s.lines[0].starts_with("another request (sluice.dev/run-requested-at: 2026-12-01T10:00:00.5Z) replaced this one"),
        "{s:?}"
    );
    assert_eq!(f.run_number(), Some(5));
}

#[test]
fn an_invalid_spec_ends_the_wait_and_a_run_pushed_out_of_the_history_is_lost() {
    let mut f = Follow::request(AT, 0);
    let s = f.see(&invalid_exercise(1), secs(1), Style::PLAIN);
    assert_eq!(
        s.end,
        Some(End::Invalid(
            "InvalidSpec: schedule \"* * * * * *\": 6 fields, not 5".into()
        ))
    );
    let mut f = Follow::run(3);
    let s = f.see(&finished(5, "Passed"), secs(1), Style::PLAIN);
    assert_eq!(s.end, Some(End::Lost(3)));
}

#[test]
fn exit_codes_are_the_documented_ones() {
    let codes: Vec<u8> = [
        StartOutcome::Passed,
        StartOutcome::Asked,
        StartOutcome::Failed,
        StartOutcome::NotRun,
        StartOutcome::TimedOut,
    ]
    .iter()
    .map(|o| o.exit_code())
    .collect();
    assert_eq!(codes, [0, 0, 2, 3, 4]);
    assert_eq!(
        StartOutcome::of(Some(ExerciseResult::Skipped)),
        StartOutcome::NotRun
    );
    assert_eq!(
        StartOutcome::of(Some(ExerciseResult::Cancelled)),
        StartOutcome::NotRun
    );
    assert_eq!(
        StartOutcome::of(Some(ExerciseResult::Failed)),
        StartOutcome::Failed
    );
}

#[test]
fn elapsed_reads_as_seconds_then_minutes() {
    assert_eq!(elapsed_words(secs(0)), "+0s");
    assert_eq!(elapsed_words(secs(59)), "+59s");
    assert_eq!(elapsed_words(secs(65)), "+1m05s");
    assert_eq!(elapsed_words(secs(1800)), "+30m00s");
}

#[test]
fn at_the_timeout_a_run_goes_on_and_a_request_not_taken_stays_asked_for() {
    assert_eq!(
        timed_out_line("drill", Some(3), secs(3)),
        "exercise drill: run 3 is still under way after 3s (--timeout); it goes on: kubectl sluice exercise status drill, or cancel drill\n"
    );
    assert!(
        timed_out_line("drill", None, secs(1800)).starts_with(
            "exercise drill: Sluice has not taken the request within 30m00s (--timeout); it stays asked for"
        )
    );
}
