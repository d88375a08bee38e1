//! The `TrafficRouter` trait and its three implementations (Istio host level, Istio subset
//! level, Gateway API). A router names the objects it edits and edits them as JSON, purely;
//! `traffic::kube` reads and writes them.

use serde_json::Value;

use super::{HeaderMatch, RouteError, RouteState, Weights, gateway, istio};
use crate::api::rollout::{CanaryStrategy, IstioDestinationRule, IstioVirtualService};

/// Kinds of objects routers edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// A route or rule Sluice manages: one named in the Rollout's `managedRoutes`. Sluice adds
/// and removes these; the weights of the others are its only edit.
pub fn is_managed(route: &Value, managed: &[String]) -> bool {
    route
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| managed.iter().any(|m| m == n))
}

/// The header routes that should exist, in `managed` order (the first wins).
pub fn in_managed_order<'a>(
    managed: &'a [String],
    routes: &'a [(String, Vec<HeaderMatch>)],
) -> impl Iterator<Item = (&'a str, &'a [HeaderMatch])> {
    managed.iter().filter_map(|m| {
        routes
            .iter()
            .find(|(n, _)| n == m)
            .map(|(n, matches)| (n.as_str(), matches.as_slice()))
    })
}

/// Takes every managed route out of `list` and puts `wanted` first, in order.
pub fn put_managed_first(
    list: &mut Vec<Value>,
    managed: &[String],
    wanted: impl IntoIterator<Item = Value>,
) {
    list.retain(|r| !is_managed(r, managed));
    for (i, r) in wanted.into_iter().enumerate() {
        list.insert(i, r);
    }
}

/// The answer of a header-route edit on an object without the list of routes it edits:
/// nothing to remove when no header route is wanted, else the object cannot carry them.
pub fn without_route_list(
    routes: &[(String, Vec<HeaderMatch>)],
    missing: impl FnOnce() -> String,
) -> Result<bool, RouteError> {
    if routes.is_empty() {
        Ok(false)
    } else {
        Err(RouteError::Invalid(missing()))
    }
}

/// `name` or `name.namespace` (as Argo Rollouts accepts for VirtualServices).
fn split_name(name: &str) -> (String, Option<String>) {
    match name.split_once('.') {
        Some((n, ns)) if !ns.is_empty() => (n.to_string(), Some(ns.to_string())),
        _ => (name.to_string(), None),
    }
}

/// Objects of one kind a Rollout names in a list that may start with a singular field
/// (`virtualService` before `virtualServices`, `httpRoute` before `httpRoutes`).
struct NamedList {
    kind: TargetKind,
    /// Where the two fields are.
    parent: &'static str,
    singular: &'static str,
    plural: &'static str,
    has_singular: bool,
}

impl NamedList {
    /// The field naming the `i`-th object.
    fn field(&self, i: usize) -> String {
        let NamedList {
            parent,
            singular,
            plural,
            ..
        } = self;
        match (self.has_singular, i) {
            (true, 0) => format!("{parent}.{singular}"),
            (true, i) => format!("{parent}.{plural}[{}]", i - 1),
            (false, i) => format!("{parent}.{plural}[{i}]"),
        }
    }

    /// The `i`-th object.
    fn target(&self, i: usize, name: String, namespace: Option<String>) -> Target {
        Target {
            kind: self.kind,
            namespace,
            name,
            field: self.field(i),
            index: i,
        }
    }
}

/// Objects a Rollout names with a singular field and a list (`virtualService` and
/// `virtualServices`): the singular one first, when given.
pub struct Listed<T> {
    pub items: Vec<T>,
    pub has_singular: bool,
}

impl<T> Listed<T> {
    fn of(singular: Option<T>, list: impl IntoIterator<Item = T>) -> Self {
        let has_singular = singular.is_some();
        Listed {
            items: singular.into_iter().chain(list).collect(),
            has_singular,
        }
    }
}

fn virtual_services(listed: &Listed<IstioVirtualService>) -> Vec<Target> {
    let named = NamedList {
        kind: TargetKind::VirtualService,
        parent: "spec.strategy.canary.trafficRouting.istio",
        singular: "virtualService",
        plural: "virtualServices",
        has_singular: listed.has_singular,
    };
    listed
        .items
        .iter()
        .enumerate()
        .map(|(i, vs)| {
            let (name, namespace) = split_name(&vs.name);
            named.target(i, name, namespace)
        })
        .collect()
}

/// What every router is told of a canary: its two Services and the routes Sluice manages.
pub struct RoutedCanary {
    pub stable_service: String,
    pub canary_service: String,
    /// `managedRoutes`, highest precedence first.
    pub managed: Vec<String>,
}

/// Istio between two Services (host level) or two subsets of one (subset level).
pub struct Istio {
    pub virtual_services: Listed<IstioVirtualService>,
    pub destination_rule: Option<IstioDestinationRule>,
    pub canary: RoutedCanary,
}

impl Istio {
    fn split(&self) -> istio::Split {
        match &self.destination_rule {
            Some(dr) => istio::Split::Subsets {
                stable: dr.stable_subset_name.clone(),
                canary: dr.canary_subset_name.clone(),
            },
            None => istio::Split::Hosts {
                stable: self.canary.stable_service.clone(),
                canary: self.canary.canary_service.clone(),
            },
        }
    }

    fn vs_for(&self, target: &Target) -> Option<&IstioVirtualService> {
        self.virtual_services.items.get(target.index)
    }
}

impl TrafficRouter for Istio {
    fn targets(&self) -> Vec<Target> {
        let mut t = virtual_services(&self.virtual_services);
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
                let managed = &self.canary.managed;
                let a = istio::set_weights(obj, vs, &split, state.weights, managed)?;
                let b = if vs.tls_routes.is_some() || vs.tcp_routes.is_some() {
                    false
                } else {
                    let (headers, mirrors) = (&state.header_routes, &state.mirror_routes);
                    istio::set_managed_routes(obj, vs, &split, managed, headers, mirrors)?
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
                let managed = &self.canary.managed;
                let a = istio::set_header_routes(obj, vs, &split, managed, &[]).unwrap_or(false);
                let b = istio::set_weights(obj, vs, &split, Weights::default(), managed)
                    .unwrap_or(false);
                a || b
            }
        }
    }
}

/// Gateway API HTTPRoutes between the stable and canary Services.
pub struct GatewayApi {
    pub routes: Listed<String>,
    pub namespace: Option<String>,
    pub canary: RoutedCanary,
}

impl GatewayApi {
    fn set_weights(&self, route: &str, obj: &mut Value, w: Weights) -> Result<bool, RouteError> {
        let c = &self.canary;
        gateway::set_weights(
            obj,
            route,
            &c.stable_service,
            &c.canary_service,
            w,
            &c.managed,
        )
    }

    fn set_header_routes(
        &self,
        route: &str,
        obj: &mut Value,
        routes: &[(String, Vec<HeaderMatch>)],
    ) -> Result<bool, RouteError> {
        let c = &self.canary;
        gateway::set_header_routes(obj, route, &c.canary_service, &c.managed, routes)
    }
}

impl TrafficRouter for GatewayApi {
    fn targets(&self) -> Vec<Target> {
        let named = NamedList {
            kind: TargetKind::HttpRoute,
            parent: "spec.strategy.canary.trafficRouting.gatewayAPI",
            singular: "httpRoute",
            plural: "httpRoutes",
            has_singular: self.routes.has_singular,
        };
        self.routes
            .items
            .iter()
            .enumerate()
            .map(|(i, r)| named.target(i, r.clone(), self.namespace.clone()))
            .collect()
    }

    fn apply(
        &self,
        target: &Target,
        obj: &mut Value,
        state: &RouteState,
    ) -> Result<bool, RouteError> {
        let a = self.set_weights(&target.name, obj, state.weights)?;
        let b = self.set_header_routes(&target.name, obj, &state.header_routes)?;
        Ok(a || b)
    }

    fn restore(&self, target: &Target, obj: &mut Value) -> bool {
        let a = self
            .set_header_routes(&target.name, obj, &[])
            .unwrap_or(false);
        let b = self
            .set_weights(&target.name, obj, Weights::default())
            .unwrap_or(false);
        a || b
    }
}

/// The router a canary declares, if any.
pub fn router_for(canary: &CanaryStrategy) -> Option<Box<dyn TrafficRouter>> {
    let tr = canary.traffic_routing.as_ref()?;
    let routed = RoutedCanary {
        stable_service: canary.stable_service.clone().unwrap_or_default(),
        canary_service: canary.canary_service.clone().unwrap_or_default(),
        managed: tr
            .managed_routes
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect(),
    };
    if let Some(i) = &tr.istio {
        return Some(Box::new(Istio {
            virtual_services: Listed::of(
                i.virtual_service.clone(),
                i.virtual_services.iter().flatten().cloned(),
            ),
            destination_rule: i.destination_rule.clone(),
            canary: routed,
        }));
    }
    if let Some(g) = &tr.gateway_api {
        let listed = g.http_routes.iter().flatten().map(|r| r.name.clone());
        return Some(Box::new(GatewayApi {
            routes: Listed::of(g.http_route.clone(), listed),
            namespace: g.namespace.clone(),
            canary: routed,
        }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::MatchValue;
    use serde_json::json;

    #[test]
    fn a_singular_field_comes_before_the_list() {
        let named = |has_singular| NamedList {
            kind: TargetKind::HttpRoute,
            parent: "spec.x",
            singular: "route",
            plural: "routes",
            has_singular,
        };
        let fields = |has_singular| {
            (0..3)
                .map(|i| named(has_singular).field(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(true),
            ["spec.x.route", "spec.x.routes[0]", "spec.x.routes[1]"]
        );
        assert_eq!(
            fields(false),
            ["spec.x.routes[0]", "spec.x.routes[1]", "spec.x.routes[2]"]
        );
    }

    #[test]
    fn the_singular_object_is_listed_first() {
        let both = Listed::of(Some("a"), ["b", "c"]);
        assert_eq!((both.items, both.has_singular), (vec!["a", "b", "c"], true));
        let list = Listed::of(None, ["b"]);
        assert_eq!((list.items, list.has_singular), (vec!["b"], false));
    }

    #[test]
    fn header_routes_follow_the_managed_order_and_unmanaged_ones_are_left_out() {
        let managed = vec!["beta".to_string(), "mobile".to_string()];
        let exact = |v: &str| {
            vec![HeaderMatch {
                name: "x".into(),
                value: MatchValue::Exact(v.into()),
            }]
        };
        let routes = vec![
            ("mobile".to_string(), exact("m")),
            ("stray".to_string(), exact("s")),
            ("beta".to_string(), exact("b")),
        ];
        let names: Vec<&str> = in_managed_order(&managed, &routes)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["beta", "mobile"]);
        assert!(is_managed(&json!({"name": "beta"}), &managed));
        assert!(!is_managed(&json!({"name": "stray"}), &managed));
        assert!(!is_managed(&json!({}), &managed));
    }
}
