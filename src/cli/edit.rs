//! The commands that write a Rollout's `spec` as a person asked: `set image`, `undo` and
//! `restart`. Pure functions from the objects as read to the patch; the binary sends it with
//! the resourceVersion it read, so a concurrent change is never overwritten.
//!
//! These are the only writes of `spec` Sluice makes, and each says so: under GitOps the
//! change belongs in git, where Argo CD or Flux would otherwise put the old value back.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::constants::{
    ANNOTATION_EPHEMERAL_METADATA, LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT,
};
use crate::api::rollout::Rollout;
use crate::rollout::hash::{pod_template_hash, prune_empty};
use crate::rollout::pods;

/// Why an edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(
        "{0} takes its pod template from workloadRef (Deployment {1}): change the Deployment's template instead"
    )]
    WorkloadRef(String, String),
    #[error("{0} has no pod template")]
    NoTemplate(String),
    #[error("{rollout} has no container named {name:?}; its containers: {known}")]
    NoContainer {
        rollout: String,
        name: String,
        known: String,
    },
    #[error("{0:?} is not CONTAINER=IMAGE (use *=IMAGE for every container)")]
    BadPair(String),
    #[error(
        "{rollout} has no revision {wanted}; the revisions kept: {known} (kubectl sluice get rollout {rollout})"
    )]
    NoRevision {
        rollout: String,
        wanted: String,
        known: String,
    },
    #[error("{0} has no earlier revision to go back to")]
    NoEarlier(String),
    #[error("revision {1} is {0}'s template already: nothing to undo")]
    AlreadyCurrent(String, String),
}

/// `CONTAINER=IMAGE` pairs from the command line.
pub fn parse_pairs(args: &[String]) -> Result<Vec<(String, String)>, EditError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_string(), i.to_string())),
            _ => Err(EditError::BadPair(a.clone())),
        })
        .collect()
}

fn template_or_err(ro: &Rollout) -> Result<&PodTemplateSpec, EditError> {
    if let Some(w) = &ro.spec.workload_ref {
        return Err(EditError::WorkloadRef(ro.name_any(), w.name.clone()));
    }
    ro.spec
        .template
        .as_ref()
        .ok_or_else(|| EditError::NoTemplate(ro.name_any()))
}

/// The first operation of each JSON patch: the resourceVersion read, so the API server refuses
/// the patch (409 Conflict) when the Rollout changed since (the indexes below may be stale).
fn version_guard(ro: &Rollout) -> Value {
    json!({"op": "replace", "path": "/metadata/resourceVersion", "value": ro.resource_version()})
}

/// Where a person should make a change that `spec` writes would lose: who declares this
/// Rollout (Argo CD, Flux, Helm), from its annotations, labels and field managers.
pub fn gitops_note(ro: &Rollout, instead: &str) -> String {
    let annotations = ro.annotations();
    let labels = ro.labels();
    let managers: Vec<&str> = ro
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    let owner = if annotations.contains_key("argocd.argoproj.io/tracking-id")
        || labels.contains_key("argocd.argoproj.io/instance")
        || managers.iter().any(|m| m.starts_with("argocd"))
    {
        Some("Argo CD")
    } else if labels
        .keys()
        .any(|k| k.starts_with("kustomize.toolkit.fluxcd.io/"))
        || labels
            .keys()
            .any(|k| k.starts_with("helm.toolkit.fluxcd.io/"))
        || managers
            .iter()
            .any(|m| *m == "kustomize-controller" || *m == "helm-controller")
    {
        Some("Flux")
    } else {
        None
    };
    match owner {
        Some(tool) => format!(
            "warning: {} is declared in git through {tool}, which will put git's spec back at its next sync: {instead}\n",
            ro.name_any()
        ),
        None => format!(
            "note: this wrote the Rollout's spec; if git declares it (Argo CD, Flux), {instead}, or the next sync undoes this\n"
        ),
    }
}

/// The JSON patch setting each container's image (`*` for every container, init containers
/// included), or `None` when every image already is the one asked for.
pub fn set_image_patch(
    ro: &Rollout,
    pairs: &[(String, String)],
) -> Result<Option<Value>, EditError> {
    let template = template_or_err(ro)?;
    let spec = template.spec.clone().unwrap_or_default();
    let lists = [
        ("containers", spec.containers.clone()),
        (
            "initContainers",
            spec.init_containers.clone().unwrap_or_default(),
        ),
    ];
    let mut ops = vec![version_guard(ro)];
    for (container, image) in pairs {
        let mut found = false;
        for (list, items) in &lists {
            for (i, c) in items.iter().enumerate() {
                if container != "*" && &c.name != container {
                    continue;
                }
                found = true;
                if c.image.as_deref() == Some(image.as_str()) {
                    continue;
                }
                let at = format!("/spec/template/spec/{list}/{i}");
                ops.push(json!({"op": "replace", "path": format!("{at}/image"), "value": image}));
            }
        }
        if !found {
            let known: Vec<String> = lists
                .iter()
                .flat_map(|(_, l)| l.iter().map(|c| c.name.clone()))
                .collect();
            return Err(EditError::NoContainer {
                rollout: ro.name_any(),
                name: container.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok((ops.len() > 1).then_some(Value::Array(ops)))
}

/// The merge patch asking for new pods of the same revision (Argo Rollouts' `restartAt`).
///
/// `restartAt` is written in whole seconds, as are pods' creation times; it is rounded up, so a
/// pod created in the same second as the request (a creation time of that second, floored)
/// still counts as created before the restart and is replaced.
pub fn restart_patch(ro: &Rollout, now: Timestamp) -> Value {
    let up = now.as_second() + i64::from(now.subsec_nanosecond() > 0);
    let at = Timestamp::from_second(up).unwrap_or(now);
    json!({"metadata": {"resourceVersion": ro.resource_version()}, "spec": {"restartAt": at.to_string()}})
}

/// Which revision `undo` goes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The newest revision older than the current one.
    Previous,
    /// A revision's number as `get rollout` shows it (oldest first), or its pod-template hash.
    Given(String),
}

/// What `undo` writes and what it knows about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Undo {
    pub revision: usize,
    pub hash: String,
    /// The JSON patch replacing `spec.template`.
    pub patch: Value,
    /// Whether the template written hashes to the revision's own hash, so Sluice goes back to
    /// that ReplicaSet (its pods, and a fast-track within `rollbackWindow`); otherwise the same
    /// pods are released as a new revision.
    pub exact: bool,
}

/// The template of the revision `target`, rebuilt from its ReplicaSet, as a patch of `spec.template`.
pub fn undo(ro: &Rollout, sets: &[ReplicaSet], target: &Target) -> Result<Undo, EditError> {
    let current = pod_template_hash(template_or_err(ro)?);
    let uid = ro.uid();
    let mut mine: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    mine.sort_by_key(|rs| (rs.creation_timestamp().map(|t| t.0), rs.name_any()));
    let hash_of = |rs: &ReplicaSet| {
        rs.labels()
            .get(LABEL_POD_TEMPLATE_HASH)
            .cloned()
            .unwrap_or_default()
    };
    let known = || {
        let list: Vec<String> = mine
            .iter()
            .enumerate()
            .map(|(i, rs)| format!("{} ({})", i + 1, hash_of(rs)))
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let index = match target {
        Target::Previous => mine
            .iter()
            .rposition(|rs| hash_of(rs) != current)
            .ok_or_else(|| EditError::NoEarlier(ro.name_any()))?,
        Target::Given(w) => mine
            .iter()
            .enumerate()
            .position(|(i, rs)| w == &(i + 1).to_string() || w == &hash_of(rs))
            .ok_or_else(|| EditError::NoRevision {
                rollout: ro.name_any(),
                wanted: w.clone(),
                known: known(),
            })?,
    };
    let rs = mine[index];
    let hash = hash_of(rs);
    if hash == current {
        return Err(EditError::AlreadyCurrent(
            ro.name_any(),
            (index + 1).to_string(),
        ));
    }
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let record = pods::parse_record(rs.annotations().get(ANNOTATION_EPHEMERAL_METADATA));
    let mut t = template;
    t.metadata = Some(pods::with_role(
        &t.metadata.unwrap_or_default(),
        &record,
        &Default::default(),
    ));
    let (rebuilt, exact) = rebuild(&t, &hash);
    let patch = json!([
        version_guard(ro),
        {"op": "replace", "path": "/spec/template", "value": rebuilt},
    ]);
    Ok(Undo {
        revision: index + 1,
        hash,
        patch,
        exact,
    })
}

/// The Rollout's template as it was written, from a ReplicaSet's: the labels Sluice adds come
/// off, and of the values the API server fills in (`dnsPolicy: ClusterFirst`, ...), the set
/// whose removal gives back `hash` is found by trying each combination of kinds. Without a
/// match, every default comes off (the same pods, as a new revision).
pub fn rebuild(template: &PodTemplateSpec, hash: &str) -> (Value, bool) {
    let mut base = serde_json::to_value(template).unwrap_or_default();
    if let Some(labels) = base
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(LABEL_POD_TEMPLATE_HASH);
    }
    let mut variants = vec![base.clone()];
    let had_rollout_label = base
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
        .is_some_and(|labels| labels.remove(LABEL_ROLLOUT).is_some());
    if had_rollout_label {
        // Without Sluice's rollout label first: a template rarely carries it itself.
        variants.insert(0, base.clone());
    }
    for v in &variants {
        let kinds = default_kinds(v);
        // Kinds are few (a dozen at most in practice); past 16, only all-or-nothing is tried.
        let combos: Box<dyn Iterator<Item = u32>> = if kinds.len() <= 16 {
            Box::new((0..(1u32 << kinds.len())).rev())
        } else {
            Box::new([(1u32 << 16) - 1, 0].into_iter())
        };
        for mask in combos {
            let mut candidate = v.clone();
            for (i, kind) in kinds.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    strip(&mut candidate, kind);
                }
            }
            if hash_of_value(&candidate).as_deref() == Some(hash) {
                prune_empty(&mut candidate);
                return (candidate, true);
            }
        }
    }
    let mut all = variants[0].clone();
    for kind in default_kinds(&all) {
        strip(&mut all, &kind);
    }
    prune_empty(&mut all);
    (all, false)
}

fn hash_of_value(v: &Value) -> Option<String> {
    serde_json::from_value::<PodTemplateSpec>(v.clone())
        .ok()
        .map(|t| pod_template_hash(&t))
}

/// A default the API server fills in: a field name and the value it gets, anywhere in the pod
/// spec where that field means it.
#[derive(Clone, Debug, PartialEq)]
struct Kind {
    field: &'static str,
    value: Value,
    /// Only under this JSON pointer (one container), or anywhere in the pod spec.
    under: Option<String>,
}

/// The defaults of a pod template's spec, as `k8s.io/kubernetes/pkg/apis/core/v1/defaults.go`
/// sets them, that appear in `template`.
fn default_kinds(template: &Value) -> Vec<Kind> {
    let table = [
        ("dnsPolicy", json!("ClusterFirst")),
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("schedulerName", json!("default-scheduler")),
        ("terminationMessagePath", json!("/dev/termination-log")),
        ("terminationMessagePolicy", json!("File")),
        ("protocol", json!("TCP")),
        ("timeoutSeconds", json!(1)),
        ("periodSeconds", json!(10)),
        ("successThreshold", json!(1)),
        ("failureThreshold", json!(3)),
        ("scheme", json!("HTTP")),
        ("apiVersion", json!("v1")),
        ("defaultMode", json!(420)),
    ];
    // imagePullPolicy is often written for one container and not another: one kind each.
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| {
            let n = template
                .pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            (0..n).map(move |i| format!("/spec/{list}/{i}"))
        });
    let per_container = containers.flat_map(|at| {
        ["IfNotPresent", "Always"].map(|v| Kind {
            field: "imagePullPolicy",
            value: json!(v),
            under: Some(at.clone()),
        })
    });
    table
        .into_iter()
        .map(|(field, value)| Kind {
            field,
            value,
            under: None,
        })
        .chain(per_container)
        .filter(|k| {
            let mut probe = template.clone();
            strip(&mut probe, k)
        })
        .collect()
}

/// Removes every `kind.field: kind.value` under `spec`; whether any was there.
fn strip(template: &mut Value, kind: &Kind) -> bool {
    fn walk(v: &mut Value, kind: &Kind) -> bool {
        match v {
            Value::Object(map) => {
                let mut hit = false;
                if map.get(kind.field) == Some(&kind.value) {
                    map.remove(kind.field);
                    hit = true;
                }
                for child in map.values_mut() {
                    hit |= walk(child, kind);
                }
                hit
            }
            Value::Array(items) => items.iter_mut().fold(false, |hit, c| walk(c, kind) | hit),
            _ => false,
        }
    }
    let at = kind.under.as_deref().unwrap_or("/spec");
    template.pointer_mut(at).is_some_and(|v| walk(v, kind))
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
