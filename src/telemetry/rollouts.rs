//! The per-Rollout series (`sluice_rollout_phase`, `_step`, `_canary_weight`,
//! `_decisions_total`), kept as one small record per Rollout and written out when scraped.
//!
//! Kept as `Family`s, each of a Rollout's series held its own copies of its namespace and name
//! (and phase or reason) as `String`s, with a shared counter behind each: six series and a
//! few decision counters per Rollout. A record here is its name once, four numbers and one
//! count per decision reason seen, under its namespace's name (also kept once). What this
//! saved was not measured apart from the other changes of the same commit (README, 10,000
//! Rollouts).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::api::rollout::RolloutPhase;

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
    /// `series` gives for each record. Nothing at all when there is no series (as a `Family`
    /// with none is left out).
    fn family<'a>(
        encoder: &mut DescriptorEncoder,
        all: &'a ByNamespace,
        (name, help, kind): (&str, &str, MetricType),
        has: impl Fn(&Record) -> bool,
        series: impl Fn(&'a Record) -> Vec<(Option<(&'static str, &'static str)>, i64)>,
    ) -> Result<(), std::fmt::Error> {
        if !all.values().flat_map(|n| n.values()).any(has) {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        for (ns, names) in all {
            for (rollout, record) in names {
                for (extra, value) in series(record) {
                    let base = [("namespace", &**ns), ("rollout", &**rollout)];
                    let with = extra.map(|label| [base[0], base[1], label]);
                    let mut one = match &with {
                        Some(labels) => metric.encode_family(labels)?,
                        None => metric.encode_family(&base)?,
                    };
                    match kind {
                        MetricType::Counter => one.encode_counter::<NoLabelSet, _, u64>(
                            &u64::try_from(value).unwrap_or(0),
                            None,
                        )?,
                        _ => one.encode_gauge(&value)?,
                    }
                }
            }
        }
        Ok(())
    }
}

impl Collector for RolloutSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.read();
        Self::phases(&mut encoder, &all)?;
        Self::step_and_weight(&mut encoder, &all)?;
        Self::replicas_by_role(&mut encoder, &all)?;
        Self::decisions(&mut encoder, &all)
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
            |r| r.observed.is_some(),
            |r| {
                r.observed
                    .map(|o| {
                        PHASES
                            .iter()
                            .map(|&p| {
                                (
                                    Some(("phase", phase_name(p))),
                                    i64::from(o.phase == Some(p)),
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
            Self::family(
                encoder,
                all,
                (name, help, MetricType::Gauge),
                |r| r.observed.is_some(),
                |r| {
                    r.observed
                        .map(|o| vec![(None, i64::from(value(&o)))])
                        .unwrap_or_default()
                },
            )?;
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
            Self::family(
                encoder,
                all,
                (name, help, MetricType::Gauge),
                |r| r.replicas.is_some(),
                |r| {
                    r.replicas
                        .map(|n| {
                            let [stable, canary] = values(&n);
                            vec![
                                (Some(("role", "stable")), i64::from(stable)),
                                (Some(("role", "canary")), i64::from(canary)),
                            ]
                        })
                        .unwrap_or_default()
                },
            )?;
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
            |r| !r.decisions.is_empty(),
            |r| {
                r.decisions
                    .iter()
                    .map(|&(reason, n)| {
                        (
                            Some(("reason", reason)),
                            i64::try_from(n).unwrap_or(i64::MAX),
                        )
                    })
                    .collect()
            },
        )
    }
}
