//! Which decisions are told to whom (pure): the triggers, the subscriptions a Rollout has
//! (its annotations and its namespace's default), and the records a decision adds to the
//! Rollout's status, in the same write as the decision itself.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::rollout::{NotificationLog, NotificationRecord, RolloutPhase, RolloutStatus};
use crate::rollout::decide::Plan;

/// Annotations `notifications.sluice.dev/subscribe.<trigger>: receiver[,receiver]`.
pub const SUBSCRIBE_PREFIX: &str = "notifications.sluice.dev/subscribe.";

/// Records kept in a Rollout's status; the oldest delivered ones go first.
pub const KEPT: usize = 20;

/// A kind of decision receivers can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A new revision (or a retry of an aborted one) starts its release.
    ReleaseStarted,
    /// A step is done (a weight reached, an analysis passed).
    StepCompleted,
    /// The release waits at a pause step or for a blue-green promotion.
    Paused,
    /// The revision is stable: it serves everything.
    Promoted,
    /// The release was aborted: traffic goes back to the stable revision.
    Aborted,
    /// An analysis could not decide: the release waits for a person.
    AnalysisInconclusive,
    /// The Rollout is Healthy again after an aborted release.
    Recovered,
    /// A rollback exercise failed: its fault was not caught, or not in time.
    ExerciseFailed,
}

impl Trigger {
    pub const ALL: [Trigger; 8] = [
        Trigger::ReleaseStarted,
        Trigger::StepCompleted,
        Trigger::Paused,
        Trigger::Promoted,
        Trigger::Aborted,
        Trigger::AnalysisInconclusive,
        Trigger::Recovered,
        Trigger::ExerciseFailed,
    ];

    /// Its name in annotations, the configuration and the records.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::ReleaseStarted => "on-release-started",
            Trigger::StepCompleted => "on-step-completed",
            Trigger::Paused => "on-paused",
            Trigger::Promoted => "on-promoted",
            Trigger::Aborted => "on-aborted",
            Trigger::AnalysisInconclusive => "on-analysis-inconclusive",
            Trigger::Recovered => "on-recovered",
            Trigger::ExerciseFailed => "on-exercise-failed",
        }
    }

    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Receivers per trigger.
pub type Subscriptions = BTreeMap<Trigger, BTreeSet<String>>;

/// A Rollout's subscriptions: its namespace's default (or the default for every namespace,
/// `*`, when its namespace has none) joined with its own annotations. Annotations naming a
/// trigger that does not exist are returned apart, to be reported.
pub fn subscriptions(
    annotations: &BTreeMap<String, String>,
    namespace_default: Option<&Subscriptions>,
) -> (Subscriptions, Vec<String>) {
    let mut subs = namespace_default.cloned().unwrap_or_default();
    let mut unknown = Vec::new();
    for (key, value) in annotations {
        let Some(trigger) = key.strip_prefix(SUBSCRIBE_PREFIX) else {
            continue;
        };
        let Some(trigger) = Trigger::parse(trigger) else {
            unknown.push(key.clone());
            continue;
        };
        let names = value
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|n| !n.is_empty());
        subs.entry(trigger)
            .or_default()
            .extend(names.map(String::from));
    }
    subs.retain(|_, r| !r.is_empty());
    (subs, unknown)
}

/// One decision to tell, before receivers are chosen.
#[derive(Clone, Debug, PartialEq)]
struct Notice {
    trigger: Trigger,
    revision: String,
    message: String,
    with_analysis: bool,
}

/// The decisions `plan` makes, read from its Events (the one account of what was decided),
/// its abort and its phase against the status before (`prev`).
fn notices(prev: &RolloutStatus, plan: &Plan) -> Vec<Notice> {
    let desired = plan.status.current_pod_hash.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut push = |trigger, revision: &str, message: &str, with_analysis| {
        out.push(Notice {
            trigger,
            revision: revision.to_string(),
            message: message.to_string(),
            with_analysis,
        })
    };
    // A rollback exercise's release is a drill: it pages nobody, and only its failure is told.
    let drill = |s: &RolloutStatus| {
        s.exercise
            .as_ref()
            .and_then(|e| e.revision.as_deref())
            .is_some_and(|r| r == desired)
    };
    let in_drill = drill(prev) || drill(&plan.status);
    for e in &plan.events {
        match e.reason {
            "ExerciseFailed" => {
                let revision = prev
                    .exercise
                    .as_ref()
                    .and_then(|x| x.revision.clone())
                    .unwrap_or_else(|| desired.clone());
                push(Trigger::ExerciseFailed, &revision, &e.message, false)
            }
            _ if in_drill => {}
            "RolloutStarted" | "RolloutRetried" => {
                push(Trigger::ReleaseStarted, &desired, &e.message, false)
            }
            "StepCompleted" => push(Trigger::StepCompleted, &desired, &e.message, false),
            "Paused" => push(Trigger::Paused, &desired, &e.message, false),
            "RolloutCompleted" => push(Trigger::Promoted, &desired, &e.message, false),
            "AnalysisInconclusive" => {
                push(Trigger::AnalysisInconclusive, &desired, &e.message, true)
            }
            "RolloutAborted" | "ProgressDeadlineExceeded" if plan.aborted.is_some() => {
                push(Trigger::Aborted, &desired, &e.message, true)
            }
            _ => {}
        }
    }
    let healthy = plan.status.phase == Some(RolloutPhase::Healthy);
    if healthy && prev.phase != Some(RolloutPhase::Healthy) {
        for revision in open_aborts(plan.status.notifications.as_ref()) {
            let message = format!(
                "the Rollout is Healthy again (stable revision {}) after revision {revision} was aborted",
                plan.status.stable_rs.clone().unwrap_or_default()
            );
            push(Trigger::Recovered, &revision, &message, false);
        }
    }
    out
}

/// Revisions aborted since the last recovery, each once, oldest first.
fn open_aborts(log: Option<&NotificationLog>) -> Vec<String> {
    let records = log.map(|l| l.records.as_slice()).unwrap_or_default();
    let since = records
        .iter()
        .rposition(|r| r.trigger == Trigger::Recovered.name())
        .map_or(0, |i| i + 1);
    let mut out: Vec<String> = Vec::new();
    for r in &records[since..] {
        if r.trigger == Trigger::Aborted.name() && !out.contains(&r.revision) {
            out.push(r.revision.clone());
        }
    }
    out
}

/// Adds to `plan.status` a record of each decision of `plan` that has receivers, each
/// receiver pending. An abort is recorded even without receivers (and so is the recovery
/// that closes it): the recovery is found from it.
pub fn record(prev: &RolloutStatus, plan: &mut Plan, subs: &Subscriptions, now: Timestamp) {
    let found = notices(prev, plan);
    if found.is_empty() {
        return;
    }
    let analysis = plan.analysis.clone();
    let log = plan
        .status
        .notifications
        .get_or_insert_with(Default::default);
    for n in found {
        let pending: Vec<String> = subs
            .get(&n.trigger)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        let marker = matches!(n.trigger, Trigger::Aborted | Trigger::Recovered);
        if pending.is_empty() && !marker {
            continue;
        }
        log.sequence += 1;
        log.records.push(NotificationRecord {
            id: log.sequence,
            trigger: n.trigger.name().to_string(),
            revision: n.revision,
            at: Time(now),
            message: n.message,
            analysis: if n.with_analysis {
                analysis.clone()
            } else {
                None
            },
            pending,
            delivered: Vec::new(),
            failed: Vec::new(),
        });
    }
    prune(log);
    if log.records.is_empty() && log.sequence == 0 {
        plan.status.notifications = None;
    }
}

/// At most [`KEPT`] records: the oldest finished ones go first, then the oldest of all.
fn prune(log: &mut NotificationLog) {
    while log.records.len() > KEPT {
        let i = log
            .records
            .iter()
            .position(|r| r.pending.is_empty())
            .unwrap_or(0);
        log.records.remove(i);
    }
}

/// Records with receivers still to tell.
pub fn pending(status: &RolloutStatus) -> impl Iterator<Item = &NotificationRecord> {
    status
        .notifications
        .iter()
        .flat_map(|l| l.records.iter())
        .filter(|r| !r.pending.is_empty())
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
