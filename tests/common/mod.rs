//! Helpers shared by the controller's integration tests: run the real `sluice` binary against
//! the test's namespace, and read Rollouts back.

#![allow(dead_code)]

pub mod analysis;
pub mod exercise;
pub mod fixture;
pub mod helm;
pub mod metrics;
pub mod plugin;
pub mod routers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use e2e::{TestEnv, wait_for};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use sluice::api::rollout::{Rollout, RolloutPhase, RolloutStatus};

/// The `sluice` controller as a child process watching one namespace. Killed on drop.
pub struct ControllerProcess {
    child: Child,
    pub log: PathBuf,
    namespace: String,
    kubeconfig: PathBuf,
    identity: String,
    /// Flags added to `sluice run`.
    extra: Vec<String>,
    /// Base URL of its /metrics, /healthz and /readyz.
    pub http: String,
}

impl ControllerProcess {
    pub fn start(env: &TestEnv) -> anyhow::Result<Self> {
        Self::start_as(env, "a")
    }

    /// Starts an instance with its own identity in the leader Lease (a restart keeps it, as a
    /// restarted pod keeps its name).
    pub fn start_as(env: &TestEnv, identity: &str) -> anyhow::Result<Self> {
        Self::start_with(env, identity, &[])
    }

    /// Starts an instance with more flags for `sluice run`.
    pub fn start_with(env: &TestEnv, identity: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_kubeconfig(env, identity, extra, &env.cluster.kubeconfig)
    }

    /// Starts an instance with more flags, as the user of `kubeconfig`.
    pub fn start_with_kubeconfig(
        env: &TestEnv,
        identity: &str,
        extra: &[&str],
        kubeconfig: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let log = std::env::temp_dir().join(format!(
            "sluice-controller-{}-{identity}.log",
            env.namespace
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let http = format!("127.0.0.1:{port}");
        let mut p = ControllerProcess {
            child: spawn(
                &kubeconfig.to_path_buf(),
                &env.namespace,
                &log,
                false,
                identity,
                &http,
                &extra,
            )?,
            http: format!("http://{http}"),
            log: log.clone(),
            namespace: env.namespace.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
            identity: identity.to_string(),
            extra,
        };
        env.attach_log(log);
        p.check()?;
        Ok(p)
    }

    /// Whether the log says this instance leads.
    pub fn leads(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(" leading")
    }

    /// Kills the controller at once (SIGKILL), as a crash or an evicted pod would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, appending to the same log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let addr = self.http.trim_start_matches("http://").to_string();
        self.child = spawn(
            &self.kubeconfig,
            &self.namespace,
            &self.log,
            true,
            &self.identity,
            &addr,
            &self.extra,
        )?;
        Ok(())
    }

    /// Whether the process is still running (it was never restarted nor exited).
    pub fn still_running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the controller exited at once ({status}): {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn spawn(
    kubeconfig: &PathBuf,
    namespace: &str,
    log: &PathBuf,
    append: bool,
    identity: &str,
    http: &str,
    extra: &[String],
) -> anyhow::Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(log)?;
    let err = file.try_clone()?;
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "run",
            "--namespace",
            namespace,
            "--identity",
            identity,
            "--metrics-addr",
            http,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn,sluice=debug")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .context("starting the sluice controller")
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn rollouts(env: &TestEnv) -> Api<Rollout> {
    env.api()
}

/// Waits until the Rollout's status satisfies `check`, returning that status.
pub async fn wait_status(
    env: &TestEnv,
    name: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&RolloutStatus) -> bool,
) -> anyhow::Result<RolloutStatus> {
    let api = rollouts(env);
    wait_for(what, limit, || async {
        let ro = api.get(name).await?;
        Ok(ro.status.filter(|s| check(s)))
    })
    .await
}

/// The condition of type `type_` in a Rollout's status, if it has one.
pub fn condition<'a>(s: &'a RolloutStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a Rollout's status has the condition `type_` with status True.
pub fn has_condition(s: &RolloutStatus, type_: &str) -> bool {
    condition(s, type_).is_some_and(|c| c.status == "True")
}

/// Waits until Rollout `name` has the condition `type_` with status True; returns the status
/// and that condition.
pub async fn wait_condition(
    env: &TestEnv,
    name: &str,
    type_: &str,
    limit: Duration,
) -> anyhow::Result<(RolloutStatus, Condition)> {
    let what = format!("{type_} on Rollout {name}");
    let s = wait_status(env, name, &what, limit, |s| has_condition(s, type_)).await?;
    let c = condition(&s, type_).cloned().context("condition")?;
    Ok((s, c))
}

pub fn phase(s: &RolloutStatus) -> Option<RolloutPhase> {
    s.phase
}

/// Whether the status carries a pause condition for `reason` (what `kubectl sluice get` shows).
pub fn paused_for(s: &RolloutStatus, reason: sluice::api::rollout::PauseReason) -> bool {
    s.pause_conditions.iter().any(|p| p.reason == reason)
}

pub fn canary_weight(s: &RolloutStatus) -> Option<i32> {
    s.canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight)
}

/// Prints a figure a test measured where `make test` shows it, as a line starting `figure:`:
/// straight to the process's stdout, which the test harness does not capture (it captures
/// `println!`); `make test` lists them again at the end.
pub fn figure(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "figure: {line}");
}

/// The Events recorded for an object, as `(type, reason, message)`.
pub async fn events_for(
    env: &TestEnv,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: Api<k8s_openapi::api::core::v1::Event> = env.api();
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect())
}

/// A Go-built tool: the path in `$var` (set by `make test`), else what its build script
/// (`script`, relative to the repository) prints after building it or finding it cached.
pub fn go_tool(var: &str, script: &str) -> anyhow::Result<PathBuf> {
    if let Ok(b) = std::env::var(var) {
        return Ok(PathBuf::from(b));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "{} failed", script.display());
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// What Flux's kstatus library (built from sigs.k8s.io/cli-utils by e2e/kstatus) makes of the
/// Rollout `name`: `Current`, `InProgress`, `Failed`, ...
pub async fn kstatus(env: &TestEnv, name: &str) -> anyhow::Result<String> {
    let bin = go_tool("SLUICE_KSTATUS", "e2e/kstatus/build.sh")?;
    let json = env
        .kubectl(&["get", "rollouts.sluice.dev", name, "-o", "json"], None)
        .await?;
    anyhow::ensure!(json.success, "kubectl get: {}", json.stderr);
    let mut child = tokio::process::Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(json.stdout.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    anyhow::ensure!(
        out.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["status"].as_str().unwrap_or_default().to_string())
}

/// GETs a path of the controller's HTTP endpoint: (status code, body).
pub async fn http_get(controller: &ControllerProcess, path: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", controller.http))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Reconciles this controller process has completed since it started (its own
/// `sluice_reconcile_duration_seconds_count`; a restart starts it again at zero).
pub async fn reconciles_done(controller: &ControllerProcess) -> anyhow::Result<u64> {
    let (code, body) = http_get(controller, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    Ok(
        metrics::samples(&body, "sluice_reconcile_duration_seconds_count")
            .first()
            .map(|(_, v)| *v as u64)
            .unwrap_or(0),
    )
}

/// Waits until the (re)started controller has completed a reconcile: after a restart, that is
/// a reconcile of the state as it was left, so "nothing changed across the restart" can be
/// checked without guessing how long the controller needs.
pub async fn wait_first_reconcile(controller: &ControllerProcess) -> anyhow::Result<()> {
    wait_for(
        "the controller's first reconcile",
        Duration::from_secs(60),
        || async {
            // Not answering yet is not an error: the process may still be starting.
            Ok(match reconciles_done(controller).await {
                Ok(n) if n >= 1 => Some(()),
                _ => None,
            })
        },
    )
    .await
}

/// Wakes the controller for Rollout `name` (an annotation changes) and waits until it has
/// completed a reconcile of that change, so a test can check that nothing moved on its own.
pub async fn poke_and_wait(
    env: &TestEnv,
    controller: &ControllerProcess,
    name: &str,
) -> anyhow::Result<()> {
    let poked = rollouts(env)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "test.sluice.dev/poke": format!("{:?}", std::time::SystemTime::now())
            }}})),
        )
        .await?;
    let rv = poked.metadata.resource_version.unwrap_or_default();
    wait_log_line(
        controller,
        "the reconcile of the poked Rollout",
        &["reconciled", &format!("resource_version={rv} ")],
    )
    .await?;
    Ok(())
}

/// Waits until the controller's log has a line containing every one of `parts`, and returns it.
pub async fn wait_log_line(
    controller: &ControllerProcess,
    what: &str,
    parts: &[&str],
) -> anyhow::Result<String> {
    wait_for(what, Duration::from_secs(60), || async {
        let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
        Ok(log
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string))
    })
    .await
}

/// How many times Events of `reason` were recorded for `name`, counting the repeats the
/// recorder folds into one Event's series.
pub async fn event_count(env: &TestEnv, name: &str, reason: &str) -> anyhow::Result<i32> {
    let api: Api<k8s_openapi::api::core::v1::Event> = env.api();
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        })
        .map(|e| {
            e.series
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1)
                .max(1)
        })
        .sum())
}

/// Creates Services selecting `app: web` (port 80), one per name.
pub async fn create_services(env: &TestEnv, names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        fixture::create_service(env, name, serde_json::json!({"app": "web"})).await?;
    }
    Ok(())
}

/// The pod-template-hash a Service selects, if Sluice set one.
pub async fn selector_hash(env: &TestEnv, service: &str) -> anyhow::Result<Option<String>> {
    let svc = env
        .api::<k8s_openapi::api::core::v1::Service>()
        .get(service)
        .await?;
    Ok(svc.spec.and_then(|s| s.selector).and_then(|s| {
        s.get(sluice::api::constants::LABEL_POD_TEMPLATE_HASH)
            .cloned()
    }))
}

/// Waits for an Event of `name` that `check` accepts, as `(type, reason, message)`. Events are
/// published after the status write they explain, so a test reads them by waiting, not at once.
pub async fn wait_event(
    env: &TestEnv,
    name: &str,
    what: &str,
    check: impl Fn(&(String, String, String)) -> bool,
) -> anyhow::Result<(String, String, String)> {
    wait_for(what, Duration::from_secs(60), || async {
        Ok(events_for(env, name).await?.into_iter().find(|e| check(e)))
    })
    .await
}

/// Waits until Service `service` selects revision `hash`.
pub async fn wait_selector(
    env: &TestEnv,
    service: &str,
    hash: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    wait_for(&format!("Service {service} on {hash}"), limit, || async {
        Ok((selector_hash(env, service).await?.as_deref() == Some(hash)).then_some(()))
    })
    .await
}

/// Runs `body` with a ServiceAccount for the controller: the account, named after the test's
/// namespace (as are its ClusterRole, binding and FlowSchemas, which are cluster-wide), with
/// `rules` (a JSON array of PolicyRules), and a kubeconfig holding its token. `body` gets the
/// account's name and the kubeconfig; the account and its cluster-wide objects are removed
/// afterwards, whatever `body` returns.
pub async fn with_service_account<F, Fut>(
    env: &TestEnv,
    rules: serde_json::Value,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let account = format!("sluice-{}", env.namespace);
    let result = async {
        let kubeconfig = e2e::identity::service_account_kubeconfig(
            &env.client,
            &env.cluster.kubeconfig,
            &env.namespace,
            &account,
            rules,
            &std::env::temp_dir().join(format!("{account}.kubeconfig")),
        )
        .await?;
        body(account.clone(), kubeconfig).await
    }
    .await;
    let _ = e2e::identity::remove_service_account(&env.client, &account).await;
    result
}

/// Waits until `n` Rollouts of the test's namespace are Healthy.
pub async fn wait_all_healthy(env: &TestEnv, n: usize, limit: Duration) -> anyhow::Result<()> {
    wait_for(&format!("{n} Rollouts Healthy"), limit, || async {
        let list = rollouts(env).list(&Default::default()).await?;
        let healthy = list
            .items
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy))
            .count();
        Ok((healthy == n).then_some(()))
    })
    .await
}
