//! Argo Rollouts' own controller (`github.com/argoproj/argo-rollouts/cmd/rollouts-controller`,
//! v1.10.2), built from its published Go module by `e2e/argo/build.sh`, run as a child process
//! against the local control plane, so the benchmark can put the same workload through it and
//! through Sluice on one API server (`argoproj.io` and `sluice.dev` side by side).
//!
//! The cache directory [`build`] returns holds `rollouts-controller`, Argo's CRDs (`crds/`) and
//! its controller ClusterRole (`argo-rollouts-clusterrole.yaml`), all from the same module, so
//! nothing is fetched at run time.
//!
//! # Running it out of cluster
//!
//! [`ArgoController::start`] runs `rollouts-controller` with
//! - `--kubeconfig FILE`: its client (QPS and burst default to 40 and 80: `--qps`, `--burst`);
//! - `POD_NAMESPACE=<namespace>` in its environment: Argo's own namespace, where it keeps its
//!   leader Lease (`argo-rollouts-controller-lock`) and reads `argo-rollouts-config` and the
//!   notification ConfigMap and Secret (without it, `argo-rollouts`);
//! - `--metricsPort P --healthzPort H`: free ports (it listens on 0.0.0.0; defaults 8090/8080);
//! - `--loglevel info --logformat text` (logrus; `--kloglevel` for client-go's klog).
//!
//! and leaves the rest at Argo's defaults, which `extra` can override (a flag given twice takes
//! the last value): leader election on (`--leader-elect`; Lease 15 s, renew 10 s, retry 2 s),
//! `--rollout-threads 10`, `--analysis-threads 30`, `--service-threads 10`,
//! `--experiment-threads 10`, `--rollout-resync 900` (s), all namespaces (`--namespaced` with
//! `--namespace NS` limits it to one). Its leader identity is the host name plus a fresh UUID,
//! so a controller restarted after a kill waits for the old Lease to expire (up to 15 s) before
//! it works: delete the Lease, or pass `--leader-elect=false`, to time a first pass.
//!
//! # Its metrics (as served by v1.10.2 at [`ArgoController::metrics_url`])
//!
//! Reconciles (one series per Rollout, labels `namespace`, `name`):
//! - `rollout_reconcile` histogram (`_bucket{le}`, `_sum`, `_count`): the time of each Rollout
//!   reconcile, buckets 0.01, 0.15, 0.25, 0.5, 1 s only (too coarse for a p99 of fast
//!   reconciles); `rollout_reconcile_error` counter;
//! - `analysis_run_reconcile` / `analysis_run_reconcile_error`, `experiment_reconcile` /
//!   `experiment_reconcile_error` likewise.
//!
//! Work queues (client-go's, label `name` = `Rollouts`, `AnalysisRuns`, `Services`,
//! `Experiments`, `Ingresses`, `DestinationRules`): `workqueue_adds_total`, `workqueue_depth`,
//! `workqueue_retries_total`, `workqueue_work_duration_seconds` and
//! `workqueue_queue_duration_seconds` histograms (buckets 1e-8 .. 10 s, by factors of 10: the
//! finer latency figure; `workqueue_work_duration_seconds{name="Rollouts"}` counts the same
//! reconciles as `rollout_reconcile`, and also the ones that ended early), plus
//! `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`.
//!
//! Client requests: `controller_clientset_k8s_request_total` counter, labels `kind` (the
//! resource, e.g. `rollouts`, `replicasets`, `services`, `events`), `namespace`, `name` (`N/A`
//! for lists), `verb` (`Get`, `List`, `Watch`, `Create`, `Update`, `Patch`, `Delete`) and
//! `status_code`. Its URL parsing is Argo's own and has two flaws seen in this run: requests to
//! a subresource are labelled from the wrong path segments (a Rollout status patch shows as
//! `kind="<rollout name>", namespace="rollouts", name="status"`), and creates sent as protobuf
//! (ReplicaSets) show as `kind=""`, with a warning in the log ("Unable to Process Create
//! request"). Sum it by `verb` only, or count requests at the API server
//! (`apiserver_request_total`), which is exact.
//!
//! Also: `rollout_info{namespace,name,strategy,traffic_router,phase}` (a gauge per Rollout),
//! `rollout_info_replicas_{available,unavailable,desired,updated}`, `rollout_phase` (deprecated),
//! `rollout_events_total{namespace,name,type,reason}`, `notification_send` (a histogram: Argo
//! runs its notification engine on every event even with no notification configured),
//! `argo_rollouts_controller_info{version}`, and Go's `process_*` (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`) and `go_*` metrics.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Argo Rollouts' default namespace (its `install.yaml`), used when no other is named.
pub const NAMESPACE: &str = "argo-rollouts";
/// The controller binary in the directory [`build`] returns.
pub const BINARY: &str = "rollouts-controller";
/// The ClusterRole file in that directory.
pub const CLUSTER_ROLE: &str = "argo-rollouts-clusterrole.yaml";

const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory with Argo's controller, CRDs and ClusterRole: `$SLUICE_ARGO_DIR` when set (the
/// README's test command builds it once and exports it), else built (or found in the cache) by
/// `e2e/argo/build.sh`.
pub fn build() -> anyhow::Result<PathBuf> {
    crate::harness::go_built_dir(
        "SLUICE_ARGO_DIR",
        "argo/build.sh",
        &[BINARY, CLUSTER_ROLE, "crds"],
    )
}

/// Installs Argo's CRDs from `dir` (waiting until each is Established) and prepares Argo's
/// default namespace ([`NAMESPACE`]) with [`prepare_namespace`].
pub async fn install(client: &Client, dir: &Path) -> anyhow::Result<()> {
    crate::harness::install_crds(client, &dir.join("crds"))
        .await
        .context("installing Argo Rollouts' CRDs")?;
    prepare_namespace(client, NAMESPACE).await
}

/// Creates `namespace` if it is missing, and in it what Argo's `install.yaml` puts next to the
/// controller: the ConfigMap `argo-rollouts-config` and the Secret
/// `argo-rollouts-notification-secret`, both empty (the controller reads the ConfigMap at start
/// and watches the Secret; no notification is configured). Idempotent.
pub async fn prepare_namespace(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(
            [("app.kubernetes.io/part-of", "argo-rollouts")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    create_if_missing(&Api::<Namespace>::all(client.clone()), &ns, "namespace").await?;
    let cm = ConfigMap {
        metadata: meta("argo-rollouts-config"),
        ..Default::default()
    };
    create_if_missing(
        &Api::<ConfigMap>::namespaced(client.clone(), namespace),
        &cm,
        "ConfigMap argo-rollouts-config",
    )
    .await?;
    let secret = Secret {
        metadata: meta("argo-rollouts-notification-secret"),
        ..Default::default()
    };
    create_if_missing(
        &Api::<Secret>::namespaced(client.clone(), namespace),
        &secret,
        "Secret argo-rollouts-notification-secret",
    )
    .await
}

async fn create_if_missing<K>(api: &Api<K>, obj: &K, what: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match tokio::time::timeout(API_TIMEOUT, api.create(&PostParams::default(), obj)).await {
        Err(_) => bail!(
            "creating {what}: no answer within {} s",
            API_TIMEOUT.as_secs()
        ),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Ok(()),
        Ok(Err(e)) => Err(e).with_context(|| format!("creating {what}")),
    }
}

/// The PolicyRules of Argo's own controller ClusterRole (from the module's
/// `manifests/role/argo-rollouts-clusterrole.yaml`), as a JSON array, for the ServiceAccount
/// the benchmark runs it as.
pub fn controller_rules(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(CLUSTER_ROLE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let role: serde_json::Value =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match role.get("rules") {
        Some(rules @ serde_json::Value::Array(list)) if !list.is_empty() => Ok(rules.clone()),
        _ => bail!("{} has no rules", path.display()),
    }
}

/// Argo Rollouts' controller as a child process. Killed on drop; started through
/// `setpriv --pdeathsig KILL`, so it never outlives the thread that started it.
pub struct ArgoController {
    child: Child,
    metrics_port: u16,
    healthz_port: u16,
    pub log: PathBuf,
}

impl ArgoController {
    /// Starts `rollouts-controller` from `bin_dir` as the user of `kubeconfig`, with
    /// `namespace_of_controller` as its own namespace (see the module's documentation for the
    /// flags), logging to `log` (truncated), with `extra` flags after the defaults.
    pub fn start(
        bin_dir: &Path,
        kubeconfig: &Path,
        namespace_of_controller: &str,
        log: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let binary = bin_dir.join(BINARY);
        if !binary.exists() {
            bail!("{} not found (run e2e/argo/build.sh)", binary.display());
        }
        let (metrics_port, healthz_port) = {
            // Hold both listeners until both are chosen so the ports differ.
            let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("a free port")?;
            let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("a free port")?;
            (a.local_addr()?.port(), b.local_addr()?.port())
        };
        let file = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let err = file.try_clone()?;
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--metricsPort",
                &metrics_port.to_string(),
                "--healthzPort",
                &healthz_port.to_string(),
                "--loglevel",
                "info",
                "--logformat",
                "text",
            ])
            .args(extra)
            .env("POD_NAMESPACE", namespace_of_controller)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut me = ArgoController {
            child,
            metrics_port,
            healthz_port,
            log: log.to_path_buf(),
        };
        me.check_alive()?;
        Ok(me)
    }

    /// Its Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// Its liveness endpoint (answers `ok` once the controller runs).
    pub fn healthz_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.healthz_port)
    }

    /// The process id of the controller itself (`setpriv` execs it, keeping the pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of its log when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "Argo Rollouts' controller exited ({status}); last log lines:\n{}",
                crate::controlplane::tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ArgoController {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_rules_are_argos_cluster_role() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("sluice-argo-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(CLUSTER_ROLE),
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: argo-rollouts\nrules:\n- apiGroups:\n  - argoproj.io\n  resources:\n  - rollouts\n  verbs:\n  - get\n  - watch\n",
        )?;
        let rules = controller_rules(&dir)?;
        assert_eq!(
            rules,
            serde_json::json!([{"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "watch"]}])
        );
        std::fs::write(dir.join(CLUSTER_ROLE), "kind: ClusterRole\nrules: []\n")?;
        assert!(controller_rules(&dir).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
