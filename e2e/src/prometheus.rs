//! A real Prometheus server for tests: Debian's `/usr/bin/prometheus` on a free loopback port,
//! scraping the targets a test gives it (usually [`crate::metricsrv::MetricsServer`]s).
//!
//! [`Prometheus::start`] writes `prometheus.yml` into the given directory, keeps the TSDB in
//! `dir/data` and the server's log in `dir/prometheus.log`, and returns once `GET /-/ready`
//! answers 200. Tests that need a metrics-provider outage [`stop`](Prometheus::stop) it
//! (afterwards its port refuses connections) and [`restart`](Prometheus::restart) it on the
//! same port and data directory, so series scraped before the outage are still there.
//!
//! The process never outlives the test process: it is started through
//! `setpriv --pdeathsig KILL`, and is killed when the [`Prometheus`] is dropped. Because the
//! kernel sends the parent-death signal when the *thread* that forked the child exits (not the
//! process), children are forked from one spawner thread that lives as long as the process;
//! otherwise a Prometheus started from a short-lived thread (a test's own thread, a blocking
//! pool thread) would be killed under a test that still uses it.
//!
//! [`Prometheus::start_with_data`] starts it instead on a TSDB directory that already holds
//! blocks, such as those [`crate::history::backfill`] writes from past traffic, and keeps them:
//! time-based retention is set to [`BACKFILL_RETENTION`]. (Prometheus 2.42 deletes a block
//! whose end is more than the retention before the *newest block's* end, not before now,
//! whenever it reloads its blocks: on start and after each compaction. So an hour of history
//! split by promtool at a 2 h boundary loses its older block under a retention below its
//! length, while the newest block survives however old it is.) Past data is queried at its
//! own times
//! ([`Prometheus::query_at`], [`Prometheus::query_range_points`]): an instant query at "now"
//! looks back only 5 minutes.
//!
//! Every wait polls with a deadline; failures to start include the tail of the log.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The Prometheus binary (Debian's package).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// How long Prometheus may take to become ready (it takes well under a second here, more
/// with a large WAL to replay or a busy machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a killed process to be reaped.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one readiness probe may take.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two polls of any condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Pause between two queries while waiting for a series.
const QUERY_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How many ports `start` tries when the chosen one is taken before Prometheus binds it.
const START_ATTEMPTS: u32 = 3;
/// How many log lines an error carries.
const LOG_TAIL_LINES: usize = 30;

/// Time-based retention of a Prometheus started on backfilled blocks.
pub const BACKFILL_RETENTION: &str = "30d";

/// A series' labels (including `__name__` where the query keeps it).
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant query: the series' labels and its value.
pub type Sample = (Labels, f64);

/// One series of a range query: its labels and its points, (Unix seconds, value).
pub type RangeSeries = (Labels, Vec<(f64, f64)>);

/// A Prometheus server process. See the module documentation.
#[derive(Debug)]
pub struct Prometheus {
    addr: SocketAddr,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// `--storage.tsdb.retention.time`, when not Prometheus's default.
    retention: Option<&'static str>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Prometheus {
    /// Writes `dir/prometheus.yml` (global scrape and evaluation interval `scrape_interval`,
    /// one job `sluice-test` scraping `targets`, each `"127.0.0.1:PORT"`), starts Prometheus
    /// on a free loopback port with its TSDB in `dir/data`, and waits until it is ready.
    pub async fn start(
        dir: &Path,
        targets: &[String],
        scrape_interval: Duration,
    ) -> anyhow::Result<Prometheus> {
        Prometheus::launch(dir, targets, scrape_interval, dir.join("data"), None).await
    }

    /// As [`start`](Prometheus::start), but with its TSDB in `data_dir`, which may already
    /// hold blocks (from [`crate::history::backfill`]); they are kept, with time-based
    /// retention [`BACKFILL_RETENTION`]. The configuration and log are still in `dir`.
    pub async fn start_with_data(
        dir: &Path,
        targets: &[String],
        scrape_interval: Duration,
        data_dir: &Path,
    ) -> anyhow::Result<Prometheus> {
        Prometheus::launch(
            dir,
            targets,
            scrape_interval,
            data_dir.to_path_buf(),
            Some(BACKFILL_RETENTION),
        )
        .await
    }

    async fn launch(
        dir: &Path,
        targets: &[String],
        scrape_interval: Duration,
        data: PathBuf,
        retention: Option<&'static str>,
    ) -> anyhow::Result<Prometheus> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating Prometheus directory {}", dir.display()))?;
        std::fs::create_dir_all(&data)
            .with_context(|| format!("creating Prometheus data directory {}", data.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets, scrape_interval)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client for Prometheus")?;
        let mut prometheus = Prometheus {
            addr: free_loopback_port()?,
            config,
            data,
            log: dir.join("prometheus.log"),
            retention,
            child: None,
            http,
        };
        // The port is free when chosen but not reserved: something else may take it before
        // Prometheus binds it. Then try another.
        let mut attempt = 1;
        loop {
            let log_offset = std::fs::metadata(&prometheus.log).map_or(0, |meta| meta.len());
            match prometheus.spawn_and_wait_ready().await {
                Ok(()) => break,
                Err(_)
                    if attempt < START_ATTEMPTS
                        && log_since(&prometheus.log, log_offset)
                            .contains("address already in use") =>
                {
                    tracing::warn!(addr = %prometheus.addr, "port taken meanwhile; trying another");
                    prometheus.addr = free_loopback_port()?;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(prometheus)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address Prometheus listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prometheus's log file (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The TSDB directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The last `lines` lines of Prometheus's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// The process id of the running Prometheus (`setpriv` execs it, so it is Prometheus's
    /// own), or `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (started and not yet exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops Prometheus: SIGTERM, then SIGKILL if it has not exited within 10 s. When this
    /// returns the process is gone and its port refuses connections. Does nothing if it is
    /// not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // The child has not been reaped, so its pid cannot have been reused.
            let pid = child.id().to_string();
            match tokio::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
            {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(%pid, %status, "kill -TERM prometheus failed"),
                Err(err) => tracing::warn!(%pid, error = %err, "running kill -TERM failed"),
            }
            if wait_exit(&mut child, STOP_TIMEOUT).await.is_none() {
                tracing::warn!(%pid, "prometheus ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
                if let Err(err) = child.kill() {
                    tracing::warn!(%pid, error = %err, "killing prometheus failed");
                }
                if wait_exit(&mut child, KILL_TIMEOUT).await.is_none() {
                    tracing::warn!(%pid, "prometheus still not reaped after SIGKILL");
                }
            }
        }
        tracing::debug!(addr = %self.addr, "prometheus stopped");
    }

    /// Stops Prometheus if it is running and starts it again with the same configuration,
    /// port and data directory; returns once it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn_and_wait_ready().await
    }

    /// GETs `/api/v1/<endpoint>` with `params`: the HTTP status and the body.
    async fn api(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/{endpoint}", self.url()))
            .context("building the query URL")?;
        url.query_pairs_mut().extend_pairs(params);
        let what = params.first().map_or("", |(_, v)| *v);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("querying Prometheus at {} for {what:?}", self.addr))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading Prometheus's answer to {what:?}"))?;
        Ok((status, body.to_vec()))
    }

    /// Runs instant query `query` once and returns the resulting samples: the vector's
    /// series, or for a scalar result one sample without labels.
    pub async fn query(&self, query: &str) -> anyhow::Result<Vec<Sample>> {
        let (status, body) = self.api("query", &[("query", query)]).await?;
        parse_query_response(&body).with_context(|| format!("query {query:?} (HTTP {status})"))
    }

    /// Runs range query `query` from `start` to `end` (Unix seconds) every `step` seconds and
    /// returns, for each series of the result, how many of its points are numbers (not NaN).
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> anyhow::Result<Vec<usize>> {
        let (start, end, step) = (format!("{start:.3}"), format!("{end:.3}"), step.to_string());
        let (status, body) = self
            .api(
                "query_range",
                &[
                    ("query", query),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await?;
        parse_range_response(&body)
            .with_context(|| format!("range query {query:?} (HTTP {status})"))
    }

    /// Runs instant query `query` evaluated at `time` (Unix seconds) and returns its samples,
    /// as [`query`](Prometheus::query) does.
    pub async fn query_at(&self, query: &str, time: f64) -> anyhow::Result<Vec<Sample>> {
        let time = format!("{time:.3}");
        let (status, body) = self
            .api("query", &[("query", query), ("time", &time)])
            .await?;
        parse_query_response(&body)
            .with_context(|| format!("query {query:?} at {time} (HTTP {status})"))
    }

    /// Runs range query `query` from `start` to `end` (Unix seconds) every `step` seconds and
    /// returns each series of the result with its points (time in Unix seconds, value; NaN
    /// included).
    pub async fn query_range_points(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> anyhow::Result<Vec<RangeSeries>> {
        let (start, end, step) = (format!("{start:.3}"), format!("{end:.3}"), step.to_string());
        let (status, body) = self
            .api(
                "query_range",
                &[
                    ("query", query),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await?;
        parse_range_points(&body).with_context(|| format!("range query {query:?} (HTTP {status})"))
    }

    /// Polls instant query `query` until it returns at least one sample, and returns the
    /// samples; fails after `deadline` with the last result or error.
    pub async fn wait_for_series(
        &self,
        query: &str,
        deadline: Duration,
    ) -> anyhow::Result<Vec<Sample>> {
        self.wait_until(query, deadline, |samples| !samples.is_empty())
            .await
    }

    /// Polls instant query `query` until `done` accepts its samples, and returns them; fails
    /// after `deadline` with the last result or error.
    pub async fn wait_until(
        &self,
        query: &str,
        deadline: Duration,
        mut done: impl FnMut(&[Sample]) -> bool,
    ) -> anyhow::Result<Vec<Sample>> {
        let until = Instant::now() + deadline;
        let mut last;
        loop {
            match self.query(query).await {
                Ok(samples) if done(&samples) => return Ok(samples),
                Ok(samples) => last = format!("{samples:?}"),
                Err(err) => last = format!("error: {err:#}"),
            }
            if Instant::now() >= until {
                bail!(
                    "query {query:?} did not give the expected result within {deadline:?} \
                     (last: {last})"
                );
            }
            tokio::time::sleep(QUERY_POLL_INTERVAL).await;
        }
    }

    async fn spawn_and_wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", self.log.display()))?;
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--", PROMETHEUS_BIN])
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.data.display()))
            .arg(format!("--web.listen-address={}", self.addr))
            .args([
                "--web.enable-lifecycle",
                // Errors and warnings only; start failures are logged as errors.
                "--log.level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(retention) = self.retention {
            command.arg(format!("--storage.tsdb.retention.time={retention}"));
        }
        let child = spawn_from_long_lived_thread(command)
            .await
            .context("starting prometheus via setpriv")?;
        tracing::debug!(pid = child.id(), addr = %self.addr, "prometheus started");
        self.child = Some(child);

        match self.wait_ready().await {
            Ok(()) => {
                tracing::debug!(addr = %self.addr, elapsed = ?started.elapsed(), "prometheus ready");
                Ok(())
            }
            Err(err) => {
                self.stop().await;
                Err(err.context(format!(
                    "prometheus on {} did not become ready; last lines of {}:\n{}",
                    self.addr,
                    self.log.display(),
                    self.log_tail(LOG_TAIL_LINES)
                )))
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/-/ready", self.url());
        let until = Instant::now() + READY_TIMEOUT;
        let mut last;
        loop {
            if let Some(child) = &mut self.child {
                match child.try_wait() {
                    Ok(Some(status)) => bail!("prometheus exited early ({status})"),
                    Ok(None) => {}
                    Err(err) => bail!("checking whether prometheus is running: {err}"),
                }
            }
            match self
                .http
                .get(&url)
                .timeout(READY_PROBE_TIMEOUT)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("GET /-/ready: HTTP {}", response.status()),
                Err(err) => last = format!("GET /-/ready: {err}"),
            }
            if Instant::now() >= until {
                bail!("not ready after {READY_TIMEOUT:?} (last: {last})");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL is immediate, so the blocking wait is short.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The generated configuration.
fn config_yaml(targets: &[String], scrape_interval: Duration) -> anyhow::Result<String> {
    let millis = scrape_interval.as_millis();
    if millis == 0 {
        bail!("scrape interval {scrape_interval:?} is shorter than a millisecond");
    }
    let interval = format!("{millis}ms");
    // A JSON string is a valid YAML flow scalar, and escapes whatever needs escaping.
    let targets = serde_json::to_string(targets).context("encoding the scrape targets")?;
    Ok(format!(
        "# Generated by the Sluice test harness.\n\
         global:\n  \
           scrape_interval: {interval}\n  \
           scrape_timeout: {interval}\n  \
           evaluation_interval: {interval}\n\
         scrape_configs:\n  \
           - job_name: sluice-test\n    \
             static_configs:\n      \
               - targets: {targets}\n"
    ))
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    listener
        .local_addr()
        .context("reading the address of a free port")
}

/// Polls until `child` exits; `None` if it has not within `limit`.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "waiting for prometheus failed");
                return None;
            }
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What was appended to the log after byte `offset`.
fn log_since(path: &Path, offset: u64) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| {
            let start = usize::try_from(offset).ok()?;
            bytes
                .get(start..)
                .map(|new| String::from_utf8_lossy(new).into_owned())
        })
        .unwrap_or_default()
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

type SpawnRequest = (Command, tokio::sync::oneshot::Sender<io::Result<Child>>);

/// Spawns `command` from a thread that lives until the process exits, so that a
/// `--pdeathsig` set in the child fires when the test process dies, not when the calling
/// thread does.
async fn spawn_from_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<io::Result<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("prometheus-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // If the caller went away, dropping the child kills nothing; kill it
                    // here so it does not linger until the process exits.
                    if let Err(Ok(mut child)) = reply.send(command.spawn()) {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            })
            .map(|_| tx)
    });
    let spawner = match spawner {
        Ok(spawner) => spawner,
        Err(err) => return Err(io::Error::new(err.kind(), format!("spawner thread: {err}"))),
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    spawner
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    data: Option<QueryData>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: Labels,
    value: (f64, String),
}

/// The data of a successful answer of Prometheus's HTTP API; its error otherwise.
fn answer_data(body: &[u8]) -> anyhow::Result<QueryData> {
    let response: ApiResponse = serde_json::from_slice(body).with_context(|| {
        format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        )
    })?;
    if response.status != "success" {
        bail!(
            "Prometheus answered {}: {}: {}",
            response.status,
            response.error_type.as_deref().unwrap_or("?"),
            response.error.as_deref().unwrap_or("?")
        );
    }
    let data = response.data.context("answer without data")?;
    Ok(data)
}

fn parse_query_response(body: &[u8]) -> anyhow::Result<Vec<Sample>> {
    let data = answer_data(body)?;
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> =
                serde_json::from_value(data.result).context("decoding a vector result")?;
            samples
                .into_iter()
                .map(|sample| Ok((sample.metric, parse_value(&sample.value.1)?)))
                .collect()
        }
        "scalar" => {
            let (_, value): (f64, String) =
                serde_json::from_value(data.result).context("decoding a scalar result")?;
            Ok(vec![(Labels::new(), parse_value(&value)?)])
        }
        other => bail!("expected a vector or scalar result, got a {other}"),
    }
}

/// The numeric points of each series of a range query's answer.
fn parse_range_response(body: &[u8]) -> anyhow::Result<Vec<usize>> {
    let data = answer_data(body)?;
    if data.result_type != "matrix" {
        bail!("expected a matrix result, got a {}", data.result_type);
    }
    let series: Vec<MatrixSeries> =
        serde_json::from_value(data.result).context("decoding a matrix result")?;
    Ok(series
        .iter()
        .map(|s| {
            s.values
                .iter()
                .filter(|(_, v)| parse_value(v).is_ok_and(|v| !v.is_nan()))
                .count()
        })
        .collect())
}

/// Each series of a range query's answer with its points.
fn parse_range_points(body: &[u8]) -> anyhow::Result<Vec<RangeSeries>> {
    let data = answer_data(body)?;
    if data.result_type != "matrix" {
        bail!("expected a matrix result, got a {}", data.result_type);
    }
    let series: Vec<MatrixSeries> =
        serde_json::from_value(data.result).context("decoding a matrix result")?;
    series
        .into_iter()
        .map(|s| {
            let points = s
                .values
                .iter()
                .map(|(t, v)| Ok((*t, parse_value(v)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((s.metric, points))
        })
        .collect()
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: Labels,
    values: Vec<(f64, String)>,
}

/// Prometheus writes `NaN`, `+Inf` and `-Inf`, which Rust's parser accepts too.
fn parse_value(value: &str) -> anyhow::Result<f64> {
    value
        .parse()
        .with_context(|| format!("sample value {value:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vector_scalar_and_errors() -> anyhow::Result<()> {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"x","a":"b"},"value":[1700000000.5,"NaN"]},
            {"metric":{},"value":[1700000000.5,"+Inf"]},
            {"metric":{},"value":[1700000000.5,"-1.5e3"]}]}}"#;
        let samples = parse_query_response(vector)?;
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].0.get("a").map(String::as_str), Some("b"));
        assert!(samples[0].1.is_nan());
        assert_eq!(samples[1].1, f64::INFINITY);
        assert_eq!(samples[2].1, -1500.0);

        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.8"]}}"#;
        assert_eq!(parse_query_response(scalar)?, vec![(Labels::new(), 0.8)]);

        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let err = parse_query_response(error)
            .err()
            .context("expected an error")?;
        assert!(
            format!("{err:#}").contains("bad_data: parse error"),
            "{err:#}"
        );
        Ok(())
    }

    #[test]
    fn parses_range_points() -> anyhow::Result<()> {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"b"},"values":[[1700000060,"0.01"],[1700000120,"NaN"]]}]}}"#;
        let series = parse_range_points(matrix)?;
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].0.get("a").map(String::as_str), Some("b"));
        assert_eq!(series[0].1[0], (1_700_000_060.0, 0.01));
        assert!(series[0].1[1].1.is_nan());
        assert_eq!(parse_range_response(matrix)?, vec![1]);
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_range_points(vector).is_err());
        Ok(())
    }

    #[test]
    fn log_since_reads_only_new_lines() -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!("promharness-log-{}", std::process::id()));
        std::fs::write(&path, "old line\nnew line\n")?;
        let since = log_since(&path, 9);
        let tail = log_tail(&path, 1);
        std::fs::remove_file(&path)?;
        assert_eq!(since, "new line\n");
        assert_eq!(tail, "new line");
        assert_eq!(log_since(&path, 0), "");
        Ok(())
    }

    #[test]
    fn config_quotes_targets() -> anyhow::Result<()> {
        let yaml = config_yaml(&["127.0.0.1:1".into()], Duration::from_millis(1500))?;
        assert!(yaml.contains("scrape_interval: 1500ms"), "{yaml}");
        assert!(yaml.contains(r#"- targets: ["127.0.0.1:1"]"#), "{yaml}");
        assert!(config_yaml(&[], Duration::from_micros(10)).is_err());
        Ok(())
    }
}
