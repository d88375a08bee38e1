//! Backtesting an analysis, pure: what a background analysis would have decided over past
//! data, and how its decisions line up with known incidents.
//!
//! [`replay`] takes each metric's outcomes at its evaluation times (fetched from past data by
//! `providers::backtest`) and runs them through the same state machine as a live run
//! (`judge::record`, `judge::assess_metric`). The analysis runs for the whole range (`count` is
//! ignored). When a metric that is not a dry run reaches a Failed or Inconclusive verdict
//! (failures, inconclusives, or errors in a row past their limits), the run ends there; a new
//! run starts at the next evaluation time with fresh counters, as the next release would. A
//! metric's `initialDelay` counts from each run's start. Dry-run metrics are measured and shown
//! but never end a run.
//!
//! [`against`] compares the runs that ended with incidents: an incident is caught by the first
//! failed run-end inside `[start, end + grace]`; a failed run-end outside every incident is a
//! false failure. An inconclusive run-end pauses a release; it is listed apart, neither a
//! detection nor a false failure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::judge::{self, MetricPolicy, Outcome};
use crate::api::analysis::{AnalysisPhase, Metric, MetricResult};

/// Where a metric's outcomes come from.
pub enum Timeline {
    /// Outcomes that do not depend on when the run started, in time order.
    Fixed(Vec<(Timestamp, Outcome)>),
    /// Evaluation times (in order), and the outcome at a time given the run's start (a
    /// `compare` metric without a lookback measures since the run started).
    SinceStart {
        times: Vec<Timestamp>,
        judge: Box<dyn Fn(Timestamp, Timestamp) -> Outcome + Send + Sync>,
    },
}

impl Timeline {
    fn times(&self) -> Vec<Timestamp> {
        match self {
            Timeline::Fixed(v) => v.iter().map(|(t, _)| *t).collect(),
            Timeline::SinceStart { times, .. } => times.clone(),
        }
    }

    fn at(&self, t: Timestamp, run_start: Timestamp) -> Option<Outcome> {
        match self {
            Timeline::Fixed(v) => v
                .binary_search_by(|(x, _)| x.cmp(&t))
                .ok()
                .map(|i| v[i].1.clone()),
            Timeline::SinceStart { times, judge } => {
                times.binary_search(&t).ok().map(|_| judge(t, run_start))
            }
        }
    }
}

/// One metric at one evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    pub metric: String,
    /// The measured value (none for a provider error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The measurement's phase.
    pub phase: AnalysisPhase,
    /// The metric's verdict after it (Running until a limit is passed).
    pub verdict: AnalysisPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Every metric measured at one evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub at: Timestamp,
    /// The simulated run, counted from 1.
    pub run: usize,
    pub cells: Vec<Cell>,
}

/// What ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// More failed measurements than `failureLimit`.
    FailureLimit,
    /// More inconclusive measurements than `inconclusiveLimit`.
    InconclusiveLimit,
    /// More errors in a row than `consecutiveErrorLimit`.
    ConsecutiveErrors,
}

/// A simulated run that ended before the range did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEnd {
    pub run: usize,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// Failed or Inconclusive (Error if a provider ever decides so).
    pub phase: AnalysisPhase,
    pub cause: Cause,
    pub metric: String,
    pub message: String,
    /// The metric's value at the end (none when it was an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub rows: Vec<Row>,
    pub runs: Vec<RunEnd>,
}

/// How bad a verdict is for the run; the run ends on the worst (Failed first).
fn severity(phase: AnalysisPhase) -> u8 {
    match phase {
        AnalysisPhase::Failed => 3,
        AnalysisPhase::Error => 2,
        AnalysisPhase::Inconclusive => 1,
        _ => 0,
    }
}

fn cause(p: &MetricPolicy, r: &MetricResult) -> Cause {
    if p.failure_limit >= 0 && r.failed > p.failure_limit {
        Cause::FailureLimit
    } else if p.inconclusive_limit >= 0 && r.inconclusive > p.inconclusive_limit {
        Cause::InconclusiveLimit
    } else {
        Cause::ConsecutiveErrors
    }
}

/// `t + d`, saturating at the last representable time: a huge `--grace` or `initialDelay`
/// reaches past every time, it does not wrap to nothing.
fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Replays the metrics' outcomes as a background analysis over the whole range would have
/// judged them. `timelines` are by metric name; a metric without one is not measured.
pub fn replay(
    policies: &[(Metric, MetricPolicy)],
    timelines: &BTreeMap<String, Timeline>,
) -> Replay {
    let mut times: Vec<Timestamp> = timelines.values().flat_map(Timeline::times).collect();
    times.sort();
    times.dedup();
    let mut out = Replay::default();
    let mut run = 1;
    let mut started: Option<Timestamp> = None;
    let mut results: BTreeMap<String, MetricResult> = BTreeMap::new();
    for t in times {
        let start = *started.get_or_insert(t);
        let mut row = Row {
            at: t,
            run,
            cells: Vec::new(),
        };
        // The worst verdict of a metric that decides: (metric, verdict, cause, value).
        let mut end: Option<(String, judge::Verdict, Cause, Option<String>)> = None;
        for (m, p) in policies {
            let Some(timeline) = timelines.get(&m.name) else {
                continue;
            };
            if t < plus(start, p.initial_delay) {
                continue;
            }
            let Some(outcome) = timeline.at(t, start) else {
                continue;
            };
            let r = results
                .entry(m.name.clone())
                .or_insert_with(|| MetricResult {
                    name: m.name.clone(),
                    dry_run: p.dry_run.then_some(true),
                    ..Default::default()
                });
            judge::record(m, p, r, Some(Time(t)), outcome, t);
            let verdict = judge::assess_metric(p, r, false);
            let last = r.measurements.last();
            let value = last.and_then(|l| l.value.clone());
            row.cells.push(Cell {
                metric: m.name.clone(),
                value: value.clone(),
                phase: last.and_then(|l| l.phase).unwrap_or(AnalysisPhase::Running),
                verdict: verdict.phase,
                message: last.and_then(|l| l.message.clone()),
                dry_run: p.dry_run,
            });
            let rank = severity(verdict.phase);
            if p.dry_run || rank == 0 {
                continue;
            }
            if end
                .as_ref()
                .is_none_or(|(_, v, _, _)| severity(v.phase) < rank)
            {
                end = Some((m.name.clone(), verdict, cause(p, r), value));
            }
        }
        out.rows.push(row);
        if let Some((metric, verdict, cause, value)) = end {
            out.runs.push(RunEnd {
                run,
                started: start,
                ended: t,
                phase: verdict.phase,
                cause,
                metric,
                message: verdict.message.unwrap_or_default(),
                value,
            });
            run += 1;
            started = None;
            results.clear();
        }
    }
    out
}

/// A known incident: when users were hurt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Incident {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Reads incidents from YAML or JSON: a list of `{name, start, end}` with RFC 3339 times.
pub fn parse_incidents(text: &str) -> Result<Vec<Incident>, String> {
    let list: Vec<Incident> = serde_saphyr::from_str(text).map_err(|e| {
        format!(
            "incidents must be a YAML or JSON list of {{name, start, end}} (RFC 3339 times): {e}"
        )
    })?;
    for (i, inc) in list.iter().enumerate() {
        if inc.end <= inc.start {
            return Err(format!(
                "incident {i} ({:?}): its end {} is not after its start {}",
                inc.name, inc.end, inc.start
            ));
        }
    }
    Ok(list)
}

/// One incident, caught or missed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    pub incident: Incident,
    /// The first failed run-end inside the incident (grace included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught_by: Option<RunEnd>,
    /// From the incident's start to that run-end, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i64>,
}

impl Detection {
    pub fn caught(&self) -> bool {
        self.caught_by.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub grace_seconds: u64,
    pub incidents: Vec<Detection>,
    /// Failed run-ends outside every incident (with grace).
    pub false_failures: Vec<RunEnd>,
    /// Inconclusive run-ends (a release would pause): neither detections nor false failures.
    pub inconclusive: Vec<RunEnd>,
}

impl Report {
    pub fn caught(&self) -> usize {
        self.incidents.iter().filter(|d| d.caught()).count()
    }
}

/// True when the run-end decided a failure (an Error verdict counts as one: it stops a
/// release as a failure does).
fn is_failure(r: &RunEnd) -> bool {
    matches!(r.phase, AnalysisPhase::Failed | AnalysisPhase::Error)
}

/// The replay's run-ends against the incidents.
pub fn against(replay: &Replay, incidents: &[Incident], grace: Duration) -> Report {
    let inside = |inc: &Incident, t: Timestamp| t >= inc.start && t <= plus(inc.end, grace);
    let failures: Vec<&RunEnd> = replay.runs.iter().filter(|r| is_failure(r)).collect();
    let detections = incidents
        .iter()
        .map(|inc| {
            let first = failures.iter().find(|r| inside(inc, r.ended));
            Detection {
                incident: inc.clone(),
                caught_by: first.map(|r| (*r).clone()),
                delay_seconds: first.map(|r| r.ended.as_second() - inc.start.as_second()),
            }
        })
        .collect();
    Report {
        grace_seconds: grace.as_secs(),
        incidents: detections,
        false_failures: failures
            .iter()
            .filter(|r| !incidents.iter().any(|inc| inside(inc, r.ended)))
            .map(|r| (*r).clone())
            .collect(),
        inconclusive: replay
            .runs
            .iter()
            .filter(|r| r.phase == AnalysisPhase::Inconclusive)
            .cloned()
            .collect(),
    }
}

/// A time given on the command line: RFC 3339 (`2026-12-02T10:00:00Z`), `now`, or before now
/// (`-2h`, `-30m`, `-90s`, `-1h30m`, `-2d`).
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = parse_ago(ago)
            .ok_or_else(|| format!("{s:?} is not a time before now like -2h, -30m, -90s or -1d"))?;
        let d = SignedDuration::try_from(d).map_err(|_| format!("{s:?} is too far back"))?;
        return now
            .checked_sub(d)
            .map_err(|_| format!("{s:?} is too far back"));
    }
    s.parse::<Timestamp>().map_err(|e| {
        format!("{s:?} is not a time: give RFC 3339 (2026-12-02T10:00:00Z), now, or -2h ({e})")
    })
}

/// `2h`, `30m`, `1h30m`, `2d`: days are allowed here on top of the usual units.
fn parse_ago(s: &str) -> Option<Duration> {
    if let Some(days) = s.strip_suffix('d') {
        let n: u64 = days.parse().ok()?;
        return n.checked_mul(86400).map(Duration::from_secs);
    }
    crate::api::duration::parse_duration(s).ok()
}

#[cfg(test)]
#[path = "backtest_tests.rs"]
mod tests;
