//! What a Rollout names among the files given: analysis templates, Services, the workload's
//! Deployment and the router's VirtualServices, DestinationRules and HTTPRoutes. An object
//! that is not in the files is a warning (it may be in the cluster already); one that is
//! there is checked with the controller's own checks (`rollout::validate`, the routers'
//! `verify`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::analysis;
use super::docs::{Doc, Note, error, warning};
use crate::api::rollout::{AnalysisTemplateRef, Rollout};
use crate::rollout::observe::Observed;
use crate::rollout::observe::policy::route_state_to_verify;
use crate::rollout::validate::validate;
use crate::traffic::RouteError;
use crate::traffic::router::router_for;

/// Every document of the files, to look objects up by kind and name.
pub struct Index<'a> {
    docs: &'a [Doc],
}

impl<'a> Index<'a> {
    pub fn new(docs: &'a [Doc]) -> Self {
        Index { docs }
    }

    /// The object of that group, kind and name; a namespace given on both sides must match.
    pub fn find(&self, group: &str, kind: &str, name: &str, ns: Option<&str>) -> Option<&'a Doc> {
        self.docs.iter().find(|d| {
            d.group() == group
                && d.kind == kind
                && d.name == name
                && (ns.is_none() || d.namespace.is_none() || d.namespace.as_deref() == ns)
        })
    }

    /// The template a reference names (a ClusterAnalysisTemplate with `clusterScope`).
    pub fn template(&self, r: &AnalysisTemplateRef, ns: Option<&str>) -> Option<&'a Doc> {
        let group = crate::api::constants::GROUP;
        if r.cluster_scope == Some(true) {
            self.find(group, "ClusterAnalysisTemplate", &r.template_name, None)
        } else {
            self.find(group, "AnalysisTemplate", &r.template_name, ns)
        }
    }
}

/// Every reference check of one Rollout.
pub fn rollout(d: &Doc, ro: &Rollout, index: &Index) -> Vec<Note> {
    let ns = d.namespace.as_deref();
    let mut notes = analysis::uses(ro, &d.json, ns, index);
    let template = match (&ro.spec.template, &ro.spec.workload_ref) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(w)) => match index.find("apps", "Deployment", &w.name, ns) {
            Some(dep) => {
                serde_json::from_value::<PodTemplateSpec>(dep.json["spec"]["template"].clone()).ok()
            }
            None => {
                notes.push(warning(
                    "spec.workloadRef.name",
                    format!("Deployment {:?} is not in the files given; if it is not in the cluster either, Sluice marks the Rollout InvalidSpec", w.name),
                ));
                None
            }
        },
        (None, None) => None,
    };
    let services = named_services(ro);
    for (field, name) in &services {
        notes.extend(service(index, ns, field, name, template.as_ref()));
    }
    if let Some(t) = template {
        let obs = Observed {
            template: Some(t),
            services: services.iter().map(|(_, n)| (n.clone(), true)).collect(),
            ..Observed::default()
        };
        if let Err(e) = validate(ro, &obs) {
            notes.push(error(e.field, e.message));
        }
    }
    notes.extend(routers(ro, ns, index));
    notes
}

/// The Services a Rollout names, by the field naming them.
fn named_services(ro: &Rollout) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(c) = &ro.spec.strategy.canary {
        for (f, n) in [
            ("stableService", &c.stable_service),
            ("canaryService", &c.canary_service),
        ] {
            if let Some(n) = n {
                out.push((format!("spec.strategy.canary.{f}"), n.clone()));
            }
        }
    }
    if let Some(b) = &ro.spec.strategy.blue_green {
        out.push((
            "spec.strategy.blueGreen.activeService".into(),
            b.active_service.clone(),
        ));
        if let Some(p) = &b.preview_service {
            out.push(("spec.strategy.blueGreen.previewService".into(), p.clone()));
        }
    }
    out
}

/// A Service is in the files, and its selector selects the Rollout's pods (Sluice only adds
/// the revision's hash to it).
fn service(
    index: &Index,
    ns: Option<&str>,
    field: &str,
    name: &str,
    template: Option<&PodTemplateSpec>,
) -> Vec<Note> {
    let Some(svc) = index.find("", "Service", name, ns) else {
        return vec![warning(
            field,
            format!(
                "Service {name:?} is not in the files given; if it is not in the cluster either, Sluice marks the Rollout InvalidSpec"
            ),
        )];
    };
    let Some(labels) = template.map(|t| {
        t.metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }) else {
        return Vec::new();
    };
    let selector: BTreeMap<String, Value> = svc.json["spec"]["selector"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    let missing: Vec<String> = selector
        .iter()
        .filter(|(k, v)| {
            k.as_str() != crate::api::constants::LABEL_POD_TEMPLATE_HASH
                && labels.get(*k).map(String::as_str) != v.as_str()
        })
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if selector.is_empty() {
        return vec![error(
            field,
            format!(
                "Service {name:?} has no selector, so Sluice cannot point it at a revision's pods"
            ),
        )];
    }
    if missing.is_empty() {
        return Vec::new();
    }
    vec![error(
        field,
        format!(
            "Service {name:?} selects {}, which the pod template's labels do not have: it would send traffic to none of this Rollout's pods",
            missing.join(", ")
        ),
    )]
}

/// The router's objects are in the files, and have what the Rollout names (the routes, the
/// destinations to both Services, the subsets): the controller's own `verify`.
fn routers(ro: &Rollout, ns: Option<&str>, index: &Index) -> Vec<Note> {
    let Some(canary) = &ro.spec.strategy.canary else {
        return Vec::new();
    };
    let Some(router) = router_for(canary) else {
        return Vec::new();
    };
    let state = route_state_to_verify(canary);
    let mut notes = Vec::new();
    for t in router.targets() {
        let (group, _, kind) = t.kind.gvk();
        let at = t.namespace.as_deref().or(ns);
        match index.find(group, kind, &t.name, at) {
            None => notes.push(warning(
                t.field.clone(),
                format!("{} is not in the files given; if it is not in the cluster either, Sluice marks the Rollout InvalidSpec", t.describe()),
            )),
            Some(obj) => {
                if let Err(RouteError::Invalid(why)) = router.verify(&t, &obj.json, &state) {
                    notes.push(error(t.field.clone(), why));
                }
            }
        }
    }
    notes
}
