//! Gateway API, pure: the edits Sluice makes to an HTTPRoute (v1): the `weight` of the stable
//! and canary Services in every rule's `backendRefs` that has both, and the managed header
//! rules (named rules Sluice adds first and removes). Everything else is left as written.

use serde_json::{Map, Value, json};

use super::router::{in_managed_order, is_managed, put_managed_first, without_route_list};
use super::{HeaderMatch, MatchValue, RouteError, Weights};

fn backend_name(b: &Value) -> Option<&str> {
    // Only Services (kind absent or Service, group absent or core) are split.
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
    let group = b.get("group").and_then(Value::as_str).unwrap_or("");
    (kind == "Service" && group.is_empty())
        .then(|| b.get("name").and_then(Value::as_str))
        .flatten()
}

/// Sets the weights in every rule whose `backendRefs` name both Services. At least one rule
/// must. Returns whether anything changed.
pub fn set_weights(
    obj: &mut Value,
    route: &str,
    stable: &str,
    canary: &str,
    w: Weights,
    managed: &[String],
) -> Result<bool, RouteError> {
    let rules = obj
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| RouteError::Invalid(format!("HTTPRoute {route:?} has no rules")))?;
    let mut changed = false;
    let mut split_rules = 0;
    for rule in rules.iter_mut().filter(|r| !is_managed(r, managed)) {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
            continue;
        };
        let has = |n: &str| refs.iter().any(|b| backend_name(b) == Some(n));
        if !(has(stable) && has(canary)) {
            continue;
        }
        split_rules += 1;
        for b in refs.iter_mut() {
            let want = match backend_name(b) {
                Some(n) if n == stable => w.stable,
                Some(n) if n == canary => w.canary,
                _ => continue,
            };
            if b.get("weight").and_then(Value::as_i64) != Some(i64::from(want)) {
                b["weight"] = json!(want);
                changed = true;
            }
        }
    }
    if split_rules == 0 {
        return Err(RouteError::Invalid(format!(
            "HTTPRoute {route:?} has no rule with backendRefs to both {stable:?} and {canary:?}"
        )));
    }
    Ok(changed)
}

/// Puts the managed header rules first in `spec.rules`, in `managed` order, each sending
/// what matches to the canary Service only; removes every other managed rule. The port of
/// the canary backend is taken from the split rules.
pub fn set_header_routes(
    obj: &mut Value,
    route: &str,
    canary: &str,
    managed: &[String],
    routes: &[(String, Vec<HeaderMatch>)],
) -> Result<bool, RouteError> {
    let Some(rules) = obj.pointer_mut("/spec/rules").and_then(Value::as_array_mut) else {
        return without_route_list(routes, || format!("HTTPRoute {route:?} has no rules"));
    };
    let before = rules.clone();
    let split = SplitRule::find(rules, canary, managed);
    if !routes.is_empty() && split.is_none() {
        return Err(RouteError::Invalid(format!(
            "HTTPRoute {route:?} has no backendRef to the canary Service {canary:?}"
        )));
    }
    let header_rules = split.iter().flat_map(|split| {
        in_managed_order(managed, routes).map(|(name, matches)| split.header_rule(name, matches))
    });
    put_managed_first(rules, managed, header_rules);
    if rules.len() > MAX_RULES {
        return Err(RouteError::Invalid(format!(
            "HTTPRoute {route:?} would have {} rules with the header rules; Gateway API allows {MAX_RULES}",
            rules.len()
        )));
    }
    Ok(*rules != before)
}

/// The rule the header rules stand in for: the first unmanaged rule that sends to the
/// canary. A header rule keeps its matches (a path, a method) and filters, adding the
/// headers, and sends to its canary backend.
struct SplitRule {
    /// Never empty: a rule without matches matches everything, as one empty match does.
    matches: Vec<Value>,
    filters: Option<Value>,
    canary_backend: Value,
}

impl SplitRule {
    fn find(rules: &[Value], canary: &str, managed: &[String]) -> Option<Self> {
        rules
            .iter()
            .filter(|r| !is_managed(r, managed))
            .find_map(|r| {
                let backend = r
                    .get("backendRefs")?
                    .as_array()?
                    .iter()
                    .find(|b| backend_name(b) == Some(canary))?;
                let matches = r
                    .get("matches")
                    .and_then(Value::as_array)
                    .filter(|m| !m.is_empty())
                    .cloned()
                    .unwrap_or_else(|| vec![json!({})]);
                Some(SplitRule {
                    matches,
                    filters: r.get("filters").cloned(),
                    canary_backend: backend.clone(),
                })
            })
    }

    /// The managed rule `name`: the split rule's matches with `headers` added, to the
    /// canary only.
    fn header_rule(&self, name: &str, headers: &[HeaderMatch]) -> Value {
        let headers = header_matches(headers);
        let mut backend = self.canary_backend.clone();
        if let Some(o) = backend.as_object_mut() {
            o.insert("weight".into(), json!(1));
        }
        let matches = self
            .matches
            .iter()
            .cloned()
            .map(|one| with_headers(one, &headers))
            .collect();
        let mut rule = Map::new();
        rule.insert("name".into(), json!(name));
        rule.insert("matches".into(), Value::Array(matches));
        if let Some(f) = &self.filters {
            rule.insert("filters".into(), f.clone());
        }
        rule.insert("backendRefs".into(), json!([backend]));
        Value::Object(rule)
    }
}

/// One match of a rule with `headers` added after its own. The API server defaults a
/// match's path to PathPrefix "/": written out, so the rule read back equals the rule
/// written and nothing is rewritten at the next reconcile.
fn with_headers(mut one: Value, headers: &[Value]) -> Value {
    if let Some(o) = one.as_object_mut() {
        o.entry("path")
            .or_insert_with(|| json!({"type": "PathPrefix", "value": "/"}));
        let mut all: Vec<Value> = o
            .get("headers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        all.extend(headers.iter().cloned());
        o.insert("headers".into(), Value::Array(all));
    }
    one
}

/// Header matches as Gateway API writes them.
fn header_matches(matches: &[HeaderMatch]) -> Vec<Value> {
    matches
        .iter()
        .map(|h| {
            let (kind, value) = match &h.value {
                MatchValue::Exact(v) => ("Exact", v.clone()),
                MatchValue::Regex(v) => ("RegularExpression", v.clone()),
                // Gateway API has no header prefix match: a regular expression does it.
                MatchValue::Prefix(v) => ("RegularExpression", format!("^{}.*", regex_escape(v))),
            };
            json!({"type": kind, "name": h.name, "value": value})
        })
        .collect()
}

/// Rules an HTTPRoute may have (Gateway API v1).
pub const MAX_RULES: usize = 16;

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
