//! Blue-green decisions (pure): the new revision runs beside the stable behind the preview
//! Service; promotion switches the active Service at once, and only when the new ReplicaSet is
//! fully available; the old revision keeps its pods for `scaleDownDelaySeconds`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::constants::condition;
use crate::api::rollout::{
    BlueGreenStatus, BlueGreenStrategy, PauseCondition, PauseReason, Rollout,
    RolloutAnalysisRunStatus, RolloutPhase, RolloutStatus,
};

use super::analysis::{self, AnalysisKey, Verdict};
use super::conditions;
use super::decide::{
    EventType, Hold, Plan, RsPlan, ServicePlan, abort_on_failed_run, abort_or_retry, after,
    delayed_scale_down, find, inconclusive_pause, refresh_run_status, revision_history, set_phase,
};
use super::observe::Observed;

/// Decides the next move of a blue-green Rollout whose template hashes to `desired`.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    ro: &Rollout,
    bg: &BlueGreenStrategy,
    obs: &Observed,
    prev: &RolloutStatus,
    desired: &str,
    stable: &str,
    now: Timestamp,
    plan: &mut Plan,
) {
    let generation = ro.metadata.generation;
    let replicas = ro.spec.replicas();
    let preview_count = bg
        .preview_replica_count
        .unwrap_or(replicas)
        .clamp(0, replicas);
    plan.status.current_step_index = None;
    let new_rs = find(obs, desired);
    let _ = prev;
    refresh_run_status(plan, obs);
    let bg_status = plan.status.blue_green.clone().unwrap_or_default();
    let mut promoting = bg_status.scale_up_preview_check_point == Some(true);
    let release = analysis::release_number(&plan.status);
    let pre_run = bg
        .pre_promotion_analysis
        .as_ref()
        .map(|_| AnalysisKey::PrePromotion.run_name(ro, desired, release));
    let post_run = bg
        .post_promotion_analysis
        .as_ref()
        .map(|_| AnalysisKey::PostPromotion.run_name(ro, desired, release));
    // Once the active Service was switched for post-promotion analysis, it stays switched
    // until the release is promoted or aborted (a pod restarting meanwhile must not flip it).
    let switched = post_run.is_some()
        && promoting
        && bg_status.active_selector.as_deref() == Some(desired)
        && stable != desired;
    let (mut pre_line, mut post_line) = (None, None);
    let mut analysis_wait: Option<String> = None;

    // A failed analysis aborts in this same reconcile: the active Service stays on (or goes
    // back to) the stable revision.
    if desired != stable {
        abort_on_failed_run(
            plan,
            obs,
            &[
                ("pre-promotion analysis", pre_run.as_deref()),
                ("post-promotion analysis", post_run.as_deref()),
            ],
            desired,
            &format!("the active Service selects stable {stable}"),
            now,
        );
    }

    // (active, preview) selectors.
    let mut selectors = (stable.to_string(), stable.to_string());
    let mut new_target = replicas;
    let mut phase = (RolloutPhase::Healthy, String::new());

    if desired != stable {
        match abort_or_retry(plan, new_rs, desired, stable, generation, now) {
            Some(aborted_at) => {
                // The active Service never left the stable; the preview goes back to it too.
                promoting = false;
                for name in pre_run.iter().chain(post_run.iter()) {
                    analysis::terminate(plan, obs, name);
                }
                let scale_down_at =
                    after(aborted_at, i64::from(bg.abort_scale_down_delay_seconds()));
                new_target = if now < scale_down_at {
                    plan.requeue_at(scale_down_at, now);
                    new_rs.map(|r| r.replicas).unwrap_or(0)
                } else {
                    0
                };
                phase = (
                    plan.status.phase.unwrap_or(RolloutPhase::Degraded),
                    plan.status.message.clone().unwrap_or_default(),
                );
            }
            None => {
                if plan.status.promote_full != Some(true) {
                    plan.active_runs
                        .extend(pre_run.iter().chain(post_run.iter()).cloned());
                }
                selectors.1 = desired.to_string();
                let preview_ready = new_rs
                    .is_some_and(|r| r.replicas >= preview_count && r.available >= preview_count);
                if !promoting && preview_ready {
                    let pre_ok = match &pre_run {
                        None => true,
                        Some(name) => {
                            let (ok, line, wait) = promotion_analysis(
                                plan,
                                obs,
                                AnalysisKey::PrePromotion,
                                name,
                                desired,
                                now,
                            );
                            pre_line = Some(line);
                            analysis_wait = wait;
                            ok || plan.status.promote_full == Some(true)
                        }
                    };
                    promoting =
                        pre_ok && ro.spec.paused != Some(true) && ready_to_promote(bg, plan, now);
                }
                if promoting {
                    new_target = replicas;
                    let full =
                        new_rs.is_some_and(|r| r.replicas == replicas && r.available >= replicas);
                    let post_ok = match (&post_run, full || switched) {
                        (Some(name), true) if plan.status.promote_full != Some(true) => {
                            // Switched, and judged before the new revision becomes stable.
                            selectors = (desired.to_string(), desired.to_string());
                            let (ok, line, wait) = promotion_analysis(
                                plan,
                                obs,
                                AnalysisKey::PostPromotion,
                                name,
                                desired,
                                now,
                            );
                            post_line = Some(line);
                            if let Some(w) = wait {
                                phase = (
                                    if w.contains("inconclusive") {
                                        RolloutPhase::Paused
                                    } else {
                                        RolloutPhase::Progressing
                                    },
                                    w,
                                );
                            }
                            ok
                        }
                        _ => true,
                    };
                    if full && post_ok {
                        // The switch: all at once, and only now that every new pod is available.
                        selectors = (desired.to_string(), desired.to_string());
                        plan.status.stable_rs = Some(desired.to_string());
                        promoting = false;
                        plan.event(
                            EventType::Normal,
                            "RolloutCompleted",
                            format!("active Service switched to revision {desired}"),
                        );
                        conditions::set(
                            &mut plan.status.conditions,
                            condition::PROGRESSING,
                            true,
                            "RolloutCompleted",
                            "the new revision is active",
                            generation,
                            now,
                        );
                    } else if !full {
                        phase = (
                            RolloutPhase::Progressing,
                            "promoting: scaling the new revision to full size".into(),
                        );
                    }
                } else {
                    new_target = preview_count;
                    phase = if ro.spec.paused == Some(true) {
                        (RolloutPhase::Paused, "paused by spec.paused".into())
                    } else if let Some(w) = analysis_wait.clone() {
                        if plan.status.pause_conditions.is_empty() {
                            (RolloutPhase::Progressing, w)
                        } else {
                            (RolloutPhase::Paused, w)
                        }
                    } else if plan.status.pause_conditions.is_empty() {
                        (
                            RolloutPhase::Progressing,
                            format!(
                                "waiting for the preview ({preview_count} pods) to be available"
                            ),
                        )
                    } else {
                        (RolloutPhase::Paused, "waiting for promotion".into())
                    };
                    conditions::set(
                        &mut plan.status.conditions,
                        condition::PROGRESSING,
                        true,
                        "ReplicaSetUpdated",
                        "preview running",
                        generation,
                        now,
                    );
                }
            }
        }
    } else {
        plan.status.abort = None;
        plan.status.aborted_at = None;
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
        promoting = false;
    }

    let active = plan.status.stable_rs.clone().unwrap_or_default();
    // Replica sets: the active revision at full size, the preview at its size, and older ones
    // kept until their scale-down time.
    plan.replica_sets.push(RsPlan {
        hash: desired.to_string(),
        replicas: if active == desired {
            replicas
        } else {
            new_target
        },
        scale_down_at: None,
    });
    if active != desired {
        plan.replica_sets.push(RsPlan {
            hash: active.clone(),
            replicas,
            scale_down_at: None,
        });
    }
    delayed_scale_down(
        plan,
        obs,
        &[desired, &active],
        i64::from(bg.scale_down_delay_seconds()),
        now,
    );
    // Revision history, as Argo Rollouts keeps it: old revisions already scaled to zero beyond
    // `revisionHistoryLimit` go, oldest first (their AnalysisRuns with them, see
    // `analysis::tidy`); the new, active and stable revisions are never candidates.
    revision_history(ro, obs, plan, &[desired, &active, stable]);

    if let Some(preview) = &bg.preview_service {
        plan.services.push(ServicePlan {
            name: preview.clone(),
            hash: selectors.1.clone(),
        });
    }
    plan.services.push(ServicePlan {
        name: bg.active_service.clone(),
        hash: selectors.0.clone(),
    });
    plan.status.blue_green = Some(BlueGreenStatus {
        active_selector: Some(selectors.0.clone()),
        preview_selector: bg.preview_service.as_ref().map(|_| selectors.1.clone()),
        scale_up_preview_check_point: promoting.then_some(true),
        pre_promotion_analysis_run_status: pre_line
            .or(bg_status.pre_promotion_analysis_run_status.clone()),
        post_promotion_analysis_run_status: post_line
            .or(bg_status.post_promotion_analysis_run_status.clone()),
    });

    if desired == active {
        let available = find(obs, &active).map(|r| r.available).unwrap_or(0);
        phase = if available >= replicas {
            (RolloutPhase::Healthy, String::new())
        } else {
            (
                RolloutPhase::Progressing,
                "scaling the active revision".into(),
            )
        };
    }
    if plan.status.abort != Some(true) {
        set_phase(&mut plan.status, phase.0, &phase.1, generation, now);
    }
}

/// A pre- or post-promotion analysis: whether it lets the promotion go on, its status line,
/// and what the release waits for when it does not.
fn promotion_analysis(
    plan: &mut Plan,
    obs: &Observed,
    key: AnalysisKey,
    name: &str,
    desired: &str,
    now: Timestamp,
) -> (bool, RolloutAnalysisRunStatus, Option<String>) {
    let what = key.describe();
    let hold = inconclusive_pause(plan, obs, &[(what, name)], None, now);
    let (verdict, line) = analysis::ensure_run(plan, obs, key, name, desired);
    match (verdict, hold) {
        (Verdict::Successful, _) | (Verdict::Inconclusive { .. }, Hold::Promoted) => {
            (true, line, None)
        }
        // Stopped while inconclusive: a person accepted it (perhaps before a restart).
        (Verdict::Inconclusive { .. }, _)
            if analysis::observed(obs, name).is_some_and(|r| r.terminated) =>
        {
            (true, line, None)
        }
        (Verdict::Inconclusive { message, .. }, _) => (
            false,
            line,
            Some(format!(
                "{what} {name} is inconclusive: {message}; promote to go on or abort"
            )),
        ),
        _ => (false, line, Some(format!("waiting for {what} {name}"))),
    }
}

/// Whether the preview, now fully available, may be promoted: at once with auto-promotion,
/// after `autoPromotionSeconds`, or when a person has cleared the pause.
fn ready_to_promote(bg: &BlueGreenStrategy, plan: &mut Plan, now: Timestamp) -> bool {
    if plan.status.promote_full == Some(true) {
        plan.event(EventType::Normal, "PromotedFull", "promoted on request");
        return true;
    }
    if plan
        .status
        .pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::UserPause)
    {
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
            plan.event(
                EventType::Normal,
                "Promoted",
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
                plan.event(
                    EventType::Normal,
                    "Promoted",
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
            plan.event(EventType::Normal, "Promoted", "promoted");
            true
        }
        (None, _, secs) => {
            plan.status.pause_conditions.push(PauseCondition {
                reason: PauseReason::BlueGreenPause,
                start_time: Time(now),
            });
            plan.status.controller_pause = Some(true);
            match secs.filter(|_| auto) {
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
            false
        }
    }
}

#[cfg(test)]
#[path = "bluegreen_tests.rs"]
mod tests;
