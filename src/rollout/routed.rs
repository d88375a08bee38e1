//! A canary with a traffic router (Istio, Gateway API), pure: the router carries the weight,
//! so the stable keeps all its pods until the new revision is stable (unless
//! `dynamicStableScale` lets it follow the weight down), and the canary has the pods its
//! weight (or `setCanaryScale`) needs, ready before the weight reaches them. After the switch
//! the old stable keeps its pods for `scaleDownDelaySeconds` while traffic drains from it.

use crate::api::rollout::{
    CanaryStatus, CanaryStrategy, RolloutPhase, TrafficWeights, WeightDestination,
};
use crate::traffic::{HeaderMatch, MirrorRoute, RouteState, Weights};

use super::basic::push_services;
use super::canary::{Move, Selectors, step_index, weight_at};
use super::decide::{Plan, RsPlan};
use super::release::{Release, delayed_scale_down, revision_history};
use super::replicas::{canary_replicas, stable_replicas};
use super::status::fill_counts;

/// Where the router sends traffic in this reconcile.
struct Traffic {
    /// The canary's weight now.
    weight: i32,
    /// The canary's weight as the status last said.
    prev_weight: i32,
    /// The new revision became stable: everything goes to it.
    settled: bool,
    aborted: bool,
    /// `dynamicStableScale`.
    dynamic: bool,
    /// The new stable revision (the new one, once promoted).
    stable: String,
}

impl Traffic {
    /// The canary still carries traffic (during a dynamic abort too).
    fn canary_serves(&self) -> bool {
        !self.settled && (!self.aborted || self.weight > 0)
    }
}

/// Moves the ReplicaSets, Services, router and status of a canary with a traffic router.
pub(super) fn decide(rel: &Release, canary: &CanaryStrategy, mv: &Move, plan: &mut Plan) {
    let traffic = traffic(rel, canary, plan);
    replica_sets(rel, canary, mv, &traffic, plan);
    let keep = [rel.desired.as_str(), traffic.stable.as_str()];
    delayed_scale_down(
        rel,
        plan,
        &keep,
        i64::from(canary.scale_down_delay_seconds()),
        canary.scale_down_delay_revision_limit,
    );
    revision_history(rel, plan, &keep);

    // Services: the stable and canary Services select their revisions; a dynamic abort keeps
    // the canary Service on the canary while it still serves.
    let mut services = mv.services.clone();
    if traffic.dynamic && traffic.aborted && traffic.canary_serves() {
        services = Selectors {
            canary: rel.desired.clone(),
            ..services
        };
    }
    push_services(canary, &services, plan);
    route(rel, canary, &traffic, plan);
    fill_counts(&mut plan.status, rel.obs);
    if traffic.settled && plan.status.abort != Some(true) {
        let available = rel.new_rs().map(|r| r.available).unwrap_or(0);
        if available >= rel.replicas {
            rel.set_phase(plan, RolloutPhase::Healthy, "");
        } else if rel.settled() {
            rel.set_phase(
                plan,
                RolloutPhase::Progressing,
                "scaling the stable revision",
            );
        }
    }
}

/// The weight of the steps done; none on an abort or once settled. A full promotion keeps
/// the weight where it was until the switch: the canary's pods may not be ready for more.
/// With dynamicStableScale an abort moves traffic back only as fast as the stable's pods
/// become available again.
fn traffic(rel: &Release, canary: &CanaryStrategy, plan: &Plan) -> Traffic {
    let steps = canary.steps().len();
    let stable = plan.status.stable_rs.clone().unwrap_or_default();
    let settled = stable == rel.desired;
    let aborted = plan.status.abort == Some(true);
    let idx = step_index(plan.status.current_step_index, steps);
    let prev_weight = rel
        .prev
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
            let available = rel.rs(&rel.stable).map_or(0, |r| r.available);
            abort_weight(rel.replicas, available).min(prev_weight.clamp(0, 100))
        } else {
            0
        }
    } else if plan.status.promote_full == Some(true) {
        prev_weight.min(weight_at(canary, steps))
    } else {
        weight_at(canary, idx.min(steps))
    };
    Traffic {
        weight,
        prev_weight,
        settled,
        aborted,
        dynamic,
        stable,
    }
}

/// The canary has its target's pods (kept while the router still sends them traffic during
/// a dynamic abort); the stable keeps all its pods, or with dynamicStableScale the share of
/// the traffic it gets, before and after this reconcile: it shrinks only once the router has
/// moved the weight away.
fn replica_sets(rel: &Release, canary: &CanaryStrategy, mv: &Move, t: &Traffic, plan: &mut Plan) {
    let replicas = rel.replicas;
    let new_count = if t.settled {
        // Created paused: the first revision stays at zero until resumed.
        if rel.created_paused { 0 } else { replicas }
    } else {
        let mut n = mv.targets.new.max(mv.hold.map_or(0, |h| h.replicas)).max(0);
        if t.dynamic && t.aborted {
            n = n.max(canary_replicas(replicas, t.weight.max(t.prev_weight)));
        }
        n
    };
    plan.replica_sets.push(RsPlan {
        hash: rel.desired.clone(),
        replicas: new_count,
        scale_down_at: mv.hold.and_then(|h| h.scale_down_at),
    });
    if t.settled {
        return;
    }
    let stable_count = if t.dynamic && !t.aborted {
        let steps = canary.steps().len();
        let idx = step_index(plan.status.current_step_index, steps);
        let target = if idx >= steps || plan.status.promote_full == Some(true) {
            100
        } else {
            weight_at(canary, idx + 1)
        };
        stable_replicas(replicas, target.min(t.weight).min(t.prev_weight))
    } else {
        replicas
    };
    plan.replica_sets.push(RsPlan {
        hash: rel.stable.clone(),
        replicas: stable_count,
        scale_down_at: None,
    });
}

/// What the router must say (weights, header routes, subsets), and the weights in status.
fn route(rel: &Release, canary: &CanaryStrategy, t: &Traffic, plan: &mut Plan) {
    let steps = canary.steps().len();
    let reached = if plan.status.promote_full == Some(true) {
        // A full promotion skips steps; their header routes never go live.
        step_index(rel.prev.current_step_index, steps)
    } else {
        step_index(plan.status.current_step_index, steps)
    };
    let canary_pods = rel.new_rs().map(|r| r.available).unwrap_or(0);
    let (header_routes, mirror_routes) = if t.aborted || t.settled || canary_pods < 1 {
        (Vec::new(), Vec::new())
    } else {
        (
            header_routes_at(canary, reached),
            mirror_routes_at(canary, reached),
        )
    };
    let weights = Weights::canary(t.weight);
    plan.traffic = Some(RouteState {
        weights,
        header_routes,
        mirror_routes,
        stable_hash: t.stable.clone(),
        canary_hash: if t.canary_serves() {
            rel.desired.clone()
        } else {
            t.stable.clone()
        },
    });
    canary_weights(
        plan,
        canary,
        &rel.desired,
        &t.stable,
        weights.canary,
        weights.stable,
    );
}

/// The weights in `status.canary`: what each revision (and its Service) gets.
pub(super) fn canary_weights(
    plan: &mut Plan,
    canary: &CanaryStrategy,
    desired: &str,
    stable: &str,
    canary_weight: i32,
    stable_weight: i32,
) {
    plan.status.canary = Some(CanaryStatus {
        weights: Some(TrafficWeights {
            canary: WeightDestination {
                weight: canary_weight,
                pod_template_hash: Some(desired.to_string()),
                service_name: canary.canary_service.clone(),
            },
            stable: WeightDestination {
                weight: stable_weight,
                pod_template_hash: Some(stable.to_string()),
                service_name: canary.stable_service.clone(),
            },
        }),
        ..plan.status.canary.clone().unwrap_or_default()
    });
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

/// The mirror routes in force after the first `upto` steps: the last `setMirrorRoute` of each
/// name with matches (one without matches removes the route), as Argo Rollouts keeps them.
pub(super) fn mirror_routes_at(canary: &CanaryStrategy, upto: usize) -> Vec<MirrorRoute> {
    let mut routes: Vec<MirrorRoute> = Vec::new();
    for m in canary
        .steps()
        .iter()
        .take(upto)
        .filter_map(|s| s.set_mirror_route.as_ref())
    {
        routes.retain(|r| r.name != m.name);
        routes.extend(MirrorRoute::from_api(m));
    }
    routes
}

/// `dynamicStableScale`, which only means something with a traffic router.
pub(super) fn dynamic_stable_scale(canary: &CanaryStrategy) -> bool {
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

#[cfg(test)]
#[path = "routed_tests.rs"]
mod tests;
