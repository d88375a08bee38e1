//! Argo Rollouts' own controller (built from its Go module by e2e/argo/build.sh) against the
//! real local control plane: the `argoproj.io` side of the side-by-side benchmark works end to
//! end, from a new Rollout to Healthy, through a pause and an analysis of Argo's `web` provider,
//! to Healthy on the new revision, with its metrics endpoint counting the reconciles.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::argo::{self, ArgoController};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(180);
const NAME: &str = "web";

/// A tiny HTTP endpoint for the `web` metric: answers every request with `body` and counts the
/// requests. Stops when dropped.
struct WebMetric {
    port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WebMetric {
    async fn start(body: &'static str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    // Read the request head (a GET has no body), then answer and close.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(WebMetric { port, hits, task })
    }
}

impl Drop for WebMetric {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn manifests(metric_port: u16, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web-stable}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-canary}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  metrics:
  - name: success-rate
    interval: 2s
    count: 2
    successCondition: result >= 0.95
    provider:
      web:
        url: http://127.0.0.1:{metric_port}/success-rate
        jsonPath: "{{$.successRate}}"
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: {NAME}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "{image}", ports: [{{containerPort: 8080}}]}}]
  strategy:
    canary:
      stableService: web-stable
      canaryService: web-canary
      steps:
      - setWeight: 25
      - pause: {{}}
      - analysis:
          templates: [{{templateName: success-rate}}]
      - setWeight: 75
"#
    )
}

fn argo_api(env: &TestEnv, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind));
    Api::namespaced_with(env.client.clone(), &env.namespace, &ar)
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// The Rollout's status once Argo has observed its latest spec and `check` accepts the status.
async fn wait_rollout(
    env: &TestEnv,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let api = argo_api(env, "Rollout");
    wait_for(what, LIMIT, || async {
        let ro = api.get(NAME).await?;
        let generation = ro.metadata.generation.unwrap_or_default().to_string();
        let status = ro.data.get("status").cloned().unwrap_or(Value::Null);
        // Argo writes observedGeneration as a string.
        let observed = text(&status, "/observedGeneration") == generation;
        Ok((observed && check(&status)).then_some(status))
    })
    .await
}

fn healthy_on(status: &Value, hash: Option<&str>) -> bool {
    let current = text(status, "/currentPodHash");
    text(status, "/phase") == "Healthy"
        && !current.is_empty()
        && text(status, "/stableRS") == current
        && hash.is_none_or(|h| h == current)
        && status.pointer("/availableReplicas").and_then(Value::as_i64) == Some(3)
        && status.pointer("/updatedReplicas").and_then(Value::as_i64) == Some(3)
}

/// Sums the samples of `metric` whose labels include `namespace="<ns>"`.
fn sum_for_namespace(exposition: &str, metric: &str, ns: &str) -> f64 {
    let label = format!("namespace=\"{ns}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn selector_hash(env: &TestEnv, service: &str) -> anyhow::Result<String> {
    let svc = env.api::<Service>().get(service).await?;
    Ok(svc
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
        .unwrap_or_default())
}

#[tokio::test]
async fn argo_rollouts_controller_takes_a_canary_through_pause_and_analysis_to_healthy() {
    TestEnv::run("argo-controller", |env| async move {
        let dir = tokio::task::spawn_blocking(argo::build).await??;
        argo::install(&env.client, &dir).await?;
        // The controller's own namespace is the test's: its Lease and config stay in it.
        argo::prepare_namespace(&env.client, &env.namespace).await?;
        let rules = argo::controller_rules(&dir)?;
        let rule_list = rules.as_array().context("the rules are a list")?;
        assert!(
            rule_list
                .iter()
                .any(|r| r["apiGroups"] == json!(["argoproj.io"])
                    && r["resources"].to_string().contains("\"rollouts\"")),
            "Argo's ClusterRole grants access to its Rollouts: {rules}"
        );

        let metric = WebMetric::start(r#"{"successRate": 0.99}"#).await?;
        let log = std::env::temp_dir().join(format!("argo-controller-{}.log", env.namespace));
        env.attach_log(log.clone());
        // Limited to the test's namespace, so a benchmark or another run on the same cluster
        // is not touched.
        let mut controller = ArgoController::start(
            &dir,
            &env.cluster.kubeconfig,
            &env.namespace,
            &log,
            &["--namespaced", "--namespace", &env.namespace],
        )?;

        let applied = env
            .kubectl(
                &["apply", "-f", "-"],
                Some(&manifests(metric.port, "example.com/web:v1")),
            )
            .await?;
        if !applied.success {
            bail!("kubectl apply: {}", applied.stderr);
        }

        let first = wait_rollout(&env, "the new Rollout Healthy", |s| healthy_on(s, None)).await?;
        controller.check_alive()?;
        let v1 = text(&first, "/currentPodHash").to_string();
        assert_eq!(selector_hash(&env, "web-stable").await?, v1);

        // A new image: the canary takes 25% (one of three pods) and pauses at step 1.
        let patched = env
            .kubectl(
                &["apply", "-f", "-"],
                Some(&manifests(metric.port, "example.com/web:v2")),
            )
            .await?;
        if !patched.success {
            bail!("kubectl apply: {}", patched.stderr);
        }
        let paused = wait_rollout(&env, "the Rollout paused at step 1", |s| {
            text(s, "/phase") == "Paused"
                && s.pointer("/currentStepIndex").and_then(Value::as_i64) == Some(1)
                && text(s, "/pauseConditions/0/reason") == "CanaryPauseStep"
                && s.pointer("/updatedReplicas").and_then(Value::as_i64) == Some(1)
        })
        .await?;
        controller.check_alive()?;
        let v2 = text(&paused, "/currentPodHash").to_string();
        assert_ne!(v2, v1, "the new image makes a new ReplicaSet");
        assert_eq!(text(&paused, "/stableRS"), v1);
        assert_eq!(selector_hash(&env, "web-canary").await?, v2);
        assert_eq!(
            metric.hits.load(Ordering::SeqCst),
            0,
            "no analysis before the pause is promoted"
        );

        // Promote as `kubectl argo rollouts promote` does: clear the pause conditions through
        // the status subresource, and unpause the spec if it was paused.
        let rollouts = argo_api(&env, "Rollout");
        rollouts
            .patch_status(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"pauseConditions": null}})),
            )
            .await
            .context("clearing the pause conditions")?;
        let ro = rollouts.get(NAME).await?;
        if ro.data.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            rollouts
                .patch(
                    NAME,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"paused": false}})),
                )
                .await
                .context("unpausing the spec")?;
        }

        let done = wait_rollout(&env, "the Rollout Healthy on the new revision", |s| {
            healthy_on(s, Some(&v2))
        })
        .await?;
        controller.check_alive()?;
        assert_eq!(text(&done, "/stableRS"), v2);
        assert_eq!(selector_hash(&env, "web-stable").await?, v2);

        // The analysis ran against the endpoint and passed on its value.
        let runs = argo_api(&env, "AnalysisRun")
            .list(&ListParams::default())
            .await?;
        assert_eq!(
            runs.items.len(),
            1,
            "one AnalysisRun for the one analysis step"
        );
        let run = &runs.items[0].data;
        assert_eq!(text(run, "/status/phase"), "Successful", "{run}");
        let measurements = run
            .pointer("/status/metricResults/0/measurements")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert_eq!(measurements.len(), 2, "count: 2 measurements: {run}");
        for m in &measurements {
            assert_eq!(text(m, "/value"), "0.99");
            assert_eq!(text(m, "/phase"), "Successful");
        }
        assert!(metric.hits.load(Ordering::SeqCst) >= 2);

        // Its metrics endpoint counts the reconciles of this namespace's Rollout and run.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let exposition = http
            .get(controller.metrics_url())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let reconciles = sum_for_namespace(&exposition, "rollout_reconcile_count", &env.namespace);
        let runs = sum_for_namespace(&exposition, "analysis_run_reconcile_count", &env.namespace);
        assert!(
            reconciles >= 3.0,
            "rollout_reconcile_count for the namespace: {reconciles}"
        );
        assert!(runs >= 1.0, "analysis_run_reconcile_count: {runs}");
        assert!(
            exposition.contains("controller_clientset_k8s_request_total{"),
            "its client request counter is served"
        );
        let health = http.get(controller.healthz_url()).send().await?;
        assert!(health.status().is_success());
        controller.check_alive()?;
        Ok(())
    })
    .await;
}
