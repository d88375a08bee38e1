//! A rollback exercise as the Rollout controller keeps it, pure: after `decide` has planned a
//! reconcile, the Rollout's `status.exercise` records what the exercise controller measures
//! from: the faulty revision, when it went live (an available pod taking traffic), its peak
//! weight, the abort and its cause (and the analysis behind it), and when no traffic went to
//! it any more. Each moment is the `now` of the reconcile that saw it, so it is as exact as the
//! watches that woke the reconcile.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::{EventType, Plan, find};
use super::observe::Observed;
use crate::api::exercise::{ExerciseInForce, ExerciseResult};

/// Fills in `plan.status.exercise` (kept from the previous status) for this reconcile.
pub(super) fn track(obs: &Observed, plan: &mut Plan, now: Timestamp) {
    let Some(mut ex) = plan.status.exercise.take() else {
        return;
    };
    if let Some(end) = &ex.ended {
        // Recorded by the exercise controller: the block goes, and the template (the
        // stable's again) settles the Rollout back on its stable revision.
        let (type_, reason) = match end.result {
            ExerciseResult::Failed => (EventType::Warning, "ExerciseFailed"),
            _ => (EventType::Normal, "ExerciseEnded"),
        };
        let message = format!(
            "exercise {} run {} {}: {}",
            ex.name,
            ex.run,
            end.result.as_str(),
            end.message
        );
        plan.event(type_, reason, message);
        return;
    }
    record(obs, plan, &mut ex, now);
    plan.status.exercise = Some(ex);
}

fn record(obs: &Observed, plan: &Plan, ex: &mut ExerciseInForce, now: Timestamp) {
    let status = &plan.status;
    let seen = obs.exercise.clone().unwrap_or_default();
    ex.refused = seen.refused;
    let Some(revision) = seen.revision else {
        return;
    };
    ex.revision = Some(revision.clone());
    if status.current_pod_hash.as_deref() != Some(revision.as_str()) {
        return;
    }
    let weight = status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .filter(|w| w.canary.pod_template_hash.as_deref() == Some(revision.as_str()))
        .map(|w| w.canary.weight);
    if let Some(w) = weight {
        ex.peak_weight = Some(ex.peak_weight.unwrap_or(0).max(w));
    }
    let available = find(obs, &revision).is_some_and(|rs| rs.available > 0);
    // Blue-green's preview takes no production traffic: live once its pods are available.
    if ex.live_at.is_none() && ex.aborted_at.is_none() && available && weight != Some(0) {
        ex.live_at = Some(Time(now));
    }
    if status.abort == Some(true) && ex.aborted_at.is_none() {
        ex.aborted_at = status.aborted_at.clone().or(Some(Time(now)));
        ex.abort_cause = Some(
            plan.aborted
                .map_or("Request", super::decide::AbortCause::as_str)
                .to_string(),
        );
        ex.analysis = plan.analysis.clone();
    }
    if ex.aborted_at.is_some() && ex.safe_at.is_none() && off(obs, status, &revision) {
        ex.safe_at = Some(Time(now));
    }
}

/// No traffic goes to `revision`: its canary weight is 0 (a router's weight, or without a
/// router its share of the ready pods), a blue-green active Service selects another revision,
/// or no pod of it is ready.
fn off(obs: &Observed, status: &crate::api::rollout::RolloutStatus, revision: &str) -> bool {
    if let Some(bg) = &status.blue_green {
        return bg.active_selector.as_deref() != Some(revision);
    }
    // A router's weight, or without a router the canary's share of the ready pods.
    let weights = status.canary.as_ref().and_then(|c| c.weights.as_ref());
    if let Some(w) = weights
        && w.canary.pod_template_hash.as_deref() == Some(revision)
    {
        return w.canary.weight == 0;
    }
    find(obs, revision).is_none_or(|rs| rs.ready <= 0)
}

#[cfg(test)]
#[path = "exercise_tests.rs"]
mod tests;
