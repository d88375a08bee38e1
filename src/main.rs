//! `sluice`: the Sluice controller.
//!
//!   sluice run [--namespace NS]...  reconcile Rollouts (all namespaces by default)
//!   sluice crds                   print the CRDs, for `kubectl apply --server-side -f -`

use std::process::ExitCode;

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use kube::Client;
use sluice::rollout::controller::{self, Options};
use sluice::runtime::throttle;
use sluice::telemetry::{self, Metrics};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery controller for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions Sluice serves, as YAML.
    Crds,
}

#[derive(Args)]
struct RunArgs {
    /// Watch this namespace only; repeat it (or separate names by commas) for several, each
    /// watched apart (RBAC with Roles in each). Default: every namespace.
    #[arg(long, env = "SLUICE_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Restarts of a crash-looping container of a new revision before its release is aborted.
    #[arg(long, default_value_t = sluice::rollout::decide::DEFAULT_RESTART_THRESHOLD)]
    restart_threshold: i32,
    /// Reconcile without taking the leader Lease (only for a single instance).
    #[arg(long)]
    no_leader_elect: bool,
    /// Namespace of the leader Lease (default: the first --namespace, else $POD_NAMESPACE, else
    /// default).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-controller")]
    lease_name: String,
    /// This instance's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Requests per second to the Kubernetes API, on average (0: no limit).
    #[arg(long, default_value_t = throttle::DEFAULT_QPS)]
    qps: f64,
    /// Requests to the Kubernetes API that may go at once above --qps.
    #[arg(long, default_value_t = throttle::DEFAULT_BURST)]
    burst: u32,
    /// Do not read cluster-scoped kinds (CustomResourceDefinitions, ClusterAnalysisTemplates),
    /// for RBAC with Roles only (the chart's `rbac.scope=namespace`): every router kind is
    /// watched whether served or not, and a Rollout naming a ClusterAnalysisTemplate gets
    /// InvalidSpec.
    #[arg(long)]
    no_cluster_reads: bool,
    /// Send notifications as the ConfigMap NAMESPACE/NAME says (and read `$key` values from
    /// the Secret of the same name there); see docs/notifications.md. Default: none sent.
    #[arg(long, env = "SLUICE_NOTIFICATIONS", value_name = "NAMESPACE/NAME")]
    notifications: Option<String>,
    /// How the caches read their first lists: streamed from the API server's watch cache
    /// (`sendInitialEvents`, Kubernetes' WatchList), paged, or auto (streamed when the API
    /// server can, asked once at start).
    #[arg(long, env = "SLUICE_INITIAL_LISTS", value_enum, default_value_t = sluice::runtime::lists::InitialLists::Auto)]
    initial_lists: sluice::runtime::lists::InitialLists,
    /// Rollouts reconciled at the same time (0: no limit).
    #[arg(long, default_value_t = controller::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Seconds between reconciles of a Rollout with nothing scheduled, spread by up to a
    /// fifth either way (for tests).
    #[arg(long, hide = true, default_value_t = controller::DEFAULT_REQUEUE.as_secs())]
    requeue_seconds: u64,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Crds => sluice::cli::print_crds("sluice"),
        Cmd::Run(args) => {
            tracing_subscriber::fmt()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(args)),
                Err(e) => {
                    eprintln!("sluice: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Serves /metrics, /healthz and /readyz and reconciles (while leading, unless told not to
/// elect a leader) until SIGTERM or Ctrl-C.
async fn run(args: RunArgs) -> ExitCode {
    let namespaces = match watched(&args.namespace) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let notifications = match args
        .notifications
        .as_deref()
        .map(sluice::notify::Source::parse)
        .transpose()
    {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Arc::new(Metrics::new());
    let client = match throttle::client(args.qps, args.burst, metrics.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: cannot reach the cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        namespaces,
        restart_threshold: args.restart_threshold,
        concurrency: args.concurrency,
        requeue: std::time::Duration::from_secs(args.requeue_seconds.max(1)),
        cluster_reads: !args.no_cluster_reads,
        notifications,
        initial_lists: args.initial_lists,
    };
    let (addr, server) = (args.metrics_addr, metrics.clone());
    let http = tokio::spawn(async move {
        if let Err(e) = telemetry::serve(addr, server).await {
            tracing::error!(metrics_addr = %addr, error = %e, "cannot serve /metrics, /healthz, /readyz");
        }
    });
    metrics.set_ready(true);
    let result = if args.no_leader_elect {
        metrics.set_leading(true);
        controller::run(client, opts, metrics, shutdown()).await;
        Ok(())
    } else {
        lead(client, &args, opts, metrics).await
    };
    http.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The namespaces named, each once and none empty (`--namespace a,,a` is `a`); a name that
/// cannot be a namespace's (a DNS label: lowercase letters, digits and `-`, at most 63) is
/// refused before anything is watched.
fn watched(named: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for n in named.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let label = n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !label {
            return Err(format!(
                "--namespace {n:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            ));
        }
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// Reconciles while this instance holds the leader Lease.
async fn lead(
    client: Client,
    args: &RunArgs,
    opts: Options,
    metrics: Arc<Metrics>,
) -> Result<(), sluice::leader::LeaderError> {
    let lease_ns = args
        .lease_namespace
        .clone()
        .or(opts.namespaces.first().cloned())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let worker_client = client.clone();
    sluice::leader::run_as_leader(
        client,
        &lease_ns,
        &args.lease_name,
        &identity,
        shutdown(),
        move |stop| async move {
            metrics.set_leading(true);
            controller::run(worker_client, opts, metrics.clone(), async move {
                let _ = stop.await;
            })
            .await;
            metrics.set_leading(false);
        },
    )
    .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn namespaces_are_named_once_and_must_be_namespace_names() {
        assert_eq!(watched(&[]), Ok(vec![]));
        assert_eq!(
            watched(&names(&["shop", " pay ", "", "shop"])),
            Ok(names(&["shop", "pay"]))
        );
        for bad in ["Shop", "team_a", "-x", "x-", &"a".repeat(64)] {
            let err = watched(&names(&["ok", bad])).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }
}
