//! Istio, pure: the edits Sluice makes to a VirtualService (route weights, managed header
//! routes) and a DestinationRule (subset labels), on the objects as JSON. Everything Sluice
//! does not own is left exactly as it was.

use serde_json::{Map, Value, json};

use super::router::{is_managed, put_managed_first};
use super::{HeaderMatch, MirrorRoute, RouteError, Weights};
use crate::api::constants::LABEL_POD_TEMPLATE_HASH;
use crate::api::rollout::{IstioTcpRoute, IstioTlsRoute, IstioVirtualService};

/// Where the two sides of the split are: two Services (host level) or two subsets of one
/// host (subset level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Split {
    Hosts { stable: String, canary: String },
    Subsets { stable: String, canary: String },
}

impl Split {
    fn side(&self, destination: &Value) -> Option<Side> {
        let host = destination.get("host").and_then(Value::as_str);
        let subset = destination.get("subset").and_then(Value::as_str);
        match self {
            Split::Hosts { stable, canary } => {
                let h = host?;
                if same_host(h, stable) {
                    Some(Side::Stable)
                } else if same_host(h, canary) {
                    Some(Side::Canary)
                } else {
                    None
                }
            }
            Split::Subsets { stable, canary } => match subset? {
                s if s == stable => Some(Side::Stable),
                s if s == canary => Some(Side::Canary),
                _ => None,
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Split::Hosts { stable, canary } => {
                format!("destinations for hosts {stable:?} and {canary:?}")
            }
            Split::Subsets { stable, canary } => {
                format!("destinations for subsets {stable:?} and {canary:?}")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Stable,
    Canary,
}

/// `web-stable` names the same Service as `web-stable.shop` or
/// `web-stable.shop.svc.cluster.local`.
fn same_host(host: &str, service: &str) -> bool {
    host == service
        || host
            .strip_prefix(service)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Sets the weights of one route's destinations; the route must have both sides.
fn set_route(route: &mut Value, split: &Split, w: Weights, what: &str) -> Result<bool, RouteError> {
    let dests = route
        .get_mut("route")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| RouteError::Invalid(format!("{what} has no route list")))?;
    let mut seen = (false, false);
    let mut changed = false;
    for d in dests.iter_mut() {
        let Some(side) = d.get("destination").and_then(|x| split.side(x)) else {
            continue;
        };
        let want = match side {
            Side::Stable => {
                seen.0 = true;
                w.stable
            }
            Side::Canary => {
                seen.1 = true;
                w.canary
            }
        };
        if d.get("weight").and_then(Value::as_i64) != Some(i64::from(want)) {
            d["weight"] = json!(want);
            changed = true;
        }
    }
    if seen != (true, true) {
        return Err(RouteError::Invalid(format!(
            "{what} needs {}",
            split.describe()
        )));
    }
    Ok(changed)
}

fn route_name(r: &Value) -> Option<&str> {
    r.get("name").and_then(Value::as_str)
}

/// Applies the weights to the routes `vs` names in a VirtualService's `spec`. Returns whether
/// anything changed.
///
/// The `http`, `tls` and `tcp` sections are split independently, as Argo Rollouts does: a
/// Rollout that names routes (`routes`, `tlsRoutes`, `tcpRoutes`) gets exactly those; one that
/// names none gets the only route of each section the VirtualService has (for `http`, the only
/// one Sluice does not manage), so a VirtualService with only `tls` or only `tcp` routes works
/// unchanged.
pub fn set_weights(
    obj: &mut Value,
    vs: &IstioVirtualService,
    split: &Split,
    w: Weights,
    managed: &[String],
) -> Result<bool, RouteError> {
    let edit = WeightEdit {
        vs: vs.name.as_str(),
        split,
        weights: w,
    };
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| edit.invalid("has no spec"))?;
    let named = |l: Option<usize>| l.is_some_and(|n| n > 0);
    let names_some = named(vs.routes.as_ref().map(Vec::len))
        || named(vs.tls_routes.as_ref().map(Vec::len))
        || named(vs.tcp_routes.as_ref().map(Vec::len));
    let mut changed = false;
    if names_some {
        if named(vs.routes.as_ref().map(Vec::len)) {
            changed |= edit.http(spec, vs.routes.as_deref(), managed)?;
        }
        for t in vs.tls_routes.iter().flatten() {
            let wanted = format!("port {:?} and sniHosts {:?}", t.port, t.sni_hosts);
            changed |= edit.matching(spec, "tls", |r| tls_matches(r, t), &wanted)?;
        }
        for t in vs.tcp_routes.iter().flatten() {
            let wanted = format!("port {:?}", t.port);
            changed |= edit.matching(spec, "tcp", |r| tcp_matches(r, t), &wanted)?;
        }
        return Ok(changed);
    }
    let present = |p: &str| {
        spec.get(p)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let sections: Vec<&str> = ["http", "tls", "tcp"]
        .into_iter()
        .filter(|p| present(p))
        .collect();
    if sections.is_empty() {
        return Err(edit.invalid("has no http, tls or tcp routes"));
    }
    for protocol in sections {
        changed |= match protocol {
            "http" => edit.http(spec, None, managed)?,
            other => edit.only(spec, other)?,
        };
    }
    Ok(changed)
}

/// The weights being set in one VirtualService.
struct WeightEdit<'a> {
    vs: &'a str,
    split: &'a Split,
    weights: Weights,
}

impl WeightEdit<'_> {
    /// "VirtualService \"web\" `what`".
    fn invalid(&self, what: &str) -> RouteError {
        RouteError::Invalid(format!("VirtualService {:?} {what}", self.vs))
    }

    /// The VirtualService's routes of one protocol (`http`, `tls`, `tcp`); it must have some.
    fn routes<'s>(
        &self,
        spec: &'s mut Map<String, Value>,
        protocol: &str,
    ) -> Result<&'s mut Vec<Value>, RouteError> {
        spec.get_mut(protocol)
            .and_then(Value::as_array_mut)
            .ok_or_else(|| self.invalid(&format!("has no {protocol} routes")))
    }

    /// Sets the weights of one route, `which` route of the VirtualService.
    fn set(&self, route: &mut Value, which: &str) -> Result<bool, RouteError> {
        let what = format!("{which} of VirtualService {:?}", self.vs);
        set_route(route, self.split, self.weights, &what)
    }

    /// The http routes `names` names, or else the only one Sluice does not manage.
    fn http(
        &self,
        spec: &mut Map<String, Value>,
        names: Option<&[String]>,
        managed: &[String],
    ) -> Result<bool, RouteError> {
        let http = self.routes(spec, "http")?;
        let mut changed = false;
        match names.filter(|n| !n.is_empty()) {
            Some(names) => {
                for want in names {
                    let r = http
                        .iter_mut()
                        .find(|r| route_name(r) == Some(want.as_str()))
                        .ok_or_else(|| {
                            self.invalid(&format!("has no http route named {want:?}"))
                        })?;
                    changed |= self.set(r, &format!("http route {want:?}"))?;
                }
            }
            None => {
                let unmanaged: Vec<&mut Value> = http
                    .iter_mut()
                    .filter(|r| !is_managed(r, managed))
                    .collect();
                if unmanaged.len() != 1 {
                    return Err(self.invalid(&format!(
                        "has {} http routes: name the ones to split in routes",
                        unmanaged.len()
                    )));
                }
                for r in unmanaged {
                    changed |= self.set(r, "the http route")?;
                }
            }
        }
        Ok(changed)
    }

    /// The first `protocol` route that `matches`, which must exist (`wanted` says what it
    /// matches).
    fn matching(
        &self,
        spec: &mut Map<String, Value>,
        protocol: &str,
        matches: impl Fn(&Value) -> bool,
        wanted: &str,
    ) -> Result<bool, RouteError> {
        let r = self
            .routes(spec, protocol)?
            .iter_mut()
            .find(|r| matches(r))
            .ok_or_else(|| self.invalid(&format!("has no {protocol} route matching {wanted}")))?;
        self.set(r, &format!("a {protocol} route"))
    }

    /// The only `protocol` (`tls`, `tcp`) route, when the Rollout names none of them.
    fn only(&self, spec: &mut Map<String, Value>, protocol: &str) -> Result<bool, RouteError> {
        let routes = self.routes(spec, protocol)?;
        match routes.as_mut_slice() {
            [r] => self.set(r, &format!("the {protocol} route")),
            many => Err(self.invalid(&format!(
                "has {} {protocol} routes: name the ones to split in {protocol}Routes",
                many.len()
            ))),
        }
    }
}

fn matches_of(r: &Value) -> Vec<&Map<String, Value>> {
    r.get("match")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn tls_matches(r: &Value, t: &IstioTlsRoute) -> bool {
    matches_of(r).iter().any(|m| {
        let port_ok = t
            .port
            .is_none_or(|p| m.get("port").and_then(Value::as_i64) == Some(p));
        let sni: Vec<&str> = m
            .get("sniHosts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let sni_ok = t
            .sni_hosts
            .iter()
            .flatten()
            .all(|h| sni.contains(&h.as_str()));
        port_ok && sni_ok
    })
}

fn tcp_matches(r: &Value, t: &IstioTcpRoute) -> bool {
    match t.port {
        None => true,
        Some(p) => matches_of(r)
            .iter()
            .any(|m| m.get("port").and_then(Value::as_i64) == Some(p)),
    }
}

/// The route being split (the first named one, or the only unmanaged one, with a canary
/// destination): what a header route takes from it.
struct SplitRoute {
    canary: Value,
    /// Its destinations, with their weights as they are now.
    route: Value,
    /// Its match conditions (a path, a port); never empty: no conditions match everything,
    /// as one empty condition does.
    conditions: Vec<Value>,
}

impl SplitRoute {
    fn find(
        obj: &Value,
        vs: &IstioVirtualService,
        split: &Split,
        managed: &[String],
    ) -> Option<Self> {
        let http = obj.pointer("/spec/http")?.as_array()?;
        let named = vs.routes.as_ref().filter(|r| !r.is_empty());
        http.iter()
            .filter(|r| !is_managed(r, managed))
            .filter(|r| match named {
                Some(names) => route_name(r).is_some_and(|n| names.iter().any(|x| x == n)),
                None => true,
            })
            .find_map(|r| {
                let canary = r
                    .get("route")?
                    .as_array()?
                    .iter()
                    .filter_map(|d| d.get("destination"))
                    .find(|d| split.side(d) == Some(Side::Canary))?
                    .clone();
                let conditions = r
                    .get("match")
                    .and_then(Value::as_array)
                    .filter(|m| !m.is_empty())
                    .cloned()
                    .unwrap_or_else(|| vec![json!({})]);
                let route = r.get("route")?.clone();
                Some(SplitRoute {
                    canary,
                    route,
                    conditions,
                })
            })
    }

    /// The managed route `name`: the split route's conditions with `headers` added, all to
    /// the canary.
    fn header_route(&self, name: &str, headers: &[HeaderMatch]) -> Value {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|h| {
                let (kind, v) = h.value.kind_and_value();
                (h.name.clone(), json!({ kind: v }))
            })
            .collect();
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .cloned()
            .map(|mut one| {
                if let Some(o) = one.as_object_mut() {
                    let mut all = o
                        .get("headers")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    all.extend(headers.clone());
                    o.insert("headers".into(), Value::Object(all));
                }
                one
            })
            .collect();
        json!({
            "name": name,
            "match": conditions,
            "route": [{"destination": self.canary, "weight": 100}]
        })
    }

    /// The managed mirror route `m` (Argo Rollouts' `createMirrorRoute`): requests matching
    /// its matches are served by the split route's destinations at their current weights, and
    /// `percentage` percent of them are mirrored to the canary.
    fn mirror_route(&self, m: &MirrorRoute) -> Value {
        json!({
            "name": m.name,
            "match": m.matches,
            "route": self.route,
            "mirror": self.canary,
            "mirrorPercentage": {"value": m.percentage}
        })
    }
}

/// Puts the managed header routes first in `spec.http`, in `managed` order: `routes` are
/// the ones that should exist now (name → matches); every other managed route is removed.
pub fn set_header_routes(
    obj: &mut Value,
    vs: &IstioVirtualService,
    split: &Split,
    managed: &[String],
    routes: &[(String, Vec<HeaderMatch>)],
) -> Result<bool, RouteError> {
    set_managed_routes(obj, vs, split, managed, routes, &[])
}

/// Puts the managed routes first in `spec.http`, in `managed` order: the header routes
/// `routes` (name → matches) and the mirror routes `mirrors` that should exist now; every other
/// managed route is removed. Mirror routes copy the split route's weights as they are, so set
/// the weights first.
pub fn set_managed_routes(
    obj: &mut Value,
    vs: &IstioVirtualService,
    split: &Split,
    managed: &[String],
    routes: &[(String, Vec<HeaderMatch>)],
    mirrors: &[MirrorRoute],
) -> Result<bool, RouteError> {
    let name = vs.name.as_str();
    let wanted = !routes.is_empty() || !mirrors.is_empty();
    let split_route = if wanted {
        Some(SplitRoute::find(obj, vs, split, managed).ok_or_else(|| {
            RouteError::Invalid(format!(
                "VirtualService {name:?} has no canary destination to route headers to"
            ))
        })?)
    } else {
        None
    };
    let Some(http) = obj.pointer_mut("/spec/http").and_then(Value::as_array_mut) else {
        return if wanted {
            Err(RouteError::Invalid(format!(
                "VirtualService {name:?} has no http routes"
            )))
        } else {
            Ok(false)
        };
    };
    let before = http.clone();
    let managed_routes: Vec<Value> = match &split_route {
        None => Vec::new(),
        Some(s) => managed
            .iter()
            .filter_map(|m| {
                if let Some((_, headers)) = routes.iter().find(|(n, _)| n == m) {
                    return Some(s.header_route(m, headers));
                }
                mirrors
                    .iter()
                    .find(|r| &r.name == m)
                    .map(|r| s.mirror_route(r))
            })
            .collect(),
    };
    put_managed_first(http, managed, managed_routes);
    Ok(*http != before)
}

/// Points the DestinationRule's stable and canary subsets at their revisions' pods (the
/// `rollouts-pod-template-hash` label); other labels and subsets stay as written.
pub fn set_subsets(
    obj: &mut Value,
    dr_name: &str,
    stable_subset: &str,
    canary_subset: &str,
    stable_hash: &str,
    canary_hash: &str,
) -> Result<bool, RouteError> {
    let subsets = obj
        .pointer_mut("/spec/subsets")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            RouteError::Invalid(format!("DestinationRule {dr_name:?} has no subsets"))
        })?;
    let mut changed = false;
    for (subset, hash) in [(stable_subset, stable_hash), (canary_subset, canary_hash)] {
        let s = subsets
            .iter_mut()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(subset))
            .ok_or_else(|| {
                RouteError::Invalid(format!(
                    "DestinationRule {dr_name:?} has no subset named {subset:?}"
                ))
            })?;
        let labels = s
            .as_object_mut()
            .map(|o| o.entry("labels").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RouteError::Invalid(format!("subset {subset:?} is not an object")))?;
        if labels.get(LABEL_POD_TEMPLATE_HASH).and_then(Value::as_str) != Some(hash) {
            labels.insert(LABEL_POD_TEMPLATE_HASH.into(), json!(hash));
            changed = true;
        }
    }
    Ok(changed)
}

/// Takes Sluice's label out of the subsets (the Rollout is deleted).
pub fn clear_subsets(obj: &mut Value, subsets: &[&str]) -> bool {
    let mut changed = false;
    if let Some(list) = obj
        .pointer_mut("/spec/subsets")
        .and_then(Value::as_array_mut)
    {
        for s in list.iter_mut() {
            let named = s
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| subsets.contains(&n));
            if named
                && let Some(labels) = s.get_mut("labels").and_then(Value::as_object_mut)
                && labels.remove(LABEL_POD_TEMPLATE_HASH).is_some()
            {
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
#[path = "istio_tests.rs"]
mod tests;
