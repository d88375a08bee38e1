//! The web and job providers, and Prometheus behind bearer-token auth and TLS, measured by
//! the real `sluice` controller through AnalysisRuns created directly.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{Monitoring, json_body, run_message, run_phase, serve, wait_run};
use common::{ControllerProcess, events_for, http_get};
use e2e::TestEnv;
use e2e::authproxy::AuthProxy;
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};

const LIMIT: Duration = Duration::from_secs(120);

async fn create_run(env: &TestEnv, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name}, "spec": spec
    }))?;
    env.api::<AnalysisRun>()
        .create(&PostParams::default(), &run)
        .await?;
    Ok(())
}

async fn secret(env: &TestEnv, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
    let string_data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": string_data
    }))?;
    env.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

/// Waits for the run to finish and returns it.
async fn finished(env: &TestEnv, name: &str) -> anyhow::Result<AnalysisRun> {
    let what = format!("AnalysisRun {name} to finish");
    wait_run(env, name, &what, LIMIT, |r| {
        matches!(
            run_phase(r),
            Some(
                AnalysisPhase::Successful
                    | AnalysisPhase::Failed
                    | AnalysisPhase::Error
                    | AnalysisPhase::Inconclusive
            )
        )
    })
    .await
}

/// A small JSON health endpoint that counts requests carrying the expected header.
async fn health_server(expected_key: &'static str) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|| async { json_body(json!({"data": {"ok": true, "rate": 0.99}})) }),
        )
        .route(
            "/degraded",
            axum::routing::get(|| async {
                json_body(json!({"data": {"ok": false, "rate": 0.42}}))
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    if req.headers().get("x-api-key").and_then(|v| v.to_str().ok())
                        == Some(expected_key)
                    {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    next.run(req).await
                }
            },
        ));
    Ok((serve(app).await?, seen))
}

#[tokio::test]
async fn the_web_provider_judges_a_json_field_with_headers_from_a_secret() {
    TestEnv::run("provider-web", |env| async move {
        let key = "web-key-7f3a91";
        let (base, seen) = health_server("web-key-7f3a91").await?;
        let controller = ControllerProcess::start(&env)?;
        secret(&env, "health-api", &[("key", key)]).await?;
        let metric = |name: &str, path: &str| {
            json!({
                "name": name,
                "successCondition": "result.ok == true && result.rate >= 0.95",
                "provider": {"web": {
                    "url": format!("{base}{path}"),
                    "jsonPath": "{$.data}",
                    "headers": [{"key": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "health-api", "key": "key"}}}]
                }}
            })
        };
        create_run(&env, "web-good", json!({"metrics": [metric("health", "/health")]})).await?;
        create_run(&env, "web-bad", json!({"metrics": [metric("health", "/degraded")]})).await?;
        let good = finished(&env, "web-good").await?;
        ensure!(run_phase(&good) == Some(AnalysisPhase::Successful), "{good:?}");
        let bad = finished(&env, "web-bad").await?;
        ensure!(run_phase(&bad) == Some(AnalysisPhase::Failed), "{bad:?}");
        let msg = run_message(&bad);
        ensure!(msg.contains("0.42"), "the failure shows the value: {msg}");
        ensure!(seen.load(Ordering::Relaxed) >= 2, "the header came from the Secret");
        let yaml = serde_json::to_string(&bad)?;
        ensure!(!yaml.contains(key), "the key is not in the run");
        // The measurements are on /metrics, in a form promtool accepts.
        let (code, body) = http_get(&controller, "/metrics").await?;
        ensure!(code == 200);
        ensure!(
            body.contains(r#"sluice_analysis_measurements_total{provider="web",phase="Successful"} 1"#)
                && body.contains(r#"sluice_analysis_measurements_total{provider="web",phase="Failed"} 1"#),
            "{body}"
        );
        ensure!(body.contains(r#"sluice_analysis_verdicts_total{phase="Failed"} 1"#), "{body}");
        common::metrics::promtool_check(&body).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_job_provider_runs_a_job_and_reads_its_outcome() {
    TestEnv::run("provider-job", |env| async move {
        let _c = ControllerProcess::start(&env)?;
        let job = |behaviour: &str| {
            json!({
                "name": "smoke",
                "provider": {"job": {"spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"annotations": {BEHAVIOUR_ANNOTATION: behaviour}},
                        "spec": {"restartPolicy": "Never",
                                 "containers": [{"name": "smoke", "image": "registry.example/smoke:1"}]}
                    }
                }}}
            })
        };
        create_run(&env, "job-pass", json!({"metrics": [job("complete")]})).await?;
        create_run(&env, "job-fail", json!({"metrics": [job("fail")]})).await?;
        let pass = finished(&env, "job-pass").await?;
        ensure!(run_phase(&pass) == Some(AnalysisPhase::Successful), "{pass:?}");
        let fail = finished(&env, "job-fail").await?;
        ensure!(run_phase(&fail) == Some(AnalysisPhase::Failed), "{fail:?}");
        let msg = run_message(&fail);
        ensure!(msg.contains("Job") && msg.contains("failed"), "{msg}");
        // The Jobs belong to their runs.
        let jobs = env.api::<Job>().list(&Default::default()).await?;
        ensure!(jobs.items.len() == 2, "one Job per run: {}", jobs.items.len());
        for j in &jobs.items {
            let owner = j.metadata.owner_references.as_ref().and_then(|o| o.first()).context("owner")?;
            ensure!(owner.kind == "AnalysisRun", "{owner:?}");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn prometheus_behind_bearer_auth_and_tls_works_and_the_token_stays_secret() {
    TestEnv::run("provider-prometheus-auth", |env| async move {
        let token = "s3cr3t-token-5d9c2e";
        let mon = Monitoring::start(&env, "sluice_test_up", 1.0).await?;
        let q = mon.query();
        let proxy = AuthProxy::start(mon.prometheus.addr(), token, &mon.dir).await?;
        let controller = ControllerProcess::start(&env)?;
        secret(
            &env,
            "prom-auth",
            &[
                ("token", token),
                ("wrong", "not-the-token"),
                ("ca.crt", &proxy.ca_pem()),
            ],
        )
        .await?;
        let metric = |key: &str| {
            json!({
                "name": "up",
                "successCondition": "result[0] == 1",
                "consecutiveErrorLimit": 1,
                "interval": "1s",
                "count": 1,
                "provider": {"prometheus": {
                    "address": proxy.url(),
                    "query": q,
                    "authentication": {"bearerToken": {"name": "prom-auth", "key": key}},
                    "tls": {"caSecret": {"name": "prom-auth", "key": "ca.crt"}}
                }}
            })
        };
        create_run(&env, "auth-good", json!({"metrics": [metric("token")]})).await?;
        create_run(&env, "auth-wrong", json!({"metrics": [metric("wrong")]})).await?;
        let good = finished(&env, "auth-good").await?;
        ensure!(
            run_phase(&good) == Some(AnalysisPhase::Successful),
            "{good:?}"
        );
        ensure!(proxy.authorized_requests() >= 1);
        let wrong = finished(&env, "auth-wrong").await?;
        ensure!(
            run_phase(&wrong) == Some(AnalysisPhase::Inconclusive),
            "an auth failure is not a verdict on the release: {wrong:?}"
        );
        let msg = run_message(&wrong);
        ensure!(
            msg.contains("401"),
            "the run says the server refused: {msg}"
        );
        ensure!(proxy.refused_requests() >= 2);
        // The token is nowhere: not in the runs, their Events, or the controller's log.
        for run in [&good, &wrong] {
            ensure!(
                !serde_json::to_string(run)?.contains(token),
                "token in a run"
            );
        }
        for name in ["auth-good", "auth-wrong"] {
            let events = events_for(&env, name).await?;
            ensure!(!format!("{events:?}").contains(token), "token in an Event");
        }
        let log = std::fs::read_to_string(&controller.log)?;
        ensure!(
            log.contains("auth-good") || log.contains("analysis"),
            "the log is the controller's"
        );
        ensure!(!log.contains(token), "token in the controller's log");
        Ok(())
    })
    .await;
}
