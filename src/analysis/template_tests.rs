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

fn templated_library(count: &str, interval: &str) -> AnalysisTemplateSpec {
    let mut m = prom("rate", "up", "result[0] >= 0.95");
    m.count = Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(count.into()));
    m.interval = Some(crate::api::duration::DurationString(interval.into()));
    m.failure_limit = Some(
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("{{args.fl}}".into()),
    );
    AnalysisTemplateSpec {
        metrics: Some(vec![m]),
        args: Some(vec![
            arg("n", None),
            arg("iv", Some("1s")),
            arg("fl", Some("1")),
        ]),
        ..Default::default()
    }
}

// Argo Rollouts: analysis/analysis.go reconcileAnalysisRun resolves arguments in numeric
// fields, then utils/analysis/analysis.go ValidateMetric checks them; Argo reads a
// non-number as 0 (IntOrString.IntValue), Sluice refuses it naming the argument.
#[test]
fn numbers_and_durations_may_come_from_arguments_and_bad_values_name_the_argument() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let t = templated_library("{{args.n}}", "{{args.iv}}");
    let run = build_run(&t, &[arg("n", Some("3"))], &ctx()).expect("resolved");
    let m = &run.metrics[0];
    assert_eq!(m.count, Some(IntOrString::String("3".into())));
    assert_eq!(m.interval.as_ref().map(|d| d.0.as_str()), Some("1s"));
    assert_eq!(m.failure_limit, Some(IntOrString::String("1".into())));

    let err = build_run(&t, &[arg("n", Some("abc"))], &ctx()).expect_err("not a number");
    assert_eq!(
        err.to_string(),
        "metric \"rate\": count is \"{{args.n}}\", and argument \"n\" = \"abc\" makes it \"abc\": not a whole number"
    );
    let err = build_run(&t, &[arg("n", Some("0"))], &ctx()).expect_err("count 0");
    assert!(
        err.to_string().ends_with("count must be at least 1"),
        "{err}"
    );
    let err = build_run(&t, &[arg("n", Some("2")), arg("iv", Some("soon"))], &ctx())
        .expect_err("not a duration");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "metric \"rate\": interval is \"{{args.iv}}\", and argument \"iv\" = \"soon\""
        ) && text.contains("not a duration"),
        "{text}"
    );
    let mut secret = templated_library("{{args.n}}", "1s");
    secret.args = Some(vec![secret_arg("n", "s", "k"), arg("fl", Some("0"))]);
    let err = build_run(&secret, &[], &ctx()).expect_err("a secret count");
    assert!(
        err.to_string().contains("argument \"n\" (a secret)")
            && err.to_string().contains("a secret argument cannot be used"),
        "{err}"
    );
}

// Argo Rollouts: utils/analysis/analysis.go ValidateMetric does not require a condition.
#[test]
fn a_metric_without_conditions_builds() {
    let mut m = prom("up", "up", "unused");
    m.success_condition = None;
    let t = AnalysisTemplateSpec {
        metrics: Some(vec![m]),
        ..Default::default()
    };
    assert!(build_run(&t, &[], &ctx()).is_ok());
}

// Argo Rollouts: utils/analysis/helpers.go NewAnalysisRunFromTemplates merges the Rollout's
// rules first, then the templates'; GetDryRunMetrics refuses a rule that matches nothing.
#[test]
fn the_rollouts_rules_come_first_and_every_rule_must_select_a_metric() {
    use crate::api::analysis::{DryRun, MeasurementRetention};
    let t = AnalysisTemplateSpec {
        metrics: Some(vec![prom("test-fail", "up", "result[0] > 1")]),
        measurement_retention: Some(vec![MeasurementRetention {
            metric_name: "test".into(),
            limit: 4,
        }]),
        ..Default::default()
    };
    let run = build_run(&t, &[], &ctx()).expect("built");
    let own_dry = [DryRun {
        metric_name: "test.*".into(),
    }];
    let own_keep = [MeasurementRetention {
        metric_name: ".*".into(),
        limit: 2,
    }];
    let spec = with_rollout_rules(run.clone(), Some(&own_dry), Some(&own_keep)).expect("valid");
    assert_eq!(spec.dry_run.as_deref(), Some(&own_dry[..]));
    let names: Vec<&str> = spec
        .measurement_retention
        .iter()
        .flatten()
        .map(|r| r.metric_name.as_str())
        .collect();
    assert_eq!(names, [".*", "test"]);
    let nothing = [DryRun {
        metric_name: "nomatch".into(),
    }];
    let err = with_rollout_rules(run, Some(&nothing), None).expect_err("matches nothing");
    assert!(
        err.to_string()
            .starts_with("dryRun[0]: Rule didn't match any metric name(s)"),
        "{err}"
    );
}
