use serde_json::json;

use super::*;
use crate::api::exercise::ExerciseEnd;

/// A passed run with every figure, as the controller records one.
fn passed_run() -> serde_json::Value {
    json!({
        "number": 2, "trigger": "Request",
        "dueAt": "2026-12-01T10:00:00Z", "startedAt": "2026-12-01T10:00:01Z",
        "endedAt": "2026-12-01T10:01:10Z", "result": "Passed",
        "message": "caught by analysis web-7c9b5d-2-1, metric success-rate = 0.81 (condition result[0] >= 0.95)",
        "stableRevision": "6f7d8c", "revision": "7c9b5d",
        "liveAt": "2026-12-01T10:00:09Z", "detectedAt": "2026-12-01T10:00:17Z",
        "abortedAt": "2026-12-01T10:00:21Z", "abortCause": "AnalysisFailed",
        "safeAt": "2026-12-01T10:00:22Z",
        "timeToDetect": "8.0s", "timeToSafe": "13.0s", "peakWeight": 25,
        "requests": 512, "failedRequests": 98,
        "objectives": [
            {"name": "mustDetect", "want": "caught by analysis or Sluice's checks",
             "got": "caught by analysis web-7c9b5d-2-1, metric success-rate = 0.81 (condition result[0] >= 0.95)", "met": true},
            {"name": "maxTimeToSafe", "want": "at most 10s", "got": "13.0s", "met": false}
        ]
    })
}

fn skipped_run() -> serde_json::Value {
    json!({
        "number": 1, "trigger": "Schedule", "dueAt": "2026-12-01T03:00:00Z",
        "endedAt": "2026-12-01T03:00:00Z", "result": "Skipped",
        "message": "skipped: Rollout web is releasing revision 5e6f7a"
    })
}

fn exercise(status: serde_json::Value) -> RolloutExercise {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutExercise",
        "metadata": {"name": "drill", "namespace": "shop", "generation": 1},
        "spec": {
            "rolloutName": "web",
            "fault": {"description": "20% of requests fail",
                      "strategicMergePatch": {"metadata": {"annotations": {"sim/error-rate": "0.2"}}}},
            "schedule": "0 3 * * 1-5", "timeZone": "Europe/Paris",
            "window": {"start": "02:00", "end": "05:00", "days": ["Mon", "Tue"]},
            "historyLimit": 5
        },
        "status": status
    }))
    .expect("exercise")
}

fn idle() -> RolloutExercise {
    exercise(json!({
        "observedGeneration": 1, "phase": "Idle", "message": "next run at 2026-12-02T02:00:00Z",
        "runs": 2, "nextRunAt": "2026-12-02T02:00:00Z",
        "history": [passed_run(), skipped_run()]
    }))
}

/// Run 3 under way: the faulty revision aborted, its traffic not yet gone.
fn running() -> RolloutExercise {
    exercise(json!({
        "observedGeneration": 1, "phase": "Running",
        "message": "run 3: revision 8d0e1f aborted (AnalysisFailed); waiting for its traffic to go",
        "runs": 3,
        "current": {"number": 3, "trigger": "Request", "dueAt": "2026-12-01T11:00:00Z",
                    "startedAt": "2026-12-01T11:00:01Z", "stableRevision": "6f7d8c"},
        "history": [passed_run(), skipped_run()]
    }))
}

fn block() -> ExerciseInForce {
    serde_json::from_value(json!({
        "name": "drill", "run": 3, "stableRevision": "6f7d8c",
        "fault": {"strategicMergePatch": {}},
        "startedAt": "2026-12-01T11:00:01Z", "revision": "8d0e1f",
        "liveAt": "2026-12-01T11:00:08Z", "peakWeight": 25,
        "abortedAt": "2026-12-01T11:00:19Z", "abortCause": "AnalysisFailed"
    }))
    .expect("block")
}

/// The text without its escape codes.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const COLOR: Style = Style { color: true };

#[test]
fn status_of_an_idle_exercise_shows_its_schedule_and_the_last_run_with_figures_and_objectives() {
    let text = render_status(&idle(), RolloutSeen::Read(None), Style::PLAIN);
    let want = "\
Name:             drill
Namespace:        shop
Rollout:          web
Fault:            20% of requests fail (a strategic merge patch of the pod template)
Phase:            Idle: next run at 2026-12-02T02:00:00Z
Schedule:         0 3 * * 1-5 (Europe/Paris), window 02:00-05:00 Mon,Tue
Next run:         2026-12-02T02:00:00Z
Runs:             2 (2 in the history, which keeps 5)

Last run
Run 2: Passed
  Message:          caught by analysis web-7c9b5d-2-1, metric success-rate = 0.81 (condition result[0] >= 0.95)
  Trigger:          Request
  Due:              2026-12-01T10:00:00Z
  Started:          2026-12-01T10:00:01Z
  Ended:            2026-12-01T10:01:10Z
  Faulty revision:  7c9b5d (over stable 6f7d8c)
  Live at:          2026-12-01T10:00:09Z
  Detected at:      2026-12-01T10:00:17Z
  Aborted at:       2026-12-01T10:00:21Z (AnalysisFailed)
  Safe at:          2026-12-01T10:00:22Z
  Time to detect:   8.0s
  Time to safe:     13.0s
  Peak weight:      25%
  Requests:         98 failed of 512 (19.1%)
  Objectives:
    met        mustDetect: wanted caught by analysis or Sluice's checks; got caught by analysis web-7c9b5d-2-1, metric success-rate = 0.81 (condition result[0] >= 0.95)
    NOT MET    maxTimeToSafe: wanted at most 10s; got 13.0s
";
    assert_eq!(text, want, "\n{text}");
}

#[test]
fn status_in_colour_marks_the_phase_result_and_objectives_with_symbols() {
    let text = render_status(&idle(), RolloutSeen::Read(None), COLOR);
    assert!(text.contains("\x1b[32m● Idle\x1b[0m: next run"), "{text}");
    assert!(text.contains("Run 2: \x1b[32m✔ Passed\x1b[0m"), "{text}");
    assert!(
        text.contains("\x1b[32m✔ met    \x1b[0m  mustDetect"),
        "{text}"
    );
    assert!(
        text.contains("\x1b[31m✖ not met\x1b[0m  maxTimeToSafe"),
        "{text}"
    );
    // Colour changes the marks only: the figures read the same.
    let plain_text = render_status(&idle(), RolloutSeen::Read(None), Style::PLAIN);
    for line in [
        "  Time to safe:     13.0s",
        "  Requests:         98 failed of 512",
    ] {
        assert!(
            plain(&text).contains(line) && plain_text.contains(line),
            "{line}"
        );
    }
}

#[test]
fn status_of_a_run_under_way_shows_what_the_rollouts_block_says() {
    let b = block();
    let text = render_status(&running(), RolloutSeen::Read(Some(&b)), Style::PLAIN);
    let want = "\
Phase:            Running: run 3: revision 8d0e1f aborted (AnalysisFailed); waiting for its traffic to go
Schedule:         0 3 * * 1-5 (Europe/Paris), window 02:00-05:00 Mon,Tue
Runs:             3 (2 in the history, which keeps 5)

Run 3 (under way)
  Trigger:          Request
  Due:              2026-12-01T11:00:00Z
  Started:          2026-12-01T11:00:01Z
  Stable revision:  6f7d8c
  Faulty revision:  8d0e1f
  Live at:          2026-12-01T11:00:08Z
  Peak weight:      25%
  Aborted at:       2026-12-01T11:00:19Z (AnalysisFailed)
  Safe at:          not yet
";
    assert!(text.ends_with(want), "\n{text}");
    assert!(
        !text.contains("Last run"),
        "the run under way, not the last"
    );
    let mut ended = block();
    ended.ended = Some(ExerciseEnd {
        result: ExerciseResult::Cancelled,
        message: "cancelled on request".into(),
    });
    let text = render_status(&running(), RolloutSeen::Read(Some(&ended)), Style::PLAIN);
    assert!(
        text.contains("  Ended:            Cancelled: cancelled on request\n"),
        "{text}"
    );
}

#[test]
fn status_of_a_run_under_way_says_why_the_rollout_tells_nothing() {
    let other = ExerciseInForce { run: 2, ..block() };
    for (seen, want) in [
        (
            RolloutSeen::Read(None),
            "web shows no block for this run yet",
        ),
        (
            RolloutSeen::Read(Some(&other)),
            "web shows no block for this run yet",
        ),
        (RolloutSeen::Missing, "web not found"),
        (
            RolloutSeen::Unreadable("forbidden: you may not get rollouts.sluice.dev"),
            "web cannot be read: forbidden: you may not get rollouts.sluice.dev",
        ),
    ] {
        let text = render_status(&running(), seen, Style::PLAIN);
        assert!(
            text.contains(&format!("  Rollout:          {want}\n")),
            "{seen:?}:\n{text}"
        );
        assert!(!text.contains("Live at"), "{text}");
    }
}

#[test]
fn status_of_a_waiting_run_says_it_has_not_started_and_of_a_new_exercise_no_run() {
    let waiting = exercise(json!({
        "observedGeneration": 1, "phase": "Waiting", "message": "run 1 waits: Rollout web is Paused",
        "runs": 1, "current": {"number": 1, "trigger": "Request", "dueAt": "2026-12-01T11:00:00Z"}
    }));
    let text = render_status(&waiting, RolloutSeen::Read(None), Style::PLAIN);
    assert!(
        text.contains("Phase:            Waiting: run 1 waits: Rollout web is Paused\n"),
        "{text}"
    );
    assert!(
        text.ends_with("  Started:          not yet: it waits for the Rollout (see Phase)\n"),
        "{text}"
    );
    let mut new = exercise(json!(null));
    new.status = None;
    new.spec.schedule = None;
    new.spec.window = None;
    let text = render_status(&new, RolloutSeen::Missing, Style::PLAIN);
    assert!(
        text.contains("Phase:            Unknown (not yet seen by Sluice's controller)\n")
            && text.contains(
                "Schedule:         none: runs when asked (kubectl sluice exercise start drill)\n"
            )
            && text.ends_with("\nNo run yet.\n"),
        "{text}"
    );
}

#[test]
fn status_says_when_it_is_older_than_the_spec() {
    let mut ex = idle();
    ex.metadata.generation = Some(2);
    let text = render_status(&ex, RolloutSeen::Read(None), Style::PLAIN);
    assert!(text.contains("Note:             the spec changed since the controller last looked; this status may be old\n"), "{text}");
}

#[test]
fn a_skipped_run_shows_why_and_no_figures() {
    let run: ExerciseRun = serde_json::from_value(skipped_run()).expect("run");
    let text = render_run(&run, Style::PLAIN);
    assert_eq!(
        text,
        "\
Run 1: Skipped
  Message:          skipped: Rollout web is releasing revision 5e6f7a
  Trigger:          Schedule
  Due:              2026-12-01T03:00:00Z
  Ended:            2026-12-01T03:00:00Z
"
    );
}

#[test]
fn a_run_without_request_counts_says_why() {
    let mut run: ExerciseRun = serde_json::from_value(passed_run()).expect("run");
    run.requests = None;
    run.failed_requests = None;
    run.requests_message = Some("Prometheus did not answer within 10s".into());
    let text = render_run(&run, Style::PLAIN);
    assert!(
        text.contains("  Requests:         not counted: Prometheus did not answer within 10s\n"),
        "{text}"
    );
    run.requests_message = None;
    assert!(render_run(&run, Style::PLAIN).contains("  Requests:         not counted\n"));
}

#[test]
fn a_started_run_without_figures_says_none_were_recorded_instead_of_dashes() {
    let run: ExerciseRun = serde_json::from_value(json!({
        "number": 4, "trigger": "Request", "startedAt": "2026-12-01T12:00:01Z",
        "endedAt": "2026-12-01T12:00:07Z", "result": "Cancelled",
        "message": "cancelled on request", "stableRevision": "6f7d8c"
    }))
    .expect("run");
    assert_eq!(
        render_run(&run, Style::PLAIN),
        "\
Run 4: Cancelled
  Message:          cancelled on request
  Trigger:          Request
  Started:          2026-12-01T12:00:01Z
  Ended:            2026-12-01T12:00:07Z
  Faulty revision:  not recorded (stable 6f7d8c)
  Figures:          none recorded
"
    );
}

#[test]
fn history_is_a_table_newest_first_with_the_run_under_way_on_top() {
    let text = render_history(&running(), Style::PLAIN);
    let want = "\
RUN  TRIGGER   DUE/STARTED               RESULT   DETECT  SAFE   PEAK  FAILED/ALL  MESSAGE
3    Request   2026-12-01T11:00:01Z      Running  -       -      -     -
2    Request   2026-12-01T10:00:01Z      Passed   8.0s    13.0s  25%   98/512      caught by analysis web-7c9b5d-2-1, metric success-rate = 0.81 (condition result[0] >= 0.95)
1    Schedule  due 2026-12-01T03:00:00Z  Skipped  -       -      -     -           skipped: Rollout web is releasing revision 5e6f7a
";
    assert_eq!(text, want, "\n{text}");
}

#[test]
fn history_in_colour_paints_the_result_column_and_keeps_the_columns_aligned() {
    let coloured = render_history(&running(), COLOR);
    assert!(coloured.contains("\x1b[32mPassed "), "{coloured}");
    assert!(coloured.contains("\x1b[33mSkipped"), "{coloured}");
    assert!(coloured.contains("\x1b[33mRunning"), "{coloured}");
    assert!(!coloured.lines().next().unwrap_or("").contains('\x1b'));
    assert_eq!(plain(&coloured), render_history(&running(), Style::PLAIN));
    let mut failed = idle();
    if let Some(s) = failed.status.as_mut() {
        s.history[0].result = Some(ExerciseResult::Failed);
    }
    assert!(render_history(&failed, COLOR).contains("\x1b[31mFailed "));
}

#[test]
fn history_of_an_exercise_that_never_ran() {
    let ex = exercise(json!({"observedGeneration": 1, "phase": "Idle", "runs": 0}));
    assert_eq!(
        render_history(&ex, Style::PLAIN),
        "exercise drill has no runs yet\n"
    );
}

#[test]
fn a_json_patch_fault_without_description_is_named_by_its_kind() {
    let mut ex = idle();
    ex.spec.fault.description = None;
    ex.spec.fault.strategic_merge_patch = None;
    ex.spec.fault.json_patch = Some(json!([]));
    assert_eq!(fault_words(&ex), "a JSON patch of the pod template");
}
