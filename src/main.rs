//! `sluice`: the Sluice controller.
//!
//!   sluice run [--namespace NS]   reconcile Rollouts (all namespaces by default)
//!   sluice crds                   print the CRDs, for `kubectl apply --server-side -f -`

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::rollout::controller::{self, Options};

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
                let client = match kube::Client::try_default().await {
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
                controller::run(
                    client,
                    Options {
                        namespace,
                        restart_threshold,
                    },
                    shutdown,
                )
                .await;
                ExitCode::SUCCESS
            })
        }
    }
}
