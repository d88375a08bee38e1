//! `kubectl sluice exercise status` and `history`, and the result `exercise start` ends with,
//! as text: pure functions of the RolloutExercise (and of its Rollout's `status.exercise`) as
//! read. Colour and symbols on a terminal, plain words when piped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::exercise::{
    DEFAULT_HISTORY_LIMIT, ExerciseInForce, ExercisePhase, ExerciseResult, ExerciseRun,
    ObjectiveResult, RolloutExercise,
};
use crate::cli::tree::Style;

/// What the exercise's Rollout says about the run under way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RolloutSeen<'a> {
    /// Read: its `status.exercise` block, when it has one.
    Read(Option<&'a ExerciseInForce>),
    /// There is no Rollout of that name.
    Missing,
    /// It could not be read: why.
    Unreadable(&'a str),
}

/// Labels and values, each label padded to one width.
#[derive(Default)]
struct Lines {
    out: String,
}

impl Lines {
    fn line(&mut self, indent: &str, label: &str, value: impl AsRef<str>) {
        let label = format!("{label}:");
        self.out.push_str(&format!(
            "{indent}{label:<18}{}\n",
            value.as_ref().trim_end()
        ));
    }

    fn text(&mut self, text: &str) {
        self.out.push_str(text);
    }
}

/// A time as RFC 3339 to the second.
pub fn time(t: &Time) -> String {
    format!("{:.0}", t.0)
}

fn opt_time(t: &Option<Time>) -> Option<String> {
    t.as_ref().map(time)
}

/// `text` padded to `width` visible characters (escape codes take no room).
pub fn pad_visible(text: &str, width: usize) -> String {
    let mut visible = 0;
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, _) => visible += 1,
        }
    }
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

fn symbol_word(style: Style, code: &str, sym: &str, word: &str) -> String {
    if style.color {
        style.paint(code, &format!("{sym} {word}"))
    } else {
        word.to_string()
    }
}

/// A run's result: Passed, Failed, Skipped, Cancelled; `Running` while it has none.
pub fn result_word(style: Style, result: Option<ExerciseResult>) -> String {
    let (code, sym) = match result {
        Some(ExerciseResult::Passed) => ("32", "✔"),
        Some(ExerciseResult::Failed) => ("31", "✖"),
        Some(ExerciseResult::Skipped) => ("33", "↷"),
        Some(ExerciseResult::Cancelled) => ("33", "⊘"),
        None => ("33", "◌"),
    };
    symbol_word(
        style,
        code,
        sym,
        result.map_or("Running", ExerciseResult::as_str),
    )
}

/// The exercise's phase word.
pub fn phase_word(style: Style, phase: Option<ExercisePhase>) -> String {
    let (code, sym, word) = match phase {
        Some(ExercisePhase::Idle) => ("32", "●", "Idle"),
        Some(ExercisePhase::Waiting) => ("33", "◌", "Waiting"),
        Some(ExercisePhase::Running) => ("33", "◌", "Running"),
        Some(ExercisePhase::Measuring) => ("33", "◌", "Measuring"),
        Some(ExercisePhase::Invalid) => ("31", "✖", "Invalid"),
        None => ("2", "?", "Unknown"),
    };
    symbol_word(style, code, sym, word)
}

/// What the fault is, in words.
pub fn fault_words(ex: &RolloutExercise) -> String {
    let f = &ex.spec.fault;
    let how = if f.json_patch.is_some() {
        "a JSON patch of the pod template"
    } else {
        "a strategic merge patch of the pod template"
    };
    match &f.description {
        Some(d) => format!("{d} ({how})"),
        None => how.to_string(),
    }
}

/// When the exercise runs: its schedule, time zone and window, or "when asked".
fn schedule_words(ex: &RolloutExercise) -> String {
    let spec = &ex.spec;
    let Some(schedule) = &spec.schedule else {
        return format!(
            "none: runs when asked (kubectl sluice exercise start {})",
            ex.name_any()
        );
    };
    let mut s = format!(
        "{schedule} ({})",
        spec.time_zone.as_deref().unwrap_or("UTC")
    );
    if let Some(w) = &spec.window {
        let days: Vec<String> = w.days.iter().map(|d| format!("{d:?}")).collect();
        let days = if days.is_empty() {
            "every day".to_string()
        } else {
            days.join(",")
        };
        s.push_str(&format!(", window {}-{} {days}", w.start, w.end));
    }
    if spec.suspend == Some(true) {
        s.push_str(", suspended");
    }
    s
}

/// `exercise status NAME` as text.
pub fn render_status(ex: &RolloutExercise, rollout: RolloutSeen<'_>, style: Style) -> String {
    let st = ex.status.clone().unwrap_or_default();
    let mut l = Lines::default();
    l.line("", "Name", ex.name_any());
    l.line("", "Namespace", ex.namespace().unwrap_or_default());
    l.line("", "Rollout", &ex.spec.rollout_name);
    l.line("", "Fault", fault_words(ex));
    let phase = match (st.phase, &st.message) {
        (None, _) => "Unknown (not yet seen by Sluice's controller)".to_string(),
        (p, Some(m)) => format!("{}: {m}", phase_word(style, p)),
        (p, None) => phase_word(style, p),
    };
    l.line("", "Phase", phase);
    if st.observed_generation.is_some() && st.observed_generation != ex.metadata.generation {
        l.line(
            "",
            "Note",
            "the spec changed since the controller last looked; this status may be old",
        );
    }
    l.line("", "Schedule", schedule_words(ex));
    if let Some(next) = opt_time(&st.next_run_at) {
        l.line("", "Next run", next);
    }
    let limit = ex.spec.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    l.line(
        "",
        "Runs",
        format!(
            "{} ({} in the history, which keeps {limit})",
            st.runs,
            st.history.len()
        ),
    );
    match (&st.current, st.history.first()) {
        (Some(run), _) => {
            l.text(&format!("\nRun {} (under way)\n", run.number));
            under_way(&mut l, run, &ex.spec.rollout_name, rollout);
        }
        (None, Some(last)) => {
            l.text("\nLast run\n");
            l.text(&render_run(last, style));
        }
        (None, None) => l.text("\nNo run yet.\n"),
    }
    l.out
}

/// The run under way: its own fields, then what the Rollout's block says.
fn under_way(l: &mut Lines, run: &ExerciseRun, rollout: &str, seen: RolloutSeen<'_>) {
    let i = "  ";
    l.line(i, "Trigger", &run.trigger);
    if let Some(due) = opt_time(&run.due_at) {
        l.line(i, "Due", due);
    }
    let Some(started) = opt_time(&run.started_at) else {
        l.line(
            i,
            "Started",
            "not yet: it waits for the Rollout (see Phase)",
        );
        return;
    };
    l.line(i, "Started", started);
    let stable = run.stable_revision.clone().unwrap_or_else(|| "-".into());
    l.line(i, "Stable revision", stable);
    let block = match seen {
        RolloutSeen::Read(Some(b)) if b.run == run.number => b,
        RolloutSeen::Read(_) => {
            l.line(
                i,
                "Rollout",
                format!("{rollout} shows no block for this run yet"),
            );
            return;
        }
        RolloutSeen::Missing => {
            l.line(i, "Rollout", format!("{rollout} not found"));
            return;
        }
        RolloutSeen::Unreadable(why) => {
            l.line(i, "Rollout", format!("{rollout} cannot be read: {why}"));
            return;
        }
    };
    let not_yet = || "not yet".to_string();
    let faulty = block
        .revision
        .clone()
        .unwrap_or_else(|| "not built yet".into());
    l.line(i, "Faulty revision", faulty);
    if let Some(why) = &block.refused {
        l.line(i, "Refused", why);
    }
    l.line(
        i,
        "Live at",
        opt_time(&block.live_at).unwrap_or_else(not_yet),
    );
    let peak = block.peak_weight.map_or("-".into(), |w| format!("{w}%"));
    l.line(i, "Peak weight", peak);
    let aborted = match (opt_time(&block.aborted_at), &block.abort_cause) {
        (Some(at), Some(cause)) => format!("{at} ({cause})"),
        (Some(at), None) => at,
        (None, _) => not_yet(),
    };
    l.line(i, "Aborted at", aborted);
    l.line(
        i,
        "Safe at",
        opt_time(&block.safe_at).unwrap_or_else(not_yet),
    );
    if let Some(end) = &block.ended {
        l.line(
            i,
            "Ended",
            format!("{}: {}", end.result.as_str(), end.message),
        );
    }
}

/// One finished run with its figures and objectives (what `status` shows of the last run,
/// and what `start` ends with).
pub fn render_run(run: &ExerciseRun, style: Style) -> String {
    let mut l = Lines::default();
    let i = "  ";
    l.text(&format!(
        "Run {}: {}\n",
        run.number,
        result_word(style, run.result)
    ));
    if let Some(m) = &run.message {
        l.line(i, "Message", m);
    }
    l.line(i, "Trigger", &run.trigger);
    for (label, t) in [
        ("Due", &run.due_at),
        ("Started", &run.started_at),
        ("Ended", &run.ended_at),
    ] {
        if let Some(t) = opt_time(t) {
            l.line(i, label, t);
        }
    }
    if run.started_at.is_none() {
        return l.out;
    }
    let revision = match (&run.revision, &run.stable_revision) {
        (Some(r), Some(s)) => format!("{r} (over stable {s})"),
        (None, Some(s)) => format!("not recorded (stable {s})"),
        (Some(r), None) => r.clone(),
        (None, None) => "not recorded".into(),
    };
    l.line(i, "Faulty revision", revision);
    if recorded(run) {
        moments(&mut l, run);
        figures(&mut l, run);
    } else {
        l.line(i, "Figures", "none recorded");
    }
    if !run.objectives.is_empty() {
        l.text(&format!("{i}Objectives:\n"));
        for o in &run.objectives {
            l.text(&objective(o, style));
        }
    }
    l.out
}

/// Whether the run has any of the moments and figures a release gives.
fn recorded(run: &ExerciseRun) -> bool {
    run.revision.is_some()
        || run.live_at.is_some()
        || run.aborted_at.is_some()
        || run.safe_at.is_some()
        || run.peak_weight.is_some()
        || run.requests.is_some()
        || run.requests_message.is_some()
}

/// When it went live, was detected, aborted and safe.
fn moments(l: &mut Lines, run: &ExerciseRun) {
    let i = "  ";
    let or_dash = |t: &Option<Time>| opt_time(t).unwrap_or_else(|| "-".into());
    l.line(i, "Live at", or_dash(&run.live_at));
    l.line(i, "Detected at", or_dash(&run.detected_at));
    let aborted = match (opt_time(&run.aborted_at), &run.abort_cause) {
        (Some(at), Some(cause)) => format!("{at} ({cause})"),
        (Some(at), None) => at,
        (None, _) => "-".into(),
    };
    l.line(i, "Aborted at", aborted);
    l.line(i, "Safe at", or_dash(&run.safe_at));
}

/// Time to detect and to safe, peak weight, requests.
fn figures(l: &mut Lines, run: &ExerciseRun) {
    let i = "  ";
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    l.line(i, "Time to detect", dash(&run.time_to_detect));
    l.line(i, "Time to safe", dash(&run.time_to_safe));
    let peak = run.peak_weight.map_or("-".into(), |w| format!("{w}%"));
    l.line(i, "Peak weight", peak);
    let requests = match (run.failed_requests, run.requests, &run.requests_message) {
        (Some(f), Some(all), _) => format!("{f} failed of {all}{}", share(f, all)),
        (_, _, Some(why)) => format!("not counted: {why}"),
        _ => "not counted".into(),
    };
    l.line(i, "Requests", requests);
}

/// ` (12.5%)`, or nothing of no requests.
fn share(failed: i64, all: i64) -> String {
    if all <= 0 {
        return String::new();
    }
    format!(" ({:.1}%)", failed as f64 * 100.0 / all as f64)
}

fn objective(o: &ObjectiveResult, style: Style) -> String {
    let mark = match (style.color, o.met) {
        (true, true) => style.paint("32", "✔ met    "),
        (true, false) => style.paint("31", "✖ not met"),
        (false, true) => "met      ".into(),
        (false, false) => "NOT MET  ".into(),
    };
    format!("    {mark}  {}: wanted {}; got {}\n", o.name, o.want, o.got)
}

/// One row of `exercise history`.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    cells: Vec<String>,
    result: Option<ExerciseResult>,
}

const HISTORY_HEADER: [&str; 9] = [
    "RUN",
    "TRIGGER",
    "DUE/STARTED",
    "RESULT",
    "DETECT",
    "SAFE",
    "PEAK",
    "FAILED/ALL",
    "MESSAGE",
];
const RESULT_COLUMN: usize = 3;

fn row(run: &ExerciseRun, phase: Option<ExercisePhase>) -> Row {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let when = match (opt_time(&run.started_at), opt_time(&run.due_at)) {
        (Some(s), _) => s,
        (None, Some(d)) => format!("due {d}"),
        (None, None) => "-".into(),
    };
    let result = match (run.result, phase) {
        (Some(r), _) => r.as_str().to_string(),
        (None, Some(p)) => format!("{p:?}"),
        (None, None) => "Running".into(),
    };
    Row {
        cells: vec![
            run.number.to_string(),
            run.trigger.clone(),
            when,
            result,
            dash(&run.time_to_detect),
            dash(&run.time_to_safe),
            run.peak_weight.map_or("-".into(), |w| format!("{w}%")),
            match (run.failed_requests, run.requests) {
                (Some(f), Some(a)) => format!("{f}/{a}"),
                _ => "-".into(),
            },
            run.message.clone().unwrap_or_default(),
        ],
        result: run.result,
    }
}

/// `exercise history NAME` as a table, newest first; the run under way on top.
pub fn render_history(ex: &RolloutExercise, style: Style) -> String {
    let st = ex.status.clone().unwrap_or_default();
    let mut runs: Vec<(&ExerciseRun, Option<ExercisePhase>)> =
        st.history.iter().map(|r| (r, None)).collect();
    if let Some(c) = &st.current {
        runs.push((c, st.phase));
    }
    if runs.is_empty() {
        return format!("exercise {} has no runs yet\n", ex.name_any());
    }
    runs.sort_by_key(|(r, _)| std::cmp::Reverse(r.number));
    let rows: Vec<Row> = runs.iter().map(|(r, p)| row(r, *p)).collect();
    table(&rows, style)
}

fn table(rows: &[Row], style: Style) -> String {
    let header: Vec<String> = HISTORY_HEADER.iter().map(|s| s.to_string()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.cells[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String], result: Option<Option<ExerciseResult>>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let text = format!("{cell:<w$}", w = widths[c]);
                match result {
                    Some(r) if c == RESULT_COLUMN && style.color => {
                        style.paint(result_code(r), &text)
                    }
                    _ => text,
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header, None);
    for r in rows {
        out.push_str(&line(&r.cells, Some(r.result)));
    }
    out
}

fn result_code(r: Option<ExerciseResult>) -> &'static str {
    match r {
        Some(ExerciseResult::Passed) => "32",
        Some(ExerciseResult::Failed) => "31",
        _ => "33",
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
