//! `kubectl sluice migrate` on Argo Rollouts manifests written after Argo's documented
//! examples (`tests/migrate/`): the report says what changed and what could not be carried
//! over, the output passes `kubectl sluice lint`, and every converted example is accepted by
//! the API server (server-side apply with the real kubectl, every document) and run by the
//! real controller: the Istio canary released through its analysis steps to Healthy, the
//! blue-green through its pre-promotion (web and Job) and post-promotion (Prometheus, a
//! ClusterAnalysisTemplate) analyses to Healthy, the standalone AnalysisRun measured to
//! Successful, and the Gateway API canary released through its HTTPRoute's weights, with its
//! background analysis measuring, to Healthy.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{json_body, run_phase, serve};
use common::fixture::{patch_spec, promote, wait_healthy, wait_paused_at, wait_promoted};
use common::{ControllerProcess, condition, phase, selector_hash, wait_status};
use e2e::metricsrv::MetricsServer;
use e2e::prometheus::Prometheus;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::RolloutPhase;

const LIMIT: Duration = Duration::from_secs(180);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migrate")
}

/// Runs `kubectl sluice ARGS` as a user does: through the real kubectl (the plugin found on the
/// PATH) when `SLUICE_K8S_BIN` names one, as `make test` does; else the plugin itself.
fn plugin(args: &[&str]) -> anyhow::Result<Output> {
    let exe = Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"));
    let Ok(bin) = std::env::var("SLUICE_K8S_BIN") else {
        return Command::new(exe)
            .args(args)
            .output()
            .context("running kubectl-sluice");
    };
    let plugin_dir = exe.parent().context("plugin dir")?;
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(Path::new(&bin).join("kubectl"))
        .arg("sluice")
        .args(args)
        .env("PATH", path)
        .output()
        .context("running kubectl sluice")
}

fn out_dir(name: &str) -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("sluice-migrate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Every document of a YAML stream, as JSON.
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let nodes = sluice::cli::lint::yaml::parse_documents(text)?;
    Ok(nodes.iter().map(|n| n.to_json()).collect())
}

#[test]
fn the_report_says_what_changed_and_what_could_not_be_carried_over() -> anyhow::Result<()> {
    let dir = out_dir("report")?;
    let out = plugin(&[
        "migrate",
        "-o",
        dir.to_str().context("path")?,
        examples().to_str().context("path")?,
    ])?;
    let report = String::from_utf8_lossy(&out.stderr);
    // refused.yaml holds two documents that cannot be converted.
    ensure!(out.status.code() == Some(1), "{:?}: {report}", out.status);
    let wanted = [
        "canary-istio.yaml: document 5 Rollout/shop: converted to sluice.dev/v1alpha1",
        "changed apiVersion: argoproj.io/v1alpha1 -> sluice.dev/v1alpha1",
        "changed spec.metrics[0].successCondition: `result[0] >= 0.95 and result[0] <= 1` -> `result[0] >= 0.95 && result[0] <= 1` (CEL)",
        "canary-istio.yaml: document 1 Service/shop-stable: passed through unchanged",
        "changed spec.metrics[0].successCondition: `result.ok == 'true' and asFloat(result.ratio) >= 0.95` -> `result.ok == 'true' && double(result.ratio) >= 0.95` (CEL)",
        "`len(result) > 0 and not isNaN(result[0]) and result[0] <= {{args.max}}` -> `len(result) > 0 && ! isNaN(result[0]) && result[0] <= {{args.max}}` (CEL)",
        "dropped spec.strategy.canary.steps[1].experiment: Sluice has no Experiments; the step was removed",
        "changed spec.strategy.canary.analysis.startingStep: 3 -> 2 (steps before it were removed)",
        "changed spec.strategy.canary.trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"]: the Gateway API plugin became Sluice's built-in spec.strategy.canary.trafficRouting.gatewayAPI",
        "dropped spec.strategy.canary.antiAffinity: Sluice has no anti-affinity between revisions",
        "dropped spec.analysis: Argo's AnalysisRun history limits",
        "note    spec.paused: kept: Sluice honours spec.paused from git but never writes it",
        "dropped spec.metrics[1].provider.datadog: metric \"dd-errors\" removed: of Argo Rollouts' providers, Sluice measures with prometheus, web and job, not datadog",
        "dropped spec.metrics[2].provider.kayenta: metric \"kayenta-judge\" removed: of Argo Rollouts' providers, Sluice measures with prometheus, web and job, not kayenta; Sluice's compare provider judges the canary against the stable",
        "document 3 Experiment/api-baseline: LEFT OUT (no Sluice counterpart)",
        "refused.yaml: document 1 AnalysisTemplate/power: NOT CONVERTED (left out of the output)",
        "error   spec.metrics[0].successCondition: `result[0] ** 2 < 0.01` cannot be converted to CEL: `**` (power) has no CEL form",
        "dropped spec.strategy.canary.trafficRouting.alb: Sluice routes traffic through Istio or Gateway API only",
        "refused.yaml: document 2 Rollout/edge: NOT CONVERTED",
        "header routes need a traffic router",
        "refused.yaml: document 3 ConfigMap/edge-settings: passed through unchanged",
        "analysisrun.yaml: document 1 AnalysisRun/checkout-success-check: converted to sluice.dev/v1alpha1",
        "changed spec.metrics[0].successCondition: `len(result) == 1 and result[0] >= {{args.min-success}}` -> `len(result) == 1 && result[0] >= {{args.min-success}}` (CEL)",
        "changed spec.metrics[0].failureCondition: `len(result) == 1 and not (result[0] >= 0.5)` -> `len(result) == 1 && ! (result[0] >= 0.5)` (CEL)",
        "changed spec.metrics[1].successCondition: `all(result, {# > 1})` -> `result.all(x, x > 1)` (CEL)",
        "gateway-plugin-and-extras.yaml: document 6 HTTPRoute/api: passed through unchanged",
    ];
    for w in wanted {
        ensure!(report.contains(w), "the report lacks {w:?}:\n{report}");
    }
    // Nothing but the conversions of the run's conditions is said about it: its args, dry run
    // and retention rule carry over as they are.
    let run_report: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.contains("analysisrun.yaml: document 1"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    ensure!(
        run_report.len() == 4 && run_report.iter().all(|l| l.starts_with("  changed")),
        "{run_report:#?}"
    );
    // One output file per input file, each starting with its report.
    let files = [
        "analysisrun.yaml",
        "bluegreen-prepromotion.yaml",
        "canary-istio.yaml",
        "gateway-plugin-and-extras.yaml",
        "refused.yaml",
    ];
    let mut written: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    written.sort();
    ensure!(written == files, "{written:?}");
    let mut kinds = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(f))?;
        ensure!(
            text.starts_with("# Converted from Argo Rollouts"),
            "{f}: {text}"
        );
        for d in documents(&text)? {
            let api = d["apiVersion"].as_str().unwrap_or_default().to_string();
            ensure!(!api.starts_with("argoproj.io"), "{f}: {d}");
            kinds.push(format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    let want_kinds = [
        "AnalysisRun/checkout-success-check",
        "Service/checkout-active",
        "Service/checkout-preview",
        "AnalysisTemplate/smoke-tests",
        "ClusterAnalysisTemplate/error-rate",
        "Rollout/checkout",
        "Service/shop-stable",
        "Service/shop-canary",
        "VirtualService/shop",
        "AnalysisTemplate/success-rate",
        "Rollout/shop",
        "Rollout/api",
        "AnalysisTemplate/latency",
        "Service/api-stable",
        "Service/api-canary",
        "HTTPRoute/api",
        "ConfigMap/edge-settings",
    ];
    ensure!(kinds == want_kinds, "{kinds:?}");

    the_gateway_example_converts(&dir)?;
    the_analysis_run_converts(&dir)?;
    // What migrate writes, lint accepts, without a warning: every Service, HTTPRoute and
    // template a Rollout names is among the files.
    let lint = plugin(&["lint", "-o", "json", dir.to_str().context("path")?])?;
    let v: Value = serde_json::from_slice(&lint.stdout)?;
    ensure!(
        v["errors"] == 0 && v["warnings"] == 0 && lint.status.success(),
        "{v:#}"
    );
    Ok(())
}

/// The converted AnalysisRun: Sluice's apiVersion, the conditions in CEL, the args with their
/// values, the placeholders, the dry run and the retention rule kept.
fn the_analysis_run_converts(dir: &Path) -> anyhow::Result<()> {
    let docs = documents(&std::fs::read_to_string(dir.join("analysisrun.yaml"))?)?;
    ensure!(docs.len() == 1, "{docs:?}");
    let run = &docs[0];
    ensure!(
        run["apiVersion"] == "sluice.dev/v1alpha1" && run["kind"] == "AnalysisRun",
        "{run}"
    );
    let spec = &run["spec"];
    ensure!(
        spec["args"]
            == json!([{"name": "service", "value": "checkout-active"},
                      {"name": "min-success", "value": "0.95"}]),
        "{spec}"
    );
    let m = &spec["metrics"];
    ensure!(
        m[0]["successCondition"] == "len(result) == 1 && result[0] >= {{args.min-success}}"
            && m[0]["failureCondition"] == "len(result) == 1 && ! (result[0] >= 0.5)"
            && m[1]["successCondition"] == "result.all(x, x > 1)",
        "{m}"
    );
    ensure!(
        m[1]["provider"]["prometheus"]["query"]
            == "sum(rate(http_requests_total{service=\"{{args.service}}\"}[1m]))",
        "{m}"
    );
    ensure!(
        spec["dryRun"] == json!([{"metricName": "request-rate"}])
            && spec["measurementRetention"] == json!([{"metricName": "success-ratio", "limit": 5}]),
        "{spec}"
    );
    // It reads as Sluice's AnalysisRun.
    let typed: AnalysisRun = serde_json::from_value(run.clone())?;
    ensure!(typed.spec.metrics.len() == 2, "{typed:?}");
    Ok(())
}

/// The converted gateway example: the plugin is the built-in router, the Experiment step is
/// gone, the Datadog metric too.
fn the_gateway_example_converts(dir: &Path) -> anyhow::Result<()> {
    let gw = documents(&std::fs::read_to_string(
        dir.join("gateway-plugin-and-extras.yaml"),
    )?)?;
    let canary = &gw[0]["spec"]["strategy"]["canary"];
    ensure!(
        canary["trafficRouting"]
            == json!({"gatewayAPI": {"httpRoute": "api", "namespace": "apps"}}),
        "{canary}"
    );
    ensure!(
        canary["steps"].as_array().map(Vec::len) == Some(5),
        "{canary}"
    );
    ensure!(canary["analysis"]["startingStep"] == 2, "{canary}");
    ensure!(gw[0]["spec"]["paused"] == true, "{}", gw[0]);
    ensure!(
        gw[1]["spec"]["metrics"].as_array().map(Vec::len) == Some(1),
        "{}",
        gw[1]
    );
    ensure!(
        gw[1]["spec"]["metrics"][0]["successCondition"]
            == "default(result[0], 0) < 0.25 && ! isInf(result[0])",
        "{}",
        gw[1]
    );

    Ok(())
}

#[test]
fn stdout_is_the_yaml_stream_and_the_report_goes_to_stderr() -> anyhow::Result<()> {
    let file = examples().join("canary-istio.yaml");
    let out = plugin(&["migrate", file.to_str().context("path")?])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout)?)?;
    ensure!(docs.len() == 5, "{docs:?}");
    let ro = &docs[4];
    ensure!(
        ro["apiVersion"] == "sluice.dev/v1alpha1" && ro["kind"] == "Rollout",
        "{ro}"
    );
    ensure!(
        ro["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("rollout.argoproj.io/revision").is_none()),
        "{ro}"
    );
    ensure!(String::from_utf8_lossy(&out.stderr).contains("Rollout/shop: converted"));
    let missing = plugin(&["migrate", "no/such/file.yaml"])?;
    let err = String::from_utf8_lossy(&missing.stderr);
    ensure!(
        missing.status.code() == Some(2)
            && err.contains("cannot read no/such/file.yaml")
            && !err.contains("panicked"),
        "{err}"
    );
    Ok(())
}

/// The examples' Prometheus is the cluster's; the tests' answers on loopback.
const EXAMPLE_PROMETHEUS: &str = "http://prometheus.monitoring:9090";

/// `kubectl sluice migrate` on one example: the converted YAML stream, every document of the
/// file converted or passed through (exit code 0).
fn migrated(file: &str) -> anyhow::Result<String> {
    let path = examples().join(file);
    let out = plugin(&["migrate", path.to_str().context("path")?])?;
    ensure!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `text` with `from` replaced by `to`, where `from` occurs exactly `times` times: the test
/// changes the output only where it means to (a local address for a cluster's).
fn replaced(text: &str, from: &str, to: &str, times: usize) -> anyhow::Result<String> {
    let n = text.matches(from).count();
    ensure!(
        n == times,
        "{from:?} occurs {n} times, not {times}, in:\n{text}"
    );
    Ok(text.replace(from, to))
}

/// A real Prometheus scraping `metrics` every second, its log in the failure dump.
async fn prometheus(env: &TestEnv, metrics: &MetricsServer) -> anyhow::Result<Prometheus> {
    let dir = std::env::temp_dir().join(format!("sluice-prometheus-{}", env.namespace));
    std::fs::create_dir_all(&dir)?;
    let prometheus = Prometheus::start(&dir, &[metrics.target()], Duration::from_secs(1)).await?;
    env.attach_log(dir.join("prometheus.log"));
    Ok(prometheus)
}

/// The migrated canary through the real API server and controller: server-side applied with
/// kubectl, first revision Healthy, then a new image released through both analysis steps
/// (a real Prometheus answering the converted query) to Healthy.
#[tokio::test]
async fn a_migrated_canary_is_accepted_and_released_to_healthy() {
    TestEnv::run("migrate-canary", |env| async move {
        let yaml = migrated("canary-istio.yaml")?;
        let metrics = MetricsServer::start().await?;
        metrics.set_gauge("service_request_success_ratio", &[("service", "shop-canary")], 0.99);
        let prometheus = prometheus(&env, &metrics).await?;
        prometheus
            .wait_for_series("service_request_success_ratio{service=\"shop-canary\"}", Duration::from_secs(120))
            .await?;
        let yaml = replaced(&yaml, EXAMPLE_PROMETHEUS, &prometheus.url(), 1)?;

        e2e::routers::install_router_crds(&env.client).await?;
        apply(&env, &yaml).await?;
        let _controller = ControllerProcess::start(&env)?;
        let v1 = wait_healthy(&env, "shop", 2, LIMIT).await?;

        patch_spec(&env, "shop", json!({"template": {"spec": {"containers": [
            {"name": "shop", "image": "registry.example/shop:1.1.0", "ports": [{"name": "http", "containerPort": 8080}]}
        ]}}}))
        .await?;
        let v2 = wait_promoted(&env, "shop", &v1, LIMIT).await?;

        let mut judged: Vec<String> = runs_of(&env, "shop", &v2)
            .await?
            .iter()
            .map(|r| format!("{}={:?}", r.metadata.name.clone().unwrap_or_default(), run_phase(r)))
            .collect();
        judged.sort();
        let want: Vec<String> = ["step2", "step5"]
            .iter()
            .map(|s| format!("shop-{v2}-2-{s}={:?}", Some(AnalysisPhase::Successful)))
            .collect();
        ensure!(judged == want, "both analysis steps ran and passed: {judged:?}");
        let vs = common::routers::dynamic_api(&env, "networking.istio.io", "VirtualService")
            .get("shop")
            .await?;
        let route = &vs.data["spec"]["http"][0]["route"];
        ensure!(route[0]["weight"] == 100 && route[1]["weight"] == 0, "all traffic on the new stable: {route}");
        Ok(())
    })
    .await;
}

/// The migrated blue-green and the standalone AnalysisRun through the real API server and
/// controller. The run measures the active Service's success ratio to Successful (its dry-run
/// metric recorded as such). The Rollout's first revision is Healthy; a new image waits on the
/// preview until its pre-promotion analysis passes (the web check against a local endpoint,
/// the Job run to completion by the control plane's Job controller and simulated kubelet)
/// and, with autoPromotionEnabled false, until promoted; then the post-promotion analysis (the
/// ClusterAnalysisTemplate's error rate from a real Prometheus) passes and it is Healthy.
#[tokio::test]
async fn a_migrated_blue_green_and_analysis_run_are_accepted_and_run() {
    TestEnv::run("migrate-bluegreen", |env| async move {
        let yaml = migrated("bluegreen-prepromotion.yaml")? + &migrated("analysisrun.yaml")?;
        // Traffic to the active Service, 0.5 % of it failing: an error rate under the
        // template's 1 %, a success ratio over the run's 95 %.
        let metrics = MetricsServer::start().await?;
        metrics.set_traffic(&[("service", "checkout-active")], 50.0, 0.005);
        let prometheus = prometheus(&env, &metrics).await?;
        prometheus
            .wait_until(
                "sum(rate(http_requests_total{service=\"checkout-active\",code=~\"5..\"}[2m]))",
                Duration::from_secs(120),
                |s| s.first().is_some_and(|(_, v)| *v > 0.0),
            )
            .await?;
        // What the smoke test's web metric reads from the preview.
        let app = axum::Router::new().route(
            "/healthz",
            axum::routing::get(|| async {
                json_body(json!({"status": {"ok": "true", "ratio": "0.97"}}))
            }),
        );
        let preview = serve(app).await?;

        let yaml = replaced(&yaml, EXAMPLE_PROMETHEUS, &prometheus.url(), 3)?;
        let yaml = replaced(
            &yaml,
            "http://checkout-preview.shop.svc.cluster.local",
            &preview,
            1,
        )?;
        // A ClusterAnalysisTemplate is the cluster's, not the namespace's: a name of this
        // test's own (tests share the cluster), deleted at the end.
        let cat = format!("error-rate-{}", env.namespace);
        let yaml = replaced(
            &yaml,
            "kind: ClusterAnalysisTemplate\nmetadata:\n  name: error-rate\n",
            &format!("kind: ClusterAnalysisTemplate\nmetadata:\n  name: {cat}\n"),
            1,
        )?;
        let yaml = replaced(
            &yaml,
            "templateName: error-rate\n",
            &format!("templateName: {cat}\n"),
            1,
        )?;
        let _cat = DeleteOnDrop::new(&env, &format!("clusteranalysistemplate.sluice.dev/{cat}"));
        apply(&env, &yaml).await?;
        let _controller = ControllerProcess::start(&env)?;

        // The standalone run.
        let run = finished(&env, "checkout-success-check").await?;
        let status = run.status.clone().unwrap_or_default();
        ensure!(
            run_phase(&run) == Some(AnalysisPhase::Successful),
            "{status:#?}"
        );
        let result = |name: &str| status.metric_results.iter().find(|m| m.name == name);
        let ratio = result("success-ratio").context("success-ratio measured")?;
        ensure!(
            ratio.phase == Some(AnalysisPhase::Successful)
                && ratio.successful == 3
                && ratio.dry_run != Some(true),
            "{ratio:#?}"
        );
        let value: f64 = ratio
            .measurements
            .last()
            .and_then(|m| m.value.as_deref())
            .context("a value")?
            .trim_matches(|c| c == '[' || c == ']')
            .parse()?;
        ensure!(
            (value - 0.995).abs() < 0.002,
            "the success ratio of the traffic: {value}"
        );
        let rate = result("request-rate").context("request-rate measured")?;
        ensure!(rate.dry_run == Some(true) && rate.count == 2, "{rate:#?}");

        // The blue-green.
        let v1 = wait_healthy(&env, "checkout", 3, LIMIT).await?;
        ensure!(selector_hash(&env, "checkout-active").await?.as_deref() == Some(v1.as_str()));
        patch_spec(
            &env,
            "checkout",
            json!({"template": {"spec": {"containers": [
                {"name": "checkout", "image": "registry.example/checkout:2.2.0"}
            ]}}}),
        )
        .await?;
        let paused = wait_status(
            &env,
            "checkout",
            "the preview paused for promotion",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Paused)
                    && s.current_pod_hash.as_deref().is_some_and(|h| h != v1)
            },
        )
        .await?;
        let v2 = paused.current_pod_hash.clone().context("currentPodHash")?;
        let pre = finished_of(&env, "checkout", &v2, "-pre").await?;
        ensure!(
            run_phase(&pre) == Some(AnalysisPhase::Successful),
            "{:#?}",
            pre.status
        );
        let mut measured: Vec<(String, i32)> = pre
            .status
            .iter()
            .flat_map(|s| &s.metric_results)
            .map(|m| (m.name.clone(), m.successful))
            .collect();
        measured.sort();
        ensure!(
            measured == [("e2e".to_string(), 1), ("health".to_string(), 1)],
            "{measured:?}"
        );
        let jobs = env.api::<Job>().list(&ListParams::default()).await?;
        let job =
            jobs.items
                .iter()
                .find(|j| {
                    j.metadata.owner_references.iter().flatten().any(|o| {
                        o.kind == "AnalysisRun" && Some(&o.name) == pre.metadata.name.as_ref()
                    })
                })
                .context("the smoke tests' Job")?;
        ensure!(
            job.status.as_ref().and_then(|s| s.succeeded) == Some(1),
            "{:?}",
            job.status
        );
        ensure!(
            selector_hash(&env, "checkout-preview").await?.as_deref() == Some(v2.as_str()),
            "the preview on the new revision"
        );
        ensure!(
            selector_hash(&env, "checkout-active").await?.as_deref() == Some(v1.as_str()),
            "the active Service still on the old one"
        );
        // Still paused after the analysis passed: autoPromotionEnabled is false.
        let s = wait_status(&env, "checkout", "waiting for promotion", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        ensure!(s.stable_rs.as_deref() == Some(v1.as_str()), "{s:?}");

        promote(&env, "checkout").await?;
        let stable = wait_promoted(&env, "checkout", &v1, LIMIT).await?;
        ensure!(stable == v2, "{stable} {v2}");
        let post = finished_of(&env, "checkout", &v2, "-post").await?;
        ensure!(
            run_phase(&post) == Some(AnalysisPhase::Successful),
            "{:#?}",
            post.status
        );
        let errors = post
            .status
            .iter()
            .flat_map(|s| &s.metric_results)
            .find(|m| m.name == "error-rate")
            .context("error-rate")?;
        ensure!(errors.successful == 3, "{errors:#?}");
        ensure!(
            selector_hash(&env, "checkout-active").await?.as_deref() == Some(v2.as_str()),
            "the active Service switched"
        );
        Ok(())
    })
    .await;
}

/// The migrated Gateway API canary through the real API server and controller: the plugin
/// became Sluice's gatewayAPI router with no InvalidSpec; unpaused (spec.paused came from
/// git), its first revision is Healthy, and a new image is released through the HTTPRoute's
/// weights (promoted past its 5-minute pauses) with its background latency analysis
/// measuring (a real Prometheus over a histogram that keeps growing), to Healthy with all
/// traffic on the new revision.
#[tokio::test]
async fn a_migrated_gateway_canary_is_accepted_and_released_through_its_http_route() {
    TestEnv::run("migrate-gateway", |env| async move {
        let yaml = migrated("gateway-plugin-and-extras.yaml")?;
        let metrics = MetricsServer::start().await?;
        let requests = tokio::spawn(serve_quick_requests(metrics.clone()));
        let prometheus = prometheus(&env, &metrics).await?;
        let p99 = "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{app=\"api\"}[2m])) by (le))";
        prometheus.wait_until(p99, Duration::from_secs(120), |s| s.first().is_some_and(|(_, v)| v.is_finite())).await?;
        let yaml = replaced(&yaml, EXAMPLE_PROMETHEUS, &prometheus.url(), 1)?;
        // The plugin's HTTPRoute is in namespace `apps`; here it is the test's.
        let yaml = replaced(&yaml, "namespace: apps\n", &format!("namespace: {}\n", env.namespace), 1)?;

        e2e::routers::install_router_crds(&env.client).await?;
        apply(&env, &yaml).await?;
        let _controller = ControllerProcess::start(&env)?;
        let seen = wait_status(&env, "api", "the controller's first status", LIMIT, |s| s.phase.is_some()).await?;
        ensure!(condition(&seen, INVALID_SPEC).is_none(), "{:?}", seen.conditions);
        // spec.paused came from git with the rest: a commit unpauses it.
        patch_spec(&env, "api", json!({"paused": false})).await?;
        let v1 = wait_healthy(&env, "api", 4, LIMIT).await?;
        ensure!(route_weights(&env).await? == (100, 0), "all traffic on the stable");

        patch_spec(&env, "api", json!({"template": {"spec": {"containers": [
            {"name": "api", "image": "registry.example/api:5.1.0"}
        ]}}}))
        .await?;
        let at_pause = wait_paused_at(&env, "api", 2, LIMIT).await?;
        ensure!(condition(&at_pause, INVALID_SPEC).is_none(), "{:?}", at_pause.conditions);
        let v2 = at_pause.current_pod_hash.clone().context("currentPodHash")?;
        ensure!(route_weights(&env).await? == (70, 30), "step 1's 30 %");
        // The background analysis starts at step 2 (3 before the Experiment step went).
        let background = wait_for("a successful latency measurement", LIMIT, || async {
            Ok(runs_of(&env, "api", &v2).await?.into_iter().find(|r| {
                r.metadata.name.as_deref().is_some_and(|n| n.ends_with("-background"))
                    && r.status.iter().flat_map(|s| &s.metric_results).any(|m| m.name == "p99" && m.successful >= 1)
            }))
        })
        .await?;
        ensure!(
            matches!(run_phase(&background), Some(AnalysisPhase::Running | AnalysisPhase::Successful)),
            "{:#?}",
            background.status
        );
        promote(&env, "api").await?;
        wait_paused_at(&env, "api", 4, LIMIT).await?;
        ensure!(route_weights(&env).await? == (40, 60), "step 3's 60 %");
        promote(&env, "api").await?;
        let stable = wait_promoted(&env, "api", &v1, LIMIT).await?;
        ensure!(stable == v2, "{stable} {v2}");
        ensure!(route_weights(&env).await? == (100, 0), "all traffic on the new stable");
        let runs = runs_of(&env, "api", &v2).await?;
        ensure!(
            runs.iter().all(|r| !matches!(run_phase(r), Some(AnalysisPhase::Failed | AnalysisPhase::Error))),
            "{runs:#?}"
        );
        requests.abort();
        Ok(())
    })
    .await;
}

/// Requests to `app="api"` answered within 0.1 s, as a histogram that keeps growing (the
/// latency template reads its p99).
async fn serve_quick_requests(metrics: MetricsServer) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        for le in ["0.1", "0.25", "0.5", "+Inf"] {
            metrics.add_counter(
                "http_request_duration_seconds_bucket",
                &[("app", "api"), ("le", le)],
                10.0,
            );
        }
    }
}

/// (stable, canary) weights of HTTPRoute `api`'s rule.
async fn route_weights(env: &TestEnv) -> anyhow::Result<(i64, i64)> {
    let route = common::routers::http_routes(env).get("api").await?;
    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
    let w = |name: &str| {
        refs.as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == name))
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    Ok((w("api-stable"), w("api-canary")))
}

/// The AnalysisRuns of Rollout `rollout` that judged revision `hash`.
async fn runs_of(env: &TestEnv, rollout: &str, hash: &str) -> anyhow::Result<Vec<AnalysisRun>> {
    let prefix = format!("{rollout}-{hash}-");
    Ok(env
        .api::<AnalysisRun>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect())
}

fn done(r: &AnalysisRun) -> bool {
    run_phase(r).is_some_and(|p| !matches!(p, AnalysisPhase::Pending | AnalysisPhase::Running))
}

/// AnalysisRun `name` once it has a verdict.
async fn finished(env: &TestEnv, name: &str) -> anyhow::Result<AnalysisRun> {
    common::analysis::wait_run(
        env,
        name,
        &format!("AnalysisRun {name} finished"),
        LIMIT,
        done,
    )
    .await
}

/// The run of Rollout `rollout` for revision `hash` whose name ends with `suffix`, once it has
/// a verdict.
async fn finished_of(
    env: &TestEnv,
    rollout: &str,
    hash: &str,
    suffix: &str,
) -> anyhow::Result<AnalysisRun> {
    wait_for(
        &format!("the {suffix} run of {hash} finished"),
        LIMIT,
        || async {
            Ok(runs_of(env, rollout, hash).await?.into_iter().find(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(suffix))
                    && done(r)
            }))
        },
    )
    .await
}

/// Deletes a cluster-scoped object when dropped: the test namespace's deletion does not.
struct DeleteOnDrop {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    object: String,
}

impl DeleteOnDrop {
    fn new(env: &TestEnv, object: &str) -> Self {
        DeleteOnDrop {
            kubectl: env.cluster.bin_dir.join("kubectl"),
            kubeconfig: env.cluster.kubeconfig.clone(),
            object: object.to_string(),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", &self.object, "--ignore-not-found", "--wait=false"])
            .output();
    }
}

/// `kubectl apply --server-side -f -` into the test's namespace, as a user applies the output;
/// the API server must take every document of it.
async fn apply(env: &TestEnv, yaml: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"))
        .args(["apply", "--server-side", "-n", &env.namespace, "-f", "-"])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(yaml.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("kubectl apply did not finish within 60 s")??;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "kubectl apply --server-side refused the migrated manifests: {said}"
    );
    // kubectl names each object `kind.group/name` (`kind/name` for the core group).
    let docs = documents(yaml)?;
    for d in &docs {
        let group = d["apiVersion"]
            .as_str()
            .and_then(|v| v.rsplit_once('/'))
            .map(|(g, _)| format!(".{g}"))
            .unwrap_or_default();
        let kind = d["kind"].as_str().unwrap_or_default().to_lowercase();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let obj = format!("{kind}{group}/{name}");
        ensure!(
            said.contains(&format!("{obj} serverside-applied")),
            "{obj}: {said}"
        );
    }
    let applied = said.matches(" serverside-applied").count();
    ensure!(
        applied == docs.len(),
        "{} documents, {applied} applied: {said}",
        docs.len()
    );
    Ok(())
}
