//! What an integration test needs: a control plane (shared by every test in the run), a fresh
//! namespace, the CRDs installed, a client, `kubectl`, waiting with deadlines, and a dump of
//! the namespace when a test fails.
//!
//! With `SLUICE_E2E_KUBECONFIG` set (the README's test command starts one control plane for
//! the whole run with `sluice-e2e up`), tests use that cluster. Without it, the first test of
//! a test binary starts a control plane and a node simulator of its own, on a thread that
//! lives as long as the test process; they stop when the process exits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};

use crate::controlplane::{self, ControlPlane};
use crate::nodesim::NodeSim;

/// The number of simulated Nodes a harness-started cluster gets.
pub const NODES: usize = 3;
const FIELD_MANAGER: &str = "sluice-e2e";

/// A control plane the tests of this process share.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub bin_dir: PathBuf,
    /// Where the control plane's logs are, when known.
    pub state_dir: Option<PathBuf>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

static PRIVATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this test process start a control plane of its own even when a shared one is named,
/// for tests that change what every namespace sees (deleting a CRD). Call it first in every
/// test of the process.
pub fn use_private_cluster() {
    PRIVATE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The shared cluster: the one named by the environment, or one started for this process.
pub fn cluster() -> anyhow::Result<Cluster> {
    CLUSTER
        .get_or_init(|| {
            if let Ok(kc) = std::env::var("SLUICE_E2E_KUBECONFIG")
                && !PRIVATE.load(std::sync::atomic::Ordering::SeqCst)
            {
                let bin_dir = controlplane::binaries().map_err(|e| e.to_string())?;
                return Ok(Cluster {
                    kubeconfig: PathBuf::from(kc),
                    bin_dir,
                    state_dir: std::env::var_os("SLUICE_E2E_STATE_DIR").map(PathBuf::from),
                });
            }
            start_private_cluster()
        })
        .clone()
        .map_err(|e| anyhow!("no control plane: {e}"))
}

fn start_private_cluster() -> Result<Cluster, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The processes are tied to the thread that starts them (parent-death signal), so this
    // thread lives until the test process exits.
    std::thread::Builder::new()
        .name("sluice-e2e-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let started = async {
                    let cp = ControlPlane::start(crate::controlplane::Options {
                        audit: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    let client = cp.client().await.map_err(|e| e.to_string())?;
                    let sim = NodeSim::start(client, "sim-node", NODES)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>((cp, sim))
                }
                .await;
                match started {
                    Ok((cp, sim)) => {
                        let info = Cluster {
                            kubeconfig: cp.kubeconfig.clone(),
                            bin_dir: cp.bin_dir.clone(),
                            state_dir: Some(cp.state_dir.clone()),
                        };
                        let _ = tx.send(Ok(info));
                        let _keep = (cp, sim);
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

/// The cache directory of a Go-built tool: `$var` when set (the README's test command builds
/// it once and exports it), else what `script` (relative to the e2e crate) prints last after
/// building it or finding it cached. Each of `needed` must be in it.
pub fn go_built_dir(var: &str, script: &str, needed: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
            let out = std::process::Command::new("bash")
                .arg(&script)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            if !out.status.success() {
                bail!("{} failed: {}", script.display(), out.status);
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().last() {
                Some(line) => PathBuf::from(line.trim()),
                None => bail!("{} printed no directory", script.display()),
            }
        }
    };
    for name in needed {
        let path = dir.join(name);
        if !path.exists() {
            bail!(
                "{} is missing (run e2e/{script}, or unset {var})",
                path.display()
            );
        }
    }
    Ok(dir)
}

/// Server-side applies the CRDs in `dir` and waits until each is Established.
pub async fn install_crds(client: &Client, dir: &Path) -> anyhow::Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
        names.push(name);
    }
    for name in &names {
        wait_established(&api, name).await?;
    }
    Ok(names)
}

/// Waits until the CRD `name` is Established (its resources are served).
pub async fn wait_established(
    api: &Api<CustomResourceDefinition>,
    name: &str,
) -> anyhow::Result<()> {
    wait_for(
        &format!("CRD {name} Established"),
        Duration::from_secs(60),
        || async {
            let crd = api.get(name).await?;
            let ok = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// The directory with Sluice's generated CRDs.
pub fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// Polls `check` until it returns `Some`, an error persists past the deadline, or the deadline
/// passes. The error names what was awaited and the last thing seen.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    let mut last;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "condition not met".into(),
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} s waiting for {what} (last: {last})",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The output of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// One test's view of the cluster: its own namespace and client.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub cluster: Cluster,
    extra_logs: std::sync::Mutex<Vec<PathBuf>>,
}

impl TestEnv {
    /// Connects to the shared cluster, installs the CRDs (once per process) and creates a
    /// fresh namespace whose name starts with `name`.
    pub async fn new(name: &str) -> anyhow::Result<Self> {
        let cluster = tokio::task::spawn_blocking(cluster).await??;
        let client = controlplane::client_from_kubeconfig(&cluster.kubeconfig).await?;
        CRDS.get_or_try_init(|| async { install_crds(&client, &crds_dir()).await.map(|_| ()) })
            .await?;
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0);
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        base.truncate(40);
        let namespace = format!("{}-{suffix:09}", base.trim_matches('-'));
        let ns_api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        ns_api
            .create(&PostParams::default(), &ns)
            .await
            .context("creating the test namespace")?;
        // Pods are refused until the controller manager has made the default ServiceAccount.
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        wait_for(
            "the default ServiceAccount",
            Duration::from_secs(60),
            || async { Ok(sa.get_opt("default").await?.map(|_| ())) },
        )
        .await?;
        Ok(TestEnv {
            client,
            namespace,
            cluster,
            extra_logs: Default::default(),
        })
    }

    /// Runs a test body in a fresh namespace. On failure (error or panic) it prints a dump of
    /// the namespace and the control plane logs, then fails the test; on success it deletes
    /// the namespace.
    pub async fn run<F, Fut>(name: &str, body: F)
    where
        F: FnOnce(std::sync::Arc<TestEnv>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let env = match TestEnv::new(name).await {
            Ok(e) => std::sync::Arc::new(e),
            Err(e) => panic!("test environment for {name}: {e:#}"),
        };
        let outcome = std::panic::AssertUnwindSafe(body(env.clone()))
            .catch_unwind()
            .await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(panic) => Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        match failure {
            None => env.delete_namespace().await,
            Some(msg) => {
                eprintln!(
                    "===== {name} failed; state of namespace {} =====",
                    env.namespace
                );
                eprintln!("{}", env.dump().await);
                panic!("{name}: {msg}");
            }
        }
    }

    /// Adds a log file (e.g. a controller's) to the failure dump.
    pub fn attach_log(&self, path: PathBuf) {
        if let Ok(mut logs) = self.extra_logs.lock() {
            logs.push(path);
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Runs the real kubectl of the pinned version against the cluster, in this namespace.
    pub async fn kubectl(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<KubectlOutput> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(self.cluster.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting kubectl")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .context("kubectl did not finish within 60 s")??;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Objects, pods, Events and logs that explain what happened in this namespace.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        let kinds = [
            ("sluice.dev", "v1alpha1", "Rollout"),
            ("sluice.dev", "v1alpha1", "AnalysisRun"),
            ("apps", "v1", "Deployment"),
            ("apps", "v1", "ReplicaSet"),
            ("", "v1", "Service"),
            ("discovery.k8s.io", "v1", "EndpointSlice"),
        ];
        for (group, version, kind) in kinds {
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for obj in list.items {
                        let mut obj = obj;
                        obj.metadata.managed_fields = None;
                        out.push_str(&format!(
                            "--- {kind} {}\n{}\n",
                            obj.name_any(),
                            serde_saphyr::to_string(&obj).unwrap_or_default()
                        ));
                    }
                }
                Err(e) => out.push_str(&format!("--- {kind}: {e}\n")),
            }
        }
        let pods: Api<Pod> = self.api();
        if let Ok(list) = pods.list(&ListParams::default()).await {
            out.push_str("--- pods\n");
            for p in list.items {
                let st = p.status.clone().unwrap_or_default();
                let ready = st
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let reasons: Vec<String> = st
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                    .collect();
                out.push_str(&format!(
                    "{} phase={} ready={ready} node={} ip={} waiting={reasons:?} deleting={}\n",
                    p.name_any(),
                    st.phase.unwrap_or_default(),
                    p.spec.and_then(|s| s.node_name).unwrap_or_default(),
                    st.pod_ip.unwrap_or_default(),
                    p.metadata.deletion_timestamp.is_some(),
                ));
            }
        }
        let events: Api<Event> = self.api();
        if let Ok(list) = events.list(&ListParams::default()).await {
            out.push_str("--- events\n");
            for e in list.items.iter().rev().take(40).rev() {
                out.push_str(&format!(
                    "{} {} {}/{}: {}\n",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.involved_object.kind.clone().unwrap_or_default(),
                    e.involved_object.name.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                ));
            }
        }
        let mut logs: Vec<PathBuf> = self
            .extra_logs
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        if let Some(dir) = &self.cluster.state_dir {
            for name in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                logs.push(dir.join(format!("{name}.log")));
            }
        }
        for log in logs {
            out.push_str(&format!(
                "--- {} (last 20 lines)\n{}\n",
                log.display(),
                controlplane::tail(&log, 20)
            ));
        }
        out
    }

    async fn delete_namespace(&self) {
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        let _ = ns_api
            .delete(&self.namespace, &DeleteParams::background())
            .await;
    }
}
