//! `sluice-e2e`: starts and stops the local control plane used by tests and the demo.
//!
//!   sluice-e2e build                       build the control plane binaries (cached)
//!   sluice-e2e up [--state-dir D] [--env-file F] [--nodes N] [--pods-per-node M]
//!                 [--exit-with-parent]
//!                                          start etcd, kube-apiserver, kube-controller-manager,
//!                                          kube-scheduler and the node simulator; install the
//!                                          CRDs; write the environment to F; run until stopped
//!   sluice-e2e bench [--rollouts N,...]    Sluice and Argo Rollouts side by side on one local
//!                                          API server (see `e2e::bench`)
//!   sluice-e2e demo [--strategy S] [--keep]  the README's demo
//!   sluice-e2e lab list|all|NAME[,NAME] [--scripted] [--keep]
//!                                          labs for learners (see `e2e::lab`, docs/labs/)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use e2e::controlplane::{self, ControlPlane, Options};
use e2e::harness;
use e2e::nodesim::NodeSim;

#[derive(Parser)]
#[command(
    name = "sluice-e2e",
    about = "Local Kubernetes control plane for Sluice's tests and demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build (or find in the cache) the control plane binaries and print their directory.
    Build,
    /// Start a control plane and node simulator, and keep them running until stopped.
    Up {
        /// Directory for data, certificates and logs (default: a fresh temporary one).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Write `export NAME=value` lines for the tests (kubeconfig, binaries) here.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Number of simulated Nodes.
        #[arg(long, default_value_t = harness::NODES)]
        nodes: usize,
        /// Pods each simulated Node holds.
        #[arg(long, default_value_t = e2e::nodesim::PODS_PER_NODE)]
        pods_per_node: usize,
        /// Stop when the process that started this one goes away.
        #[arg(long)]
        exit_with_parent: bool,
        /// Keep an audit log of ServiceAccounts' requests (`audit.log` in the state directory),
        /// for the tests that compare an account's grants with what it used.
        #[arg(long)]
        audit: bool,
    },
    /// Benchmark Sluice and Argo Rollouts side by side on one local API server: memory, time
    /// to Healthy, first pass after a restart, a new image on all N, reconcile latency, API
    /// requests per reconcile (counted by the API server), CPU, time to safe. Prints a table
    /// per size and writes JSON.
    Bench {
        /// How many Rollouts (of each controller); a comma-separated list runs each size on
        /// a fresh control plane.
        #[arg(long, value_delimiter = ',', default_value = "100")]
        rollouts: Vec<usize>,
        /// The controllers to measure, one at a time: sluice, argo.
        #[arg(long, value_delimiter = ',', default_value = "sluice,argo")]
        controllers: Vec<String>,
        /// The `sluice` controller binary (a release build for figures worth quoting).
        #[arg(long, default_value = "target/release/sluice")]
        sluice: PathBuf,
        /// Where the control plane's state, the controllers' logs and the JSON go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Rollouts per namespace.
        #[arg(long, default_value_t = 100)]
        per_namespace: usize,
        /// Pods each simulated node holds.
        #[arg(long, default_value_t = 1000)]
        pods_per_node: usize,
        /// How long one wait may take per 1,000 Rollouts (at least 300 s), in seconds.
        #[arg(long, default_value_t = 900)]
        limit_per_1000: u64,
        /// Leave out the new image on all N at once (step 6): a shorter run at large N, when
        /// only memory, time to Healthy, time to safe and the first pass are wanted.
        #[arg(long)]
        no_update: bool,
    },
    /// Run the demo: v2 promoted, v3 rolled back by analysis; prints a summary and writes an
    /// HTML report.
    Demo {
        /// The release strategy to show.
        #[arg(long, value_enum, default_value = "canary")]
        strategy: e2e::demo::Strategy,
        /// The `sluice` controller binary.
        #[arg(long, default_value = "target/debug/sluice")]
        sluice: PathBuf,
        /// Where the control plane, Prometheus and the controller keep their state and logs.
        #[arg(long, default_value = "target/demo")]
        state_dir: PathBuf,
        /// Where to write the HTML report.
        #[arg(long, default_value = "target/demo/report.html")]
        report: PathBuf,
        /// Keep the stack running until Ctrl-C, and print how to reach it.
        #[arg(long)]
        keep: bool,
    },
    /// Labs for learners: a faulty release to diagnose and roll back, on the local stack.
    /// `list` lists them; `all` runs every lab on one stack.
    Lab {
        /// `list`, `all`, or a lab's name (several separated by commas).
        scenario: String,
        /// Play the learner's part (the commands through the real kubectl) and fail like a test
        /// when the end state is not the expected one.
        #[arg(long)]
        scripted: bool,
        /// The `sluice` controller binary (`kubectl-sluice` is looked for beside it).
        #[arg(long, default_value = "target/debug/sluice")]
        sluice: PathBuf,
        /// Where the control plane, each lab's Prometheus and the controller keep their state
        /// and logs.
        #[arg(long, default_value = "target/labs")]
        state_dir: PathBuf,
        /// How long an interactive lab waits for the learner, in seconds.
        #[arg(long, default_value_t = 1200)]
        time_limit: u64,
        /// Keep the stack running after the labs until Ctrl-C, and print how to reach it.
        #[arg(long)]
        keep: bool,
        /// An argument for `sluice run` (repeat it), e.g. `--controller-arg=--restart-threshold=100`
        /// to see the crashloop lab fail when fail-fast is off.
        #[arg(long, allow_hyphen_values = true)]
        controller_arg: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Build => match controlplane::binaries() {
            Ok(dir) => {
                println!("{}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice-e2e: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Bench {
            rollouts,
            controllers,
            sluice,
            out,
            per_namespace,
            pods_per_node,
            limit_per_1000,
            no_update,
        } => {
            let mut flavours = Vec::new();
            for c in &controllers {
                match e2e::bench::workload::Flavour::parse(c) {
                    Some(f) if !flavours.contains(&f) => flavours.push(f),
                    Some(_) => {}
                    None => {
                        eprintln!("sluice-e2e bench: unknown controller {c:?} (sluice, argo)");
                        return ExitCode::from(2);
                    }
                }
            }
            if rollouts.is_empty() || rollouts.contains(&0) {
                eprintln!("sluice-e2e bench: --rollouts takes sizes of at least 1");
                return ExitCode::from(2);
            }
            let e2e_bin = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("sluice-e2e: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = e2e::bench::BenchOptions {
                sizes: rollouts,
                controllers: flavours,
                sluice_bin: sluice,
                e2e_bin,
                out_dir: out,
                per_namespace,
                pods_per_node,
                limit_per_1000: Duration::from_secs(limit_per_1000),
                update: !no_update,
            };
            block_on(Threads::Many, "\nsluice-e2e bench", e2e::bench::run(opts))
        }
        Cmd::Demo {
            strategy,
            sluice,
            state_dir,
            report,
            keep,
        } => {
            let opts = e2e::demo::DemoOptions {
                strategy,
                sluice,
                state_dir,
                report,
                keep,
            };
            block_on(Threads::Many, "\nsluice-e2e demo", e2e::demo::run(opts))
        }
        Cmd::Lab {
            scenario,
            scripted,
            sluice,
            state_dir,
            time_limit,
            keep,
            controller_arg,
        } => {
            let labs = match e2e::lab::select(&scenario) {
                Ok(e2e::lab::Selection::List) => {
                    print!("{}", e2e::lab::list());
                    return ExitCode::SUCCESS;
                }
                Ok(e2e::lab::Selection::Labs(labs)) => labs,
                Err(e) => {
                    eprintln!("sluice-e2e lab: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = e2e::lab::LabOptions {
                labs,
                scripted,
                sluice,
                state_dir,
                time_limit: Duration::from_secs(time_limit),
                keep,
                controller_args: controller_arg,
            };
            block_on(Threads::Many, "\nsluice-e2e lab", e2e::lab::run(opts))
        }
        Cmd::Up {
            state_dir,
            env_file,
            nodes,
            pods_per_node,
            exit_with_parent,
            audit,
        } => {
            // A current-thread runtime: every process is started from this (main) thread, to
            // which their parent-death signal is tied.
            block_on(
                Threads::One,
                "sluice-e2e",
                up(
                    state_dir,
                    env_file,
                    nodes,
                    pods_per_node,
                    exit_with_parent,
                    audit,
                ),
            )
        }
    }
}

/// How many threads a command's runtime has.
enum Threads {
    /// This (main) thread only.
    One,
    Many,
}

/// Runs `work` to its end on a new Tokio runtime; its error is printed after `prefix`.
fn block_on<E: std::fmt::Display>(
    threads: Threads,
    prefix: &str,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let rt = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Many => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-e2e: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prefix}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(
    state_dir: Option<PathBuf>,
    env_file: Option<PathBuf>,
    nodes: usize,
    pods_per_node: usize,
    exit_with_parent: bool,
    audit: bool,
) -> anyhow::Result<()> {
    let parent = std::os::unix::process::parent_id();
    let t0 = Instant::now();
    let bin_dir = tokio::task::spawn_blocking(controlplane::binaries).await??;
    let built = t0.elapsed();
    if let Some(d) = &state_dir {
        // A state directory from an earlier run holds stale etcd data and certificates.
        let _ = std::fs::remove_dir_all(d);
    }
    let state_dir = match state_dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            Some(std::fs::canonicalize(&d)?)
        }
        None => None,
    };
    let mut cp = ControlPlane::start(Options {
        bin_dir: Some(bin_dir.clone()),
        state_dir,
        etcd: None,
        audit,
        apiserver_args: Vec::new(),
    })
    .await?;
    let client = cp.client().await?;
    let _sim = NodeSim::start_sized(client.clone(), "sim-node", nodes, pods_per_node).await?;
    harness::install_crds(&client, &harness::crds_dir()).await?;
    eprintln!(
        "sluice-e2e: control plane ready at {} in {:.1} s (binaries {:.1} s, start {:.1} s); kubeconfig {}",
        cp.api_url,
        t0.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        (t0.elapsed() - built).as_secs_f64(),
        cp.kubeconfig.display()
    );
    if let Some(f) = &env_file {
        let text = format!(
            "export SLUICE_E2E_KUBECONFIG={kc}\nexport SLUICE_K8S_BIN={bin}\nexport SLUICE_E2E_STATE_DIR={state}\n",
            kc = cp.kubeconfig.display(),
            bin = bin_dir.display(),
            state = cp.state_dir.display()
        );
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, f)?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                if let Err(e) = cp.check_alive() {
                    anyhow::bail!("{e}");
                }
                if exit_with_parent && std::os::unix::process::parent_id() != parent {
                    eprintln!("sluice-e2e: parent process gone; stopping");
                    break;
                }
            }
        }
    }
    if let Some(f) = &env_file {
        let _ = std::fs::remove_file(f);
    }
    cp.stop();
    eprintln!("sluice-e2e: stopped");
    Ok(())
}
