//! Tests of templates and arguments to a run.

use super::*;
use crate::api::analysis::{FieldRef, MetricProvider, PrometheusMetric, SecretKeyRef};
use serde_json::json;

fn prom(name: &str, query: &str, cond: &str) -> Metric {
    Metric {
        name: name.into(),
        success_condition: Some(cond.into()),
        provider: MetricProvider {
            prometheus: Some(PrometheusMetric {
                address: "http://prom:9090".into(),
                query: query.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Prometheus part of the run's first metric.
fn prometheus_of(run: &AnalysisRunSpec) -> &PrometheusMetric {
    run.metrics[0]
        .provider
        .prometheus
        .as_ref()
        .expect("a prometheus metric")
}

/// An argument read from key `key` of Secret `secret`.
fn secret_arg(name: &str, secret: &str, key: &str) -> Argument {
    Argument {
        name: name.into(),
        value: None,
        value_from: Some(ValueFrom {
            secret_key_ref: Some(SecretKeyRef {
                name: secret.into(),
                key: key.into(),
            }),
            ..Default::default()
        }),
    }
}

fn arg(name: &str, value: Option<&str>) -> Argument {
    Argument {
        name: name.into(),
        value: value.map(Into::into),
        value_from: None,
    }
}

fn tref(name: &str) -> AnalysisTemplateRef {
    AnalysisTemplateRef {
        template_name: name.into(),
        cluster_scope: None,
    }
}

fn library() -> BTreeMap<String, AnalysisTemplateSpec> {
    let mut lib = BTreeMap::new();
    lib.insert(
        "AnalysisTemplate/success-rate".to_string(),
        AnalysisTemplateSpec {
            metrics: Some(vec![prom(
                "success-rate",
                "rate{app=\"{{args.service}}\",hash=\"{{ args.hash }}\"}",
                "result[0] >= {{args.threshold}}",
            )]),
            args: Some(vec![
                arg("service", None),
                arg("threshold", Some("0.95")),
                Argument {
                    name: "hash".into(),
                    value: None,
                    value_from: Some(ValueFrom {
                        pod_template_hash_value: Some(PodTemplateHashValue::Latest),
                        ..Default::default()
                    }),
                },
            ]),
            ..Default::default()
        },
    );
    lib.insert(
        "ClusterAnalysisTemplate/latency".to_string(),
        AnalysisTemplateSpec {
            metrics: Some(vec![prom(
                "latency",
                "p99{app=\"{{args.service}}\"}",
                "result[0] < 0.5",
            )]),
            args: Some(vec![arg("service", None)]),
            templates: Some(vec![tref("success-rate")]),
            ..Default::default()
        },
    );
    lib
}

fn lookup_in(
    lib: &BTreeMap<String, AnalysisTemplateSpec>,
) -> impl Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec> + '_ {
    move |r| lib.get(&template_key(r)).cloned()
}

fn ctx() -> ArgContext {
    ArgContext {
        stable_hash: Some("aaa".into()),
        latest_hash: Some("bbb".into()),
        rollout: json!({"metadata": {"name": "shop", "labels": {"app.kubernetes.io/name": "shop"}}}),
    }
}

#[test]
fn included_templates_merge_and_arguments_bind() {
    let lib = library();
    let merged = merge_templates(
        &[AnalysisTemplateRef {
            template_name: "latency".into(),
            cluster_scope: Some(true),
        }],
        &lookup_in(&lib),
    )
    .expect("a value");
    let names: Vec<_> = merged
        .metrics
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["success-rate", "latency"]);
    let run = build_run(&merged, &[arg("service", Some("shop"))], &ctx()).expect("a value");
    let q = &run.metrics[0]
        .provider
        .prometheus
        .as_ref()
        .expect("a value")
        .query;
    assert_eq!(q, "rate{app=\"shop\",hash=\"bbb\"}");
    assert_eq!(
        run.metrics[0].success_condition.as_deref(),
        Some("result[0] >= 0.95")
    );
    let bound = run.args.expect("a value");
    assert!(bound.iter().all(|a| a.value.is_some()));
}

#[test]
fn rollout_arguments_override_template_defaults() {
    let lib = library();
    let merged = merge_templates(&[tref("success-rate")], &lookup_in(&lib)).expect("a value");
    let run = build_run(
        &merged,
        &[arg("service", Some("shop")), arg("threshold", Some("0.99"))],
        &ctx(),
    )
    .expect("a value");
    assert_eq!(
        run.metrics[0].success_condition.as_deref(),
        Some("result[0] >= 0.99")
    );
}

#[test]
fn a_missing_argument_or_template_is_named() {
    let lib = library();
    let merged = merge_templates(&[tref("success-rate")], &lookup_in(&lib)).expect("a value");
    assert_eq!(
        build_run(&merged, &[], &ctx()),
        Err(TemplateError::MissingArgument("service".into()))
    );
    assert_eq!(
        merge_templates(&[tref("nope")], &lookup_in(&lib)),
        Err(TemplateError::NotFound {
            kind: "AnalysisTemplate",
            name: "nope".into()
        })
    );
}

#[test]
fn cycles_and_duplicate_metrics_are_refused() {
    let mut lib = BTreeMap::new();
    lib.insert(
        "AnalysisTemplate/a".to_string(),
        AnalysisTemplateSpec {
            templates: Some(vec![tref("b")]),
            ..Default::default()
        },
    );
    lib.insert(
        "AnalysisTemplate/b".to_string(),
        AnalysisTemplateSpec {
            templates: Some(vec![tref("a")]),
            ..Default::default()
        },
    );
    let err = merge_templates(&[tref("a")], &lookup_in(&lib)).expect_err("an error");
    assert!(
        matches!(err, TemplateError::Cycle(ref p) if p.contains("AnalysisTemplate/a → AnalysisTemplate/b → AnalysisTemplate/a")),
        "{err}"
    );

    let lib = library();
    let err = merge_templates(
        &[tref("success-rate"), tref("success-rate")],
        &lookup_in(&lib),
    )
    .expect_err("an error");
    assert_eq!(err, TemplateError::DuplicateMetric("success-rate".into()));
}

#[test]
fn a_condition_that_does_not_compile_is_refused_at_build_time() {
    let spec = AnalysisTemplateSpec {
        metrics: Some(vec![prom("m", "up", "result[0] >=")]),
        ..Default::default()
    };
    let err = build_run(&spec, &[], &ctx()).expect_err("an error");
    assert!(
        matches!(err, TemplateError::BadMetric { ref metric, ref message } if metric == "m" && message.starts_with("successCondition")),
        "{err}"
    );
    let spec = AnalysisTemplateSpec {
        metrics: Some(vec![prom("m", "up{x=\"{{args.nope}}\"}", "result[0] > 1")]),
        ..Default::default()
    };
    assert_eq!(
        build_run(&spec, &[], &ctx()),
        Err(TemplateError::UnknownArgument {
            metric: "m".into(),
            arg: "nope".into()
        })
    );
}

#[test]
fn secret_arguments_stay_references() {
    let mut m = prom("m", "up", "result[0] > 0");
    m.provider.prometheus.as_mut().expect("a value").address =
        "https://{{args.host}}/{{args.token}}".into();
    let spec = AnalysisTemplateSpec {
        metrics: Some(vec![m]),
        args: Some(vec![
            arg("host", Some("prom")),
            secret_arg("token", "prom-auth", "token"),
        ]),
        ..Default::default()
    };
    let run = build_run(&spec, &[], &ctx()).expect("a value");
    assert_eq!(prometheus_of(&run).address, "https://prom/{{args.token}}");
    let token = run
        .args
        .expect("a value")
        .into_iter()
        .find(|a| a.name == "token")
        .expect("a value");
    assert_eq!(token.value, None);
    assert!(token.value_from.expect("a value").secret_key_ref.is_some());
}

#[test]
fn a_job_metric_may_not_carry_a_secret_argument() {
    let job: Metric = serde_json::from_value(json!({
        "name": "smoke",
        "provider": {"job": {"spec": {"template": {"spec": {"containers": [
            {"name": "t", "image": "t", "args": ["--token", "{{args.token}}"]}]}}}}}
    }))
    .expect("metric");
    let spec = AnalysisTemplateSpec {
        metrics: Some(vec![job]),
        args: Some(vec![secret_arg("token", "s", "k")]),
        ..Default::default()
    };
    let err = build_run(&spec, &[], &ctx()).expect_err("refused");
    assert!(
        err.to_string().contains("cannot use a secret argument"),
        "{err}"
    );
}

#[test]
fn field_refs_read_the_rollout() {
    let r = json!({"metadata": {"name": "shop", "labels": {"app.kubernetes.io/name": "web"}}, "spec": {"replicas": 3}});
    assert_eq!(field_value(&r, "metadata.name").as_deref(), Some("shop"));
    assert_eq!(
        field_value(&r, "metadata.labels['app.kubernetes.io/name']").as_deref(),
        Some("web")
    );
    assert_eq!(field_value(&r, "spec.replicas").as_deref(), Some("3"));
    assert_eq!(field_value(&r, "spec.nope"), None);
    let spec = AnalysisTemplateSpec {
        metrics: Some(vec![prom("m", "up{app=\"{{args.app}}\"}", "result[0] > 0")]),
        args: Some(vec![Argument {
            name: "app".into(),
            value: None,
            value_from: Some(ValueFrom {
                field_ref: Some(FieldRef {
                    field_path: "metadata.labels['app.kubernetes.io/name']".into(),
                }),
                ..Default::default()
            }),
        }]),
        ..Default::default()
    };
    let run = build_run(&spec, &[], &ctx()).expect("a value");
    assert_eq!(prometheus_of(&run).query, "up{app=\"shop\"}");
}
