//! Traffic routers: how a canary's weight reaches the proxies. Besides Service selectors
//! (in `rollout::apply`), Sluice edits Istio VirtualServices and DestinationRules and Gateway
//! API HTTPRoutes. The edits are pure functions over the objects as JSON (`istio`,
//! `gateway`), so what Sluice owns in a user's object is exactly what those functions touch.

pub mod gateway;
pub mod given_back;
pub mod istio;
pub mod kube;
pub mod router;
pub mod watch;

use serde_json::{Map, Value, json};

use crate::api::rollout::{HeaderRoutingMatch, SetMirrorRoute, StringMatch};

/// The split of traffic between the stable and canary revisions, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub stable: i32,
    pub canary: i32,
}

impl Default for Weights {
    /// All traffic on stable.
    fn default() -> Self {
        Weights::canary(0)
    }
}

impl Weights {
    /// `canary` percent to the canary (clamped to 0–100), the rest to stable.
    pub fn canary(canary: i32) -> Self {
        let canary = canary.clamp(0, 100);
        Weights {
            stable: 100 - canary,
            canary,
        }
    }
}

/// What the routers must say at one moment of a release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteState {
    pub weights: Weights,
    /// Managed header routes that should exist now (name, matches); every other managed
    /// route is removed.
    pub header_routes: Vec<(String, Vec<HeaderMatch>)>,
    /// Managed mirror routes that should exist now (Istio).
    pub mirror_routes: Vec<MirrorRoute>,
    /// The revisions the stable and canary subsets select (subset-level Istio).
    pub stable_hash: String,
    pub canary_hash: String,
}

/// How a header value is matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchValue {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl MatchValue {
    /// Istio's and Gateway API's spelling of the kind, and the value.
    pub fn kind_and_value(&self) -> (&'static str, &str) {
        match self {
            MatchValue::Exact(v) => ("exact", v),
            MatchValue::Prefix(v) => ("prefix", v),
            MatchValue::Regex(v) => ("regex", v),
        }
    }
}

/// One header a managed route matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: MatchValue,
}

impl HeaderMatch {
    pub fn from_api(m: &HeaderRoutingMatch) -> Option<Self> {
        let StringMatch {
            exact,
            prefix,
            regex,
        } = &m.header_value;
        let value = match (exact, prefix, regex) {
            (Some(v), _, _) => MatchValue::Exact(v.clone()),
            (None, Some(v), _) => MatchValue::Prefix(v.clone()),
            (None, None, Some(v)) => MatchValue::Regex(v.clone()),
            _ => return None,
        };
        Some(HeaderMatch {
            name: m.header_name.clone(),
            value,
        })
    }
}

/// A managed route that mirrors the requests it matches to the canary (`setMirrorRoute`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorRoute {
    pub name: String,
    /// Istio `HTTPMatchRequest`s: `method`, `uri` (the step's `path`), `headers`.
    pub matches: Vec<Value>,
    /// `mirrorPercentage.value`.
    pub percentage: i32,
}

impl MirrorRoute {
    /// The route a step asks for; `None` for a step without matches (it removes the route).
    pub fn from_api(m: &SetMirrorRoute) -> Option<Self> {
        let string_match = |s: &StringMatch| {
            let mut o = Map::new();
            for (k, v) in [
                ("exact", &s.exact),
                ("prefix", &s.prefix),
                ("regex", &s.regex),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), json!(v));
                }
            }
            Value::Object(o)
        };
        let matches: Vec<Value> = m
            .matches
            .iter()
            .flatten()
            .map(|r| {
                let mut o = Map::new();
                if let Some(x) = &r.method {
                    o.insert("method".into(), string_match(x));
                }
                if let Some(x) = &r.path {
                    o.insert("uri".into(), string_match(x));
                }
                if let Some(h) = &r.headers {
                    let headers = h.iter().map(|(k, v)| (k.clone(), string_match(v)));
                    o.insert("headers".into(), Value::Object(headers.collect()));
                }
                Value::Object(o)
            })
            .collect();
        (!matches.is_empty()).then(|| MirrorRoute {
            name: m.name.clone(),
            matches,
            percentage: m.percentage.unwrap_or(100),
        })
    }
}

/// Why a router cannot do what the Rollout asks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The user's object does not have what the Rollout names (a route, a subset, a
    /// destination): an `InvalidSpec`, nothing is written.
    #[error("{0}")]
    Invalid(String),
}
