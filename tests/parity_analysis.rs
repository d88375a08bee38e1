//! Analysis as Argo Rollouts defines it (issue 11), through the real `sluice` controller on the
//! local control plane: `dryRun` and `measurementRetention` rules as regular expressions,
//! numbers and durations from `{{args}}`, metrics without conditions, Job metrics whose pod
//! cannot start, background analysis that turns Inconclusive, and malformed templates refused
//! by the API server. Each test names the Argo Rollouts source it follows.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{json_body, run_message, run_phase, serve, wait_run};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy, web_canary};
use common::{ControllerProcess, create_services, paused_for, phase, wait_condition, wait_status};
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate, RunSummary};
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::{PauseReason, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(80);

/// A web endpoint answering `{"ok": true}` at `/ok`; returns its base URL.
async fn ok_endpoint() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/ok",
        axum::routing::get(|| async { json_body(json!({"ok": true})) }),
    );
    serve(app).await
}

/// A web metric reading `{$.ok}` from `url`, with the fields of `extra` (conditions, counts).
fn web_metric(name: &str, url: &str, extra: Value) -> Value {
    common::fixture::merged(
        json!({"name": name, "provider": {"web": {"url": format!("{url}/ok"), "jsonPath": "{$.ok}"}}}),
        extra,
    )
}

async fn create_template(env: &TestEnv, name: &str, spec: Value) -> anyhow::Result<()> {
    let t: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": name}, "spec": spec
    }))?;
    env.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &t)
        .await
        .with_context(|| format!("creating AnalysisTemplate {name}"))?;
    Ok(())
}

/// The AnalysisRun whose name ends with `suffix` (`-step1`, `-background`, `-pre`), once
/// `check` holds for it.
async fn wait_run_ending(
    env: &TestEnv,
    suffix: &str,
    what: &str,
    check: impl Fn(&AnalysisRun) -> bool,
) -> anyhow::Result<AnalysisRun> {
    let api = env.api::<AnalysisRun>();
    wait_for(what, LIMIT, || async {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(suffix))
                    && check(r)
            }))
    })
    .await
}

fn summary(r: &AnalysisRun, dry: bool) -> RunSummary {
    let s = r.status.as_ref();
    let sum = if dry {
        s.and_then(|s| s.dry_run_summary.clone())
    } else {
        s.and_then(|s| s.run_summary.clone())
    };
    sum.unwrap_or_default()
}

fn counts(s: &RunSummary) -> (i32, i32, i32, i32) {
    (s.count, s.successful, s.failed, s.inconclusive)
}

/// The phase and `dryRun` flag of a run's metric.
fn metric_state(r: &AnalysisRun, metric: &str) -> (Option<AnalysisPhase>, Option<bool>) {
    r.status
        .iter()
        .flat_map(|s| s.metric_results.iter())
        .find(|m| m.name == metric)
        .map_or((None, None), |m| (m.phase, m.dry_run))
}

/// The template both dry-run tests use: `test-fail` fails every measurement, `gate-ok` has no
/// condition (judged by the provider alone).
async fn checks_template(env: &TestEnv, url: &str) -> anyhow::Result<()> {
    create_template(
        env,
        "checks",
        json!({"metrics": [
            web_metric("test-fail", url, json!({"failureCondition": "result == true"})),
            web_metric("gate-ok", url, json!({}))
        ]}),
    )
    .await
}

// Argo Rollouts: utils/analysis/helpers.go GetDryRunMetrics (regexp.MatchString, unanchored),
// analysis/analysis.go assessRunStatus (dry-run verdicts go to dryRunSummary and never decide
// the run), rollout/analysis.go (every Rollout analysis block carries dryRun into its run);
// utils/evaluate/evaluate.go EvaluateResult (no condition: Successful when the provider
// answered; e2e TestMultipleAnalysis).
#[tokio::test]
async fn a_failing_dry_run_metric_never_stops_a_canary_step_or_background_analysis() {
    TestEnv::run("parity-dry-run-canary", |env| async move {
        let url = ok_endpoint().await?;
        let _c = ControllerProcess::start(&env)?;
        checks_template(&env, &url).await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let canary = json!({
            "maxSurge": 1, "maxUnavailable": 0,
            "analysis": {"templates": [{"templateName": "checks"}],
                         "dryRun": [{"metricName": ".*"}]},
            "steps": [
                {"setWeight": 50},
                {"analysis": {"templates": [{"templateName": "checks"}],
                              "dryRun": [{"metricName": "fail"}]}},
                {"pause": {"duration": "2s"}}
            ]
        });
        create_rollout(&env, &web_canary(2, canary)?).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;

        let step = wait_run_ending(&env, "-step1", "the step run to succeed", |r| {
            run_phase(r) == Some(AnalysisPhase::Successful)
        })
        .await?;
        ensure!(
            metric_state(&step, "test-fail") == (Some(AnalysisPhase::Failed), Some(true)),
            "test-fail: {:?}",
            metric_state(&step, "test-fail")
        );
        ensure!(
            metric_state(&step, "gate-ok") == (Some(AnalysisPhase::Successful), None),
            "gate-ok: {:?}",
            metric_state(&step, "gate-ok")
        );
        ensure!(
            counts(&summary(&step, true)) == (1, 0, 1, 0),
            "dry: {:?}",
            summary(&step, true)
        );
        ensure!(
            counts(&summary(&step, false)) == (1, 1, 0, 0),
            "run: {:?}",
            summary(&step, false)
        );

        let bg = wait_run_ending(&env, "-background", "the background run to finish", |r| {
            run_phase(r) == Some(AnalysisPhase::Successful)
        })
        .await?;
        ensure!(
            counts(&summary(&bg, true)) == (2, 1, 1, 0),
            "dry: {:?}",
            summary(&bg, true)
        );

        let s = wait_status(&env, "web", "v2 promoted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs != Some(v1.clone())
        })
        .await?;
        ensure!(
            s.abort != Some(true) && s.pause_conditions.is_empty(),
            "{s:?}"
        );
        Ok(())
    })
    .await;
}

// Argo Rollouts: rollout/bluegreen.go and rollout/analysis.go carry prePromotionAnalysis's
// dryRun into its run; utils/analysis/helpers.go GetDryRunMetrics.
#[tokio::test]
async fn a_failing_dry_run_metric_never_stops_a_blue_green_promotion() {
    TestEnv::run("parity-dry-run-bluegreen", |env| async move {
        let url = ok_endpoint().await?;
        let _c = ControllerProcess::start(&env)?;
        checks_template(&env, &url).await?;
        create_services(&env, &["bg-active", "bg-preview"]).await?;
        let strategy = json!({"blueGreen": {
            "activeService": "bg-active", "previewService": "bg-preview",
            "prePromotionAnalysis": {"templates": [{"templateName": "checks"}],
                                     "dryRun": [{"metricName": "^test-"}]}
        }});
        create_rollout(&env, &rollout("bg", 1, strategy)?).await?;
        let v1 = wait_healthy(&env, "bg", 1, LIMIT).await?;
        set_image(&env, "bg", "registry.example/web:2").await?;
        let pre = wait_run_ending(&env, "-pre", "the pre-promotion run to succeed", |r| {
            run_phase(r) == Some(AnalysisPhase::Successful)
        })
        .await?;
        ensure!(
            counts(&summary(&pre, true)) == (1, 0, 1, 0),
            "dry: {:?}",
            summary(&pre, true)
        );
        let s = wait_status(&env, "bg", "v2 promoted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs != Some(v1.clone())
        })
        .await?;
        ensure!(s.abort != Some(true), "{s:?}");
        Ok(())
    })
    .await;
}

/// A template whose count, interval and failureLimit come from arguments.
async fn templated_template(env: &TestEnv, url: &str) -> anyhow::Result<()> {
    create_template(
        env,
        "templated",
        json!({
            "args": [{"name": "n"}, {"name": "iv", "value": "1s"}, {"name": "fl", "value": "0"}],
            "metrics": [web_metric("up", url, json!({
                "count": "{{args.n}}", "interval": "{{args.iv}}",
                "failureLimit": "{{args.fl}}", "successCondition": "result == true"}))]
        }),
    )
    .await
}

// Argo Rollouts: analysis/analysis.go reconcileAnalysisRun resolves `{{args.*}}` in every
// metric field before utils/analysis/analysis.go ValidateMetric (count, interval,
// failureLimit ...); pkg/apis/rollouts/validation/validation_references.go refuses a Rollout
// whose analysis does not build (InvalidSpec); utils/analysis/helpers.go GetDryRunMetrics
// ("dryRun[0]: Rule didn't match any metric name(s)"); analysis/analysis.go
// garbageCollectMeasurements keeps the limit of the matching measurementRetention rule.
#[tokio::test]
async fn numbers_from_arguments_are_resolved_and_bad_values_or_rules_are_invalid_spec() {
    TestEnv::run("parity-templated", |env| async move {
        let url = ok_endpoint().await?;
        let _c = ControllerProcess::start(&env)?;
        templated_template(&env, &url).await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let step = |n: &str, dry: &str| {
            json!({"templates": [{"templateName": "templated"}],
                   "args": [{"name": "n", "value": n}],
                   "dryRun": [{"metricName": dry}]})
        };
        let canary = json!({"maxSurge": 1, "maxUnavailable": 0,
            "steps": [{"setWeight": 50}, {"analysis": step("abc", "up")}]});
        create_rollout(&env, &web_canary(1, canary)?).await?;
        let (_, c) = wait_condition(&env, "web", INVALID_SPEC, LIMIT).await?;
        ensure!(
            c.message.contains("spec.strategy.canary.steps[1].analysis")
                && c.message.contains("count is \"{{args.n}}\", and argument \"n\" = \"abc\""),
            "InvalidSpec: {}",
            c.message
        );

        let fix = |n: &str, dry: &str| {
            json!({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": step(n, dry)}]}}}})
        };
        let rollouts = common::rollouts(&env);
        rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(fix("3", "nomatch")))
            .await?;
        wait_status(&env, "web", "InvalidSpec for a rule that selects nothing", LIMIT, |s| {
            common::condition(s, INVALID_SPEC).is_some_and(|c| {
                c.status == "True" && c.message.contains("dryRun[0]: Rule didn't match any metric name(s)")
            })
        })
        .await?;
        rollouts
            .patch("web", &PatchParams::default(), &Patch::Merge(fix("3", "^nothing$|u")))
            .await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let run = wait_run_ending(&env, "-step1", "the step run to succeed", |r| {
            run_phase(r) == Some(AnalysisPhase::Successful)
        })
        .await?;
        let result = run.status.as_ref().and_then(|s| s.metric_results.first()).context("a result")?;
        ensure!(result.count == 3 && result.measurements.len() == 3, "{result:?}");
        wait_status(&env, "web", "v2 promoted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.is_some() && s.stable_rs != Some(v1.clone())
        })
        .await?;

        // A run a person creates resolves its arguments too, and keeps the last measurements
        // its retention rule asks for.
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "direct"},
            "spec": {
                "args": [{"name": "n", "value": "4"}],
                "measurementRetention": [{"metricName": "u", "limit": 2}],
                "metrics": [web_metric("up", &url, json!({"count": "{{args.n}}", "interval": "1s"}))]
            }
        }))?;
        env.api::<AnalysisRun>().create(&PostParams::default(), &run).await?;
        let done = wait_run(&env, "direct", "the direct run to finish", LIMIT, |r| {
            common::analysis::run_phase(r).is_some_and(|p| p != AnalysisPhase::Running && p != AnalysisPhase::Pending)
        })
        .await?;
        let r = done.status.as_ref().and_then(|s| s.metric_results.first()).context("a result")?;
        ensure!(
            run_phase(&done) == Some(AnalysisPhase::Successful) && r.count == 4 && r.measurements.len() == 2,
            "{}: {r:?}",
            run_message(&done)
        );
        Ok(())
    })
    .await;
}

// Argo Rollouts: metricproviders/job/job.go Resume after PR #4692 (the Job's pods waiting in
// ErrImagePull/ImagePullBackOff end the measurement; e2e
// TestCanaryInlineAnalysisInvalidImageJob expects the Rollout Paused with an Inconclusive
// run). Sluice records an Error measurement with the pod's reason, and the metric's
// consecutiveErrorLimit (0 here) and default onProviderError make it Inconclusive.
#[tokio::test]
async fn a_job_whose_pod_cannot_start_is_an_error_and_pauses_the_release() {
    TestEnv::run("parity-job-image", |env| async move {
        let _c = ControllerProcess::start(&env)?;
        create_template(&env, "smoke", json!({"metrics": [{
            "name": "smoke", "consecutiveErrorLimit": 0,
            "provider": {"job": {"spec": {"backoffLimit": 0, "template": {
                "metadata": {"annotations": {BEHAVIOUR_ANNOTATION: "image-pull"}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "smoke", "image": "nonexistent-image:latest"}]}
            }}}}
        }]}))
        .await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let canary = json!({"maxSurge": 1, "maxUnavailable": 0,
            "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}]}}]});
        create_rollout(&env, &web_canary(1, canary)?).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let run = wait_run_ending(&env, "-step1", "the step run to be inconclusive", |r| {
            run_phase(r) == Some(AnalysisPhase::Inconclusive)
        })
        .await?;
        let m = run
            .status
            .as_ref()
            .and_then(|s| s.metric_results.first())
            .and_then(|r| r.measurements.last())
            .context("a measurement")?;
        let msg = m.message.clone().unwrap_or_default();
        ensure!(
            m.phase == Some(AnalysisPhase::Error)
                && msg.contains("cannot start")
                && (msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"))
                && msg.contains("nonexistent-image"),
            "measurement: {m:?}"
        );
        let s = wait_status(&env, "web", "paused for the inconclusive analysis", LIMIT, |s| {
            paused_for(s, PauseReason::InconclusiveAnalysis)
        })
        .await?;
        ensure!(s.stable_rs == Some(v1) && s.abort != Some(true), "{s:?}");
        // The Job that could not start is gone, so its pod stops pulling.
        let jobs = env.api::<Job>();
        wait_for("the stuck Job deleted", LIMIT, || async {
            let left = jobs.list(&ListParams::default()).await?.items;
            Ok(left
                .iter()
                .all(|j| j.metadata.deletion_timestamp.is_some())
                .then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

// Argo Rollouts: rollout/analysis.go reconcileBackgroundAnalysisRun: an Inconclusive
// background run sets the pause condition InconclusiveAnalysis (e2e
// TestCanaryInconclusiveBackgroundAnalysis); analysis/analysis.go assessRunStatus counts it
// in runSummary.
#[tokio::test]
async fn an_inconclusive_background_run_pauses_the_release() {
    TestEnv::run("parity-bg-inconclusive", |env| async move {
        let url = ok_endpoint().await?;
        let _c = ControllerProcess::start(&env)?;
        create_template(
            &env,
            "unsure",
            json!({"metrics": [web_metric("unsure", &url, json!({
            "successCondition": "result == false", "failureCondition": "result == false"}))]}),
        )
        .await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let canary = json!({"maxSurge": 1, "maxUnavailable": 0,
            "analysis": {"templates": [{"templateName": "unsure"}]},
            "steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]});
        create_rollout(&env, &web_canary(1, canary)?).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let bg = wait_run_ending(
            &env,
            "-background",
            "the background run to be inconclusive",
            |r| run_phase(r) == Some(AnalysisPhase::Inconclusive),
        )
        .await?;
        ensure!(
            counts(&summary(&bg, false)) == (1, 0, 0, 1),
            "run: {:?}",
            summary(&bg, false)
        );
        let s = wait_status(
            &env,
            "web",
            "paused for the inconclusive background run",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Paused)
                    && paused_for(s, PauseReason::InconclusiveAnalysis)
            },
        )
        .await?;
        ensure!(s.stable_rs == Some(v1) && s.abort != Some(true), "{s:?}");
        Ok(())
    })
    .await;
}

/// Applies `manifest` with a server-side dry run after putting this checkout's CRDs in place:
/// (accepted, kubectl's stderr).
async fn dry_run(env: &TestEnv, manifest: &Value) -> anyhow::Result<(bool, String)> {
    e2e::harness::install_crds(&env.client, &e2e::harness::crds_dir()).await?;
    let out = env
        .kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&manifest.to_string()),
        )
        .await?;
    Ok((out.success, out.stderr))
}

// Argo Rollouts has no admission webhook (pkg/apis/rollouts/validation and
// utils/analysis/analysis.go ValidateMetric run when a Rollout uses the template, or when the
// run executes). Sluice refuses at apply what the API server can check, and accepts the
// `{{args}}` forms Argo accepts.
#[tokio::test]
async fn malformed_templates_are_refused_at_apply() {
    TestEnv::run("parity-malformed-templates", |env| async move {
        let metric = |extra: Value| {
            web_metric("m", "http://127.0.0.1:1", extra)
        };
        let template = |kind: &str, spec: Value| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": kind,
                   "metadata": {"name": "t"}, "spec": spec})
        };
        let refused = [
            ("count 0", json!({"metrics": [metric(json!({"count": 0}))]}), "spec.metrics[0].count"),
            ("count 2 without interval", json!({"metrics": [metric(json!({"count": 2}))]}), "count above 1 needs an interval"),
            ("failureLimit in words", json!({"metrics": [metric(json!({"failureLimit": "two"}))]}), "spec.metrics[0].failureLimit"),
            ("inconclusiveLimit -2", json!({"metrics": [metric(json!({"inconclusiveLimit": -2}))]}), "spec.metrics[0].inconclusiveLimit"),
            ("interval in words", json!({"metrics": [metric(json!({"interval": "soon"}))]}), "spec.metrics[0].interval"),
            ("two dry-run rules for one name", json!({"metrics": [metric(json!({}))],
                "dryRun": [{"metricName": "m"}, {"metricName": "m"}]}), "Duplicate value"),
            ("two retention rules for one name", json!({"metrics": [metric(json!({}))],
                "measurementRetention": [{"metricName": "m", "limit": 1}, {"metricName": "m", "limit": 2}]}), "Duplicate value"),
            ("two providers", json!({"metrics": [{"name": "m", "provider": {
                "web": {"url": "http://x"}, "prometheus": {"address": "http://p", "query": "up"}}}]}),
                "a metric needs exactly one provider"),
            ("duplicate metric names", json!({"metrics": [metric(json!({})), metric(json!({}))]}), "Duplicate value"),
        ];
        for kind in ["AnalysisTemplate", "ClusterAnalysisTemplate"] {
            for (what, spec, expected) in &refused {
                let (ok, stderr) = dry_run(&env, &template(kind, spec.clone())).await?;
                ensure!(!ok, "{kind} {what}: accepted");
                ensure!(stderr.contains(expected), "{kind} {what}: expected {expected:?} in {stderr}");
            }
            let accepted = json!({
                "args": [{"name": "n"}, {"name": "iv"}],
                "dryRun": [{"metricName": ".*"}],
                "measurementRetention": [{"metricName": "m", "limit": 0}],
                "metrics": [metric(json!({"count": "{{args.n}}", "interval": "{{ args.iv }}",
                    "initialDelay": "{{args.iv}}", "failureLimit": "{{args.n}}",
                    "inconclusiveLimit": -1, "consecutiveErrorLimit": "{{args.n}}"}))]
            });
            let (ok, stderr) = dry_run(&env, &template(kind, accepted)).await?;
            ensure!(ok, "{kind} with {{{{args}}}} numbers refused: {stderr}");
        }
        Ok(())
    })
    .await;
}
