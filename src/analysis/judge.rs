//! The AnalysisRun state machine, pure: which metrics are due, what a provider's outcome
//! does to a metric's counters, and the verdict of each metric and of the run.
//!
//! Differences from Argo Rollouts, on purpose:
//! - A provider error is not a measurement: `count` counts judged measurements only, so a
//!   metric never reaches its count (and never succeeds) on errors alone.
//! - More than `consecutiveErrorLimit` errors in a row make the metric `Inconclusive` (the
//!   rollout pauses) unless the metric says `onProviderError: Failed`. Such an outage
//!   verdict is not final: the metric keeps measuring at its interval, and the first answer
//!   from the provider puts it back to `Running`.
//! - A result with no data (an empty vector) is `Inconclusive` by default, not an error in
//!   the condition; `onEmptyResult` changes that.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::condition::Condition;
use super::value::MetricValue;
use crate::api::analysis::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, EmptyResultVerdict, Measurement, Metric,
    MetricResult, ProviderErrorVerdict, RunSummary,
};

pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;
/// How soon a metric without an interval is measured again after a provider error.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// A metric's settings, parsed once.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPolicy {
    pub interval: Option<Duration>,
    pub initial_delay: Duration,
    /// Judged measurements to take; `None` measures until the run is terminated.
    pub count: Option<i32>,
    /// Negative: no limit.
    pub failure_limit: i32,
    pub inconclusive_limit: i32,
    pub consecutive_error_limit: i32,
    pub on_provider_error: ProviderErrorVerdict,
    pub on_empty_result: EmptyResultVerdict,
    pub dry_run: bool,
    pub retention: usize,
}

fn int_field(v: &Option<IntOrString>, field: &str, default: i32) -> Result<i32, String> {
    match v {
        None => Ok(default),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{field} must be a whole number, got {s:?}")),
    }
}

impl MetricPolicy {
    pub fn of(m: &Metric, dry_run: bool, retention: Option<i32>) -> Result<Self, String> {
        let interval = m
            .interval
            .as_ref()
            .map(|d| d.parse().map_err(|e| format!("interval: {e}")))
            .transpose()?;
        let initial_delay = m
            .initial_delay
            .as_ref()
            .map(|d| d.parse().map_err(|e| format!("initialDelay: {e}")))
            .transpose()?
            .unwrap_or_default();
        let count = match (&m.count, interval) {
            (None, None) => Some(1),
            (None, Some(_)) => None,
            (Some(_), _) => Some(int_field(&m.count, "count", 1)?),
        };
        if let Some(c) = count {
            if c < 1 {
                return Err(format!("count must be at least 1, got {c}"));
            }
            if c > 1 && interval.is_none() {
                return Err("count above 1 needs an interval".into());
            }
        }
        Ok(MetricPolicy {
            interval,
            initial_delay,
            count,
            failure_limit: int_field(&m.failure_limit, "failureLimit", 0)?,
            inconclusive_limit: int_field(&m.inconclusive_limit, "inconclusiveLimit", 0)?,
            consecutive_error_limit: int_field(
                &m.consecutive_error_limit,
                "consecutiveErrorLimit",
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            )?,
            on_provider_error: m
                .on_provider_error
                .unwrap_or(ProviderErrorVerdict::Inconclusive),
            on_empty_result: m
                .on_empty_result
                .unwrap_or(EmptyResultVerdict::Inconclusive),
            dry_run,
            // A limit of 0 (or less) means the default, as in Argo Rollouts.
            retention: retention
                .filter(|r| *r > 0)
                .map(|r| r as usize)
                .unwrap_or(DEFAULT_MEASUREMENT_RETENTION),
        })
    }
}

/// True when a `dryRun` or `measurementRetention` rule's `metricName` selects the metric: the
/// pattern is a regular expression matched anywhere in the name, as Argo Rollouts' Go
/// `regexp.MatchString` does (`test` matches `my-test`; `^test$` only `test`).
pub fn rule_matches(pattern: &Result<regex::Regex, String>, name: &str) -> bool {
    pattern.as_ref().is_ok_and(|re| re.is_match(name))
}

/// A rule's `metricName`, compiled (or why it is not a regular expression). A lone `*`
/// means every metric, as Argo Rollouts' field comment promises ("Wildcard '*' is
/// supported") and Sluice always did, though Argo's regexp refuses it.
fn compile_rule(pattern: &str) -> Result<regex::Regex, String> {
    let pattern = if pattern == "*" { ".*" } else { pattern };
    regex::Regex::new(pattern).map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))
}

/// Checks a run's `dryRun` and `measurementRetention` rules against its metrics: each is a
/// regular expression that selects at least one metric, and no two retention rules name the
/// same pattern with different limits. The messages are Argo Rollouts' own
/// (`dryRun[0]: Rule didn't match any metric name(s)`), with the regular-expression error
/// added where the pattern does not compile.
pub fn check_rules(spec: &AnalysisRunSpec) -> Result<(), String> {
    let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
    let check = |field: &str, patterns: Vec<&str>| -> Result<(), String> {
        for (i, p) in patterns.iter().enumerate() {
            let re = compile_rule(p).map_err(|e| format!("{field}[{i}]: metricName {e}"))?;
            if !names.iter().any(|n| re.is_match(n)) {
                return Err(format!(
                    "{field}[{i}]: Rule didn't match any metric name(s) (metricName {p:?}; metrics: {})",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    };
    check(
        "dryRun",
        spec.dry_run
            .iter()
            .flatten()
            .map(|d| d.metric_name.as_str())
            .collect(),
    )?;
    let retention: Vec<_> = spec.measurement_retention.iter().flatten().collect();
    check(
        "measurementRetention",
        retention.iter().map(|r| r.metric_name.as_str()).collect(),
    )?;
    for (i, a) in retention.iter().enumerate() {
        if let Some(b) = retention[..i]
            .iter()
            .find(|b| b.metric_name == a.metric_name && b.limit != a.limit)
        {
            return Err(format!(
                "two Measurement Retention metric rules have the same name '{}' (limits {} and {})",
                a.metric_name, b.limit, a.limit
            ));
        }
    }
    Ok(())
}

/// The policies of every metric of a run, in spec order. A metric is a dry run when any
/// `dryRun` rule matches it; its retention is the limit of the last matching
/// `measurementRetention` rule (Argo Rollouts' order: the Rollout's rules, then the
/// templates'), else the default of 10.
pub fn policies(spec: &AnalysisRunSpec) -> Result<Vec<(Metric, MetricPolicy)>, String> {
    check_rules(spec)?;
    let dry_rules: Vec<_> = spec
        .dry_run
        .iter()
        .flatten()
        .map(|d| compile_rule(&d.metric_name))
        .collect();
    let keep_rules: Vec<_> = spec
        .measurement_retention
        .iter()
        .flatten()
        .map(|r| (compile_rule(&r.metric_name), r.limit))
        .collect();
    let (plain, secret) = super::template::run_arguments(spec);
    spec.metrics
        .iter()
        .map(|m| {
            let m = &super::template::substitute_metric(m, &plain, &secret)
                .map_err(|e| e.to_string())?;
            let dry = dry_rules.iter().any(|re| rule_matches(re, &m.name));
            let keep = keep_rules
                .iter()
                .rev()
                .find(|(re, _)| rule_matches(re, &m.name))
                .map(|(_, limit)| *limit);
            for (field, cond) in [
                ("successCondition", &m.success_condition),
                ("failureCondition", &m.failure_condition),
            ] {
                if let Some(c) = cond {
                    super::condition::check(c)
                        .map_err(|e| format!("metric {:?}: {field}: {e}", m.name))?;
                }
            }
            MetricPolicy::of(m, dry, keep)
                .map(|p| (m.clone(), p))
                .map_err(|e| format!("metric {:?}: {e}", m.name))
        })
        .collect()
}

/// What a provider reported for one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A value for the metric's conditions to judge.
    Value {
        value: MetricValue,
        metadata: BTreeMap<String, String>,
    },
    /// The provider judged the measurement itself (a Job finished).
    Decided {
        phase: AnalysisPhase,
        value: Option<String>,
        message: Option<String>,
        metadata: BTreeMap<String, String>,
    },
    /// Still measuring (a Job runs); look again at `resume_at`.
    Pending {
        metadata: BTreeMap<String, String>,
        resume_at: Timestamp,
    },
    /// The provider could not measure: unreachable, timed out, answered nonsense.
    ProviderError {
        message: String,
        metadata: BTreeMap<String, String>,
    },
}

impl Outcome {
    /// The outcome with `first` under its own metadata (its own keys win): what a provider
    /// knew before the judgement (address, window) and what the judgement found.
    pub fn with_metadata(self, first: BTreeMap<String, String>) -> Outcome {
        let merge = |own: BTreeMap<String, String>| {
            let mut all = first.clone();
            all.extend(own);
            all
        };
        match self {
            Outcome::Value { value, metadata } => Outcome::Value {
                value,
                metadata: merge(metadata),
            },
            Outcome::Decided {
                phase,
                value,
                message,
                metadata,
            } => Outcome::Decided {
                phase,
                value,
                message,
                metadata: merge(metadata),
            },
            Outcome::Pending {
                metadata,
                resume_at,
            } => Outcome::Pending {
                metadata: merge(metadata),
                resume_at,
            },
            Outcome::ProviderError { message, metadata } => Outcome::ProviderError {
                message,
                metadata: merge(metadata),
            },
        }
    }
}

/// A metric that needs the provider now.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub metric: String,
    /// The last measurement is still running: resume it rather than start another.
    pub resume: Option<Measurement>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub due: Vec<Due>,
    /// When the next metric becomes due.
    pub wake_at: Option<Timestamp>,
}

pub fn is_terminal(phase: Option<AnalysisPhase>) -> bool {
    matches!(
        phase,
        Some(
            AnalysisPhase::Successful
                | AnalysisPhase::Failed
                | AnalysisPhase::Error
                | AnalysisPhase::Inconclusive
        )
    )
}

fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

/// An Inconclusive that came from a provider outage alone: measuring goes on.
pub fn is_outage(p: &MetricPolicy, r: &MetricResult) -> bool {
    r.phase == Some(AnalysisPhase::Inconclusive)
        && p.consecutive_error_limit >= 0
        && r.consecutive_error > p.consecutive_error_limit
        && !(p.inconclusive_limit >= 0 && r.inconclusive > p.inconclusive_limit)
}

/// True while the run still measures: not final, or final only through an outage.
pub fn is_measuring(status: &AnalysisRunStatus, policies: &[(Metric, MetricPolicy)]) -> bool {
    match status.phase {
        None | Some(AnalysisPhase::Pending) | Some(AnalysisPhase::Running) => true,
        Some(AnalysisPhase::Inconclusive) => policies.iter().all(|(m, p)| {
            match status.metric_results.iter().find(|r| r.name == m.name) {
                Some(r) if r.phase == Some(AnalysisPhase::Inconclusive) && !p.dry_run => {
                    is_outage(p, r)
                }
                _ => true,
            }
        }),
        _ => false,
    }
}

/// Which metrics to measure now, and when to look again.
pub fn schedule(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    policies: &[(Metric, MetricPolicy)],
    now: Timestamp,
) -> Schedule {
    let mut out = Schedule::default();
    if spec.terminate.unwrap_or(false) || !is_measuring(status, policies) {
        return out;
    }
    let started = ts(&status.started_at).unwrap_or(now);
    for (m, p) in policies {
        let r = status.metric_results.iter().find(|r| r.name == m.name);
        let (next, resume) = match r {
            None => (plus(started, p.initial_delay), None),
            Some(r) => {
                if is_terminal(r.phase) && !is_outage(p, r) {
                    continue;
                }
                match r.measurements.last() {
                    Some(last) if last.phase == Some(AnalysisPhase::Running) => {
                        (ts(&last.resume_at).unwrap_or(now), Some(last.clone()))
                    }
                    last => {
                        if p.count.is_some_and(|c| r.count >= c) {
                            continue;
                        }
                        let finished = last.and_then(|l| ts(&l.finished_at));
                        match finished {
                            None => (plus(started, p.initial_delay), None),
                            Some(f) => {
                                let errored =
                                    last.is_some_and(|l| l.phase == Some(AnalysisPhase::Error));
                                let wait = match (p.interval, errored) {
                                    (Some(i), true) => i.min(ERROR_RETRY_INTERVAL),
                                    (Some(i), false) => i,
                                    (None, _) => ERROR_RETRY_INTERVAL,
                                };
                                (plus(f, wait), None)
                            }
                        }
                    }
                }
            }
        };
        if next <= now {
            out.due.push(Due {
                metric: m.name.clone(),
                resume,
            });
        } else {
            out.wake_at = Some(out.wake_at.map_or(next, |w: Timestamp| w.min(next)));
        }
    }
    out
}

/// Judges a value with the metric's conditions: the phase and, unless Successful, why.
///
/// A metric with neither condition is judged by its provider alone, as in Argo Rollouts
/// (`utils/evaluate/evaluate.go` `EvaluateResult`): any answer is Successful, an empty one
/// too unless the metric sets `onEmptyResult`.
pub fn judge_value(m: &Metric, p: &MetricPolicy, value: &MetricValue) -> (AnalysisPhase, String) {
    let unconditioned = m.success_condition.is_none() && m.failure_condition.is_none();
    if unconditioned && (m.on_empty_result.is_none() || !value.is_empty()) {
        return (AnalysisPhase::Successful, String::new());
    }
    if value.is_empty() {
        let why = format!("the query returned no data ({value})");
        match p.on_empty_result {
            EmptyResultVerdict::Inconclusive => return (AnalysisPhase::Inconclusive, why),
            EmptyResultVerdict::Failed => return (AnalysisPhase::Failed, why),
            EmptyResultVerdict::Successful => return (AnalysisPhase::Successful, why),
            EmptyResultVerdict::Evaluate => {}
        }
    }
    let eval = |expr: &str| Condition::compile(expr).and_then(|c| c.evaluate(value));
    let failed = match m.failure_condition.as_deref().map(eval) {
        Some(Err(e)) => return (AnalysisPhase::Error, e.to_string()),
        Some(Ok(true)) => {
            return (
                AnalysisPhase::Failed,
                format!(
                    "failureCondition `{}` is true for result {value}",
                    m.failure_condition.as_deref().unwrap_or_default()
                ),
            );
        }
        Some(Ok(false)) => Some(false),
        None => None,
    };
    match m.success_condition.as_deref().map(eval) {
        Some(Err(e)) => (AnalysisPhase::Error, e.to_string()),
        Some(Ok(true)) => (AnalysisPhase::Successful, String::new()),
        Some(Ok(false)) if failed.is_some() => (
            AnalysisPhase::Inconclusive,
            format!(
                "neither successCondition `{}` nor failureCondition `{}` is true for result {value}",
                m.success_condition.as_deref().unwrap_or_default(),
                m.failure_condition.as_deref().unwrap_or_default()
            ),
        ),
        Some(Ok(false)) => (
            AnalysisPhase::Failed,
            format!(
                "successCondition `{}` is false for result {value}",
                m.success_condition.as_deref().unwrap_or_default()
            ),
        ),
        None => (AnalysisPhase::Successful, String::new()),
    }
}

/// The most of a value or message kept in a measurement.
pub const MAX_TEXT: usize = 1024;

/// `s` cut to `MAX_TEXT` bytes (on a character boundary), marked when cut.
pub fn bounded(s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// Records one provider outcome into the metric's result.
pub fn record(
    m: &Metric,
    p: &MetricPolicy,
    r: &mut MetricResult,
    started_at: Option<Time>,
    outcome: Outcome,
    now: Timestamp,
) {
    let started_at = started_at.or(Some(Time(now)));
    let measurement = measurement_of(m, p, outcome, started_at, now);
    if last_is_running(r) {
        r.measurements.pop();
    }
    count(r, measurement.phase);
    keep(r, measurement, p.retention);
}

/// `None` for metadata with nothing in it, so that an empty map is not written.
fn some_metadata(metadata: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!metadata.is_empty()).then_some(metadata)
}

/// The measurement a provider's outcome makes: still running, or finished `now`.
fn measurement_of(
    m: &Metric,
    p: &MetricPolicy,
    outcome: Outcome,
    started_at: Option<Time>,
    now: Timestamp,
) -> Measurement {
    let finished =
        |phase: AnalysisPhase, message: Option<String>, value: Option<String>| Measurement {
            phase: Some(phase),
            message,
            started_at: started_at.clone(),
            finished_at: Some(Time(now)),
            value,
            ..Default::default()
        };
    match outcome {
        Outcome::Pending {
            metadata,
            resume_at,
        } => Measurement {
            phase: Some(AnalysisPhase::Running),
            started_at,
            resume_at: Some(Time(resume_at)),
            metadata: some_metadata(metadata),
            ..Default::default()
        },
        Outcome::Value { value, metadata } => {
            let (phase, why) = judge_value(m, p, &value);
            Measurement {
                metadata: some_metadata(metadata),
                ..finished(
                    phase,
                    (!why.is_empty()).then_some(why),
                    Some(value.to_string()),
                )
            }
        }
        Outcome::Decided {
            phase,
            value,
            message,
            metadata,
        } => Measurement {
            metadata: some_metadata(metadata),
            ..finished(phase, message, value)
        },
        Outcome::ProviderError { message, metadata } => Measurement {
            metadata: some_metadata(metadata),
            ..finished(AnalysisPhase::Error, Some(message), None)
        },
    }
}

/// The metric's last measurement is still running.
fn last_is_running(r: &MetricResult) -> bool {
    r.measurements
        .last()
        .is_some_and(|l| l.phase == Some(AnalysisPhase::Running))
}

/// Counts a measurement with the phase in the metric's counters: a verdict counts towards
/// `count` and ends a run of errors; an error counts apart.
fn count(r: &mut MetricResult, phase: Option<AnalysisPhase>) {
    let judged = match phase {
        Some(AnalysisPhase::Successful) => &mut r.successful,
        Some(AnalysisPhase::Failed) => &mut r.failed,
        Some(AnalysisPhase::Inconclusive) => &mut r.inconclusive,
        Some(AnalysisPhase::Error) => {
            r.error += 1;
            r.consecutive_error += 1;
            return;
        }
        _ => return,
    };
    *judged += 1;
    r.count += 1;
    r.consecutive_error = 0;
}

/// Appends the measurement, its text bounded, keeping the last `retention` measurements.
fn keep(r: &mut MetricResult, mut measurement: Measurement, retention: usize) {
    measurement.value = measurement.value.map(bounded);
    measurement.message = measurement.message.map(bounded);
    r.measurements.push(measurement);
    let excess = r.measurements.len().saturating_sub(retention);
    r.measurements.drain(..excess);
}

fn last_message(r: &MetricResult, phase: AnalysisPhase) -> String {
    r.measurements
        .iter()
        .rev()
        .find(|x| x.phase == Some(phase))
        .and_then(|x| x.message.clone())
        .unwrap_or_default()
}

/// The verdict on one metric, or on a whole run: its phase and, where it is not plain, why.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub phase: AnalysisPhase,
    pub message: Option<String>,
}

impl Verdict {
    fn plain(phase: AnalysisPhase) -> Self {
        Verdict {
            phase,
            message: None,
        }
    }

    fn because(phase: AnalysisPhase, why: String) -> Self {
        Verdict {
            phase,
            message: Some(why),
        }
    }
}

/// A metric's verdict from its counters.
pub fn assess_metric(p: &MetricPolicy, r: &MetricResult, terminating: bool) -> Verdict {
    if last_is_running(r) && !terminating {
        return Verdict::plain(AnalysisPhase::Running);
    }
    if let Some(v) = over_a_limit(p, r) {
        return v;
    }
    if terminating && judged(r) == 0 {
        return stopped_unjudged(r);
    }
    if p.count.is_some_and(|c| r.count >= c) || terminating {
        return Verdict::plain(AnalysisPhase::Successful);
    }
    if r.measurements.is_empty() {
        Verdict::plain(AnalysisPhase::Pending)
    } else {
        Verdict::plain(AnalysisPhase::Running)
    }
}

/// The verdict of a metric past one of its limits: failures, then inconclusives, then
/// errors in a row.
fn over_a_limit(p: &MetricPolicy, r: &MetricResult) -> Option<Verdict> {
    let over = |phase: AnalysisPhase, counted: i32, what: &str, field: &str, limit: i32| {
        (limit >= 0 && counted > limit).then(|| {
            let last = last_message(r, phase);
            let why = format!(
                "{counted} of {} measurements {what} ({field} {limit}): {last}",
                r.count
            );
            Verdict::because(phase, why)
        })
    };
    over(
        AnalysisPhase::Failed,
        r.failed,
        "failed",
        "failureLimit",
        p.failure_limit,
    )
    .or_else(|| {
        over(
            AnalysisPhase::Inconclusive,
            r.inconclusive,
            "inconclusive",
            "inconclusiveLimit",
            p.inconclusive_limit,
        )
    })
    .or_else(|| too_many_errors(p, r))
}

/// More errors in a row than the metric allows: Failed or Inconclusive as it says.
fn too_many_errors(p: &MetricPolicy, r: &MetricResult) -> Option<Verdict> {
    if p.consecutive_error_limit < 0 || r.consecutive_error <= p.consecutive_error_limit {
        return None;
    }
    let why = format!(
        "{} measurements in a row could not be taken or judged (consecutiveErrorLimit {}): {}",
        r.consecutive_error,
        p.consecutive_error_limit,
        last_message(r, AnalysisPhase::Error)
    );
    Some(match p.on_provider_error {
        ProviderErrorVerdict::Failed => Verdict::because(AnalysisPhase::Failed, why),
        ProviderErrorVerdict::Inconclusive => Verdict::because(
            AnalysisPhase::Inconclusive,
            format!(
                "{why}; measuring goes on and the analysis resumes when a measurement succeeds"
            ),
        ),
    })
}

/// Stopped before anything was judged: nothing passed, so it is not a success.
/// (Argo Rollouts calls such a run Successful; Sluice is stricter.)
fn stopped_unjudged(r: &MetricResult) -> Verdict {
    let running = if last_is_running(r) {
        "; a measurement was still running"
    } else {
        ""
    };
    Verdict::because(
        AnalysisPhase::Inconclusive,
        format!(
            "stopped before any measurement was judged ({} taken){running}",
            r.count
        ),
    )
}

/// Measurements of a metric that reached a verdict (errors are not verdicts).
fn judged(r: &MetricResult) -> i64 {
    i64::from(r.successful.max(0)) + i64::from(r.failed.max(0)) + i64::from(r.inconclusive.max(0))
}

fn summary_add(s: &mut RunSummary, phase: AnalysisPhase) {
    s.count += 1;
    match phase {
        AnalysisPhase::Successful => s.successful += 1,
        AnalysisPhase::Failed => s.failed += 1,
        AnalysisPhase::Inconclusive => s.inconclusive += 1,
        AnalysisPhase::Error => s.error += 1,
        _ => {}
    }
}

/// Applies the outcomes measured now to the run's status and reaches the verdicts.
/// `outcomes` are (metric name, measurement start, outcome).
pub fn step(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    outcomes: Vec<(String, Timestamp, Outcome)>,
    now: Timestamp,
) -> AnalysisRunStatus {
    let mut next = status.clone();
    if next.started_at.is_none() {
        next.started_at = Some(Time(now));
    }
    let policies = match policies(spec) {
        Ok(p) => p,
        Err(e) => {
            next.phase = Some(AnalysisPhase::Error);
            next.message = Some(e);
            return next;
        }
    };
    if is_terminal(status.phase) && !is_measuring(status, &policies) {
        return next;
    }
    for (name, started, outcome) in outcomes {
        let Some((m, p)) = policies.iter().find(|(m, _)| m.name == name) else {
            continue;
        };
        let r = result_of(&mut next, m, p);
        record(m, p, r, Some(Time(started)), outcome, now);
    }
    let terminating = spec.terminate.unwrap_or(false);
    if terminating {
        // A metric never measured is judged too: stopped with nothing judged.
        for (m, p) in &policies {
            result_of(&mut next, m, p);
        }
    }
    let tally = assess_metrics(&mut next.metric_results, &policies, terminating);
    let verdict = tally.verdict(terminating, &next.metric_results);
    next.run_summary = Some(tally.summary);
    next.dry_run_summary = (tally.dry_summary.count > 0).then_some(tally.dry_summary);
    next.phase = Some(verdict.phase);
    next.message = verdict.message;
    next
}

/// The metric's result in the run's status, added empty when it has none yet.
fn result_of<'a>(
    status: &'a mut AnalysisRunStatus,
    m: &Metric,
    p: &MetricPolicy,
) -> &'a mut MetricResult {
    let results = &mut status.metric_results;
    let idx = match results.iter().position(|r| r.name == m.name) {
        Some(i) => i,
        None => {
            results.push(MetricResult {
                name: m.name.clone(),
                dry_run: p.dry_run.then_some(true),
                ..Default::default()
            });
            results.len() - 1
        }
    };
    &mut results[idx]
}

/// What the metrics' verdicts add up to.
#[derive(Debug, Default)]
struct Tally {
    summary: RunSummary,
    dry_summary: RunSummary,
    /// The first of the worst verdicts of a metric that is not a dry run, with why.
    worst: Option<Verdict>,
    /// Every metric that is not a dry run has a final verdict.
    all_done: bool,
}

/// Sets each metric's verdict and adds them up.
fn assess_metrics(
    results: &mut [MetricResult],
    policies: &[(Metric, MetricPolicy)],
    terminating: bool,
) -> Tally {
    let mut tally = Tally {
        all_done: true,
        ..Default::default()
    };
    for (m, p) in policies {
        let summary = if p.dry_run {
            &mut tally.dry_summary
        } else {
            &mut tally.summary
        };
        let Some(r) = results.iter_mut().find(|r| r.name == m.name) else {
            tally.all_done = false;
            summary_add(summary, AnalysisPhase::Pending);
            continue;
        };
        let verdict = assess_metric(p, r, terminating);
        r.phase = Some(verdict.phase);
        r.message = match (&verdict.message, p.dry_run) {
            // As Argo Rollouts words a dry-run metric's verdict.
            (Some(why), true) => Some(format!("Metric assessed {:?} due to {why}", verdict.phase)),
            (why, _) => why.clone(),
        };
        summary_add(summary, verdict.phase);
        if !p.dry_run {
            tally.add(&m.name, verdict);
        } else if !is_terminal(Some(verdict.phase)) {
            // As in Argo Rollouts, a run waits for its dry-run metrics too; only their
            // verdicts do not count.
            tally.all_done = false;
        }
    }
    tally
}

/// How bad a metric's verdict is for the run: the run takes the worst.
fn severity(phase: AnalysisPhase) -> u8 {
    match phase {
        AnalysisPhase::Failed => 3,
        AnalysisPhase::Error => 2,
        AnalysisPhase::Inconclusive => 1,
        _ => 0,
    }
}

impl Tally {
    /// Takes the verdict of a metric that decides (not a dry run).
    fn add(&mut self, metric: &str, verdict: Verdict) {
        if !is_terminal(Some(verdict.phase)) {
            self.all_done = false;
        }
        let rank = severity(verdict.phase);
        if rank == 0
            || self
                .worst
                .as_ref()
                .is_some_and(|w| severity(w.phase) >= rank)
        {
            return;
        }
        let what = match verdict.phase {
            AnalysisPhase::Failed => "failed",
            AnalysisPhase::Error => "errored",
            _ => "is inconclusive",
        };
        let why = format!(
            "metric {metric:?} {what}: {}",
            verdict.message.unwrap_or_default()
        );
        self.worst = Some(Verdict::because(verdict.phase, why));
    }

    /// The run's verdict: the worst metric's, a success once all are done (or the run is
    /// stopped), else still running.
    fn verdict(&self, terminating: bool, results: &[MetricResult]) -> Verdict {
        if let Some(worst) = &self.worst {
            return worst.clone();
        }
        if self.all_done || terminating {
            let why = if terminating {
                "terminated; every metric had judged measurements and none failed"
            } else {
                "every metric passed"
            };
            return Verdict::because(AnalysisPhase::Successful, why.into());
        }
        if results.iter().any(|r| !r.measurements.is_empty()) {
            Verdict::plain(AnalysisPhase::Running)
        } else {
            Verdict::plain(AnalysisPhase::Pending)
        }
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
