//! `kubectl sluice migrate` on Argo Rollouts manifests written after Argo's documented
//! examples (`tests/migrate/`): the report says what changed and what could not be carried
//! over, the output passes `kubectl sluice lint`, and a migrated canary is accepted by the API
//! server (server-side apply with the real kubectl) and released by the real controller
//! through its analysis steps to Healthy.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{patch_spec, wait_healthy, wait_promoted};
use e2e::TestEnv;
use e2e::metricsrv::MetricsServer;
use e2e::prometheus::Prometheus;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};

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
    ];
    for w in wanted {
        ensure!(report.contains(w), "the report lacks {w:?}:\n{report}");
    }
    // One output file per input file, each starting with its report.
    let mut kinds = Vec::new();
    for f in [
        "canary-istio.yaml",
        "bluegreen-prepromotion.yaml",
        "gateway-plugin-and-extras.yaml",
        "refused.yaml",
    ] {
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
        "Service/shop-stable",
        "Service/shop-canary",
        "VirtualService/shop",
        "AnalysisTemplate/success-rate",
        "Rollout/shop",
        "AnalysisTemplate/smoke-tests",
        "ClusterAnalysisTemplate/error-rate",
        "Rollout/checkout",
        "Rollout/api",
        "AnalysisTemplate/latency",
        "ConfigMap/edge-settings",
    ];
    ensure!(kinds == want_kinds, "{kinds:?}");

    the_gateway_example_converts(&dir)?;
    // What migrate writes, lint accepts (warnings allowed: the Services of the gateway and
    // blue-green examples are not among the files).
    let lint = plugin(&["lint", "-o", "json", dir.to_str().context("path")?])?;
    let v: Value = serde_json::from_slice(&lint.stdout)?;
    ensure!(v["errors"] == 0 && lint.status.success(), "{v:#}");
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

/// The migrated canary through the real API server and controller: server-side applied with
/// kubectl, first revision Healthy, then a new image released through both analysis steps
/// (a real Prometheus answering the converted query) to Healthy.
#[tokio::test]
async fn a_migrated_canary_is_accepted_and_released_to_healthy() {
    TestEnv::run("migrate-canary", |env| async move {
        let file = examples().join("canary-istio.yaml");
        let out = plugin(&["migrate", file.to_str().context("path")?])?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let yaml = String::from_utf8(out.stdout)?;

        let metrics = MetricsServer::start().await?;
        metrics.set_gauge("service_request_success_ratio", &[("service", "shop-canary")], 0.99);
        let dir = std::env::temp_dir().join(format!("sluice-prometheus-{}", env.namespace));
        std::fs::create_dir_all(&dir)?;
        let prometheus = Prometheus::start(&dir, &[metrics.target()], Duration::from_secs(1)).await?;
        env.attach_log(dir.join("prometheus.log"));
        prometheus
            .wait_for_series("service_request_success_ratio{service=\"shop-canary\"}", Duration::from_secs(120))
            .await?;
        // The example's Prometheus is the cluster's; this one answers on loopback.
        ensure!(yaml.contains("http://prometheus.monitoring:9090"), "{yaml}");
        let yaml = yaml.replace("http://prometheus.monitoring:9090", &prometheus.url());

        e2e::routers::install_router_crds(&env.client).await?;
        apply(&env, &yaml).await?;
        let _controller = common::ControllerProcess::start(&env)?;
        let v1 = wait_healthy(&env, "shop", 2, LIMIT).await?;

        patch_spec(&env, "shop", json!({"template": {"spec": {"containers": [
            {"name": "shop", "image": "registry.example/shop:1.1.0", "ports": [{"name": "http", "containerPort": 8080}]}
        ]}}}))
        .await?;
        let v2 = wait_promoted(&env, "shop", &v1, LIMIT).await?;

        let runs = env.api::<AnalysisRun>().list(&ListParams::default()).await?;
        let mut judged: Vec<String> = runs
            .items
            .iter()
            .filter(|r| r.metadata.name.as_deref().is_some_and(|n| n.starts_with(&format!("shop-{v2}-"))))
            .map(|r| {
                let phase = r.status.as_ref().and_then(|s| s.phase);
                format!("{}={phase:?}", r.metadata.name.clone().unwrap_or_default())
            })
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

/// `kubectl apply --server-side -f -` into the test's namespace, as a user applies the output.
async fn apply(env: &TestEnv, yaml: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"))
        .args(["apply", "--server-side", "-n", &env.namespace, "-f", "-"])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
    for obj in [
        "service/shop-stable",
        "virtualservice.networking.istio.io/shop",
        "analysistemplate.sluice.dev/success-rate",
        "rollout.sluice.dev/shop",
    ] {
        ensure!(
            said.contains(&format!("{obj} serverside-applied")),
            "{obj}: {said}"
        );
    }
    Ok(())
}
