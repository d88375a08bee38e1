//! The pure heart of the controller: `(Rollout, Observed, now) -> Plan`. It reads no clock, no
//! client and no randomness; status is its only memory, so any restart resumes where it was.
//!
//! The state machine, module by module (all pure):
//!
//! - `decide` (here): the entry point and the `Plan` it returns; after the strategy has
//!   decided, the passes every Rollout gets: `Available`, progress deadline, scaling Events,
//!   AnalysisRun tidying, `workloadRef` scale-down.
//! - `release`: what every strategy shares: spec checks, the start of a release, the first
//!   revision, abort, retry, analysis gating, revision history, progress deadline.
//! - `canary`: the canary's steps (weights, pauses, analysis, header routes), then
//!   - `basic`: without a traffic router, replica counts carry the weight;
//!   - `routed`: a traffic router carries the weight (`dynamicStableScale` included).
//! - `bluegreen`: preview, promotion and the switch of the active Service.
//! - `status`: phase, message and replica counts; `conditions`: conditions and `Available`.
//! - `analysis`: which AnalysisRun each use needs and what its verdict means;
//!   `replicas`: surge and unavailability arithmetic; `validate`: the spec checks.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::constants::condition;
use crate::api::rollout::{Rollout, RolloutStatus, WorkloadScaleDown};

use super::analysis;
use super::conditions;
use super::observe::{Observed, ObservedRs};
use super::release::progress_deadline;
use crate::traffic::RouteState;
use kube::ResourceExt;

/// Every Event reason `decide` can emit (the bounded label set of the decisions metric).
pub const EVENT_REASONS: &[&str] = &[
    "FirstRevision",
    "RolloutStarted",
    "FastTrackRollback",
    "StepCompleted",
    "Paused",
    "PauseEnded",
    "Promoted",
    "PromotedFull",
    "RolloutAborted",
    "RolloutRetried",
    "RolloutCompleted",
    "InvalidSpec",
    "ProgressDeadlineExceeded",
    "ScalingReplicaSet",
    "WorkloadScaledDown",
    "AnalysisInconclusive",
    "AnalysisResumed",
    "ExerciseEnded",
    "ExerciseFailed",
];

/// Restarts of a crash-looping container before the rollout is aborted.
pub const DEFAULT_RESTART_THRESHOLD: i32 = 2;

/// Desired replicas of one ReplicaSet, created if it does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsPlan {
    pub hash: String,
    pub replicas: i32,
    /// When an old revision may be scaled to zero; kept in an annotation on its ReplicaSet.
    pub scale_down_at: Option<Timestamp>,
}

/// A Service whose selector must carry `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    pub name: String,
    pub hash: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Why a release was aborted (`sluice_rollout_aborts_total`'s `cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortCause {
    /// A person set `status.abort` (`kubectl sluice abort`, `kubectl argo rollouts abort`).
    Request,
    /// An AnalysisRun the release waits on failed.
    AnalysisFailed,
    /// The new revision's pods cannot run (fail fast: crash loop, image pull, ...).
    PodsFailing,
    /// No progress within `progressDeadlineSeconds`, with `progressDeadlineAbort`.
    ProgressDeadline,
    /// A rollback exercise's faulty revision reached the point of promotion (or a step that
    /// would need a person, or full weight) without being caught: Sluice stopped it itself.
    SafetyStop,
}

impl AbortCause {
    pub const ALL: [AbortCause; 5] = [
        AbortCause::Request,
        AbortCause::AnalysisFailed,
        AbortCause::PodsFailing,
        AbortCause::ProgressDeadline,
        AbortCause::SafetyStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AbortCause::Request => "Request",
            AbortCause::AnalysisFailed => "AnalysisFailed",
            AbortCause::PodsFailing => "PodsFailing",
            AbortCause::ProgressDeadline => "ProgressDeadline",
            AbortCause::SafetyStop => "SafetyStop",
        }
    }

    /// Sluice decided it, not a person: an automatic rollback, whose time to safe is measured.
    pub fn is_automatic(self) -> bool {
        self != AbortCause::Request
    }
}

/// What let a release past a pause or gate (`sluice_rollout_promotions_total`'s `cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromotionCause {
    /// A timed pause ended, or blue-green's auto-promotion.
    Automatic,
    /// A person cleared a pause.
    Manual,
    /// A person asked for a full promotion: every remaining step and analysis skipped.
    Full,
    /// A person accepted an inconclusive analysis.
    InconclusiveAccepted,
}

impl PromotionCause {
    pub const ALL: [PromotionCause; 4] = [
        PromotionCause::Automatic,
        PromotionCause::Manual,
        PromotionCause::Full,
        PromotionCause::InconclusiveAccepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PromotionCause::Automatic => "Automatic",
            PromotionCause::Manual => "Manual",
            PromotionCause::Full => "Full",
            PromotionCause::InconclusiveAccepted => "InconclusiveAccepted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What `apply` carries out: Services first (traffic), then ReplicaSets, then status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub status: RolloutStatus,
    pub services: Vec<ServicePlan>,
    pub replica_sets: Vec<RsPlan>,
    /// Old ReplicaSets beyond `revisionHistoryLimit`.
    pub delete_replica_sets: Vec<String>,
    pub events: Vec<PlannedEvent>,
    /// Come back after this long even if nothing changes (a pause or delay ends).
    pub requeue_after: Option<Duration>,
    /// Scale the `workloadRef` Deployment to this many replicas: Sluice's own pods serve
    /// instead (all at once with `onsuccess`, pod by pod with `progressively`).
    pub workload_replicas: Option<i32>,
    /// AnalysisRuns to create.
    pub create_runs: Vec<super::analysis::RunPlan>,
    /// AnalysisRuns to stop (`spec.terminate`): Sluice no longer acts on their verdict.
    pub terminate_runs: Vec<String>,
    /// Finished AnalysisRuns of revisions that are gone.
    pub delete_runs: Vec<String>,
    /// The runs this release still relies on; every other run that measures is stopped.
    pub active_runs: Vec<String>,
    /// What the traffic router (Istio, Gateway API) must say, when the Rollout has one.
    pub traffic: Option<RouteState>,
    /// The release was aborted by this decision, and why (an abort already in force is not
    /// decided again).
    pub aborted: Option<AbortCause>,
    /// Pauses and gates this decision let the release past, and what let it.
    pub promotions: Vec<PromotionCause>,
    /// The metric behind an abort or an inconclusive pause decided now.
    pub analysis: Option<crate::api::rollout::NotifiedAnalysis>,
}

impl Plan {
    pub(super) fn event(
        &mut self,
        type_: EventType,
        reason: &'static str,
        message: impl Into<String>,
    ) {
        self.events.push(PlannedEvent {
            type_,
            reason,
            message: message.into(),
        });
    }
    /// A promotion: its Event (`Promoted`, or `PromotedFull` for a full one) and its cause.
    pub(super) fn promote(&mut self, cause: PromotionCause, message: impl Into<String>) {
        let reason = match cause {
            PromotionCause::Full => "PromotedFull",
            _ => "Promoted",
        };
        self.event(EventType::Normal, reason, message);
        self.promotions.push(cause);
    }

    pub(super) fn requeue_at(&mut self, at: Timestamp, now: Timestamp) {
        let wait = at.duration_since(now).max(SignedDuration::from_secs(1));
        let wait = Duration::try_from(wait).unwrap_or(Duration::from_secs(1));
        self.requeue_after = Some(self.requeue_after.map_or(wait, |w| w.min(wait)));
    }
}

/// `t` plus `secs`; a time beyond the calendar is the calendar's end (never `t` itself: a
/// pause of a billion years must not end at once).
pub(super) fn after(t: Timestamp, secs: i64) -> Timestamp {
    match t.checked_add(SignedDuration::from_secs(secs)) {
        Ok(at) => at,
        Err(_) if secs > 0 => Timestamp::MAX,
        Err(_) => Timestamp::MIN,
    }
}

/// Whole seconds of a duration, saturating at `i64::MAX`.
pub(super) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(super) fn find<'a>(obs: &'a Observed, hash: &str) -> Option<&'a ObservedRs> {
    obs.replica_sets.iter().find(|rs| rs.hash == hash)
}

/// Decides the next move of one Rollout.
pub fn decide(ro: &Rollout, obs: &Observed, now: Timestamp) -> Plan {
    let mut plan = strategy(ro, obs, now);
    conditions::available_condition(&mut plan.status, ro, obs, now);
    if conditions::get(&plan.status.conditions, condition::INVALID_SPEC).is_none() {
        progress_deadline(ro, obs, &mut plan, now);
        scaling_events(ro, obs, &mut plan);
    }
    if plan.status.current_pod_hash.is_some() {
        let active = plan.active_runs.clone();
        let keep: Vec<&str> = active.iter().map(String::as_str).collect();
        analysis::tidy(&mut plan, obs, &keep);
    }
    if conditions::get(&plan.status.conditions, condition::INVALID_SPEC).is_none() {
        workload_scale_down(ro, obs, &mut plan);
    }
    if let Some(prev) = ro.status.as_ref() {
        conditions::keep_transition_times(&prev.conditions, &mut plan.status.conditions);
    }
    super::exercise::track(obs, &mut plan, now);
    plan
}

/// The release: the shared start (spec checks, a new template, the first revision), then the
/// strategy's own decisions.
fn strategy(ro: &Rollout, obs: &Observed, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(release) = super::release::begin(ro, obs, now, &mut plan) else {
        return plan;
    };
    if let Some(bg) = &ro.spec.strategy.blue_green {
        super::bluegreen::decide(&release, bg, &mut plan);
    } else if let Some(canary) = &ro.spec.strategy.canary {
        super::canary::decide(&release, canary, &mut plan);
    }
    plan
}

/// workloadRef: the Deployment keeps its pods until Sluice's own serve in their place. With
/// `onsuccess` (the default) it goes to zero once the stable revision is fully available; with
/// `progressively` it keeps `replicas` minus the Rollout's available pods, and never grows
/// again (a Rollout pod lost later is the Rollout's to replace, as its own scale-up does).
fn workload_scale_down(ro: &Rollout, obs: &Observed, plan: &mut Plan) {
    let (Some(w), Some(current)) = (&ro.spec.workload_ref, obs.workload_replicas) else {
        return;
    };
    let replicas = ro.spec.replicas();
    let target = match w.scale_down {
        Some(WorkloadScaleDown::Never) => return,
        Some(WorkloadScaleDown::Progressively) => {
            let available = obs
                .replica_sets
                .iter()
                .map(|rs| rs.available.max(0))
                .fold(0i32, i32::saturating_add);
            replicas.saturating_sub(available).max(0)
        }
        Some(WorkloadScaleDown::OnSuccess) | None => {
            let stable = plan.status.stable_rs.as_deref().unwrap_or_default();
            if find(obs, stable).is_some_and(|rs| rs.available >= replicas) {
                0
            } else {
                return;
            }
        }
    };
    if target >= current {
        return;
    }
    plan.workload_replicas = Some(target);
    let message = if target == 0 {
        format!(
            "Deployment {} scaled to zero: the Rollout's own pods are available",
            w.name
        )
    } else {
        format!(
            "Deployment {} scaled down to {target}: the Rollout has {} of {replicas} pods available",
            w.name,
            replicas - target
        )
    };
    plan.event(EventType::Normal, "WorkloadScaledDown", message);
}

/// An Event for each ReplicaSet whose size changes, as Deployments report it.
fn scaling_events(ro: &Rollout, obs: &Observed, plan: &mut Plan) {
    let mut events = Vec::new();
    for rp in &plan.replica_sets {
        let current = find(obs, &rp.hash).map(|r| r.replicas);
        if current == Some(rp.replicas) || (current.is_none() && rp.replicas == 0) {
            continue;
        }
        let name = find(obs, &rp.hash)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| super::hash::replica_set_name(&ro.name_any(), &rp.hash));
        let from = current.unwrap_or(0);
        let verb = if rp.replicas > from {
            "Scaled up"
        } else {
            "Scaled down"
        };
        events.push(PlannedEvent {
            type_: EventType::Normal,
            reason: "ScalingReplicaSet",
            message: format!("{verb} replica set {name} from {from} to {}", rp.replicas),
        });
    }
    plan.events.extend(events);
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decide_props.rs"]
mod props;
