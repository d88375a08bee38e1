//! `kubectl sluice` through the real kubectl: plugin discovery, get, promote, pause, resume,
//! abort, retry and promote --full against a Rollout the real controller runs.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy, wait_paused_at};
use common::{ControllerProcess, create_services, phase, rollouts, wait_status};
use e2e::TestEnv;
use serde_json::json;
use sluice::api::rollout::{PauseReason, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

/// Runs `kubectl sluice ARGS` with the plugin found on the PATH, as a user would.
async fn plugin(env: &TestEnv, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
        .parent()
        .context("plugin dir")?
        .to_path_buf();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"))
        .arg("sluice")
        .args(args)
        .args(["-n", &env.namespace])
        .env("PATH", path)
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn kubectl_sluice_steers_a_release() {
    TestEnv::run("cli-steer", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-canary"]).await?;
        let ro = rollout(
            "web",
            2,
            json!({"canary": {"canaryService": "web-canary", "abortScaleDownDelaySeconds": 1,
                "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}),
        )?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;

        let (ok, _, err) = plugin(&env, &["abort", "web"]).await?;
        ensure!(
            !ok && err.contains("nothing to abort"),
            "abort of a settled Rollout must be refused clearly: {err}"
        );
        let (ok, _, err) = plugin(&env, &["get", "nope"]).await?;
        ensure!(!ok && err.contains("not found"), "{err}");

        set_image(&env, "web", "registry.example/web:2").await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        let (ok, out, err) = plugin(&env, &["get", "web"]).await?;
        ensure!(ok, "{err}");
        ensure!(
            out.contains("Step:       1/3") && out.contains("Paused") && out.contains("canary 50%"),
            "{out}"
        );

        // A pause by request sits beside the step's own pause; resume lifts only it.
        let (ok, out, err) = plugin(&env, &["pause", "web"]).await?;
        ensure!(ok && out.contains("paused"), "{err}");
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::UserPause),
            "{:?}",
            st.pause_conditions
        );
        let (ok, _, err) = plugin(&env, &["resume", "web"]).await?;
        ensure!(ok, "{err}");
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.pause_conditions.len() == 1
                && st.pause_conditions[0].reason == PauseReason::CanaryPauseStep,
            "{:?}",
            st.pause_conditions
        );

        let (ok, _, err) = plugin(&env, &["promote", "web"]).await?;
        ensure!(ok, "{err}");
        let v2 = wait_status(&env, "web", "v2 promoted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.current_pod_hash == s.stable_rs
        })
        .await?
        .stable_rs
        .context("stableRS")?;

        // Abort, retry and promote --full.
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_status(&env, "web", "v3 paused at step 1", LIMIT, |s| {
            s.current_step_index == Some(1) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let (ok, out, err) = plugin(&env, &["abort", "web"]).await?;
        ensure!(ok && out.contains("aborted"), "{err}");
        wait_status(&env, "web", "Degraded after abort", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        let (ok, _, err) = plugin(&env, &["retry", "web"]).await?;
        ensure!(ok, "{err}");
        wait_status(&env, "web", "paused again after retry", LIMIT, |s| {
            s.current_step_index == Some(1) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let (ok, _, err) = plugin(&env, &["promote", "web", "--full"]).await?;
        ensure!(ok, "{err}");
        let done = wait_status(&env, "web", "v3 promoted in full", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref().is_some_and(|h| h != v2)
                && s.current_pod_hash == s.stable_rs
        })
        .await?;
        ensure!(
            done.current_step_index == Some(3),
            "{:?}",
            done.current_step_index
        );
        Ok(())
    })
    .await;
}
