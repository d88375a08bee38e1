//! The per-Rollout series (`sluice_rollout_phase`, `_step`, `_canary_weight`, replicas by
//! role, `_decisions_total`, aborts and promotions by cause, step, release and time-to-safe
//! histograms, the last measurement of each analysis metric), kept as one small record per
//! Rollout and written out when scraped.
//!
//! Kept as `Family`s, each of a Rollout's series held its own copies of its namespace and name
//! (and phase or reason) as `String`s, with a shared counter behind each: six series and a
//! few decision counters per Rollout. A record here is its name once, four numbers and one
//! count per decision reason seen, under its namespace's name (also kept once). What this
//! saved was not measured apart from the other changes of the same commit (README, 10,000
//! Rollouts).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::api::rollout::RolloutPhase;
use crate::rollout::decide::{AbortCause, PromotionCause};

/// The phases `sluice_rollout_phase` has a series for, each Rollout one of each.
pub const PHASES: [RolloutPhase; 4] = [
    RolloutPhase::Healthy,
    RolloutPhase::Progressing,
    RolloutPhase::Paused,
    RolloutPhase::Degraded,
];

fn phase_name(p: RolloutPhase) -> &'static str {
    match p {
        RolloutPhase::Healthy => "Healthy",
        RolloutPhase::Progressing => "Progressing",
        RolloutPhase::Paused => "Paused",
        RolloutPhase::Degraded => "Degraded",
    }
}

/// The decisions whose counters exist from a Rollout's first reconcile, at 0: an alert or a
/// panel on `increase(...)` sees the first abort of a Rollout (a counter born at 1 shows no
/// increase).
pub const COUNTED_FROM_ZERO: [&str; 4] = [
    "RolloutStarted",
    "RolloutCompleted",
    "Promoted",
    "RolloutAborted",
];

/// What the series say of one Rollout.
#[derive(Debug, Default)]
struct Record {
    /// Phase, step and weight: set once a reconcile has reported them.
    observed: Option<Observed>,
    /// Decisions taken, by Event reason (only reasons seen; a handful at most).
    decisions: Vec<(&'static str, u64)>,
    /// Desired and available replicas of the stable and the canary revision.
    replicas: Option<RoleReplicas>,
    /// Aborts by cause, in the order of `AbortCause::ALL`.
    aborts: [u32; AbortCause::ALL.len()],
    /// Promotions by cause, in the order of `PromotionCause::ALL`.
    promotions: [u32; PromotionCause::ALL.len()],
    /// Step, release and time-to-safe histograms, from the first release this controller saw
    /// start (most Rollouts at rest never pay for them).
    durations: Option<Box<Durations>>,
    /// The last measurement of each analysis metric of the Rollout's runs.
    analysis: Vec<MetricRecord>,
}

/// The phases `sluice_analysis_metric_phase` has a series for.
pub const MEASUREMENT_PHASES: [&str; 4] = ["Successful", "Failed", "Inconclusive", "Error"];

/// The last measurement of one analysis metric.
#[derive(Debug)]
struct MetricRecord {
    metric: Box<str>,
    value: Option<f64>,
    phase: &'static str,
}

/// A histogram of a few fixed buckets (the last, `+Inf`, implied): counts per bucket, and the
/// sum of what was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then one for `+Inf`.
    counts: [u32; 6],
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64; 5]) -> Self {
        Histogram {
            bounds,
            counts: [0; 6],
            sum: 0.0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        let at = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.counts[at] = self.counts[at].saturating_add(1);
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&n| u64::from(n)).sum()
    }

    /// `(upper bound, count in this bucket alone)`, `+Inf` last, as the encoder takes them.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|&n| u64::from(n)))
            .collect()
    }
}

/// A step: from seconds (a weight) to an hour (a long pause or analysis).
const STEP_BOUNDS: [f64; 5] = [5.0, 30.0, 120.0, 600.0, 3600.0];
/// A release: from a minute to four hours.
const RELEASE_BOUNDS: [f64; 5] = [60.0, 300.0, 1800.0, 3600.0, 14400.0];
/// Time to safe: a router's weight written at once (well under a second) to the stable scaled
/// back up first (`dynamicStableScale`: a minute or more).
const SAFE_BOUNDS: [f64; 5] = [0.1, 0.5, 2.0, 10.0, 60.0];

/// A Rollout's release timings, as this controller saw them (a release under way when it
/// started is not timed; the next one is).
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    step: Histogram,
    release: Histogram,
    time_to_safe: Histogram,
    /// The release under way: when it started.
    release_since: Option<Instant>,
    /// The step under way and when it started.
    step_since: Option<(i32, Instant)>,
    /// An automatic abort decided, traffic not yet all off the aborted revision: since when.
    unsafe_since: Option<Instant>,
}

/// What one reconcile of a Rollout did, once its writes went through: what the durations
/// need.
#[derive(Debug, Clone, Default)]
pub struct Reconciled<'a> {
    /// When the reconcile began (its decisions count from here).
    pub decided: Option<Instant>,
    /// When its writes were done.
    pub written: Option<Instant>,
    /// A release started (a new revision, or a retry after an abort).
    pub release_started: bool,
    /// The release completed: the new revision is stable.
    pub release_completed: bool,
    /// The release was aborted by this reconcile, and why.
    pub aborted: Option<AbortCause>,
    /// An abort is in force.
    pub aborting: bool,
    /// No traffic goes to the aborted revision any more (router weight 0, active Service on
    /// the stable, or no canary pods).
    pub off_the_new_revision: bool,
    /// Pauses and gates passed, by cause.
    pub promotions: &'a [PromotionCause],
    /// The canary step in progress.
    pub step: Option<i32>,
}

impl Durations {
    fn new() -> Self {
        Durations {
            step: Histogram::new(&STEP_BOUNDS),
            release: Histogram::new(&RELEASE_BOUNDS),
            time_to_safe: Histogram::new(&SAFE_BOUNDS),
            release_since: None,
            step_since: None,
            unsafe_since: None,
        }
    }

    /// Takes in one reconcile: starts, ends and observes what it began or finished.
    fn reconciled(&mut self, r: &Reconciled, decided: Instant, written: Instant) {
        let secs = |since: Instant| written.saturating_duration_since(since).as_secs_f64();
        if r.release_started {
            self.release_since = Some(decided);
            self.step_since = r.step.map(|_| (0, decided));
        }
        if let (Some((from, since)), Some(to)) = (self.step_since, r.step) {
            if to > from {
                // The first step took this long; any further ones ended in the same write.
                self.step.observe(secs(since));
                for _ in from + 1..to {
                    self.step.observe(0.0);
                }
                self.step_since = Some((to, written));
            } else if to < from {
                self.step_since = Some((to, written));
            }
        }
        if r.release_completed {
            if let Some(since) = self.release_since.take() {
                self.release.observe(secs(since));
            }
            self.step_since = None;
        }
        if let Some(cause) = r.aborted {
            self.release_since = None;
            self.step_since = None;
            if cause.is_automatic() {
                self.unsafe_since.get_or_insert(decided);
            }
        }
        if !r.aborting {
            // Retried or promoted in full before traffic was off: not a rollback to time.
            self.unsafe_since = None;
        } else if r.off_the_new_revision
            && let Some(since) = self.unsafe_since.take()
        {
            self.time_to_safe.observe(secs(since));
        }
    }
}

/// Desired and available replicas of a Rollout's stable and canary revisions (the canary's
/// are 0 when no release is in progress).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoleReplicas {
    pub stable_desired: i32,
    pub stable_available: i32,
    pub canary_desired: i32,
    pub canary_available: i32,
}

#[derive(Debug, Clone, Copy)]
struct Observed {
    phase: Option<RolloutPhase>,
    step: i32,
    weight: i32,
}

/// Records by namespace, then by Rollout name.
type ByNamespace = HashMap<Box<str>, HashMap<Box<str>, Record>>;

/// Every Rollout's record, by namespace then name. Help texts end in a full stop, as the
/// registry ends those of the metrics registered with it.
#[derive(Debug, Default)]
pub struct RolloutSeries {
    by_namespace: RwLock<ByNamespace>,
}

impl RolloutSeries {
    fn write(&self) -> RwLockWriteGuard<'_, ByNamespace> {
        // A panic elsewhere while holding the lock leaves numbers, not broken invariants.
        self.by_namespace
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, ByNamespace> {
        self.by_namespace
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the record of `namespace`/`rollout`, made if it is new.
    fn with<R>(&self, namespace: &str, rollout: &str, f: impl FnOnce(&mut Record) -> R) -> R {
        let mut all = self.write();
        let names = match all.get_mut(namespace) {
            Some(n) => n,
            None => all.entry(namespace.into()).or_default(),
        };
        let record = match names.get_mut(rollout) {
            Some(r) => r,
            None => names.entry(rollout.into()).or_default(),
        };
        f(record)
    }

    /// What a reconcile decided for one Rollout.
    pub fn observe(
        &self,
        namespace: &str,
        rollout: &str,
        phase: Option<RolloutPhase>,
        step: Option<i32>,
        weight: Option<i32>,
    ) {
        self.with(namespace, rollout, |r| {
            if r.observed.is_none() {
                for reason in COUNTED_FROM_ZERO {
                    if !r.decisions.iter().any(|(seen, _)| *seen == reason) {
                        r.decisions.push((reason, 0));
                    }
                }
                r.decisions.shrink_to_fit();
            }
            r.observed = Some(Observed {
                phase,
                step: step.unwrap_or(0),
                weight: weight.unwrap_or(0),
            });
        });
    }

    /// The replicas a reconcile saw and decided for one Rollout's revisions.
    pub fn replicas(&self, namespace: &str, rollout: &str, replicas: RoleReplicas) {
        self.with(namespace, rollout, |r| r.replicas = Some(replicas));
    }

    /// One decision of `reason` taken for one Rollout.
    pub fn decision(&self, namespace: &str, rollout: &str, reason: &'static str) {
        self.with(namespace, rollout, |r| {
            match r.decisions.iter_mut().find(|(seen, _)| *seen == reason) {
                Some((_, n)) => *n += 1,
                None => {
                    r.decisions.push((reason, 1));
                    r.decisions.shrink_to_fit();
                }
            }
        });
    }

    /// What one reconcile did, once its writes went through: aborts and promotions by cause,
    /// and the step, release and time-to-safe durations.
    pub fn reconciled(&self, namespace: &str, rollout: &str, r: &Reconciled) {
        let now = Instant::now();
        let (decided, written) = (r.decided.unwrap_or(now), r.written.unwrap_or(now));
        self.with(namespace, rollout, |rec| {
            if let Some(cause) = r.aborted
                && let Some(n) = AbortCause::ALL
                    .iter()
                    .position(|&c| c == cause)
                    .and_then(|i| rec.aborts.get_mut(i))
            {
                *n = n.saturating_add(1);
            }
            for cause in r.promotions {
                if let Some(n) = PromotionCause::ALL
                    .iter()
                    .position(|c| c == cause)
                    .and_then(|i| rec.promotions.get_mut(i))
                {
                    *n = n.saturating_add(1);
                }
            }
            let starts = r.release_started || r.aborted.is_some_and(AbortCause::is_automatic);
            if rec.durations.is_none() && starts {
                rec.durations = Some(Box::new(Durations::new()));
            }
            if let Some(d) = rec.durations.as_deref_mut() {
                d.reconciled(r, decided, written);
            }
        });
    }

    /// The last measurement of `metric`, an analysis metric of one of the Rollout's runs:
    /// its value when it is a number, and its phase (one of `MEASUREMENT_PHASES`).
    pub fn measured(
        &self,
        namespace: &str,
        rollout: &str,
        metric: &str,
        value: Option<f64>,
        phase: &str,
    ) {
        let Some(&phase) = MEASUREMENT_PHASES.iter().find(|&&p| p == phase) else {
            return;
        };
        self.with(namespace, rollout, |rec| {
            match rec.analysis.iter_mut().find(|m| &*m.metric == metric) {
                Some(m) => {
                    m.value = value;
                    m.phase = phase;
                }
                None => {
                    rec.analysis.push(MetricRecord {
                        metric: metric.into(),
                        value,
                        phase,
                    });
                    rec.analysis.shrink_to_fit();
                }
            }
        });
    }

    /// Drops every series of a deleted Rollout.
    pub fn forget(&self, namespace: &str, rollout: &str) {
        let mut all = self.write();
        if let Some(names) = all.get_mut(namespace) {
            names.remove(rollout);
            if names.is_empty() {
                all.remove(namespace);
            }
        }
    }

    /// Writes one metric family: a descriptor, then one series per `(labels, value)` that
    /// `series` gives for each record (its labels after `namespace` and `rollout`). Nothing
    /// at all when there is no series (as a `Family` with none is left out).
    fn family<'a>(
        encoder: &mut DescriptorEncoder,
        all: &'a ByNamespace,
        (name, help, kind): (&str, &str, MetricType),
        series: impl Fn(&'a Record) -> Vec<Series<'a>>,
    ) -> Result<(), std::fmt::Error> {
        let mut written: Vec<(&str, &str, Vec<Series<'a>>)> = Vec::new();
        for (ns, names) in all {
            for (rollout, record) in names {
                let of_one = series(record);
                if !of_one.is_empty() {
                    written.push((ns, rollout, of_one));
                }
            }
        }
        if written.is_empty() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        for (ns, rollout, of_one) in written {
            for (extra, value) in of_one {
                let mut labels: Vec<(&str, &str)> = vec![("namespace", ns), ("rollout", rollout)];
                labels.extend(extra);
                let mut one = metric.encode_family(&labels)?;
                match value {
                    Value::Int(v) => one.encode_gauge(&v)?,
                    Value::Float(v) => one.encode_gauge(&v)?,
                    Value::Count(v) => one.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
                    Value::Histogram(h) => {
                        let buckets = h.buckets();
                        one.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// A series' labels after `namespace` and `rollout`.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One series of a record: its own labels and its value.
type Series<'a> = (Labels<'a>, Value<'a>);

/// A series' value, by the kind of its family.
enum Value<'a> {
    Int(i64),
    Float(f64),
    Count(u64),
    Histogram(&'a Histogram),
}

impl Collector for RolloutSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.read();
        Self::phases(&mut encoder, &all)?;
        Self::step_and_weight(&mut encoder, &all)?;
        Self::replicas_by_role(&mut encoder, &all)?;
        Self::decisions(&mut encoder, &all)?;
        Self::causes(&mut encoder, &all)?;
        Self::durations(&mut encoder, &all)?;
        Self::analysis(&mut encoder, &all)
    }
}

impl RolloutSeries {
    /// `sluice_rollout_phase`: one series per phase, 1 for the current one.
    fn phases(encoder: &mut DescriptorEncoder, all: &ByNamespace) -> Result<(), std::fmt::Error> {
        Self::family(
            encoder,
            all,
            (
                "rollout_phase",
                "1 for the Rollout's current phase, 0 for the others.",
                MetricType::Gauge,
            ),
            |r| {
                r.observed
                    .map(|o| {
                        PHASES
                            .iter()
                            .map(|&p| {
                                (
                                    vec![("phase", phase_name(p))],
                                    Value::Int(i64::from(o.phase == Some(p))),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            },
        )
    }

    /// `sluice_rollout_step` and `sluice_rollout_canary_weight`.
    fn step_and_weight(
        encoder: &mut DescriptorEncoder,
        all: &ByNamespace,
    ) -> Result<(), std::fmt::Error> {
        let step: fn(&Observed) -> i32 = |o| o.step;
        let weight: fn(&Observed) -> i32 = |o| o.weight;
        for (name, help, value) in [
            (
                "rollout_step",
                "Index of the canary step in progress.",
                step,
            ),
            (
                "rollout_canary_weight",
                "Percentage of traffic on the canary.",
                weight,
            ),
        ] {
            Self::family(encoder, all, (name, help, MetricType::Gauge), |r| {
                r.observed
                    .map(|o| vec![(vec![], Value::Int(i64::from(value(&o))))])
                    .unwrap_or_default()
            })?;
        }
        Ok(())
    }

    /// `sluice_rollout_desired_replicas` and `sluice_rollout_available_replicas`, by role.
    fn replicas_by_role(
        encoder: &mut DescriptorEncoder,
        all: &ByNamespace,
    ) -> Result<(), std::fmt::Error> {
        let desired: fn(&RoleReplicas) -> [i32; 2] = |r| [r.stable_desired, r.canary_desired];
        let available: fn(&RoleReplicas) -> [i32; 2] = |r| [r.stable_available, r.canary_available];
        for (name, help, values) in [
            (
                "rollout_desired_replicas",
                "Replicas Sluice wants of the stable and of the canary revision (role).",
                desired,
            ),
            (
                "rollout_available_replicas",
                "Available replicas of the stable and of the canary revision (role).",
                available,
            ),
        ] {
            Self::family(encoder, all, (name, help, MetricType::Gauge), |r| {
                r.replicas
                    .map(|n| {
                        let [stable, canary] = values(&n);
                        vec![
                            (vec![("role", "stable")], Value::Int(i64::from(stable))),
                            (vec![("role", "canary")], Value::Int(i64::from(canary))),
                        ]
                    })
                    .unwrap_or_default()
            })?;
        }
        Ok(())
    }

    /// `sluice_rollout_decisions_total`, by Event reason.
    fn decisions(
        encoder: &mut DescriptorEncoder,
        all: &ByNamespace,
    ) -> Result<(), std::fmt::Error> {
        Self::family(
            encoder,
            all,
            (
                "rollout_decisions",
                "Decisions taken, by Event reason.",
                MetricType::Counter,
            ),
            |r| {
                r.decisions
                    .iter()
                    .map(|&(reason, n)| (vec![("reason", reason)], Value::Count(n)))
                    .collect()
            },
        )
    }

    /// `sluice_rollout_aborts_total` and `sluice_rollout_promotions_total`, by cause, each
    /// from 0 at the Rollout's first reconcile.
    fn causes(encoder: &mut DescriptorEncoder, all: &ByNamespace) -> Result<(), std::fmt::Error> {
        let aborts: Vec<&'static str> = AbortCause::ALL.iter().map(|c| c.as_str()).collect();
        let promotions: Vec<&'static str> =
            PromotionCause::ALL.iter().map(|c| c.as_str()).collect();
        let of_aborts: fn(&Record) -> &[u32] = |r| &r.aborts;
        let of_promotions: fn(&Record) -> &[u32] = |r| &r.promotions;
        for (name, help, causes, counts) in [
            (
                "rollout_aborts",
                "Releases aborted, by cause (Request: by a person; the others automatic).",
                &aborts,
                of_aborts,
            ),
            (
                "rollout_promotions",
                "Pauses and gates a release was let past, by cause.",
                &promotions,
                of_promotions,
            ),
        ] {
            Self::family(encoder, all, (name, help, MetricType::Counter), |r| {
                if r.observed.is_none() {
                    return Vec::new();
                }
                causes
                    .iter()
                    .zip(counts(r))
                    .map(|(&cause, &n)| (vec![("cause", cause)], Value::Count(u64::from(n))))
                    .collect()
            })?;
        }
        Ok(())
    }

    /// `sluice_rollout_step_duration_seconds`, `_release_duration_seconds` and
    /// `_time_to_safe_seconds`: from a Rollout's first release this controller saw start.
    fn durations(
        encoder: &mut DescriptorEncoder,
        all: &ByNamespace,
    ) -> Result<(), std::fmt::Error> {
        let step: fn(&Durations) -> &Histogram = |d| &d.step;
        let release: fn(&Durations) -> &Histogram = |d| &d.release;
        let safe: fn(&Durations) -> &Histogram = |d| &d.time_to_safe;
        for (name, help, of) in [
            (
                "rollout_step_duration_seconds",
                "Time from a canary step's start to its end (a pause, an analysis, a weight).",
                step,
            ),
            (
                "rollout_release_duration_seconds",
                "Time from a release's start (a new revision, a retry) to its completion.",
                release,
            ),
            (
                "rollout_time_to_safe_seconds",
                "Time from the decision of an automatic abort to the write that took all traffic off the aborted revision.",
                safe,
            ),
        ] {
            Self::family(encoder, all, (name, help, MetricType::Histogram), |r| {
                r.durations
                    .as_deref()
                    .map(|d| vec![(vec![], Value::Histogram(of(d)))])
                    .unwrap_or_default()
            })?;
        }
        Ok(())
    }

    /// `sluice_analysis_metric_value` and `sluice_analysis_metric_phase`: the last measurement
    /// of each analysis metric of the Rollout's runs.
    fn analysis(encoder: &mut DescriptorEncoder, all: &ByNamespace) -> Result<(), std::fmt::Error> {
        Self::family(
            encoder,
            all,
            (
                "analysis_metric_value",
                "The last value measured of an analysis metric (when it is a number, or a list of one).",
                MetricType::Gauge,
            ),
            |r| {
                r.analysis
                    .iter()
                    .filter_map(|m| Some((vec![("metric", &*m.metric)], Value::Float(m.value?))))
                    .collect()
            },
        )?;
        Self::family(
            encoder,
            all,
            (
                "analysis_metric_phase",
                "1 for the phase of an analysis metric's last measurement, 0 for the others.",
                MetricType::Gauge,
            ),
            |r| {
                r.analysis
                    .iter()
                    .flat_map(|m| {
                        MEASUREMENT_PHASES.iter().map(move |&p| {
                            (
                                vec![("metric", &*m.metric), ("phase", p)],
                                Value::Int(i64::from(m.phase == p)),
                            )
                        })
                    })
                    .collect()
            },
        )
    }
}

#[cfg(test)]
#[path = "rollouts_tests.rs"]
mod tests;
