//! Real helm (built from its Go module by e2e/helm/build.sh) and what it renders from
//! `charts/sluice`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;

const HELM_LIMIT: Duration = Duration::from_secs(120);

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/sluice")
}

pub struct Helm {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs real helm with `args`, its cache and configuration in the temp dir.
pub async fn helm(args: &[&str]) -> anyhow::Result<Helm> {
    let bin = tokio::task::spawn_blocking(|| super::go_tool("SLUICE_HELM", "e2e/helm/build.sh"))
        .await??;
    let home = std::env::temp_dir().join("sluice-helm");
    let child = tokio::process::Command::new(bin)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting helm")?;
    let out = tokio::time::timeout(HELM_LIMIT, child.wait_with_output())
        .await
        .with_context(|| format!("helm {args:?} did not finish within {HELM_LIMIT:?}"))??;
    Ok(Helm {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs helm as `helm BEFORE... <the chart> AFTER... --set VALUE...`.
pub async fn on_chart(before: &[&str], after: &[&str], values: &[&str]) -> anyhow::Result<Helm> {
    let chart = chart().display().to_string();
    let sets = sets(values);
    let argv: Vec<&str> = before
        .iter()
        .copied()
        .chain([chart.as_str()])
        .chain(after.iter().copied())
        .chain(sets.iter().map(String::as_str))
        .collect();
    helm(&argv).await
}

/// `--set` flags for each value.
pub fn sets(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| ["--set".into(), v.to_string()])
        .collect()
}

/// `helm template` of the chart as `release` in `namespace` with `values` (and `extra` flags):
/// the rendered objects.
pub async fn render(
    release: &str,
    namespace: &str,
    values: &[&str],
    extra: &[&str],
) -> anyhow::Result<Vec<Value>> {
    let after: Vec<&str> = ["--namespace", namespace]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let out = on_chart(&["template", release], &after, values).await?;
    ensure!(
        out.success,
        "helm template {values:?} {extra:?} failed: {}",
        out.stderr
    );
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(&out.stdout)
        .with_context(|| format!("helm template {values:?}: output is not YAML"))?;
    Ok(docs
        .into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .collect())
}

/// `helm install` of the chart as `release` into `namespace` of the cluster of `kubeconfig`.
pub async fn install(
    kubeconfig: &Path,
    release: &str,
    namespace: &str,
    values: &[&str],
) -> anyhow::Result<Helm> {
    let kubeconfig = kubeconfig.display().to_string();
    on_chart(
        &["install", release],
        &["--kubeconfig", &kubeconfig, "--namespace", namespace],
        values,
    )
    .await
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> anyhow::Result<&'a Value> {
    match of_kind(docs, kind).as_slice() {
        [d] => Ok(d),
        other => bail!("expected one {kind}, rendered {}", other.len()),
    }
}

/// Whether a Role or ClusterRole grants `verb` on `resource` of `group`.
pub fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    let has = |v: &Value, want: &str| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x == want || x == "*"))
    };
    role["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            has(&r["apiGroups"], group) && has(&r["resources"], resource) && has(&r["verbs"], verb)
        })
    })
}
