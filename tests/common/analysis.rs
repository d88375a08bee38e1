//! What analysis measures and what it writes: a gauge that a real Prometheus scrapes, small
//! HTTP endpoints, and AnalysisRuns read back.

use std::path::PathBuf;
use std::time::Duration;

use e2e::metricsrv::MetricsServer;
use e2e::prometheus::Prometheus;
use e2e::{TestEnv, wait_for};
use kube::Api;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate};

/// A metrics endpoint serving one gauge labelled with the test's namespace, and a Prometheus
/// scraping it every second, for one test.
pub struct Monitoring {
    pub metrics: MetricsServer,
    pub prometheus: Prometheus,
    /// Prometheus's data and log, and room for what else the test keeps beside it.
    pub dir: PathBuf,
    gauge: String,
    namespace: String,
}

impl Monitoring {
    /// Starts both with `gauge` at `value`, and waits until Prometheus has its first sample, so
    /// it is there before any analysis asks for it.
    pub async fn start(env: &TestEnv, gauge: &str, value: f64) -> anyhow::Result<Self> {
        let metrics = MetricsServer::start().await?;
        metrics.set_gauge(gauge, &[("namespace", &env.namespace)], value);
        let dir = std::env::temp_dir().join(format!("sluice-prometheus-{}", env.namespace));
        std::fs::create_dir_all(&dir)?;
        let prometheus =
            Prometheus::start(&dir, &[metrics.target()], Duration::from_secs(1)).await?;
        env.attach_log(dir.join("prometheus.log"));
        let m = Monitoring {
            metrics,
            prometheus,
            dir,
            gauge: gauge.to_string(),
            namespace: env.namespace.clone(),
        };
        m.prometheus
            .wait_for_series(&m.query(), Duration::from_secs(120))
            .await?;
        Ok(m)
    }

    /// Creates AnalysisTemplate `success-rate`: the gauge read from this Prometheus every 2 s,
    /// twice, each at least 0.95; `extra` adds fields to the metric (a `failureCondition`).
    pub async fn success_rate_template(
        &self,
        env: &TestEnv,
        extra: serde_json::Value,
    ) -> anyhow::Result<()> {
        let mut metric = serde_json::json!({
            "name": "success-rate", "interval": "2s", "count": 2,
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"address": self.prometheus.url(), "query": self.query()}}
        });
        if let (Some(m), serde_json::Value::Object(e)) = (metric.as_object_mut(), extra) {
            m.extend(e);
        }
        let template: AnalysisTemplate = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "success-rate"},
            "spec": {"metrics": [metric]}
        }))?;
        env.api::<AnalysisTemplate>()
            .create(&kube::api::PostParams::default(), &template)
            .await?;
        Ok(())
    }

    /// The PromQL selecting the gauge.
    pub fn query(&self) -> String {
        format!("{}{{namespace=\"{}\"}}", self.gauge, self.namespace)
    }

    /// Sets the gauge and waits until Prometheus has scraped the new value.
    pub async fn set(&self, value: f64) -> anyhow::Result<()> {
        self.metrics
            .set_gauge(&self.gauge, &[("namespace", &self.namespace)], value);
        let q = self.query();
        let p = &self.prometheus;
        wait_for(
            "Prometheus to scrape the new value",
            Duration::from_secs(120),
            || async {
                let v = p.query(&q).await?;
                Ok(v.first()
                    .filter(|(_, x)| (x - value).abs() < 1e-9)
                    .map(|_| ()))
            },
        )
        .await
    }
}

/// Serves `app` on a free local port; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// A JSON answer.
pub fn json_body(v: serde_json::Value) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
}

pub fn run_phase(r: &AnalysisRun) -> Option<AnalysisPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// The message of a run's status ("" without one).
pub fn run_message(r: &AnalysisRun) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// Waits until AnalysisRun `name` exists and satisfies `check`, and returns it.
pub async fn wait_run(
    env: &TestEnv,
    name: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&AnalysisRun) -> bool,
) -> anyhow::Result<AnalysisRun> {
    let api: Api<AnalysisRun> = env.api();
    wait_for(what, limit, || async {
        Ok(api.get_opt(name).await?.filter(|r| check(r)))
    })
    .await
}
