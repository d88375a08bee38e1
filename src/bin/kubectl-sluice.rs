//! `kubectl sluice`: the kubectl plugin for Sluice. Put `kubectl-sluice` on the PATH and run
//! `kubectl sluice ...`. The controls (promote, abort, retry, pause, resume) patch the Rollout's
//! status; only `set image`, `undo` and `restart` write its spec, and say so.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use sluice::cli::cluster::{CliError, Cluster, ClusterArgs};
use sluice::cli::commands::{self, Output};
use sluice::cli::complete::{self, Offer};
use sluice::cli::control::Control;
use sluice::cli::edit::Target;

#[derive(Parser)]
#[command(
    name = "kubectl sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Inspect and steer Sluice rollouts",
    after_help = "Exit codes: 0 success; 1 an error (not found, forbidden, no cluster, bad input); `status` also returns 2 Degraded, 3 Paused, 4 still progressing at --timeout; `exercise start` returns 0 Passed, 2 Failed, 3 Skipped or Cancelled, 4 still under way at --timeout."
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// No colour or symbols, even on a terminal (also: NO_COLOR set).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a Rollout as a tree: revisions, pods, step, weights, analysis runs and measurements.
    Get {
        /// `rollout NAME`, or just `NAME`.
        #[arg(num_args = 1..=2, value_names = ["rollout", "NAME"])]
        words: Vec<String>,
        /// Redraw on every change (from watches, not polling) until interrupted.
        #[arg(short, long)]
        watch: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the Rollouts of the namespace (or of all with -A).
    List {
        /// `rollouts` may be given, as with kubectl.
        #[arg(hide = true)]
        kind: Option<String>,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Wait until the Rollout is Healthy (exit 0), Degraded (2) or Paused (3); 4 at --timeout.
    Status {
        name: String,
        /// Give up after this long, e.g. 90s, 5m (default: wait as long as it takes).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print where it stands and exit at once (Progressing exits 4).
        #[arg(long)]
        no_wait: bool,
    },
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
    /// Go back to an earlier revision's template (writes spec.template).
    Undo {
        name: String,
        /// The revision's number as `get rollout` shows it, or its pod-template hash (default: the previous one).
        #[arg(long)]
        to_revision: Option<String>,
    },
    /// New pods for the same revision, a few at a time (writes spec.restartAt).
    Restart { name: String },
    /// Set a container's image (writes spec.template).
    Set {
        #[command(subcommand)]
        what: SetCmd,
    },
    /// Print the plugin's version, and the cluster's and the CRDs' when reachable.
    Version,
    /// Print a completion script for bash, zsh or fish.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the CustomResourceDefinitions, for `kubectl sluice crds | kubectl apply --server-side -f -`.
    Crds,
    /// Check Rollout and analysis manifests offline: schema, references, conditions, steps.
    Lint(sluice::cli::lint::LintArgs),
    /// Convert Argo Rollouts manifests to Sluice's, with a report of what changed.
    Migrate(sluice::cli::migrate::MigrateArgs),
    /// Serve a live web page of the Rollouts in scope, with promote/abort/retry/pause/resume.
    Dashboard(sluice::cli::dashboard::DashboardArgs),
    /// Replay an analysis template over past Prometheus data: what it would have decided, which incidents it would have caught.
    Backtest(sluice::cli::backtest::BacktestArgs),
    /// Rehearsed rollbacks (RolloutExercise): start a run and follow it, its status, its history, cancel it.
    Exercise {
        #[command(subcommand)]
        what: ExerciseCmd,
    },
}

#[derive(Subcommand)]
enum ExerciseCmd {
    /// Ask for a run now (sets sluice.dev/run-requested-at) and follow it to its result: exit 0 Passed, 2 Failed, 3 Skipped or Cancelled, 4 still under way at --timeout.
    Start {
        name: String,
        /// Ask for the run and exit at once.
        #[arg(long)]
        no_wait: bool,
        /// Stop following after this long, e.g. 90s, 10m (the run goes on).
        #[arg(long, value_parser = parse_duration, default_value = "30m")]
        timeout: Duration,
    },
    /// The exercise's phase, schedule, the run under way (with what its Rollout says), else the last run with its figures and objectives.
    Status {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The runs, newest first: trigger, result, time to detect and to safe, peak weight, failed requests.
    History {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Cancel the run under way (sets sluice.dev/cancel-requested-at): the Rollout goes back to its stable revision.
    Cancel { name: String },
}

#[derive(Subcommand)]
enum SetCmd {
    /// `set image NAME CONTAINER=IMAGE...` (`*=IMAGE` for every container).
    Image {
        name: String,
        #[arg(required = true, value_name = "CONTAINER=IMAGE")]
        pairs: Vec<String>,
    },
}

const PROG: &str = "kubectl sluice";

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration like 90s, 5m or 1h")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string());
    if invoked_as.as_deref() == Some("kubectl_complete-sluice") {
        return complete_words(&args[1..]);
    }
    if args.get(1).map(String::as_str) == Some("__complete") {
        return complete_words(&args[2..]);
    }
    let cli = Cli::parse();
    match cli.command {
        Cmd::Crds => return sluice::cli::print_crds(PROG),
        Cmd::Lint(args) => return sluice::cli::lint::run(args),
        Cmd::Migrate(args) => return sluice::cli::migrate::run(args),
        Cmd::Dashboard(args) => return sluice::cli::dashboard::main(PROG, args, &cli.cluster),
        Cmd::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubectl-sluice", &mut out);
            let header = "# kubectl-sluice completion. For `kubectl sluice <TAB>` (kubectl 1.26+), link the plugin as\n# kubectl_complete-sluice on your PATH: ln -s \"$(command -v kubectl-sluice)\" \"$(dirname \"$(command -v kubectl-sluice)\")/kubectl_complete-sluice\"\n";
            return sluice::cli::write_stdout(
                PROG,
                &format!("{header}{}", String::from_utf8_lossy(&out)),
            );
        }
        _ => {}
    }
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
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let style = commands::style(cli.no_color);
    if let Cmd::Version = cli.command {
        let text = commands::version(Cluster::connect(&cli.cluster).await).await;
        return sluice::cli::write_stdout(PROG, &text);
    }
    let cl = match Cluster::connect(&cli.cluster).await {
        Ok(cl) => cl,
        Err(e) => return fail(e),
    };
    let done = match cli.command {
        Cmd::Get {
            words,
            watch,
            output,
        } => {
            let name = match words.as_slice() {
                [name] => name.clone(),
                [kind, name] if matches!(kind.as_str(), "rollout" | "rollouts" | "ro" | "sro") => {
                    name.clone()
                }
                [kind, _] => {
                    return fail(CliError::Usage(format!(
                        "get takes `rollout NAME`, not {kind:?}"
                    )));
                }
                _ => return fail(CliError::Usage("get takes `rollout NAME`".into())),
            };
            if watch {
                commands::watch(&cl, &name, style)
                    .await
                    .map(|_| String::new())
            } else {
                commands::get(&cl, &name, output, style).await
            }
        }
        Cmd::List {
            kind,
            all_namespaces,
            output,
        } => match kind.as_deref() {
            None | Some("rollouts" | "rollout" | "ro" | "sro") => {
                commands::list(&cl, all_namespaces, output, style).await
            }
            Some(other) => Err(CliError::Usage(format!(
                "list shows rollouts, not {other:?}"
            ))),
        },
        Cmd::Status {
            name,
            timeout,
            no_wait,
        } => {
            return match commands::status(&cl, &name, timeout, !no_wait).await {
                Ok(outcome) => outcome.exit(),
                Err(e) => fail(e),
            };
        }
        Cmd::Promote { name, full } => {
            let c = if full {
                Control::PromoteFull
            } else {
                Control::Promote
            };
            commands::control(&cl, &name, c).await
        }
        Cmd::Abort { name } => commands::control(&cl, &name, Control::Abort).await,
        Cmd::Retry { name } => commands::control(&cl, &name, Control::Retry).await,
        Cmd::Pause { name } => commands::control(&cl, &name, Control::Pause).await,
        Cmd::Resume { name } => commands::control(&cl, &name, Control::Resume).await,
        Cmd::Undo { name, to_revision } => {
            let target = to_revision.map(Target::Given).unwrap_or(Target::Previous);
            commands::undo(&cl, &name, &target).await
        }
        Cmd::Restart { name } => commands::restart(&cl, &name).await,
        Cmd::Backtest(args) => sluice::cli::backtest::run(&cl, &args).await,
        Cmd::Exercise { what } => return exercise(&cl, what, style).await,
        Cmd::Set {
            what: SetCmd::Image { name, pairs },
        } => commands::set_image(&cl, &name, &pairs).await,
        Cmd::Version
        | Cmd::Crds
        | Cmd::Completion { .. }
        | Cmd::Lint(_)
        | Cmd::Migrate(_)
        | Cmd::Dashboard(_) => Ok(String::new()),
    };
    match done {
        Ok(text) => sluice::cli::write_stdout(PROG, &text),
        Err(e) => fail(e),
    }
}

/// `exercise start|status|history|cancel NAME`.
async fn exercise(cl: &Cluster, what: ExerciseCmd, style: sluice::cli::tree::Style) -> ExitCode {
    use sluice::cli::exercise;
    let done = match what {
        ExerciseCmd::Start {
            name,
            no_wait,
            timeout,
        } => {
            return match exercise::start(cl, &name, !no_wait, timeout, style).await {
                Ok(outcome) => outcome.exit(),
                Err(e) => fail(e),
            };
        }
        ExerciseCmd::Status { name, output } => exercise::status(cl, &name, output, style).await,
        ExerciseCmd::History { name, output } => exercise::history(cl, &name, output, style).await,
        ExerciseCmd::Cancel { name } => exercise::cancel(cl, &name).await,
    };
    match done {
        Ok(text) => sluice::cli::write_stdout(PROG, &text),
        Err(e) => fail(e),
    }
}

fn fail(e: CliError) -> ExitCode {
    if matches!(e, CliError::Closed) {
        return ExitCode::SUCCESS;
    }
    eprintln!("{PROG}: {e}");
    ExitCode::FAILURE
}

/// Answers kubectl's completion request for the words after `kubectl sluice`.
fn complete_words(words: &[String]) -> ExitCode {
    let offer = complete::offer(words);
    let text = match offer {
        Offer::Words(w) => complete::answer(&w, false),
        Offer::Files => complete::answer(&[], true),
        Offer::Nothing => complete::answer(&[], false),
        Offer::Rollouts { namespace } => names_answer(words, namespace, false),
        Offer::Exercises { namespace } => names_answer(words, namespace, true),
    };
    sluice::cli::write_stdout(PROG, &text)
}

/// The names of the namespace's Rollouts (or exercises) starting with the word being typed,
/// read within 5 seconds.
fn names_answer(words: &[String], namespace: Option<String>, exercises: bool) -> String {
    let partial = words.last().cloned().unwrap_or_default();
    let args = ClusterArgs {
        namespace,
        request_timeout: 5,
        ..Default::default()
    };
    let names = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| {
            if exercises {
                rt.block_on(exercise_names(args))
            } else {
                rt.block_on(rollout_names(args))
            }
        })
        .unwrap_or_default();
    let matching: Vec<(String, String)> = names
        .into_iter()
        .filter(|n| n.starts_with(&partial))
        .map(|n| (n, String::new()))
        .collect();
    complete::answer(&matching, false)
}

async fn exercise_names(args: ClusterArgs) -> Option<Vec<String>> {
    let cl = Cluster::connect(&args).await.ok()?;
    sluice::cli::exercise::names(&cl).await.ok()
}

async fn rollout_names(args: ClusterArgs) -> Option<Vec<String>> {
    let cl = Cluster::connect(&args).await.ok()?;
    let rows = commands::list(&cl, false, Output::Json, sluice::cli::tree::Style::PLAIN)
        .await
        .ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&rows).ok()?;
    Some(
        rows.iter()
            .filter_map(|r| r["name"].as_str().map(String::from))
            .collect(),
    )
}
