//! `kubectl sluice`: the kubectl plugin for Sluice. Put `kubectl-sluice` on the PATH and run
//! `kubectl sluice ...`. Every control is a patch of the Rollout's status; `spec` is never
//! written.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use sluice::api::constants::FIELD_MANAGER_CLI;
use sluice::api::rollout::Rollout;
use sluice::cli::control::{Control, describe, status_patch};

#[derive(Parser)]
#[command(
    name = "kubectl sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Inspect and steer Sluice rollouts"
)]
struct Cli {
    /// Namespace of the Rollout (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a Rollout: phase, step, weights, revisions, replicas, pauses, conditions.
    Get { name: String },
    /// Lift a pause, or go to the next step; with --full, skip every remaining step.
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
    },
    /// Move all traffic back to stable now; the new revision is scaled down after its delay.
    Abort { name: String },
    /// Start an aborted release again from its first step.
    Retry { name: String },
    /// Hold a release where it stands.
    Pause { name: String },
    /// Lift a pause made with `pause`.
    Resume { name: String },
    /// Print the plugin's version and the API version it speaks.
    Version,
    /// Print the CustomResourceDefinitions, for `kubectl sluice crds | kubectl apply --server-side -f -`.
    Crds,
    /// Serve a live web page of the Rollouts in scope, with promote/abort/retry/pause/resume.
    Dashboard(sluice::cli::dashboard::DashboardArgs),
}

const PROG: &str = "kubectl sluice";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, control) = match cli.command {
        Cmd::Version => {
            return sluice::cli::write_stdout(
                PROG,
                &format!(
                    "kubectl-sluice {} ({}/{})\n",
                    env!("CARGO_PKG_VERSION"),
                    sluice::api::constants::GROUP,
                    sluice::api::constants::VERSION
                ),
            );
        }
        Cmd::Crds => return sluice::cli::print_crds(PROG),
        Cmd::Dashboard(args) => return sluice::cli::dashboard::main(PROG, args, cli.namespace),
        Cmd::Get { name } => (name, None),
        Cmd::Promote { name, full } => (
            name,
            Some(if full {
                Control::PromoteFull
            } else {
                Control::Promote
            }),
        ),
        Cmd::Abort { name } => (name, Some(Control::Abort)),
        Cmd::Retry { name } => (name, Some(Control::Retry)),
        Cmd::Pause { name } => (name, Some(Control::Pause)),
        Cmd::Resume { name } => (name, Some(Control::Resume)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.namespace, &name, control)) {
        Ok(text) => sluice::cli::write_stdout(PROG, &text),
        Err(e) => {
            eprintln!("{PROG}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    namespace: Option<String>,
    name: &str,
    control: Option<Control>,
) -> Result<String, String> {
    let limit = Duration::from_secs(15);
    let client = tokio::time::timeout(limit, Client::try_default())
        .await
        .map_err(|_| "no answer from the cluster within 15 s".to_string())?
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<Rollout> = Api::namespaced(client, &ns);
    // A control written by someone else in between makes the patch conflict: read again.
    for _ in 0..3 {
        let ro = tokio::time::timeout(limit, api.get_opt(name))
            .await
            .map_err(|_| "no answer from the cluster within 15 s".to_string())?
            .map_err(|e| format!("reading rollout {name}: {e}"))?
            .ok_or_else(|| format!("rollout {name:?} not found in namespace {ns:?}"))?;
        let Some(control) = control else {
            return Ok(describe(&ro));
        };
        let status = status_patch(&ro, control, Timestamp::now()).map_err(|e| e.to_string())?;
        let patch = json!({"metadata": {"resourceVersion": ro.metadata.resource_version}, "status": status});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER_CLI.into()),
            ..Default::default()
        };
        match tokio::time::timeout(
            limit,
            api.patch_status(name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Err(_) => return Err("no answer from the cluster within 15 s".into()),
            Ok(Ok(_)) => {
                let done = match control {
                    Control::Promote => "promoted",
                    Control::PromoteFull => "promoted to the end",
                    Control::Abort => "aborted: all traffic back to stable",
                    Control::Retry => "retrying from the first step",
                    Control::Pause => "paused",
                    Control::Resume => "resumed",
                };
                return Ok(format!("rollout {name} {done}\n"));
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => continue,
            Ok(Err(e)) => return Err(format!("updating rollout {name}: {e}")),
        }
    }
    Err(format!("rollout {name} kept changing; try again"))
}
