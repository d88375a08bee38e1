//! Prometheus text as the controller, the API server and the traffic simulator serve it.

use std::collections::BTreeMap;

use super::{ControllerProcess, http_get};

pub use e2e::promtext::samples;

/// The controller's failed reconciles by reason (`sluice_reconcile_errors_total`, summed over
/// the kinds reconciled), from its own /metrics.
pub async fn reconcile_errors(
    controller: &ControllerProcess,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let (code, body) = http_get(controller, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    let mut by_reason = BTreeMap::new();
    for (labels, v) in samples(&body, "sluice_reconcile_errors_total") {
        if let Some(reason) = labels.get("reason") {
            *by_reason.entry(reason.clone()).or_insert(0) += v as u64;
        }
    }
    Ok(by_reason)
}

/// `promtool check metrics` (Debian's prometheus package) on `body`: names and types as
/// Prometheus's conventions want them (`_total` counters, `_seconds` units, no clashes).
pub async fn promtool_check(body: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::AsyncWriteExt;
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("promtool (Debian's prometheus package; scripts/deps.sh installs it)")?;
    if let Some(mut stdin) = promtool.stdin.take() {
        stdin.write_all(body.as_bytes()).await?;
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        promtool.wait_with_output(),
    )
    .await
    .context("promtool check metrics took over 60 s")??;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
