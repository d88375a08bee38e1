//! The alerting rules (dashboards/alerts.yaml) through the real promtool (Debian's
//! `prometheus` package): they load, and each alert fires on series that reproduce it and
//! stays quiet otherwise (dashboards/alerts_test.yaml). The chart ships the same file.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

fn promtool(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dashboards())
        .output()
        .context("running promtool (Debian's prometheus package; scripts/deps.sh installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn the_alerting_rules_load_and_each_alert_fires_on_what_reproduces_it() -> anyhow::Result<()> {
    let (ok, text) = promtool(&["check", "rules", "alerts.yaml"])?;
    ensure!(
        ok && text.contains("SUCCESS"),
        "promtool check rules: {text}"
    );
    let (ok, text) = promtool(&["test", "rules", "alerts_test.yaml"])?;
    ensure!(
        ok && text.contains("SUCCESS"),
        "promtool test rules: {text}"
    );
    // Every alert of the file has a test that expects it to fire.
    let rules = std::fs::read_to_string(dashboards().join("alerts.yaml"))?;
    let tests = std::fs::read_to_string(dashboards().join("alerts_test.yaml"))?;
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            let fires = tests
                .split("alertname: ")
                .skip(1)
                .any(|t| t.starts_with(name) && t.contains("exp_labels"));
            ensure!(fires, "alerts_test.yaml has no case where {name} fires");
        }
    }
    Ok(())
}

#[test]
fn the_chart_ships_the_same_alerts() -> anyhow::Result<()> {
    let ours = std::fs::read(dashboards().join("alerts.yaml"))?;
    let shipped = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/sluice/files/alerts.yaml"),
    )?;
    ensure!(
        ours == shipped,
        "charts/sluice/files/alerts.yaml differs from dashboards/alerts.yaml (make chart-files)"
    );
    Ok(())
}
