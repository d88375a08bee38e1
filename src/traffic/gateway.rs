//! Gateway API, pure: the edits Sluice makes to an HTTPRoute (v1): the `weight` of the stable
//! and canary Services in every rule's `backendRefs` that has both, and the managed header
//! rules (named rules Sluice adds first and removes). Everything else is left as written.

use serde_json::{Map, Value, json};

use super::{HeaderMatch, RouteError, Weights};

fn backend_name(b: &Value) -> Option<&str> {
    // Only Services (kind absent or Service, group absent or core) are split.
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
    let group = b.get("group").and_then(Value::as_str).unwrap_or("");
    (kind == "Service" && group.is_empty())
        .then(|| b.get("name").and_then(Value::as_str))
        .flatten()
}

fn rule_name(r: &Value) -> Option<&str> {
    r.get("name").and_then(Value::as_str)
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
    for rule in rules
        .iter_mut()
        .filter(|r| !rule_name(r).is_some_and(|n| managed.iter().any(|m| m == n)))
    {
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
        return if routes.is_empty() {
            Ok(false)
        } else {
            Err(RouteError::Invalid(format!(
                "HTTPRoute {route:?} has no rules"
            )))
        };
    };
    let before = rules.clone();
    // The rule the header rules stand in for: the first that sends to the canary. A header
    // rule keeps its matches (a path, a method) and filters, adding the headers.
    let split_rule = rules
        .iter()
        .filter(|r| !rule_name(r).is_some_and(|n| managed.iter().any(|m| m == n)))
        .find(|r| {
            r.get("backendRefs")
                .and_then(Value::as_array)
                .is_some_and(|b| b.iter().any(|b| backend_name(b) == Some(canary)))
        })
        .cloned();
    let canary_ref = split_rule
        .as_ref()
        .and_then(|r| r.get("backendRefs")?.as_array())
        .into_iter()
        .flatten()
        .find(|b| backend_name(b) == Some(canary))
        .cloned();
    if !routes.is_empty() && canary_ref.is_none() {
        return Err(RouteError::Invalid(format!(
            "HTTPRoute {route:?} has no backendRef to the canary Service {canary:?}"
        )));
    }
    rules.retain(|r| !rule_name(r).is_some_and(|n| managed.iter().any(|m| m == n)));
    let mut insert_at = 0;
    for m in managed {
        let Some((_, matches)) = routes.iter().find(|(n, _)| n == m) else {
            continue;
        };
        let headers: Vec<Value> = matches
            .iter()
            .map(|h| {
                let (kind, v) = h.value.kind_and_value();
                let kind = match kind {
                    "exact" => "Exact",
                    "regex" => "RegularExpression",
                    // Gateway API has no header prefix match: a regular expression does it.
                    _ => "RegularExpression",
                };
                let value = if h.value.kind_and_value().0 == "prefix" {
                    format!("^{}.*", regex_escape(v))
                } else {
                    v.to_string()
                };
                json!({"type": kind, "name": h.name, "value": value})
            })
            .collect();
        let mut backend = canary_ref.clone().unwrap_or(Value::Null);
        if let Some(o) = backend.as_object_mut() {
            o.insert("weight".into(), json!(1));
        }
        // The API server defaults a match's path to PathPrefix "/": written out, so the rule
        // read back equals the rule written and nothing is rewritten at the next reconcile.
        let base: Vec<Value> = split_rule
            .as_ref()
            .and_then(|r| r.get("matches")?.as_array().cloned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec![json!({})]);
        let rule_matches: Vec<Value> = base
            .into_iter()
            .map(|mut one| {
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
            })
            .collect();
        let mut rule = Map::new();
        rule.insert("name".into(), json!(m));
        rule.insert("matches".into(), Value::Array(rule_matches));
        if let Some(f) = split_rule.as_ref().and_then(|r| r.get("filters")) {
            rule.insert("filters".into(), f.clone());
        }
        rule.insert("backendRefs".into(), json!([backend]));
        rules.insert(insert_at, Value::Object(rule));
        insert_at += 1;
    }
    if rules.len() > MAX_RULES {
        return Err(RouteError::Invalid(format!(
            "HTTPRoute {route:?} would have {} rules with the header rules; Gateway API allows {MAX_RULES}",
            rules.len()
        )));
    }
    Ok(*rules != before)
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
