//! Istio, pure: the edits Sluice makes to a VirtualService (route weights, managed header
//! routes) and a DestinationRule (subset labels), on the objects as JSON. Everything Sluice
//! does not own is left exactly as it was.

use serde_json::{Map, Value, json};

use super::{HeaderMatch, RouteError, Weights};
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
pub fn set_weights(
    obj: &mut Value,
    vs: &IstioVirtualService,
    split: &Split,
    w: Weights,
    managed: &[String],
) -> Result<bool, RouteError> {
    let name = vs.name.as_str();
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| RouteError::Invalid(format!("VirtualService {name:?} has no spec")))?;
    let mut changed = false;
    let wants_http = vs.routes.as_ref().is_some_and(|r| !r.is_empty())
        || (vs.tls_routes.is_none() && vs.tcp_routes.is_none());
    if wants_http {
        let http = spec
            .get_mut("http")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                RouteError::Invalid(format!("VirtualService {name:?} has no http routes"))
            })?;
        match vs.routes.as_ref().filter(|r| !r.is_empty()) {
            Some(names) => {
                for want in names {
                    let r = http
                        .iter_mut()
                        .find(|r| route_name(r) == Some(want.as_str()))
                        .ok_or_else(|| {
                            RouteError::Invalid(format!(
                                "VirtualService {name:?} has no http route named {want:?}"
                            ))
                        })?;
                    changed |= set_route(
                        r,
                        split,
                        w,
                        &format!("http route {want:?} of VirtualService {name:?}"),
                    )?;
                }
            }
            None => {
                let unmanaged: Vec<&mut Value> = http
                    .iter_mut()
                    .filter(|r| !route_name(r).is_some_and(|n| managed.iter().any(|m| m == n)))
                    .collect();
                if unmanaged.len() != 1 {
                    return Err(RouteError::Invalid(format!(
                        "VirtualService {name:?} has {} http routes: name the ones to split in routes",
                        unmanaged.len()
                    )));
                }
                for r in unmanaged {
                    changed |= set_route(
                        r,
                        split,
                        w,
                        &format!("the http route of VirtualService {name:?}"),
                    )?;
                }
            }
        }
    }
    for t in vs.tls_routes.iter().flatten() {
        let tls = spec
            .get_mut("tls")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                RouteError::Invalid(format!("VirtualService {name:?} has no tls routes"))
            })?;
        let r = tls.iter_mut().find(|r| tls_matches(r, t)).ok_or_else(|| {
            RouteError::Invalid(format!(
                "VirtualService {name:?} has no tls route matching port {:?} and sniHosts {:?}",
                t.port, t.sni_hosts
            ))
        })?;
        changed |= set_route(
            r,
            split,
            w,
            &format!("a tls route of VirtualService {name:?}"),
        )?;
    }
    for t in vs.tcp_routes.iter().flatten() {
        let tcp = spec
            .get_mut("tcp")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                RouteError::Invalid(format!("VirtualService {name:?} has no tcp routes"))
            })?;
        let r = tcp.iter_mut().find(|r| tcp_matches(r, t)).ok_or_else(|| {
            RouteError::Invalid(format!(
                "VirtualService {name:?} has no tcp route matching port {:?}",
                t.port
            ))
        })?;
        changed |= set_route(
            r,
            split,
            w,
            &format!("a tcp route of VirtualService {name:?}"),
        )?;
    }
    Ok(changed)
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

/// The canary destination of the split, as the routes name it: for a header route.
/// The route being split (the first named one, or the only unmanaged one, with a canary
/// destination): its canary destination and its match conditions.
fn split_route(
    obj: &Value,
    vs: &IstioVirtualService,
    split: &Split,
    managed: &[String],
) -> Option<(Value, Vec<Value>)> {
    let http = obj.pointer("/spec/http")?.as_array()?;
    http.iter()
        .filter(|r| !route_name(r).is_some_and(|n| managed.iter().any(|m| m == n)))
        .filter(|r| match vs.routes.as_ref().filter(|r| !r.is_empty()) {
            Some(names) => route_name(r).is_some_and(|n| names.iter().any(|x| x == n)),
            None => true,
        })
        .find_map(|r| {
            let dest = r
                .get("route")?
                .as_array()?
                .iter()
                .filter_map(|d| d.get("destination"))
                .find(|d| split.side(d) == Some(Side::Canary))?
                .clone();
            let matches = r
                .get("match")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Some((dest, matches))
        })
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
    let name = vs.name.clone();
    let canary = if routes.is_empty() {
        None
    } else {
        Some(split_route(obj, vs, split, managed).ok_or_else(|| {
            RouteError::Invalid(format!(
                "VirtualService {name:?} has no canary destination to route headers to"
            ))
        })?)
    };
    let Some(http) = obj.pointer_mut("/spec/http").and_then(Value::as_array_mut) else {
        return if routes.is_empty() {
            Ok(false)
        } else {
            Err(RouteError::Invalid(format!(
                "VirtualService {name:?} has no http routes"
            )))
        };
    };
    let before = http.clone();
    http.retain(|r| !route_name(r).is_some_and(|n| managed.iter().any(|m| m == n)));
    let mut wanted: Vec<Value> = Vec::new();
    for m in managed {
        if let Some((_, matches)) = routes.iter().find(|(n, _)| n == m) {
            let headers: Map<String, Value> = matches
                .iter()
                .map(|h| {
                    let (kind, v) = h.value.kind_and_value();
                    (h.name.clone(), json!({ kind: v }))
                })
                .collect();
            // The split route's conditions (a path, a port) stay; the headers are added.
            let (dest, base) = canary.clone().unwrap_or((Value::Null, Vec::new()));
            let base = if base.is_empty() {
                vec![json!({})]
            } else {
                base
            };
            let conditions: Vec<Value> = base
                .into_iter()
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
            wanted.push(json!({
                "name": m,
                "match": conditions,
                "route": [{"destination": dest, "weight": 100}]
            }));
        }
    }
    for (i, r) in wanted.into_iter().enumerate() {
        http.insert(i, r);
    }
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
