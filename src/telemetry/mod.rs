//! Metrics and the controller's HTTP endpoints: `/metrics` (Prometheus text format),
//! `/healthz` (the process runs) and `/readyz` (it leads or stands by for the Lease).
//!
//! Labels are bounded: namespace and rollout name at most, plus small fixed sets (phase,
//! reason). Never pod or hash names. A deleted Rollout's series are removed.

mod classic;
mod queue;
mod rollouts;
pub use classic::classic_text;
pub use queue::WorkQueue;
pub use rollouts::RolloutSeries;
pub use rollouts::{Reconciled, RoleReplicas};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// A failed reconcile: the kind reconciled (`Rollout`, `AnalysisRun`) and the error's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeasurementLabels {
    /// `prometheus`, `web` or `job`.
    pub provider: String,
    /// `Successful`, `Failed`, `Inconclusive`, `Error` or `Running`.
    pub phase: String,
}

/// A rollback exercise.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExerciseLabels {
    pub namespace: String,
    pub exercise: String,
}

/// A rollback exercise and how one of its runs ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExerciseRunLabels {
    pub namespace: String,
    pub exercise: String,
    pub result: String,
}

/// Rollback exercise runs ended, by result, and the last run's figures, per exercise.
#[derive(Debug)]
pub struct ExerciseMetrics {
    pub runs: Family<ExerciseRunLabels, Counter>,
    pub time_to_detect: Family<ExerciseLabels, Gauge<f64, AtomicU64>>,
    pub time_to_safe: Family<ExerciseLabels, Gauge<f64, AtomicU64>>,
    pub failed_requests: Family<ExerciseLabels, Gauge<i64, AtomicI64>>,
}

impl ExerciseMetrics {
    fn register(r: &mut Registry) -> Self {
        ExerciseMetrics {
            runs: register(
                r,
                "exercise_runs",
                "Rollback exercise runs ended, by result (Passed, Failed, Skipped, Cancelled)",
                Family::default(),
            ),
            time_to_detect: register(
                r,
                "exercise_time_to_detect_seconds",
                "The last exercise run's time from the fault going live to its detection",
                Family::default(),
            ),
            time_to_safe: register(
                r,
                "exercise_time_to_safe_seconds",
                "The last exercise run's time from the fault going live to all traffic on stable",
                Family::default(),
            ),
            failed_requests: register(
                r,
                "exercise_failed_requests",
                "Requests the last exercise run's faulty revision failed (when counted)",
                Family::default(),
            ),
        }
    }
}

/// A notification receiver: its name in the configuration and its kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

/// A request to the Kubernetes API: verb (`get`, `list`, `watch`, `create`, `update`,
/// `patch`, `delete`) and resource (`pods`, `rollouts/status`); both bounded by the kinds
/// Sluice uses.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub phase: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub api_writes: Counter,
    pub api_requests: Family<RequestLabels, Counter>,
    /// Events dropped because their lane was full (see `runtime::events`).
    pub events_dropped: Counter,
    /// Phase, step, canary weight and decisions of each Rollout.
    rollouts: Arc<RolloutSeries>,
    pub leader: Gauge<i64, AtomicI64>,
    pub measurements: Family<MeasurementLabels, Counter>,
    pub provider_duration: Family<ProviderLabels, Histogram>,
    pub analysis_verdicts: Family<VerdictLabels, Counter>,
    /// The Rollouts waiting for a reconcile (`sluice_workqueue_depth`).
    pub queue: Arc<WorkQueue>,
    /// Notifications delivered, given up and each attempt's time, per receiver.
    pub notifications_sent: Family<ReceiverLabels, Counter>,
    pub notifications_failed: Family<ReceiverLabels, Counter>,
    pub notification_duration: Family<ReceiverLabels, Histogram>,
    /// Rollback exercise runs ended, by result; the last run's figures.
    pub exercises: ExerciseMetrics,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` in `registry` and hands it back, for the caller to keep.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Reconcile durations, from half a millisecond: most reconciles read only memory and take
/// less than 5 ms.
const RECONCILE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The durations of a call out (a provider's measurement, a notification's delivery), from
/// 10 ms to 30 s.
fn call_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sluice");
        let rollouts = Arc::new(RolloutSeries::default());
        r.register_collector(Box::new(rollouts.clone()));
        let queue = Arc::new(WorkQueue::default());
        r.register_collector(Box::new(queue::DepthCollector(queue.clone())));
        Metrics {
            rollouts,
            queue,
            reconciles: register(
                &mut r,
                "reconciles",
                "Reconciles of Rollouts",
                Counter::default(),
            ),
            reconcile_errors: register(
                &mut r,
                "reconcile_errors",
                "Failed reconciles, by kind (Rollout, AnalysisRun) and reason",
                Family::default(),
            ),
            reconcile_duration: register(
                &mut r,
                "reconcile_duration_seconds",
                "Time of one reconcile",
                Histogram::new(RECONCILE_BUCKETS),
            ),
            api_writes: register(
                &mut r,
                "api_writes",
                "Writes to the Kubernetes API (a reconcile with nothing to do makes none)",
                Counter::default(),
            ),
            api_requests: register(
                &mut r,
                "api_requests",
                "Requests sent to the Kubernetes API, by verb and resource",
                Family::default(),
            ),
            events_dropped: register(
                &mut r,
                "events_dropped",
                "Events not published because the API server was too slow to take them (their lane was full)",
                Counter::default(),
            ),
            leader: register(
                &mut r,
                "leader",
                "1 while this instance holds the leader Lease",
                Gauge::default(),
            ),
            measurements: register(
                &mut r,
                "analysis_measurements",
                "Analysis measurements taken, by provider and phase (Error: the provider could not measure)",
                Family::default(),
            ),
            provider_duration: register(
                &mut r,
                "analysis_provider_duration_seconds",
                "Time a provider took to answer one measurement",
                Family::new_with_constructor(call_histogram),
            ),
            analysis_verdicts: register(
                &mut r,
                "analysis_verdicts",
                "AnalysisRun verdicts reached, by phase",
                Family::default(),
            ),
            notifications_sent: register(
                &mut r,
                "notifications_sent",
                "Notifications a receiver took",
                Family::default(),
            ),
            notifications_failed: register(
                &mut r,
                "notifications_failed",
                "Notifications given up on (after the last attempt, or refused for good)",
                Family::default(),
            ),
            notification_duration: register(
                &mut r,
                "notification_attempt_duration_seconds",
                "Time of one delivery attempt to a receiver, answered or not",
                Family::new_with_constructor(call_histogram),
            ),
            exercises: ExerciseMetrics::register(&mut r),
            registry: r,
            ready: AtomicBool::new(false),
        }
    }

    /// The phase, step, canary weight and decisions of each Rollout.
    pub fn rollouts(&self) -> &RolloutSeries {
        &self.rollouts
    }

    /// Ready: the process reached the API server and leads or stands by for the Lease (a
    /// standby is ready, so a rolling update of two replicas and their PodDisruptionBudget can
    /// go on; who leads is `sluice_leader`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether this instance holds the leader Lease (and reconciles).
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn is_leading(&self) -> bool {
        self.leader.get() == 1
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The classic Prometheus text format (0.0.4), for clients that do not ask for
    /// OpenMetrics (`promtool check metrics`, older scrapers).
    pub fn render_classic(&self) -> String {
        classic_text(&self.render())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let m1 = metrics.clone();
    let m2 = metrics;
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let m = m1.clone();
                async move {
                    // Prometheus asks for OpenMetrics; everyone else gets the classic format.
                    let openmetrics = headers
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("application/openmetrics-text"));
                    if openmetrics {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            m.render(),
                        )
                    } else {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            m.render_classic(),
                        )
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = m2.clone();
                async move {
                    match (m.is_ready(), m.is_leading()) {
                        (true, true) => (StatusCode::OK, "ok: leading").into_response(),
                        (true, false) => (StatusCode::OK, "ok: standing by").into_response(),
                        (false, _) => {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                        }
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::RolloutPhase;

    /// Every metric the alerting rules (dashboards/alerts.yaml) read is one the controller
    /// exports, by the same name: a renamed metric fails here, not silently in production.
    #[test]
    fn every_metric_the_alerts_read_is_exported() {
        let m = Metrics::new();
        m.rollouts().observe(
            "shop",
            "web",
            Some(RolloutPhase::Degraded),
            Some(1),
            Some(0),
        );
        m.rollouts().decision("shop", "web", "RolloutAborted");
        m.reconciles.inc();
        m.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: "Rollout".into(),
                reason: "Timeout".into(),
            })
            .inc();
        m.measurements
            .get_or_create(&MeasurementLabels {
                provider: "prometheus".into(),
                phase: "Error".into(),
            })
            .inc();
        let text = m.render_classic();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
            })
            .collect();
        let alerts = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/alerts.yaml"
        ));
        let used = regex::Regex::new(r"\bsluice_[a-z_]+").expect("regex");
        let mut read = 0;
        for name in used.find_iter(alerts).map(|m| m.as_str()) {
            read += 1;
            assert!(
                exported.contains(name),
                "alerts.yaml reads {name}, which the controller does not export: {exported:?}"
            );
        }
        assert!(read >= 5, "the alerts read Sluice's metrics");
    }
}
