//! A real Kubernetes control plane on loopback: etcd (Debian's `etcd-server`), and
//! kube-apiserver, kube-controller-manager and kube-scheduler built from the Kubernetes Go
//! modules by `e2e/k8s/build.sh`.
//!
//! Ports are chosen at run time, so several control planes can run side by side. Every process
//! is started through `setpriv --pdeathsig KILL`, so none outlives the process that started
//! it, even when that process is killed; `stop` (or drop) ends them in reverse order.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::certs::{self, ClientCert, Pki};

/// Where the API server's Service IPs come from. Service IPs are allocated from it but nothing
/// in the tests ever connects to one (the traffic simulator routes in-process).
///
/// A /12 (1,048,574 addresses; the widest IPv4 range the API server accepts for
/// `--service-cluster-ip-range`) so a benchmark with two Services per Rollout at 10,000
/// Rollouts, for two controllers side by side, never runs out. The API server allocates from it
/// through `IPAddress` objects (one per Service, under the default `ServiceCIDR` named
/// `kubernetes` that it creates from this flag), not a bitmap, so the width costs nothing.
pub const SERVICE_CIDR: &str = "10.0.0.0/12";
/// The first address of [`SERVICE_CIDR`]: the `kubernetes` Service's, in the serving
/// certificate.
const FIRST_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// etcd's storage quota: 8 GiB (the default, 2 GiB, is too small for 10,000 Rollouts with their
/// ReplicaSets, pods, Services and history).
const ETCD_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// The client rate of kube-controller-manager and kube-scheduler (defaults 20/30 and 50/100):
/// at the defaults the ReplicaSet controller creates about 8 pods a second, the harness and not
/// the controller under test would set the pace.
const CONTROLLERS_QPS: u32 = 300;
const CONTROLLERS_BURST: u32 = 600;

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("building or finding the Kubernetes binaries: {0}")]
    Binaries(String),
    #[error("binary {0} not found (run e2e/k8s/build.sh)")]
    MissingBinary(PathBuf),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free loopback port: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Certs(#[from] certs::CertError),
    #[error("starting {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited early ({status}); last log lines:\n{log}")]
    Exited {
        name: String,
        status: String,
        log: String,
    },
    #[error("{what} not ready after {secs} s; last log lines:\n{log}")]
    NotReady {
        what: String,
        secs: u64,
        log: String,
    },
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("kube client: {0}")]
    Kube(String),
}

/// How to start a control plane.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Directory with the binaries; default: `$SLUICE_K8S_BIN`, else built by `build.sh`.
    pub bin_dir: Option<PathBuf>,
    /// The etcd binary; default: `$SLUICE_ETCD`, else `etcd` in the directory above, else
    /// Debian's `/usr/bin/etcd`.
    pub etcd: Option<PathBuf>,
    /// Directory for data, certificates and logs; default: a fresh one under the temp dir,
    /// removed on stop unless `SLUICE_E2E_KEEP` is set.
    pub state_dir: Option<PathBuf>,
    /// Keep an audit log (`audit.log` in the state directory) of every request made by a
    /// ServiceAccount, at the Metadata level: who, verb, resource, response code. The tests
    /// read it to compare what an account was granted with what it used. Off for the
    /// benchmark, whose API server should not pay for it.
    pub audit: bool,
    /// More kube-apiserver flags (e.g. `--feature-gates=WatchList=false`, to see how Sluice
    /// does on an API server without a feature).
    pub apiserver_args: Vec<String>,
}

/// The audit policy of [`Options::audit`]: requests of ServiceAccounts at the Metadata level,
/// nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

/// The audit log in a control plane's state directory (when [`Options::audit`] is on).
pub fn audit_log(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.log")
}

struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    pub state_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub api_url: String,
    pub bin_dir: PathBuf,
    pub pki: Pki,
    procs: Vec<Proc>,
    remove_state: bool,
}

/// The directory with the control plane binaries, building them first if needed.
pub fn binaries() -> Result<PathBuf, ControlPlaneError> {
    if let Ok(dir) = std::env::var("SLUICE_K8S_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ControlPlaneError::Binaries(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(ControlPlaneError::Binaries(format!(
            "{} failed: {}",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| ControlPlaneError::Binaries("build.sh printed no directory".into()))
}

fn free_ports(n: usize) -> Result<Vec<u16>, ControlPlaneError> {
    // Hold every listener until all are chosen so no two ports are the same.
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ControlPlaneError::Port)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ControlPlaneError::Port)
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str, id: &ClientCert) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: sluice-e2e\n  context:\n    cluster: sluice-e2e\n    user: {user}\n    namespace: default\ncurrent-context: sluice-e2e\n",
        ca = B64.encode(ca_pem),
        cert = B64.encode(&id.cert_pem),
        key = B64.encode(&id.key_pem),
    )
}

/// kube-scheduler's configuration: its kubeconfig and client rate, no leader election (one
/// scheduler), everything else the defaults.
fn scheduler_config(kubeconfig: &Path, qps: u32, burst: u32) -> String {
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\n  qps: {qps}\n  burst: {burst}\nleaderElection:\n  leaderElect: false\n",
        kubeconfig.display()
    )
}

impl ControlPlane {
    /// Starts etcd, the API server, the controller manager and the scheduler, and returns
    /// once the API server is ready and the controllers serve their health endpoints.
    pub async fn start(opts: Options) -> Result<Self, ControlPlaneError> {
        let bin_dir = match opts.bin_dir {
            Some(d) => d,
            None => tokio::task::spawn_blocking(binaries)
                .await
                .map_err(|e| ControlPlaneError::Binaries(e.to_string()))??,
        };
        for b in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
        ] {
            if !bin_dir.join(b).is_file() {
                return Err(ControlPlaneError::MissingBinary(bin_dir.join(b)));
            }
        }
        let etcd = opts
            .etcd
            .or_else(|| std::env::var_os("SLUICE_ETCD").map(PathBuf::from))
            .unwrap_or_else(|| {
                let local = bin_dir.join("etcd");
                if local.is_file() {
                    local
                } else {
                    PathBuf::from("/usr/bin/etcd")
                }
            });
        if !etcd.is_file() {
            return Err(ControlPlaneError::MissingBinary(etcd));
        }
        let (state_dir, remove_state) = match opts.state_dir {
            Some(d) => (d, false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let d =
                    std::env::temp_dir().join(format!("sluice-e2e-{}-{nanos}", std::process::id()));
                (d, std::env::var_os("SLUICE_E2E_KEEP").is_none())
            }
        };
        std::fs::create_dir_all(&state_dir).map_err(|source| ControlPlaneError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
        let pki = certs::generate(&state_dir, FIRST_SERVICE_IP)?;
        let ports = free_ports(5)?;
        let (etcd_client, etcd_peer, api_port, kcm_port, sched_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4]);
        let api_url = format!("https://127.0.0.1:{api_port}");

        let write = |name: &str, contents: String| -> Result<PathBuf, ControlPlaneError> {
            let p = state_dir.join(name);
            std::fs::write(&p, contents).map_err(|source| ControlPlaneError::StateDir {
                path: p.clone(),
                source,
            })?;
            Ok(p)
        };
        let kubeconfig = write(
            "admin.kubeconfig",
            kubeconfig_yaml(&api_url, &pki.ca_pem, "admin", &pki.admin),
        )?;
        let kcm_kubeconfig = write(
            "controller-manager.kubeconfig",
            kubeconfig_yaml(
                &api_url,
                &pki.ca_pem,
                "system:kube-controller-manager",
                &pki.controller_manager,
            ),
        )?;
        let sched_kubeconfig = write(
            "scheduler.kubeconfig",
            kubeconfig_yaml(
                &api_url,
                &pki.ca_pem,
                "system:kube-scheduler",
                &pki.scheduler,
            ),
        )?;

        let mut audit = Vec::new();
        if opts.audit {
            let policy = write("audit-policy.yaml", AUDIT_POLICY.to_string())?;
            audit = vec![
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", audit_log(&state_dir).display()),
                "--audit-log-format=json".to_string(),
                "--audit-log-maxsize=0".to_string(),
            ];
        }

        let mut cp = ControlPlane {
            state_dir: state_dir.clone(),
            kubeconfig,
            api_url: api_url.clone(),
            bin_dir: bin_dir.clone(),
            pki: pki.clone(),
            procs: Vec::new(),
            remove_state,
        };
        let started = Instant::now();

        let p = |p: &Path| p.display().to_string();
        cp.spawn_binary(
            "etcd",
            &etcd,
            vec![
                "--name=default".into(),
                format!("--data-dir={}", p(&state_dir.join("etcd"))),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true".into(),
                format!("--quota-backend-bytes={ETCD_QUOTA_BYTES}"),
                "--log-level=warn".into(),
            ],
        )?;
        cp.spawn(
            "kube-apiserver",
            vec![
                format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", p(&state_dir.join("apiserver-certs"))),
                format!("--tls-cert-file={}", p(&pki.serving_cert)),
                format!("--tls-private-key-file={}", p(&pki.serving_key)),
                format!("--client-ca-file={}", p(&pki.ca_cert)),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--authorization-mode=RBAC".into(),
                "--allow-privileged=true".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p(&pki.sa_pub)),
                format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(audit)
            .chain(opts.apiserver_args.iter().cloned())
            .collect(),
        )?;
        cp.wait_http(
            "kube-apiserver /readyz",
            &format!("{api_url}/readyz"),
            true,
            Duration::from_secs(120),
        )
        .await?;

        let common = |port: u16, kubeconfig: &Path| {
            vec![
                format!("--kubeconfig={}", p(kubeconfig)),
                format!("--authentication-kubeconfig={}", p(kubeconfig)),
                format!("--authorization-kubeconfig={}", p(kubeconfig)),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={port}"),
                "--leader-elect=false".to_string(),
                "--profiling=false".to_string(),
                "--v=1".to_string(),
            ]
        };
        let mut kcm = common(kcm_port, &kcm_kubeconfig);
        kcm.extend([
            format!("--cert-dir={}", p(&state_dir.join("kcm-certs"))),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
            format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
            "--use-service-account-credentials=true".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allocate-node-cidrs=false".into(),
            format!("--kube-api-qps={CONTROLLERS_QPS}"),
            format!("--kube-api-burst={CONTROLLERS_BURST}"),
            // Workers of the controllers a benchmark keeps busy (defaults 5, 5, 5, 20, 5):
            // ReplicaSets create and delete pods, EndpointSlices follow Services, the garbage
            // collector deletes old ReplicaSets' pods, namespaces are deleted between runs.
            "--concurrent-replicaset-syncs=20".into(),
            "--concurrent-service-endpoint-syncs=20".into(),
            "--concurrent-gc-syncs=40".into(),
            "--concurrent-namespace-syncs=10".into(),
            "--concurrent-deployment-syncs=10".into(),
        ]);
        cp.spawn("kube-controller-manager", kcm)?;
        // The scheduler's client rate is set only in its configuration file (the flags for it
        // are ignored once a file is given, and without one the defaults are qps 50, burst 100).
        let sched_config = write(
            "scheduler-config.yaml",
            scheduler_config(&sched_kubeconfig, CONTROLLERS_QPS, CONTROLLERS_BURST),
        )?;
        // With --config, the kubeconfig and leader election come from the file only.
        let sched = vec![
            format!("--config={}", p(&sched_config)),
            format!("--authentication-kubeconfig={}", p(&sched_kubeconfig)),
            format!("--authorization-kubeconfig={}", p(&sched_kubeconfig)),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={sched_port}"),
            format!("--cert-dir={}", p(&state_dir.join("scheduler-certs"))),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ];
        cp.spawn("kube-scheduler", sched)?;
        cp.wait_http(
            "kube-controller-manager /healthz",
            &format!("https://127.0.0.1:{kcm_port}/healthz"),
            false,
            Duration::from_secs(60),
        )
        .await?;
        cp.wait_http(
            "kube-scheduler /healthz",
            &format!("https://127.0.0.1:{sched_port}/healthz"),
            false,
            Duration::from_secs(60),
        )
        .await?;
        tracing::info!(secs = started.elapsed().as_secs_f64(), %api_url, "control plane ready");
        Ok(cp)
    }

    fn spawn(&mut self, name: &'static str, args: Vec<String>) -> Result<(), ControlPlaneError> {
        let binary = self.bin_dir.join(name);
        self.spawn_binary(name, &binary, args)
    }

    fn spawn_binary(
        &mut self,
        name: &'static str,
        binary: &Path,
        args: Vec<String>,
    ) -> Result<(), ControlPlaneError> {
        let log = self.state_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|source| ControlPlaneError::StateDir {
            path: log.clone(),
            source,
        })?;
        let err = file
            .try_clone()
            .map_err(|source| ControlPlaneError::StateDir {
                path: log.clone(),
                source,
            })?;
        let child = Command::new("setpriv")
            .arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| ControlPlaneError::Spawn {
                name: name.to_string(),
                source,
            })?;
        self.procs.push(Proc { name, child, log });
        Ok(())
    }

    /// Fails with the process's log when any process has exited.
    pub fn check_alive(&mut self) -> Result<(), ControlPlaneError> {
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(ControlPlaneError::Exited {
                    name: p.name.to_string(),
                    status: status.to_string(),
                    log: tail(&p.log, 30),
                });
            }
        }
        Ok(())
    }

    async fn wait_http(
        &mut self,
        what: &str,
        url: &str,
        verify: bool,
        limit: Duration,
    ) -> Result<(), ControlPlaneError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if verify {
            let id = format!("{}{}", self.pki.admin.cert_pem, self.pki.admin.key_pem);
            builder = builder
                .tls_certs_only([reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes())?])
                .identity(reqwest::Identity::from_pem(id.as_bytes())?);
        } else {
            // The controllers serve /healthz with self-signed certificates on loopback.
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build()?;
        let deadline = Instant::now() + limit;
        let mut last;
        loop {
            self.check_alive()?;
            match http.get(url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    last = format!(
                        "HTTP {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                let logs = self
                    .procs
                    .iter()
                    .map(|p| format!("--- {} ---\n{}", p.name, tail(&p.log, 15)))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(ControlPlaneError::NotReady {
                    what: format!("{what} ({last})"),
                    secs: limit.as_secs(),
                    log: logs,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A fresh admin client. Make one per Tokio runtime: a client lives on the runtime that
    /// made it.
    pub async fn client(&self) -> Result<kube::Client, ControlPlaneError> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The log files of every process, newest lines last.
    pub fn logs(&self, lines: usize) -> String {
        self.procs
            .iter()
            .map(|p| {
                format!(
                    "--- {} ({}) ---\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops every process (scheduler, controller manager, API server, etcd) and waits for
    /// each to exit.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if self.remove_state {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An admin client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, ControlPlaneError> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| ControlPlaneError::Kube(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| ControlPlaneError::Kube(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| ControlPlaneError::Kube(e.to_string()))
}
