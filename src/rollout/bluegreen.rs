//! Blue-green decisions (pure): the new revision runs beside the stable behind the preview
//! Service; promotion switches the active Service at once, and only when the new ReplicaSet is
//! fully available; the old revision keeps its pods for `scaleDownDelaySeconds`.
//!
//! The release goes: preview (scaled to `previewReplicaCount`) → pre-promotion analysis →
//! promotion (automatic, after `autoPromotionSeconds`, or by a person) → scale up to full
//! size → post-promotion analysis (with the active Service already switched) → the new
//! revision is stable. Abort, retry and analysis gating are the shared ones of `release`.

use std::fmt;

use k8s_openapi::jiff::Timestamp;

use crate::api::rollout::{
    BlueGreenStatus, BlueGreenStrategy, PauseReason, RolloutAnalysisRunStatus, RolloutPhase,
};

use super::analysis::{self, AnalysisKey, RunState, UsedRun, Verdict};
use super::decide::{EventType, Plan, PromotionCause, RsPlan, ServicePlan, after};
use super::release::{
    AbortDelay, Held, Hold, Release, abort_hold, abort_on_failed_run, abort_or_retry,
    delayed_scale_down, has_pause, inconclusive_pause, pause, refresh_run_status, revision_history,
    settle,
};
use super::status::{PhaseLine, fill_blue_green_counts};

/// Which revision each blue-green Service selects.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Selectors {
    active: String,
    preview: String,
}

impl Selectors {
    fn both(hash: &str) -> Self {
        Selectors {
            active: hash.to_string(),
            preview: hash.to_string(),
        }
    }
}

/// The runs of the promotion analyses of this release.
struct Runs {
    pre: Option<UsedRun>,
    post: Option<UsedRun>,
}

impl Runs {
    fn all(&self) -> Vec<&UsedRun> {
        self.pre.iter().chain(self.post.iter()).collect()
    }
}

/// What this reconcile decided for the release, before it is written into the plan.
struct Outcome {
    selectors: Selectors,
    /// Replicas of the new revision while it is not active.
    new_target: i32,
    /// When the new revision goes to zero after an abort.
    new_deadline: Option<Timestamp>,
    /// Scaling the new revision up for the switch (`scaleUpPreviewCheckPoint`).
    promoting: bool,
    phase: PhaseLine,
    pre_line: Option<RolloutAnalysisRunStatus>,
    post_line: Option<RolloutAnalysisRunStatus>,
}

/// What a promotion waits for, from its analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// The run measures (or its creation is planned now).
    Measuring { key: AnalysisKey, name: String },
    /// The run is inconclusive: a person decides.
    Inconclusive {
        key: AnalysisKey,
        name: String,
        message: String,
    },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Measuring { key, name } => write!(f, "waiting for {} {name}", key.describe()),
            Wait::Inconclusive { key, name, message } => write!(
                f,
                "{} {name} is inconclusive: {message}; promote to go on or abort",
                key.describe()
            ),
        }
    }
}

/// A promotion analysis' say: its status line, and what the promotion waits for (nothing
/// when it lets the promotion go on).
struct Gate {
    line: RolloutAnalysisRunStatus,
    wait: Option<Wait>,
}

/// Decides the next move of a blue-green Rollout.
pub(super) fn decide(rel: &Release, bg: &BlueGreenStrategy, plan: &mut Plan) {
    plan.status.current_step_index = None;
    refresh_run_status(plan, rel.obs);
    let before = plan.status.blue_green.clone().unwrap_or_default();
    let runs = Runs {
        pre: bg
            .pre_promotion_analysis
            .as_ref()
            .map(|_| rel.run(AnalysisKey::PrePromotion)),
        post: bg
            .post_promotion_analysis
            .as_ref()
            .map(|_| rel.run(AnalysisKey::PostPromotion)),
    };
    let out = if rel.settled() {
        settle(plan);
        Outcome {
            selectors: Selectors::both(&rel.stable),
            new_target: rel.replicas,
            new_deadline: None,
            promoting: false,
            phase: PhaseLine::healthy(),
            pre_line: None,
            post_line: None,
        }
    } else {
        release(rel, bg, &before, &runs, plan)
    };
    write(rel, bg, &before, out, plan);
    fill_blue_green_counts(&mut plan.status, rel.obs);
}

/// A release in progress: aborted, or on its way from preview to promotion.
fn release(
    rel: &Release,
    bg: &BlueGreenStrategy,
    before: &BlueGreenStatus,
    runs: &Runs,
    plan: &mut Plan,
) -> Outcome {
    let promoting = before.scale_up_preview_check_point == Some(true);
    // Once the active Service was switched for post-promotion analysis, it stays switched
    // until the release is promoted or aborted (a pod restarting meanwhile must not flip it).
    let switched = runs.post.is_some()
        && promoting
        && before.active_selector.as_deref() == Some(rel.desired.as_str());
    // A failed analysis aborts in this same reconcile: the active Service stays on (or goes
    // back to) the stable revision.
    let back = format!("the active Service selects stable {}", rel.stable);
    abort_on_failed_run(rel, plan, &runs.all(), &back);
    let mut out = Outcome {
        selectors: Selectors::both(&rel.stable),
        new_target: rel.replicas,
        new_deadline: None,
        promoting,
        phase: PhaseLine::healthy(),
        pre_line: None,
        post_line: None,
    };
    if rel.exercise && plan.status.promote_full == Some(true) {
        plan.status.promote_full = None;
        super::release::safety_stop(rel, plan, "a request for a full promotion");
    }
    match abort_or_retry(rel, plan) {
        Some(_) => aborted(rel, bg, runs, plan, &mut out),
        None => {
            if progress(rel, bg, runs, switched, plan, &mut out) == Next::ExerciseStop {
                // A rollback exercise's preview passed everything before its promotion.
                super::release::safety_stop(rel, plan, "its promotion");
                abort_or_retry(rel, plan);
                aborted(rel, bg, runs, plan, &mut out);
            }
        }
    }
    out
}

/// What `progress` leaves to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Done,
    /// A rollback exercise reached its promotion: it must stop instead.
    ExerciseStop,
}

/// The active Service never left (or goes back to) the stable; the preview Service stays on
/// the aborted revision, as in Argo Rollouts (`reconcilePreviewService`), so it can still be
/// looked at. The aborted revision keeps its pods as `abortScaleDownDelaySeconds` says.
fn aborted(rel: &Release, bg: &BlueGreenStrategy, runs: &Runs, plan: &mut Plan, out: &mut Outcome) {
    out.promoting = false;
    for run in runs.all() {
        analysis::terminate(plan, rel.obs, &run.name);
    }
    out.selectors.preview = rel.desired.clone();
    // Argo Rollouts' `shouldDelayScaleDownOnAbort` for blue-green: unset means 30 s, an
    // explicit 0 keeps the preview at its size (`previewReplicaCount`, or `replicas`).
    let delay = match bg.abort_scale_down_delay_seconds {
        Some(0) => AbortDelay::Never,
        _ => AbortDelay::After(i64::from(bg.abort_scale_down_delay_seconds())),
    };
    (out.new_target, out.new_deadline) =
        match abort_hold(rel, plan, &rel.desired, &rel.stable, delay) {
            Some(_) if delay == AbortDelay::Never => (preview_count(rel, bg), None),
            Some(Held {
                replicas,
                scale_down_at,
            }) => (replicas, scale_down_at),
            None => (0, None),
        };
    out.phase = PhaseLine::new(
        plan.status.phase.unwrap_or(RolloutPhase::Degraded),
        plan.status.message.clone().unwrap_or_default(),
    );
}

/// The preview runs; once available (and past its pre-promotion analysis) it is promoted.
fn progress(
    rel: &Release,
    bg: &BlueGreenStrategy,
    runs: &Runs,
    switched: bool,
    plan: &mut Plan,
    out: &mut Outcome,
) -> Next {
    let promote_full = plan.status.promote_full == Some(true);
    if !promote_full {
        plan.active_runs
            .extend(runs.all().into_iter().map(|r| r.name.clone()));
    }
    out.selectors.preview = rel.desired.clone();
    let preview_count = preview_count(rel, bg);
    let preview_ready = rel
        .new_rs()
        .is_some_and(|r| r.replicas >= preview_count && r.available >= preview_count);
    let mut wait = None;
    if !out.promoting && preview_ready {
        // A full promotion (or a fast-tracked rollback) creates no run, as in Argo Rollouts.
        let pre_ok = match &runs.pre {
            Some(run) if !promote_full => {
                let gate = promotion_analysis(rel, plan, run);
                out.pre_line = Some(gate.line);
                let ok = gate.wait.is_none();
                wait = gate.wait;
                ok
            }
            _ => true,
        };
        if rel.exercise && pre_ok {
            return Next::ExerciseStop;
        }
        out.promoting =
            pre_ok && rel.ro.spec.paused != Some(true) && ready_to_promote(bg, plan, rel.now);
    }
    if out.promoting {
        promote(rel, runs, switched, plan, out);
    } else {
        preview(rel, preview_count, wait, plan, out);
    }
    Next::Done
}

/// `previewReplicaCount`, within `replicas`.
fn preview_count(rel: &Release, bg: &BlueGreenStrategy) -> i32 {
    bg.preview_replica_count
        .unwrap_or(rel.replicas)
        .clamp(0, rel.replicas)
}

/// Promoting: the new revision scales to full size; the switch comes once every new pod is
/// available, after the post-promotion analysis (judged with the active Service switched).
fn promote(rel: &Release, runs: &Runs, switched: bool, plan: &mut Plan, out: &mut Outcome) {
    let (desired, replicas) = (&rel.desired, rel.replicas);
    out.new_target = replicas;
    let full = rel
        .new_rs()
        .is_some_and(|r| r.replicas == replicas && r.available >= replicas);
    let post_ok = match (&runs.post, full || switched) {
        (Some(run), true) if plan.status.promote_full != Some(true) => {
            // Switched, and judged before the new revision becomes stable.
            out.selectors = Selectors::both(desired);
            let gate = promotion_analysis(rel, plan, run);
            out.post_line = Some(gate.line);
            if let Some(w) = &gate.wait {
                let phase = match w {
                    Wait::Inconclusive { .. } => RolloutPhase::Paused,
                    Wait::Measuring { .. } => RolloutPhase::Progressing,
                };
                out.phase = PhaseLine::new(phase, w.to_string());
            }
            gate.wait.is_none()
        }
        _ => true,
    };
    if full && post_ok {
        // The switch: all at once, and only now that every new pod is available.
        out.selectors = Selectors::both(desired);
        plan.status.stable_rs = Some(desired.clone());
        out.promoting = false;
        plan.event(
            EventType::Normal,
            "RolloutCompleted",
            format!("active Service switched to revision {desired}"),
        );
        rel.progressing(plan, true, "RolloutCompleted", "the new revision is active");
    } else if !full {
        out.phase = PhaseLine::new(
            RolloutPhase::Progressing,
            "promoting: scaling the new revision to full size",
        );
    }
}

/// Not promoting yet: the preview runs at its size, waiting for its pods, its analysis, the
/// promotion, or the end of a pause.
fn preview(
    rel: &Release,
    preview_count: i32,
    wait: Option<Wait>,
    plan: &mut Plan,
    out: &mut Outcome,
) {
    out.new_target = preview_count;
    let unpaused = plan.status.pause_conditions.is_empty();
    out.phase = if rel.ro.spec.paused == Some(true) {
        PhaseLine::new(RolloutPhase::Paused, "paused by spec.paused")
    } else if let Some(w) = wait {
        let phase = if unpaused {
            RolloutPhase::Progressing
        } else {
            RolloutPhase::Paused
        };
        PhaseLine::new(phase, w.to_string())
    } else if unpaused {
        PhaseLine::new(
            RolloutPhase::Progressing,
            format!("waiting for the preview ({preview_count} pods) to be available"),
        )
    } else {
        PhaseLine::new(RolloutPhase::Paused, "waiting for promotion")
    };
    rel.progressing(plan, true, "ReplicaSetUpdated", "preview running");
}

/// Writes the outcome: the ReplicaSets (the active revision at full size, the preview at its
/// size, older ones kept until their scale-down time), the Services, the blue-green status
/// and the phase.
fn write(
    rel: &Release,
    bg: &BlueGreenStrategy,
    before: &BlueGreenStatus,
    out: Outcome,
    plan: &mut Plan,
) {
    let (desired, replicas) = (&rel.desired, rel.replicas);
    let active = plan.status.stable_rs.clone().unwrap_or_default();
    plan.replica_sets.push(RsPlan {
        hash: desired.clone(),
        replicas: if &active == desired {
            replicas
        } else {
            out.new_target
        },
        scale_down_at: out.new_deadline.filter(|_| &active != desired),
    });
    if &active != desired {
        plan.replica_sets.push(RsPlan {
            hash: active.clone(),
            replicas,
            scale_down_at: None,
        });
    }
    let delay = i64::from(bg.scale_down_delay_seconds());
    let limit = bg.scale_down_delay_revision_limit;
    delayed_scale_down(rel, plan, &[desired, &active], delay, limit);
    // The new, active and stable revisions are never candidates for deletion.
    revision_history(rel, plan, &[desired, &active, &rel.stable]);

    let Selectors {
        active: on,
        preview,
    } = out.selectors;
    if rel.created_paused {
        // Created paused: the revision scales up, but no Service selects it until resumed.
        plan.status.blue_green = Some(BlueGreenStatus::default());
        let message = format!(
            "paused by spec.paused: created paused, the active Service is switched to revision {desired} once resumed"
        );
        rel.set_phase(plan, RolloutPhase::Paused, &message);
        return;
    }
    if let Some(name) = &bg.preview_service {
        plan.services.push(ServicePlan {
            name: name.clone(),
            hash: preview.clone(),
        });
    }
    plan.services.push(ServicePlan {
        name: bg.active_service.clone(),
        hash: on.clone(),
    });
    plan.status.blue_green = Some(BlueGreenStatus {
        active_selector: Some(on),
        preview_selector: bg.preview_service.as_ref().map(|_| preview),
        scale_up_preview_check_point: out.promoting.then_some(true),
        pre_promotion_analysis_run_status: out
            .pre_line
            .or(before.pre_promotion_analysis_run_status.clone()),
        post_promotion_analysis_run_status: out
            .post_line
            .or(before.post_promotion_analysis_run_status.clone()),
    });
    let mut phase = out.phase;
    if desired == &active {
        let available = rel.rs(&active).map(|r| r.available).unwrap_or(0);
        phase = if available >= replicas {
            PhaseLine::healthy()
        } else {
            PhaseLine::new(RolloutPhase::Progressing, "scaling the active revision")
        };
    }
    if plan.status.abort != Some(true) {
        rel.set_phase(plan, phase.phase, &phase.message);
    }
}

/// A pre- or post-promotion analysis: its run is created, and its verdict (or a person
/// accepting an inconclusive one) says whether the promotion goes on.
fn promotion_analysis(rel: &Release, plan: &mut Plan, run: &UsedRun) -> Gate {
    let hold = inconclusive_pause(rel, plan, &[run], None);
    let (key, name) = (run.key, run.name.clone());
    let RunState { verdict, line } = analysis::ensure_run(plan, rel.obs, run, &rel.desired);
    let wait = match (verdict, hold) {
        (Verdict::Successful, _) | (Verdict::Inconclusive { .. }, Hold::Promoted) => None,
        // Stopped while inconclusive: a person accepted it (perhaps before a restart).
        (Verdict::Inconclusive { .. }, _)
            if analysis::observed(rel.obs, &name).is_some_and(|r| r.terminated) =>
        {
            None
        }
        (Verdict::Inconclusive { message, .. }, _) => {
            Some(Wait::Inconclusive { key, name, message })
        }
        _ => Some(Wait::Measuring { key, name }),
    };
    Gate { line, wait }
}

/// Whether the preview, now fully available, may be promoted: at once with auto-promotion,
/// after `autoPromotionSeconds`, or when a person has cleared the pause.
fn ready_to_promote(bg: &BlueGreenStrategy, plan: &mut Plan, now: Timestamp) -> bool {
    if plan.status.promote_full == Some(true) {
        plan.promote(PromotionCause::Full, "promoted on request");
        return true;
    }
    if has_pause(&plan.status, PauseReason::UserPause) {
        return false;
    }
    let ours = plan
        .status
        .pause_conditions
        .iter()
        .find(|p| p.reason == PauseReason::BlueGreenPause)
        .cloned();
    let auto = bg.auto_promotion_enabled();
    match (ours, auto, bg.auto_promotion_seconds) {
        (None, true, None) => {
            plan.promote(
                PromotionCause::Automatic,
                "preview available; promoting automatically",
            );
            true
        }
        (Some(p), true, Some(secs)) => {
            let at = after(p.start_time.0, i64::from(secs));
            if now >= at {
                plan.status
                    .pause_conditions
                    .retain(|p| p.reason != PauseReason::BlueGreenPause);
                plan.status.controller_pause = None;
                plan.promote(
                    PromotionCause::Automatic,
                    format!("preview available for {secs}s; promoting automatically"),
                );
                true
            } else {
                plan.requeue_at(at, now);
                false
            }
        }
        (Some(_), _, _) => false,
        (None, _, _) if plan.status.controller_pause == Some(true) => {
            plan.status.controller_pause = None;
            plan.promote(PromotionCause::Manual, "promoted");
            true
        }
        (None, _, secs) => {
            pause_for_promotion(plan, secs.filter(|_| auto), now);
            false
        }
    }
}

/// The preview is available: Sluice pauses for a promotion, by itself after `auto_secs`
/// (`autoPromotionSeconds`) or by a person.
fn pause_for_promotion(plan: &mut Plan, auto_secs: Option<i32>, now: Timestamp) {
    pause(plan, PauseReason::BlueGreenPause, now);
    match auto_secs {
        Some(s) => {
            plan.requeue_at(after(now, i64::from(s)), now);
            plan.event(
                EventType::Normal,
                "Paused",
                format!("preview available; promoting in {s}s"),
            );
        }
        None => plan.event(
            EventType::Normal,
            "Paused",
            "preview available; waiting for promotion",
        ),
    }
}

#[cfg(test)]
#[path = "bluegreen_tests.rs"]
mod tests;
