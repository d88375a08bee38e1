//! Sluice's CRDs in a real API server: valid manifests are accepted, bad ones refused at
//! `kubectl apply` with a message that names the problem, and `kubectl get` shows the columns.

mod common;

use anyhow::{Context, ensure};
use common::fixture::merged;
use common::routers::{
    create_object, http_routes, primary_virtual_service, split_http_route, virtual_services,
};
use e2e::TestEnv;
use kube::Api;
use kube::api::PostParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

fn examples() -> anyhow::Result<Vec<std::path::PathBuf>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    TestEnv::run("crd-examples", |env| async move {
        let files = examples()?;
        ensure!(files.len() >= 6, "examples/ has {} files", files.len());
        for f in &files {
            let path = f.display().to_string();
            let out = env
                .kubectl(&["apply", "--server-side", "-f", &path], None)
                .await?;
            ensure!(out.success, "kubectl apply {path} failed: {}", out.stderr);
        }
        let out = env.kubectl(&["get", "sluice", "-o", "name"], None).await?;
        ensure!(out.success, "{}", out.stderr);
        for name in [
            "rollout.sluice.dev/web-canary",
            "rollout.sluice.dev/web-bluegreen",
            "rollout.sluice.dev/web-ref",
            "analysistemplate.sluice.dev/success-rate",
            "analysisrun.sluice.dev/integration-tests",
        ] {
            ensure!(
                out.stdout.contains(name),
                "`kubectl get sluice` lacks {name}:\n{}",
                out.stdout
            );
        }
        let out = env
            .kubectl(
                &[
                    "get",
                    "clusteranalysistemplates.sluice.dev",
                    "web-check",
                    "-o",
                    "name",
                ],
                None,
            )
            .await?;
        ensure!(out.success, "{}", out.stderr);
        Ok(())
    })
    .await;
}

const GOOD_TEMPLATE: &str = r#"
  selector:
    matchLabels: {app: bad}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: app, image: app:1}]"#;

fn rollout(body: &str) -> String {
    format!("apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: bad\nspec:{body}\n")
}

#[tokio::test]
async fn invalid_rollouts_are_refused_with_a_clear_message() {
    TestEnv::run("crd-invalid", |env| async move {
        let canary = "\n  strategy:\n    canary:\n      steps: [{setWeight: 20}]";
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "missing selector",
                rollout(&format!(
                    "\n  template:\n    metadata: {{labels: {{app: bad}}}}\n    spec:\n      containers: [{{name: app, image: app:1}}]{canary}"
                )),
                "spec.selector is required when spec.template is set",
            ),
            (
                "weight 150",
                rollout(&format!("{GOOD_TEMPLATE}\n  strategy:\n    canary:\n      steps: [{{setWeight: 150}}]")),
                "should be less than or equal to 100",
            ),
            (
                "both template and workloadRef",
                rollout(&format!(
                    "{GOOD_TEMPLATE}\n  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}{canary}"
                )),
                "exactly one of spec.template and spec.workloadRef must be set",
            ),
            (
                "neither template nor workloadRef",
                rollout(&format!("\n  selector:\n    matchLabels: {{app: bad}}{canary}")),
                "exactly one of spec.template and spec.workloadRef must be set",
            ),
            (
                "unknown step type",
                rollout(&format!("{GOOD_TEMPLATE}\n  strategy:\n    canary:\n      steps: [{{setWieght: 20}}]")),
                "unknown field \"spec.strategy.canary.steps[0].setWieght\"",
            ),
            (
                "two actions in one step",
                rollout(&format!(
                    "{GOOD_TEMPLATE}\n  strategy:\n    canary:\n      steps: [{{setWeight: 20, pause: {{}}}}]"
                )),
                "each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute",
            ),
            ("no strategy", rollout(GOOD_TEMPLATE), "spec.strategy: Required value"),
            (
                "empty strategy",
                rollout(&format!("{GOOD_TEMPLATE}\n  strategy: {{}}")),
                "exactly one of strategy.canary and strategy.blueGreen must be set",
            ),
            (
                "both strategies",
                rollout(&format!(
                    "{GOOD_TEMPLATE}\n  strategy:\n    canary: {{}}\n    blueGreen: {{activeService: web}}"
                )),
                "exactly one of strategy.canary and strategy.blueGreen must be set",
            ),
            (
                "blue-green without activeService",
                rollout(&format!("{GOOD_TEMPLATE}\n  strategy:\n    blueGreen: {{previewService: p}}")),
                "activeService: Required value",
            ),
            (
                "negative replicas",
                rollout(&format!("{GOOD_TEMPLATE}\n  replicas: -1{canary}")),
                "should be greater than or equal to 0",
            ),
        ];
        for (what, manifest, expected) in &cases {
            let out = env.kubectl(&["apply", "-f", "-"], Some(manifest)).await?;
            ensure!(!out.success, "{what}: kubectl apply succeeded but should be refused:\n{manifest}");
            ensure!(
                out.stderr.contains(expected),
                "{what}: expected the message to contain {expected:?}, got:\n{}",
                out.stderr
            );
        }

        // Without kubectl's strict field validation, the unknown field is pruned and the empty
        // step is still refused.
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("sluice.dev", "v1alpha1", "Rollout"));
        let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &ar);
        let value: serde_json::Value = serde_saphyr::from_str(&cases[4].1).context("yaml")?;
        let obj: DynamicObject = serde_json::from_value(value)?;
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(e)) => ensure!(
                e.code == 422 && e.message.contains("each step must set exactly one of"),
                "unexpected refusal: {e:?}"
            ),
            other => anyhow::bail!("an empty step was accepted: {other:?}"),
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn invalid_analysis_templates_are_refused() {
    TestEnv::run("crd-invalid-analysis", |env| async move {
        let template = |metric: &str| {
            format!(
                "apiVersion: sluice.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: bad\nspec:\n  metrics:\n{metric}\n"
            )
        };
        let prom = "      provider:\n        prometheus: {address: 'http://p:9090', query: up}";
        let cases = [
            ("duration in words", template(&format!("    - name: m\n      interval: 5 minutes\n{prom}")), "spec.metrics[0].interval"),
            ("no provider", template("    - name: m\n      provider: {}"), "a metric needs exactly one provider"),
            (
                "duplicate metric names",
                template(&format!("    - name: m\n{prom}\n    - name: m\n{prom}")),
                "Duplicate value",
            ),
        ];
        for (what, manifest, expected) in &cases {
            let out = env.kubectl(&["apply", "-f", "-"], Some(manifest)).await?;
            ensure!(!out.success, "{what}: accepted but should be refused");
            ensure!(out.stderr.contains(expected), "{what}: expected {expected:?} in:\n{}", out.stderr);
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_get_shows_the_rollout_columns() {
    TestEnv::run("crd-columns", |env| async move {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rollout-canary.yaml");
        let out = env
            .kubectl(&["apply", "-f", &path.display().to_string()], None)
            .await?;
        ensure!(out.success, "{}", out.stderr);
        // `sro` is Sluice's short name; Argo Rollouts' `ro` stays free.
        let out = env.kubectl(&["get", "sro"], None).await?;
        ensure!(out.success, "{}", out.stderr);
        let header: Vec<&str> = out
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        ensure!(
            header
                == [
                    "NAME",
                    "DESIRED",
                    "CURRENT",
                    "UP-TO-DATE",
                    "AVAILABLE",
                    "STEP",
                    "WEIGHT",
                    "PHASE",
                    "AGE"
                ],
            "header: {header:?}"
        );
        ensure!(out.stdout.contains("web-canary"), "{}", out.stdout);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn istio_and_gateway_api_crds_from_the_pinned_modules_are_served() {
    TestEnv::run("router-crds", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        create_object(&virtual_services(&env), primary_virtual_service()).await?;
        create_object(&http_routes(&env), split_http_route()).await?;
        // The real schema is there: Gateway API refuses a weight above its maximum.
        let bad = env
            .kubectl(
                &["apply", "-f", "-"],
                Some(r#"{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "bad"}, "spec": {"rules": [{"backendRefs": [{"name": "web-stable", "port": 80, "weight": 2000000}]}]}}"#),
            )
            .await?;
        ensure!(!bad.success && bad.stderr.contains("weight"), "{}", bad.stderr);
        Ok(())
    })
    .await;
}

/// A canary Rollout (as JSON, so YAML never reinterprets a value) with `canary` merged into
/// its strategy.
fn canary_rollout(name: &str, canary: serde_json::Value) -> String {
    let strategy = merged(serde_json::json!({"steps": [{"setWeight": 20}]}), canary);
    serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {"metadata": {"labels": {"app": "bad"}},
                         "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
            "strategy": {"canary": strategy}
        }
    })
    .to_string()
}

/// An AnalysisTemplate whose metric measures every `interval`.
fn template_with_interval(interval: &str) -> String {
    serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "interval"},
        "spec": {"metrics": [{"name": "m", "interval": interval,
            "provider": {"prometheus": {"address": "http://p:9090", "query": "up"}}}]}
    })
    .to_string()
}

/// Durations Sluice's parser refuses; the API server must refuse them too (the unit tests in
/// src/api/duration.rs check the pattern and the parser agree on these and more).
const REFUSED_DURATIONS: &[&str] = &[
    "5m5",
    "5.5",
    "5m5.5",
    "+5s",
    "-5s",
    " 5s",
    "5 s",
    ".5s",
    "5.s",
    "1e3s",
    "5sec",
    "1d",
    "9999999999999s",
    "1.0000000001s",
    "1s2s3s4s5s6s7s8s9s",
];

/// Durations Sluice parses; the API server must accept them.
const ACCEPTED_DURATIONS: &[&str] = &[
    "30",
    "30s",
    "1h30m",
    "250ms",
    "1.5h",
    "2h45m30.5s",
    "1µs",
    "1μs",
    "999999999999h",
];

/// Applies `manifest` with a server-side dry run: (accepted, kubectl's stderr). This
/// checkout's CRDs are put in place first: other test processes on a shared control plane may
/// have applied another checkout's since this one started.
async fn dry_run(env: &TestEnv, manifest: &str) -> anyhow::Result<(bool, String)> {
    e2e::harness::install_crds(&env.client, &e2e::harness::crds_dir()).await?;
    let out = env
        .kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(manifest))
        .await?;
    Ok((out.success, out.stderr))
}

#[tokio::test]
async fn the_api_server_accepts_exactly_the_durations_sluice_parses() {
    TestEnv::run("crd-durations", |env| async move {
        for d in REFUSED_DURATIONS {
            let step = canary_rollout("bad", serde_json::json!({"steps": [{"pause": {"duration": d}}]}));
            let (ok, stderr) = dry_run(&env, &step).await?;
            ensure!(!ok, "pause.duration {d:?} was accepted");
            ensure!(
                stderr.contains("spec.strategy.canary.steps[0].pause.duration in body should match"),
                "pause.duration {d:?}: {stderr}"
            );
            let (ok, stderr) = dry_run(&env, &template_with_interval(d)).await?;
            ensure!(!ok, "interval {d:?} was accepted");
            ensure!(
                stderr.contains("spec.metrics[0].interval in body should match"),
                "interval {d:?}: {stderr}"
            );
        }
        for d in ACCEPTED_DURATIONS {
            let step = canary_rollout("good", serde_json::json!({"steps": [{"pause": {"duration": d}}]}));
            let (ok, stderr) = dry_run(&env, &step).await?;
            ensure!(ok, "pause.duration {d:?} was refused: {stderr}");
            let (ok, stderr) = dry_run(&env, &template_with_interval(d)).await?;
            ensure!(ok, "interval {d:?} was refused: {stderr}");
        }
        // Whole seconds as an integer, never negative.
        let (ok, stderr) = dry_run(
            &env,
            &canary_rollout("good", serde_json::json!({"steps": [{"pause": {"duration": 45}}]})),
        )
        .await?;
        ensure!(ok, "pause.duration 45 was refused: {stderr}");
        let (ok, stderr) = dry_run(
            &env,
            &canary_rollout("bad", serde_json::json!({"steps": [{"pause": {"duration": -5}}]})),
        )
        .await?;
        ensure!(
            !ok && stderr.contains("spec.strategy.canary.steps[0].pause.duration in body should be greater than or equal to 0"),
            "pause.duration -5: {stderr}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_api_server_checks_max_surge_and_max_unavailable() {
    TestEnv::run("crd-surge", |env| async move {
        for field in ["maxSurge", "maxUnavailable"] {
            for bad in [serde_json::json!("25"), serde_json::json!("abc"), serde_json::json!("-5%"),
                        serde_json::json!("2.5%"), serde_json::json!(" 25%"), serde_json::json!("1000000000%")] {
                let (ok, stderr) = dry_run(&env, &canary_rollout("bad", serde_json::json!({field: bad}))).await?;
                ensure!(!ok, "{field} {bad} was accepted");
                ensure!(
                    stderr.contains(&format!("spec.strategy.canary.{field} in body should match '^[0-9]{{1,9}}%$'")),
                    "{field} {bad}: {stderr}"
                );
            }
            let (ok, stderr) = dry_run(&env, &canary_rollout("bad", serde_json::json!({field: -1}))).await?;
            ensure!(
                !ok && stderr.contains(&format!("spec.strategy.canary.{field} in body should be greater than or equal to 0")),
                "{field} -1: {stderr}"
            );
            let (ok, stderr) = dry_run(&env, &canary_rollout("bad", serde_json::json!({field: 3_000_000_000u64}))).await?;
            ensure!(
                !ok && stderr.contains(&format!("spec.strategy.canary.{field} in body should be less than or equal to 2147483647")),
                "{field} 3000000000: {stderr}"
            );
            for good in [serde_json::json!("25%"), serde_json::json!("0%"), serde_json::json!("200%"), serde_json::json!(0), serde_json::json!(2)] {
                let (ok, stderr) = dry_run(&env, &canary_rollout("good", serde_json::json!({field: good}))).await?;
                ensure!(ok, "{field} {good} was refused: {stderr}");
            }
        }
        Ok(())
    })
    .await;
}
