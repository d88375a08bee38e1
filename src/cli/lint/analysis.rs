//! Analysis checks: conditions compile with Sluice's CEL, metrics make sense to Sluice's
//! judge, and a Rollout's analyses name templates and arguments that fit, checked by the same
//! functions the controller builds its AnalysisRuns with.

use std::collections::{BTreeMap, BTreeSet};

use super::docs::{Note, error, sound_template, warning};
use super::references::Index;
use crate::analysis::template::{
    ArgContext, TemplateError, build_run, merge_templates, substitute, substitute_metric,
    with_rollout_rules,
};
use crate::analysis::{condition, judge};
use crate::api::analysis::{AnalysisRunSpec, AnalysisTemplateSpec, Metric};
use crate::api::rollout::{AnalysisTemplateRef, Rollout};
use crate::rollout::observe::policy::analysis_uses;

/// What a placeholder with no value is replaced with to check the shape of a metric: a
/// valid number, a valid duration (seconds) and a valid CEL literal.
const STAND_IN: &str = "1";

/// An AnalysisTemplate's (or ClusterAnalysisTemplate's) own problems.
pub fn template(spec: &AnalysisTemplateSpec) -> Vec<Note> {
    let includes = spec.templates.as_ref().is_some_and(|t| !t.is_empty());
    let mut values = BTreeMap::new();
    for a in spec.args.iter().flatten() {
        let v = a.value.clone().unwrap_or_else(|| STAND_IN.to_string());
        values.insert(a.name.clone(), v);
    }
    let mut notes = Vec::new();
    for (i, m) in spec.metrics.iter().flatten().enumerate() {
        notes.extend(metric(m, &format!("spec.metrics[{i}]"), &values, includes));
    }
    if !includes {
        let run = AnalysisRunSpec {
            metrics: spec.metrics.clone().unwrap_or_default(),
            dry_run: spec.dry_run.clone(),
            measurement_retention: spec.measurement_retention.clone(),
            ..AnalysisRunSpec::default()
        };
        notes.extend(rules(&run));
    }
    notes
}

/// An AnalysisRun's own problems (a run made by hand: its arguments are in the run).
pub fn run(spec: &AnalysisRunSpec) -> Vec<Note> {
    let mut values = BTreeMap::new();
    for a in spec.args.iter().flatten() {
        let v = a.value.clone().unwrap_or_else(|| STAND_IN.to_string());
        values.insert(a.name.clone(), v);
    }
    let mut notes = Vec::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        notes.extend(metric(m, &format!("spec.metrics[{i}]"), &values, false));
    }
    notes.extend(rules(spec));
    notes
}

/// `dryRun` and `measurementRetention` rules select metrics (`judge::check_rules`, whose
/// messages start with the rule's field, e.g. `dryRun[0]: ...`).
fn rules(spec: &AnalysisRunSpec) -> Vec<Note> {
    match judge::check_rules(spec) {
        Ok(()) => Vec::new(),
        Err(e) => {
            let field = e
                .split(':')
                .next()
                .filter(|f| !f.contains(' '))
                .unwrap_or("");
            vec![error(
                if field.is_empty() {
                    "spec".to_string()
                } else {
                    format!("spec.{field}")
                },
                e,
            )]
        }
    }
}

/// One metric: its placeholders name arguments, its conditions compile, its numbers and
/// durations are what the judge takes.
fn metric(m: &Metric, at: &str, values: &BTreeMap<String, String>, includes: bool) -> Vec<Note> {
    let mut values = values.clone();
    let keep = BTreeSet::new();
    let filled = loop {
        match substitute_metric(m, &values, &keep) {
            Ok(filled) => break filled,
            // An included template may declare it: give it a stand-in and go on.
            Err(TemplateError::UnknownArgument { arg, .. })
                if includes && !values.contains_key(&arg) =>
            {
                values.insert(arg, STAND_IN.to_string());
            }
            Err(e) => return vec![error(at, e.to_string())],
        }
    };
    let mut notes = Vec::new();
    for (field, cond) in [
        ("successCondition", &m.success_condition),
        ("failureCondition", &m.failure_condition),
    ] {
        if let Some(c) = cond {
            let text = substitute(c, &values, &BTreeSet::new()).unwrap_or_else(|_| c.clone());
            if let Err(e) = condition::check(&text) {
                notes.push(error(format!("{at}.{field}"), e.to_string()));
            }
        }
    }
    if let Err(e) = crate::analysis::template::check_provider(&filled) {
        let (field, why) = e.split_once(": ").unwrap_or(("", e.as_str()));
        notes.push(error(format!("{at}.provider.{field}"), why.to_string()));
    }
    if let Err(e) = judge::MetricPolicy::of(&filled, false, None) {
        let field = e
            .split(':')
            .next()
            .filter(|f| !f.contains(' '))
            .map(|f| format!("{at}.{f}"));
        notes.push(error(field.unwrap_or_else(|| at.to_string()), e));
    }
    notes
}

/// Each analysis of a Rollout: its templates are among the files (a warning when not: they
/// may be in the cluster already), the arguments it passes fit them, and the run Sluice
/// would build from them builds.
pub fn uses(
    ro: &Rollout,
    rollout_json: &serde_json::Value,
    ns: Option<&str>,
    index: &Index,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let lookup = |r: &AnalysisTemplateRef| -> Option<AnalysisTemplateSpec> {
        index.template(r, ns).and_then(sound_template)
    };
    for (key, u) in analysis_uses(ro) {
        let field = key.field();
        let mut complete = true;
        for (j, r) in u.templates.iter().enumerate() {
            if index.template(r, ns).is_none() {
                notes.push(warning(
                    format!("{field}.templates[{j}].templateName"),
                    format!(
                        "{} {:?} is not in the files given; if it is not in the cluster either, Sluice marks the Rollout InvalidSpec and the release does not start",
                        kind_of(r),
                        r.template_name
                    ),
                ));
                complete = false;
            } else if lookup(r).is_none() {
                complete = false; // its own errors are reported where it is written
            }
        }
        if !complete {
            continue;
        }
        let merged = match merge_templates(&u.templates, &lookup) {
            Ok(m) => m,
            Err(TemplateError::NotFound { kind, name }) => {
                notes.push(warning(
                    format!("{field}.templates"),
                    format!("{kind} {name:?}, included by a template, is not in the files given (or has errors of its own); the arguments were not checked"),
                ));
                continue;
            }
            Err(e) => {
                notes.push(error(format!("{field}.templates"), e.to_string()));
                continue;
            }
        };
        notes.extend(arguments(&field, &u.args, &merged, &u.templates));
        let ctx = ArgContext {
            stable_hash: Some("stable".into()),
            latest_hash: Some("latest".into()),
            rollout: as_applied(rollout_json),
        };
        let built = build_run(&merged, &u.args, &ctx).and_then(|spec| {
            with_rollout_rules(spec, u.dry_run.as_deref(), u.retention.as_deref())
        });
        match built {
            Ok(_) | Err(TemplateError::MissingArgument(_)) => {}
            Err(e) => notes.push(error(
                field.clone(),
                format!("the AnalysisRun cannot be built: {e}"),
            )),
        }
    }
    notes
}

/// The Rollout as the API server stores it, for `valueFrom.fieldRef`: a manifest usually
/// leaves its namespace to `kubectl -n`, and the server sets it (and a uid).
fn as_applied(rollout: &serde_json::Value) -> serde_json::Value {
    let mut r = rollout.clone();
    if let Some(meta) = r.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for (field, stand_in) in [
            ("namespace", "default"),
            ("uid", "00000000-0000-0000-0000-000000000000"),
        ] {
            meta.entry(field)
                .or_insert_with(|| serde_json::Value::String(stand_in.into()));
        }
    }
    r
}

fn kind_of(r: &AnalysisTemplateRef) -> &'static str {
    if r.cluster_scope == Some(true) {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// Arguments the templates require and the Rollout does not pass (errors: the run cannot
/// be built), and arguments it passes that no template declares (warnings: ignored).
fn arguments(
    field: &str,
    given: &[crate::api::analysis::Argument],
    merged: &AnalysisTemplateSpec,
    refs: &[AnalysisTemplateRef],
) -> Vec<Note> {
    let mut notes = Vec::new();
    let declared: Vec<&crate::api::analysis::Argument> = merged.args.iter().flatten().collect();
    let names = refs
        .iter()
        .map(|r| format!("{:?}", r.template_name))
        .collect::<Vec<_>>()
        .join(", ");
    for a in &declared {
        let passed = given
            .iter()
            .any(|g| g.name == a.name && (g.value.is_some() || g.value_from.is_some()));
        if a.value.is_none() && a.value_from.is_none() && !passed {
            notes.push(error(
                format!("{field}.args"),
                format!(
                    "argument {:?} is required by the template ({names}) and not passed: add {{name: {}, value: ...}} to args",
                    a.name, a.name
                ),
            ));
        }
    }
    for (i, g) in given.iter().enumerate() {
        if !declared.iter().any(|a| a.name == g.name) {
            notes.push(warning(
                format!("{field}.args[{i}].name"),
                format!("argument {:?} is not declared by the template ({names}), so it is ignored; is the name misspelt?", g.name),
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> AnalysisTemplateSpec {
        serde_json::from_value(v).expect("spec")
    }

    fn shown(notes: &[Note]) -> Vec<String> {
        notes
            .iter()
            .map(|n| format!("{} {}: {}", n.severity, n.path, n.message))
            .collect()
    }

    #[test]
    fn conditions_compile_after_their_arguments() {
        let t = spec(
            json!({"args": [{"name": "min", "value": "0.95"}, {"name": "app"}],
            "metrics": [{"name": "ok", "successCondition": "result[0] >= {{args.min}}",
                         "provider": {"prometheus": {"address": "http://p", "query": "up{app=\"{{args.app}}\"}"}}},
                        {"name": "typo", "successCondition": "isNan(result[0])",
                         "provider": {"prometheus": {"address": "http://p", "query": "up"}}}]}),
        );
        let n = shown(&template(&t));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].starts_with(
                "error spec.metrics[1].successCondition: condition `isNan(result[0])` is invalid"
            ),
            "{n:?}"
        );
    }

    #[test]
    fn an_undeclared_placeholder_is_an_error_unless_an_include_may_declare_it() {
        let m = json!({"name": "q", "provider": {"prometheus": {"address": "http://p", "query": "up{app=\"{{args.app}}\"}"}}});
        let n = shown(&template(&spec(json!({"metrics": [m.clone()]}))));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].contains("no template declares argument \"app\""),
            "{n:?}"
        );
        let n = template(&spec(
            json!({"metrics": [m], "templates": [{"templateName": "base"}]}),
        ));
        assert!(n.is_empty(), "{:?}", shown(&n));
    }

    #[test]
    fn metric_settings_go_through_the_judge() {
        let t = spec(
            json!({"metrics": [{"name": "q", "interval": "1x", "provider": {"web": {"url": "http://x"}}}]}),
        );
        let n = shown(&template(&t));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].starts_with("error spec.metrics[0].interval: interval:"),
            "{n:?}"
        );
    }

    #[test]
    fn dry_run_rules_must_select_a_metric() {
        let t = spec(
            json!({"metrics": [{"name": "q", "provider": {"web": {"url": "http://x"}}}],
                            "dryRun": [{"metricName": "nothing"}]}),
        );
        let n = shown(&template(&t));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].starts_with("error spec.dryRun[0]: dryRun[0]: Rule didn't match"),
            "{n:?}"
        );
    }

    #[test]
    fn arguments_missing_and_extra() {
        let merged =
            spec(json!({"args": [{"name": "app"}, {"name": "min", "value": "1"}], "metrics": []}));
        let given: Vec<crate::api::analysis::Argument> =
            serde_json::from_value(json!([{"name": "ap", "value": "web"}])).expect("args");
        let refs = vec![AnalysisTemplateRef {
            template_name: "rate".into(),
            cluster_scope: None,
        }];
        let n = shown(&arguments("spec.x", &given, &merged, &refs));
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            n[0].starts_with("error spec.x.args: argument \"app\" is required"),
            "{n:?}"
        );
        assert!(
            n[1].starts_with("warning spec.x.args[0].name: argument \"ap\" is not declared"),
            "{n:?}"
        );
    }
}
