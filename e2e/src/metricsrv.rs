//! A metrics endpoint that tests control and a real Prometheus scrapes.
//!
//! [`MetricsServer`] serves `GET /metrics` on a free loopback port in the Prometheus text
//! exposition format (version 0.0.4). Tests set gauges ([`MetricsServer::set_gauge`]), bump
//! counters ([`MetricsServer::add_counter`]) and run synthetic request traffic
//! ([`MetricsServer::set_traffic`]) so that the success-rate and error-rate queries Sluice's
//! analyses run give known answers.
//!
//! Traffic is modelled as a continuous flow: a background task (and every scrape) advances
//! `http_requests_total{<labels>, code="200"}` by `rps * (1 - error_ratio) * dt` and
//! `http_requests_total{<labels>, code="500"}` by `rps * error_ratio * dt`. The counters are
//! therefore not whole numbers, but `rate()` over them is exact: once a query's range only
//! covers traffic at one ratio,
//! `sum(rate(http_requests_total{code!~"5.."}[20s])) / sum(rate(http_requests_total[20s]))`
//! is `1 - error_ratio` up to floating-point rounding.
//!
//! The server is cheap to clone (all clones share one registry); the HTTP server and the
//! traffic task stop when the last clone is dropped, and the server closes its connections
//! then, so dropping it looks to Prometheus like the application going away (`up` = 0).
//!
//! Invalid metric or label names, a metric used both as a gauge and as a counter, and
//! negative or NaN counter increments are bugs in the test, and panic with a message saying
//! which; anything else that could go wrong is returned as an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The metric the traffic generator counts requests in.
pub const REQUESTS_METRIC: &str = "http_requests_total";

/// `Content-Type` of the Prometheus text exposition format.
const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the background task advances the traffic counters.
const TRAFFIC_TICK: Duration = Duration::from_millis(100);

/// A `/metrics` endpoint whose series the test sets. See the module documentation.
#[derive(Clone)]
pub struct MetricsServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// Shared by all clones; dropping the last one stops the server and the traffic task.
struct Inner {
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    /// Dropping it shuts the server down gracefully: it stops listening and closes its
    /// connections (also the idle keep-alive ones, which would otherwise go on serving
    /// scrapes).
    _shutdown: oneshot::Sender<()>,
    ticker: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

impl MetricsServer {
    /// Starts serving `/metrics` on `127.0.0.1:0` (a free port) and starts the traffic task.
    pub async fn start() -> anyhow::Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the metrics server to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the metrics server's address")?;
        let registry = Arc::new(Mutex::new(Registry::new(Instant::now())));

        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(Arc::clone(&registry));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                // Resolves when the sender is dropped.
                let _ = shutdown_rx.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%addr, error = %err, "metrics server stopped");
            }
        });

        let ticker_registry = Arc::clone(&registry);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TRAFFIC_TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                lock(&ticker_registry).advance(Instant::now());
            }
        });

        tracing::debug!(%addr, "metrics server started");
        Ok(MetricsServer {
            inner: Arc::new(Inner {
                addr,
                registry,
                _shutdown: shutdown_tx,
                ticker,
            }),
        })
    }

    /// The scrape target, `127.0.0.1:PORT`, as Prometheus's `static_configs` want it.
    pub fn target(&self) -> String {
        self.inner.addr.to_string()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Sets gauge `name{labels}` to `value` (which may be NaN or infinite), creating it if
    /// needed.
    ///
    /// # Panics
    /// If a name is invalid, a label name repeats, or `name` is already a counter.
    pub fn set_gauge(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = label_set(labels);
        let mut registry = lock(&self.inner.registry);
        *registry.series(name, Kind::Gauge, labels) = value;
    }

    /// Adds `delta` to counter `name{labels}`, creating it at 0 first if needed (so
    /// `add_counter(name, labels, 0.0)` makes a counter appear).
    ///
    /// # Panics
    /// If `delta` is negative or NaN, a name is invalid, a label name repeats, or `name` is
    /// already a gauge.
    pub fn add_counter(&self, name: &str, labels: &[(&str, &str)], delta: f64) {
        assert!(
            delta >= 0.0,
            "counter {name}: increment must be a non-negative number, got {delta}"
        );
        let labels = label_set(labels);
        let mut registry = lock(&self.inner.registry);
        *registry.series(name, Kind::Counter, labels) += delta;
    }

    /// Removes series `name{labels}` (of either kind), as if the application stopped
    /// exporting it; returns whether it existed. Traffic for the same labels keeps
    /// re-creating its series: stop it with `set_traffic(labels, 0.0, _)` first.
    pub fn remove_series(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let labels = label_set(labels);
        let mut registry = lock(&self.inner.registry);
        let Some(family) = registry.families.get_mut(name) else {
            return false;
        };
        let removed = family.series.remove(&labels).is_some();
        if family.series.is_empty() {
            registry.families.remove(name);
        }
        removed
    }

    /// Runs synthetic traffic for `labels`: from now on, [`REQUESTS_METRIC`]`{labels,
    /// code="200"}` grows by `requests_per_second * (1 - error_ratio)` per second and
    /// `{labels, code="500"}` by `requests_per_second * error_ratio`. Both series exist (at 0)
    /// as soon as this returns. Calling it again for the same labels changes rate and ratio
    /// for the traffic from then on; a rate of 0 stops the traffic (the counters stay).
    ///
    /// # Panics
    /// If `requests_per_second` is negative or not finite, `error_ratio` is outside
    /// `0.0..=1.0`, a label name is invalid or repeats, or `labels` contains `code`.
    pub fn set_traffic(&self, labels: &[(&str, &str)], requests_per_second: f64, error_ratio: f64) {
        assert!(
            requests_per_second.is_finite() && requests_per_second >= 0.0,
            "set_traffic: requests_per_second must be finite and non-negative, got {requests_per_second}"
        );
        assert!(
            (0.0..=1.0).contains(&error_ratio),
            "set_traffic: error_ratio must be within 0..=1, got {error_ratio}"
        );
        assert!(
            labels.iter().all(|(name, _)| *name != "code"),
            "set_traffic: the `code` label is set by the traffic generator"
        );
        let labels = label_set(labels);
        let mut registry = lock(&self.inner.registry);
        // Traffic up to now still flows at the old rate and ratio.
        registry.advance(Instant::now());
        for code in ["200", "500"] {
            registry.series(REQUESTS_METRIC, Kind::Counter, with_code(&labels, code));
        }
        registry.traffic.insert(
            labels,
            Traffic {
                requests_per_second,
                error_ratio,
            },
        );
    }

    /// The exposition text a scrape would return now.
    pub fn render(&self) -> String {
        let mut registry = lock(&self.inner.registry);
        registry.advance(Instant::now());
        registry.render()
    }
}

async fn serve_metrics(State(registry): State<Arc<Mutex<Registry>>>) -> impl IntoResponse {
    let body = {
        let mut registry = lock(&registry);
        registry.advance(Instant::now());
        registry.render()
    };
    ([(CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], body)
}

/// A panic while holding the lock cannot leave the registry inconsistent (every update is a
/// single assignment), so a poisoned lock is used as is.
fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Label pairs sorted by name.
type LabelSet = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

struct Family {
    kind: Kind,
    series: BTreeMap<LabelSet, f64>,
}

struct Traffic {
    requests_per_second: f64,
    error_ratio: f64,
}

struct Registry {
    families: BTreeMap<String, Family>,
    traffic: BTreeMap<LabelSet, Traffic>,
    advanced_to: Instant,
}

impl Registry {
    fn new(now: Instant) -> Registry {
        Registry {
            families: BTreeMap::new(),
            traffic: BTreeMap::new(),
            advanced_to: now,
        }
    }

    /// The value of `name{labels}`, created at 0 if missing.
    fn series(&mut self, name: &str, kind: Kind, labels: LabelSet) -> &mut f64 {
        assert!(valid_metric_name(name), "invalid metric name {name:?}");
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                kind,
                series: BTreeMap::new(),
            });
        assert!(
            family.kind == kind,
            "metric {name} is a {}, not a {}",
            family.kind.as_str(),
            kind.as_str()
        );
        family.series.entry(labels).or_insert(0.0)
    }

    /// Adds the traffic between the last advance and `now` to the request counters.
    fn advance(&mut self, now: Instant) {
        let seconds = now
            .saturating_duration_since(self.advanced_to)
            .as_secs_f64();
        self.advanced_to = self.advanced_to.max(now);
        if seconds == 0.0 {
            return;
        }
        let increments: Vec<(LabelSet, f64)> = self
            .traffic
            .iter()
            .flat_map(|(labels, traffic)| {
                let requests = traffic.requests_per_second * seconds;
                [
                    (
                        with_code(labels, "200"),
                        requests * (1.0 - traffic.error_ratio),
                    ),
                    (with_code(labels, "500"), requests * traffic.error_ratio),
                ]
            })
            .collect();
        for (labels, delta) in increments {
            *self.series(REQUESTS_METRIC, Kind::Counter, labels) += delta;
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, value) in &family.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (label, value)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", format_value(*value));
            }
        }
        out
    }
}

/// Validates and sorts label pairs.
fn label_set(labels: &[(&str, &str)]) -> LabelSet {
    let mut set: LabelSet = labels
        .iter()
        .map(|(name, value)| {
            assert!(valid_label_name(name), "invalid label name {name:?}");
            (name.to_string(), value.to_string())
        })
        .collect();
    set.sort();
    for pair in set.windows(2) {
        assert!(pair[0].0 != pair[1].0, "label {} given twice", pair[0].0);
    }
    set
}

fn with_code(labels: &LabelSet, code: &str) -> LabelSet {
    let mut set = labels.clone();
    set.push(("code".to_string(), code.to_string()));
    set.sort();
    set
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escapes `\`, `"` and newlines, as the exposition format requires in label values.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Formats a sample value as Prometheus parses it (`NaN`, `+Inf`, `-Inf`, or a float).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_types_sorted_labels_and_escapes() {
        let mut registry = Registry::new(Instant::now());
        *registry.series(
            "g",
            Kind::Gauge,
            label_set(&[("z", "1"), ("a", "q\"b\\s\nn")]),
        ) = f64::NAN;
        *registry.series("c_total", Kind::Counter, Vec::new()) = 2.5;
        *registry.series("inf", Kind::Gauge, Vec::new()) = f64::NEG_INFINITY;
        assert_eq!(
            registry.render(),
            "# TYPE c_total counter\nc_total 2.5\n\
             # TYPE g gauge\ng{a=\"q\\\"b\\\\s\\nn\",z=\"1\"} NaN\n\
             # TYPE inf gauge\ninf -Inf\n"
        );
    }

    #[test]
    fn traffic_advances_by_elapsed_time() {
        let start = Instant::now();
        let mut registry = Registry::new(start);
        registry.traffic.insert(
            label_set(&[("app", "x")]),
            Traffic {
                requests_per_second: 10.0,
                error_ratio: 0.25,
            },
        );
        registry.advance(start + Duration::from_secs(2));
        let family = &registry.families[REQUESTS_METRIC];
        let ok = family.series[&label_set(&[("app", "x"), ("code", "200")])];
        let err = family.series[&label_set(&[("app", "x"), ("code", "500")])];
        assert!((ok - 15.0).abs() < 1e-9, "{ok}");
        assert!((err - 5.0).abs() < 1e-9, "{err}");
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_metric_name("a:b_c1"));
        assert!(!valid_metric_name("1a"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("_a1"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
    }

    #[test]
    #[should_panic(expected = "is a counter")]
    fn kind_conflict_panics() {
        let mut registry = Registry::new(Instant::now());
        registry.series("m", Kind::Counter, Vec::new());
        registry.series("m", Kind::Gauge, Vec::new());
    }
}
