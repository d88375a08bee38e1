//! What every strategy shares, pure: a release starts when the pod template changes (after
//! the spec checks pass), its first revision is stable at once, and then, whatever the
//! strategy, the same rules hold:
//!
//! - **abort**: requested (`status.abort`), a new revision whose pods cannot run (fail fast),
//!   or a failed analysis run; traffic goes back to stable in the same reconcile;
//! - **retry**: `abort` cleared after an abort restarts the release with runs of its own;
//! - **analysis gating**: an inconclusive run pauses for a person, whose promotion accepts it;
//! - **history**: old revisions drain after a delay, and those beyond
//!   `revisionHistoryLimit` are deleted;
//! - **progress deadline**: a release that makes no progress is reported (or aborted).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::constants::condition;
use crate::api::rollout::{
    PauseCondition, PauseReason, Rollout, RolloutAnalysisRunStatus, RolloutPhase, RolloutStatus,
};

use super::analysis::{self, AnalysisKey, UsedRun, Verdict};
use super::conditions;
use super::decide::{AbortCause, EventType, Plan, PromotionCause, RsPlan, after, find};
use super::hash::pod_template_hash;
use super::observe::{Observed, ObservedRs};
use super::replicas::Group;
use super::status::{fill_counts, set_phase};
use super::validate::{analysis_problems, validate};

/// One reconcile of a release under way: what every strategy reads.
pub(super) struct Release<'a> {
    pub ro: &'a Rollout,
    pub obs: &'a Observed,
    pub now: Timestamp,
    /// The status this reconcile started from.
    pub prev: RolloutStatus,
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// The revision of the pod template.
    pub desired: String,
    /// The stable revision when this reconcile started.
    pub stable: String,
    /// Whose runs this reconcile uses (see `analysis::release_number`).
    pub number: i32,
    /// The revision being released is a rollback exercise's faulty one: it is never
    /// promoted, and the stable keeps its size.
    pub exercise: bool,
    /// `spec.paused` holds a Rollout that has no pods yet, on its only revision (created
    /// paused, as Argo Rollouts does): a canary's first revision is not scaled up from zero
    /// until resumed; a blue-green's scales up but no Service is switched to it.
    pub created_paused: bool,
}

impl<'a> Release<'a> {
    pub fn rs(&self, hash: &str) -> Option<&'a ObservedRs> {
        find(self.obs, hash)
    }

    /// Replicas and available pods of revision `hash` (none when it has no ReplicaSet).
    pub fn group(&self, hash: &str) -> Group {
        self.rs(hash)
            .map(|rs| Group {
                replicas: rs.replicas,
                available: rs.available,
            })
            .unwrap_or_default()
    }

    /// The new revision's ReplicaSet, when it exists.
    pub fn new_rs(&self) -> Option<&'a ObservedRs> {
        self.rs(&self.desired)
    }

    /// Nothing to release: the template is the stable revision.
    pub fn settled(&self) -> bool {
        self.desired == self.stable
    }

    /// The run of the analysis `key` in this release.
    pub fn run(&self, key: AnalysisKey) -> UsedRun {
        UsedRun {
            key,
            name: key.run_name(self.ro, &self.desired, self.number),
        }
    }

    pub fn set_phase(&self, plan: &mut Plan, phase: RolloutPhase, message: &str) {
        set_phase(&mut plan.status, phase, message, self.generation, self.now);
    }

    /// Sets the `Progressing` condition.
    pub fn progressing(&self, plan: &mut Plan, on: bool, reason: &str, message: &str) {
        conditions::set(
            &mut plan.status.conditions,
            condition::PROGRESSING,
            on,
            reason,
            message,
            self.generation,
            self.now,
        );
    }
}

/// Checks the spec, starts a new release when the template changed, and makes the first
/// revision stable. `None` when there is nothing for a strategy to do: the spec is invalid, or
/// there is no template yet.
pub(super) fn begin<'a>(
    ro: &'a Rollout,
    obs: &'a Observed,
    now: Timestamp,
    plan: &mut Plan,
) -> Option<Release<'a>> {
    let prev = ro.status.clone().unwrap_or_default();
    let generation = ro.metadata.generation;
    plan.status = prev.clone();
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
    if check_spec(ro, obs, &prev, plan, now) == Spec::Blocked {
        fill_counts(&mut plan.status, obs);
        return None;
    }
    let template = obs.template.as_ref()?;
    let desired = pod_template_hash(template);
    if prev.current_pod_hash.as_deref() != Some(desired.as_str()) {
        start(&prev, &desired, plan);
        fast_track(ro, obs, &prev, &desired, plan);
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
    let created_paused = created_paused(ro, obs, &plan.status, &desired);
    Some(Release {
        ro,
        obs,
        now,
        generation,
        replicas: ro.spec.replicas(),
        created_paused,
        stable: plan.status.stable_rs.clone().unwrap_or_default(),
        number: analysis::release_number(&plan.status),
        exercise: obs
            .exercise
            .as_ref()
            .and_then(|e| e.revision.as_deref())
            .is_some_and(|r| r == desired),
        desired,
        prev,
    })
}

/// Whether `spec.paused` holds a Rollout created paused: its only revision (the template is
/// the stable one) has never been let out. A canary's first revision has no pods yet (no
/// ReplicaSet of the Rollout has any); a blue-green's has never had the active Service
/// switched to it (`status.blueGreen.activeSelector` unset).
fn created_paused(ro: &Rollout, obs: &Observed, st: &RolloutStatus, desired: &str) -> bool {
    if ro.spec.paused != Some(true) || st.stable_rs.as_deref() != Some(desired) {
        return false;
    }
    if ro.spec.strategy.blue_green.is_some() {
        st.blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_ref())
            .is_none()
    } else {
        obs.replica_sets.iter().all(|rs| rs.replicas <= 0)
    }
}

/// Whether the spec lets a release go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    Runs,
    Blocked,
}

/// An invalid spec keeps a release from starting. An analysis whose templates do not build
/// only holds that analysis once a release is under way (the release waits on it), so an
/// abort or a failing run still moves traffic back.
fn check_spec(
    ro: &Rollout,
    obs: &Observed,
    prev: &RolloutStatus,
    plan: &mut Plan,
    now: Timestamp,
) -> Spec {
    let generation = ro.metadata.generation;
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
        report_invalid(prev, plan, &message, generation, now);
        set_phase(
            &mut plan.status,
            RolloutPhase::Degraded,
            &format!("InvalidSpec: {message}"),
            generation,
            now,
        );
        return Spec::Blocked;
    }
    match analysis_problem {
        Some(problem) => report_invalid(prev, plan, &problem.to_string(), generation, now),
        None => conditions::remove(&mut plan.status.conditions, condition::INVALID_SPEC),
    }
    Spec::Runs
}

/// Sets the `InvalidSpec` condition, with a Warning Event when its message is new.
fn report_invalid(
    prev: &RolloutStatus,
    plan: &mut Plan,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let before =
        conditions::get(&prev.conditions, condition::INVALID_SPEC).map(|c| c.message.clone());
    conditions::set(
        &mut plan.status.conditions,
        condition::INVALID_SPEC,
        true,
        "InvalidSpec",
        message,
        generation,
        now,
    );
    if before.as_deref() != Some(message) {
        plan.event(EventType::Warning, "InvalidSpec", message);
    }
}

/// A new template starts a new release from the first step, with no pause, abort or run.
fn start(prev: &RolloutStatus, desired: &str, plan: &mut Plan) {
    let st = &mut plan.status;
    st.current_pod_hash = Some(desired.to_string());
    st.current_step_index = Some(0);
    st.pause_conditions.clear();
    st.controller_pause = None;
    st.abort = None;
    st.aborted_at = None;
    st.release_count = Some(prev.release_count.unwrap_or(0).saturating_add(1));
    st.promote_full = None;
    forget_runs(st);
    if let Some(stable) = &prev.stable_rs
        && stable != desired
    {
        plan.event(
            EventType::Normal,
            "RolloutStarted",
            format!("releasing revision {desired} (stable is {stable})"),
        );
    }
}

/// A rollback Argo Rollouts fast-tracks skips every step, pause and analysis (the release
/// is promoted in full at once): the template went back to a revision within
/// `rollbackWindow`, or, under blue-green, to one still serving out its scale-down delay.
/// (Going back to the canary's stable revision needs no release at all.)
fn fast_track(ro: &Rollout, obs: &Observed, prev: &RolloutStatus, desired: &str, plan: &mut Plan) {
    let Some(stable) = prev.stable_rs.as_deref().filter(|s| *s != desired) else {
        return;
    };
    let Some(target) = find(obs, desired) else {
        return;
    };
    let why = if within_rollback_window(ro, obs, target, stable) {
        "within rollbackWindow"
    } else if ro.spec.strategy.blue_green.is_some()
        && target.replicas > 0
        && target.scale_down_at.is_some()
    {
        "still within its scale-down delay"
    } else {
        return;
    };
    plan.status.promote_full = Some(true);
    plan.event(
        EventType::Normal,
        "FastTrackRollback",
        format!("rollback to revision {desired} ({why}): steps and analysis skipped"),
    );
}

/// Argo Rollouts' `isRollbackWithinWindow`: `target` was created before the stable revision,
/// with fewer than `rollbackWindow.revisions` revisions created between the two. Creation
/// times have whole seconds: a revision created in the same second as either end counts as
/// between them, and a target created in the stable's second is not known to be older, so a
/// tie never skips analysis.
fn within_rollback_window(ro: &Rollout, obs: &Observed, target: &ObservedRs, stable: &str) -> bool {
    let Some(window) = ro.spec.rollback_window.as_ref().and_then(|w| w.revisions) else {
        return false;
    };
    let (Some(from), Some(to)) = (target.created, find(obs, stable).and_then(|s| s.created)) else {
        return false;
    };
    if from >= to {
        return false;
    }
    let between = obs
        .replica_sets
        .iter()
        .filter(|rs| rs.hash != target.hash && rs.hash != stable)
        .filter(|rs| rs.created.is_some_and(|c| from <= c && c <= to))
        .count();
    between < window.max(0) as usize
}

/// The status lines of the runs of an earlier release (or attempt) go.
fn forget_runs(st: &mut RolloutStatus) {
    if let Some(c) = st.canary.as_mut() {
        c.current_step_analysis_run_status = None;
        c.current_background_analysis_run_status = None;
    }
    if let Some(b) = st.blue_green.as_mut() {
        b.pre_promotion_analysis_run_status = None;
        b.post_promotion_analysis_run_status = None;
    }
}

/// The template went back to the stable revision, or never left it: no abort, pause or
/// retry is left over.
pub(super) fn settle(plan: &mut Plan) {
    plan.status.promote_full = None;
    plan.status.abort = None;
    plan.status.aborted_at = None;
    plan.status.pause_conditions.clear();
    plan.status.controller_pause = None;
}

/// Records an abort: when, why (the `Progressing` condition) and a Warning Event.
fn mark_aborted(rel: &Release, plan: &mut Plan, cause: AbortCause, message: String) {
    plan.status.aborted_at = Some(Time(rel.now));
    plan.aborted = Some(cause);
    rel.progressing(plan, false, "RolloutAborted", &message);
    plan.event(EventType::Warning, "RolloutAborted", message);
}

/// A rollback exercise's faulty revision reached `point` (its promotion, a step only a
/// person would pass, or full weight) without being caught: it is aborted as any release is,
/// traffic back to stable in this same reconcile. `abort_or_retry` then carries the abort out.
pub(super) fn safety_stop(rel: &Release, plan: &mut Plan, point: &str) {
    plan.status.abort = Some(true);
    let message = format!(
        "exercise safety stop: revision {} reached {point} without being caught; all traffic back to stable {}",
        rel.desired, rel.stable
    );
    mark_aborted(rel, plan, AbortCause::SafetyStop, message);
}

/// Fail fast, abort and retry, shared by every strategy. Returns when the release was
/// aborted, or `None` when it goes on (after a retry, from its first step).
pub(super) fn abort_or_retry(rel: &Release, plan: &mut Plan) -> Option<Timestamp> {
    let (desired, stable) = (&rel.desired, &rel.stable);
    if plan.status.promote_full == Some(true) && plan.status.abort == Some(true) {
        // As Argo Rollouts: a full promotion lifts the abort and skips every step and analysis.
        plan.status.abort = None;
        plan.status.aborted_at = None;
        plan.promote(
            PromotionCause::Full,
            format!("abort of revision {desired} lifted by a full promotion"),
        );
    }
    // Fail fast: a new revision whose pods cannot run is aborted at once, with the diagnosis.
    if plan.status.abort != Some(true)
        && let Some(failure) = rel.new_rs().and_then(|rs| rs.failure.as_ref())
    {
        plan.status.abort = Some(true);
        let message = format!("revision {desired} cannot run: {}", failure.describe());
        mark_aborted(rel, plan, AbortCause::PodsFailing, message);
    }
    if plan.status.abort == Some(true) {
        let aborted_at = match &plan.status.aborted_at {
            Some(t) => t.0,
            None => {
                let message = format!(
                    "revision {desired} aborted on request; all traffic back to stable {stable}"
                );
                mark_aborted(rel, plan, AbortCause::Request, message);
                rel.now
            }
        };
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
        let reason = conditions::get(&plan.status.conditions, condition::PROGRESSING)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "aborted".into());
        rel.set_phase(
            plan,
            RolloutPhase::Degraded,
            &format!("RolloutAborted: {reason}"),
        );
        return Some(aborted_at);
    }
    if plan.status.aborted_at.is_some() {
        retry(rel, plan);
    }
    None
}

/// `abort` was cleared after an abort: retry the release from its first step.
fn retry(rel: &Release, plan: &mut Plan) {
    plan.status.aborted_at = None;
    plan.status.release_count = Some(plan.status.release_count.unwrap_or(0).saturating_add(1));
    forget_runs(&mut plan.status);
    plan.status.current_step_index = plan.status.current_step_index.map(|_| 0);
    rel.progressing(
        plan,
        true,
        "RolloutRetried",
        "retrying the release from its first step",
    );
    plan.event(
        EventType::Normal,
        "RolloutRetried",
        format!("retrying revision {} from the start", rel.desired),
    );
}

/// How long an aborted revision keeps its pods: `abortScaleDownDelaySeconds` as Argo
/// Rollouts reads it (`GetAbortScaleDownDelaySecondsOrDefault`, `shouldDelayScaleDownOnAbort`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AbortDelay {
    /// No delay: the strategy scales the aborted revision down as it computes (a canary
    /// without a traffic router, or `dynamicStableScale` without an explicit delay).
    Off,
    /// An explicit `0`: the aborted revision keeps its pods until the next release.
    Never,
    /// This many seconds, counted from the moment the stable is fully available again.
    After(i64),
}

/// The pods an aborted revision keeps while its delay runs, and the deadline written on its
/// ReplicaSet (so a restarted controller keeps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Held {
    pub replicas: i32,
    pub scale_down_at: Option<Timestamp>,
}

/// What the aborted revision `hash` keeps: every pod it has while `stable` (the revision
/// traffic went back to) is not yet fully available, then until its deadline; nothing after.
/// `None` once it may go (or with `AbortDelay::Off`).
pub(super) fn abort_hold(
    rel: &Release,
    plan: &mut Plan,
    hash: &str,
    stable: &str,
    delay: AbortDelay,
) -> Option<Held> {
    let rs = rel.rs(hash)?;
    let keep = |scale_down_at| Held {
        replicas: rs.replicas.max(0),
        scale_down_at,
    };
    let secs = match delay {
        AbortDelay::Off => return None,
        AbortDelay::Never => return Some(keep(None)),
        AbortDelay::After(secs) => secs,
    };
    if rel.rs(stable).is_none_or(|s| s.available < rel.replicas) {
        return Some(keep(None));
    }
    // A deadline older than the abort is left over from another time (an old stable's).
    let aborted_at = plan.status.aborted_at.as_ref().map(|t| t.0);
    let at = rs
        .scale_down_at
        .filter(|t| aborted_at.is_none_or(|a| *t >= a))
        .unwrap_or_else(|| after(rel.now, secs));
    if rel.now >= at {
        return None;
    }
    plan.requeue_at(at, rel.now);
    Some(keep(Some(at)))
}

/// A failed run (not stopped) among `runs` aborts the release in this same reconcile, so
/// traffic goes back before anything else happens. `then` says where traffic goes.
pub(super) fn abort_on_failed_run(rel: &Release, plan: &mut Plan, runs: &[&UsedRun], then: &str) {
    if plan.status.abort == Some(true) || plan.status.promote_full == Some(true) {
        return;
    }
    for UsedRun { key, name } in runs.iter().copied() {
        if let Some(run) = analysis::observed(rel.obs, name)
            && !run.terminated
            && let Verdict::Failed(why) = analysis::verdict(run)
        {
            plan.status.abort = Some(true);
            let message = format!(
                "revision {} aborted: {} {name} failed: {why}; {then}",
                rel.desired,
                key.describe()
            );
            plan.analysis = run.decided_by.clone();
            mark_aborted(rel, plan, AbortCause::AnalysisFailed, message);
            return;
        }
    }
}

/// What an inconclusive analysis does to the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Nothing to hold for.
    Free,
    /// Paused for a person (`InconclusiveAnalysis`), for the reason given.
    Paused { why: String },
    /// A person cleared the pause: the inconclusive verdict is accepted.
    Promoted,
}

/// An inconclusive run among those a release watches.
struct Unsure<'r> {
    run: &'r UsedRun,
    message: String,
    outage: bool,
}

/// Inconclusive runs pause the release for a person; clearing the pause accepts their
/// verdicts (the runs are stopped); when no watched run is inconclusive any more (a provider
/// outage ended), the pause Sluice set is lifted.
pub(super) fn inconclusive_pause(
    rel: &Release,
    plan: &mut Plan,
    runs: &[&UsedRun],
    step: Option<usize>,
) -> Hold {
    let at = step.map(|i| format!("step {i}: ")).unwrap_or_default();
    let unsure: Vec<Unsure> = runs
        .iter()
        .filter_map(|run| {
            let observed = analysis::observed(rel.obs, &run.name).filter(|r| !r.terminated)?;
            match analysis::verdict(observed) {
                Verdict::Inconclusive { message, outage } => Some(Unsure {
                    run,
                    message,
                    outage,
                }),
                _ => None,
            }
        })
        .collect();
    let ours = has_pause(&plan.status, PauseReason::InconclusiveAnalysis);
    let Some(first) = unsure.first() else {
        if ours {
            resume(plan, &at);
        }
        return Hold::Free;
    };
    let (what, name) = (first.run.key.describe(), &first.run.name);
    let why = format!(
        "{at}{what} {name} is inconclusive: {}; promote to go on or abort",
        first.message
    );
    if ours {
        plan.status.message = Some(why.clone());
        return Hold::Paused { why };
    }
    if plan.status.controller_pause == Some(true) && plan.status.pause_conditions.is_empty() {
        // The pause Sluice set was cleared by a person: a promotion.
        plan.status.controller_pause = None;
        for u in &unsure {
            analysis::accept(plan, rel.obs, &u.run.name);
            plan.promote(
                PromotionCause::InconclusiveAccepted,
                format!(
                    "{at}inconclusive {} {} accepted on request",
                    u.run.key.describe(),
                    u.run.name
                ),
            );
        }
        return Hold::Promoted;
    }
    pause(plan, PauseReason::InconclusiveAnalysis, rel.now);
    plan.status.message = Some(why.clone());
    let then = if first.outage {
        "; the release resumes by itself when measuring works again"
    } else {
        ""
    };
    plan.analysis = analysis::observed(rel.obs, name).and_then(|r| r.decided_by.clone());
    plan.event(
        EventType::Warning,
        "AnalysisInconclusive",
        format!("{what} {name} is inconclusive: {}{then}", first.message),
    );
    Hold::Paused { why }
}

/// The analysis measures again: the pause Sluice set for it is lifted.
fn resume(plan: &mut Plan, at: &str) {
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

/// Whether the status holds a pause for `reason`.
pub(super) fn has_pause(st: &RolloutStatus, reason: PauseReason) -> bool {
    st.pause_conditions.iter().any(|p| p.reason == reason)
}

/// Sluice pauses the release for `reason` (`controllerPause` marks the pause as its own, so a
/// person clearing it is a promotion).
pub(super) fn pause(plan: &mut Plan, reason: PauseReason, now: Timestamp) {
    plan.status.pause_conditions.push(PauseCondition {
        reason,
        start_time: Time(now),
    });
    plan.status.controller_pause = Some(true);
}

/// Copies the observed phase and message of the runs the status names into it.
pub(super) fn refresh_run_status(plan: &mut Plan, obs: &Observed) {
    let refresh = |line: &mut Option<RolloutAnalysisRunStatus>| {
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

/// Old revisions outside `keep` keep their pods until their scale-down time (kept in an
/// annotation on the ReplicaSet, so a restart does not reset it), then go to zero. With
/// `scaleDownDelayRevisionLimit` only the newest `limit` of them keep their pods meanwhile;
/// older ones go to zero at once (Argo Rollouts' `scaleDownDelayHelper`).
pub(super) fn delayed_scale_down(
    rel: &Release,
    plan: &mut Plan,
    keep: &[&str],
    delay_secs: i64,
    limit: Option<i32>,
) {
    let now = rel.now;
    let mut olds: Vec<&ObservedRs> = rel
        .obs
        .replica_sets
        .iter()
        .filter(|r| !keep.contains(&r.hash.as_str()) && r.replicas > 0)
        .collect();
    // The most recently replaced first: the one getting its deadline now, then by deadline.
    olds.sort_by_key(|rs| {
        std::cmp::Reverse((rs.scale_down_at.unwrap_or(Timestamp::MAX), rs.created))
    });
    let limit = limit.map_or(usize::MAX, |l| l.max(0) as usize);
    for (i, rs) in olds.into_iter().enumerate() {
        if i >= limit {
            plan.replica_sets.push(RsPlan {
                hash: rs.hash.clone(),
                replicas: 0,
                scale_down_at: None,
            });
            continue;
        }
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

/// Revision history, as Argo Rollouts keeps it: old revisions outside `keep` already scaled
/// to zero, beyond `revisionHistoryLimit`, are deleted oldest first (their AnalysisRuns with
/// them, see `analysis::tidy`).
pub(super) fn revision_history(rel: &Release, plan: &mut Plan, keep: &[&str]) {
    let limit = rel.ro.spec.revision_history_limit().max(0) as usize;
    let mut idle: Vec<&ObservedRs> = rel
        .obs
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

/// Records progress, and reports (or aborts, with `progressDeadlineAbort`) a release that
/// made none for `progressDeadlineSeconds` while not paused.
pub(super) fn progress_deadline(ro: &Rollout, obs: &Observed, plan: &mut Plan, now: Timestamp) {
    let prev = ro.status.clone().unwrap_or_default();
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
    deadline_exceeded(ro, obs, &prev, plan, now);
}

/// The release made no progress for `progressDeadlineSeconds`: `Progressing` turns false,
/// the phase Degraded, and with `progressDeadlineAbort` the release is aborted.
fn deadline_exceeded(
    ro: &Rollout,
    obs: &Observed,
    prev: &RolloutStatus,
    plan: &mut Plan,
    now: Timestamp,
) {
    let generation = ro.metadata.generation;
    let secs = ro.spec.progress_deadline_seconds();
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
        plan.aborted = Some(AbortCause::ProgressDeadline);
        plan.requeue_after = Some(std::time::Duration::from_millis(1));
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
