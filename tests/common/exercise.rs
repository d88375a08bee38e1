//! A Rollout exercised on the local control plane, shared by tests/exercise.rs and
//! tests/exercise_cli.rs: the traffic simulator answering as the pods' annotations say,
//! Istio's VirtualService carrying the weights, a real Prometheus scraping the simulator for
//! the analysis and the request counts, and the controller.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::TestEnv;
use e2e::prometheus::Prometheus;
use e2e::trafficsim::{ERROR_RATE_ANNOTATION, Routing, TrafficSim};
use kube::api::PostParams;
use serde_json::{Value, json};
use sluice::api::exercise::{ExerciseRun, RolloutExercise};
use sluice::api::rollout::{Rollout, RolloutPhase};

use super::ControllerProcess;
use super::fixture::wait_healthy;
use super::routers::{create_object, primary_virtual_service, virtual_services};

/// How long each wait of the exercise tests may take.
pub const LIMIT: Duration = Duration::from_secs(240);
/// Requests a second the simulated clients send.
const RPS: f64 = 100.0;

/// What one test runs against: the mesh, Prometheus, the simulator and the controller.
pub struct Stack {
    pub sim: TrafficSim,
    pub prom: Prometheus,
    pub dir: std::path::PathBuf,
    pub controller: ControllerProcess,
}

impl Stack {
    pub async fn stop(self) {
        self.sim.stop().await;
        drop(self.prom);
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(self.controller);
    }
}

/// Services `web-stable` and `web-canary`, VirtualService `web`, the success-rate template,
/// Rollout `web` (4 pods, healthy: no errors) with `steps`, whose analysis judges Service
/// `judged`; the controller, the simulator and Prometheus.
pub async fn stack(env: &TestEnv, steps: Value) -> anyhow::Result<Stack> {
    stack_with(env, steps, &[]).await
}

/// [`stack`], the controller started with `args` too.
pub async fn stack_with(env: &TestEnv, steps: Value, args: &[&str]) -> anyhow::Result<Stack> {
    e2e::routers::install_router_crds(&env.client).await?;
    for name in ["web-stable", "web-canary"] {
        super::fixture::create_service(env, name, json!({"app": "web"})).await?;
    }
    create_object(&virtual_services(env), primary_virtual_service()).await?;
    let sim = TrafficSim::start(
        env.client.clone(),
        &env.namespace,
        Routing::VirtualService {
            name: "web".into(),
            route: Some("primary".into()),
        },
        RPS,
    )
    .await?;
    let dir = std::env::temp_dir().join(format!("exercise-prom-{}", env.namespace));
    let prom = Prometheus::start(&dir, &[sim.metrics_target()], Duration::from_secs(1)).await?;
    template(env, &prom.url()).await?;
    let controller = ControllerProcess::start_with(env, "a", args)?;
    let mut ro = super::fixture::web_canary(
        4,
        json!({
            "abortScaleDownDelaySeconds": 3,
            "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
            "steps": steps
        }),
    )?;
    if let Some(t) = ro.spec.template.as_mut() {
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.annotations = Some([(ERROR_RATE_ANNOTATION.to_string(), "0".to_string())].into());
    }
    super::fixture::create_rollout(env, &ro).await?;
    wait_healthy(env, "web", 4, LIMIT).await?;
    Ok(Stack {
        sim,
        prom,
        dir,
        controller,
    })
}

/// AnalysisTemplate `success-rate`: the share of non-5xx requests to Service `{{args.service}}`
/// in this namespace over the last 10 s, at least 95%.
pub async fn template(env: &TestEnv, prometheus: &str) -> anyhow::Result<()> {
    let ns = &env.namespace;
    let query = format!(
        r#"sum(rate(istio_requests_total{{destination_service_namespace="{ns}",destination_service_name="{{{{args.service}}}}",response_code!~"5.."}}[10s])) / sum(rate(istio_requests_total{{destination_service_namespace="{ns}",destination_service_name="{{{{args.service}}}}"}}[10s]))"#
    );
    let t: sluice::api::AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {
            "args": [{"name": "service"}],
            "metrics": [{
                "name": "success-rate", "initialDelay": "3s", "interval": "2s", "count": 5,
                "failureLimit": 0, "inconclusiveLimit": 3,
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {"address": prometheus, "query": query}}
            }]
        }
    }))?;
    env.api::<sluice::api::AnalysisTemplate>()
        .create(&PostParams::default(), &t)
        .await
        .context("creating the AnalysisTemplate")?;
    Ok(())
}

pub fn analysis_of(service: &str) -> Value {
    json!({"analysis": {"templates": [{"templateName": "success-rate"}],
        "args": [{"name": "service", "value": service}]}})
}

/// RolloutExercise `name` on `web`: its pods fail 20% of requests; counted in Prometheus.
pub fn exercise(name: &str, prometheus: &str, extra: Value) -> anyhow::Result<RolloutExercise> {
    let mut spec = json!({
        "rolloutName": "web",
        "fault": {
            "description": "20% of requests fail",
            "strategicMergePatch": {"metadata": {"annotations": {ERROR_RATE_ANNOTATION: "0.2"}}}
        },
        "objectives": {"maxTimeToSafe": "3m"},
        "requests": {"prometheusAddress": prometheus, "settle": "5s"}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutExercise",
        "metadata": {"name": name}, "spec": spec
    }))?)
}

pub async fn create(env: &TestEnv, ex: &RolloutExercise) -> anyhow::Result<()> {
    env.api::<RolloutExercise>()
        .create(&PostParams::default(), ex)
        .await
        .context("creating the RolloutExercise")?;
    Ok(())
}

/// Waits until exercise `name` has `n` finished (or skipped) runs; returns the newest.
pub async fn wait_runs(
    env: &TestEnv,
    name: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<ExerciseRun> {
    let api = env.api::<RolloutExercise>();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let ex = api.get(name).await?;
        let status = ex.status.clone().unwrap_or_default();
        if status.history.len() >= n {
            return Ok(status.history[0].clone());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "exercise {name}: {} of {n} runs after {limit:?}; status {status:?}",
                status.history.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn rollout(env: &TestEnv) -> anyhow::Result<Rollout> {
    Ok(env.api::<Rollout>().get("web").await?)
}

pub async fn stable_hash(env: &TestEnv) -> anyhow::Result<String> {
    rollout(env)
        .await?
        .status
        .and_then(|s| s.stable_rs)
        .context("the Rollout has no stable revision")
}

/// Waits until the Rollout is Healthy on `stable` again with no exercise in its status.
pub async fn wait_back_on(env: &TestEnv, stable: &str) -> anyhow::Result<()> {
    super::wait_status(
        env,
        "web",
        "back on the stable, exercise over",
        LIMIT,
        |s| {
            s.phase == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref() == Some(stable)
                && s.current_pod_hash.as_deref() == Some(stable)
                && s.exercise.is_none()
        },
    )
    .await
    .map(|_| ())
}
