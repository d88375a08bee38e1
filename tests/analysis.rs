//! Analysis through the real `sluice` controller: AnalysisRuns measured against a real
//! Prometheus (Debian's) scraping a metrics endpoint the test controls, a local web server,
//! and Jobs on the local control plane; and the Rollout acting on their verdicts.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{Monitoring, run_message, run_phase};
use common::fixture::{
    create_rollout, merged, rollout, set_image, wait_healthy, wait_paused_at, web_canary,
};
use common::{
    ControllerProcess, create_services, events_for, paused_for, phase, rollouts, selector_hash,
    wait_condition, wait_event, wait_status,
};
use e2e::TestEnv;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate};
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::{PauseReason, Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(120);
const GAUGE: &str = "sluice_test_success_rate";

/// The success rate the canary shows (0.99 to begin with) scraped by a real Prometheus, the
/// controller, and the success-rate template reading that Prometheus (`count` and `extra` as
/// [`success_rate_template`] takes them).
async fn monitored(
    env: &TestEnv,
    count: Option<i32>,
    extra: serde_json::Value,
) -> anyhow::Result<(Monitoring, ControllerProcess)> {
    let mon = Monitoring::start(env, GAUGE, 0.99).await?;
    let controller = ControllerProcess::start(env)?;
    success_rate_template(env, &mon.prometheus.url(), count, extra).await?;
    Ok((mon, controller))
}

/// A canary at 50% judged by the success-rate analysis.
fn analysis_steps(env: &TestEnv) -> serde_json::Value {
    json!({"steps": [{"setWeight": 50}, {"analysis": analysis_ref(env)}]})
}

/// The success-rate template: `count` measurements `interval` apart, each at least 0.95.
async fn success_rate_template(
    env: &TestEnv,
    address: &str,
    count: Option<i32>,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let mut metric = json!({
        "name": "success-rate",
        "interval": "2s",
        "successCondition": "result[0] >= 0.95",
        "provider": {"prometheus": {
            "address": address,
            "query": format!("{GAUGE}{{namespace=\"{{{{args.namespace}}}}\"}}"),
        }}
    });
    if let Some(c) = count {
        metric["count"] = json!(c);
    }
    let metric = merged(metric, extra);
    let t: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {"args": [{"name": "namespace"}], "metrics": [metric]}
    }))?;
    env.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &t)
        .await?;
    Ok(())
}

fn analysis_ref(env: &TestEnv) -> serde_json::Value {
    json!({"templates": [{"templateName": "success-rate"}],
           "args": [{"name": "namespace", "value": env.namespace}]})
}

/// A canary Rollout over Services, first revision Healthy. Returns v1's hash.
async fn canary_v1(env: &TestEnv, canary: serde_json::Value) -> anyhow::Result<String> {
    create_services(env, &["web-stable", "web-canary"]).await?;
    let c = json!({"maxSurge": 1, "maxUnavailable": 0, "abortScaleDownDelaySeconds": 3});
    first_revision_healthy(env, &web_canary(2, merged(c, canary))?).await
}

/// Creates `ro` and waits until its first revision is Healthy; returns v1's hash.
async fn first_revision_healthy(env: &TestEnv, ro: &Rollout) -> anyhow::Result<String> {
    create_rollout(env, ro).await?;
    wait_healthy(env, "web", 2, LIMIT).await
}

async fn release_v2(env: &TestEnv) -> anyhow::Result<String> {
    set_image(env, "web", "registry.example/web:2").await?;
    let s = wait_status(env, "web", "the release of v2 to start", LIMIT, |s| {
        s.current_pod_hash.is_some() && s.current_pod_hash != s.stable_rs
    })
    .await?;
    s.current_pod_hash.context("currentPodHash")
}

async fn wait_run(
    env: &TestEnv,
    name: &str,
    what: &str,
    check: impl Fn(&AnalysisRun) -> bool,
) -> anyhow::Result<AnalysisRun> {
    common::analysis::wait_run(env, name, what, LIMIT, check).await
}

fn measurements(r: &AnalysisRun, metric: &str) -> Vec<(Option<AnalysisPhase>, Option<String>)> {
    r.status
        .iter()
        .flat_map(|s| s.metric_results.iter())
        .filter(|m| m.name == metric)
        .flat_map(|m| m.measurements.iter())
        .map(|m| (m.phase, m.value.clone()))
        .collect()
}

#[tokio::test]
async fn a_healthy_canary_is_promoted_through_an_analysis_step() {
    TestEnv::run("analysis-promote", |env| async move {
        let (_mon, mut controller) = monitored(&env, Some(3), json!({})).await?;
        canary_v1(&env, analysis_steps(&env)).await?;
        let v2 = release_v2(&env).await?;
        // Killed mid-analysis: the run's status is all it needs to go on.
        wait_run(
            &env,
            &format!("web-{v2}-2-step1"),
            "a first measurement",
            |r| !measurements(r, "success-rate").is_empty(),
        )
        .await?;
        controller.restart()?;
        let done = wait_status(&env, "web", "v2 promoted and Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str())
        })
        .await?;
        ensure!(done.abort.is_none(), "not aborted: {done:?}");
        let run = env
            .api::<AnalysisRun>()
            .get(&format!("web-{v2}-2-step1"))
            .await?;
        ensure!(
            run_phase(&run) == Some(AnalysisPhase::Successful),
            "{run:?}"
        );
        let m = measurements(&run, "success-rate");
        ensure!(
            m.len() == 3,
            "three measurements, none lost or repeated across the restart: {m:?}"
        );
        ensure!(
            m.iter()
                .all(|(p, v)| *p == Some(AnalysisPhase::Successful)
                    && v.as_deref() == Some("[0.99]")),
            "every measurement passed with the scraped value: {m:?}"
        );
        let events = events_for(&env, "web").await?;
        ensure!(
            events.iter().any(|(_, r, m)| r == "StepCompleted"
                && m.contains("analysis")
                && m.contains("passed")),
            "{events:?}"
        );
        ensure!(selector_hash(&env, "web-stable").await? == Some(v2.clone()));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_canary_whose_error_rate_rises_is_rolled_back() {
    TestEnv::run("analysis-rollback", |env| async move {
        let (mon, controller) = monitored(&env, Some(10), json!({})).await?;
        let v1 = canary_v1(&env, analysis_steps(&env)).await?;
        let v2 = release_v2(&env).await?;
        let run_name = format!("web-{v2}-2-step1");
        wait_run(&env, &run_name, "a first passing measurement", |r| {
            measurements(r, "success-rate")
                .iter()
                .any(|(p, _)| *p == Some(AnalysisPhase::Successful))
        })
        .await?;
        ensure!(
            selector_hash(&env, "web-canary").await? == Some(v2.clone()),
            "the canary takes traffic"
        );
        // The canary starts failing: 20% errors.
        mon.set(0.8).await?;
        let aborted = wait_status(&env, "web", "the release aborted", LIMIT, |s| {
            s.abort == Some(true) && phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        ensure!(aborted.stable_rs.as_deref() == Some(v1.as_str()));
        ensure!(
            selector_hash(&env, "web-stable").await? == Some(v1.clone()),
            "stable Service on v1"
        );
        ensure!(
            selector_hash(&env, "web-canary").await? == Some(v1.clone()),
            "all traffic on stable"
        );
        let run = env.api::<AnalysisRun>().get(&run_name).await?;
        ensure!(run_phase(&run) == Some(AnalysisPhase::Failed), "{run:?}");
        let abort = wait_event(&env, "web", "a RolloutAborted Event", |(t, r, _)| {
            t == "Warning" && r == "RolloutAborted"
        })
        .await?;
        ensure!(
            abort.2.contains("success-rate") && abort.2.contains("[0.8]"),
            "the Event names the metric and value: {}",
            abort.2
        );
        // The same story in /metrics: the abort by its cause, the time it took to get traffic
        // off v2, the metric's last value and phase; names as promtool wants them.
        let ns = &env.namespace;
        let want = [
            format!(r#"sluice_rollout_aborts_total{{namespace="{ns}",rollout="web",cause="AnalysisFailed"}} 1"#),
            format!(r#"sluice_rollout_aborts_total{{namespace="{ns}",rollout="web",cause="Request"}} 0"#),
            format!(r#"sluice_rollout_time_to_safe_seconds_count{{namespace="{ns}",rollout="web"}} 1"#),
            format!(r#"sluice_analysis_metric_value{{namespace="{ns}",rollout="web",metric="success-rate"}} 0.8"#),
            format!(r#"sluice_analysis_metric_phase{{namespace="{ns}",rollout="web",metric="success-rate",phase="Failed"}} 1"#),
            format!(r#"sluice_rollout_release_duration_seconds_count{{namespace="{ns}",rollout="web"}} 0"#),
        ];
        let body = e2e::wait_for("the abort in /metrics", LIMIT, || async {
            let (_, body) = common::http_get(&controller, "/metrics").await?;
            Ok(want.iter().all(|w| body.lines().any(|l| l == w)).then_some(body))
        })
        .await?;
        let safe = common::metrics::samples(&body, "sluice_rollout_time_to_safe_seconds_sum");
        ensure!(
            safe.len() == 1 && safe[0].1 >= 0.0 && safe[0].1 < LIMIT.as_secs_f64(),
            "time to safe: {safe:?}"
        );
        let steps = common::metrics::samples(&body, "sluice_rollout_step_duration_seconds_count");
        ensure!(
            steps.len() == 1 && steps[0].1 >= 1.0,
            "the steps before the analysis step ended and were timed: {steps:?}"
        );
        common::metrics::promtool_check(&body).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_prometheus_outage_pauses_the_release_until_prometheus_is_back() {
    TestEnv::run("analysis-outage", |env| async move {
        let (mut mon, _c) = monitored(&env, Some(4), json!({"consecutiveErrorLimit": 1})).await?;
        let v1 = canary_v1(&env, analysis_steps(&env)).await?;
        let v2 = release_v2(&env).await?;
        let run_name = format!("web-{v2}-2-step1");
        wait_run(&env, &run_name, "a first passing measurement", |r| {
            !measurements(r, "success-rate").is_empty()
        })
        .await?;
        mon.prometheus.stop().await;
        let paused = wait_status(
            &env,
            "web",
            "the release paused on the outage",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Paused)
                    && paused_for(s, PauseReason::InconclusiveAnalysis)
            },
        )
        .await?;
        ensure!(
            paused.stable_rs.as_deref() == Some(v1.as_str()),
            "not promoted on missing data"
        );
        ensure!(paused.abort.is_none(), "a monitoring outage does not abort");
        let run = env.api::<AnalysisRun>().get(&run_name).await?;
        let msg = run_message(&run);
        ensure!(msg.contains("in a row"), "the run says why: {msg}");
        // Still down a while later: still paused, still v1.
        wait_run(&env, &run_name, "more failed attempts", |r| {
            r.status
                .iter()
                .flat_map(|s| s.metric_results.iter())
                .any(|m| m.consecutive_error >= 4)
        })
        .await?;
        let s = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            phase(&s) == Some(RolloutPhase::Paused) && s.stable_rs.as_deref() == Some(v1.as_str())
        );
        // Prometheus back: judging resumes and the release completes.
        mon.prometheus.restart().await?;
        wait_status(&env, "web", "v2 promoted after the outage", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str())
        })
        .await?;
        let events = events_for(&env, "web").await?;
        ensure!(
            events.iter().any(|(_, r, _)| r == "AnalysisInconclusive"),
            "{events:?}"
        );
        ensure!(
            events.iter().any(|(_, r, _)| r == "AnalysisResumed"),
            "{events:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_background_analysis_that_fails_between_steps_aborts() {
    TestEnv::run("analysis-background", |env| async move {
        let (mon, _c) = monitored(&env, None, json!({})).await?;
        let mut bg = analysis_ref(&env);
        bg["startingStep"] = json!(1);
        let v1 = canary_v1(&env, json!({"analysis": bg, "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]})).await?;
        let v2 = release_v2(&env).await?;
        let run_name = format!("web-{v2}-2-background");
        wait_run(&env, &run_name, "background measurements", |r| {
            measurements(r, "success-rate").len() >= 2
        })
        .await?;
        // The run is created before the status that reached its step is written: wait for both.
        wait_paused_at(&env, "web", 1, LIMIT).await.context("paused between steps")?;
        mon.set(0.5).await?;
        let aborted = wait_status(&env, "web", "aborted by the background analysis", LIMIT, |s| {
            s.abort == Some(true)
        })
        .await?;
        ensure!(aborted.stable_rs.as_deref() == Some(v1.as_str()));
        ensure!(selector_hash(&env, "web-canary").await? == Some(v1.clone()));
        let msg = aborted.message.unwrap_or_default();
        ensure!(msg.contains("background analysis") && msg.contains("[0.5]"), "{msg}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_failed_pre_promotion_analysis_keeps_blue_green_on_the_old_revision() {
    TestEnv::run("analysis-bluegreen", |env| async move {
        let (mon, _c) = monitored(&env, Some(2), json!({})).await?;
        create_services(&env, &["web-active", "web-preview"]).await?;
        let ro = rollout(
            "web",
            2,
            json!({"blueGreen": {
                "activeService": "web-active", "previewService": "web-preview",
                "abortScaleDownDelaySeconds": 3, "prePromotionAnalysis": analysis_ref(&env)
            }}),
        )?;
        let v1 = first_revision_healthy(&env, &ro).await?;
        mon.set(0.5).await?;
        let v2 = release_v2(&env).await?;
        let aborted = wait_status(
            &env,
            "web",
            "aborted by the pre-promotion analysis",
            LIMIT,
            |s| s.abort == Some(true),
        )
        .await?;
        ensure!(aborted.stable_rs.as_deref() == Some(v1.as_str()));
        ensure!(
            selector_hash(&env, "web-active").await? == Some(v1.clone()),
            "active never left v1"
        );
        let run = env
            .api::<AnalysisRun>()
            .get(&format!("web-{v2}-2-pre"))
            .await?;
        ensure!(run_phase(&run) == Some(AnalysisPhase::Failed), "{run:?}");
        let msg = aborted.message.unwrap_or_default();
        ensure!(
            msg.contains("pre-promotion analysis") && msg.contains("[0.5]"),
            "{msg}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_condition_that_does_not_compile_is_invalid_spec_until_the_template_is_fixed() {
    TestEnv::run("analysis-invalid", |env| async move {
        let _c = ControllerProcess::start(&env)?;
        success_rate_template(
            &env,
            "http://127.0.0.1:9",
            Some(1),
            json!({"successCondition": "isNan(result[0])"}),
        )
        .await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let ro = web_canary(2, analysis_steps(&env))?;
        create_rollout(&env, &ro).await?;
        let (invalid, _) = wait_condition(&env, "web", INVALID_SPEC, LIMIT).await?;
        let msg = invalid.message.unwrap_or_default();
        ensure!(
            msg.contains("spec.strategy.canary.steps[1].analysis") && msg.contains("isNan"),
            "the message names the field and the problem: {msg}"
        );
        ensure!(
            env.api::<k8s_openapi::api::apps::v1::ReplicaSet>().list(&Default::default()).await?.items.is_empty(),
            "nothing is created for an invalid Rollout"
        );
        // Fixing the template is enough: the Rollout is checked again at once.
        env.api::<AnalysisTemplate>()
            .patch(
                "success-rate",
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/metrics/0/successCondition", "value": "isNaN(result[0]) == false"}
                ]))?),
            )
            .await?;
        wait_status(&env, "web", "Healthy after the fix", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
        })
        .await?;
        Ok(())
    })
    .await;
}
