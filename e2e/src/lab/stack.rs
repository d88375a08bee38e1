//! The stack every lab runs on: one control plane with simulated Nodes, the Sluice
//! controller watching every namespace, and the real `kubectl` with the `kubectl-sluice`
//! plugin on its `PATH`, as a learner runs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::promtext;
use crate::shop::Clock;
use crate::stage::{self, Cluster};

/// How long one kubectl command may take.
const KUBECTL_LIMIT: Duration = Duration::from_secs(60);
/// How long the controller may take to answer `/readyz`.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// What a kubectl command printed and how it ended.
#[derive(Clone, Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr together, as a terminal shows them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The real kubectl, with the plugin on the `PATH` and the lab cluster's kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub bin_dir: PathBuf,
    pub plugin_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// `PATH` with kubectl's and the plugin's directories first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}:{}",
            self.bin_dir.display(),
            self.plugin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The two lines a learner pastes into another terminal to use this cluster.
    pub fn exports(&self) -> String {
        format!(
            "export KUBECONFIG={}\nexport PATH={}:{}:$PATH",
            self.kubeconfig.display(),
            self.bin_dir.display(),
            self.plugin_dir.display()
        )
    }

    /// Runs `kubectl ARGS` to its end.
    pub async fn run(&self, args: &[String]) -> anyhow::Result<Out> {
        let line = args.join(" ");
        let out = tokio::time::timeout(
            KUBECTL_LIMIT,
            tokio::process::Command::new(self.bin_dir.join("kubectl"))
                .args(args)
                .env("PATH", self.path_env())
                .env("KUBECONFIG", &self.kubeconfig)
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("kubectl {line} did not end within {KUBECTL_LIMIT:?}"))?
        .with_context(|| format!("running kubectl {line}"))?;
        Ok(Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The control plane, the controller and kubectl, shared by the labs of one run.
pub struct Stack {
    // Fields drop in order: the controller before the cluster it watches.
    controller: tokio::process::Child,
    pub cluster: Cluster,
    pub kubectl: Kubectl,
    /// Where the controller serves `/metrics`.
    pub metrics_addr: String,
    pub state: PathBuf,
    pub controller_log: PathBuf,
    http: reqwest::Client,
}

/// How to start the stack.
pub struct StackOptions<'a> {
    pub sluice: &'a Path,
    pub state_dir: &'a Path,
    /// More arguments for `sluice run`.
    pub controller_args: &'a [String],
}

impl Stack {
    pub async fn start(opts: &StackOptions<'_>, clock: &Clock) -> anyhow::Result<Stack> {
        let plugin_dir = opts
            .sluice
            .parent()
            .context("the sluice binary's directory")?
            .to_path_buf();
        if !plugin_dir.join("kubectl-sluice").is_file() {
            bail!(
                "{} is missing: build it with `cargo build --workspace --bins`",
                plugin_dir.join("kubectl-sluice").display()
            );
        }
        let _ = std::fs::remove_dir_all(opts.state_dir);
        std::fs::create_dir_all(opts.state_dir)
            .with_context(|| format!("creating {}", opts.state_dir.display()))?;
        let state = std::fs::canonicalize(opts.state_dir)?;
        let cluster = Cluster::start(&state.join("cluster")).await?;
        println!(
            "[{:6.1}s] control plane ready: {} (3 simulated Nodes; Istio CRDs)",
            clock.now(),
            cluster.cp.api_url
        );
        let metrics_addr = stage::free_local_addr()?;
        let controller_log = state.join("sluice.log");
        let controller = stage::Controller {
            sluice: opts.sluice,
            kubeconfig: &cluster.cp.kubeconfig,
            namespaces: &[],
            metrics_addr: &metrics_addr,
            extra_args: opts.controller_args,
            log: &controller_log,
        }
        .spawn()?;
        let kubectl = Kubectl {
            bin_dir: cluster.cp.bin_dir.clone(),
            plugin_dir: std::fs::canonicalize(&plugin_dir)?,
            kubeconfig: cluster.cp.kubeconfig.clone(),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let stack = Stack {
            controller,
            cluster,
            kubectl,
            metrics_addr,
            state,
            controller_log,
            http,
        };
        stack.wait_ready().await?;
        println!(
            "[{:6.1}s] Sluice controller running (every namespace); log: {}",
            clock.now(),
            stack.controller_log.display()
        );
        Ok(stack)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.metrics_addr);
        crate::wait_for("the Sluice controller's /readyz", READY_LIMIT, || async {
            let ok = self.http.get(&url).send().await?.status().is_success();
            Ok(ok.then_some(()))
        })
        .await
        .with_context(|| format!("see {}", self.controller_log.display()))
    }

    /// The controller's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("reading {url}"))?
            .text()
            .await?;
        Ok(text)
    }

    /// `metric`'s samples for Rollout `shop` in `ns`, by the value of label `by`.
    pub async fn counters(
        &self,
        metric: &str,
        ns: &str,
        by: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
        let text = self.metrics().await?;
        Ok(promtext::samples(&text, metric)
            .into_iter()
            .filter(|(l, _)| {
                l.get("namespace").map(String::as_str) == Some(ns)
                    && l.get("rollout").map(String::as_str) == Some(crate::shop::NAME)
            })
            .filter_map(|(mut l, v)| l.remove(by).map(|k| (k, v)))
            .collect())
    }

    pub async fn stop(mut self) {
        let _ = self.controller.kill().await;
        let Cluster {
            sim,
            client,
            mut cp,
        } = self.cluster;
        // What watches the API server goes first.
        drop(sim);
        drop(client);
        cp.stop();
    }
}
