//! The pure heart of the controller: `(Rollout, Observed, now) -> Plan`. It reads no clock, no
//! client and no randomness; status is its only memory, so any restart resumes where it was.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::constants::condition;
use crate::api::duration::int_or_string_duration;
use crate::api::rollout::{
    CanaryStatus, CanaryStrategy, PauseCondition, PauseReason, Rollout, RolloutPhase,
    RolloutStatus, TrafficWeights, WeightDestination, WorkloadScaleDown,
};

use super::analysis::{self, AnalysisKey, Verdict};
use super::conditions;
use super::hash::pod_template_hash;
use super::observe::{Observed, ObservedRs};
use super::replicas::{
    Counts, Group, Limits, Targets, canary_replicas, next_scale, rounding_surge, stable_replicas,
};
use super::validate::{analysis_problems, validate};
use crate::traffic::{HeaderMatch, RouteState, Weights};
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

/// The weight of the last `setWeight` among the first `upto` steps.
fn weight_at(canary: &CanaryStrategy, upto: usize) -> i32 {
    canary
        .steps()
        .iter()
        .take(upto)
        .filter_map(|s| s.set_weight)
        .next_back()
        .unwrap_or(0)
}

/// The `setCanaryScale` in force after the first `upto` steps, as a replica count.
fn canary_scale_at(canary: &CanaryStrategy, replicas: i32, upto: usize) -> Option<i32> {
    let mut scale = None;
    for s in canary.steps().iter().take(upto) {
        if let Some(cs) = &s.set_canary_scale {
            scale = if cs.match_traffic_weight == Some(true) {
                None
            } else if let Some(r) = cs.replicas {
                Some(r)
            } else {
                cs.weight.map(|w| canary_replicas(replicas, w))
            };
        }
    }
    scale
}

/// Decides the next move of one Rollout.
pub fn decide(ro: &Rollout, obs: &Observed, now: Timestamp) -> Plan {
    let mut plan = decide_release(ro, obs, now);
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

/// Records progress, and reports (or aborts, with `progressDeadlineAbort`) a release that
/// made none for `progressDeadlineSeconds` while not paused.
fn progress_deadline(ro: &Rollout, obs: &Observed, plan: &mut Plan, now: Timestamp) {
    let prev = ro.status.clone().unwrap_or_default();
    let generation = ro.metadata.generation;
    let st = &plan.status;
    let progressed = prev.current_pod_hash != st.current_pod_hash
        || prev.current_step_index != st.current_step_index
        || prev.updated_replicas != st.updated_replicas
        || prev.available_replicas != st.available_replicas
        || prev.ready_replicas != st.ready_replicas
        || prev.stable_rs != st.stable_rs
        || prev.pause_conditions.len() != st.pause_conditions.len();
    if progressed || st.progressed_at.is_none() {
        plan.status.progressed_at = Some(Time(now));
    }
    let releasing = plan.status.phase == Some(RolloutPhase::Progressing);
    if !releasing || plan.status.abort == Some(true) {
        return;
    }
    let since = plan
        .status
        .progressed_at
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let secs = ro.spec.progress_deadline_seconds();
    let deadline = after(since, i64::from(secs));
    if now < deadline {
        plan.requeue_at(deadline, now);
        return;
    }
    let desired = plan.status.current_pod_hash.clone().unwrap_or_default();
    let why = find(obs, &desired)
        .map(|rs| format!("{} of {} new pods available", rs.available, rs.replicas))
        .unwrap_or_else(|| "no new pods".into());
    let message = format!("revision {desired} made no progress for {secs}s ({why})");
    let already = conditions::get(&prev.conditions, condition::PROGRESSING)
        .is_some_and(|c| c.reason == "ProgressDeadlineExceeded");
    if ro.spec.progress_deadline_abort == Some(true) {
        // Aborted: the next reconcile moves traffic back to stable, as any abort does.
        plan.status.abort = Some(true);
        plan.status.aborted_at = Some(Time(now));
        plan.requeue_after = Some(Duration::from_millis(1));
    }
    conditions::set(
        &mut plan.status.conditions,
        condition::PROGRESSING,
        false,
        "ProgressDeadlineExceeded",
        &message,
        generation,
        now,
    );
    set_phase(
        &mut plan.status,
        RolloutPhase::Degraded,
        &format!("ProgressDeadlineExceeded: {message}"),
        generation,
        now,
    );
    if !already {
        plan.event(EventType::Warning, "ProgressDeadlineExceeded", message);
    }
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

fn decide_release(ro: &Rollout, obs: &Observed, now: Timestamp) -> Plan {
    let prev = ro.status.clone().unwrap_or_default();
    let generation = ro.metadata.generation;
    let mut plan = Plan {
        status: prev.clone(),
        ..Default::default()
    };
    plan.status.observed_generation = generation;
    plan.status.selector = ro
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        });

    // An analysis whose templates do not build keeps a release from starting; once a
    // release is under way it only holds that analysis (the release waits on it), so an
    // abort or a failing run still moves traffic back.
    let started = obs
        .template
        .as_ref()
        .map(pod_template_hash)
        .is_some_and(|h| {
            prev.current_pod_hash.as_deref() == Some(h.as_str())
                && prev.stable_rs.as_deref().is_some_and(|s| s != h)
        });
    let analysis_problem = analysis_problems(obs).err();
    let blocking = validate(ro, obs)
        .err()
        .or_else(|| analysis_problem.clone().filter(|_| !started));
    if let Some(problem) = blocking {
        let message = problem.to_string();
        let before =
            conditions::get(&prev.conditions, condition::INVALID_SPEC).map(|c| c.message.clone());
        let st = &mut plan.status;
        conditions::set(
            &mut st.conditions,
            condition::INVALID_SPEC,
            true,
            "InvalidSpec",
            &message,
            generation,
            now,
        );
        set_phase(
            st,
            RolloutPhase::Degraded,
            &format!("InvalidSpec: {message}"),
            generation,
            now,
        );
        if before.as_deref() != Some(message.as_str()) {
            plan.event(EventType::Warning, "InvalidSpec", message);
        }
        fill_counts(&mut plan.status, obs);
        return plan;
    }
    match analysis_problem {
        Some(problem) => {
            let message = problem.to_string();
            let before = conditions::get(&prev.conditions, condition::INVALID_SPEC)
                .map(|c| c.message.clone());
            conditions::set(
                &mut plan.status.conditions,
                condition::INVALID_SPEC,
                true,
                "InvalidSpec",
                &message,
                generation,
                now,
            );
            if before.as_deref() != Some(message.as_str()) {
                plan.event(EventType::Warning, "InvalidSpec", message);
            }
        }
        None => conditions::remove(&mut plan.status.conditions, condition::INVALID_SPEC),
    }

    let Some(template) = obs.template.as_ref() else {
        return plan;
    };
    let replicas = ro.spec.replicas();
    let desired = pod_template_hash(template);

    // A new template starts a new release from the first step.
    if prev.current_pod_hash.as_deref() != Some(desired.as_str()) {
        let st = &mut plan.status;
        st.current_pod_hash = Some(desired.clone());
        st.current_step_index = Some(0);
        st.pause_conditions.clear();
        st.controller_pause = None;
        st.abort = None;
        st.aborted_at = None;
        st.release_count = Some(prev.release_count.unwrap_or(0).saturating_add(1));
        st.promote_full = None;
        if let Some(c) = st.canary.as_mut() {
            c.current_step_analysis_run_status = None;
            c.current_background_analysis_run_status = None;
        }
        if let Some(b) = st.blue_green.as_mut() {
            b.pre_promotion_analysis_run_status = None;
            b.post_promotion_analysis_run_status = None;
        }
        if let Some(stable) = &prev.stable_rs
            && stable != &desired
        {
            plan.event(
                EventType::Normal,
                "RolloutStarted",
                format!("releasing revision {desired} (stable is {stable})"),
            );
        }
    }
    if plan.status.stable_rs.is_none() {
        // The first revision has nothing to be compared with: it is stable at once.
        plan.status.stable_rs = Some(desired.clone());
        plan.event(
            EventType::Normal,
            "FirstRevision",
            format!("revision {desired} is the first and becomes stable"),
        );
    }
    let stable = plan.status.stable_rs.clone().unwrap_or_default();

    if let Some(bg) = ro.spec.strategy.blue_green.as_ref() {
        super::bluegreen::decide(ro, bg, obs, &prev, &desired, &stable, now, &mut plan);
        fill_counts(&mut plan.status, obs);
        return plan;
    }
    let Some(canary) = ro.spec.strategy.canary.as_ref() else {
        return plan;
    };
    let limits = match Limits::resolve(replicas, &canary.max_surge(), &canary.max_unavailable()) {
        Ok(l) => l,
        Err(_) => return plan,
    };
    let steps = canary.steps();

    let cur = |hash: &str| {
        find(obs, hash)
            .map(|rs| Group {
                replicas: rs.replicas,
                available: rs.available,
            })
            .unwrap_or_default()
    };
    let other = obs
        .replica_sets
        .iter()
        .filter(|rs| rs.hash != desired && rs.hash != stable)
        .fold(Group::default(), |g, rs| Group {
            replicas: g.replicas.saturating_add(rs.replicas.max(0)),
            available: g.available.saturating_add(rs.available.max(0)),
        });

    let mut services_hash = (stable.clone(), stable.clone()); // (stable service, canary service)
    let (targets, new_hold) = if desired == stable {
        // Nothing to release: the stable runs alone. A template that went back to the stable
        // one while a release was on is a fast-track rollback.
        if prev
            .current_pod_hash
            .as_deref()
            .is_some_and(|h| h != desired)
            && prev.stable_rs.as_deref() == Some(&desired)
        {
            plan.event(
                EventType::Normal,
                "FastTrackRollback",
                format!(
                    "the template is back to stable revision {desired}; the canary is scaled down"
                ),
            );
        }
        plan.status.abort = None;
        plan.status.aborted_at = None;
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
        plan.status.current_step_index = Some(steps.len() as i32);
        (
            Targets {
                new: replicas,
                stable: replicas,
            },
            None,
        )
    } else {
        release(
            ro,
            canary,
            obs,
            &desired,
            &stable,
            replicas,
            now,
            &mut plan,
            &mut services_hash,
        )
    };

    if canary.traffic_routing.is_some() {
        routed(
            ro,
            canary,
            obs,
            &prev,
            &desired,
            &stable,
            targets,
            new_hold,
            &services_hash,
            now,
            &mut plan,
        );
        return plan;
    }

    // Replica moves: the new revision and the stable; everything older goes to zero.
    let counts = Counts {
        new: cur(&desired),
        stable: cur(&stable),
        other,
    };
    let scale = if desired == stable {
        let s = next_scale(
            replicas,
            limits,
            Counts {
                new: Group::default(),
                stable: counts.new,
                other,
            },
            Targets {
                new: 0,
                stable: targets.stable,
            },
        );
        super::replicas::Scale {
            new: s.stable,
            stable: s.stable,
            other: s.other,
        }
    } else {
        let limits = Limits {
            max_surge: limits
                .max_surge
                .saturating_add(rounding_surge(replicas, targets)),
            ..limits
        };
        let mut s = next_scale(replicas, limits, counts, targets);
        if let Some(hold) = new_hold {
            s.new = s.new.max(hold.min(counts.new.replicas));
        }
        s
    };
    plan.replica_sets.push(RsPlan {
        hash: desired.clone(),
        replicas: scale.new,
        scale_down_at: None,
    });
    if stable != desired {
        plan.replica_sets.push(RsPlan {
            hash: stable.clone(),
            replicas: scale.stable,
            scale_down_at: None,
        });
    }
    // Older revisions shrink together, oldest first.
    let mut remaining_other = scale.other;
    let mut olds: Vec<&ObservedRs> = obs
        .replica_sets
        .iter()
        .filter(|rs| rs.hash != desired && rs.hash != stable)
        .collect();
    olds.sort_by_key(|rs| std::cmp::Reverse(rs.created));
    for rs in &olds {
        let keep = rs.replicas.min(remaining_other);
        remaining_other -= keep;
        if keep != rs.replicas {
            plan.replica_sets.push(RsPlan {
                hash: rs.hash.clone(),
                replicas: keep,
                scale_down_at: None,
            });
        }
    }
    // Revision history: zero-replica old ReplicaSets beyond the limit, oldest first.
    let limit = ro.spec.revision_history_limit().max(0) as usize;
    let idle: Vec<&&ObservedRs> = olds.iter().filter(|rs| rs.replicas == 0).collect();
    if idle.len() > limit {
        let mut by_age = idle.clone();
        by_age.sort_by_key(|rs| rs.created);
        for rs in by_age.iter().take(idle.len() - limit) {
            plan.delete_replica_sets.push(rs.name.clone());
        }
    }

    if let Some(name) = &canary.stable_service {
        plan.services.push(ServicePlan {
            name: name.clone(),
            hash: services_hash.0.clone(),
        });
    }
    if let Some(name) = &canary.canary_service {
        plan.services.push(ServicePlan {
            name: name.clone(),
            hash: services_hash.1.clone(),
        });
    }

    // Weights: without a traffic router, the canary's real share of the ready pods of the
    // two revisions (what their Services' endpoints hold), not the step's weight.
    let canary_weight = if desired == stable {
        0
    } else {
        ready_share(obs, &desired, &stable)
    };
    plan.status.canary = Some(CanaryStatus {
        weights: Some(TrafficWeights {
            canary: WeightDestination {
                weight: canary_weight,
                pod_template_hash: Some(desired.clone()),
                service_name: canary.canary_service.clone(),
            },
            stable: WeightDestination {
                weight: 100 - canary_weight,
                pod_template_hash: Some(stable.clone()),
                service_name: canary.stable_service.clone(),
            },
        }),
        ..plan.status.canary.clone().unwrap_or_default()
    });

    fill_counts(&mut plan.status, obs);
    if desired == stable {
        let healthy = counts.new.available >= replicas && other.replicas == 0;
        if healthy {
            set_phase(&mut plan.status, RolloutPhase::Healthy, "", generation, now);
        } else {
            set_phase(
                &mut plan.status,
                RolloutPhase::Progressing,
                "scaling the stable revision",
                generation,
                now,
            );
        }
    }
    plan
}

/// The header routes in force after the first `upto` steps: the last `setHeaderRoute` of each
/// name with matches (one without matches removes the route).
pub(super) fn header_routes_at(
    canary: &CanaryStrategy,
    upto: usize,
) -> Vec<(String, Vec<HeaderMatch>)> {
    let mut routes: Vec<(String, Vec<HeaderMatch>)> = Vec::new();
    for s in canary.steps().iter().take(upto) {
        if let Some(h) = &s.set_header_route {
            routes.retain(|(n, _)| n != &h.name);
            let matches: Vec<HeaderMatch> = h
                .matches
                .iter()
                .flatten()
                .filter_map(HeaderMatch::from_api)
                .collect();
            if !matches.is_empty() {
                routes.push((h.name.clone(), matches));
            }
        }
    }
    routes
}

/// A canary with a traffic router: the router carries the weight, so the stable keeps all
/// its pods until the new revision is stable, and the canary has the pods its weight (or
/// `setCanaryScale`) needs, ready before the weight reaches them. After the switch the old
/// stable keeps its pods for `scaleDownDelaySeconds` while traffic drains from it.
#[allow(clippy::too_many_arguments)]
fn routed(
    ro: &Rollout,
    canary: &CanaryStrategy,
    obs: &Observed,
    prev: &RolloutStatus,
    desired: &str,
    stable: &str,
    targets: Targets,
    hold: Option<i32>,
    services_hash: &(String, String),
    now: Timestamp,
    plan: &mut Plan,
) {
    let generation = ro.metadata.generation;
    let replicas = ro.spec.replicas();
    let steps = canary.steps();
    let new_stable = plan.status.stable_rs.clone().unwrap_or_default();
    let settled = new_stable == desired;
    let aborted = plan.status.abort == Some(true);
    let idx = plan
        .status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, steps.len() as i32) as usize;

    // Traffic: the weight of the steps done; none on an abort or once settled. A full
    // promotion keeps the weight where it was until the switch: the canary's pods may not
    // be ready for more. With dynamicStableScale an abort moves traffic back only as fast as
    // the stable's pods become available again.
    let prev_weight = prev
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight)
        .unwrap_or(0);
    let dynamic = dynamic_stable_scale(canary);
    let weight = if settled {
        0
    } else if aborted {
        if dynamic {
            let available = find(obs, stable).map_or(0, |r| r.available);
            abort_weight(replicas, available).min(prev_weight.clamp(0, 100))
        } else {
            0
        }
    } else if plan.status.promote_full == Some(true) {
        prev_weight.min(weight_at(canary, steps.len()))
    } else {
        weight_at(canary, idx.min(steps.len()))
    };
    // The canary still carries traffic during a dynamic abort.
    let canary_serves = !settled && (!aborted || weight > 0);

    // Pods.
    let new_count = if settled {
        replicas
    } else {
        let mut n = targets.new.max(hold.unwrap_or(0)).max(0);
        if dynamic && aborted {
            // Its pods stay while the router still sends them traffic (this or last weight).
            n = n.max(canary_replicas(replicas, weight.max(prev_weight)));
        }
        n
    };
    plan.replica_sets.push(RsPlan {
        hash: desired.to_string(),
        replicas: new_count,
        scale_down_at: None,
    });
    if !settled {
        let stable_count = if dynamic && !aborted {
            let target = if idx >= steps.len() || plan.status.promote_full == Some(true) {
                100
            } else {
                weight_at(canary, idx + 1)
            };
            // The stable keeps the share of the traffic it gets, before and after this
            // reconcile: it shrinks only once the router has moved the weight away.
            stable_replicas(replicas, target.min(weight).min(prev_weight))
        } else {
            replicas
        };
        plan.replica_sets.push(RsPlan {
            hash: stable.to_string(),
            replicas: stable_count,
            scale_down_at: None,
        });
    }
    delayed_scale_down(
        plan,
        obs,
        &[desired, &new_stable],
        i64::from(canary.scale_down_delay_seconds()),
        now,
    );
    revision_history(ro, obs, plan, &[desired, &new_stable]);

    // Services: the stable and canary Services select their revisions.
    let canary_service_hash = if dynamic && aborted && canary_serves {
        desired.to_string()
    } else {
        services_hash.1.clone()
    };
    for (svc, hash) in [
        (&canary.stable_service, &services_hash.0),
        (&canary.canary_service, &canary_service_hash),
    ] {
        if let Some(name) = svc {
            plan.services.push(ServicePlan {
                name: name.clone(),
                hash: hash.clone(),
            });
        }
    }

    let reached = if plan.status.promote_full == Some(true) {
        // A full promotion skips steps; their header routes never go live.
        prev.current_step_index
            .unwrap_or(0)
            .clamp(0, steps.len() as i32) as usize
    } else {
        idx
    };
    let canary_pods = find(obs, desired).map(|r| r.available).unwrap_or(0);
    let header_routes = if aborted || settled || canary_pods < 1 {
        Vec::new()
    } else {
        header_routes_at(canary, reached)
    };
    let weights = Weights::canary(weight);
    plan.traffic = Some(RouteState {
        weights,
        header_routes,
        stable_hash: new_stable.clone(),
        canary_hash: if !canary_serves {
            new_stable.clone()
        } else {
            desired.to_string()
        },
    });
    plan.status.canary = Some(CanaryStatus {
        weights: Some(TrafficWeights {
            canary: WeightDestination {
                weight: weights.canary,
                pod_template_hash: Some(desired.to_string()),
                service_name: canary.canary_service.clone(),
            },
            stable: WeightDestination {
                weight: weights.stable,
                pod_template_hash: Some(new_stable.clone()),
                service_name: canary.stable_service.clone(),
            },
        }),
        ..plan.status.canary.clone().unwrap_or_default()
    });
    fill_counts(&mut plan.status, obs);
    if settled && plan.status.abort != Some(true) {
        let available = find(obs, desired).map(|r| r.available).unwrap_or(0);
        if available >= replicas {
            set_phase(&mut plan.status, RolloutPhase::Healthy, "", generation, now);
        } else if desired == stable {
            set_phase(
                &mut plan.status,
                RolloutPhase::Progressing,
                "scaling the stable revision",
                generation,
                now,
            );
        }
    }
}

/// `dynamicStableScale`, which only means something with a traffic router.
fn dynamic_stable_scale(canary: &CanaryStrategy) -> bool {
    canary.dynamic_stable_scale == Some(true) && canary.traffic_routing.is_some()
}

/// The canary's weight during an abort with dynamicStableScale: what the stable's available
/// pods cannot yet carry, `100 - 100 × available / replicas` (as Argo Rollouts).
fn abort_weight(replicas: i32, stable_available: i32) -> i32 {
    if replicas <= 0 {
        return 0;
    }
    let carried = i64::from(stable_available.clamp(0, replicas)) * 100 / i64::from(replicas);
    (100 - carried).clamp(0, 100) as i32
}

/// Old revisions outside `keep` keep their pods until their scale-down time (kept in an
/// annotation on the ReplicaSet, so a restart does not reset it), then go to zero.
pub(super) fn delayed_scale_down(
    plan: &mut Plan,
    obs: &Observed,
    keep: &[&str],
    delay_secs: i64,
    now: Timestamp,
) {
    for rs in obs
        .replica_sets
        .iter()
        .filter(|r| !keep.contains(&r.hash.as_str()) && r.replicas > 0)
    {
        match rs.scale_down_at {
            Some(t) if now >= t => plan.replica_sets.push(RsPlan {
                hash: rs.hash.clone(),
                replicas: 0,
                scale_down_at: Some(t),
            }),
            Some(t) => plan.requeue_at(t, now),
            None => {
                let t = after(now, delay_secs);
                plan.replica_sets.push(RsPlan {
                    hash: rs.hash.clone(),
                    replicas: rs.replicas,
                    scale_down_at: Some(t),
                });
                plan.requeue_at(t, now);
            }
        }
    }
}

/// Zero-replica old ReplicaSets beyond `revisionHistoryLimit` are deleted, oldest first.
pub(super) fn revision_history(ro: &Rollout, obs: &Observed, plan: &mut Plan, keep: &[&str]) {
    let limit = ro.spec.revision_history_limit().max(0) as usize;
    let mut idle: Vec<&ObservedRs> = obs
        .replica_sets
        .iter()
        .filter(|rs| !keep.contains(&rs.hash.as_str()) && rs.replicas == 0)
        .collect();
    if idle.len() > limit {
        idle.sort_by_key(|rs| rs.created);
        let excess = idle.len() - limit;
        for rs in idle.into_iter().take(excess) {
            plan.delete_replica_sets.push(rs.name.clone());
        }
    }
}

/// Records an abort: when, why (the `Progressing` condition) and a Warning Event.
pub(super) fn mark_aborted(
    plan: &mut Plan,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    plan.status.aborted_at = Some(Time(now));
    conditions::set(
        &mut plan.status.conditions,
        condition::PROGRESSING,
        false,
        "RolloutAborted",
        &message,
        generation,
        now,
    );
    plan.event(EventType::Warning, "RolloutAborted", message);
}

/// Fail fast, abort and retry, shared by both strategies. Returns when the release was
/// aborted, or `None` when it goes on (after a retry, from its first step).
pub(super) fn abort_or_retry(
    plan: &mut Plan,
    new_rs: Option<&ObservedRs>,
    desired: &str,
    stable: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Timestamp> {
    // Fail fast: a new revision whose pods cannot run is aborted at once, with the diagnosis.
    if plan.status.abort != Some(true)
        && let Some(failure) = new_rs.and_then(|rs| rs.failure.as_ref())
    {
        plan.status.abort = Some(true);
        let message = format!("revision {desired} cannot run: {}", failure.describe());
        mark_aborted(plan, message, generation, now);
    }
    if plan.status.abort == Some(true) {
        let aborted_at = match &plan.status.aborted_at {
            Some(t) => t.0,
            None => {
                let message = format!(
                    "revision {desired} aborted on request; all traffic back to stable {stable}"
                );
                mark_aborted(plan, message, generation, now);
                now
            }
        };
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
        let reason = conditions::get(&plan.status.conditions, condition::PROGRESSING)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "aborted".into());
        set_phase(
            &mut plan.status,
            RolloutPhase::Degraded,
            &format!("RolloutAborted: {reason}"),
            generation,
            now,
        );
        return Some(aborted_at);
    }
    if plan.status.aborted_at.is_some() {
        // `abort` was cleared after an abort: retry the release from its first step.
        plan.status.aborted_at = None;
        plan.status.release_count = Some(plan.status.release_count.unwrap_or(0).saturating_add(1));
        if let Some(c) = plan.status.canary.as_mut() {
            c.current_step_analysis_run_status = None;
            c.current_background_analysis_run_status = None;
        }
        if let Some(b) = plan.status.blue_green.as_mut() {
            b.pre_promotion_analysis_run_status = None;
            b.post_promotion_analysis_run_status = None;
        }
        plan.status.current_step_index = plan.status.current_step_index.map(|_| 0);
        conditions::set(
            &mut plan.status.conditions,
            condition::PROGRESSING,
            true,
            "RolloutRetried",
            "retrying the release from its first step",
            generation,
            now,
        );
        plan.event(
            EventType::Normal,
            "RolloutRetried",
            format!("retrying revision {desired} from the start"),
        );
    }
    None
}

/// A release in progress: abort, full promotion, or the next steps.
#[allow(clippy::too_many_arguments)]
fn release(
    ro: &Rollout,
    canary: &CanaryStrategy,
    obs: &Observed,
    desired: &str,
    stable: &str,
    replicas: i32,
    now: Timestamp,
    plan: &mut Plan,
    services_hash: &mut (String, String),
) -> (Targets, Option<i32>) {
    let generation = ro.metadata.generation;
    let steps = canary.steps();
    let new_rs = find(obs, desired);

    // The runs this release may be waiting on (a retry's, when this reconcile retries).
    let release = analysis::release_number(&plan.status);
    let at_step = plan
        .status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, steps.len() as i32) as usize;
    let step_run = steps
        .get(at_step)
        .filter(|s| s.analysis.is_some())
        .map(|_| AnalysisKey::Step(at_step).run_name(ro, desired, release));
    let background_run = canary
        .analysis
        .as_ref()
        .map(|_| AnalysisKey::Background.run_name(ro, desired, release));
    refresh_run_status(plan, obs);
    // A failed analysis aborts in this same reconcile, so traffic leaves the canary at once.
    abort_on_failed_run(
        plan,
        obs,
        &[
            ("step analysis", step_run.as_deref()),
            ("background analysis", background_run.as_deref()),
        ],
        desired,
        &format!("all traffic back to stable {stable}"),
        now,
    );

    if let Some(aborted_at) = abort_or_retry(plan, new_rs, desired, stable, generation, now) {
        // No run is active any more: `tidy` stops them.
        // Traffic first: both Services select the stable pods in this same reconcile.
        *services_hash = (stable.to_string(), stable.to_string());
        let scale_down_at = after(
            aborted_at,
            i64::from(canary.abort_scale_down_delay_seconds()),
        );
        // With Services, traffic left the canary through the selectors above, so its pods may
        // linger for `abortScaleDownDelaySeconds`; without, scaling down is what moves traffic.
        let traffic_moved = canary.canary_service.is_some() || canary.traffic_routing.is_some();
        let hold = if traffic_moved && now < scale_down_at {
            plan.requeue_at(scale_down_at, now);
            new_rs.map(|r| r.replicas)
        } else {
            None
        };
        return (
            Targets {
                new: 0,
                stable: replicas,
            },
            hold,
        );
    }
    let mut idx = plan
        .status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, steps.len() as i32) as usize;
    if plan.status.promote_full == Some(true) {
        if idx < steps.len() {
            plan.event(
                EventType::Normal,
                "PromotedFull",
                "all remaining steps skipped on request",
            );
        }
        idx = steps.len();
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
    } else {
        plan.active_runs
            .extend(step_run.iter().chain(background_run.iter()).cloned());
    }
    // Inconclusive analysis: a person decides. Promoting (clearing the pause) accepts it.
    let watched: Vec<(&str, &str)> = [
        ("step analysis", step_run.as_deref()),
        ("background analysis", background_run.as_deref()),
    ]
    .into_iter()
    .filter_map(|(what, name)| name.map(|n| (what, n)))
    .collect();
    if plan.status.promote_full != Some(true) {
        inconclusive_pause(plan, obs, &watched, Some(at_step), now);
    }
    let held_by_analysis = plan
        .status
        .pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::InconclusiveAnalysis);
    if held_by_analysis && plan.status.promote_full != Some(true) {
        plan.status.current_step_index = Some(idx as i32);
        let w = weight_at(canary, idx + 1);
        let why = plan.status.message.clone().unwrap_or_default();
        let message = if why.contains("inconclusive") {
            why
        } else {
            format!("step {idx}: analysis inconclusive; promote to go on or abort")
        };
        set_phase(
            &mut plan.status,
            RolloutPhase::Paused,
            &message,
            generation,
            now,
        );
        *services_hash = (stable.to_string(), desired.to_string());
        return basic_targets(canary, replicas, w, idx + 1);
    }
    let user_paused = plan
        .status
        .pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::UserPause);
    if ro.spec.paused == Some(true) || user_paused {
        // Held where it stands: no step advances until the pause is lifted.
        plan.status.current_step_index = Some(idx as i32);
        let w = weight_at(canary, idx + 1);
        let by = if user_paused {
            "paused on request (status.pauseConditions UserPause)"
        } else {
            "paused by spec.paused"
        };
        set_phase(&mut plan.status, RolloutPhase::Paused, by, generation, now);
        *services_hash = (stable.to_string(), desired.to_string());
        return basic_targets(canary, replicas, w, idx + 1);
    }

    // A stable revision that serves nothing (no pod available, or its pods diagnosed as
    // failing: a broken first revision) cannot become available by waiting; the steps go on
    // (pauses and analysis included) once it has its count and the canary its available pods.
    let stable_broken = find(obs, stable).is_some_and(|r| r.available <= 0 || r.failure.is_some());
    // With dynamicStableScale the stable follows the weight, after it: only the canary's
    // pods gate a step (as Argo Rollouts' AtDesiredReplicaCountsForCanary).
    let dynamic = dynamic_stable_scale(canary);
    let counts_ready = |targets: Targets| {
        let n = find(obs, desired)
            .map(|r| (r.replicas, r.available))
            .unwrap_or((0, 0));
        let s = find(obs, stable)
            .map(|r| (r.replicas, r.available))
            .unwrap_or((0, 0));
        n.0 == targets.new
            && n.1 >= targets.new
            && (dynamic || (s.0 == targets.stable && (s.1 >= targets.stable || stable_broken)))
    };

    while idx < steps.len() {
        let step = &steps[idx];
        if let Some(w) = step.set_weight {
            let (targets, _) = basic_targets(canary, replicas, w, idx + 1);
            if !counts_ready(targets) {
                break;
            }
            plan.event(
                EventType::Normal,
                "StepCompleted",
                format!("step {idx}: canary weight {w}% reached"),
            );
            idx += 1;
        } else if let Some(pause) = &step.pause {
            let ours = plan
                .status
                .pause_conditions
                .iter()
                .find(|p| p.reason == PauseReason::CanaryPauseStep)
                .cloned();
            match ours {
                Some(p) => {
                    let until = pause
                        .duration
                        .as_ref()
                        .and_then(|d| int_or_string_duration(d).ok())
                        .map(|d| after(p.start_time.0, secs(d)));
                    match until {
                        Some(t) if now >= t => {
                            plan.status
                                .pause_conditions
                                .retain(|p| p.reason != PauseReason::CanaryPauseStep);
                            plan.status.controller_pause = None;
                            plan.event(
                                EventType::Normal,
                                "PauseEnded",
                                format!("step {idx}: pause over"),
                            );
                            idx += 1;
                        }
                        Some(t) => {
                            plan.requeue_at(t, now);
                            break;
                        }
                        None => break,
                    }
                }
                None if plan.status.controller_pause == Some(true) => {
                    // Sluice paused here and someone cleared the pause: a promotion.
                    plan.status.controller_pause = None;
                    plan.event(
                        EventType::Normal,
                        "Promoted",
                        format!("step {idx}: promoted"),
                    );
                    idx += 1;
                }
                None => {
                    plan.status.pause_conditions.push(PauseCondition {
                        reason: PauseReason::CanaryPauseStep,
                        start_time: Time(now),
                    });
                    plan.status.controller_pause = Some(true);
                    let how = match &pause.duration {
                        Some(d) => format!("for {}", match d {
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => format!("{i}s"),
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                        }),
                        None => "until promoted".to_string(),
                    };
                    plan.event(
                        EventType::Normal,
                        "Paused",
                        format!("step {idx}: paused {how}"),
                    );
                    if let Some(d) = pause
                        .duration
                        .as_ref()
                        .and_then(|d| int_or_string_duration(d).ok())
                    {
                        plan.requeue_at(after(now, secs(d)), now);
                    }
                    break;
                }
            }
        } else if step.analysis.is_some() {
            let key = AnalysisKey::Step(idx);
            let name = key.run_name(ro, desired, release);
            let (verdict, line) = analysis::ensure_run(plan, obs, key, &name, desired);
            plan.active_runs.push(name.clone());
            let cs = plan.status.canary.get_or_insert_with(Default::default);
            cs.current_step_analysis_run_status = Some(line);
            // Sluice stops a step's run only when a person accepted its verdict (or the
            // release ended), so a stopped inconclusive run is an accepted one, even after
            // a restart between the two writes.
            let accepted = analysis::observed(obs, &name).is_some_and(|r| r.terminated)
                || plan.terminate_runs.contains(&name);
            match verdict {
                Verdict::Successful => {
                    plan.event(
                        EventType::Normal,
                        "StepCompleted",
                        format!("step {idx}: analysis {name} passed"),
                    );
                    idx += 1;
                }
                Verdict::Inconclusive { .. } if accepted => idx += 1,
                _ => break,
            }
        } else if step.set_header_route.is_some()
            && find(obs, desired).is_none_or(|r| r.available < 1)
        {
            // A header route sends requests to the canary: not before it has a pod to take them.
            break;
        } else {
            // setCanaryScale takes effect through `canary_scale_at`; nothing to wait for.
            idx += 1;
        }
    }
    plan.status.current_step_index = Some(idx as i32);
    if idx != at_step
        && let Some(cs) = plan.status.canary.as_mut()
        && cs
            .current_step_analysis_run_status
            .as_ref()
            .is_some_and(|l| l.name != AnalysisKey::Step(idx).run_name(ro, desired, release))
    {
        cs.current_step_analysis_run_status = None;
    }
    // Background analysis from `startingStep` until the release completes.
    if let (Some(bg), Some(name)) = (&canary.analysis, &background_run) {
        let start = bg.starting_step.unwrap_or(0).max(0) as usize;
        let completing = idx >= steps.len() && analysis::observed(obs, name).is_none();
        if idx >= start.min(steps.len()) && !completing {
            let (_, line) = analysis::ensure_run(plan, obs, AnalysisKey::Background, name, desired);
            let cs = plan.status.canary.get_or_insert_with(Default::default);
            cs.current_background_analysis_run_status = Some(line);
        }
    }
    *services_hash = (stable.to_string(), desired.to_string());

    if idx >= steps.len() {
        let targets = Targets {
            new: replicas,
            stable: 0,
        };
        if counts_ready(Targets {
            new: replicas,
            stable: find(obs, stable).map(|r| r.replicas).unwrap_or(0),
        }) && find(obs, desired).is_some_and(|r| r.available >= replicas)
        {
            plan.status.stable_rs = Some(desired.to_string());
            *services_hash = (desired.to_string(), desired.to_string());
            if let Some(name) = &background_run {
                analysis::terminate(plan, obs, name);
            }
            plan.event(
                EventType::Normal,
                "RolloutCompleted",
                format!("revision {desired} is stable"),
            );
            conditions::set(
                &mut plan.status.conditions,
                condition::PROGRESSING,
                true,
                "RolloutCompleted",
                "the new revision is stable",
                generation,
                now,
            );
            set_phase(&mut plan.status, RolloutPhase::Healthy, "", generation, now);
            return (
                Targets {
                    new: replicas,
                    stable: 0,
                },
                None,
            );
        }
        set_phase(
            &mut plan.status,
            RolloutPhase::Progressing,
            "promoting: scaling the new revision to full size",
            generation,
            now,
        );
        conditions::set(
            &mut plan.status.conditions,
            condition::PROGRESSING,
            true,
            "ReplicaSetUpdated",
            "promoting the new revision",
            generation,
            now,
        );
        return (targets, None);
    }
    let w = weight_at(canary, idx + 1);
    let (phase, message) = if plan.status.pause_conditions.is_empty() {
        (
            RolloutPhase::Progressing,
            format!("step {idx}: canary weight {w}%"),
        )
    } else {
        (
            RolloutPhase::Paused,
            format!("step {idx}: paused at canary weight {w}%"),
        )
    };
    set_phase(&mut plan.status, phase, &message, generation, now);
    conditions::set(
        &mut plan.status.conditions,
        condition::PROGRESSING,
        true,
        "ReplicaSetUpdated",
        &format!("step {idx} of {}", steps.len()),
        generation,
        now,
    );
    basic_targets(canary, replicas, w, idx + 1)
}

/// A failed run (not stopped) among `runs` aborts the release in this same reconcile, so
/// traffic goes back before anything else happens. `then` says where traffic goes.
pub(super) fn abort_on_failed_run(
    plan: &mut Plan,
    obs: &Observed,
    runs: &[(&str, Option<&str>)],
    desired: &str,
    then: &str,
    now: Timestamp,
) {
    if plan.status.abort == Some(true) || plan.status.promote_full == Some(true) {
        return;
    }
    for (what, name) in runs {
        if let Some(name) = name
            && let Some(run) = analysis::observed(obs, name)
            && !run.terminated
            && let Verdict::Failed(why) = analysis::verdict(run)
        {
            plan.status.abort = Some(true);
            let message =
                format!("revision {desired} aborted: {what} {name} failed: {why}; {then}");
            let generation = plan.status.observed_generation;
            mark_aborted(plan, message, generation, now);
            return;
        }
    }
}

/// What an inconclusive analysis does to the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Nothing to hold for.
    Free,
    /// Paused for a person (`InconclusiveAnalysis`).
    Paused,
    /// A person cleared the pause: the inconclusive verdict is accepted.
    Promoted,
}

/// Inconclusive runs pause the release for a person; clearing the pause accepts their
/// verdicts (the runs are stopped); when no watched run is inconclusive any more (a provider
/// outage ended), the pause Sluice set is lifted.
pub(super) fn inconclusive_pause(
    plan: &mut Plan,
    obs: &Observed,
    runs: &[(&str, &str)],
    idx: Option<usize>,
    now: Timestamp,
) -> Hold {
    let at = idx.map(|i| format!("step {i}: ")).unwrap_or_default();
    let unsure: Vec<(&str, &str, String, bool)> = runs
        .iter()
        .filter_map(|(what, name)| {
            let run = analysis::observed(obs, name).filter(|r| !r.terminated)?;
            match analysis::verdict(run) {
                Verdict::Inconclusive { message, outage } => Some((*what, *name, message, outage)),
                _ => None,
            }
        })
        .collect();
    let ours = plan
        .status
        .pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::InconclusiveAnalysis);
    let Some((what, name, message, outage)) = unsure.first().cloned() else {
        if ours {
            plan.status
                .pause_conditions
                .retain(|p| p.reason != PauseReason::InconclusiveAnalysis);
            let step_pause = plan.status.pause_conditions.iter().any(|p| {
                matches!(
                    p.reason,
                    PauseReason::CanaryPauseStep | PauseReason::BlueGreenPause
                )
            });
            plan.status.controller_pause = step_pause.then_some(true);
            plan.event(
                EventType::Normal,
                "AnalysisResumed",
                format!("{at}analysis is measuring again; the release goes on"),
            );
        }
        return Hold::Free;
    };
    let why = format!("{at}{what} {name} is inconclusive: {message}; promote to go on or abort");
    if ours {
        plan.status.message = Some(why);
        return Hold::Paused;
    }
    if plan.status.controller_pause == Some(true) && plan.status.pause_conditions.is_empty() {
        // The pause Sluice set was cleared by a person: a promotion.
        plan.status.controller_pause = None;
        for (what, name, _, _) in &unsure {
            analysis::accept(plan, obs, name);
            plan.event(
                EventType::Normal,
                "Promoted",
                format!("{at}inconclusive {what} {name} accepted on request"),
            );
        }
        return Hold::Promoted;
    }
    plan.status.pause_conditions.push(PauseCondition {
        reason: PauseReason::InconclusiveAnalysis,
        start_time: Time(now),
    });
    plan.status.controller_pause = Some(true);
    plan.status.message = Some(why);
    let then = if outage {
        "; the release resumes by itself when measuring works again"
    } else {
        ""
    };
    plan.event(
        EventType::Warning,
        "AnalysisInconclusive",
        format!("{what} {name} is inconclusive: {message}{then}"),
    );
    Hold::Paused
}

/// Copies the observed phase and message of the runs the status names into it.
pub(super) fn refresh_run_status(plan: &mut Plan, obs: &Observed) {
    let refresh = |line: &mut Option<crate::api::rollout::RolloutAnalysisRunStatus>| {
        if let Some(l) = line.as_mut()
            && let Some(run) = analysis::observed(obs, &l.name)
        {
            l.status = run
                .phase
                .or(Some(crate::api::analysis::AnalysisPhase::Pending));
            l.message = run.message.clone();
        }
    };
    if let Some(c) = plan.status.canary.as_mut() {
        refresh(&mut c.current_step_analysis_run_status);
        refresh(&mut c.current_background_analysis_run_status);
    }
    if let Some(b) = plan.status.blue_green.as_mut() {
        refresh(&mut b.pre_promotion_analysis_run_status);
        refresh(&mut b.post_promotion_analysis_run_status);
    }
}

/// Replica targets for a weight: the canary gets its share of pods rounded up (or its
/// `setCanaryScale`); without a router the stable keeps its own share rounded up.
fn basic_targets(
    canary: &CanaryStrategy,
    replicas: i32,
    weight: i32,
    upto: usize,
) -> (Targets, Option<i32>) {
    let by_weight = canary_replicas(replicas, weight);
    let new = canary_scale_at(canary, replicas, upto).unwrap_or(by_weight);
    // With a router the weight moves traffic, so the stable keeps every pod. Without one, the
    // stable keeps its share rounded up, so the canary never serves more than its weight
    // rounded up to one pod (both round-ups may surge one pod, as Argo Rollouts does).
    let stable = if canary.traffic_routing.is_some() {
        replicas
    } else {
        stable_replicas(replicas, weight)
    };
    (Targets { new, stable }, None)
}

/// The canary's share, in percent rounded to the nearest, of the ready pods of `desired` and
/// `stable` (0 when neither has one).
pub(super) fn ready_share(obs: &Observed, desired: &str, stable: &str) -> i32 {
    let ready = |h: &str| i64::from(find(obs, h).map_or(0, |r| r.ready.max(0)));
    let (canary, total) = (ready(desired), ready(desired) + ready(stable));
    if total == 0 {
        return 0;
    }
    ((canary * 100 + total / 2) / total).clamp(0, 100) as i32
}

pub(super) fn fill_counts(st: &mut RolloutStatus, obs: &Observed) {
    let sum = |f: fn(&ObservedRs) -> i32| {
        obs.replica_sets
            .iter()
            .map(f)
            .fold(0i32, i32::saturating_add)
    };
    st.replicas = Some(sum(|r| r.replicas));
    st.ready_replicas = Some(sum(|r| r.ready));
    st.available_replicas = Some(sum(|r| r.available));
    let desired = st.current_pod_hash.clone();
    st.updated_replicas = Some(
        obs.replica_sets
            .iter()
            .filter(|r| Some(&r.hash) == desired.as_ref())
            .map(|r| r.replicas)
            .fold(0i32, i32::saturating_add),
    );
}

/// Sets phase and message, and the kstatus conditions that mirror them (`Ready`,
/// `Reconciling`, `Stalled`), so Flux and Argo CD read the same verdict.
pub(super) fn set_phase(
    st: &mut RolloutStatus,
    phase: RolloutPhase,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    st.phase = Some(phase);
    st.message = (!message.is_empty()).then(|| message.to_string());
    let reason = format!("{phase:?}");
    let c = &mut st.conditions;
    conditions::set(
        c,
        condition::READY,
        phase == RolloutPhase::Healthy,
        &reason,
        message,
        generation,
        now,
    );
    conditions::set(
        c,
        condition::HEALTHY,
        phase == RolloutPhase::Healthy,
        &reason,
        message,
        generation,
        now,
    );
    conditions::set(
        c,
        condition::PAUSED,
        phase == RolloutPhase::Paused,
        &reason,
        message,
        generation,
        now,
    );
    match phase {
        RolloutPhase::Progressing | RolloutPhase::Paused => {
            conditions::set(
                c,
                condition::RECONCILING,
                true,
                &reason,
                message,
                generation,
                now,
            );
            conditions::remove(c, condition::STALLED);
        }
        RolloutPhase::Degraded => {
            conditions::set(
                c,
                condition::STALLED,
                true,
                &reason,
                message,
                generation,
                now,
            );
            conditions::remove(c, condition::RECONCILING);
        }
        RolloutPhase::Healthy => {
            conditions::remove(c, condition::RECONCILING);
            conditions::remove(c, condition::STALLED);
        }
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "routed_tests.rs"]
mod routed_tests;

#[cfg(test)]
#[path = "decide_props.rs"]
mod props;
