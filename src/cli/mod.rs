//! Pieces shared by the `sluice` and `kubectl-sluice` command lines.

pub mod backtest;
pub mod cluster;
pub mod commands;
pub mod complete;
pub mod control;
pub mod dashboard;
pub mod edit;
pub mod exercise;
pub mod lint;
pub mod migrate;
pub mod tree;
pub mod wait;

use std::io::Write;
use std::process::ExitCode;

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
pub fn write_stdout(prog: &str, text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every CRD as one YAML stream.
pub fn print_crds(prog: &str) -> ExitCode {
    match crate::api::crds::render_all() {
        Ok(yaml) => write_stdout(prog, &yaml),
        Err(e) => {
            eprintln!("{prog}: cannot render the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}
