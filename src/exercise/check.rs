//! An exercise's spec checked before anything starts, pure: the fault applies to the
//! Rollout's template, the schedule, time zone and window parse, the durations read, the
//! Prometheus address is a URL. What the schedule makes of `now` comes with it.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::duration::parse_duration;
use crate::api::exercise::{RolloutExercise, Weekday};
use crate::api::rollout::Rollout;

use super::schedule::{self, Schedule, Window};

/// Why an exercise cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Fault(#[from] super::fault::FaultError),
    #[error("{0}")]
    Schedule(#[from] schedule::ScheduleError),
    #[error("{0}")]
    Field(String),
}

/// What a valid spec makes of `now`.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The latest scheduled time not yet taken, when one has come.
    pub due_schedule: Option<Timestamp>,
    /// When the schedule next falls due after `now`.
    pub next_run_at: Option<Timestamp>,
    /// Why a run may not start now under `window`.
    pub outside_window: Option<String>,
    pub max_duration: SignedDuration,
    pub max_duration_text: String,
    /// How long after `safeAt` the requests are counted.
    pub settle: SignedDuration,
}

/// Scheduled times looked at past the last one taken: a controller down for longer than this
/// many runs takes the latest it finds (as a CronJob gives up on old missed runs).
const MISSED_LIMIT: usize = 1000;

/// Checks `ex` (against `rollout`'s template, when it has one of its own).
pub fn check(
    ex: &RolloutExercise,
    rollout: Option<&Rollout>,
    now: Timestamp,
) -> Result<Checked, CheckError> {
    if let Some(ro) = rollout
        && let Some(template) = &ro.spec.template
    {
        let selector = crate::rollout::observe::policy::match_labels(ro);
        super::fault::apply(template, &ex.spec.fault, &selector)?;
    }
    let tz = schedule::time_zone(ex.spec.time_zone.as_deref())?;
    let window = match &ex.spec.window {
        Some(w) => Some(Window::parse(&w.start, &w.end, &days(&w.days))?),
        None => None,
    };
    let (max_duration, max_duration_text) =
        super::run::max_duration(ex).map_err(CheckError::Field)?;
    let settle = settle(ex)?;
    if let Some(r) = &ex.spec.requests
        && !(r.prometheus_address.starts_with("http://")
            || r.prometheus_address.starts_with("https://"))
    {
        return Err(CheckError::Field(format!(
            "requests.prometheusAddress {:?} must start with http:// or https://",
            r.prometheus_address
        )));
    }
    let (due_schedule, next_run_at) = match &ex.spec.schedule {
        Some(expr) if ex.spec.suspend != Some(true) => {
            let parsed = Schedule::parse(expr)?;
            times(ex, &parsed, &tz, now)
        }
        Some(expr) => {
            Schedule::parse(expr)?;
            (None, None)
        }
        None => (None, None),
    };
    let outside_window = window.filter(|w| !w.contains(now, &tz)).map(|_| {
        let w = ex.spec.window.clone().unwrap_or_default();
        format!("outside its window ({}-{} {})", w.start, w.end, tz_name(ex))
    });
    Ok(Checked {
        due_schedule,
        next_run_at,
        outside_window,
        max_duration,
        max_duration_text,
        settle,
    })
}

fn tz_name(ex: &RolloutExercise) -> String {
    ex.spec.time_zone.clone().unwrap_or_else(|| "UTC".into())
}

fn days(days: &[Weekday]) -> Vec<schedule::Weekday> {
    days.iter()
        .map(|d| match d {
            Weekday::Mon => schedule::Weekday::Mon,
            Weekday::Tue => schedule::Weekday::Tue,
            Weekday::Wed => schedule::Weekday::Wed,
            Weekday::Thu => schedule::Weekday::Thu,
            Weekday::Fri => schedule::Weekday::Fri,
            Weekday::Sat => schedule::Weekday::Sat,
            Weekday::Sun => schedule::Weekday::Sun,
        })
        .collect()
}

fn settle(ex: &RolloutExercise) -> Result<SignedDuration, CheckError> {
    let Some(text) = ex.spec.requests.as_ref().and_then(|r| r.settle.as_ref()) else {
        return SignedDuration::try_from(super::run::DEFAULT_SETTLE)
            .map_err(|e| CheckError::Field(e.to_string()));
    };
    let d =
        parse_duration(&text.0).map_err(|e| CheckError::Field(format!("requests.settle: {e}")))?;
    SignedDuration::try_from(d).map_err(|e| CheckError::Field(format!("requests.settle: {e}")))
}

/// The latest scheduled time after the last one taken (or the exercise's creation) that has
/// come by `now`, and the first after `now`.
fn times(
    ex: &RolloutExercise,
    parsed: &Schedule,
    tz: &k8s_openapi::jiff::tz::TimeZone,
    now: Timestamp,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let status = ex.status.as_ref();
    let from = status
        .and_then(|s| s.last_schedule_at.as_ref())
        .map(|t| t.0)
        .or_else(|| ex.creation_timestamp().map(|t| t.0))
        .unwrap_or(now);
    let mut due = None;
    let mut at = from;
    for _ in 0..MISSED_LIMIT {
        match parsed.next_after(at, tz) {
            Some(t) if t <= now => {
                due = Some(t);
                at = t;
            }
            _ => break,
        }
    }
    let next = parsed.next_after(at.max(now), tz);
    (due, next)
}
