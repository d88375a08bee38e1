use serde_json::{Value, json};

use super::*;
use crate::cli::lint::yaml::parse_documents;

/// One document converted: what is written (as JSON), what became of it, and the remarks as
/// `change path: text` lines.
fn convert(yaml: &str) -> (Option<Value>, Outcome, Vec<String>) {
    let mut nodes = parse_documents(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
    assert_eq!(nodes.len(), 1, "one document: {yaml}");
    let (out, outcome, remarks) = document("t.yaml", 1, nodes.remove(0));
    let lines = remarks
        .iter()
        .map(|r| format!("{:?} {}: {}", r.change, r.path, r.text))
        .collect();
    (out.map(|n| n.to_json()), outcome, lines)
}

/// Whether some remark line starts with `start`.
fn has(remarks: &[String], start: &str) -> bool {
    remarks.iter().any(|r| r.starts_with(start))
}

/// Argo Rollouts' AnalysisRun as people write one by hand: the metrics in the run, the args
/// with their values, expr-lang conditions, a dry-run metric and a retention rule.
const RUN: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: checkout-check
  labels: {app: checkout}
spec:
  args:
    - {name: service, value: checkout-active}
    - {name: min-success, value: "0.95"}
  metrics:
    - name: success-ratio
      interval: 2s
      count: 3
      successCondition: len(result) == 1 and result[0] >= {{args.min-success}}
      failureCondition: not (result[0] >= 0.5)
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: ratio{service="{{args.service}}"}
    - name: request-rate
      successCondition: all(result, {# > 1})
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: rate{service="{{args.service}}"}
  dryRun: [{metricName: request-rate}]
  measurementRetention: [{metricName: success-ratio, limit: 5}]
"#;

#[test]
fn an_analysis_run_keeps_its_args_and_its_conditions_become_cel() {
    let (out, outcome, remarks) = convert(RUN);
    assert_eq!(outcome, Outcome::Converted, "{remarks:#?}");
    assert_eq!(
        remarks,
        [
            "Changed apiVersion: argoproj.io/v1alpha1 -> sluice.dev/v1alpha1",
            "Changed spec.metrics[0].successCondition: `len(result) == 1 and result[0] >= {{args.min-success}}` -> `len(result) == 1 && result[0] >= {{args.min-success}}` (CEL)",
            "Changed spec.metrics[0].failureCondition: `not (result[0] >= 0.5)` -> `! (result[0] >= 0.5)` (CEL)",
            "Changed spec.metrics[1].successCondition: `all(result, {# > 1})` -> `result.all(x, x > 1)` (CEL)",
        ]
    );
    let out = out.expect("written");
    assert_eq!(out["apiVersion"], "sluice.dev/v1alpha1");
    assert_eq!(out["kind"], "AnalysisRun");
    assert_eq!(
        out["metadata"],
        json!({"name": "checkout-check", "labels": {"app": "checkout"}})
    );
    let spec = &out["spec"];
    assert_eq!(
        spec["args"],
        json!([{"name": "service", "value": "checkout-active"},
               {"name": "min-success", "value": "0.95"}]),
        "the args and their values are kept"
    );
    assert_eq!(
        spec["metrics"][0]["provider"]["prometheus"]["query"],
        "ratio{service=\"{{args.service}}\"}",
        "placeholders are kept for Sluice to substitute"
    );
    assert_eq!(spec["dryRun"], json!([{"metricName": "request-rate"}]));
    assert_eq!(
        spec["measurementRetention"],
        json!([{"metricName": "success-ratio", "limit": 5}])
    );
    // What is written reads as Sluice's AnalysisRun.
    let run: crate::api::analysis::AnalysisRun =
        serde_json::from_value(out).expect("a Sluice AnalysisRun");
    assert_eq!(run.spec.metrics.len(), 2);
}

#[test]
fn an_exported_analysis_run_loses_what_argo_and_the_api_server_set() {
    let exported = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: shop-6d4f9c8b7-3-2
  namespace: shop
  uid: 1b0c2d7e-0000-4000-8000-000000000001
  resourceVersion: "123"
  labels: {rollout-type: Step, rollouts-pod-template-hash: 6d4f9c8b7}
  annotations: {rollout.argoproj.io/revision: "3", team: shop}
  ownerReferences:
    - {apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: shop, uid: 9a8b7c6d, controller: true}
    - {apiVersion: example.com/v1, kind: Release, name: shop, uid: 5e4f3a2b}
spec:
  args: [{name: service-name, value: shop-canary}]
  metrics:
    - name: success-rate
      successCondition: result[0] >= 0.95
      provider:
        prometheus: {address: "http://prometheus:9090", query: "up"}
status:
  phase: Successful
  metricResults: [{name: success-rate, phase: Successful, count: 3, successful: 3}]
"#;
    let (out, outcome, remarks) = convert(exported);
    assert_eq!(outcome, Outcome::Converted, "{remarks:#?}");
    assert_eq!(
        remarks,
        [
            "Changed apiVersion: argoproj.io/v1alpha1 -> sluice.dev/v1alpha1",
            "Dropped status: the run's status (its verdict and measurements) is not carried over: once applied, Sluice measures the run again from the start",
            "Dropped metadata: uid, resourceVersion, annotation rollout.argoproj.io/revision (set by the API server or Argo Rollouts' controller)",
            "Dropped metadata.ownerReferences: owned by Argo Rollouts' Rollout/shop: kept, Kubernetes' garbage collector would delete the converted object together with Argo's, or right after it is applied where Argo's is gone",
        ]
    );
    let out = out.expect("written");
    assert_eq!(out.get("status"), None);
    assert_eq!(
        out["metadata"],
        json!({
            "name": "shop-6d4f9c8b7-3-2",
            "namespace": "shop",
            "labels": {"rollout-type": "Step", "rollouts-pod-template-hash": "6d4f9c8b7"},
            "annotations": {"team": "shop"},
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Release", "name": "shop", "uid": "5e4f3a2b"}]
        }),
        "other owners and annotations are kept"
    );

    // Only Argo's owner: the field goes.
    let only_argo = exported.replace(
        "    - {apiVersion: example.com/v1, kind: Release, name: shop, uid: 5e4f3a2b}\n",
        "",
    );
    let (out, _, _) = convert(&only_argo);
    assert_eq!(
        out.expect("written")["metadata"].get("ownerReferences"),
        None
    );
}

#[test]
fn analysis_runs_sluice_cannot_measure_are_refused_with_the_reason() {
    // Argo's AnalysisRun has no templates: what some guides write is not a run of anything.
    let (out, outcome, remarks) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {name: r}\nspec:\n  templates: [{templateName: success-rate}]\n  args: [{name: a, value: b}]\n",
    );
    assert_eq!((out, outcome), (None, Outcome::Failed), "{remarks:#?}");
    assert!(
        has(
            &remarks,
            "Dropped spec.templates: an AnalysisRun names no templates"
        ),
        "{remarks:#?}"
    );
    assert!(has(&remarks, "Error spec.metrics: "), "{remarks:#?}");

    // Its only metric is Datadog's: no metric left.
    let (out, outcome, remarks) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {name: r}\nspec:\n  metrics:\n    - name: errors\n      successCondition: result < 0.01\n      provider: {datadog: {query: 'sum:errors{*}'}}\n",
    );
    assert_eq!((out, outcome), (None, Outcome::Failed), "{remarks:#?}");
    assert!(
        has(
            &remarks,
            "Dropped spec.metrics[0].provider.datadog: metric \"errors\" removed"
        ),
        "{remarks:#?}"
    );

    // A condition with no CEL form.
    let (out, outcome, remarks) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {name: r}\nspec:\n  metrics:\n    - name: m\n      successCondition: result[0] ?? 0 > 1\n      provider: {prometheus: {address: 'http://p:9090', query: up}}\n",
    );
    assert_eq!((out, outcome), (None, Outcome::Failed), "{remarks:#?}");
    assert!(
        has(
            &remarks,
            "Error spec.metrics[0].successCondition: `result[0] ?? 0 > 1` cannot be converted to CEL"
        ),
        "{remarks:#?}"
    );
}

#[test]
fn a_generate_name_is_kept_with_a_note_that_apply_needs_a_name() {
    let text = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {generateName: smoke-}\nspec:\n  metrics:\n    - name: up\n      successCondition: result == 'true'\n      provider: {web: {url: 'http://shop/healthz'}}\n";
    let (out, outcome, remarks) = convert(text);
    assert_eq!(outcome, Outcome::Converted, "{remarks:#?}");
    assert_eq!(
        out.expect("written")["metadata"],
        json!({"generateName": "smoke-"})
    );
    assert!(
        has(
            &remarks,
            "Note metadata.generateName: kept: `kubectl apply` needs a name"
        ),
        "{remarks:#?}"
    );
    let m = super::super::migrate_text("t.yaml", text);
    assert_eq!(m.reports[0].object, "AnalysisRun/smoke-*");
}

#[test]
fn a_cluster_analysis_template_keeps_its_arg_defaults_and_placeholders() {
    let (out, outcome, remarks) = convert(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: service}, {name: max, value: "0.01"}]
  metrics:
    - name: error-rate
      interval: 1m
      successCondition: len(result) > 0 and not isNaN(result[0]) and result[0] <= {{args.max}}
      failureCondition: isNil(result) or asFloat(result[0]) > 0.5
      consecutiveSuccessLimit: 3
      provider:
        prometheus:
          address: http://prometheus:9090
          query: errors{service="{{args.service}}"}
"#,
    );
    assert_eq!(outcome, Outcome::Converted, "{remarks:#?}");
    let out = out.expect("written");
    assert_eq!(out["apiVersion"], "sluice.dev/v1alpha1");
    assert_eq!(out["kind"], "ClusterAnalysisTemplate");
    let m = &out["spec"]["metrics"][0];
    assert_eq!(
        m["successCondition"],
        "len(result) > 0 && ! isNaN(result[0]) && result[0] <= {{args.max}}"
    );
    assert_eq!(
        m["failureCondition"],
        "(result == null) || double(result[0]) > 0.5"
    );
    assert_eq!(m.get("consecutiveSuccessLimit"), None);
    assert!(
        has(
            &remarks,
            "Dropped spec.metrics[0].consecutiveSuccessLimit: Sluice counts judged measurements"
        ),
        "{remarks:#?}"
    );
    assert_eq!(
        out["spec"]["args"],
        json!([{"name": "service"}, {"name": "max", "value": "0.01"}])
    );
}

#[test]
fn rollouts_other_kinds_and_experiments() {
    // A blue-green's deprecated single templateName becomes a list.
    let (out, outcome, remarks) = convert(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
  strategy:
    blueGreen:
      activeService: web-active
      prePromotionAnalysis: {templateName: smoke}
"#,
    );
    assert_eq!(outcome, Outcome::Converted, "{remarks:#?}");
    assert_eq!(
        out.expect("written")["spec"]["strategy"]["blueGreen"]["prePromotionAnalysis"],
        json!({"templates": [{"templateName": "smoke"}]})
    );
    assert!(has(
        &remarks,
        "Changed spec.strategy.blueGreen.prePromotionAnalysis.templateName: the deprecated single templateName"
    ));

    // Not Argo's: written as it was, with no remark.
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web-active, uid: x}\nspec: {selector: {app: web}}\n";
    let (out, outcome, remarks) = convert(svc);
    assert_eq!(outcome, Outcome::Unchanged);
    assert!(remarks.is_empty(), "{remarks:#?}");
    assert_eq!(
        out.expect("written")["metadata"],
        json!({"name": "web-active", "uid": "x"})
    );

    // An Experiment has no counterpart.
    let (out, outcome, remarks) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\nspec: {templates: []}\n",
    );
    assert_eq!((out, outcome), (None, Outcome::LeftOut));
    assert!(has(
        &remarks,
        "Dropped kind: Experiment: Sluice has no Experiments"
    ));
}
