//! `sluice`: the Sluice controller.
//!
//! The reconcilers for Rollouts and AnalysisRuns are being built (see the README's status
//! section); today the binary prints the CRDs it serves, so they can be installed:
//! `sluice crds | kubectl apply --server-side -f -`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Print the CustomResourceDefinitions Sluice serves, as YAML.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Crds => sluice::cli::print_crds("sluice"),
    }
}
