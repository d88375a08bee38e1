//! A run's objectives judged against its figures, pure.

use crate::api::duration::parse_duration;
use crate::api::exercise::{ExerciseRun, ObjectiveResult, Objectives};

const NOT_MEASURED: &str = "not measured";

/// Each objective `o` sets, judged on `run`. An objective whose figure was not measured is not
/// met: the run cannot show it.
pub fn judge(o: &Objectives, run: &ExerciseRun) -> Vec<ObjectiveResult> {
    let mut out = Vec::new();
    if o.must_detect {
        let caught = detected(run);
        out.push(ObjectiveResult {
            name: "mustDetect".into(),
            want: "caught by analysis or Sluice's checks".into(),
            got: how_caught(run),
            met: caught,
        });
    }
    if let Some(max) = &o.max_time_to_detect {
        out.push(within(
            "maxTimeToDetect",
            &max.0,
            run.time_to_detect.as_deref(),
        ));
    }
    if let Some(max) = &o.max_time_to_safe {
        out.push(within("maxTimeToSafe", &max.0, run.time_to_safe.as_deref()));
    }
    if let Some(max) = o.max_failed_requests {
        let got = run.failed_requests;
        out.push(ObjectiveResult {
            name: "maxFailedRequests".into(),
            want: format!("at most {max}"),
            got: got.map_or_else(|| not_measured(run), |n| n.to_string()),
            met: got.is_some_and(|n| n <= max),
        });
    }
    out
}

fn not_measured(run: &ExerciseRun) -> String {
    match &run.requests_message {
        Some(why) => format!("{NOT_MEASURED}: {why}"),
        None => NOT_MEASURED.into(),
    }
}

/// Whether the release was caught by Sluice (its analysis, pod checks or progress deadline).
fn detected(run: &ExerciseRun) -> bool {
    matches!(
        run.abort_cause.as_deref(),
        Some("AnalysisFailed" | "PodsFailing" | "ProgressDeadline")
    )
}

/// What stopped the faulty revision, in words.
pub fn how_caught(run: &ExerciseRun) -> String {
    let a = run.analysis.as_ref();
    match run.abort_cause.as_deref() {
        Some("AnalysisFailed") => match a {
            Some(a) => format!(
                "caught by analysis {}{}{}",
                a.run,
                a.metric
                    .as_ref()
                    .map(|m| format!(", metric {m}"))
                    .unwrap_or_default(),
                match (&a.value, &a.condition) {
                    (Some(v), Some(c)) => format!(" = {v} (condition {c})"),
                    (Some(v), None) => format!(" = {v}"),
                    _ => String::new(),
                }
            ),
            None => "caught by analysis".into(),
        },
        Some("PodsFailing") => {
            "caught by Sluice's pod checks (the revision's pods cannot run)".into()
        }
        Some("ProgressDeadline") => "caught by the progress deadline".into(),
        Some("SafetyStop") => "not caught: the safety stop ended it before promotion".into(),
        Some("Request") => "not caught by Sluice: a person aborted it".into(),
        _ => "not caught".into(),
    }
}

fn within(name: &str, max: &str, got: Option<&str>) -> ObjectiveResult {
    let limit = parse_duration(max).ok();
    let value = got.and_then(|g| parse_duration(g).ok());
    ObjectiveResult {
        name: name.into(),
        want: format!("at most {max}"),
        got: got.map_or(NOT_MEASURED.into(), str::to_string),
        met: matches!((value, limit), (Some(v), Some(l)) if v <= l),
    }
}
