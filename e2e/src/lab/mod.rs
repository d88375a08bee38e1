//! Labs for learners (`sluice-e2e lab SCENARIO`, `make lab SCENARIO=...`): each puts a
//! faulty release on the local stack, tells the learner the situation with the `kubectl` and
//! `kubectl sluice` commands to try, waits for the learner (or for Sluice) to act, checks the
//! end state against deadlines, and explains what happened and why with the figures it read.
//!
//! `--scripted` plays the learner's part (the diagnosis commands through the real kubectl,
//! `kubectl sluice abort`, bringing Prometheus back) and fails like a test when the end
//! state is not the expected one. `lab all` runs every lab on one stack, each in a namespace
//! of its own (`lab-<name>`).
//!
//! The guides are in `docs/labs/`.

mod app;
mod auto;
mod check;
mod facts;
mod learner;
mod manual;
mod prometheus_down;
mod runs;
mod stack;
mod world;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::shop::{Clock, say};
use stack::{Stack, StackOptions};

/// A lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lab {
    Crashloop,
    ErrorRate,
    Latency,
    ImagePull,
    Stuck,
    PrometheusDown,
    ManualRollback,
}

impl Lab {
    pub const ALL: [Lab; 7] = [
        Lab::Crashloop,
        Lab::ErrorRate,
        Lab::Latency,
        Lab::ImagePull,
        Lab::Stuck,
        Lab::PrometheusDown,
        Lab::ManualRollback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Lab::Crashloop => "crashloop",
            Lab::ErrorRate => "error-rate",
            Lab::Latency => "latency",
            Lab::ImagePull => "image-pull",
            Lab::Stuck => "stuck",
            Lab::PrometheusDown => "prometheus-down",
            Lab::ManualRollback => "manual-rollback",
        }
    }

    /// One line for `lab list`.
    pub fn summary(self) -> &'static str {
        match self {
            Lab::Crashloop => {
                "the new pods crash on start (CrashLoopBackOff); diagnose them while Sluice rolls back"
            }
            Lab::ErrorRate => {
                "the new version fails 20% of its requests; Sluice's analysis catches it"
            }
            Lab::Latency => "the new version answers in 400 ms instead of 10; analysis catches it",
            Lab::ImagePull => {
                "the new image cannot be pulled (ImagePullBackOff); diagnose it while Sluice rolls back"
            }
            Lab::Stuck => {
                "the new pods never become ready; Sluice reports the progress deadline, you roll back"
            }
            Lab::PrometheusDown => {
                "Prometheus stops mid-analysis; Sluice pauses instead of deciding, you bring it back"
            }
            Lab::ManualRollback => {
                "a bad release with no analysis waits at 25%; you notice and roll it back by hand"
            }
        }
    }

    pub fn parse(s: &str) -> Option<Lab> {
        Lab::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The namespace the lab runs in.
    pub fn namespace(self) -> String {
        format!("lab-{}", self.name())
    }
}

/// What `sluice-e2e lab ARG` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    List,
    Labs(Vec<Lab>),
}

/// `list`, `all`, a lab's name, or names separated by commas.
pub fn select(arg: &str) -> anyhow::Result<Selection> {
    match arg {
        "list" => return Ok(Selection::List),
        "all" => return Ok(Selection::Labs(Lab::ALL.to_vec())),
        _ => {}
    }
    let mut labs = Vec::new();
    for name in arg.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Lab::parse(name) {
            Some(l) if !labs.contains(&l) => labs.push(l),
            Some(_) => {}
            None => bail!(
                "no lab {name:?}; the labs: {} (or list, all)",
                Lab::ALL.map(Lab::name).join(", ")
            ),
        }
    }
    if labs.is_empty() {
        bail!("name a lab (sluice-e2e lab list shows them)");
    }
    Ok(Selection::Labs(labs))
}

/// The lines of `lab list`.
pub fn list() -> String {
    Lab::ALL
        .iter()
        .map(|l| format!("{:<16} {}\n", l.name(), l.summary()))
        .collect()
}

/// How the labs run.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub labs: Vec<Lab>,
    /// Play the learner's part and fail like a test.
    pub scripted: bool,
    /// The `sluice` binary (`kubectl-sluice` is looked for beside it).
    pub sluice: PathBuf,
    pub state_dir: PathBuf,
    /// How long an interactive lab waits for the learner.
    pub time_limit: Duration,
    /// Keep the stack running after the labs, until Ctrl-C.
    pub keep: bool,
    /// More arguments for `sluice run` (to see a lab fail when Sluice misbehaves).
    pub controller_args: Vec<String>,
}

/// How a lab is run: by the learner or by its script.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub scripted: bool,
    pub time_limit: Duration,
}

impl Mode {
    /// How long the lab waits for the learner's part: the script's own `limit`, or the
    /// learner's time.
    pub fn learner_limit(&self, limit: Duration) -> Duration {
        if self.scripted {
            limit
        } else {
            self.time_limit
        }
    }

    /// `abortScaleDownDelaySeconds`: an aborted revision's pods stay this long to be looked at
    /// (Argo Rollouts' default, 30 s, for a learner; 5 s for the script).
    pub fn abort_delay(&self) -> u32 {
        if self.scripted { 5 } else { 30 }
    }
}

/// Runs the labs on one stack; fails when one did not end as it should.
pub async fn run(opts: LabOptions) -> anyhow::Result<()> {
    let clock = Clock::new();
    say("Starting the local stack: Kubernetes control plane, simulated Nodes, Sluice");
    let stack = Stack::start(
        &StackOptions {
            sluice: &opts.sluice,
            state_dir: &opts.state_dir,
            controller_args: &opts.controller_args,
        },
        &clock,
    )
    .await?;
    let mode = Mode {
        scripted: opts.scripted,
        time_limit: opts.time_limit,
    };
    let mut outcomes = Vec::new();
    for lab in &opts.labs {
        let started = Instant::now();
        say(&format!("Lab {}: {}", lab.name(), lab.summary()));
        let result = run_one(&stack, *lab, mode).await;
        let secs = started.elapsed().as_secs_f64();
        let line = match &result {
            Ok(summary) => format!("lab {}: passed in {secs:.0} s: {summary}", lab.name()),
            Err(e) => format!("lab {}: FAILED after {secs:.0} s: {e:#}", lab.name()),
        };
        println!("\n{line}");
        outcomes.push((result.is_ok(), line));
    }
    say("Labs");
    for (_, line) in &outcomes {
        println!("{line}");
    }
    let failed = outcomes.iter().filter(|(ok, _)| !ok).count();
    println!(
        "{} passed, {failed} failed, in {:.0} s (stack start included)",
        outcomes.len() - failed,
        clock.now()
    );
    if opts.keep {
        keep(&stack).await?;
    }
    let log = stack.controller_log.clone();
    stack.stop().await;
    if failed > 0 {
        bail!(
            "{failed} lab(s) failed; the controller's log: {}",
            log.display()
        );
    }
    Ok(())
}

async fn run_one(stack: &Stack, lab: Lab, mode: Mode) -> anyhow::Result<String> {
    match lab {
        Lab::Crashloop => auto::run(stack, auto::crashloop(), mode).await,
        Lab::ImagePull => auto::run(stack, auto::image_pull(), mode).await,
        Lab::ErrorRate => auto::run(stack, auto::error_rate(), mode).await,
        Lab::Latency => auto::run(stack, auto::latency(), mode).await,
        Lab::Stuck => manual::run(stack, manual::Kind::Stuck, mode).await,
        Lab::ManualRollback => manual::run(stack, manual::Kind::NoAnalysis, mode).await,
        Lab::PrometheusDown => prometheus_down::run(stack, mode).await,
    }
}

async fn keep(stack: &Stack) -> anyhow::Result<()> {
    say("The stack stays up; Ctrl-C stops it");
    for line in stack.kubectl.exports().lines() {
        println!("  {line}");
    }
    println!("  kubectl sluice list -A");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lab_is_named_and_listed_once() {
        for l in Lab::ALL {
            assert_eq!(Lab::parse(l.name()), Some(l));
            assert!(l.namespace().len() <= 63);
        }
        assert_eq!(list().lines().count(), Lab::ALL.len());
    }

    #[test]
    fn selections() {
        assert_eq!(select("list").ok(), Some(Selection::List));
        assert_eq!(select("all").ok(), Some(Selection::Labs(Lab::ALL.to_vec())));
        assert_eq!(
            select("stuck,crashloop,stuck").ok(),
            Some(Selection::Labs(vec![Lab::Stuck, Lab::Crashloop]))
        );
        assert!(select("crashlop").is_err());
        assert!(select(",").is_err());
    }
}
