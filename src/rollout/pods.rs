//! What a reconcile does to the Rollout's pods themselves, pure: the labels and annotations
//! each role carries (`canaryMetadata`/`stableMetadata`, `previewMetadata`/`activeMetadata`),
//! and the pods `spec.restartAt` restarts. Both follow Argo Rollouts:
//! `rollout/ephemeralmetadata.go` and `rollout/restart.go`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::rollout::{PodTemplateMetadata, Rollout};

use super::decide::{Plan, after};
use super::observe::{Observed, ObservedPod};
use super::replicas::resolve;

/// Argo Rollouts looks again this often while pods wait to be restarted
/// (`restartPodCheckTime`); pod changes wake Sluice sooner.
const RESTART_CHECK_SECS: i64 = 30;

/// What `apply` does to pods, besides what the ReplicaSets do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodPlan {
    /// The role metadata of each revision, by hash; a revision not named carries none.
    pub metadata: BTreeMap<String, PodTemplateMetadata>,
    /// Pods to evict for `spec.restartAt`.
    pub evict: Vec<String>,
}

/// The pods' part of the plan; sets `status.restartedAt` once a restart is complete.
pub fn plan(ro: &Rollout, obs: &Observed, plan: &mut Plan, now: Timestamp) -> PodPlan {
    PodPlan {
        metadata: role_metadata(ro, plan),
        evict: restart(ro, obs, plan, now),
    }
}

/// Which metadata each revision's pods carry (`reconcileEphemeralMetadata`): while a release
/// is under way the new revision has the canary's (preview's) and the stable the stable's
/// (active's); once the new revision is stable (for blue-green: after its post-promotion
/// analysis), it has the stable's (active's). Every other revision has none.
fn role_metadata(ro: &Rollout, plan: &Plan) -> BTreeMap<String, PodTemplateMetadata> {
    let strategy = &ro.spec.strategy;
    let (new_md, stable_md) = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => (&c.canary_metadata, &c.stable_metadata),
        (None, Some(b)) => (&b.preview_metadata, &b.active_metadata),
        (None, None) => return BTreeMap::new(),
    };
    let st = &plan.status;
    let (Some(desired), stable) = (&st.current_pod_hash, &st.stable_rs) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    let mut put = |hash: &String, md: &Option<PodTemplateMetadata>| {
        if let Some(md) = md.as_ref().filter(|m| !is_empty(m)) {
            out.insert(hash.clone(), md.clone());
        }
    };
    match stable {
        Some(s) if s != desired => {
            put(desired, new_md);
            put(s, stable_md);
        }
        _ => put(desired, stable_md),
    }
    out
}

fn is_empty(md: &PodTemplateMetadata) -> bool {
    md.labels.as_ref().is_none_or(BTreeMap::is_empty)
        && md.annotations.as_ref().is_none_or(BTreeMap::is_empty)
}

/// The record of what Sluice put on a revision's pods (kept in an annotation on its
/// ReplicaSet), so that a key no longer wanted is taken off and the user's keys never are.
pub fn record(md: &PodTemplateMetadata) -> Option<String> {
    (!is_empty(md)).then(|| serde_json::to_string(md).unwrap_or_default())
}

/// Reads a record back; one that does not read is no record.
pub fn parse_record(value: Option<&String>) -> PodTemplateMetadata {
    value
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// `meta` (a pod's or a pod template's) with the keys of `old` taken off and those of `want`
/// put on (`SyncEphemeralPodMetadata`).
pub fn with_role(
    meta: &ObjectMeta,
    old: &PodTemplateMetadata,
    want: &PodTemplateMetadata,
) -> ObjectMeta {
    let mut meta = meta.clone();
    let swap = |map: &mut Option<BTreeMap<String, String>>,
                old: &Option<BTreeMap<String, String>>,
                want: &Option<BTreeMap<String, String>>| {
        let m = map.get_or_insert_with(BTreeMap::new);
        for k in old.iter().flat_map(|o| o.keys()) {
            m.remove(k);
        }
        m.extend(want.clone().unwrap_or_default());
        if m.is_empty() {
            *map = None;
        }
    };
    swap(&mut meta.labels, &old.labels, &want.labels);
    swap(&mut meta.annotations, &old.annotations, &want.annotations);
    meta
}

/// The merge patch that brings a pod's labels and annotations to `with_role`'s, or `None`
/// when it already has them.
pub fn pod_patch(
    meta: &ObjectMeta,
    old: &PodTemplateMetadata,
    want: &PodTemplateMetadata,
) -> Option<Value> {
    let next = with_role(meta, old, want);
    let diff = |now: &Option<BTreeMap<String, String>>, next: &Option<BTreeMap<String, String>>| {
        let (now, next) = (
            now.clone().unwrap_or_default(),
            next.clone().unwrap_or_default(),
        );
        let mut d = serde_json::Map::new();
        for k in now.keys().filter(|k| !next.contains_key(*k)) {
            d.insert(k.clone(), Value::Null);
        }
        for (k, v) in next.iter().filter(|(k, v)| now.get(*k) != Some(*v)) {
            d.insert(k.clone(), Value::String(v.clone()));
        }
        d
    };
    let labels = diff(&meta.labels, &next.labels);
    let annotations = diff(&meta.annotations, &next.annotations);
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    Some(json!({"metadata": {"labels": labels, "annotations": annotations}}))
}

/// `spec.restartAt` (`RolloutPodRestarter.Reconcile`): once the time has come, pods created
/// before it are evicted, as many at a time as keeps `max(replicas, Σ ReplicaSet replicas) −
/// max(maxUnavailable, 1)` pods available (blue-green: one at a time); the stable revision's
/// first, then the new one's, then older ones'. When none is left, `status.restartedAt`
/// records the restart as done. A new release started meanwhile ends the restart (its pods
/// are new anyway), as Argo Rollouts' `resetRolloutStatus` does.
fn restart(ro: &Rollout, obs: &Observed, plan: &mut Plan, now: Timestamp) -> Vec<String> {
    // Whole seconds: creation times have no finer grain, so a pod created in the same second
    // as the restart is a new one (and the restart never chases its own pods).
    let Some(at) = ro
        .spec
        .restart_at
        .as_ref()
        .and_then(|t| Timestamp::from_second(t.0.as_second()).ok())
    else {
        return Vec::new();
    };
    let st = &plan.status;
    if st.restarted_at.as_ref().map(|t| t.0) == Some(at) {
        return Vec::new();
    }
    if now <= at {
        plan.requeue_at(at, now);
        return Vec::new();
    }
    let prev_hash = ro.status.as_ref().and_then(|s| s.current_pod_hash.clone());
    if prev_hash.is_some() && prev_hash != st.current_pod_hash {
        plan.status.restarted_at = Some(Time(at));
        return Vec::new();
    }
    let replicas = ro.spec.replicas();
    let total = obs
        .replica_sets
        .iter()
        .map(|r| r.replicas.max(0))
        .fold(0i32, i32::saturating_add);
    let max_unavailable = match &ro.spec.strategy.canary {
        Some(c) => resolve("maxUnavailable", &c.max_unavailable(), replicas, false).unwrap_or(0),
        None => 0,
    };
    let min_ready = i64::from(ro.spec.min_ready_seconds());
    let pods = ordered_pods(obs, st.stable_rs.as_deref(), st.current_pod_hash.as_deref());
    let available = pods
        .iter()
        .filter(|p| !p.deleting && p.ready_since.is_some_and(|t| after(t, min_ready) <= now))
        .count();
    let available = i32::try_from(available).unwrap_or(i32::MAX);
    let mut can_restart = available - (replicas.max(total) - max_unavailable.max(1));
    let old: Vec<&ObservedPod> = pods
        .into_iter()
        .filter(|p| p.created.is_some_and(|c| c < at))
        .collect();
    let mut evict = Vec::new();
    for p in &old {
        if can_restart <= 0 {
            break;
        }
        if p.deleting {
            continue;
        }
        evict.push(p.name.clone());
        can_restart -= 1;
    }
    if old.is_empty() {
        plan.status.restarted_at = Some(Time(at));
    } else {
        plan.requeue_at(after(now, RESTART_CHECK_SECS), now);
    }
    evict
}

/// The pods of the Rollout's revisions: the stable's first, then the new revision's, then the
/// older ones' by the age of their ReplicaSet; oldest pod first within each.
fn ordered_pods<'a>(
    obs: &'a Observed,
    stable: Option<&str>,
    desired: Option<&str>,
) -> Vec<&'a ObservedPod> {
    let rank = |hash: &str| -> (u8, Option<Timestamp>) {
        let created = obs
            .replica_sets
            .iter()
            .find(|r| r.hash == hash)
            .and_then(|r| r.created);
        match (Some(hash) == stable, Some(hash) == desired) {
            (true, _) => (0, None),
            (_, true) => (1, None),
            _ => (2, created),
        }
    };
    let mut pods: Vec<&ObservedPod> = obs
        .pods
        .iter()
        .filter(|p| obs.replica_sets.iter().any(|r| r.hash == p.hash))
        .collect();
    pods.sort_by_key(|p| (rank(&p.hash), p.created, p.name.clone()));
    pods
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
