//! `sluice`: the Sluice controller.
//!
//!   sluice run [--namespace NS]   reconcile Rollouts (all namespaces by default)
//!   sluice crds                   print the CRDs, for `kubectl apply --server-side -f -`

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::rollout::controller::{self, Options};
use sluice::telemetry::{self, Metrics};
use std::sync::Arc;

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
    Run {
        /// Watch one namespace only.
        #[arg(long, env = "SLUICE_NAMESPACE")]
        namespace: Option<String>,
        /// Restarts of a crash-looping container of a new revision before its release is aborted.
        #[arg(long, default_value_t = sluice::rollout::decide::DEFAULT_RESTART_THRESHOLD)]
        restart_threshold: i32,
        /// Reconcile without taking the leader Lease (only for a single instance).
        #[arg(long)]
        no_leader_elect: bool,
        /// Namespace of the leader Lease (default: --namespace, else $POD_NAMESPACE, else default).
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
        #[arg(long, default_value_t = sluice::runtime::throttle::DEFAULT_QPS)]
        qps: f64,
        /// Requests to the Kubernetes API that may go at once above --qps.
        #[arg(long, default_value_t = sluice::runtime::throttle::DEFAULT_BURST)]
        burst: u32,
        /// Rollouts reconciled at the same time (0: no limit).
        #[arg(long, default_value_t = controller::DEFAULT_CONCURRENCY)]
        concurrency: u16,
        /// Seconds between reconciles of a Rollout with nothing scheduled, spread by up to a
        /// fifth either way (for tests).
        #[arg(long, hide = true, default_value_t = controller::DEFAULT_REQUEUE.as_secs())]
        requeue_seconds: u64,
    },
    /// Print the CustomResourceDefinitions Sluice serves, as YAML.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Crds => sluice::cli::print_crds("sluice"),
        Cmd::Run {
            namespace,
            restart_threshold,
            no_leader_elect,
            lease_namespace,
            lease_name,
            identity,
            metrics_addr,
            qps,
            burst,
            concurrency,
            requeue_seconds,
        } => {
            tracing_subscriber::fmt()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,kube=warn".into()),
                )
                .init();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sluice: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async move {
                let metrics = Arc::new(Metrics::new());
                let client = match sluice::runtime::throttle::client(qps, burst, metrics.clone()).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("sluice: cannot reach the cluster: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let shutdown = async {
                    let term = async {
                        match tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        ) {
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
                };
                let opts = Options {
                    namespace: namespace.clone(),
                    restart_threshold,
                    concurrency,
                    requeue: std::time::Duration::from_secs(requeue_seconds.max(1)),
                };
                let server = metrics.clone();
                let http = tokio::spawn(async move {
                    if let Err(e) = telemetry::serve(metrics_addr, server).await {
                        tracing::error!(%metrics_addr, error = %e, "cannot serve /metrics, /healthz, /readyz");
                    }
                });
                if no_leader_elect {
                    metrics.set_ready(true);
                    controller::run(client, opts, metrics, shutdown).await;
                    http.abort();
                    return ExitCode::SUCCESS;
                }
                let lease_ns = lease_namespace
                    .or(namespace)
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "default".into());
                let identity = identity.unwrap_or_else(|| {
                    let host =
                        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    format!("{}-{}", host.trim(), std::process::id())
                });
                let worker_client = client.clone();
                let worker_metrics = metrics.clone();
                let result = sluice::leader::run_as_leader(
                    client,
                    &lease_ns,
                    &lease_name,
                    &identity,
                    shutdown,
                    move |stop| async move {
                        worker_metrics.set_ready(true);
                        controller::run(worker_client, opts, worker_metrics.clone(), async move {
                            let _ = stop.await;
                        })
                        .await;
                        worker_metrics.set_ready(false);
                    },
                )
                .await;
                http.abort();
                match result {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("sluice: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}
