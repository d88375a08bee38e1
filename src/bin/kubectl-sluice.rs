//! `kubectl sluice`: the kubectl plugin for Sluice. Put `kubectl-sluice` on the PATH and run
//! `kubectl sluice ...`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Inspect and steer Sluice rollouts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the plugin's version and the API version it speaks.
    Version,
    /// Print the CustomResourceDefinitions, for `kubectl sluice crds | kubectl apply --server-side -f -`.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Version => sluice::cli::write_stdout(
            "kubectl sluice",
            &format!(
                "kubectl-sluice {} ({}/{})\n",
                env!("CARGO_PKG_VERSION"),
                sluice::api::constants::GROUP,
                sluice::api::constants::VERSION
            ),
        ),
        Cmd::Crds => sluice::cli::print_crds("kubectl sluice"),
    }
}
