//! The per-Rollout series that need more than one reconcile to say anything: durations,
//! causes and analysis measurements.

use super::*;
use crate::telemetry::Metrics;
use std::time::Duration;

/// Asserts that `text` holds each of `lines`.
fn assert_has(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// Forgets Rollout `namespace`/`name` (deleted) and asserts none of its series is left.
fn assert_forgotten(m: &Metrics, namespace: &str, name: &str) {
    m.rollouts().forget(namespace, name);
    let text = m.render();
    let its = format!(r#"namespace="{namespace}",rollout="{name}""#);
    assert!(!text.contains(&its), "{its} left in:\n{text}");
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

/// One reconcile, `decided` and `written` given in seconds from `t0`.
fn at<'a>(t0: Instant, decided: f64, written: f64) -> Reconciled<'a> {
    Reconciled {
        decided: Some(secs(t0, decided)),
        written: Some(secs(t0, written)),
        ..Default::default()
    }
}

#[test]
fn buckets_hold_what_falls_at_or_under_their_bound() {
    let mut h = Histogram::new(&SAFE_BOUNDS);
    for s in [0.05, 0.1, 0.3, 2.0, 59.0, 61.0] {
        h.observe(s);
    }
    assert_eq!(h.count(), 6);
    assert!((h.sum - 122.45).abs() < 1e-9, "{}", h.sum);
    assert_eq!(
        h.buckets(),
        vec![
            (0.1, 2),
            (0.5, 1),
            (2.0, 1),
            (10.0, 0),
            (60.0, 1),
            (f64::INFINITY, 1)
        ]
    );
}

#[test]
fn steps_and_the_release_are_timed_from_its_start_to_its_completion() {
    let t0 = Instant::now();
    let mut d = Durations::new();
    let start = Reconciled {
        release_started: true,
        step: Some(0),
        ..at(t0, 0.0, 0.1)
    };
    d.reconciled(&start, secs(t0, 0.0), secs(t0, 0.1));
    // Nothing moved: nothing observed.
    let same = Reconciled {
        step: Some(0),
        ..at(t0, 5.0, 5.1)
    };
    d.reconciled(&same, secs(t0, 5.0), secs(t0, 5.1));
    assert_eq!(d.step.count(), 0);
    // Step 0 ended 20 s after the release began; steps 1 and 2 in the same write.
    let jump = Reconciled {
        step: Some(3),
        ..at(t0, 20.0, 20.0)
    };
    d.reconciled(&jump, secs(t0, 20.0), secs(t0, 20.0));
    assert_eq!(d.step.count(), 3);
    assert!((d.step.sum - 20.0).abs() < 1e-9, "{}", d.step.sum);
    assert_eq!(d.step.buckets()[0], (5.0, 2), "two steps of 0 s");
    assert_eq!(d.step.buckets()[1], (30.0, 1), "one of 20 s");
    let done = Reconciled {
        step: Some(4),
        release_completed: true,
        ..at(t0, 400.0, 400.0)
    };
    d.reconciled(&done, secs(t0, 400.0), secs(t0, 400.0));
    assert_eq!(d.step.count(), 4, "the last step ends with the release");
    assert_eq!(d.release.count(), 1);
    assert!((d.release.sum - 400.0).abs() < 1e-9, "{}", d.release.sum);
    assert_eq!(d.release.buckets()[2], (1800.0, 1));
    assert_eq!(d.time_to_safe.count(), 0, "no rollback");
}

#[test]
fn an_automatic_abort_is_timed_to_the_write_that_took_traffic_off() {
    let t0 = Instant::now();
    let mut d = Durations::new();
    let start = Reconciled {
        release_started: true,
        step: Some(0),
        ..Default::default()
    };
    d.reconciled(&start, t0, t0);
    // Decided at 10 s; the weight could not go to 0 at once (the stable was short).
    let abort = Reconciled {
        aborted: Some(AbortCause::AnalysisFailed),
        aborting: true,
        off_the_new_revision: false,
        step: Some(1),
        ..Default::default()
    };
    d.reconciled(&abort, secs(t0, 10.0), secs(t0, 10.05));
    assert_eq!(d.time_to_safe.count(), 0);
    assert_eq!(d.step.count(), 1, "the step it reached still ended");
    let safe = Reconciled {
        aborting: true,
        off_the_new_revision: true,
        step: Some(1),
        ..Default::default()
    };
    d.reconciled(&safe, secs(t0, 13.0), secs(t0, 13.5));
    assert_eq!(d.time_to_safe.count(), 1);
    assert!(
        (d.time_to_safe.sum - 3.5).abs() < 1e-9,
        "{}",
        d.time_to_safe.sum
    );
    // Safe stays safe: not counted again.
    d.reconciled(&safe, secs(t0, 20.0), secs(t0, 20.0));
    assert_eq!(d.time_to_safe.count(), 1);
    assert_eq!(
        d.release.count(),
        0,
        "an aborted release is not a completed one"
    );
}

#[test]
fn an_abort_off_traffic_in_its_own_write_and_a_manual_one() {
    let t0 = Instant::now();
    let mut d = Durations::new();
    let urgent = Reconciled {
        aborted: Some(AbortCause::PodsFailing),
        aborting: true,
        off_the_new_revision: true,
        ..Default::default()
    };
    d.reconciled(&urgent, t0, secs(t0, 0.02));
    assert_eq!(d.time_to_safe.count(), 1);
    assert_eq!(d.time_to_safe.buckets()[0], (0.1, 1));
    // A person's abort is not an automatic rollback.
    let manual = Reconciled {
        aborted: Some(AbortCause::Request),
        aborting: true,
        off_the_new_revision: true,
        ..Default::default()
    };
    d.reconciled(&manual, secs(t0, 5.0), secs(t0, 6.0));
    assert_eq!(d.time_to_safe.count(), 1);
    // Retried before traffic was off: nothing to time.
    let abort = Reconciled {
        aborted: Some(AbortCause::ProgressDeadline),
        aborting: true,
        ..Default::default()
    };
    d.reconciled(&abort, secs(t0, 10.0), secs(t0, 10.0));
    let retried = Reconciled {
        release_started: true,
        ..Default::default()
    };
    d.reconciled(&retried, secs(t0, 11.0), secs(t0, 11.0));
    let later = Reconciled {
        aborting: true,
        off_the_new_revision: true,
        ..Default::default()
    };
    d.reconciled(&later, secs(t0, 30.0), secs(t0, 30.0));
    assert_eq!(d.time_to_safe.count(), 1);
}

#[test]
fn causes_count_from_zero_and_histograms_appear_with_the_first_release() {
    let m = Metrics::new();
    let series = m.rollouts();
    series.observe("shop", "web", Some(RolloutPhase::Healthy), None, None);
    let text = m.render();
    for cause in [
        "Request",
        "AnalysisFailed",
        "PodsFailing",
        "ProgressDeadline",
    ] {
        let line = format!(
            r#"sluice_rollout_aborts_total{{namespace="shop",rollout="web",cause="{cause}"}} 0"#
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(
        text.contains(
            r#"sluice_rollout_promotions_total{namespace="shop",rollout="web",cause="Manual"} 0"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("duration_seconds_bucket{namespace"),
        "{text}"
    );
    series.reconciled(
        "shop",
        "web",
        &Reconciled {
            release_started: true,
            step: Some(0),
            promotions: &[PromotionCause::Manual, PromotionCause::Manual],
            ..Default::default()
        },
    );
    series.reconciled(
        "shop",
        "web",
        &Reconciled {
            aborted: Some(AbortCause::AnalysisFailed),
            aborting: true,
            off_the_new_revision: true,
            ..Default::default()
        },
    );
    // Every cause counts, the last one added too (a safety stop once panicked here).
    series.reconciled(
        "shop",
        "web",
        &Reconciled {
            aborted: Some(AbortCause::SafetyStop),
            aborting: true,
            ..Default::default()
        },
    );
    assert_has(
        &m.render(),
        &[
            r#"sluice_rollout_aborts_total{namespace="shop",rollout="web",cause="SafetyStop"} 1"#,
            r#"sluice_rollout_aborts_total{namespace="shop",rollout="web",cause="AnalysisFailed"} 1"#,
            r#"sluice_rollout_aborts_total{namespace="shop",rollout="web",cause="Request"} 0"#,
            r#"sluice_rollout_promotions_total{namespace="shop",rollout="web",cause="Manual"} 2"#,
            r#"sluice_rollout_time_to_safe_seconds_count{namespace="shop",rollout="web"} 1"#,
            r#"sluice_rollout_time_to_safe_seconds_bucket{le="+Inf",namespace="shop",rollout="web"} 1"#,
            r#"sluice_rollout_release_duration_seconds_count{namespace="shop",rollout="web"} 0"#,
            "# TYPE sluice_rollout_step_duration_seconds histogram",
            "# TYPE sluice_rollout_aborts counter",
        ],
    );
    assert_forgotten(&m, "shop", "web");
}

#[test]
fn each_analysis_metric_shows_its_last_value_and_phase() {
    let m = Metrics::new();
    let series = m.rollouts();
    series.measured("shop", "web", "success-rate", Some(0.99), "Successful");
    series.measured("shop", "web", "latency", None, "Error");
    series.measured("shop", "web", "success-rate", Some(0.42), "Failed");
    series.measured("shop", "web", "ignored", Some(1.0), "Running");
    let text = m.render();
    assert_has(
        &text,
        &[
            r#"sluice_analysis_metric_value{namespace="shop",rollout="web",metric="success-rate"} 0.42"#,
            r#"sluice_analysis_metric_phase{namespace="shop",rollout="web",metric="success-rate",phase="Failed"} 1"#,
            r#"sluice_analysis_metric_phase{namespace="shop",rollout="web",metric="success-rate",phase="Successful"} 0"#,
            r#"sluice_analysis_metric_phase{namespace="shop",rollout="web",metric="latency",phase="Error"} 1"#,
        ],
    );
    assert!(
        !text.contains(r#"metric="latency"} "#),
        "no value without a number: {text}"
    );
    assert!(
        !text.contains("ignored"),
        "a measurement still running is not a result: {text}"
    );
    assert_eq!(
        text.matches("sluice_analysis_metric_phase{").count(),
        8,
        "{text}"
    );
}

/// A Rollout's release counters exist from its first reconcile, at 0, so `increase()`
/// (alerts, panels) sees its first abort.
#[test]
fn release_counters_start_at_zero_so_the_first_abort_is_an_increase() {
    let m = Metrics::new();
    m.rollouts()
        .observe("shop", "web", Some(RolloutPhase::Healthy), None, None);
    let text = m.render();
    for reason in COUNTED_FROM_ZERO {
        let line = format!(
            r#"sluice_rollout_decisions_total{{namespace="shop",rollout="web",reason="{reason}"}} 0"#
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    m.rollouts().decision("shop", "web", "RolloutAborted");
    m.rollouts()
        .observe("shop", "web", Some(RolloutPhase::Degraded), None, None);
    let text = m.render();
    assert!(
        text.contains(r#"sluice_rollout_decisions_total{namespace="shop",rollout="web",reason="RolloutAborted"} 1"#),
        "{text}"
    );
    assert_eq!(
        text.matches(r#"reason="RolloutAborted""#).count(),
        1,
        "one series per reason: {text}"
    );
}

#[test]
fn replicas_by_role_are_one_series_per_role_and_go_with_the_rollout() {
    let m = Metrics::new();
    assert!(
        !m.render().contains("sluice_rollout_desired_replicas"),
        "none before a reconcile"
    );
    m.rollouts().replicas(
        "shop",
        "web",
        RoleReplicas {
            stable_desired: 4,
            stable_available: 3,
            canary_desired: 1,
            canary_available: 0,
        },
    );
    let text = m.render();
    assert_has(
        &text,
        &[
            r#"sluice_rollout_desired_replicas{namespace="shop",rollout="web",role="stable"} 4"#,
            r#"sluice_rollout_desired_replicas{namespace="shop",rollout="web",role="canary"} 1"#,
            r#"sluice_rollout_available_replicas{namespace="shop",rollout="web",role="stable"} 3"#,
            r#"sluice_rollout_available_replicas{namespace="shop",rollout="web",role="canary"} 0"#,
        ],
    );
    assert_forgotten(&m, "shop", "web");
}

#[test]
fn phase_is_one_hot_and_a_deleted_rollout_leaves_no_series() {
    let m = Metrics::new();
    m.rollouts()
        .observe("shop", "web", Some(RolloutPhase::Paused), Some(2), Some(50));
    m.rollouts().decision("shop", "web", "Paused");
    assert_has(
        &m.render(),
        &[
            r#"sluice_rollout_phase{namespace="shop",rollout="web",phase="Paused"} 1"#,
            r#"sluice_rollout_phase{namespace="shop",rollout="web",phase="Healthy"} 0"#,
            r#"sluice_rollout_canary_weight{namespace="shop",rollout="web"} 50"#,
            r#"sluice_rollout_decisions_total{namespace="shop",rollout="web",reason="Paused"} 1"#,
        ],
    );
    assert_forgotten(&m, "shop", "web");
}

#[test]
fn each_rollout_keeps_its_own_series_and_counts() {
    let m = Metrics::new();
    m.rollouts().observe(
        "shop",
        "web",
        Some(RolloutPhase::Progressing),
        Some(1),
        Some(25),
    );
    m.rollouts()
        .observe("shop", "api", Some(RolloutPhase::Healthy), None, None);
    m.rollouts().decision("shop", "web", "StepCompleted");
    m.rollouts().decision("shop", "web", "StepCompleted");
    m.rollouts().decision("shop", "web", "Paused");
    // Decided before it was ever observed: counts, and no phase series yet.
    m.rollouts().decision("other", "new", "FirstRevision");
    m.rollouts()
        .observe("shop", "web", Some(RolloutPhase::Paused), Some(2), Some(50));
    let text = m.render();
    assert_has(
        &text,
        &[
            r#"sluice_rollout_phase{namespace="shop",rollout="web",phase="Paused"} 1"#,
            r#"sluice_rollout_phase{namespace="shop",rollout="web",phase="Progressing"} 0"#,
            r#"sluice_rollout_phase{namespace="shop",rollout="api",phase="Healthy"} 1"#,
            r#"sluice_rollout_step{namespace="shop",rollout="web"} 2"#,
            r#"sluice_rollout_step{namespace="shop",rollout="api"} 0"#,
            r#"sluice_rollout_canary_weight{namespace="shop",rollout="web"} 50"#,
            r#"sluice_rollout_decisions_total{namespace="shop",rollout="web",reason="StepCompleted"} 2"#,
            r#"sluice_rollout_decisions_total{namespace="shop",rollout="web",reason="Paused"} 1"#,
            r#"sluice_rollout_decisions_total{namespace="other",rollout="new",reason="FirstRevision"} 1"#,
            "# TYPE sluice_rollout_phase gauge",
            "# TYPE sluice_rollout_decisions counter",
            "# HELP sluice_rollout_step Index of the canary step in progress.",
        ],
    );
    assert!(!text.contains(r#"rollout="new",phase"#), "{text}");
    assert_eq!(text.matches("sluice_rollout_phase{").count(), 8, "{text}");
    assert_forgotten(&m, "shop", "web");
    assert_has(&m.render(), &[r#"rollout="api",phase="Healthy"} 1"#]);
    m.rollouts().forget("shop", "api");
    m.rollouts().forget("other", "new");
    let text = m.render();
    assert!(
        !text.contains("sluice_rollout_"),
        "no family is left without series:\n{text}"
    );
}
