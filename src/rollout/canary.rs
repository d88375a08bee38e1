//! The canary's steps, pure, shared by both canaries: which step the release is at, what
//! completes a step (`setWeight` once the pods are there, `pause` once over or promoted,
//! `analysis` once its run passed), and what the steps done ask of the ReplicaSets and
//! Services. The replicas and traffic then move as the canary's kind says: `basic` (no
//! traffic router: replica counts carry the weight) or `routed` (a router carries it).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::duration::int_or_string_duration;
use crate::api::rollout::{CanaryStep, CanaryStrategy, PauseReason, RolloutPause, RolloutPhase};

use super::analysis::{self, AnalysisKey, UsedRun, Verdict};
use super::decide::{EventType, Plan, PromotionCause, after, secs};
use super::release::{
    AbortDelay, Held, Hold, Release, abort_hold, abort_on_failed_run, abort_or_retry, has_pause,
    inconclusive_pause, pause, refresh_run_status, settle,
};
use super::replicas::{Limits, Targets, canary_replicas, stable_replicas};
use super::{basic, routed};

/// Which revision each canary Service selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Selectors {
    pub stable: String,
    pub canary: String,
}

impl Selectors {
    fn new(stable: &str, canary: &str) -> Self {
        Selectors {
            stable: stable.to_string(),
            canary: canary.to_string(),
        }
    }
}

/// What the steps ask of this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Move {
    /// Replicas of the new and the stable revision.
    pub targets: Targets,
    /// Pods the canary keeps after an abort, while `abortScaleDownDelaySeconds` runs.
    pub hold: Option<Held>,
    pub services: Selectors,
}

/// Whether a step is done or the release waits at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Done,
    Wait,
}

/// The runs a canary release may wait on.
struct Runs {
    /// The run of the analysis step the release was at when this reconcile started.
    step: Option<UsedRun>,
    background: Option<UsedRun>,
}

impl Runs {
    fn all(&self) -> Vec<&UsedRun> {
        self.step.iter().chain(self.background.iter()).collect()
    }
}

/// Decides a canary Rollout: the steps, then the replicas and traffic of its kind.
pub(super) fn decide(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan) {
    // A rollback exercise never scales the stable down, so the stable follows no weight.
    let steady;
    let canary = if rel.exercise && canary.dynamic_stable_scale == Some(true) {
        steady = CanaryStrategy {
            dynamic_stable_scale: None,
            ..canary.clone()
        };
        &steady
    } else {
        canary
    };
    let Ok(mut limits) =
        Limits::resolve(rel.replicas, &canary.max_surge(), &canary.max_unavailable())
    else {
        return;
    };
    if rel.exercise {
        // The canary's pods come on top of a stable kept at full size.
        limits.max_surge = limits.max_surge.saturating_add(rel.replicas);
    }
    let mv = if rel.settled() {
        settled(rel, canary, plan)
    } else {
        release(rel, canary, plan)
    };
    if canary.traffic_routing.is_some() {
        routed::decide(rel, canary, &mv, plan);
    } else {
        basic::decide(rel, canary, limits, &mv, plan);
    }
    if rel.created_paused {
        let message = format!(
            "paused by spec.paused: created paused, revision {} is scaled up once resumed",
            rel.desired
        );
        rel.set_phase(plan, RolloutPhase::Paused, &message);
    }
}

/// Nothing to release: the stable runs alone. A template that went back to the stable one
/// while a release was on is a fast-track rollback.
fn settled(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan) -> Move {
    let desired = &rel.desired;
    if rel
        .prev
        .current_pod_hash
        .as_deref()
        .is_some_and(|h| h != desired)
        && rel.prev.stable_rs.as_deref() == Some(desired)
    {
        let message = match rel.prev.exercise.as_ref().filter(|e| e.ended.is_some()) {
            Some(e) => format!(
                "exercise {} over: back on stable revision {desired}; the faulty revision is scaled down",
                e.name
            ),
            None => format!(
                "the template is back to stable revision {desired}; the canary is scaled down"
            ),
        };
        plan.event(EventType::Normal, "FastTrackRollback", message);
    }
    settle(plan);
    plan.status.current_step_index = Some(canary.steps().len() as i32);
    // Created paused: the first revision stays at zero until resumed.
    let size = if rel.created_paused { 0 } else { rel.replicas };
    Move {
        targets: Targets {
            new: size,
            stable: size,
        },
        hold: None,
        services: Selectors::new(&rel.stable, &rel.stable),
    }
}

/// The step the status is at, within the steps.
pub(super) fn step_index(at: Option<i32>, steps: usize) -> usize {
    at.unwrap_or(0).clamp(0, steps as i32) as usize
}

/// A release in progress: abort, full promotion, a hold, or the next steps.
fn release(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan) -> Move {
    let steps = canary.steps();
    // The runs this release may be waiting on (a retry's, when this reconcile retries).
    let at_step = step_index(plan.status.current_step_index, steps.len());
    let runs = Runs {
        step: steps
            .get(at_step)
            .filter(|s| s.analysis.is_some())
            .map(|_| rel.run(AnalysisKey::Step(at_step))),
        background: background_run(rel, canary),
    };
    refresh_run_status(plan, rel.obs);
    // A failed analysis aborts in this same reconcile, so traffic leaves the canary at once.
    let back = format!("all traffic back to stable {}", rel.stable);
    abort_on_failed_run(rel, plan, &runs.all(), &back);
    if abort_or_retry(rel, plan).is_some() {
        // No run is active any more: `tidy` stops them.
        return aborted(rel, canary, plan);
    }
    let mut idx = step_index(plan.status.current_step_index, steps.len());
    if rel.exercise && plan.status.promote_full == Some(true) {
        plan.status.promote_full = None;
        return stopped(rel, canary, plan, "a request for a full promotion");
    }
    if plan.status.promote_full == Some(true) {
        if idx < steps.len() {
            plan.promote(
                PromotionCause::Full,
                "all remaining steps skipped on request",
            );
        }
        idx = steps.len();
        plan.status.pause_conditions.clear();
        plan.status.controller_pause = None;
    } else {
        plan.active_runs
            .extend(runs.all().into_iter().map(|r| r.name.clone()));
    }
    if let Some(mv) = held(rel, canary, plan, &runs, at_step, idx) {
        return mv;
    }
    let idx = walk(rel, canary, plan, idx);
    if let Some(point) = exercise_stop(rel, canary, idx) {
        plan.status.current_step_index = Some(idx as i32);
        return stopped(rel, canary, plan, &point);
    }
    plan.status.current_step_index = Some(idx as i32);
    if idx != at_step {
        forget_step_run(rel, plan, idx);
    }
    background(rel, canary, plan, idx, runs.background.as_ref());
    if idx >= steps.len() {
        promote(rel, canary, plan, runs.background.as_ref())
    } else {
        at(rel, canary, plan, idx)
    }
}

/// Where a rollback exercise's release stops before going further (`release::safety_stop`):
/// its promotion, a pause only a person would end, or a step giving it all the traffic.
fn exercise_stop(rel: &Release, canary: &CanaryStrategy, idx: usize) -> Option<String> {
    if !rel.exercise {
        return None;
    }
    let Some(step) = canary.steps().get(idx) else {
        return Some("its promotion".into());
    };
    if step.pause.as_ref().is_some_and(|p| p.duration.is_none()) {
        return Some(format!("step {idx}, a pause only a person would end"));
    }
    if step.set_weight.is_some_and(|w| w >= 100) {
        return Some(format!("step {idx}, which gives it all the traffic"));
    }
    None
}

/// A rollback exercise stopped at `point`: aborted as any release, traffic back first.
fn stopped(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan, point: &str) -> Move {
    super::release::safety_stop(rel, plan, point);
    abort_or_retry(rel, plan);
    aborted(rel, canary, plan)
}

/// Traffic first: both Services select the stable pods in this same reconcile. The canary
/// then keeps its pods as `abortScaleDownDelaySeconds` says (see `abort_delay`).
fn aborted(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan) -> Move {
    let hold = abort_hold(rel, plan, &rel.desired, &rel.stable, abort_delay(canary));
    Move {
        targets: Targets {
            new: 0,
            stable: rel.replicas,
        },
        hold,
        services: Selectors::new(&rel.stable, &rel.stable),
    }
}

/// `abortScaleDownDelaySeconds` of a canary, as Argo Rollouts reads it: without a traffic
/// router it is ignored (scaling down is what moves the traffic back, within maxSurge and
/// maxUnavailable); with one it defaults to 30 s, and an explicit 0 keeps the canary's pods;
/// with `dynamicStableScale` and no explicit value, the canary follows the traffic down.
pub(super) fn abort_delay(canary: &CanaryStrategy) -> AbortDelay {
    if canary.traffic_routing.is_none() {
        return AbortDelay::Off;
    }
    match canary.abort_scale_down_delay_seconds {
        None if routed::dynamic_stable_scale(canary) => AbortDelay::Off,
        Some(0) => AbortDelay::Never,
        _ => AbortDelay::After(i64::from(canary.abort_scale_down_delay_seconds())),
    }
}

/// The background run of this release. A person who promoted past an inconclusive one
/// accepted it (it is stopped); as in Argo Rollouts a new run starts then, named after the
/// ones before it.
fn background_run(rel: &Release, canary: &CanaryStrategy) -> Option<UsedRun> {
    canary.analysis.as_ref()?;
    let mut run = rel.run(AnalysisKey::Background);
    let first = run.name.clone();
    let mut n = 1;
    while analysis::observed(rel.obs, &run.name).is_some_and(|r| {
        r.terminated && matches!(analysis::verdict(r), Verdict::Inconclusive { .. })
    }) {
        n += 1;
        run.name = super::hash::dns_label(&[&first, &n.to_string()]);
    }
    Some(run)
}

/// The release holds at step `idx`: an inconclusive analysis waits for a person (a promotion
/// accepts it, and a full promotion skips the wait), and `spec.paused` or a `UserPause`
/// holds every step.
fn held(
    rel: &Release,
    canary: &CanaryStrategy,
    plan: &mut Plan,
    runs: &Runs,
    at_step: usize,
    idx: usize,
) -> Option<Move> {
    if plan.status.promote_full != Some(true)
        && let Hold::Paused { why } = inconclusive_pause(rel, plan, &runs.all(), Some(at_step))
    {
        plan.status.current_step_index = Some(idx as i32);
        rel.set_phase(plan, RolloutPhase::Paused, &why);
        return Some(frozen(rel, canary, idx));
    }
    let user_paused = has_pause(&plan.status, PauseReason::UserPause);
    if rel.ro.spec.paused != Some(true) && !user_paused {
        return None;
    }
    // Held where it stands: no step advances until the pause is lifted.
    plan.status.current_step_index = Some(idx as i32);
    let by = if user_paused {
        "paused on request (status.pauseConditions UserPause)"
    } else {
        "paused by spec.paused"
    };
    rel.set_phase(plan, RolloutPhase::Paused, by);
    Some(frozen(rel, canary, idx))
}

/// Held (Argo Rollouts' `haltProgress`): nothing moves towards step `idx`. The counts the
/// steps done ask for follow `replicas` (a scaling while paused keeps their ratio), and the
/// canary keeps whatever it already has of the current step's.
fn frozen(rel: &Release, canary: &CanaryStrategy, idx: usize) -> Move {
    let done = targets(rel, canary, weight_at(canary, idx), idx);
    let next = targets(rel, canary, weight_at(canary, idx + 1), idx + 1);
    let between = |have: i32, a: i32, b: i32| have.clamp(a.min(b), a.max(b));
    let (new, stable) = (rel.group(&rel.desired), rel.group(&rel.stable));
    Move {
        targets: Targets {
            new: between(new.replicas, done.new, next.new),
            stable: between(stable.replicas, done.stable, next.stable),
        },
        hold: None,
        services: Selectors::new(&rel.stable, &rel.desired),
    }
}

/// The move while at step `idx`: the weight of the steps up to it, both Services on their
/// revisions.
fn moving(rel: &Release, canary: &CanaryStrategy, idx: usize) -> Move {
    let w = weight_at(canary, idx + 1);
    Move {
        targets: targets(rel, canary, w, idx + 1),
        hold: None,
        services: Selectors::new(&rel.stable, &rel.desired),
    }
}

/// Completes every step it can from `idx`; returns the step the release waits at (or the
/// number of steps, when all are done).
fn walk(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan, mut idx: usize) -> usize {
    let steps = canary.steps();
    while let Some(step) = steps.get(idx) {
        if exercise_stop(rel, canary, idx).is_some() {
            break;
        }
        let outcome = if let Some(w) = step.set_weight {
            weight_step(rel, canary, plan, idx, w)
        } else if let Some(p) = &step.pause {
            pause_step(rel, plan, idx, p)
        } else if step.analysis.is_some() {
            analysis_step(rel, plan, idx)
        } else {
            header_or_scale_step(rel, step)
        };
        match outcome {
            Step::Done => idx += 1,
            Step::Wait => break,
        }
    }
    idx
}

/// `setWeight` is done once both revisions have the pods its weight asks for.
fn weight_step(
    rel: &Release,
    canary: &CanaryStrategy,
    plan: &mut Plan,
    idx: usize,
    w: i32,
) -> Step {
    let targets = targets(rel, canary, w, idx + 1);
    if !counts_ready(rel, canary, targets) {
        return Step::Wait;
    }
    plan.event(
        EventType::Normal,
        "StepCompleted",
        format!("step {idx}: canary weight {w}% reached"),
    );
    Step::Done
}

/// `pause`: Sluice pauses here (for its duration, or until promoted); the step is done when
/// the duration is over or a person cleared the pause.
fn pause_step(rel: &Release, plan: &mut Plan, idx: usize, step: &RolloutPause) -> Step {
    let now = rel.now;
    let duration = step
        .duration
        .as_ref()
        .and_then(|d| int_or_string_duration(d).ok());
    let ours = plan
        .status
        .pause_conditions
        .iter()
        .find(|p| p.reason == PauseReason::CanaryPauseStep)
        .cloned();
    match ours {
        Some(p) => match duration.map(|d| after(p.start_time.0, secs(d))) {
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
                Step::Done
            }
            Some(t) => {
                plan.requeue_at(t, now);
                Step::Wait
            }
            None => Step::Wait,
        },
        None if plan.status.controller_pause == Some(true) => {
            // Sluice paused here and someone cleared the pause: a promotion.
            plan.status.controller_pause = None;
            plan.promote(PromotionCause::Manual, format!("step {idx}: promoted"));
            Step::Done
        }
        None => {
            pause(plan, PauseReason::CanaryPauseStep, now);
            let how = match &step.duration {
                Some(IntOrString::Int(i)) => format!("for {i}s"),
                Some(IntOrString::String(s)) => format!("for {s}"),
                None => "until promoted".to_string(),
            };
            plan.event(
                EventType::Normal,
                "Paused",
                format!("step {idx}: paused {how}"),
            );
            if let Some(d) = duration {
                plan.requeue_at(after(now, secs(d)), now);
            }
            Step::Wait
        }
    }
}

/// `analysis`: its run is created, and the step is done once the run passed (or a person
/// accepted its inconclusive verdict).
fn analysis_step(rel: &Release, plan: &mut Plan, idx: usize) -> Step {
    let run = rel.run(AnalysisKey::Step(idx));
    let state = analysis::ensure_run(plan, rel.obs, &run, &rel.desired);
    let name = run.name;
    plan.active_runs.push(name.clone());
    let cs = plan.status.canary.get_or_insert_with(Default::default);
    cs.current_step_analysis_run_status = Some(state.line);
    // Sluice stops a step's run only when a person accepted its verdict (or the release
    // ended), so a stopped inconclusive run is an accepted one, even after a restart between
    // the two writes.
    let accepted = analysis::observed(rel.obs, &name).is_some_and(|r| r.terminated)
        || plan.terminate_runs.contains(&name);
    match state.verdict {
        Verdict::Successful => {
            plan.event(
                EventType::Normal,
                "StepCompleted",
                format!("step {idx}: analysis {name} passed"),
            );
            Step::Done
        }
        Verdict::Inconclusive { .. } if accepted => Step::Done,
        _ => Step::Wait,
    }
}

/// `setHeaderRoute` sends requests to the canary: not before it has a pod to take them.
/// `setCanaryScale` takes effect through `canary_scale_at`; nothing to wait for.
fn header_or_scale_step(rel: &Release, step: &CanaryStep) -> Step {
    if step.set_header_route.is_some() && rel.new_rs().is_none_or(|r| r.available < 1) {
        Step::Wait
    } else {
        Step::Done
    }
}

/// Whether both revisions have the pods `targets` asks for, all available. A stable that
/// serves nothing (no pod available, or its pods diagnosed as failing: a broken first
/// revision) cannot become available by waiting, so only its count gates; with
/// dynamicStableScale the stable follows the weight, after it, so only the canary's pods gate
/// (as Argo Rollouts' AtDesiredReplicaCountsForCanary).
fn counts_ready(rel: &Release, canary: &CanaryStrategy, targets: Targets) -> bool {
    let stable_broken = rel
        .rs(&rel.stable)
        .is_some_and(|r| r.available <= 0 || r.failure.is_some());
    let (new, stable) = (rel.group(&rel.desired), rel.group(&rel.stable));
    new.replicas == targets.new
        && new.available >= targets.new
        && (routed::dynamic_stable_scale(canary)
            || (stable.replicas == targets.stable
                && (stable.available >= targets.stable || stable_broken)))
}

/// The release moved past the analysis step it was at: that step's status line goes, unless
/// it names the run of the step now reached.
fn forget_step_run(rel: &Release, plan: &mut Plan, idx: usize) {
    if let Some(cs) = plan.status.canary.as_mut()
        && cs
            .current_step_analysis_run_status
            .as_ref()
            .is_some_and(|l| l.name != rel.run(AnalysisKey::Step(idx)).name)
    {
        cs.current_step_analysis_run_status = None;
    }
}

/// Background analysis runs from `startingStep` until the release completes.
fn background(
    rel: &Release,
    canary: &CanaryStrategy,
    plan: &mut Plan,
    idx: usize,
    run: Option<&UsedRun>,
) {
    let (Some(bg), Some(run)) = (&canary.analysis, run) else {
        return;
    };
    let steps = canary.steps().len();
    let start = bg.starting_step.unwrap_or(0).max(0) as usize;
    let completing = idx >= steps && analysis::observed(rel.obs, &run.name).is_none();
    if idx >= start.min(steps) && !completing {
        let state = analysis::ensure_run(plan, rel.obs, run, &rel.desired);
        let cs = plan.status.canary.get_or_insert_with(Default::default);
        cs.current_background_analysis_run_status = Some(state.line);
    }
}

/// Every step done: the new revision scales to full size, and becomes stable once all its
/// pods are available (the background analysis stops then).
fn promote(
    rel: &Release,
    canary: &CanaryStrategy,
    plan: &mut Plan,
    background: Option<&UsedRun>,
) -> Move {
    let (desired, replicas) = (&rel.desired, rel.replicas);
    let targets = Targets {
        new: replicas,
        stable: 0,
    };
    let stable_now = rel.rs(&rel.stable).map_or(0, |r| r.replicas);
    let full = Targets {
        new: replicas,
        stable: stable_now,
    };
    if counts_ready(rel, canary, full) && rel.new_rs().is_some_and(|r| r.available >= replicas) {
        plan.status.stable_rs = Some(desired.clone());
        if let Some(run) = background {
            analysis::terminate(plan, rel.obs, &run.name);
        }
        plan.event(
            EventType::Normal,
            "RolloutCompleted",
            format!("revision {desired} is stable"),
        );
        rel.progressing(plan, true, "RolloutCompleted", "the new revision is stable");
        rel.set_phase(plan, RolloutPhase::Healthy, "");
        return Move {
            targets,
            hold: None,
            services: Selectors::new(desired, desired),
        };
    }
    rel.set_phase(
        plan,
        RolloutPhase::Progressing,
        "promoting: scaling the new revision to full size",
    );
    rel.progressing(
        plan,
        true,
        "ReplicaSetUpdated",
        "promoting the new revision",
    );
    Move {
        targets,
        hold: None,
        services: Selectors::new(&rel.stable, desired),
    }
}

/// The release waits at step `idx`, progressing or paused there.
fn at(rel: &Release, canary: &CanaryStrategy, plan: &mut Plan, idx: usize) -> Move {
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
    rel.set_phase(plan, phase, &message);
    let of = format!("step {idx} of {}", canary.steps().len());
    rel.progressing(plan, true, "ReplicaSetUpdated", &of);
    moving(rel, canary, idx)
}

/// The weight of the last `setWeight` among the first `upto` steps.
pub(super) fn weight_at(canary: &CanaryStrategy, upto: usize) -> i32 {
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

/// Replica targets for a weight: the canary gets its share of pods rounded up (or its
/// `setCanaryScale`). With a router the weight moves traffic, so the stable keeps every pod.
/// Without one, the stable keeps its share rounded up, so the canary never serves more than
/// its weight rounded up to one pod (both round-ups may surge one pod, as Argo Rollouts does).
/// The replicas each revision has at a weight: [`basic_targets`], except that a rollback
/// exercise never takes pods from the stable.
fn targets(rel: &Release, canary: &CanaryStrategy, weight: i32, upto: usize) -> Targets {
    let t = basic_targets(canary, rel.replicas, weight, upto);
    if rel.exercise {
        Targets {
            stable: rel.replicas,
            ..t
        }
    } else {
        t
    }
}

fn basic_targets(canary: &CanaryStrategy, replicas: i32, weight: i32, upto: usize) -> Targets {
    let by_weight = canary_replicas(replicas, weight);
    let new = canary_scale_at(canary, replicas, upto).unwrap_or(by_weight);
    let stable = if canary.traffic_routing.is_some() {
        replicas
    } else {
        stable_replicas(replicas, weight)
    };
    Targets { new, stable }
}
