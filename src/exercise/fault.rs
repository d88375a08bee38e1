//! A fault applied to a pod template, pure: a strategic merge patch (as `kubectl patch --type
//! strategic` merges a PodTemplateSpec) or a JSON patch (RFC 6902), checked before anything
//! starts.
//!
//! Strategic merge, as Kubernetes defines it for the parts of a pod template people patch:
//! objects merge key by key and `null` deletes a key; a list merges element by element on its
//! patch merge key (`containers` and `initContainers` by `name`, `env` by `name`, `volumes` by
//! `name`, `volumeMounts` by `mountPath`, `ports` by `containerPort`, ...), an element with
//! `$patch: delete` is removed, and any other list is replaced whole; an object with
//! `$patch: replace` replaces what it patches, and `$patch: delete` deletes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value};

use crate::api::exercise::Fault;

/// Why a fault cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("fault: exactly one of strategicMergePatch and jsonPatch must be set")]
    NotOne,
    #[error("fault.strategicMergePatch must be an object (the pod template's metadata and spec)")]
    NotAnObject,
    #[error("fault.jsonPatch does not read as a JSON patch: {0}")]
    BadJsonPatch(String),
    #[error("fault.jsonPatch does not apply to the pod template: {0}")]
    JsonPatchFailed(String),
    #[error("fault.strategicMergePatch: {0}")]
    BadDirective(String),
    #[error("the patched template is not a pod template: {0}")]
    NotATemplate(String),
    #[error("the fault changes nothing in the pod template")]
    NoChange,
    #[error("the fault changes the pod label {0:?}, which the Rollout's selector uses")]
    SelectorLabel(String),
}

/// `template` with `fault` applied. The result must still be a pod template, must differ
/// from `template`, and must keep every label of `selector` (the Rollout's `matchLabels`),
/// or the faulty revision's pods would not be the Rollout's.
pub fn apply(
    template: &PodTemplateSpec,
    fault: &Fault,
    selector: &BTreeMap<String, String>,
) -> Result<PodTemplateSpec, FaultError> {
    let original =
        serde_json::to_value(template).map_err(|e| FaultError::NotATemplate(e.to_string()))?;
    let patched = match (&fault.strategic_merge_patch, &fault.json_patch) {
        (Some(p), None) => {
            if !p.is_object() {
                return Err(FaultError::NotAnObject);
            }
            strategic_merge(&original, p, &[])?
        }
        (None, Some(p)) => json_patch(&original, p)?,
        _ => return Err(FaultError::NotOne),
    };
    let out: PodTemplateSpec =
        serde_json::from_value(patched).map_err(|e| FaultError::NotATemplate(e.to_string()))?;
    if &out == template {
        return Err(FaultError::NoChange);
    }
    let labels = out.metadata.as_ref().and_then(|m| m.labels.as_ref());
    for (k, v) in selector {
        if labels.and_then(|l| l.get(k)) != Some(v) {
            return Err(FaultError::SelectorLabel(k.clone()));
        }
    }
    Ok(out)
}

fn json_patch(original: &Value, patch: &Value) -> Result<Value, FaultError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| FaultError::BadJsonPatch(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| FaultError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
}

/// The patch merge key of the list at `path` (field names from the template's root), as the
/// Kubernetes API declares it; `None` for a list that is replaced whole.
fn merge_key(path: &[&str]) -> Option<&'static str> {
    let field = *path.last()?;
    let parent = path.len().checked_sub(2).map(|i| path[i]);
    let in_container = matches!(
        parent,
        Some("containers" | "initContainers" | "ephemeralContainers")
    );
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => Some("name"),
        "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates" => Some("name"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "env" if in_container => Some("name"),
        "volumeMounts" if in_container => Some("mountPath"),
        "volumeDevices" if in_container => Some("devicePath"),
        "ports" if in_container => Some("containerPort"),
        "resizePolicy" if in_container => Some("resourceName"),
        _ => None,
    }
}

/// `patch` merged into `original` at `path`.
fn strategic_merge(original: &Value, patch: &Value, path: &[&str]) -> Result<Value, FaultError> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut whole = p.clone();
            whole.remove("$patch");
            return Ok(Value::Object(whole));
        }
        Some(other) if other != "merge" => {
            return Err(FaultError::BadDirective(format!(
                "$patch: {other} is not allowed on an object here ({})",
                shown(path)
            )));
        }
        _ => {}
    }
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let mut here = path.to_vec();
        here.push(k.as_str());
        let merged = match (out.get(k), v) {
            (Some(old), Value::Object(_)) => strategic_merge(old, v, &here)?,
            (Some(Value::Array(old)), Value::Array(new)) => match merge_key(&here) {
                Some(key) => merge_list(old, new, key, &here)?,
                None => v.clone(),
            },
            (None, _) => strip_directives(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(Value::Object(out))
}

/// A list merged on `key`: patch elements replace-merge the original's of the same key (or
/// are appended), and `$patch: delete` elements remove theirs.
fn merge_list(
    original: &[Value],
    patch: &[Value],
    key: &str,
    path: &[&str],
) -> Result<Value, FaultError> {
    let mut out: Vec<Value> = original.to_vec();
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(FaultError::BadDirective(format!(
                "an element of {} has no {key:?}, which it is merged on",
                shown(path)
            )));
        };
        let at = out.iter().position(|o| o.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic_merge(&out[i], item, path)?,
            (None, false) => out.push(strip_directives(item)),
        }
    }
    Ok(Value::Array(out))
}

/// A new value with its `$` directives taken out (nothing to merge with).
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn shown(path: &[&str]) -> String {
    if path.is_empty() {
        "the template".into()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
