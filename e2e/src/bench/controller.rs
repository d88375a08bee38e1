//! The controller under measurement, as a child process: started as an ordinary user (the
//! ServiceAccount kubeconfig the benchmark made for it), stopped with SIGTERM as a pod is, and
//! read through its own metrics endpoint (reconcile counts and latency) and `/proc` (memory,
//! CPU).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::probe::{self, Histogram, ProcStats};
use super::workload::Flavour;

/// The Lease namespace and the controllers' own namespace.
pub const SYSTEM_NAMESPACE: &str = "bench-system";

/// A running controller.
pub struct Controller {
    pub flavour: Flavour,
    child: Child,
    pub log: PathBuf,
    pub metrics_url: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How each flavour is started.
pub struct Binaries {
    pub sluice: PathBuf,
    /// The directory `e2e/argo/build.sh` printed (holds `rollouts-controller`).
    pub argo_dir: Option<PathBuf>,
}

impl Controller {
    /// Starts `flavour`'s controller as the user of `kubeconfig`, logging to `log`.
    pub fn start(
        flavour: Flavour,
        bins: &Binaries,
        kubeconfig: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let metrics = free_port()?;
        let kc = kubeconfig.display().to_string();
        let (program, args, metrics_url): (PathBuf, Vec<String>, String) = match flavour {
            Flavour::Sluice => (
                bins.sluice.clone(),
                vec![
                    "run".into(),
                    format!("--metrics-addr=127.0.0.1:{metrics}"),
                    format!("--lease-namespace={SYSTEM_NAMESPACE}"),
                    "--identity=bench".into(),
                ],
                format!("http://127.0.0.1:{metrics}/metrics"),
            ),
            Flavour::Argo => {
                let dir = bins
                    .argo_dir
                    .as_ref()
                    .context("Argo Rollouts' controller was not built")?;
                let healthz = free_port()?;
                // Its defaults but the ports (see `crate::argo`): leader election on, 10
                // Rollout workers, 40 requests/s with a burst of 80 for each of its clients,
                // logs at info.
                (
                    dir.join(crate::argo::BINARY),
                    vec![
                        format!("--kubeconfig={kc}"),
                        format!("--metricsPort={metrics}"),
                        format!("--healthzPort={healthz}"),
                    ],
                    format!("http://127.0.0.1:{metrics}/metrics"),
                )
            }
        };
        let file = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let err = file.try_clone()?;
        let child = Command::new("setpriv")
            .arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(&program)
            .args(&args)
            .env("KUBECONFIG", &kc)
            .env("POD_NAMESPACE", SYSTEM_NAMESPACE)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Controller {
            flavour,
            child,
            log: log.to_path_buf(),
            metrics_url,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Memory and CPU now; an error (with the log's end) when the process has exited.
    pub fn stats(&mut self) -> anyhow::Result<ProcStats> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ends:\n{}",
                self.flavour.title(),
                crate::controlplane::tail(&self.log, 20)
            );
        }
        probe::proc_stats(self.pid()).context("reading /proc")
    }

    /// Stops it as Kubernetes stops a pod: SIGTERM, then SIGKILL after 30 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Its metrics as text.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let r = http
            .get(&self.metrics_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Ok(r.error_for_status()?.text().await?)
    }

    /// Waits until its metrics endpoint answers.
    pub async fn wait_serving(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.stats()?;
            if self.metrics(http).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} served no metrics within 120 s; its log ends:\n{}",
                    self.flavour.title(),
                    crate::controlplane::tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reconciles of Rollouts so far and their latency, from its own metrics.
    pub async fn reconciles(&self, http: &reqwest::Client) -> anyhow::Result<Reconciles> {
        let text = self.metrics(http).await?;
        Ok(Reconciles::read(self.flavour, &text))
    }
}

/// A controller's count of Rollout reconciles and their latency.
#[derive(Clone, Debug, Default)]
pub struct Reconciles {
    pub count: f64,
    pub latency: Histogram,
}

impl Reconciles {
    /// Read from `flavour`'s metrics. Sluice: `sluice_reconciles_total` and the
    /// `sluice_reconcile_duration_seconds` histogram. Argo Rollouts: the count of its
    /// `rollout_reconcile` histogram, and for latency its Rollout work queue's
    /// `workqueue_work_duration_seconds{name="Rollouts"}` (buckets from 1e-8 s; its
    /// `rollout_reconcile` buckets start at 10 ms).
    pub fn read(flavour: Flavour, text: &str) -> Self {
        match flavour {
            Flavour::Sluice => Reconciles {
                count: probe::total(text, "sluice_reconciles_total"),
                latency: Histogram::read(text, "sluice_reconcile_duration_seconds", None),
            },
            Flavour::Argo => Reconciles {
                count: probe::total(text, "rollout_reconcile_count"),
                latency: Histogram::read(
                    text,
                    "workqueue_work_duration_seconds",
                    Some(("name", "Rollouts")),
                ),
            },
        }
    }

    pub fn since(&self, earlier: &Reconciles) -> Reconciles {
        Reconciles {
            count: (self.count - earlier.count).max(0.0),
            latency: self.latency.since(&earlier.latency),
        }
    }
}
