use super::*;
use crate::api::analysis::{DryRun, MeasurementRetention, MetricProvider, PrometheusMetric};
use crate::api::duration::DurationString;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
}

fn metric(name: &str) -> Metric {
    Metric {
        name: name.into(),
        success_condition: Some("result[0] >= 0.95".into()),
        provider: MetricProvider {
            prometheus: Some(PrometheusMetric {
                address: "http://prom:9090".into(),
                query: "up".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn every(mut m: Metric, secs: u64, count: Option<i32>) -> Metric {
    m.interval = Some(DurationString(format!("{secs}s")));
    m.count = count.map(IntOrString::Int);
    m
}

fn spec(metrics: Vec<Metric>) -> AnalysisRunSpec {
    AnalysisRunSpec {
        metrics,
        ..Default::default()
    }
}

fn value(v: f64) -> Outcome {
    Outcome::Value {
        value: MetricValue::Vector(vec![v]),
        metadata: BTreeMap::new(),
    }
}

fn outage() -> Outcome {
    Outcome::ProviderError {
        message: "connection refused".into(),
        metadata: BTreeMap::new(),
    }
}

/// Runs one reconcile: measures what is due with `provider` at time `now`.
fn tick(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    now: Timestamp,
    provider: &dyn Fn(&str) -> Outcome,
) -> (AnalysisRunStatus, Schedule) {
    let pols = policies(spec).expect("a value");
    let sched = schedule(spec, status, &pols, now);
    let outcomes = sched
        .due
        .iter()
        .map(|d| (d.metric.clone(), now, provider(&d.metric)))
        .collect();
    (step(spec, status, outcomes, now), sched)
}

fn result<'a>(s: &'a AnalysisRunStatus, name: &str) -> &'a MetricResult {
    s.metric_results
        .iter()
        .find(|r| r.name == name)
        .expect("a value")
}

#[test]
fn a_single_measurement_that_passes_makes_the_run_successful() {
    let spec = spec(vec![metric("rate")]);
    let (s, sched) = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| {
        value(0.99)
    });
    assert_eq!(sched.due.len(), 1);
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    let r = result(&s, "rate");
    assert_eq!((r.count, r.successful), (1, 1));
    assert_eq!(r.measurements[0].value.as_deref(), Some("[0.99]"));
    // Nothing more to measure.
    let (_, sched) = tick(&spec, &s, at(60), &|_| value(0.99));
    assert!(sched.due.is_empty() && sched.wake_at.is_none());
}

#[test]
fn failures_beyond_the_limit_fail_the_run_and_say_why() {
    let mut m = every(metric("rate"), 5, Some(5));
    m.failure_limit = Some(IntOrString::Int(1));
    let spec = spec(vec![m]);
    let (s, _) = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| value(0.5));
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Running),
        "one failure is tolerated"
    );
    // Not due again before the interval.
    let (same, sched) = tick(&spec, &s, at(3), &|_| value(0.5));
    assert!(sched.due.is_empty());
    assert_eq!(sched.wake_at, Some(at(5)));
    assert_eq!(result(&same, "rate").count, 1);
    let (s, _) = tick(&spec, &s, at(5), &|_| value(0.5));
    assert_eq!(s.phase, Some(AnalysisPhase::Failed));
    let msg = s.message.expect("a value");
    assert!(msg.contains("\"rate\" failed"), "{msg}");
    assert!(
        msg.contains("2 of 2 measurements failed (failureLimit 1)"),
        "{msg}"
    );
    assert!(
        msg.contains("successCondition `result[0] >= 0.95` is false for result [0.5]"),
        "{msg}"
    );
}

#[test]
fn the_count_is_reached_by_judged_measurements_only() {
    let spec = spec(vec![every(metric("rate"), 1, Some(2))]);
    let mut s = AnalysisRunStatus::default();
    let mut t = 0;
    for outcome in [value(0.99), outage(), outage()] {
        s = tick(&spec, &s, at(t), &|_| outcome.clone()).0;
        t += 1;
    }
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Running),
        "errors never complete a count"
    );
    let r = result(&s, "rate");
    assert_eq!((r.count, r.error, r.consecutive_error), (1, 2, 2));
    s = tick(&spec, &s, at(t), &|_| value(0.97)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    assert_eq!(result(&s, "rate").consecutive_error, 0);
}

#[test]
fn a_provider_outage_is_inconclusive_and_recovers_when_the_provider_answers() {
    let mut m = every(metric("rate"), 2, None);
    m.consecutive_error_limit = Some(IntOrString::Int(2));
    let spec = spec(vec![m]);
    let mut s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| {
        value(0.99)
    })
    .0;
    let mut t = 2;
    for _ in 0..3 {
        s = tick(&spec, &s, at(t), &|_| outage()).0;
        t += 2;
    }
    assert_eq!(s.phase, Some(AnalysisPhase::Inconclusive));
    assert!(
        s.message
            .as_deref()
            .expect("a value")
            .contains("3 measurements in a row could not be taken")
    );
    assert!(
        s.message
            .as_deref()
            .expect("a value")
            .contains("connection refused")
    );
    let pols = policies(&spec).expect("a value");
    assert!(is_measuring(&s, &pols), "an outage verdict keeps measuring");
    // Still down: stays inconclusive.
    s = tick(&spec, &s, at(t), &|_| outage()).0;
    t += 2;
    assert_eq!(s.phase, Some(AnalysisPhase::Inconclusive));
    // Back: judging resumes.
    s = tick(&spec, &s, at(t), &|_| value(0.99)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Running));
    assert_eq!(result(&s, "rate").phase, Some(AnalysisPhase::Running));
}

#[test]
fn a_metric_may_ask_for_an_outage_to_fail() {
    let mut m = metric("rate");
    m.consecutive_error_limit = Some(IntOrString::Int(0));
    m.on_provider_error = Some(ProviderErrorVerdict::Failed);
    let spec = spec(vec![m]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| outage()).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Failed));
    assert!(!is_measuring(&s, &policies(&spec).expect("a value")));
}

#[test]
fn errors_without_an_interval_are_retried_after_a_pause() {
    let spec = spec(vec![metric("rate")]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| outage()).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Running));
    let (_, sched) = tick(&spec, &s, at(1), &|_| value(1.0));
    assert_eq!(sched.wake_at, Some(at(10)));
    let (s, sched) = tick(&spec, &s, at(10), &|_| value(1.0));
    assert_eq!(sched.due.len(), 1);
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
}

#[test]
fn neither_condition_true_is_inconclusive() {
    let mut m = metric("rate");
    m.failure_condition = Some("result[0] < 0.5".into());
    let spec = spec(vec![m]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| value(0.8)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Inconclusive));
    assert!(
        !is_measuring(&s, &policies(&spec).expect("a value")),
        "a judged inconclusive is final"
    );
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| value(0.2)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Failed));
    assert!(
        s.message
            .expect("a value")
            .contains("failureCondition `result[0] < 0.5` is true for result [0.2]")
    );
}

#[test]
fn an_empty_result_is_its_own_outcome() {
    let empty = || Outcome::Value {
        value: MetricValue::Vector(vec![]),
        metadata: BTreeMap::new(),
    };
    let spec1 = spec(vec![metric("rate")]);
    let s = tick(&spec1, &AnalysisRunStatus::default(), at(0), &|_| empty()).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Inconclusive));
    assert!(s.message.expect("a value").contains("no data"));

    let mut m = metric("rate");
    m.on_empty_result = Some(EmptyResultVerdict::Evaluate);
    m.success_condition = Some("default(result[0], 1.0) >= 0.95".into());
    let s = tick(
        &spec(vec![m]),
        &AnalysisRunStatus::default(),
        at(0),
        &|_| empty(),
    )
    .0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
}

#[test]
fn dry_run_metrics_are_recorded_but_do_not_decide() {
    let mut spec = spec(vec![metric("rate"), metric("latency")]);
    spec.dry_run = Some(vec![DryRun {
        metric_name: "latency".into(),
    }]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|name| {
        value(if name == "latency" { 0.1 } else { 0.99 })
    })
    .0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    assert_eq!(result(&s, "latency").phase, Some(AnalysisPhase::Failed));
    assert_eq!(result(&s, "latency").dry_run, Some(true));
    let dry = s.dry_run_summary.expect("a value");
    assert_eq!((dry.count, dry.failed), (1, 1));
    assert_eq!(s.run_summary.expect("a value").successful, 1);
}

#[test]
fn retention_keeps_the_latest_measurements_and_the_counters_keep_counting() {
    let mut m = every(metric("rate"), 1, None);
    m.failure_limit = Some(IntOrString::Int(-1));
    let mut spec = spec(vec![m]);
    spec.measurement_retention = Some(vec![MeasurementRetention {
        metric_name: "rate".into(),
        limit: 2,
    }]);
    let mut s = AnalysisRunStatus::default();
    for t in 0..5 {
        s = tick(&spec, &s, at(t), &|_| {
            value([0.90, 0.91, 0.92, 0.93, 0.94][t as usize])
        })
        .0;
    }
    let r = result(&s, "rate");
    assert_eq!(r.measurements.len(), 2);
    assert_eq!(r.measurements[1].value.as_deref(), Some("[0.94]"));
    assert_eq!(r.count, 5);
    assert_eq!(r.failed, 5, "0.90..0.94 are all below 0.95");
}

#[test]
fn the_first_measurement_waits_for_the_initial_delay() {
    let mut m = metric("rate");
    m.initial_delay = Some(DurationString("30s".into()));
    let spec = spec(vec![m]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| value(1.0)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Pending));
    assert!(s.metric_results.is_empty());
    let (_, sched) = tick(&spec, &s, at(10), &|_| value(1.0));
    assert_eq!(sched.wake_at, Some(at(30)));
    let s = tick(&spec, &s, at(30), &|_| value(1.0)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
}

#[test]
fn a_pending_measurement_is_resumed_then_replaced() {
    let spec = spec(vec![metric("job")]);
    let pending = Outcome::Pending {
        metadata: BTreeMap::from([("job-name".to_string(), "j-1".to_string())]),
        resume_at: at(5),
    };
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| {
        pending.clone()
    })
    .0;
    assert_eq!(s.phase, Some(AnalysisPhase::Running));
    let (_, sched) = tick(&spec, &s, at(2), &|_| value(1.0));
    assert!(sched.due.is_empty());
    assert_eq!(sched.wake_at, Some(at(5)));
    let (s, sched) = tick(&spec, &s, at(5), &|_| Outcome::Decided {
        phase: AnalysisPhase::Successful,
        value: Some("true".into()),
        message: None,
        metadata: BTreeMap::from([("job-name".to_string(), "j-1".to_string())]),
    });
    let resumed = sched.due[0].resume.as_ref().expect("a value");
    assert_eq!(
        resumed.metadata.as_ref().expect("a value")["job-name"],
        "j-1"
    );
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    assert_eq!(result(&s, "job").measurements.len(), 1);
}

#[test]
fn terminating_ends_an_open_ended_metric_successfully() {
    let mut spec = spec(vec![every(metric("rate"), 5, None)]);
    let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| {
        value(0.99)
    })
    .0;
    assert_eq!(s.phase, Some(AnalysisPhase::Running));
    spec.terminate = Some(true);
    let (s, sched) = tick(&spec, &s, at(10), &|_| value(0.99));
    assert!(sched.due.is_empty());
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
}

#[test]
fn a_bad_policy_is_an_error_not_a_panic() {
    let mut m = metric("rate");
    m.count = Some(IntOrString::String("three".into()));
    let s = step(&spec(vec![m]), &AnalysisRunStatus::default(), vec![], at(0));
    assert_eq!(s.phase, Some(AnalysisPhase::Error));
    assert!(
        s.message
            .expect("a value")
            .contains("count must be a whole number")
    );
}

#[test]
fn a_run_whose_condition_does_not_compile_is_an_error_before_measuring() {
    let mut m = metric("rate");
    m.success_condition = Some("isNan(result)".into());
    let s = step(&spec(vec![m]), &AnalysisRunStatus::default(), vec![], at(0));
    assert_eq!(s.phase, Some(AnalysisPhase::Error));
    let msg = s.message.expect("a message");
    assert!(
        msg.contains("successCondition") && msg.contains("isNan"),
        "{msg}"
    );
    let pols = policies(&spec(vec![metric("rate")])).expect("policies");
    assert!(is_measuring(&AnalysisRunStatus::default(), &pols));
}

#[test]
fn a_negative_error_limit_means_no_limit_and_long_values_are_cut() {
    let mut m = metric("rate");
    m.consecutive_error_limit = Some(IntOrString::Int(-1));
    let spec1 = spec(vec![every(m, 1, Some(1))]);
    let mut s = AnalysisRunStatus::default();
    for t in 0..6 {
        s = tick(&spec1, &s, at(t * 10), &|_| outage()).0;
    }
    assert_eq!(s.phase, Some(AnalysisPhase::Running), "errors never end it");
    let long = Outcome::Value {
        value: MetricValue::Json(serde_json::json!("x".repeat(5000))),
        metadata: BTreeMap::new(),
    };
    let mut m = metric("body");
    m.success_condition = Some("result == 'ok'".into());
    let s = tick(
        &spec(vec![m]),
        &AnalysisRunStatus::default(),
        at(0),
        &|_| long.clone(),
    )
    .0;
    let meas = &result(&s, "body").measurements[0];
    assert!(meas.value.as_deref().expect("value").len() < 1100);
    assert!(
        meas.message
            .as_deref()
            .expect("message")
            .contains("bytes in all")
    );
}

#[test]
fn a_run_stopped_before_anything_was_judged_is_never_successful() {
    let pending = Outcome::Pending {
        metadata: BTreeMap::from([("job-name".to_string(), "j-1".to_string())]),
        resume_at: at(60),
    };
    let mut delayed = metric("later");
    delayed.initial_delay = Some(DurationString("60s".into()));
    // (what, spec, provider before the stop, phase after the stop)
    let table: Vec<(&str, AnalysisRunSpec, Outcome, AnalysisPhase)> = vec![
        (
            "a measurement still running",
            spec(vec![metric("job")]),
            pending.clone(),
            AnalysisPhase::Inconclusive,
        ),
        (
            "nothing measured yet (initial delay)",
            spec(vec![delayed.clone()]),
            value(1.0),
            AnalysisPhase::Inconclusive,
        ),
        (
            "only provider errors",
            spec(vec![every(metric("rate"), 5, None)]),
            outage(),
            AnalysisPhase::Inconclusive,
        ),
        (
            "one metric passed, the other never judged",
            spec(vec![every(metric("rate"), 5, None), delayed]),
            value(1.0),
            AnalysisPhase::Inconclusive,
        ),
        (
            "a passing measurement",
            spec(vec![every(metric("rate"), 5, None)]),
            value(1.0),
            AnalysisPhase::Successful,
        ),
        (
            "a failing measurement",
            spec(vec![every(metric("rate"), 5, None)]),
            value(0.5),
            AnalysisPhase::Failed,
        ),
    ];
    for (what, mut spec, outcome, want) in table {
        let s = tick(&spec, &AnalysisRunStatus::default(), at(0), &|_| {
            outcome.clone()
        })
        .0;
        spec.terminate = Some(true);
        let s = tick(&spec, &s, at(1), &|_| outcome.clone()).0;
        assert_eq!(s.phase, Some(want), "{what}: {:?}", s.message);
        if want == AnalysisPhase::Inconclusive {
            let message = s.message.clone().unwrap_or_default();
            assert!(
                message.contains("stopped before any measurement was judged"),
                "{what}: {message}"
            );
            let summary = s.run_summary.clone().unwrap_or_default();
            assert_eq!(
                summary.successful + summary.inconclusive,
                summary.count,
                "{what}"
            );
        }
    }
}

#[test]
fn a_verdict_counts_and_ends_a_run_of_errors_an_error_does_not_count() {
    let mut r = MetricResult::default();
    count(&mut r, Some(AnalysisPhase::Error));
    count(&mut r, Some(AnalysisPhase::Error));
    assert_eq!((r.count, r.error, r.consecutive_error), (0, 2, 2));
    count(&mut r, Some(AnalysisPhase::Inconclusive));
    assert_eq!((r.count, r.inconclusive, r.consecutive_error), (1, 1, 0));
    count(&mut r, Some(AnalysisPhase::Running));
    assert_eq!(
        (r.count, r.error),
        (1, 2),
        "a running measurement counts nowhere"
    );
}

#[test]
fn a_metric_keeps_its_last_measurements_with_text_bounded() {
    let mut r = MetricResult::default();
    for i in 0..4 {
        let m = Measurement {
            message: Some(format!("{i}{}", "x".repeat(MAX_TEXT))),
            ..Default::default()
        };
        keep(&mut r, m, 2);
    }
    assert_eq!(r.measurements.len(), 2);
    let first = r.measurements[0].message.as_deref().expect("a message");
    assert!(
        first.starts_with('2') && first.ends_with("bytes in all)"),
        "{first}"
    );
}

#[test]
fn the_run_takes_the_first_of_its_worst_metric_verdicts() {
    let mut tally = Tally {
        all_done: true,
        ..Default::default()
    };
    let because = |phase, why: &str| Verdict::because(phase, why.into());
    tally.add("a", because(AnalysisPhase::Inconclusive, "unsure"));
    tally.add("b", because(AnalysisPhase::Failed, "too slow"));
    tally.add("c", because(AnalysisPhase::Failed, "too many errors"));
    tally.add("d", Verdict::plain(AnalysisPhase::Running));
    let v = tally.verdict(false, &[]);
    assert_eq!(v.phase, AnalysisPhase::Failed);
    assert_eq!(v.message.as_deref(), Some("metric \"b\" failed: too slow"));
    assert!(!tally.all_done, "a running metric is not done");
}

fn dry(pattern: &str) -> DryRun {
    DryRun {
        metric_name: pattern.into(),
    }
}

fn keep_rule(pattern: &str, limit: i32) -> MeasurementRetention {
    MeasurementRetention {
        metric_name: pattern.into(),
        limit,
    }
}

// Argo Rollouts: utils/analysis/helpers.go GetDryRunMetrics and GetMeasurementRetentionMetrics
// match each rule with regexp.MatchString (unanchored); analysis/analysis.go assessRunStatus.
#[test]
fn dry_run_and_retention_rules_are_unanchored_regular_expressions() {
    let mut spec = spec(vec![metric("will-fail"), metric("test-1"), metric("gate")]);
    spec.dry_run = Some(vec![dry("fail"), dry("^test.*")]);
    let pols = policies(&spec).expect("valid rules");
    let is_dry: Vec<bool> = pols.iter().map(|(_, p)| p.dry_run).collect();
    assert_eq!(is_dry, [true, true, false]);

    spec.dry_run = Some(vec![dry(".*")]);
    assert!(
        policies(&spec)
            .expect("valid")
            .iter()
            .all(|(_, p)| p.dry_run)
    );

    // The last matching retention rule wins; 0 means the default of 10.
    spec.dry_run = None;
    spec.measurement_retention = Some(vec![
        keep_rule(".*", 3),
        keep_rule("test", 5),
        keep_rule("gate", 0),
    ]);
    let kept: Vec<usize> = policies(&spec)
        .expect("valid")
        .iter()
        .map(|(_, p)| p.retention)
        .collect();
    assert_eq!(kept, [3, 5, DEFAULT_MEASUREMENT_RETENTION]);
}

#[test]
fn a_rule_that_selects_nothing_or_does_not_compile_makes_an_error_run() {
    let mut spec = spec(vec![metric("rate")]);
    spec.dry_run = Some(vec![dry("rate"), dry("nomatch")]);
    let s = step(&spec, &AnalysisRunStatus::default(), vec![], at(0));
    assert_eq!(s.phase, Some(AnalysisPhase::Error));
    let msg = s.message.expect("a message");
    assert!(
        msg.starts_with("dryRun[1]: Rule didn't match any metric name(s)"),
        "{msg}"
    );

    spec.dry_run = Some(vec![dry("(rate")]);
    let msg = check_rules(&spec).expect_err("not a regular expression");
    assert!(
        msg.starts_with("dryRun[0]: metricName \"(rate\" is not a regular expression"),
        "{msg}"
    );
    // A lone `*` is every metric, as Argo's field comment promises.
    spec.dry_run = Some(vec![dry("*")]);
    assert!(policies(&spec).expect("valid")[0].1.dry_run);

    spec.dry_run = None;
    spec.measurement_retention = Some(vec![keep_rule("rate", 2), keep_rule("rate", 3)]);
    let msg = check_rules(&spec).expect_err("two limits for one pattern");
    assert!(
        msg.contains("two Measurement Retention metric rules have the same name 'rate'"),
        "{msg}"
    );
    spec.measurement_retention = Some(vec![keep_rule("ra", 2)]);
    assert_eq!(check_rules(&spec), Ok(()));
}

// Argo Rollouts: analysis/analysis.go assessRunStatus waits for dry-run metrics too
// (everythingCompleted), counts them in dryRunSummary, and words their message
// "Metric assessed <phase> due to <reason>".
#[test]
fn a_run_of_dry_run_metrics_only_measures_them_and_succeeds_whatever_they_say() {
    let mut spec = spec(vec![metric("test-1")]);
    spec.dry_run = Some(vec![dry("test.*")]);
    let s = step(&spec, &AnalysisRunStatus::default(), vec![], at(0));
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Pending),
        "not done before measuring"
    );
    let s = tick(&spec, &s, at(1), &|_| value(0.1)).0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    let r = result(&s, "test-1");
    assert_eq!(
        (r.phase, r.dry_run),
        (Some(AnalysisPhase::Failed), Some(true))
    );
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.starts_with("Metric assessed Failed due to ")),
        "{:?}",
        r.message
    );
    let d = s.dry_run_summary.expect("a dry-run summary");
    assert_eq!((d.count, d.failed, d.successful), (1, 1, 0));
}

// Argo Rollouts: utils/evaluate/evaluate.go EvaluateResult: with neither condition a
// measurement is Successful unless the provider errored.
#[test]
fn a_metric_without_conditions_is_judged_by_its_provider_alone() {
    let mut m = metric("up");
    m.success_condition = None;
    let spec1 = spec(vec![m.clone()]);
    let s = tick(&spec1, &AnalysisRunStatus::default(), at(0), &|_| {
        value(0.0)
    })
    .0;
    assert_eq!(s.phase, Some(AnalysisPhase::Successful));
    let empty = || Outcome::Value {
        value: MetricValue::Vector(vec![]),
        metadata: BTreeMap::new(),
    };
    let s = tick(&spec1, &AnalysisRunStatus::default(), at(0), &|_| empty()).0;
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Successful),
        "an answer, even empty"
    );
    let mut strict = m.clone();
    strict.on_empty_result = Some(EmptyResultVerdict::Failed);
    let s = tick(
        &spec(vec![strict]),
        &AnalysisRunStatus::default(),
        at(0),
        &|_| empty(),
    )
    .0;
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Failed),
        "onEmptyResult, when set, still counts"
    );
    m.consecutive_error_limit = Some(IntOrString::Int(0));
    let s = tick(
        &spec(vec![m]),
        &AnalysisRunStatus::default(),
        at(0),
        &|_| outage(),
    )
    .0;
    assert_eq!(
        s.phase,
        Some(AnalysisPhase::Inconclusive),
        "an error is no answer"
    );
}

// Argo Rollouts: analysis/analysis.go getResolvedMetricsWithoutSecrets resolves
// `{{args.x}}` in every field of a run's metrics, numbers included.
#[test]
fn a_run_resolves_its_plain_arguments_in_numbers_and_durations() {
    let mut m = metric("rate");
    m.count = Some(IntOrString::String("{{args.n}}".into()));
    m.interval = Some(DurationString("{{args.every}}".into()));
    m.failure_limit = Some(IntOrString::String("{{ args.fl }}".into()));
    let mut spec = spec(vec![m]);
    spec.args = Some(vec![
        crate::api::analysis::Argument {
            name: "n".into(),
            value: Some("3".into()),
            value_from: None,
        },
        crate::api::analysis::Argument {
            name: "every".into(),
            value: Some("2s".into()),
            value_from: None,
        },
        crate::api::analysis::Argument {
            name: "fl".into(),
            value: Some("1".into()),
            value_from: None,
        },
    ]);
    let (_, p) = policies(&spec).expect("resolved").remove(0);
    assert_eq!(
        (p.count, p.interval, p.failure_limit),
        (Some(3), Some(Duration::from_secs(2)), 1)
    );
    if let Some(args) = spec.args.as_mut() {
        args[0].value = Some("abc".into());
    }
    let s = step(&spec, &AnalysisRunStatus::default(), vec![], at(0));
    assert_eq!(s.phase, Some(AnalysisPhase::Error));
    assert!(
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("count must be a whole number, got \"abc\"")),
        "{:?}",
        s.message
    );
}

#[test]
fn an_outcome_takes_the_providers_metadata_under_its_own() {
    let first = BTreeMap::from([
        ("address".to_string(), "http://p".to_string()),
        ("score".to_string(), "stale".to_string()),
    ]);
    let decided = Outcome::Decided {
        phase: AnalysisPhase::Failed,
        value: Some("50".into()),
        message: None,
        metadata: BTreeMap::from([("score".to_string(), "50".to_string())]),
    }
    .with_metadata(first.clone());
    let Outcome::Decided {
        metadata, phase, ..
    } = decided
    else {
        panic!("still decided");
    };
    assert_eq!(phase, AnalysisPhase::Failed);
    assert_eq!(metadata["address"], "http://p");
    assert_eq!(metadata["score"], "50");
    let err = Outcome::ProviderError {
        message: "down".into(),
        metadata: BTreeMap::new(),
    }
    .with_metadata(first);
    assert!(
        matches!(err, Outcome::ProviderError { metadata, .. } if metadata["address"] == "http://p")
    );
}
