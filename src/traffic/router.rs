//! The `TrafficRouter` trait and its three implementations (Istio host level, Istio subset
//! level, Gateway API). A router names the objects it edits and edits them as JSON, purely;
//! `traffic::kube` reads and writes them.

use serde_json::Value;

use super::{RouteError, RouteState, Weights, gateway, istio};
use crate::api::rollout::{CanaryStrategy, IstioDestinationRule, IstioVirtualService};

/// Kinds of objects routers edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetKind {
    VirtualService,
    DestinationRule,
    HttpRoute,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [
        TargetKind::VirtualService,
        TargetKind::DestinationRule,
        TargetKind::HttpRoute,
    ];

    /// The name of the CustomResourceDefinition that serves the kind.
    pub fn crd(self) -> &'static str {
        match self {
            TargetKind::VirtualService => "virtualservices.networking.istio.io",
            TargetKind::DestinationRule => "destinationrules.networking.istio.io",
            TargetKind::HttpRoute => "httproutes.gateway.networking.k8s.io",
        }
    }

    /// (group, version, kind)
    pub fn gvk(self) -> (&'static str, &'static str, &'static str) {
        match self {
            TargetKind::VirtualService => ("networking.istio.io", "v1", "VirtualService"),
            TargetKind::DestinationRule => ("networking.istio.io", "v1", "DestinationRule"),
            TargetKind::HttpRoute => ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        }
    }
}

/// One object a router edits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub kind: TargetKind,
    /// `None`: the Rollout's namespace.
    pub namespace: Option<String>,
    pub name: String,
    /// The Rollout field that names it, for messages.
    pub field: String,
    /// Its position in the router's list (a name may be listed twice).
    pub index: usize,
}

impl Target {
    pub fn describe(&self) -> String {
        let (_, _, kind) = self.kind.gvk();
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{}", self.name),
            None => format!("{kind} {}", self.name),
        }
    }
}

/// A way of moving traffic between the stable and canary revisions.
pub trait TrafficRouter: Send + Sync {
    /// The objects it edits.
    fn targets(&self) -> Vec<Target>;
    /// Makes `obj` (one of `targets`) say what `state` says; returns whether it changed.
    fn apply(
        &self,
        target: &Target,
        obj: &mut Value,
        state: &RouteState,
    ) -> Result<bool, RouteError>;
    /// Gives `obj` back: all traffic on stable, no managed routes, no Sluice labels.
    fn restore(&self, target: &Target, obj: &mut Value) -> bool;
    /// Checks that `obj` has everything the Rollout names, without changing it.
    fn verify(&self, target: &Target, obj: &Value, state: &RouteState) -> Result<(), RouteError> {
        let mut copy = obj.clone();
        self.apply(target, &mut copy, state).map(|_| ())
    }
}

/// `name` or `name.namespace` (as Argo Rollouts accepts for VirtualServices).
fn split_name(name: &str) -> (String, Option<String>) {
    match name.split_once('.') {
        Some((n, ns)) if !ns.is_empty() => (n.to_string(), Some(ns.to_string())),
        _ => (name.to_string(), None),
    }
}

/// The field naming the `i`-th object of a list that may start with a singular field
/// (`virtualService` before `virtualServices`, `httpRoute` before `httpRoutes`).
fn field_of(prefix: &str, singular: &str, plural: &str, has_singular: bool, i: usize) -> String {
    match (has_singular, i) {
        (true, 0) => format!("{prefix}.{singular}"),
        (true, i) => format!("{prefix}.{plural}[{}]", i - 1),
        (false, i) => format!("{prefix}.{plural}[{i}]"),
    }
}

fn virtual_services(list: &[IstioVirtualService], has_singular: bool) -> Vec<Target> {
    list.iter()
        .enumerate()
        .map(|(i, vs)| {
            let (name, namespace) = split_name(&vs.name);
            Target {
                kind: TargetKind::VirtualService,
                namespace,
                name,
                field: field_of(
                    "spec.strategy.canary.trafficRouting.istio",
                    "virtualService",
                    "virtualServices",
                    has_singular,
                    i,
                ),
                index: i,
            }
        })
        .collect()
}

/// Istio between two Services (host level) or two subsets of one (subset level).
pub struct Istio {
    /// `virtualService` first (when given), then `virtualServices`.
    pub virtual_services: Vec<IstioVirtualService>,
    pub has_singular: bool,
    pub destination_rule: Option<IstioDestinationRule>,
    pub stable_service: String,
    pub canary_service: String,
    pub managed: Vec<String>,
}

impl Istio {
    fn split(&self) -> istio::Split {
        match &self.destination_rule {
            Some(dr) => istio::Split::Subsets {
                stable: dr.stable_subset_name.clone(),
                canary: dr.canary_subset_name.clone(),
            },
            None => istio::Split::Hosts {
                stable: self.stable_service.clone(),
                canary: self.canary_service.clone(),
            },
        }
    }

    fn vs_for(&self, target: &Target) -> Option<&IstioVirtualService> {
        self.virtual_services.get(target.index)
    }
}

impl TrafficRouter for Istio {
    fn targets(&self) -> Vec<Target> {
        let mut t = virtual_services(&self.virtual_services, self.has_singular);
        if let Some(dr) = &self.destination_rule {
            let (name, namespace) = split_name(&dr.name);
            t.push(Target {
                kind: TargetKind::DestinationRule,
                namespace,
                name,
                field: "spec.strategy.canary.trafficRouting.istio.destinationRule".into(),
                index: 0,
            });
        }
        t
    }

    fn apply(
        &self,
        target: &Target,
        obj: &mut Value,
        state: &RouteState,
    ) -> Result<bool, RouteError> {
        match target.kind {
            TargetKind::DestinationRule => {
                let Some(dr) = &self.destination_rule else {
                    return Ok(false);
                };
                istio::set_subsets(
                    obj,
                    &target.name,
                    &dr.stable_subset_name,
                    &dr.canary_subset_name,
                    &state.stable_hash,
                    &state.canary_hash,
                )
            }
            _ => {
                let Some(vs) = self.vs_for(target) else {
                    return Ok(false);
                };
                let split = self.split();
                let a = istio::set_weights(obj, vs, &split, state.weights, &self.managed)?;
                let b = if vs.tls_routes.is_some() || vs.tcp_routes.is_some() {
                    false
                } else {
                    istio::set_header_routes(obj, vs, &split, &self.managed, &state.header_routes)?
                };
                Ok(a || b)
            }
        }
    }

    fn restore(&self, target: &Target, obj: &mut Value) -> bool {
        match target.kind {
            TargetKind::DestinationRule => self.destination_rule.as_ref().is_some_and(|dr| {
                istio::clear_subsets(
                    obj,
                    &[
                        dr.stable_subset_name.as_str(),
                        dr.canary_subset_name.as_str(),
                    ],
                )
            }),
            _ => {
                let Some(vs) = self.vs_for(target) else {
                    return false;
                };
                let split = self.split();
                let a =
                    istio::set_header_routes(obj, vs, &split, &self.managed, &[]).unwrap_or(false);
                let b = istio::set_weights(obj, vs, &split, Weights::default(), &self.managed)
                    .unwrap_or(false);
                a || b
            }
        }
    }
}

/// Gateway API HTTPRoutes between the stable and canary Services.
pub struct GatewayApi {
    /// `httpRoute` first (when given), then `httpRoutes`.
    pub routes: Vec<String>,
    pub has_singular: bool,
    pub namespace: Option<String>,
    pub stable_service: String,
    pub canary_service: String,
    pub managed: Vec<String>,
}

impl TrafficRouter for GatewayApi {
    fn targets(&self) -> Vec<Target> {
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| Target {
                kind: TargetKind::HttpRoute,
                namespace: self.namespace.clone(),
                name: r.clone(),
                field: field_of(
                    "spec.strategy.canary.trafficRouting.gatewayAPI",
                    "httpRoute",
                    "httpRoutes",
                    self.has_singular,
                    i,
                ),
                index: i,
            })
            .collect()
    }

    fn apply(
        &self,
        target: &Target,
        obj: &mut Value,
        state: &RouteState,
    ) -> Result<bool, RouteError> {
        let a = gateway::set_weights(
            obj,
            &target.name,
            &self.stable_service,
            &self.canary_service,
            state.weights,
            &self.managed,
        )?;
        let b = gateway::set_header_routes(
            obj,
            &target.name,
            &self.canary_service,
            &self.managed,
            &state.header_routes,
        )?;
        Ok(a || b)
    }

    fn restore(&self, target: &Target, obj: &mut Value) -> bool {
        let a =
            gateway::set_header_routes(obj, &target.name, &self.canary_service, &self.managed, &[])
                .unwrap_or(false);
        let b = gateway::set_weights(
            obj,
            &target.name,
            &self.stable_service,
            &self.canary_service,
            Weights::default(),
            &self.managed,
        )
        .unwrap_or(false);
        a || b
    }
}

/// The router a canary declares, if any.
pub fn router_for(canary: &CanaryStrategy) -> Option<Box<dyn TrafficRouter>> {
    let tr = canary.traffic_routing.as_ref()?;
    let managed: Vec<String> = tr
        .managed_routes
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    let stable_service = canary.stable_service.clone().unwrap_or_default();
    let canary_service = canary.canary_service.clone().unwrap_or_default();
    if let Some(i) = &tr.istio {
        let mut vss: Vec<IstioVirtualService> = i.virtual_services.clone().unwrap_or_default();
        if let Some(vs) = &i.virtual_service {
            vss.insert(0, vs.clone());
        }
        return Some(Box::new(Istio {
            virtual_services: vss,
            has_singular: i.virtual_service.is_some(),
            destination_rule: i.destination_rule.clone(),
            stable_service,
            canary_service,
            managed,
        }));
    }
    if let Some(g) = &tr.gateway_api {
        let mut routes: Vec<String> = g
            .http_routes
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        if let Some(r) = &g.http_route {
            routes.insert(0, r.clone());
        }
        return Some(Box::new(GatewayApi {
            routes,
            has_singular: g.http_route.is_some(),
            namespace: g.namespace.clone(),
            stable_service,
            canary_service,
            managed,
        }));
    }
    None
}
