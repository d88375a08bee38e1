//! Flux's source-controller and kustomize-controller (v1.9.4, built from their published Go
//! modules by `e2e/flux/build.sh`), run as child processes against the local control plane,
//! so a test can declare Rollouts in git and let a real GitOps engine apply them.
//!
//! # Running them out of cluster
//!
//! [`Flux::start`] runs both with `KUBECONFIG` set (controller-runtime reads it), leader
//! election off (its default), all namespaces watched (the default), metrics and health on
//! free loopback ports, and:
//! - source-controller: `--storage-path DIR` (where it keeps the artifacts it builds from
//!   git), `--storage-addr` and `--storage-adv-addr` on one loopback port: kustomize-controller
//!   downloads each artifact from the URL source-controller advertises in the
//!   GitRepository's status;
//! - kustomize-controller: `--no-remote-bases` (a kustomization may not fetch from the
//!   internet, as Flux's own hardening advises).
//!
//! Both log JSON to the files given. `RUNTIME_NAMESPACE` is the namespace they would run in
//! (it names nothing they need here, watching all namespaces).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use kube::Client;

pub const SOURCE_CONTROLLER: &str = "source-controller";
pub const KUSTOMIZE_CONTROLLER: &str = "kustomize-controller";

/// The directory with both controllers and their CRDs: `$SLUICE_FLUX_DIR` when set (the
/// README's test command builds it once and exports it), else built (or found in the cache)
/// by `e2e/flux/build.sh`.
pub fn build() -> anyhow::Result<PathBuf> {
    crate::harness::go_built_dir(
        "SLUICE_FLUX_DIR",
        "flux/build.sh",
        &[SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER, "crds"],
    )
}

/// Installs Flux's CRDs from `dir` (waiting until each is Established).
pub async fn install(client: &Client, dir: &Path) -> anyhow::Result<()> {
    crate::harness::install_crds(client, &dir.join("crds"))
        .await
        .context("installing Flux's CRDs")?;
    Ok(())
}

/// Both controllers as child processes, killed on drop (and with the thread that started
/// them: `setpriv --pdeathsig KILL`).
pub struct Flux {
    source: Child,
    kustomize: Child,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    pub source_log: PathBuf,
    pub kustomize_log: PathBuf,
}

fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    // Hold every listener until all are chosen, so the ports differ.
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("a free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = [0; N];
    for (o, l) in out.iter_mut().zip(&listeners) {
        *o = l.local_addr()?.port();
    }
    Ok(out)
}

fn spawn(binary: &Path, kubeconfig: &Path, log: &Path, args: &[String]) -> anyhow::Result<Child> {
    if !binary.exists() {
        bail!("{} not found (run e2e/flux/build.sh)", binary.display());
    }
    let file = std::fs::File::create(log)
        .with_context(|| format!("creating the log {}", log.display()))?;
    let err = file.try_clone()?;
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUNTIME_NAMESPACE", "flux-system")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

impl Flux {
    /// Starts both from `dir` as the user of `kubeconfig`; artifacts and logs go under
    /// `work` (created). `kubectl` takes Flux's finalizers off its objects when they stop
    /// (nothing else would, and their namespaces could not be deleted).
    pub fn start(
        dir: &Path,
        kubeconfig: &Path,
        kubectl: &Path,
        work: &Path,
    ) -> anyhow::Result<Flux> {
        std::fs::create_dir_all(work.join("artifacts"))?;
        let [storage, source_metrics, source_health, metrics, health] = free_ports::<5>()?;
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let source_log = work.join("source-controller.log");
        let kustomize_log = work.join("kustomize-controller.log");
        let source = spawn(
            &dir.join(SOURCE_CONTROLLER),
            kubeconfig,
            &source_log,
            &[
                format!("--storage-path={}", work.join("artifacts").display()),
                format!("--storage-addr={}", addr(storage)),
                format!("--storage-adv-addr={}", addr(storage)),
                format!("--metrics-addr={}", addr(source_metrics)),
                format!("--health-addr={}", addr(source_health)),
                "--log-level=info".into(),
            ],
        )?;
        let kustomize = spawn(
            &dir.join(KUSTOMIZE_CONTROLLER),
            kubeconfig,
            &kustomize_log,
            &[
                format!("--metrics-addr={}", addr(metrics)),
                format!("--health-addr={}", addr(health)),
                "--no-remote-bases=true".into(),
                "--log-level=info".into(),
            ],
        )?;
        let mut me = Flux {
            source,
            kustomize,
            kubectl: kubectl.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            source_log,
            kustomize_log,
        };
        me.check_alive()?;
        Ok(me)
    }

    /// Fails with the end of its log when either process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (child, log, name) in [
            (&mut self.source, &self.source_log, SOURCE_CONTROLLER),
            (
                &mut self.kustomize,
                &self.kustomize_log,
                KUSTOMIZE_CONTROLLER,
            ),
        ] {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Flux's {name} exited ({status}); last log lines:\n{}",
                    crate::controlplane::tail(log, 30)
                );
            }
        }
        Ok(())
    }
}

impl Flux {
    /// Takes Flux's finalizers off every Kustomization and GitRepository (best effort).
    fn release_finalizers(&self) {
        let kubectl = |args: &[&str]| {
            Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--request-timeout=10s")
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        for kind in [
            "kustomizations.kustomize.toolkit.fluxcd.io",
            "gitrepositories.source.toolkit.fluxcd.io",
        ] {
            let listed = kubectl(&[
                "get",
                kind,
                "--all-namespaces",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}",
            ])
            .unwrap_or_default();
            for line in listed.lines() {
                if let Some((ns, name)) = line.split_once(' ') {
                    let patch = r#"{"metadata":{"finalizers":null}}"#;
                    kubectl(&["-n", ns, "patch", kind, name, "--type=merge", "-p", patch]);
                }
            }
        }
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        self.release_finalizers();
        for c in [&mut self.source, &mut self.kustomize] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
