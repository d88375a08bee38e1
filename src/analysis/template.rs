//! From templates to an AnalysisRun: merge the referenced templates (and the templates they
//! include), bind the arguments, and substitute `{{args.name}}`. Pure: the caller fetches the
//! templates and passes what it found.
//!
//! Secrets never enter an AnalysisRun: an argument taken from a Secret stays a `valueFrom`
//! reference in the run, and its `{{args.name}}` placeholders are substituted only in the
//! transient copy of a metric that a provider measures.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::condition;
use crate::api::analysis::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, DryRun, MeasurementRetention, Metric,
    PodTemplateHashValue, ValueFrom,
};
use crate::api::rollout::AnalysisTemplateRef;

/// How deep templates may include templates.
pub const MAX_TEMPLATE_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("templates include each other in a cycle: {0}")]
    Cycle(String),
    #[error("metric {0:?} is defined by more than one template")]
    DuplicateMetric(String),
    #[error("argument {name:?} has two different values in the templates: {a:?} and {b:?}")]
    ConflictingArgument { name: String, a: String, b: String },
    #[error("argument {0:?} has no value: give it one in the Rollout's analysis args")]
    MissingArgument(String),
    #[error("metric {metric:?} uses {{{{args.{arg}}}}}, but no template declares argument {arg:?}")]
    UnknownArgument { metric: String, arg: String },
    #[error("argument {name:?}: {message}")]
    BadArgument { name: String, message: String },
    #[error("metric {metric:?}: {message}")]
    BadMetric { metric: String, message: String },
    #[error("{0}")]
    BadRules(String),
    /// A field written with `{{args.name}}` that does not resolve to a valid value; `detail`
    /// says what was written, the arguments' values, and what is wrong.
    #[error("metric {metric:?}: {field} is {detail}")]
    BadTemplatedField {
        metric: String,
        field: &'static str,
        detail: String,
    },
}

fn template_key(r: &AnalysisTemplateRef) -> String {
    if r.cluster_scope.unwrap_or(false) {
        format!("ClusterAnalysisTemplate/{}", r.template_name)
    } else {
        format!("AnalysisTemplate/{}", r.template_name)
    }
}

/// Merges the referenced templates and everything they include. `lookup` returns a
/// template's spec (a ClusterAnalysisTemplate converted to the same shape), or `None`.
pub fn merge_templates(
    refs: &[AnalysisTemplateRef],
    lookup: &dyn Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec>,
) -> Result<AnalysisTemplateSpec, TemplateError> {
    let mut merged = AnalysisTemplateSpec::default();
    let mut seen_metrics = BTreeSet::new();
    let mut path = Vec::new();
    for r in refs {
        merge_one(r, lookup, &mut merged, &mut seen_metrics, &mut path)?;
    }
    Ok(merged)
}

fn merge_one(
    r: &AnalysisTemplateRef,
    lookup: &dyn Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec>,
    merged: &mut AnalysisTemplateSpec,
    seen_metrics: &mut BTreeSet<String>,
    path: &mut Vec<String>,
) -> Result<(), TemplateError> {
    let key = template_key(r);
    if path.contains(&key) || path.len() >= MAX_TEMPLATE_DEPTH {
        path.push(key);
        return Err(TemplateError::Cycle(path.join(" → ")));
    }
    let spec = lookup(r).ok_or_else(|| TemplateError::NotFound {
        kind: if r.cluster_scope.unwrap_or(false) {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        },
        name: r.template_name.clone(),
    })?;
    path.push(key);
    for inner in spec.templates.iter().flatten() {
        merge_one(inner, lookup, merged, seen_metrics, path)?;
    }
    path.pop();

    for m in spec.metrics.iter().flatten() {
        if !seen_metrics.insert(m.name.clone()) {
            return Err(TemplateError::DuplicateMetric(m.name.clone()));
        }
        merged.metrics.get_or_insert_with(Vec::new).push(m.clone());
    }
    for a in spec.args.iter().flatten() {
        let args = merged.args.get_or_insert_with(Vec::new);
        match args.iter_mut().find(|x| x.name == a.name) {
            None => args.push(a.clone()),
            Some(existing) => {
                if existing.value.is_some() && a.value.is_some() && existing.value != a.value {
                    return Err(TemplateError::ConflictingArgument {
                        name: a.name.clone(),
                        a: existing.value.clone().unwrap_or_default(),
                        b: a.value.clone().unwrap_or_default(),
                    });
                }
                if existing.value.is_none() && existing.value_from.is_none() {
                    *existing = a.clone();
                }
            }
        }
    }
    for d in spec.dry_run.iter().flatten() {
        let v = merged.dry_run.get_or_insert_with(Vec::new);
        if !v.contains(d) {
            v.push(d.clone());
        }
    }
    for m in spec.measurement_retention.iter().flatten() {
        let v = merged.measurement_retention.get_or_insert_with(Vec::new);
        if !v.contains(m) {
            v.push(m.clone());
        }
    }
    Ok(())
}

/// Adds a Rollout analysis block's own `dryRun` and `measurementRetention` rules to the run
/// its templates made, in Argo Rollouts' order (the Rollout's first, then the templates', so
/// a template's retention rule matched later wins), each identical rule once, and checks them
/// against the run's metrics (`judge::check_rules`): a rule that selects no metric, a pattern
/// that is not a regular expression, or two retention limits for one pattern are refused.
pub fn with_rollout_rules(
    mut spec: AnalysisRunSpec,
    dry_run: Option<&[DryRun]>,
    retention: Option<&[MeasurementRetention]>,
) -> Result<AnalysisRunSpec, TemplateError> {
    fn merged<T: Clone + PartialEq>(first: Option<&[T]>, then: Option<Vec<T>>) -> Option<Vec<T>> {
        let mut out: Vec<T> = Vec::new();
        for r in first
            .into_iter()
            .flatten()
            .cloned()
            .chain(then.into_iter().flatten())
        {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        (!out.is_empty()).then_some(out)
    }
    spec.dry_run = merged(dry_run, spec.dry_run.take());
    spec.measurement_retention = merged(retention, spec.measurement_retention.take());
    super::judge::check_rules(&spec).map_err(TemplateError::BadRules)?;
    Ok(spec)
}

/// What arguments may be taken from.
#[derive(Debug, Clone, Default)]
pub struct ArgContext {
    pub stable_hash: Option<String>,
    pub latest_hash: Option<String>,
    /// The Rollout as JSON, for `valueFrom.fieldRef`.
    pub rollout: Value,
}

/// Binds the arguments (the Rollout's override the templates' defaults), substitutes every
/// non-secret `{{args.name}}`, and checks every condition compiles. Secret arguments stay
/// references.
pub fn build_run(
    merged: &AnalysisTemplateSpec,
    rollout_args: &[Argument],
    ctx: &ArgContext,
) -> Result<AnalysisRunSpec, TemplateError> {
    let mut bound: Vec<Argument> = Vec::new();
    for a in merged.args.iter().flatten() {
        let given = rollout_args.iter().find(|x| x.name == a.name);
        let chosen = match given {
            Some(g) if g.value.is_some() || g.value_from.is_some() => g,
            _ => a,
        };
        bound.push(resolve_argument(chosen, ctx)?);
    }
    let plain: BTreeMap<String, String> = bound
        .iter()
        .filter_map(|a| a.value.clone().map(|v| (a.name.clone(), v)))
        .collect();
    let secret: BTreeSet<String> = bound
        .iter()
        .filter(|a| a.value.is_none())
        .map(|a| a.name.clone())
        .collect();

    let mut metrics = Vec::new();
    for m in merged.metrics.iter().flatten() {
        let metric = substitute_metric(m, &plain, &secret)?;
        check_templated_fields(m, &metric, &plain)?;
        check_metric(&metric)?;
        metrics.push(metric);
    }
    Ok(AnalysisRunSpec {
        metrics,
        args: (!bound.is_empty()).then_some(bound),
        terminate: None,
        dry_run: merged.dry_run.clone(),
        measurement_retention: merged.measurement_retention.clone(),
    })
}

fn resolve_argument(a: &Argument, ctx: &ArgContext) -> Result<Argument, TemplateError> {
    let bad = |message: String| TemplateError::BadArgument {
        name: a.name.clone(),
        message,
    };
    let value = match (&a.value, &a.value_from) {
        (Some(v), _) => v.clone(),
        (None, None) => return Err(TemplateError::MissingArgument(a.name.clone())),
        (None, Some(from)) => match from {
            ValueFrom {
                pod_template_hash_value: Some(which),
                ..
            } => {
                let hash = match which {
                    PodTemplateHashValue::Stable => ctx.stable_hash.clone(),
                    PodTemplateHashValue::Latest => ctx.latest_hash.clone(),
                };
                hash.ok_or_else(|| bad(format!("the {which:?} revision has no hash yet")))?
            }
            ValueFrom {
                field_ref: Some(f), ..
            } => field_value(&ctx.rollout, &f.field_path)
                .ok_or_else(|| bad(format!("the Rollout has no field {}", f.field_path)))?,
            ValueFrom {
                secret_key_ref: Some(_),
                ..
            } => {
                return Ok(Argument {
                    name: a.name.clone(),
                    value: None,
                    value_from: a.value_from.clone(),
                });
            }
            _ => return Err(TemplateError::MissingArgument(a.name.clone())),
        },
    };
    Ok(Argument {
        name: a.name.clone(),
        value: Some(value),
        value_from: None,
    })
}

/// A run's arguments: the values of the plain ones, and the names of the secret ones (read
/// only when measuring). A run built from a Rollout has its plain arguments substituted
/// already; one a person created may still carry `{{args.name}}` anywhere, numbers included.
pub fn run_arguments(spec: &AnalysisRunSpec) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut plain = BTreeMap::new();
    let mut secret = BTreeSet::new();
    for a in spec.args.iter().flatten() {
        match &a.value {
            Some(v) => {
                plain.insert(a.name.clone(), v.clone());
            }
            None => {
                secret.insert(a.name.clone());
            }
        }
    }
    (plain, secret)
}

/// Reads `metadata.labels['app']`, `spec.replicas`, `metadata.name` from a JSON object.
pub fn field_value(root: &Value, path: &str) -> Option<String> {
    let mut cur = root;
    let mut rest = path.trim().trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let key = after[..end].trim().trim_matches(|c| c == '\'' || c == '"');
            cur = match cur {
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => cur.get(key)?,
            };
            rest = after[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(_) | Value::Bool(_) => Some(cur.to_string()),
        other => Some(other.to_string()),
    }
}

/// The argument names referenced as `{{args.name}}` (spaces inside the braces allowed).
fn placeholders(s: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = s[from..].find("{{").map(|i| i + from) {
        let Some(end) = s[start..].find("}}").map(|i| i + start + 2) else {
            break;
        };
        let inner = s[start + 2..end - 2].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            out.push((start..end, name.trim().to_string()));
        }
        from = end;
    }
    out
}

/// Replaces `{{args.name}}` for the names in `values`; names in `keep` stay as they are;
/// any other name is an error.
pub fn substitute(
    s: &str,
    values: &BTreeMap<String, String>,
    keep: &BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (range, name) in placeholders(s) {
        out.push_str(&s[last..range.start]);
        if let Some(v) = values.get(&name) {
            out.push_str(v);
        } else if keep.contains(&name) {
            out.push_str(&s[range.clone()]);
        } else {
            return Err(name);
        }
        last = range.end;
    }
    out.push_str(&s[last..]);
    Ok(out)
}

fn substitute_value(
    v: &mut Value,
    values: &BTreeMap<String, String>,
    keep: &BTreeSet<String>,
) -> Result<(), String> {
    match v {
        Value::String(s) => {
            *s = substitute(s, values, keep)?;
        }
        Value::Array(items) => {
            for i in items {
                substitute_value(i, values, keep)?;
            }
        }
        Value::Object(map) => {
            for (_, i) in map.iter_mut() {
                substitute_value(i, values, keep)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A copy of `m` with the placeholders of `values` substituted.
pub fn substitute_metric(
    m: &Metric,
    values: &BTreeMap<String, String>,
    keep: &BTreeSet<String>,
) -> Result<Metric, TemplateError> {
    let bad = |message: String| TemplateError::BadMetric {
        metric: m.name.clone(),
        message,
    };
    let mut json = serde_json::to_value(m).map_err(|e| bad(e.to_string()))?;
    substitute_value(&mut json, values, keep).map_err(|arg| TemplateError::UnknownArgument {
        metric: m.name.clone(),
        arg,
    })?;
    serde_json::from_value(json).map_err(|e| bad(format!("after substituting arguments: {e}")))
}

/// A numeric field as text: an integer or the string written.
fn int_text(
    v: &Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
) -> Option<String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    v.as_ref().map(|v| match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    })
}

/// The fields that may be written as `{{args.name}}` in a template (`interval`, `initialDelay`,
/// `count`, `failureLimit`, `inconclusiveLimit`, `consecutiveErrorLimit`): as written in
/// `original`, and as `resolved` after the arguments were substituted.
fn templated_fields(m: &Metric) -> [(&'static str, Option<String>); 6] {
    [
        ("interval", m.interval.as_ref().map(|d| d.0.clone())),
        (
            "initialDelay",
            m.initial_delay.as_ref().map(|d| d.0.clone()),
        ),
        ("count", int_text(&m.count)),
        ("failureLimit", int_text(&m.failure_limit)),
        ("inconclusiveLimit", int_text(&m.inconclusive_limit)),
        (
            "consecutiveErrorLimit",
            int_text(&m.consecutive_error_limit),
        ),
    ]
}

/// Why a templated field's resolved text is not a valid value, if it is not.
fn templated_problem(field: &str, value: &str) -> Option<String> {
    if value.contains("{{") {
        return Some("a secret argument cannot be used in a number or a duration".into());
    }
    match field {
        "interval" | "initialDelay" => crate::api::duration::parse_duration(value)
            .err()
            .map(|e| format!("not a duration: {e}")),
        _ => match value.trim().parse::<i32>() {
            Err(_) => Some("not a whole number".into()),
            Ok(n) if field == "count" && n < 1 => Some("count must be at least 1".into()),
            Ok(n) if n < -1 => Some(format!("{field} must be -1 (no limit) or more")),
            Ok(_) => None,
        },
    }
}

/// Every field written with `{{args.name}}` in `original` resolved, in `resolved`, to a valid
/// number or duration; otherwise the error names the metric, the field, the argument and the
/// value (Argo Rollouts reads a non-number as 0 without a word; Sluice refuses it).
fn check_templated_fields(
    original: &Metric,
    resolved: &Metric,
    values: &BTreeMap<String, String>,
) -> Result<(), TemplateError> {
    for ((field, written), (_, now)) in templated_fields(original)
        .into_iter()
        .zip(templated_fields(resolved))
    {
        let Some(written) = written else { continue };
        let names: Vec<String> = placeholders(&written).into_iter().map(|(_, n)| n).collect();
        if names.is_empty() {
            continue;
        }
        let value = now.unwrap_or_default();
        if let Some(message) = templated_problem(field, &value) {
            let args = names
                .iter()
                .map(|n| match values.get(n) {
                    Some(v) => format!("argument {n:?} = {v:?}"),
                    None => format!("argument {n:?} (a secret)"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TemplateError::BadTemplatedField {
                metric: original.name.clone(),
                field,
                detail: format!("{written:?}, and {args} makes it {value:?}: {message}"),
            });
        }
    }
    Ok(())
}

/// The `compare` and `burnRate` providers' own settings make sense, and a metric using one
/// has no condition (they judge a measurement themselves). The message starts with the
/// provider's field, e.g. `compare: ...`.
pub fn check_provider(m: &Metric) -> Result<(), String> {
    let decides = if let Some(c) = &m.provider.compare {
        super::compare::check(c).map_err(|e| format!("compare: {e}"))?;
        Some("compare")
    } else if let Some(b) = &m.provider.burn_rate {
        super::burn::alerts(b).map_err(|e| format!("burnRate: {e}"))?;
        Some("burnRate")
    } else {
        None
    };
    match decides {
        Some(provider) if m.success_condition.is_some() || m.failure_condition.is_some() => {
            Err(format!(
                "{provider}: a {provider} metric judges each measurement itself \
                 (docs/statistics.md); remove successCondition and failureCondition"
            ))
        }
        _ => Ok(()),
    }
}

/// Conditions compile; numbers that came from arguments are numbers; durations parse.
pub fn check_metric(m: &Metric) -> Result<(), TemplateError> {
    let bad = |message: String| TemplateError::BadMetric {
        metric: m.name.clone(),
        message,
    };
    for (field, cond) in [
        ("successCondition", &m.success_condition),
        ("failureCondition", &m.failure_condition),
    ] {
        if let Some(c) = cond {
            if c.contains("{{") {
                return Err(bad(format!("{field} cannot use a secret argument")));
            }
            condition::check(c).map_err(|e| bad(format!("{field}: {e}")))?;
        }
    }
    if let Some(job) = &m.provider.job
        && serde_json::to_string(job).is_ok_and(|j| j.contains("{{"))
    {
        return Err(bad(
            "a job metric cannot use a secret argument (it would be written into the Job); \
             give the Job's container an env var with valueFrom.secretKeyRef instead"
                .into(),
        ));
    }
    check_provider(m).map_err(bad)?;
    super::judge::MetricPolicy::of(m, false, None).map_err(bad)?;
    Ok(())
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
