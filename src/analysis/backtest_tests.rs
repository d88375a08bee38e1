use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::analysis::value::MetricValue;

/// 10:00 + `m` minutes on 2026-12-02.
fn at(m: i64) -> Timestamp {
    Timestamp::from_second(1_796_205_600 + m * 60).expect("a value")
}

fn metric(extra: serde_json::Value) -> Metric {
    let mut m = json!({
        "name": "errors",
        "interval": "1m",
        "successCondition": "result[0] < 0.05",
        "provider": {"prometheus": {"address": "http://p", "query": "q"}},
    });
    if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(m).expect("a value")
}

fn with_policy(m: Metric, dry: bool) -> (Metric, MetricPolicy) {
    let p = MetricPolicy::of(&m, dry, None).expect("a value");
    (m, p)
}

fn value(x: f64) -> Outcome {
    Outcome::Value {
        value: MetricValue::Vector(vec![x]),
        metadata: BTreeMap::new(),
    }
}

fn error() -> Outcome {
    Outcome::ProviderError {
        message: "down".into(),
        metadata: BTreeMap::new(),
    }
}

fn empty() -> Outcome {
    Outcome::Value {
        value: MetricValue::Vector(vec![]),
        metadata: BTreeMap::new(),
    }
}

/// A timeline of outcomes one minute apart from 10:00.
fn minutes(outcomes: Vec<Outcome>) -> Timeline {
    Timeline::Fixed(
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| (at(i as i64), o))
            .collect(),
    )
}

/// Error ratios, one a minute: above 0.05 fails.
fn ratios(xs: &[f64]) -> Timeline {
    minutes(xs.iter().map(|x| value(*x)).collect())
}

fn one(m: Metric, t: Timeline) -> Replay {
    let name = m.name.clone();
    replay(&[with_policy(m, false)], &BTreeMap::from([(name, t)]))
}

fn ends(r: &Replay) -> Vec<(usize, Timestamp, Timestamp, AnalysisPhase)> {
    r.runs
        .iter()
        .map(|e| (e.run, e.started, e.ended, e.phase))
        .collect()
}

#[test]
fn failure_limit_0_ends_the_run_at_the_first_failure_and_a_new_run_starts_next() {
    let r = one(metric(json!({})), ratios(&[0.01, 0.2, 0.01, 0.3, 0.3]));
    assert_eq!(
        ends(&r),
        vec![
            (1, at(0), at(1), AnalysisPhase::Failed),
            (2, at(2), at(3), AnalysisPhase::Failed),
            (3, at(4), at(4), AnalysisPhase::Failed),
        ]
    );
    assert_eq!(r.runs[0].cause, Cause::FailureLimit);
    assert_eq!(r.runs[0].value.as_deref(), Some("[0.2]"));
    assert!(
        r.runs[0].message.contains("failureLimit 0"),
        "{}",
        r.runs[0].message
    );
    let runs: Vec<usize> = r.rows.iter().map(|row| row.run).collect();
    assert_eq!(runs, vec![1, 1, 2, 2, 3]);
    assert_eq!(r.rows[1].cells[0].phase, AnalysisPhase::Failed);
    assert_eq!(r.rows[1].cells[0].verdict, AnalysisPhase::Failed);
    assert_eq!(r.rows[0].cells[0].verdict, AnalysisPhase::Running);
}

#[test]
fn failure_limit_2_needs_three_failures_and_the_new_run_counts_afresh() {
    let m = metric(json!({"failureLimit": 2}));
    let r = one(m, ratios(&[0.2, 0.01, 0.2, 0.2, 0.2, 0.2, 0.2, 0.01]));
    // Failures at 0, 2, 3: the third (minute 3) passes the limit. The next run counts from
    // minute 4: 4, 5, 6 fail, so it ends at 6.
    assert_eq!(
        ends(&r),
        vec![
            (1, at(0), at(3), AnalysisPhase::Failed),
            (2, at(4), at(6), AnalysisPhase::Failed),
        ]
    );
    assert!(
        r.runs[0].message.contains("3 of 4 measurements failed"),
        "{}",
        r.runs[0].message
    );
}

#[test]
fn errors_in_a_row_past_the_limit_end_the_run_inconclusive_or_failed_as_the_metric_says() {
    let outcomes = || {
        minutes(vec![
            error(),
            error(),
            value(0.01),
            error(),
            error(),
            error(),
        ])
    };
    let r = one(metric(json!({"consecutiveErrorLimit": 2})), outcomes());
    assert_eq!(
        ends(&r),
        vec![(1, at(0), at(5), AnalysisPhase::Inconclusive)]
    );
    assert_eq!(r.runs[0].cause, Cause::ConsecutiveErrors);
    assert_eq!(r.runs[0].value, None);
    assert_eq!(r.rows[3].cells[0].phase, AnalysisPhase::Error);

    let m = metric(json!({"consecutiveErrorLimit": 2, "onProviderError": "Failed"}));
    let r = one(m, outcomes());
    assert_eq!(ends(&r), vec![(1, at(0), at(5), AnalysisPhase::Failed)]);
    assert_eq!(r.runs[0].cause, Cause::ConsecutiveErrors);
}

#[test]
fn an_empty_result_is_inconclusive_and_ends_the_run_as_inconclusive() {
    let r = one(
        metric(json!({})),
        minutes(vec![value(0.01), empty(), value(0.01)]),
    );
    assert_eq!(
        ends(&r),
        vec![(1, at(0), at(1), AnalysisPhase::Inconclusive)]
    );
    assert_eq!(r.runs[0].cause, Cause::InconclusiveLimit);
    assert_eq!(r.rows[2].run, 2);
    // With inconclusiveLimit 1, one is tolerated.
    let r = one(
        metric(json!({"inconclusiveLimit": 1})),
        minutes(vec![value(0.01), empty(), value(0.01)]),
    );
    assert!(r.runs.is_empty());
}

#[test]
fn a_dry_run_metric_is_shown_but_never_ends_a_run() {
    let dry = metric(json!({"name": "dry"}));
    let real = metric(json!({"name": "real", "successCondition": "result[0] < 0.5"}));
    let timelines = BTreeMap::from([
        ("dry".to_string(), ratios(&[0.2, 0.2, 0.2])),
        ("real".to_string(), ratios(&[0.2, 0.6, 0.2])),
    ]);
    let r = replay(
        &[with_policy(dry, true), with_policy(real, false)],
        &timelines,
    );
    assert_eq!(ends(&r), vec![(1, at(0), at(1), AnalysisPhase::Failed)]);
    assert_eq!(r.runs[0].metric, "real");
    assert!(r.rows[0].cells[0].dry_run);
    assert_eq!(r.rows[0].cells[0].verdict, AnalysisPhase::Failed);
    assert_eq!(r.rows[0].cells.len(), 2);
}

#[test]
fn initial_delay_counts_from_each_run_start() {
    let m = metric(json!({"initialDelay": "2m"}));
    let other = metric(json!({"name": "other", "successCondition": "true"}));
    let timelines = BTreeMap::from([
        (
            "errors".to_string(),
            ratios(&[0.9, 0.9, 0.9, 0.01, 0.9, 0.9, 0.9]),
        ),
        ("other".to_string(), ratios(&[0.0; 7])),
    ]);
    let r = replay(
        &[with_policy(m, false), with_policy(other, false)],
        &timelines,
    );
    // Run 1 starts at 0; errors is first measured at 2 (0.9): ends. Run 2 starts at 3,
    // errors first measured at 5.
    assert_eq!(
        ends(&r),
        vec![
            (1, at(0), at(2), AnalysisPhase::Failed),
            (2, at(3), at(5), AnalysisPhase::Failed),
        ]
    );
    assert_eq!(r.rows[0].cells.len(), 1);
}

#[test]
fn a_since_start_timeline_gets_the_run_start() {
    let times: Vec<Timestamp> = (0..4).map(at).collect();
    let t = Timeline::SinceStart {
        times,
        judge: Box::new(|t, start| {
            // Fails whenever the run is 1 minute old.
            value(if t.as_second() - start.as_second() == 60 {
                0.9
            } else {
                0.0
            })
        }),
    };
    let r = one(metric(json!({})), t);
    assert_eq!(
        ends(&r),
        vec![
            (1, at(0), at(1), AnalysisPhase::Failed),
            (2, at(2), at(3), AnalysisPhase::Failed),
        ]
    );
}

fn incident(name: &str, start: i64, end: i64) -> Incident {
    Incident {
        name: name.into(),
        start: at(start),
        end: at(end),
    }
}

#[test]
fn incidents_caught_missed_and_false_failures() {
    // Failures at 3 (blip), 11, 12, 13 (one incident), 30 (just after the second incident
    // ends, inside the grace), 50 (blip); inconclusive at 40.
    let mut xs = vec![0.01; 60];
    for i in [3, 11, 12, 13, 30, 50] {
        xs[i] = 0.5;
    }
    let mut outcomes: Vec<Outcome> = xs.iter().map(|x| value(*x)).collect();
    outcomes[40] = empty();
    let r = one(metric(json!({})), minutes(outcomes));
    let incidents = [
        incident("a", 10, 15),
        incident("b", 25, 29),
        incident("missed", 45, 48),
    ];
    let report = against(&r, &incidents, Duration::from_secs(60));
    let d = &report.incidents;
    assert!(d[0].caught() && d[0].delay_seconds == Some(60), "{d:?}");
    assert_eq!(d[0].caught_by.as_ref().expect("a value").ended, at(11));
    assert!(d[1].caught() && d[1].delay_seconds == Some(300), "{d:?}");
    assert!(!d[2].caught() && d[2].delay_seconds.is_none());
    let falses: Vec<Timestamp> = report.false_failures.iter().map(|f| f.ended).collect();
    // 12 and 13 are repeated detections of "a", not false; 3 and 50 are.
    assert_eq!(falses, vec![at(3), at(50)]);
    assert_eq!(report.false_failures[0].value.as_deref(), Some("[0.5]"));
    let inconclusive: Vec<Timestamp> = report.inconclusive.iter().map(|f| f.ended).collect();
    assert_eq!(inconclusive, vec![at(40)]);
    assert_eq!(report.caught(), 2);

    // Without grace, the failure at 30 is after "b" ended: "b" is missed and 30 is false.
    let report = against(&r, &incidents, Duration::ZERO);
    assert!(!report.incidents[1].caught());
    let falses: Vec<Timestamp> = report.false_failures.iter().map(|f| f.ended).collect();
    assert_eq!(falses, vec![at(3), at(30), at(50)]);
}

#[test]
fn a_huge_grace_saturates_instead_of_vanishing() {
    assert_eq!(plus(at(0), Duration::from_secs(60)), at(1));
    assert_eq!(plus(at(0), Duration::MAX), Timestamp::MAX);
    assert_eq!(
        plus(at(0), Duration::from_secs(999_999_999_999 * 3600)),
        Timestamp::MAX
    );
    // A failure long after the incident's end is still inside a huge grace.
    let mut xs = vec![0.01; 60];
    xs[50] = 0.5;
    let r = one(metric(json!({})), ratios(&xs));
    let report = against(&r, &[incident("a", 10, 15)], Duration::MAX);
    assert!(report.incidents[0].caught(), "{report:?}");
    assert!(report.false_failures.is_empty());
    assert_eq!(report.grace_seconds, u64::MAX);
}

#[test]
fn incidents_read_from_yaml_and_json_and_bad_ones_are_refused() {
    let yaml = "- name: outage\n  start: 2026-12-02T10:00:00Z\n  end: 2026-12-02T10:05:00Z\n";
    let list = parse_incidents(yaml).expect("a value");
    assert_eq!(list, vec![incident("outage", 0, 5)]);
    let json =
        r#"[{"name": "outage", "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T10:05:00Z"}]"#;
    assert_eq!(parse_incidents(json).expect("a value"), list);
    let backwards = "- {name: x, start: 2026-12-02T10:05:00Z, end: 2026-12-02T10:00:00Z}";
    assert!(
        parse_incidents(backwards)
            .expect_err("an error")
            .contains("not after its start")
    );
    assert!(parse_incidents("- {name: x, start: yesterday, end: 2026-12-02T10:00:00Z}").is_err());
    assert!(parse_incidents("name: x").is_err());
    assert!(parse_incidents("- {name: x, start: 2026-12-02T10:00:00Z}").is_err());
}

#[test]
fn times_are_rfc3339_now_or_before_now() {
    let now = at(120);
    assert_eq!(parse_time("now", now).expect("a value"), now);
    assert_eq!(parse_time("-2h", now).expect("a value"), at(0));
    assert_eq!(parse_time("-30m", now).expect("a value"), at(90));
    assert_eq!(parse_time("-1h30m", now).expect("a value"), at(30));
    assert_eq!(
        parse_time("-90s", now).expect("a value").as_second(),
        now.as_second() - 90
    );
    assert_eq!(
        parse_time("-1d", now).expect("a value").as_second(),
        now.as_second() - 86400
    );
    assert_eq!(
        parse_time("2026-12-02T10:00:00Z", now).expect("a value"),
        at(0)
    );
    assert_eq!(
        parse_time("2026-12-02T11:00:00+01:00", now).expect("a value"),
        at(0)
    );
    for bad in [
        "",
        "-",
        "-2x",
        "yesterday",
        "2026-13-02T10:00:00Z",
        "-99999999999999d",
        "2h",
    ] {
        assert!(parse_time(bad, now).is_err(), "{bad:?} was read");
    }
}
