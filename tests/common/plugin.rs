//! `kubectl sluice` run as a user runs it: the real kubectl, finding the built plugin on the
//! PATH, against the test's namespace.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use e2e::TestEnv;

/// What a run of the plugin printed and how it ended.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// PATH with the built plugin's directory first, as a user who installed it has.
pub fn plugin_path() -> anyhow::Result<String> {
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
        .parent()
        .context("plugin dir")?
        .to_path_buf();
    Ok(format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// `kubectl ARGS` (the real kubectl) with the plugin on the PATH and `kubeconfig`.
pub fn kubectl_cmd(
    env: &TestEnv,
    kubeconfig: &Path,
    args: &[&str],
) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"));
    cmd.args(args)
        .env("PATH", plugin_path()?)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `kubectl ARGS` to the end (within 3 minutes).
pub async fn kubectl_run(env: &TestEnv, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Out> {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        kubectl_cmd(env, kubeconfig, args)?.output(),
    )
    .await
    .with_context(|| format!("kubectl {args:?} did not end within 180 s"))??;
    Ok(Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `kubectl sluice ARGS -n <the test's namespace>` with the admin kubeconfig.
pub async fn sluice(env: &TestEnv, args: &[&str]) -> anyhow::Result<Out> {
    let mut all = vec!["sluice"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-n", &env.namespace]);
    kubectl_run(env, &env.cluster.kubeconfig, &all).await
}

/// A directory of its own for the files a test writes (kubeconfigs, links), under Cargo's
/// temporary directory for integration tests, named after the test's namespace.
pub fn scratch(env: &TestEnv) -> anyhow::Result<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&env.namespace);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
