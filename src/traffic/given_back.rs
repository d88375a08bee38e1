//! Objects a Rollout no longer names, given back as when it is deleted.
//!
//! A Rollout whose spec stops naming a Service (blue-green switched to canary, a Service
//! renamed) or a router object (a VirtualService, DestinationRule or HTTPRoute dropped from
//! `trafficRouting`) would otherwise leave Sluice's edits behind: a selector pinned to one
//! revision, subset labels, canary weights, managed routes. Argo Rollouts removes the
//! pod-template-hash key of a Service no Rollout names (`service/service.go` `syncService`) and
//! the hash label of a DestinationRule's subsets (`rollout/trafficrouting/istio/controller.go`
//! `syncDestinationRule`); Sluice does that, and also gives a VirtualService or HTTPRoute back
//! (all traffic on stable, no managed routes), which Argo Rollouts leaves as last written.
//!
//! What Sluice wrote is found without guessing:
//! - a Service: its selector's `rollouts-pod-template-hash` is the hash of one of the Rollout's
//!   ReplicaSets;
//! - a router object: Sluice marks each one it edits with the annotation
//!   [`ANNOTATION_ROUTED_BY`], naming the Rollout and the routing it was edited for, so it can
//!   be given back after the Rollout's spec no longer says what that was.
//!
//! Nothing is given back while any Rollout names the object.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::router::{TargetKind, TrafficRouter, router_for};
use crate::api::constants::LABEL_POD_TEMPLATE_HASH;
use crate::api::rollout::{CanaryStrategy, Rollout, TrafficRouting};

/// The annotation on each router object Sluice edits: the Rollout and its routing, as JSON
/// ([`RoutedBy`]). Removed when the object is given back.
pub const ANNOTATION_ROUTED_BY: &str = "sluice.dev/routed-by";

/// Which Rollout routes an object, and how: enough to give the object back once the Rollout
/// no longer names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoutedBy {
    pub namespace: String,
    pub rollout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    pub traffic_routing: TrafficRouting,
}

impl RoutedBy {
    /// The mark of a routed canary Rollout.
    pub fn of(ro: &Rollout) -> Option<Self> {
        let canary = ro.spec.strategy.canary.as_ref()?;
        Some(RoutedBy {
            namespace: ro.namespace().unwrap_or_default(),
            rollout: ro.name_any(),
            stable_service: canary.stable_service.clone(),
            canary_service: canary.canary_service.clone(),
            traffic_routing: canary.traffic_routing.clone()?,
        })
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The mark on an object, if it has one that reads.
    pub fn read(obj: &Value) -> Option<Self> {
        let raw = obj
            .pointer("/metadata/annotations")?
            .get(ANNOTATION_ROUTED_BY)?
            .as_str()?;
        serde_json::from_str(raw).ok()
    }

    /// Whether the mark names Rollout `name` in `namespace`.
    pub fn names(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.rollout == name
    }

    fn router(&self) -> Option<Box<dyn TrafficRouter>> {
        router_for(&CanaryStrategy {
            stable_service: self.stable_service.clone(),
            canary_service: self.canary_service.clone(),
            traffic_routing: Some(self.traffic_routing.clone()),
            ..Default::default()
        })
    }
}

/// Puts `mark` on `obj`; returns whether it changed.
pub fn set_mark(obj: &mut Value, mark: &str) -> bool {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    match annotations {
        Some(a) if a.get(ANNOTATION_ROUTED_BY).and_then(Value::as_str) != Some(mark) => {
            a.insert(ANNOTATION_ROUTED_BY.into(), json!(mark));
            true
        }
        _ => false,
    }
}

/// Takes the mark off `obj`; returns whether it had one.
pub fn clear_mark(obj: &mut Value) -> bool {
    obj.pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .is_some_and(|a| a.remove(ANNOTATION_ROUTED_BY).is_some())
}

/// An object of the router caches: its kind, namespace and name.
pub type ObjectKey = (TargetKind, String, String);

/// Every object the Rollouts `routing` (each with its namespace) name now.
pub fn routed_now<'a>(routing: impl IntoIterator<Item = &'a Rollout>) -> BTreeSet<ObjectKey> {
    let mut out = BTreeSet::new();
    for ro in routing {
        let Some(router) = ro.spec.strategy.canary.as_ref().and_then(router_for) else {
            continue;
        };
        let own = ro.namespace().unwrap_or_default();
        for t in router.targets() {
            let ns = t.namespace.unwrap_or_else(|| own.clone());
            out.insert((t.kind, ns, t.name));
        }
    }
    out
}

/// Whether object `key` (marked `mark`) is Rollout `ns`/`name`'s to give back: its mark names
/// the Rollout, and no Rollout routes the object now.
pub fn is_left_behind(
    mark: &RoutedBy,
    key: &ObjectKey,
    ns: &str,
    name: &str,
    routed: &BTreeSet<ObjectKey>,
) -> bool {
    mark.names(ns, name) && !routed.contains(key)
}

/// Gives `obj` (object `key`) back as the Rollout its mark names would on deletion: all traffic
/// on stable, no managed routes, no subset labels, no mark. Returns whether it changed.
pub fn give_back(obj: &mut Value, key: &ObjectKey) -> bool {
    let Some(mark) = RoutedBy::read(obj) else {
        return false;
    };
    let (kind, ns, name) = key;
    let mut changed = false;
    if let Some(router) = mark.router() {
        for t in router.targets() {
            let t_ns = t.namespace.as_deref().unwrap_or(&mark.namespace);
            if t.kind == *kind && &t.name == name && t_ns == ns {
                changed |= router.restore(&t, obj);
            }
        }
    }
    changed | clear_mark(obj)
}

/// The Services of namespace `services` whose selector Sluice set to one of `hashes` (the
/// Rollout's revisions) and that no Rollout names (`named`): Argo Rollouts' `syncService`
/// takes the key out of these.
pub fn services_left_behind(
    services: &[Arc<Service>],
    hashes: &BTreeSet<String>,
    named: &BTreeSet<String>,
) -> Vec<String> {
    services
        .iter()
        .filter(|s| !named.contains(&s.name_any()))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(LABEL_POD_TEMPLATE_HASH))
                .is_some_and(|h| hashes.contains(h))
        })
        .map(|s| s.name_any())
        .collect()
}

#[cfg(test)]
#[path = "given_back_tests.rs"]
mod tests;
