//! The exercise controller's decisions, pure: `(exercise, its Rollout, what was measured, now)
//! -> Decision`. It reads no clock and no client; the exercise's status is its memory, so a
//! restart (even a SIGKILL between two writes) resumes where it was.
//!
//! A run goes through:
//!
//! 1. **due**: created without a schedule (once), asked for (`sluice.dev/run-requested-at`), or
//!    a scheduled time. A scheduled run finds the Rollout busy or outside its window: skipped,
//!    and recorded as such; an asked-for run waits, saying why.
//! 2. **start**: the exercise's status takes the run first, then the Rollout's status gets the
//!    exercise block (`status.exercise`): the Rollout controller releases the faulty revision
//!    through the Rollout's steps and analysis, and never promotes it.
//! 3. **running**: until the Rollout's block says the faulty revision is off traffic after an
//!    abort (`safeAt`); a cancel request, a real release, a Rollout gone or `maxDuration`
//!    passed end it sooner.
//! 4. **measuring** (with `spec.requests`): the requests the faulty revision served are
//!    counted once Prometheus has scraped past `safeAt` (`settle`).
//! 5. **end**: the run goes to the history with its figures and objectives judged, then the
//!    Rollout's block is marked ended; the Rollout controller drops it and goes back to its
//!    stable revision without steps.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::duration::parse_duration;
use crate::api::exercise::{
    DEFAULT_HISTORY_LIMIT, DEFAULT_MAX_DURATION, ExerciseEnd, ExerciseInForce, ExercisePhase,
    ExerciseResult, ExerciseRun, ObjectiveResult, RolloutExercise, RolloutExerciseStatus,
};
use crate::api::rollout::{Rollout, RolloutPhase};

use super::check::{Checked, check};

/// The annotation `kubectl sluice exercise start` sets (an RFC 3339 time): a run is asked for
/// each time it changes.
pub const RUN_REQUESTED: &str = "sluice.dev/run-requested-at";
/// The annotation `kubectl sluice exercise cancel` sets (an RFC 3339 time): the run under way,
/// if it started before that time, is cancelled.
pub const CANCEL_REQUESTED: &str = "sluice.dev/cancel-requested-at";

/// How long Prometheus gets after `safeAt` before the requests are counted, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// How long a run just started may go without its block showing in the cached Rollout
/// before the block is written again.
const START_GRACE: i64 = 10;
/// How often a run in progress (or waiting) is looked at: it reads only caches.
const POLL: Duration = Duration::from_secs(2);

/// What the exercise controller saw, besides the exercise and the clock.
#[derive(Clone, Debug, Default)]
pub struct Seen<'a> {
    /// The Rollout, when it exists and reads.
    pub rollout: Option<&'a Rollout>,
    /// The first failed measurement of the analysis the Rollout's block names.
    pub first_failure: Option<Timestamp>,
    /// The faulty revision's requests (all, failed), when they were counted: `Err` says why
    /// they could not be.
    pub requests: Option<Result<(i64, i64), String>>,
}

/// A write to the Rollout's status.
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutWrite {
    /// Put this block in `status.exercise` (the Rollout must still be as it was read).
    Start(Box<ExerciseInForce>),
    /// Mark the block of run `run` ended.
    End { run: i32, end: ExerciseEnd },
}

/// What one reconcile of an exercise decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub status: RolloutExerciseStatus,
    /// Written after the exercise's status (see the module's docs for the order).
    pub rollout: Option<RolloutWrite>,
    /// Events on the exercise: (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
    /// Count the requests, then decide again with them.
    pub measure: bool,
    /// A run finished by this decision (for metrics).
    pub finished: Option<ExerciseRun>,
    pub requeue: Option<Duration>,
}

impl Decision {
    fn event(&mut self, warning: bool, reason: &'static str, message: impl Into<String>) {
        self.events.push((warning, reason, message.into()));
    }
    fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

/// Every Event reason an exercise can get.
pub const EVENT_REASONS: &[&str] = &[
    "InvalidSpec",
    "ExerciseStarted",
    "ExerciseWaiting",
    "ExerciseSkipped",
    "ExercisePassed",
    "ExerciseFailed",
    "ExerciseCancelled",
];

/// Decides one reconcile of `ex`.
pub fn decide(ex: &RolloutExercise, seen: &Seen, now: Timestamp) -> Decision {
    let mut d = Decision {
        status: ex.status.clone().unwrap_or_default(),
        ..Decision::default()
    };
    d.status.observed_generation = ex.metadata.generation;
    let checked = match check(ex, seen.rollout, now) {
        Ok(c) => c,
        Err(problem) => {
            if let Some(run) = d.status.current.clone().filter(|r| r.started_at.is_some()) {
                // A run under way is not left releasing a fault nobody follows.
                let why = format!("the exercise's spec became invalid: {problem}");
                let run = with_figures(ex, seen, run);
                end(ex, seen, run, ExerciseResult::Failed, &why, &mut d, now);
            }
            invalid(ex, &mut d, &problem.to_string(), now);
            return d;
        }
    };
    valid(&mut d, ex.metadata.generation, now);
    orphan_block(ex, seen, &mut d);
    match d.status.current.clone() {
        Some(run) if run.started_at.is_some() => progress(ex, &checked, seen, run, &mut d, now),
        Some(run) if cancelled(ex, run.due_at.as_ref()) => {
            let why = "cancelled on request before it started";
            end(ex, seen, run, ExerciseResult::Cancelled, why, &mut d, now);
        }
        Some(run) => try_start(ex, &checked, seen, run, &mut d, now),
        None => match due(ex, &checked, &d.status, now) {
            Some(run) => {
                d.status.runs = run.number;
                try_start(ex, &checked, seen, run, &mut d, now);
            }
            None => idle(&checked, &mut d),
        },
    }
    if let Some(next) = checked.next_run_at {
        d.status.next_run_at = Some(Time(next));
        d.requeue_in(until(now, next));
    } else {
        d.status.next_run_at = None;
    }
    d
}

fn invalid(ex: &RolloutExercise, d: &mut Decision, message: &str, now: Timestamp) {
    let before = ex.status.as_ref().and_then(|s| s.message.clone());
    let message = format!("InvalidSpec: {message}");
    if before.as_deref() != Some(message.as_str()) {
        d.event(true, "InvalidSpec", message.clone());
    }
    crate::rollout::conditions::set(
        &mut d.status.conditions,
        "InvalidSpec",
        true,
        "InvalidSpec",
        &message,
        ex.metadata.generation,
        now,
    );
    d.status.phase = Some(ExercisePhase::Invalid);
    d.status.message = Some(message);
}

fn valid(d: &mut Decision, _generation: Option<i64>, _now: Timestamp) {
    crate::rollout::conditions::remove(&mut d.status.conditions, "InvalidSpec");
}

/// A block on the Rollout naming this exercise with no run of it under way (the controller
/// stopped between recording a run's end and marking the block): it is marked ended.
fn orphan_block(ex: &RolloutExercise, seen: &Seen, d: &mut Decision) {
    let Some(block) = ours(ex, seen.rollout) else {
        return;
    };
    let current = d.status.current.as_ref().map(|r| r.number);
    if block.ended.is_some() || current == Some(block.run) {
        return;
    }
    let end = match d.status.history.iter().find(|r| r.number == block.run) {
        Some(r) => ExerciseEnd {
            result: r.result.unwrap_or(ExerciseResult::Cancelled),
            message: r.message.clone().unwrap_or_default(),
        },
        None => ExerciseEnd {
            result: ExerciseResult::Cancelled,
            message: "the run is not the exercise's any more".into(),
        },
    };
    d.rollout = Some(RolloutWrite::End {
        run: block.run,
        end,
    });
}

/// The Rollout's exercise block, when it is this exercise's.
fn ours<'a>(ex: &RolloutExercise, rollout: Option<&'a Rollout>) -> Option<&'a ExerciseInForce> {
    rollout?
        .status
        .as_ref()?
        .exercise
        .as_ref()
        .filter(|b| b.name == ex.name_any())
}

/// The run that falls due now, if any.
fn due(
    ex: &RolloutExercise,
    checked: &Checked,
    status: &RolloutExerciseStatus,
    now: Timestamp,
) -> Option<ExerciseRun> {
    let number = status.runs.saturating_add(1);
    let run = |trigger: &str, at: Timestamp| ExerciseRun {
        number,
        trigger: trigger.into(),
        due_at: Some(Time(at)),
        ..ExerciseRun::default()
    };
    let requested = ex.annotations().get(RUN_REQUESTED);
    if let Some(r) = requested
        && status.last_request.as_ref() != Some(r)
    {
        let at = r.parse::<Timestamp>().unwrap_or(now).min(now);
        return Some(run("Request", at));
    }
    if ex.spec.schedule.is_none() && status.runs == 0 {
        let created = ex.creation_timestamp().map_or(now, |t| t.0);
        return Some(run("Created", created.min(now)));
    }
    checked.due_schedule.map(|at| run("Schedule", at))
}

/// Nothing due: idle until the schedule or a request.
fn idle(checked: &Checked, d: &mut Decision) {
    d.status.phase = Some(ExercisePhase::Idle);
    d.status.message = Some(match checked.next_run_at {
        Some(next) => format!("next run at {next}"),
        None => "runs when asked (kubectl sluice exercise start)".into(),
    });
}

/// Starts `run` if the Rollout lets it; otherwise it waits (asked for) or is skipped
/// (scheduled).
fn try_start(
    ex: &RolloutExercise,
    checked: &Checked,
    seen: &Seen,
    mut run: ExerciseRun,
    d: &mut Decision,
    now: Timestamp,
) {
    take_trigger(ex, &run, d);
    let busy = match seen.rollout {
        None => Some(format!(
            "Rollout {} does not exist (or does not read)",
            ex.spec.rollout_name
        )),
        Some(ro) => busy(ro),
    };
    let outside = (run.trigger == "Schedule")
        .then(|| checked.outside_window.clone())
        .flatten();
    if let Some(why) = outside.or(busy.clone()) {
        if run.trigger == "Schedule" {
            run.result = Some(ExerciseResult::Skipped);
            run.message = Some(format!("skipped: {why}"));
            run.ended_at = Some(Time(now));
            d.event(
                false,
                "ExerciseSkipped",
                format!("run {} skipped: {why}", run.number),
            );
            d.status.current = None;
            push_history(ex, d, run.clone());
            d.finished = Some(run);
            idle(checked, d);
        } else {
            let message = format!("run {} waits: {why}", run.number);
            if d.status.message.as_deref() != Some(message.as_str()) {
                d.event(false, "ExerciseWaiting", message.clone());
            }
            d.status.phase = Some(ExercisePhase::Waiting);
            d.status.message = Some(message);
            d.status.current = Some(run);
            d.requeue_in(POLL);
        }
        return;
    }
    let Some(ro) = seen.rollout else {
        return;
    };
    let stable = ro
        .status
        .as_ref()
        .and_then(|s| s.stable_rs.clone())
        .unwrap_or_default();
    run.started_at = Some(Time(now));
    run.stable_revision = Some(stable.clone());
    let block = ExerciseInForce {
        name: ex.name_any(),
        run: run.number,
        fault: ex.spec.fault.clone(),
        stable_revision: stable.clone(),
        started_at: Some(Time(now)),
        ..ExerciseInForce::default()
    };
    d.event(
        false,
        "ExerciseStarted",
        format!(
            "run {} started: releasing the fault over stable revision {stable} of Rollout {}",
            run.number, ex.spec.rollout_name
        ),
    );
    d.status.phase = Some(ExercisePhase::Running);
    d.status.message = Some(format!("run {}: releasing the faulty revision", run.number));
    d.status.current = Some(run);
    d.rollout = Some(RolloutWrite::Start(Box::new(block)));
    d.requeue_in(POLL);
}

/// Takes the trigger of `run` so it is not taken again.
fn take_trigger(ex: &RolloutExercise, run: &ExerciseRun, d: &mut Decision) {
    match run.trigger.as_str() {
        "Request" => d.status.last_request = ex.annotations().get(RUN_REQUESTED).cloned(),
        "Schedule" => d.status.last_schedule_at = run.due_at.clone(),
        _ => {}
    }
}

/// Why a run cannot start on `ro` now: it must be Healthy, reconciled, with no release,
/// pause, abort or other exercise under way.
pub fn busy(ro: &Rollout) -> Option<String> {
    let name = ro.name_any();
    let Some(s) = ro.status.as_ref() else {
        return Some(format!("Rollout {name} has no status yet"));
    };
    if let Some(other) = &s.exercise {
        return Some(format!(
            "exercise {} is running on Rollout {name}",
            other.name
        ));
    }
    if s.observed_generation != ro.metadata.generation {
        return Some(format!(
            "Rollout {name} has a change Sluice has not acted on yet"
        ));
    }
    if s.current_pod_hash.is_none() || s.current_pod_hash != s.stable_rs {
        let releasing = s.current_pod_hash.clone().unwrap_or_default();
        return Some(format!("Rollout {name} is releasing revision {releasing}"));
    }
    if ro.spec.paused == Some(true) {
        return Some(format!("Rollout {name} is paused"));
    }
    if s.phase != Some(RolloutPhase::Healthy) {
        let phase = s
            .phase
            .map_or("not yet Healthy".to_string(), |p| format!("{p:?}"));
        return Some(format!("Rollout {name} is {phase}"));
    }
    None
}

/// A started run: follow the Rollout's block until the faulty revision is safe, then measure
/// and end.
fn progress(
    ex: &RolloutExercise,
    checked: &Checked,
    seen: &Seen,
    run: ExerciseRun,
    d: &mut Decision,
    now: Timestamp,
) {
    let started = run.started_at.as_ref().map_or(now, |t| t.0);
    let Some(ro) = seen.rollout else {
        let why = format!("Rollout {} is gone", ex.spec.rollout_name);
        return end(ex, seen, run, ExerciseResult::Cancelled, &why, d, now);
    };
    if cancelled(ex, run.started_at.as_ref()) {
        let run = with_figures(ex, seen, run);
        return end(
            ex,
            seen,
            run,
            ExerciseResult::Cancelled,
            "cancelled on request",
            d,
            now,
        );
    }
    let block = ours(ex, Some(ro)).filter(|b| b.run == run.number);
    let Some(block) = block else {
        return restart_block(ex, ro, run, started, d, now);
    };
    if let Some(why) = &block.refused {
        let result = if why.starts_with("a real release began") {
            ExerciseResult::Cancelled
        } else {
            ExerciseResult::Failed
        };
        return end(ex, seen, figures(run, block, seen), result, why, d, now);
    }
    if now.duration_since(started) > checked.max_duration {
        let why = format!(
            "the run took longer than maxDuration ({})",
            checked.max_duration_text
        );
        let run = figures(run, block, seen);
        return end(ex, seen, run, ExerciseResult::Failed, &why, d, now);
    }
    let Some(safe_at) = block.safe_at.as_ref().map(|t| t.0) else {
        d.status.phase = Some(ExercisePhase::Running);
        d.status.message = Some(running_message(&run, block));
        d.status.current = Some(run);
        d.requeue_in(POLL);
        return;
    };
    if ex.spec.requests.is_some() && seen.requests.is_none() {
        let ready = safe_at + checked.settle;
        if now < ready {
            d.status.phase = Some(ExercisePhase::Measuring);
            d.status.message = Some(format!(
                "run {}: safe; counting requests once Prometheus has scraped past {safe_at}",
                run.number
            ));
            d.status.current = Some(run);
            d.requeue_in(until(now, ready));
            return;
        }
        d.status.current = Some(run);
        d.measure = true;
        return;
    }
    let (result, why) = judge(ex, seen, block, &run);
    end(ex, seen, figures(run, block, seen), result, &why, d, now);
}

fn running_message(run: &ExerciseRun, block: &ExerciseInForce) -> String {
    let revision = block
        .revision
        .clone()
        .unwrap_or_else(|| "(not built yet)".into());
    match (&block.aborted_at, &block.live_at) {
        (Some(_), _) => format!(
            "run {}: revision {revision} aborted ({}); waiting for its traffic to go",
            run.number,
            block.abort_cause.clone().unwrap_or_default()
        ),
        (None, Some(_)) => format!(
            "run {}: revision {revision} is live, under analysis",
            run.number
        ),
        (None, None) => format!("run {}: releasing revision {revision}", run.number),
    }
}

/// The Rollout does not (yet) show the run's block: shortly after the start the cache may be
/// behind; later, the block is written again if the Rollout still allows it.
fn restart_block(
    ex: &RolloutExercise,
    ro: &Rollout,
    run: ExerciseRun,
    started: Timestamp,
    d: &mut Decision,
    now: Timestamp,
) {
    d.status.current = Some(run.clone());
    d.requeue_in(POLL);
    if now.duration_since(started) < SignedDuration::from_secs(START_GRACE) {
        return;
    }
    let stable = ro.status.as_ref().and_then(|s| s.stable_rs.clone());
    if busy(ro).is_some() || stable != run.stable_revision {
        let why = busy(ro).unwrap_or_else(|| "the Rollout's stable revision changed".into());
        let seen = Seen::default();
        return end(
            ex,
            &seen,
            run,
            ExerciseResult::Cancelled,
            &format!("could not start: {why}"),
            d,
            now,
        );
    }
    d.rollout = Some(RolloutWrite::Start(Box::new(ExerciseInForce {
        name: ex.name_any(),
        run: run.number,
        fault: ex.spec.fault.clone(),
        stable_revision: stable.unwrap_or_default(),
        started_at: run.started_at.clone(),
        ..ExerciseInForce::default()
    })));
}

/// A cancel was asked for at or after `since` (a run's start, or its due time while it
/// waits).
fn cancelled(ex: &RolloutExercise, since: Option<&Time>) -> bool {
    let asked: Option<Timestamp> = ex
        .annotations()
        .get(CANCEL_REQUESTED)
        .and_then(|a| a.parse().ok());
    matches!((asked, since), (Some(at), Some(since)) if at >= since.0)
}

/// `run` with the figures the Rollout's block of it shows, when it shows one.
fn with_figures(ex: &RolloutExercise, seen: &Seen, run: ExerciseRun) -> ExerciseRun {
    match ours(ex, seen.rollout).filter(|b| b.run == run.number) {
        Some(block) => figures(run, block, seen),
        None => run,
    }
}

/// The run's figures from the Rollout's block and what was measured.
fn figures(mut run: ExerciseRun, block: &ExerciseInForce, seen: &Seen) -> ExerciseRun {
    run.revision = block.revision.clone();
    run.live_at = block.live_at.clone();
    run.aborted_at = block.aborted_at.clone();
    run.abort_cause = block.abort_cause.clone();
    run.safe_at = block.safe_at.clone();
    run.peak_weight = block.peak_weight;
    run.analysis = block.analysis.clone();
    run.detected_at = detected_at(block, seen).map(Time);
    let from = run.live_at.clone().or(run.started_at.clone()).map(|t| t.0);
    let span = |to: Option<&Time>| {
        let (from, to) = (from?, to?.0);
        Some(seconds(to.duration_since(from)))
    };
    run.time_to_detect = span(run.detected_at.as_ref());
    run.time_to_safe = span(run.safe_at.as_ref());
    match &seen.requests {
        Some(Ok((all, failed))) => {
            run.requests = Some(*all);
            run.failed_requests = Some(*failed);
        }
        Some(Err(why)) => run.requests_message = Some(why.clone()),
        None => {}
    }
    run
}

/// When the fault was first seen: the analysis' first failed measurement, or the abort itself
/// when Sluice's pod checks or progress deadline caught it. A safety stop or a person's abort
/// is no detection.
fn detected_at(block: &ExerciseInForce, seen: &Seen) -> Option<Timestamp> {
    let aborted = block.aborted_at.as_ref().map(|t| t.0);
    match block.abort_cause.as_deref() {
        Some("AnalysisFailed") => seen.first_failure.or(aborted),
        Some("PodsFailing" | "ProgressDeadline") => aborted,
        _ => None,
    }
}

/// A duration as `41.2s` (tenths of a second), never negative.
pub fn seconds(d: SignedDuration) -> String {
    let tenths = (d.as_millis().max(0) + 50) / 100;
    format!("{}.{}s", tenths / 10, tenths % 10)
}

/// Passed when every objective is met; the reason names the first that is not.
fn judge(
    ex: &RolloutExercise,
    seen: &Seen,
    block: &ExerciseInForce,
    run: &ExerciseRun,
) -> (ExerciseResult, String) {
    let run = figures(run.clone(), block, seen);
    let objectives = super::objectives::judge(&ex.spec.objectives, &run);
    let failed: Vec<&ObjectiveResult> = objectives.iter().filter(|o| !o.met).collect();
    let how = super::objectives::how_caught(&run);
    match failed.first() {
        None => (ExerciseResult::Passed, how),
        Some(o) => (
            ExerciseResult::Failed,
            format!(
                "{how}; objective {} not met: wanted {}, got {}",
                o.name, o.want, o.got
            ),
        ),
    }
}

/// Ends `run` with `result`: into the history (objectives judged), an Event, and the
/// Rollout's block marked ended.
fn end(
    ex: &RolloutExercise,
    seen: &Seen,
    mut run: ExerciseRun,
    result: ExerciseResult,
    why: &str,
    d: &mut Decision,
    now: Timestamp,
) {
    run.result = Some(result);
    run.message = Some(why.to_string());
    run.ended_at = Some(Time(now));
    if result != ExerciseResult::Cancelled {
        run.objectives = super::objectives::judge(&ex.spec.objectives, &run);
    }
    let (warning, reason) = match result {
        ExerciseResult::Passed => (false, "ExercisePassed"),
        ExerciseResult::Failed => (true, "ExerciseFailed"),
        _ => (false, "ExerciseCancelled"),
    };
    d.event(
        warning,
        reason,
        format!("run {}: {}: {why}", run.number, result.as_str()),
    );
    if ours(ex, seen.rollout).is_some_and(|b| b.run == run.number && b.ended.is_none()) {
        d.rollout = Some(RolloutWrite::End {
            run: run.number,
            end: ExerciseEnd {
                result,
                message: why.to_string(),
            },
        });
    }
    d.status.current = None;
    d.status.phase = Some(ExercisePhase::Idle);
    d.status.message = Some(format!("run {} {}: {why}", run.number, result.as_str()));
    push_history(ex, d, run.clone());
    d.finished = Some(run);
}

fn push_history(ex: &RolloutExercise, d: &mut Decision, run: ExerciseRun) {
    let limit = ex
        .spec
        .history_limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .max(1) as usize;
    d.status.history.retain(|r| r.number != run.number);
    d.status.history.insert(0, run);
    d.status.history.truncate(limit);
}

/// From `now` to `at`, at least a second.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    let wait = at.duration_since(now).max(SignedDuration::from_secs(1));
    Duration::try_from(wait).unwrap_or(Duration::from_secs(1))
}

/// `maxDuration` as written, or its default.
pub fn max_duration(ex: &RolloutExercise) -> Result<(SignedDuration, String), String> {
    let text = ex
        .spec
        .max_duration
        .as_ref()
        .map_or(DEFAULT_MAX_DURATION.to_string(), |d| d.0.clone());
    let d = parse_duration(&text).map_err(|e| format!("maxDuration: {e}"))?;
    let d = SignedDuration::try_from(d).map_err(|e| format!("maxDuration: {e}"))?;
    Ok((d, text))
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
