//! What `exercise start` and `exercise cancel` decide from the RolloutExercise as read, and
//! how `start` follows a run to its end, pure: no clock (the time is passed in), no client.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::view::{pad_visible, phase_word, time};
use crate::api::exercise::{ExercisePhase, ExerciseResult, ExerciseRun, RolloutExercise};
use crate::cli::tree::Style;
use crate::exercise::run::{CANCEL_REQUESTED, RUN_REQUESTED};

/// How `exercise start` ended, as its exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The run was asked for and `--no-wait` was given.
    Asked,
    Passed,
    Failed,
    /// Skipped or Cancelled: the rehearsal did not happen (or not to its end).
    NotRun,
    /// Still under way at `--timeout`.
    TimedOut,
}

impl StartOutcome {
    /// The documented exit codes: 0 Passed (or asked with `--no-wait`), 2 Failed, 3 Skipped or
    /// Cancelled, 4 still under way at `--timeout`; 1 is kept for errors.
    pub fn exit_code(self) -> u8 {
        match self {
            StartOutcome::Asked | StartOutcome::Passed => 0,
            StartOutcome::Failed => 2,
            StartOutcome::NotRun => 3,
            StartOutcome::TimedOut => 4,
        }
    }

    pub fn exit(self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    pub fn of(result: Option<ExerciseResult>) -> StartOutcome {
        match result {
            Some(ExerciseResult::Passed) => StartOutcome::Passed,
            Some(ExerciseResult::Failed) | None => StartOutcome::Failed,
            Some(ExerciseResult::Skipped | ExerciseResult::Cancelled) => StartOutcome::NotRun,
        }
    }
}

/// The InvalidSpec message of an exercise whose current spec the controller found invalid.
pub fn invalid(ex: &RolloutExercise) -> Option<String> {
    let st = ex.status.as_ref()?;
    let current = st.observed_generation == ex.metadata.generation;
    (current && st.phase == Some(ExercisePhase::Invalid)).then(|| {
        st.conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec" && c.status == "True")
            .map(|c| c.message.clone())
            .or_else(|| st.message.clone())
            .unwrap_or_else(|| "InvalidSpec".into())
    })
}

/// What `exercise start` does with the exercise as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// It cannot run: the InvalidSpec message.
    Invalid(String),
    /// A run is under way (or waits to start): follow it instead of asking again.
    Follow { run: i32, line: String },
    /// Ask for a run; the runs so far tell ours apart.
    Ask { runs_before: i32 },
}

pub fn plan_start(ex: &RolloutExercise) -> StartPlan {
    if let Some(message) = invalid(ex) {
        return StartPlan::Invalid(message);
    }
    let st = ex.status.clone().unwrap_or_default();
    match &st.current {
        Some(run) => {
            let doing = match &st.message {
                Some(m) => format!("{}: {m}", phase_word(Style::PLAIN, st.phase)),
                None => phase_word(Style::PLAIN, st.phase),
            };
            StartPlan::Follow {
                run: run.number,
                line: format!(
                    "exercise {}: run {} ({}) is already under way ({doing}); following it instead of asking for another\n",
                    ex.name_any(),
                    run.number,
                    run.trigger
                ),
            }
        }
        None => StartPlan::Ask {
            runs_before: st.runs,
        },
    }
}

/// The merge patch of `exercise start` and `cancel`: one annotation of the metadata, with
/// the resourceVersion read (a change since makes the API server refuse it).
pub fn annotation_patch(ex: &RolloutExercise, key: &str, at: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "resourceVersion": ex.resource_version(),
            "annotations": {key: at.to_string()}
        }
    })
}

/// What `exercise cancel` does with the exercise as read at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelPlan {
    /// Nothing runs: nothing to write. The line says so.
    Nothing(String),
    /// A run waits to start: the controller cancels only a started run.
    Waiting(String),
    /// A cancel at or after the run's start is already there.
    Already(String),
    /// Write `CANCEL_REQUESTED` = `at`, then print `line`.
    Cancel { at: Timestamp, line: String },
}

pub fn plan_cancel(ex: &RolloutExercise, now: Timestamp) -> CancelPlan {
    let name = ex.name_any();
    let st = ex.status.clone().unwrap_or_default();
    let Some(run) = &st.current else {
        return CancelPlan::Nothing(format!(
            "exercise {name} has no run under way: nothing to cancel; nothing written\n"
        ));
    };
    let n = run.number;
    let Some(started) = run.started_at.as_ref().map(|t| t.0) else {
        return CancelPlan::Waiting(format!(
            "run {n} of exercise {name} has not started ({}); Sluice cancels only a run that has started, so nothing was written: cancel it once it runs",
            st.message.clone().unwrap_or_else(|| "it waits".into())
        ));
    };
    let asked = ex
        .annotations()
        .get(CANCEL_REQUESTED)
        .and_then(|a| a.parse::<Timestamp>().ok());
    if let Some(at) = asked.filter(|at| *at >= started) {
        return CancelPlan::Already(format!(
            "run {n} of exercise {name}: a cancel was already asked for at {at:.0}; Sluice ends it as Cancelled; nothing written\n"
        ));
    }
    let rollout = &ex.spec.rollout_name;
    let stable = run
        .stable_revision
        .as_deref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let measuring = if st.phase == Some(ExercisePhase::Measuring) {
        " The faulty revision is already off traffic; the run ends without its request counts."
    } else {
        ""
    };
    CancelPlan::Cancel {
        // A clock behind the controller's would otherwise ask for nothing.
        at: now.max(started),
        line: format!(
            "exercise {name}: cancel of run {n} asked for ({CANCEL_REQUESTED}). Sluice ends it as Cancelled (no objectives judged) and Rollout {rollout} goes back to its stable revision{stable}: the faulty revision's traffic goes back to stable, then its pods go.{measuring}\n"
        ),
    }
}

/// Which run `start` follows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Want {
    /// The run asked for with `RUN_REQUESTED` = `at`, once the controller takes it.
    Request {
        at: String,
        runs_before: i32,
    },
    Run(i32),
}

/// How following ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// The run is in the history with its result.
    Finished(Box<ExerciseRun>),
    /// The exercise cannot run (the InvalidSpec message).
    Invalid(String),
    /// The run is neither under way nor in the history (it was pushed out of it).
    Lost(i32),
}

/// What one look at the exercise gave: lines to print, and the end if it came.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    pub lines: Vec<String>,
    pub end: Option<End>,
}

/// Follows one run through the exercise's status, printing each change of phase or message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follow {
    want: Want,
    last: Option<(Option<ExercisePhase>, Option<String>)>,
}

impl Follow {
    /// The run asked for with `RUN_REQUESTED` = `at`.
    pub fn request(at: &str, runs_before: i32) -> Follow {
        Follow {
            want: Want::Request {
                at: at.to_string(),
                runs_before,
            },
            last: None,
        }
    }

    /// Run `number`, already under way.
    pub fn run(number: i32) -> Follow {
        Follow {
            want: Want::Run(number),
            last: None,
        }
    }

    /// The run followed, once known.
    pub fn run_number(&self) -> Option<i32> {
        match self.want {
            Want::Run(n) => Some(n),
            Want::Request { .. } => None,
        }
    }

    /// Looks at the exercise as read `elapsed` after the command began.
    pub fn see(&mut self, ex: &RolloutExercise, elapsed: Duration, style: Style) -> Step {
        let st = ex.status.clone().unwrap_or_default();
        let mut step = Step::default();
        if let Want::Request { at, runs_before } = &mut self.want {
            let annotation = ex.annotations().get(RUN_REQUESTED);
            if let Some(other) = annotation.filter(|a| *a != at) {
                step.lines.push(format!(
                    "another request ({RUN_REQUESTED}: {other}) replaced this one; following that\n"
                ));
                *at = other.clone();
            }
            if st.last_request.as_deref() == Some(at.as_str())
                && let Some(n) = requested_run(&st, *runs_before)
            {
                self.want = Want::Run(n);
            }
        }
        let Want::Run(n) = self.want else {
            if let Some(message) = invalid(ex) {
                step.end = Some(End::Invalid(message));
            }
            return step;
        };
        if let Some(run) = st.history.iter().find(|r| r.number == n) {
            step.end = Some(End::Finished(Box::new(run.clone())));
            return step;
        }
        if st.current.as_ref().map(|r| r.number) != Some(n) {
            step.end = Some(End::Lost(n));
            return step;
        }
        let now = (st.phase, st.message.clone());
        if self.last.as_ref() != Some(&now) {
            step.lines.push(format!(
                "{:>7}  {}  {}\n",
                elapsed_words(elapsed),
                pad_visible(&phase_word(style, st.phase), 9),
                st.message.clone().unwrap_or_default()
            ));
            self.last = Some(now);
        }
        if let Some(message) = invalid(ex) {
            step.end = Some(End::Invalid(format!(
                "{message} (run {n} stays under way until the spec is fixed)"
            )));
        }
        step
    }
}

/// The run the request made: the first run numbered after `runs_before` started by a
/// request, under way or finished.
fn requested_run(
    st: &crate::api::exercise::RolloutExerciseStatus,
    runs_before: i32,
) -> Option<i32> {
    st.current
        .iter()
        .chain(st.history.iter())
        .filter(|r| r.trigger == "Request" && r.number > runs_before)
        .map(|r| r.number)
        .min()
}

/// `+4s`, `+1m05s`.
pub fn elapsed_words(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("+{s}s")
    } else {
        format!("+{}m{:02}s", s / 60, s % 60)
    }
}

/// What `start` says when `--timeout` runs out: the run goes on, or the request waits to be
/// taken.
pub fn timed_out_line(name: &str, run: Option<i32>, timeout: Duration) -> String {
    let after = elapsed_words(timeout);
    let after = after.trim_start_matches('+');
    match run {
        Some(n) => format!(
            "exercise {name}: run {n} is still under way after {after} (--timeout); it goes on: kubectl sluice exercise status {name}, or cancel {name}\n"
        ),
        None => format!(
            "exercise {name}: Sluice has not taken the request within {after} (--timeout); it stays asked for and runs once the controller takes it: kubectl sluice exercise status {name}\n"
        ),
    }
}

/// The first line of `start`: what was asked for.
pub fn asked_line(ex: &RolloutExercise, at: Timestamp) -> String {
    format!(
        "exercise {}: run asked for ({RUN_REQUESTED}: {}) on Rollout {}\n",
        ex.name_any(),
        time(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
        ex.spec.rollout_name
    )
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
