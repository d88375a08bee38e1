//! The stage the demo and the labs run on: a local control plane with simulated Nodes,
//! Sluice's CRDs and Istio's and Gateway API's, and the Sluice controller as a process.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use kube::Client;

use crate::controlplane::{self, ControlPlane, Options};
use crate::nodesim::NodeSim;
use crate::{harness, routers};

/// A control plane with simulated Nodes and every CRD the shop needs.
pub struct Cluster {
    // Fields drop in order: the simulator (which watches the API server) before the control
    // plane.
    pub sim: NodeSim,
    pub client: Client,
    pub cp: ControlPlane,
}

impl Cluster {
    /// Starts a control plane whose state (data, certificates, logs) goes to `state` (emptied
    /// first), [`harness::NODES`] simulated Nodes, and installs the CRDs.
    pub async fn start(state: &Path) -> anyhow::Result<Cluster> {
        let bin_dir = tokio::task::spawn_blocking(controlplane::binaries).await??;
        let _ = std::fs::remove_dir_all(state);
        std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
        let state = std::fs::canonicalize(state)?;
        let cp = ControlPlane::start(Options {
            bin_dir: Some(bin_dir),
            state_dir: Some(state),
            etcd: None,
            audit: false,
            apiserver_args: Vec::new(),
        })
        .await?;
        let client = cp.client().await?;
        let sim = NodeSim::start(client.clone(), "sim-node", harness::NODES).await?;
        harness::install_crds(&client, &harness::crds_dir()).await?;
        routers::install_router_crds(&client).await?;
        Ok(Cluster { sim, client, cp })
    }
}

/// `127.0.0.1:PORT` with a port free now (not reserved: for a process started right away).
pub fn free_local_addr() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .context("finding a free port on 127.0.0.1")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

/// How to start the Sluice controller.
pub struct Controller<'a> {
    /// The `sluice` binary.
    pub sluice: &'a Path,
    pub kubeconfig: &'a Path,
    /// The namespaces it watches; none: every namespace.
    pub namespaces: &'a [&'a str],
    /// Where it serves `/metrics`.
    pub metrics_addr: &'a str,
    /// More arguments for `sluice run`.
    pub extra_args: &'a [String],
    /// Its log (stdout and stderr).
    pub log: &'a Path,
}

impl Controller<'_> {
    /// Starts `sluice run` without leader election; the process is killed when the returned
    /// child is dropped.
    pub fn spawn(&self) -> anyhow::Result<tokio::process::Child> {
        let log = std::fs::File::create(self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let mut cmd = tokio::process::Command::new(self.sluice);
        cmd.args([
            "run",
            "--no-leader-elect",
            "--metrics-addr",
            self.metrics_addr,
        ]);
        for ns in self.namespaces {
            cmd.args(["--namespace", ns]);
        }
        cmd.args(self.extra_args)
            .env("KUBECONFIG", self.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        cmd.spawn()
            .with_context(|| format!("starting {}", self.sluice.display()))
    }
}
