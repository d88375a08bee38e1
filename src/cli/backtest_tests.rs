use serde_json::json;

use super::*;

fn args(from: &str, to: &str) -> BacktestArgs {
    BacktestArgs {
        template: "errors".into(),
        rollout: "shop".into(),
        from: from.into(),
        to: to.into(),
        incidents: None,
        prometheus: None,
        args: vec![],
        cluster: false,
        interval: "1m".into(),
        grace: "0s".into(),
        output: Output::Text,
    }
}

fn now() -> Timestamp {
    "2026-12-02T12:00:00.5Z".parse().expect("a time")
}

#[test]
fn the_plan_checks_times_durations_and_arguments() {
    let p = plan(&args("-2h", "now"), now()).expect("a plan");
    assert_eq!(p.from.to_string(), "2026-12-02T10:00:00Z");
    assert_eq!(p.to.to_string(), "2026-12-02T12:00:00Z");
    assert_eq!(p.interval, Duration::from_secs(60));
    let e = plan(&args("-1h", "-2h"), now()).expect_err("backwards");
    assert!(e.contains("must be before"), "{e}");
    let e = plan(&args("now", "now"), now()).expect_err("empty");
    assert!(e.contains("must be before"), "{e}");
    let e = plan(&args("yesterday", "now"), now()).expect_err("bad");
    assert!(e.starts_with("--from"), "{e}");
    let e = plan(&args("-1h", "2027-01-01T00:00:00Z"), now()).expect_err("future");
    assert!(e.contains("future"), "{e}");
    let mut a = args("-1h", "now");
    a.interval = "0s".into();
    assert_eq!(
        plan(&a, now()).expect_err("zero"),
        "--interval must be at least 1s"
    );
    a.interval = "1x".into();
    assert!(plan(&a, now()).expect_err("bad").contains("--interval"));
    a.interval = "2500ms".into();
    let e = plan(&a, now()).expect_err("not whole seconds");
    assert!(
        e.contains("--interval 2500ms is not a whole number of seconds") && e.contains("2s"),
        "{e}"
    );
    let mut a = args("-1h", "now");
    a.args = vec!["service=shop".into(), "x=a=b".into()];
    let p = plan(&a, now()).expect("a plan");
    assert_eq!(p.args[1], ("x".to_string(), "a=b".to_string()));
    a.args = vec!["=v".into()];
    assert_eq!(
        plan(&a, now()).expect_err("no name"),
        "--arg \"=v\" must be NAME=VALUE"
    );
    a.args = vec!["novalue".into()];
    assert_eq!(
        plan(&a, now()).expect_err("no value"),
        "--arg \"novalue\" must be NAME=VALUE"
    );
    // A grace too long for a time is read, and saturates when used.
    let mut a = args("-1h", "now");
    a.grace = "999999999999h".into();
    assert_eq!(
        plan(&a, now()).expect("a plan").grace,
        Duration::from_secs(999_999_999_999 * 3600)
    );
}

fn policy(m: serde_json::Value) -> (Metric, MetricPolicy) {
    let m: Metric = serde_json::from_value(m).expect("a metric");
    let p = MetricPolicy::of(&m, false, None).expect("a policy");
    (m, p)
}

#[test]
fn intervals_not_whole_seconds_and_too_much_work_are_refused_before_any_query() {
    let p = plan(&args("-2h", "now"), now()).expect("a plan");
    let prom = |interval: &str| {
        policy(json!({
            "name": "errors", "interval": interval, "successCondition": "true",
            "provider": {"prometheus": {"address": "http://p", "query": "q"}},
        }))
    };
    assert_eq!(check_limits(&[prom("30s")], &p), Ok(()));
    let e = check_limits(&[prom("2500ms")], &p).expect_err("not whole seconds");
    assert!(
        e.contains("metric \"errors\": its interval 2.5s is not a whole number of seconds")
            && e.contains("use e.g. 2s"),
        "{e}"
    );
    let week = plan(&args("-1000h", "now"), now()).expect("a plan");
    let e = check_limits(&[prom("1s")], &week).expect_err("too many evaluations");
    assert!(e.contains("evaluated 3600001 times"), "{e}");
    let compare = |step: &str| {
        policy(json!({
            "name": "latency", "interval": "1m",
            "provider": {"compare": {"prometheus": {"address": "http://p"},
                                     "canary": "c", "stable": "s", "step": step,
                                     "metrics": [{"name": "p99", "query": "q"}]}},
        }))
    };
    assert_eq!(check_limits(&[compare("1m")], &week), Ok(()));
    let e = check_limits(&[prom("1m"), compare("1s")], &week).expect_err("too many points");
    assert!(
        e.contains("metric \"latency\" (compare) would read 3600001 points a side")
            && e.contains("use a shorter range or a larger step"),
        "{e}"
    );
}

#[test]
fn values_are_shortened_for_the_table() {
    assert_eq!(short_value("[0.010050251256281407]"), "[0.01005]");
    assert_eq!(short_value("0.3"), "0.3");
    assert_eq!(short_value("[]"), "[]");
    assert_eq!(short_value("[1, 2.5]"), "[1, 2.5]");
    assert_eq!(short_value("12345.6"), "12346");
    assert_eq!(short_value("[NaN]"), "[NaN]");
    assert_eq!(short_value("{\"a\":1}"), "{\"a\":1}");
}

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "strategy": {"canary": {
                "analysis": {"templates": [{"templateName": "errors"}, {"templateName": "latency"}],
                             "args": [{"name": "service", "value": "shop"}],
                             "dryRun": [{"metricName": "lat.*"}]},
                "steps": [{"analysis": {"templates": [{"templateName": "smoke", "clusterScope": true}]}}]
            }}
        },
        "status": {"stableRS": "abc", "currentPodHash": "def"}
    }))
    .expect("a rollout")
}

#[test]
fn the_use_of_the_template_is_found_or_the_error_names_the_templates_used() {
    let ro = rollout();
    let (key, u, _) = pick_use(&ro, "errors", false).expect("used");
    assert_eq!(key, AnalysisKey::Background);
    assert_eq!(u.args[0].value.as_deref(), Some("shop"));
    let (key, _, _) = pick_use(&ro, "smoke", true).expect("used");
    assert_eq!(key, AnalysisKey::Step(0));
    let e = pick_use(&ro, "smoke", false).expect_err("not namespaced");
    assert!(
        e.contains("does not use AnalysisTemplate smoke")
            && e.contains("AnalysisTemplate errors (background analysis)")
            && e.contains("ClusterAnalysisTemplate smoke (step 0)"),
        "{e}"
    );
}

#[test]
fn the_spec_is_bound_as_the_controller_binds_it_with_overrides() {
    let ro = rollout();
    let (_, u, _) = pick_use(&ro, "errors", false).expect("used");
    let template: AnalysisTemplateSpec = serde_json::from_value(json!({
        "args": [{"name": "service"}, {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}, {"name": "q", "value": "0.05"}],
        "metrics": [{"name": "errors", "interval": "1m",
                     "successCondition": "result[0] < {{args.q}}",
                     "provider": {"prometheus": {"address": "http://prom.monitoring:9090",
                                                 "query": "x{service=\"{{args.service}}\",hash=\"{{args.hash}}\"}"}}}]
    }))
    .expect("a template");
    let root = AnalysisTemplateRef {
        template_name: "errors".into(),
        cluster_scope: None,
    };
    let lookup = |r: &AnalysisTemplateRef| (r.template_name == "errors").then(|| template.clone());
    let mut spec =
        build_spec(&ro, &u, &root, &lookup, &[("q".into(), "0.1".into())]).expect("a spec");
    let m = &spec.metrics[0];
    assert_eq!(m.success_condition.as_deref(), Some("result[0] < 0.1"));
    let q = &m.provider.prometheus.as_ref().expect("prometheus").query;
    assert_eq!(q, "x{service=\"shop\",hash=\"def\"}");
    // The Rollout's dryRun rule names only the other template's metric: left out.
    assert_eq!(spec.dry_run, None);
    with_prometheus(&mut spec, "http://localhost:9090");
    assert_eq!(
        spec.metrics[0]
            .provider
            .prometheus
            .as_ref()
            .map(|p| p.address.as_str()),
        Some("http://localhost:9090")
    );
    let e = build_spec(&ro, &u, &root, &lookup, &[("nope".into(), "1".into())])
        .expect_err("unknown argument");
    assert!(
        e.contains("--arg nope") && e.contains("hash, q, service"),
        "{e}"
    );
}

#[test]
fn the_text_shows_rows_runs_incidents_and_a_summary() {
    use crate::analysis::backtest::{Cause, Cell, Detection, Row};
    let t = |m: i64| Timestamp::from_second(1_796_205_600 + m * 60).expect("a time");
    let end = RunEnd {
        run: 1,
        started: t(0),
        ended: t(1),
        phase: AnalysisPhase::Failed,
        cause: Cause::FailureLimit,
        metric: "errors".into(),
        message: "1 of 2 measurements failed".into(),
        value: Some("[0.31]".into()),
    };
    let cell = |v: &str, phase| Cell {
        metric: "errors".into(),
        value: Some(v.into()),
        phase,
        verdict: phase,
        message: None,
        dry_run: false,
    };
    let replay = Replay {
        rows: vec![
            Row {
                at: t(0),
                run: 1,
                cells: vec![cell("[0.0101]", AnalysisPhase::Successful)],
            },
            Row {
                at: t(1),
                run: 1,
                cells: vec![cell("[0.31]", AnalysisPhase::Failed)],
            },
        ],
        runs: vec![end.clone()],
    };
    let report = Report {
        grace_seconds: 60,
        incidents: vec![
            Detection {
                incident: Incident {
                    name: "outage".into(),
                    start: t(0),
                    end: t(5),
                },
                caught_by: Some(end),
                delay_seconds: Some(60),
            },
            Detection {
                incident: Incident {
                    name: "quiet".into(),
                    start: t(10),
                    end: t(12),
                },
                caught_by: None,
                delay_seconds: None,
            },
        ],
        false_failures: vec![],
        inconclusive: vec![],
    };
    let summary = summary(&replay, Some(&report));
    let bt = Backtest {
        template: "errors".into(),
        kind: "AnalysisTemplate",
        rollout: "shop".into(),
        namespace: "default".into(),
        from: t(0),
        to: t(1),
        metrics: vec![MetricInfo {
            name: "errors".into(),
            interval: "1m".into(),
            dry_run: false,
        }],
        skipped: vec![Skipped {
            metric: "smoke".into(),
            provider: "web".into(),
            why: "present only".into(),
        }],
        notes: vec![],
        replay,
        report: Some(report),
        summary,
    };
    let text = render(&bt);
    for want in [
        "skipped: smoke (web): present only",
        "2026-12-02T10:00:00Z    1  [0.0101] ok",
        "2026-12-02T10:01:00Z    1  [0.31] FAIL  ← run 1 ends Failed",
        "caught  outage",
        "1m after it began",
        "MISSED  quiet",
        "False failures: none",
        "Summary: 2 evaluations, 1 runs ended (1 failed, 0 inconclusive); 1 of 2 incidents caught; 0 false failures",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let json = serde_json::to_value(&bt).expect("json");
    assert_eq!(json["summary"]["caught"], 1);
    assert_eq!(json["runs"][0]["cause"], "failureLimit");
    assert_eq!(json["report"]["incidents"][0]["delaySeconds"], 60);
}
