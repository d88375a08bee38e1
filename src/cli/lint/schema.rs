//! What the API server checks against a CRD's OpenAPI schema, offline: unknown fields (the
//! server applies strict field validation to `kubectl apply`), types, required fields,
//! ranges, lengths, patterns, enums, list-map keys, and the CEL rules of
//! `x-kubernetes-validations`. The schema is Sluice's own CRD, generated from `src/api`, so
//! the lint checks exactly what the server will.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::yaml::join;

/// One schema violation: where, and what the API server would say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Checks `value` (a whole object) against `schema` (a CRD version's `openAPIV3Schema`).
/// `metadata` and `status` are left out: the server checks the first as ObjectMeta and
/// ignores the second on apply.
pub fn check(schema: &Value, value: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(obj) = value.as_object() else {
        out.push(problem("", "a Kubernetes object must be a mapping"));
        return out;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (key, v) in obj {
        let path = join("", key);
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => metadata(v, &mut out),
            _ => match props.and_then(|p| p.get(key)) {
                None => out.push(unknown(&path, key, props)),
                Some(s) => walk(s, v, &path, &mut out),
            },
        }
    }
    if props.is_some_and(|p| p.contains_key("spec"))
        && !obj.contains_key("spec")
        && schema_required(schema).contains(&"spec")
    {
        out.push(problem("spec", "spec is required"));
    }
    out
}

fn schema_required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The fields of ObjectMeta a manifest may set.
const METADATA_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn metadata(v: &Value, out: &mut Vec<Problem>) {
    let Some(m) = v.as_object() else {
        out.push(problem("metadata", "metadata must be a mapping"));
        return;
    };
    for key in m.keys() {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            let path = join("metadata", key);
            out.push(problem(
                &path,
                format!(
                    "unknown field {key:?} in metadata{}",
                    suggest(key, METADATA_FIELDS.iter().copied())
                ),
            ));
        }
    }
    if !m.contains_key("name") && !m.contains_key("generateName") {
        out.push(problem("metadata.name", "metadata.name is required"));
    }
    for field in ["labels", "annotations"] {
        if let Some(map) = m.get(field).and_then(Value::as_object) {
            for (k, v) in map {
                if !v.is_string() {
                    out.push(problem(
                        &join(&format!("metadata.{field}"), k),
                        format!("{field} values must be strings: quote {v}"),
                    ));
                }
            }
        }
    }
}

fn unknown(path: &str, key: &str, props: Option<&Map<String, Value>>) -> Problem {
    let known = props
        .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    problem(
        path,
        format!(
            "unknown field {key:?}{}; the API server refuses it (strict field validation)",
            suggest(key, known.into_iter())
        ),
    )
}

/// `: did you mean "x"?` for the known name closest to `key`, when one is close.
fn suggest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> String {
    let lower = key.to_ascii_lowercase();
    known
        .map(|k| (distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    if value.is_null() {
        // The server drops a null for a field that is not nullable, as if it were absent.
        return;
    }
    let before = out.len();
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        match value {
            Value::Number(_) => integer(schema, value, path, out),
            Value::String(_) => string(schema, value, path, out),
            other => out.push(problem(
                path,
                format!(
                    "must be a whole number or a string, not {}",
                    describe(other)
                ),
            )),
        }
    } else {
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => object(schema, value, path, out),
            Some("array") => array(schema, value, path, out),
            Some("string") => string(schema, value, path, out),
            Some("integer") => integer(schema, value, path, out),
            Some("number") if !value.is_number() => out.push(problem(
                path,
                format!("must be a number, not {}", describe(value)),
            )),
            Some("boolean") if !value.is_boolean() => out.push(problem(
                path,
                format!("must be true or false, not {}", describe(value)),
            )),
            _ => {}
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed
            .iter()
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect();
        out.push(problem(
            path,
            format!("{value} is not one of {}", names.join(", ")),
        ));
    }
    // The server evaluates a node's CEL rules only when the node itself is valid.
    if out.len() == before {
        rules(schema, value, path, out);
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn object(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(obj) = value.as_object() else {
        out.push(problem(
            path,
            format!("must be a mapping, not {}", describe(value)),
        ));
        return;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let extra = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, v) in obj {
        let at = join(path, key);
        match (props.and_then(|p| p.get(key)), extra) {
            (Some(s), _) | (None, Some(s)) => walk(s, v, &at, out),
            (None, None)
                if preserve
                    || props.is_none()
                        && schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
            (None, None) => out.push(unknown(&at, key, props)),
        }
    }
    for req in schema_required(schema) {
        if obj.get(req).is_none_or(Value::is_null) {
            out.push(problem(&join(path, req), format!("{req} is required")));
        }
    }
}

fn array(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(items) = value.as_array() else {
        out.push(problem(
            path,
            format!("must be a list, not {}", describe(value)),
        ));
        return;
    };
    let count = |k: &str| schema.get(k).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(max) = count("maxItems").filter(|m| items.len() > *m) {
        out.push(problem(
            path,
            format!("has {} items, more than the {max} allowed", items.len()),
        ));
    }
    if let Some(min) = count("minItems").filter(|m| items.len() < *m) {
        out.push(problem(
            path,
            format!("has {} items, fewer than the {min} required", items.len()),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, v) in items.iter().enumerate() {
            walk(item_schema, v, &format!("{path}[{i}]"), out);
        }
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut seen: Vec<Vec<&Value>> = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let id: Vec<&Value> = keys
                .iter()
                .map(|k| v.get(*k).unwrap_or(&Value::Null))
                .collect();
            if seen.contains(&id) {
                let shown: Vec<String> = keys
                    .iter()
                    .zip(&id)
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                out.push(problem(
                    &format!("{path}[{i}]"),
                    format!("duplicate entry with {}", shown.join(", ")),
                ));
            }
            seen.push(id);
        }
    }
}

fn string(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(s) = value.as_str() else {
        out.push(problem(
            path,
            format!("must be a string, not {}: quote it", describe(value)),
        ));
        return;
    };
    let len = s.chars().count();
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (len as u64) < min
    {
        out.push(problem(
            path,
            if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {min} characters long")
            },
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && (len as u64) > max
    {
        out.push(problem(
            path,
            format!("must be at most {max} characters long"),
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str)
        && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
    {
        let what = schema
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        out.push(problem(
            path,
            format!("{s:?} does not have the form the field takes{what}"),
        ));
    }
}

fn integer(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(n) = value.as_i64() else {
        out.push(problem(
            path,
            format!("must be a whole number, not {}", describe(value)),
        ));
        return;
    };
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(min) = bound("minimum").filter(|m| (n as f64) < *m) {
        out.push(problem(path, format!("{n} is less than the minimum {min}")));
    }
    if let Some(max) = bound("maximum").filter(|m| (n as f64) > *m) {
        out.push(problem(path, format!("{n} is more than the maximum {max}")));
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32") && i32::try_from(n).is_err() {
        out.push(problem(path, format!("{n} does not fit a 32-bit integer")));
    }
}

/// `x-kubernetes-validations`: each rule is CEL over `self`, the node; false means refused
/// with the rule's message.
fn rules(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(list) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    for r in list {
        let Some(rule) = r.get("rule").and_then(Value::as_str) else {
            continue;
        };
        let message = r.get("message").and_then(Value::as_str).unwrap_or(rule);
        match eval_rule(rule, value) {
            Ok(true) => {}
            Ok(false) => out.push(problem(path, message)),
            Err(e) => out.push(problem(
                path,
                format!("the API server's rule `{rule}` cannot be checked here ({e}); {message}"),
            )),
        }
    }
}

/// Evaluates one CRD validation rule with `self` bound to `value`.
pub fn eval_rule(rule: &str, value: &Value) -> Result<bool, String> {
    let env = Arc::new(cel::Env::stdlib());
    let expr = env.parser().parse(rule).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::with_env(env);
    let bound = cel::to_value(Signed(value)).map_err(|e| e.to_string())?;
    ctx.add_variable("self", bound)
        .map_err(|e| format!("{e:?}"))?;
    match cel::Value::resolve(&expr, &ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("it gave {other:?}, not a boolean")),
        Err(e) => Err(e.to_string()),
    }
}

/// A JSON value whose whole numbers CEL reads as `int`, as Kubernetes does (serde_json
/// would hand a positive one over as an unsigned number, and `type(self.count) == int` would
/// be false).
struct Signed<'a>(&'a Value);

impl serde::Serialize for Signed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Number(n) => match n.as_i64() {
                Some(i) => s.serialize_i64(i),
                None => s.serialize_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&Signed(i))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &Signed(v))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout_schema() -> Value {
        let crd = crate::api::crds::all().remove(0).1;
        serde_json::to_value(&crd.spec.versions[0].schema).expect("json")["openAPIV3Schema"].clone()
    }

    fn paths(problems: &[Problem]) -> Vec<String> {
        problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    fn canary(steps: Value) -> Value {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}},
                        "strategy": {"canary": {"steps": steps}}}})
    }

    #[test]
    fn a_valid_rollout_passes() {
        let p = check(
            &rollout_schema(),
            &canary(json!([{"setWeight": 20}, {"pause": {"duration": "1m"}}])),
        );
        assert!(p.is_empty(), "{:?}", paths(&p));
    }

    #[test]
    fn unknown_fields_say_what_was_meant() {
        let mut ro = canary(json!([{"setWeight": 20}]));
        ro["spec"]["strategy"]["canary"]["trafficRouting"] =
            json!({"gatewayApi": {"httpRoute": "web"}});
        let p = paths(&check(&rollout_schema(), &ro));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("spec.strategy.canary.trafficRouting.gatewayApi: unknown field \"gatewayApi\" (did you mean \"gatewayAPI\"?)"), "{p:?}");
    }

    #[test]
    fn ranges_types_and_rules() {
        let p = paths(&check(
            &rollout_schema(),
            &canary(
                json!([{"setWeight": 120}, {"setWeight": "x"}, {"setWeight": 10, "pause": {}}, {}]),
            ),
        ));
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p[0].starts_with(
                "spec.strategy.canary.steps[0].setWeight: 120 is more than the maximum 100"
            ),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("spec.strategy.canary.steps[1].setWeight: must be a whole number"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("spec.strategy.canary.steps[2]: each step must set exactly one of"),
            "{p:?}"
        );
        assert!(
            p[3].starts_with("spec.strategy.canary.steps[3]: each step must set exactly one of"),
            "{p:?}"
        );
    }

    #[test]
    fn list_map_keys_are_unique() {
        let crd = crate::api::crds::all().remove(1).1;
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema).expect("json")["openAPIV3Schema"]
                .clone();
        let m = json!({"name": "a", "provider": {"web": {"url": "http://x"}}});
        let t = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
                       "spec": {"metrics": [m, m]}});
        let p = paths(&check(&schema, &t));
        assert_eq!(
            p,
            vec!["spec.metrics[1]: duplicate entry with name: \"a\"".to_string()]
        );
    }

    #[test]
    fn type_of_int_or_string_in_a_rule() {
        assert_eq!(
            eval_rule(
                "!has(self.count) || type(self.count) != int || self.count <= 1 || has(self.interval)",
                &json!({"count": 3})
            ),
            Ok(false)
        );
        assert_eq!(
            eval_rule(
                "!has(self.count) || type(self.count) != int || self.count <= 1 || has(self.interval)",
                &json!({"count": "{{args.n}}"})
            ),
            Ok(true)
        );
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            suggest("setweight", ["setWeight", "pause"].into_iter()),
            " (did you mean \"setWeight\"?)"
        );
        assert_eq!(suggest("banana", ["setWeight", "pause"].into_iter()), "");
    }
}
