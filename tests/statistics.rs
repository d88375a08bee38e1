//! Analysis that compares the canary with the stable and judges SLO burn rates, on the local
//! control plane: the traffic simulator answers as the pods' annotations say (latency, error
//! rate) and Istio's VirtualService carries the weights; a real Prometheus scrapes it every
//! second; the `compare` and `burnRate` providers query it through the controller.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::exercise::{LIMIT, Stack, stable_hash, stack};
use common::fixture::{set_template, wait_promoted};
use e2e::TestEnv;
use e2e::trafficsim::{ERROR_RATE_ANNOTATION, LATENCY_ANNOTATION, Noise};
use kube::api::PostParams;
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, Measurement, MetricResult};
use sluice::api::rollout::RolloutPhase;

/// The steps of every release here: half the traffic to the canary, a few seconds for it to
/// show in Prometheus, then the analysis, then all of it.
fn steps(template: &str) -> Value {
    json!([
        {"setWeight": 50},
        {"pause": {"duration": "6s"}},
        {"analysis": {
            "templates": [{"templateName": template}],
            "args": [
                {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}
            ]
        }},
        {"setWeight": 100}
    ])
}

/// PromQL over one revision's requests in this namespace: the mean latency in milliseconds
/// and the share of 5xx answers, over 10 s. `revision` is `{{revision}}` or an argument.
fn mean_latency(ns: &str, revision: &str) -> String {
    let sel = format!(
        r#"destination_workload_namespace="{ns}",destination_canonical_revision="{revision}""#
    );
    format!(
        "sum(rate(istio_request_duration_milliseconds_sum{{{sel}}}[10s])) / sum(rate(istio_request_duration_milliseconds_count{{{sel}}}[10s]))"
    )
}

fn error_ratio(ns: &str, revision: &str, window: &str) -> String {
    let sel = format!(
        r#"destination_workload_namespace="{ns}",destination_canonical_revision="{revision}""#
    );
    format!(
        r#"sum(rate(istio_requests_total{{{sel},response_code=~"5.."}}[{window}])) / sum(rate(istio_requests_total{{{sel}}}[{window}]))"#
    )
}

async fn create_template(env: &TestEnv, name: &str, metrics: Value) -> anyhow::Result<()> {
    let t: sluice::api::AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "canary-hash"}, {"name": "stable-hash"}],
            "metrics": metrics
        }
    }))?;
    env.api::<sluice::api::AnalysisTemplate>()
        .create(&PostParams::default(), &t)
        .await
        .with_context(|| format!("creating AnalysisTemplate {name}"))?;
    Ok(())
}

/// The newest finished AnalysisRun that measured `metric`.
async fn finished_run(env: &TestEnv, metric: &str, after: usize) -> anyhow::Result<AnalysisRun> {
    let api = env.api::<AnalysisRun>();
    e2e::wait_for(
        &format!("run {} measuring {metric} finished", after + 1),
        LIMIT,
        || async {
            let mut runs: Vec<AnalysisRun> = api
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|r| r.spec.metrics.iter().any(|m| m.name == metric))
                .collect();
            runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
            Ok(runs.into_iter().nth(after).filter(|r| {
                sluice::analysis::judge::is_terminal(r.status.as_ref().and_then(|s| s.phase))
            }))
        },
    )
    .await
}

fn result<'a>(run: &'a AnalysisRun, metric: &str) -> anyhow::Result<&'a MetricResult> {
    run.status
        .as_ref()
        .and_then(|s| s.metric_results.iter().find(|r| r.name == metric))
        .with_context(|| format!("no result for {metric} in {run:?}"))
}

fn last(r: &MetricResult) -> anyhow::Result<&Measurement> {
    r.measurements.last().context("no measurement")
}

fn meta<'a>(m: &'a Measurement, key: &str) -> anyhow::Result<&'a str> {
    m.metadata
        .as_ref()
        .and_then(|md| md.get(key))
        .map(String::as_str)
        .with_context(|| format!("no {key} in {m:?}"))
}

/// The median a `n=24 median=13.0` figure gives.
fn median(text: &str) -> anyhow::Result<f64> {
    text.split("median=")
        .nth(1)
        .context("no median")?
        .parse()
        .with_context(|| format!("median in {text:?}"))
}

async fn wait_aborted(env: &TestEnv, stable: &str) -> anyhow::Result<()> {
    common::wait_status(
        env,
        "web",
        "the release aborted, back on the stable",
        LIMIT,
        |s| {
            s.abort == Some(true)
                && s.stable_rs.as_deref() == Some(stable)
                && s.phase == Some(RolloutPhase::Degraded)
        },
    )
    .await
    .map(|_| ())
}

/// The stack, its Rollout healthy on a first revision with steps that need no template yet.
async fn start(env: &TestEnv) -> anyhow::Result<(Stack, String)> {
    let stack = stack(env, json!([{"setWeight": 50}, {"pause": {}}])).await?;
    let stable = stable_hash(env).await?;
    Ok((stack, stable))
}

/// The Rollout's steps, now that their template exists.
async fn use_steps(env: &TestEnv, steps: Value) -> anyhow::Result<()> {
    common::fixture::patch_spec(
        env,
        "web",
        json!({"strategy": {"canary": {"steps": steps}}}),
    )
    .await
}

#[tokio::test]
async fn compare_passes_an_identical_canary_on_a_noisy_day_and_fails_one_30_percent_slower() {
    TestEnv::run("stats-compare", |env| async move {
        let ns = env.namespace.clone();
        let (stack, first) = start(&env).await?;
        let prom = stack.prom.url();
        create_template(
            &env,
            "versus-stable",
            json!([
                {
                    // A threshold both revisions pass: 500 ms.
                    "name": "latency-limit", "interval": "3s", "count": 8,
                    "successCondition": "result[0] < 500",
                    "provider": {"prometheus": {"address": prom, "query": mean_latency(&ns, "{{args.canary-hash}}")}}
                },
                {
                    // A threshold the noise of the day breaks now and then: shown, not obeyed.
                    "name": "error-limit", "interval": "2s", "count": 15,
                    "successCondition": "result[0] < 0.05",
                    "provider": {"prometheus": {"address": prom, "query": error_ratio(&ns, "{{args.canary-hash}}", "10s")}}
                },
                {
                    "name": "versus-stable", "initialDelay": "24s", "interval": "8s", "count": 2,
                    "failureLimit": 0, "inconclusiveLimit": 1,
                    "provider": {"compare": {
                        "prometheus": {"address": prom},
                        "canary": "{{args.canary-hash}}", "stable": "{{args.stable-hash}}",
                        "step": "2s",
                        "metrics": [
                            {"name": "latency", "query": mean_latency(&ns, "{{revision}}"), "direction": "Increase"},
                            {"name": "errors", "query": error_ratio(&ns, "{{revision}}", "10s"), "direction": "Increase"}
                        ]
                    }}
                }
            ]),
        )
        .await?;
        let dry: Vec<sluice::api::analysis::DryRun> =
            serde_json::from_value(json!([{"metricName": "^error-limit$"}]))?;
        use_steps(&env, steps_with_dry_run("versus-stable", &dry)?).await?;

        // A noisy day: every pod, stable and canary alike, fails 1% to 13% of requests,
        // changing over 40 s.
        stack.sim.set_noise(Some(Noise {
            base: 0.01,
            amplitude: 0.12,
            period: Duration::from_secs(40),
        }))?;
        set_template(&env, "web", "web:2", json!({ERROR_RATE_ANNOTATION: "0"})).await?;
        let second = wait_promoted(&env, "web", &first, LIMIT).await?;
        let run = finished_run(&env, "versus-stable", 0).await?;
        eprintln!("noisy day run: {:#?}", run.status);
        let compare = result(&run, "versus-stable")?;
        ensure!(compare.phase == Some(AnalysisPhase::Successful), "compare: {compare:?}");
        let m = last(compare)?;
        ensure!(meta(m, "errors.verdict")? == "Pass" && meta(m, "latency.verdict")? == "Pass", "{m:?}");
        ensure!(m.value.as_deref() == Some("100"), "score {:?}", m.value);
        let threshold = result(&run, "error-limit")?;
        ensure!(threshold.failed > 0, "the fixed threshold never failed on the noisy day: {threshold:?}");
        common::figure(&format!(
            "noisy day: fixed threshold failed {} of {} measurements, compare {} ({})",
            threshold.failed, threshold.count, m.value.clone().unwrap_or_default(),
            meta(m, "errors.pValue")?
        ));

        // 30% slower: 13 ms against 10 ms. The 500 ms threshold passes it; compare does not.
        set_template(&env, "web", "web:3", json!({LATENCY_ANNOTATION: "13"})).await?;
        wait_aborted(&env, &second).await?;
        let run = finished_run(&env, "versus-stable", 1).await?;
        eprintln!("slow canary run: {:#?}", run.status);
        let limit = result(&run, "latency-limit")?;
        ensure!(limit.failed == 0 && limit.successful > 0, "the threshold failed: {limit:?}");
        let compare = result(&run, "versus-stable")?;
        ensure!(compare.phase == Some(AnalysisPhase::Failed), "compare: {compare:?}");
        let m = last(compare)?;
        ensure!(meta(m, "latency.verdict")? == "High", "{m:?}");
        let (canary, stable) = (median(meta(m, "latency.canary")?)?, median(meta(m, "latency.stable")?)?);
        ensure!((canary / stable - 1.3).abs() < 0.05, "medians {canary} / {stable}");
        let p: f64 = meta(m, "latency.pValue")?.parse()?;
        ensure!(p < 0.02, "p-value {p}");
        ensure!(m.message.as_deref().unwrap_or_default().contains("latency"), "{m:?}");
        common::figure(&format!(
            "slow canary: medians {canary:.2} ms against {stable:.2} ms, p {p:e}, score {}",
            m.value.clone().unwrap_or_default()
        ));
        stack.stop().await;
        Ok(())
    })
    .await;
}

/// The steps with the analysis's `dryRun` rules.
fn steps_with_dry_run(
    template: &str,
    dry: &[sluice::api::analysis::DryRun],
) -> anyhow::Result<Value> {
    let mut s = steps(template);
    let analysis = s
        .get_mut(2)
        .and_then(|a| a.get_mut("analysis"))
        .and_then(Value::as_object_mut)
        .context("the analysis step")?;
    analysis.insert("dryRun".into(), serde_json::to_value(dry)?);
    Ok(s)
}

#[tokio::test]
async fn burn_rate_passes_a_canary_at_1x_and_fails_one_at_20x() {
    TestEnv::run("stats-burn", |env| async move {
        let ns = env.namespace.clone();
        let (stack, first) = start(&env).await?;
        let prom = stack.prom.url();
        let sel = format!(r#"destination_workload_namespace="{ns}",destination_canonical_revision="{{{{args.canary-hash}}}}""#);
        create_template(
            &env,
            "budget",
            json!([{
                "name": "budget", "initialDelay": "10s", "interval": "5s", "count": 4,
                "failureLimit": 0, "inconclusiveLimit": 1,
                "provider": {"burnRate": {
                    "prometheus": {"address": prom},
                    "objective": 0.99,
                    "badQuery": format!(r#"sum(rate(istio_requests_total{{{sel},response_code=~"5.."}}[{{{{window}}}}]))"#),
                    "totalQuery": format!("sum(rate(istio_requests_total{{{sel}}}[{{{{window}}}}]))"),
                    "window": "12m", "minWindow": "10s"
                }}
            }]),
        )
        .await?;
        use_steps(&env, steps("budget")).await?;

        // 1% of requests fail against a 99% objective: the budget burns at 1x.
        set_template(&env, "web", "web:2", json!({ERROR_RATE_ANNOTATION: "0.01"})).await?;
        let second = wait_promoted(&env, "web", &first, LIMIT).await?;
        let run = finished_run(&env, "budget", 0).await?;
        eprintln!("1x run: {:#?}", run.status);
        let r = result(&run, "budget")?;
        ensure!(r.phase == Some(AnalysisPhase::Successful), "1x: {r:?}");
        let m = last(r)?;
        let burn: f64 = m.value.as_deref().context("value")?.parse()?;
        ensure!(burn < 6.0, "1x measured as {burn}");
        meta(m, "budgetConsumed")?;

        // 20%: 20x, above the fast pair's 14.4x over 2m and 10s.
        set_template(&env, "web", "web:3", json!({ERROR_RATE_ANNOTATION: "0.2"})).await?;
        wait_aborted(&env, &second).await?;
        let run = finished_run(&env, "budget", 1).await?;
        eprintln!("20x run: {:#?}", run.status);
        let r = result(&run, "budget")?;
        ensure!(r.phase == Some(AnalysisPhase::Failed), "20x: {r:?}");
        let m = last(r)?;
        let long: f64 = meta(m, "burnRate.2m")?.trim_end_matches('x').parse()?;
        ensure!((14.4..30.0).contains(&long), "burn over 2m {long}");
        ensure!(m.message.as_deref().unwrap_or_default().contains("above 14.4x"), "{m:?}");
        common::figure(&format!(
            "burn rate: 1x release measured {burn}, 20x release {long} over 2m; {}",
            meta(m, "budgetConsumed")?
        ));
        stack.stop().await;
        Ok(())
    })
    .await;
}
