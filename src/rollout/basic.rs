//! A canary without a traffic router, pure: replica counts carry the weight. Both revisions
//! sit behind the same Service, so the canary's share of the ready pods is its share of the
//! traffic; the ReplicaSets move towards the steps' targets within `maxSurge` and
//! `maxUnavailable`, and the weight in status is the real share of ready pods.

use crate::api::rollout::{CanaryStrategy, RolloutPhase};

use super::canary::{Move, Selectors};
use super::decide::{Plan, RsPlan, ServicePlan};
use super::observe::{Observed, ObservedRs};
use super::release::{Release, revision_history};
use super::replicas::{Counts, Group, Limits, Scale, Targets, next_scale, rounding_surge};
use super::routed::canary_weights;
use super::status::fill_counts;

/// Moves the ReplicaSets, Services and status of a canary without a router.
pub(super) fn decide(
    rel: &Release,
    canary: &CanaryStrategy,
    limits: Limits,
    mv: &Move,
    plan: &mut Plan,
) {
    let (desired, stable) = (&rel.desired, &rel.stable);
    let counts = Counts {
        new: rel.group(desired),
        stable: rel.group(stable),
        other: older(rel),
    };
    let scale = scale(rel, limits, counts, mv);
    plan.replica_sets.push(RsPlan {
        hash: desired.clone(),
        replicas: scale.new,
        scale_down_at: None,
    });
    if !rel.settled() {
        plan.replica_sets.push(RsPlan {
            hash: stable.clone(),
            replicas: scale.stable,
            scale_down_at: None,
        });
    }
    shrink_older(rel, plan, scale.other);
    revision_history(rel, plan, &[desired, stable]);
    push_services(canary, &mv.services, plan);

    // Weights: without a traffic router, the canary's real share of the ready pods of the
    // two revisions (what their Services' endpoints hold), not the step's weight.
    let canary_weight = if rel.settled() {
        0
    } else {
        ready_share(rel.obs, desired, stable)
    };
    canary_weights(
        plan,
        canary,
        desired,
        stable,
        canary_weight,
        100 - canary_weight,
    );
    fill_counts(&mut plan.status, rel.obs);
    if rel.settled() {
        let healthy = counts.new.available >= rel.replicas && counts.other.replicas == 0;
        if healthy {
            rel.set_phase(plan, RolloutPhase::Healthy, "");
        } else {
            rel.set_phase(
                plan,
                RolloutPhase::Progressing,
                "scaling the stable revision",
            );
        }
    }
}

/// Every revision older than the new and the stable one, as one group.
fn older(rel: &Release) -> Group {
    olds(rel).fold(Group::default(), |g, rs| Group {
        replicas: g.replicas.saturating_add(rs.replicas.max(0)),
        available: g.available.saturating_add(rs.available.max(0)),
    })
}

fn olds<'a>(rel: &Release<'a>) -> impl Iterator<Item = &'a ObservedRs> {
    let (desired, stable) = (rel.desired.clone(), rel.stable.clone());
    rel.obs
        .replica_sets
        .iter()
        .filter(move |rs| rs.hash != desired && rs.hash != stable)
}

/// How far the revisions move in this reconcile. Settled, the stable alone scales to its
/// size; releasing, the step's rounding may surge one more pod. An abort is a move to weight
/// 0 like any other (`abortScaleDownDelaySeconds` does not apply without a router).
fn scale(rel: &Release, limits: Limits, counts: Counts, mv: &Move) -> Scale {
    if rel.settled() {
        let s = next_scale(
            rel.replicas,
            limits,
            Counts {
                new: Group::default(),
                stable: counts.new,
                other: counts.other,
            },
            Targets {
                new: 0,
                stable: mv.targets.stable,
            },
        );
        return Scale {
            new: s.stable,
            stable: s.stable,
            other: s.other,
        };
    }
    let limits = Limits {
        max_surge: limits
            .max_surge
            .saturating_add(rounding_surge(rel.replicas, mv.targets)),
        ..limits
    };
    next_scale(rel.replicas, limits, counts, mv.targets)
}

/// Older revisions shrink together to `remaining` pods, the newest keeping theirs longest.
fn shrink_older(rel: &Release, plan: &mut Plan, mut remaining: i32) {
    let mut olds: Vec<&ObservedRs> = olds(rel).collect();
    olds.sort_by_key(|rs| std::cmp::Reverse(rs.created));
    for rs in olds {
        let keep = rs.replicas.min(remaining);
        remaining -= keep;
        if keep != rs.replicas {
            plan.replica_sets.push(RsPlan {
                hash: rs.hash.clone(),
                replicas: keep,
                scale_down_at: None,
            });
        }
    }
}

/// The stable and canary Services select the revisions the move names.
pub(super) fn push_services(canary: &CanaryStrategy, selectors: &Selectors, plan: &mut Plan) {
    for (svc, hash) in [
        (&canary.stable_service, &selectors.stable),
        (&canary.canary_service, &selectors.canary),
    ] {
        if let Some(name) = svc {
            plan.services.push(ServicePlan {
                name: name.clone(),
                hash: hash.clone(),
            });
        }
    }
}

/// The canary's share, in percent rounded to the nearest, of the ready pods of `desired` and
/// `stable` (0 when neither has one).
pub(super) fn ready_share(obs: &Observed, desired: &str, stable: &str) -> i32 {
    let ready = |h: &str| i64::from(super::decide::find(obs, h).map_or(0, |r| r.ready.max(0)));
    let (canary, total) = (ready(desired), ready(desired) + ready(stable));
    if total == 0 {
        return 0;
    }
    ((canary * 100 + total / 2) / total).clamp(0, 100) as i32
}
