//! Sluice's Argo CD customizations (`integrations/argocd`: the health check and the actions)
//! run as Argo CD runs them, in gopher-lua (`e2e/argocdlua`, Argo CD's Lua libraries), over
//! Rollouts brought to each state by the real controller on the local control plane: the
//! health Argo CD shows for each, which actions it offers, and each action's patch applied as
//! Argo CD applies it (the status part to the status subresource, then the rest), after which
//! the Rollout must do what the action says.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::Monitoring;
use common::fixture::{
    create_rollout, patch_spec, set_image, wait_healthy, wait_paused_at, wait_promoted, web_canary,
};
use common::{ControllerProcess, create_services, phase, rollouts, wait_condition, wait_status};
use e2e::TestEnv;
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use sluice::api::rollout::{PauseReason, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(120);
const GAUGE: &str = "sluice_argocd_success_rate";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the checker in `mode` with `script` over the Rollout `name` as it is now (read with the
/// real kubectl, as Argo CD reads the live object).
async fn lua(env: &TestEnv, mode: &str, script: &str, name: &str) -> anyhow::Result<Value> {
    let bin = tokio::task::spawn_blocking(|| {
        common::go_tool("SLUICE_ARGOCD_LUA", "e2e/argocdlua/build.sh")
    })
    .await??;
    let live = env
        .kubectl(&["get", "rollouts.sluice.dev", name, "-o", "json"], None)
        .await?;
    ensure!(live.success, "kubectl get: {}", live.stderr);
    let file = std::env::temp_dir().join(format!("sluice-argocd-{}-{name}.json", env.namespace));
    tokio::fs::write(&file, &live.stdout).await?;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin)
            .arg(mode)
            .arg(repo(script))
            .arg(&file)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the Lua checker took over 30 s")??;
    ensure!(
        out.status.success(),
        "argocdlua {mode} {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The health Argo CD shows for the Rollout: (status, message).
async fn health(env: &TestEnv, name: &str) -> anyhow::Result<(String, String)> {
    let hs = lua(env, "health", "integrations/argocd/health.lua", name).await?;
    Ok((
        hs["status"].as_str().unwrap_or_default().to_string(),
        hs["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Waits until Argo CD would show `want` for the Rollout; returns the message.
async fn wait_health(env: &TestEnv, name: &str, want: &str) -> anyhow::Result<String> {
    let last = std::sync::Mutex::new((String::new(), String::new()));
    let found = e2e::wait_for(&format!("Argo CD health {want}"), LIMIT, || async {
        let now = health(env, name).await?;
        let message = (now.0 == want).then(|| now.1.clone());
        if let Ok(mut l) = last.lock() {
            *l = now;
        }
        Ok(message)
    })
    .await;
    found.with_context(|| format!("last health: {:?}", last.lock().map(|l| l.clone())))
}

/// The actions Argo CD offers (enabled) for the Rollout now.
async fn offered(env: &TestEnv, name: &str) -> anyhow::Result<BTreeSet<String>> {
    let found = lua(
        env,
        "discovery",
        "integrations/argocd/actions/discovery.lua",
        name,
    )
    .await?;
    let all = found.as_object().context("discovery returned no table")?;
    ensure!(all.len() == 6, "discovery names the six actions: {found}");
    Ok(all
        .iter()
        .filter(|(_, a)| a["disabled"] != json!(true))
        .map(|(n, _)| n.clone())
        .collect())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Runs `action` as Argo CD does: its patch, the status part to the status subresource first.
async fn act(env: &TestEnv, name: &str, action: &str) -> anyhow::Result<()> {
    let script = format!("integrations/argocd/actions/{action}.lua");
    let patches = lua(env, "action", &script, name).await?;
    let api = rollouts(env);
    let params = PatchParams::default();
    ensure!(
        !patches["status"].is_null(),
        "{action} changes the status: {patches}"
    );
    api.patch_status(name, &params, &Patch::Merge(&patches["status"]))
        .await?;
    if !patches["rest"].is_null() {
        api.patch(name, &params, &Patch::Merge(&patches["rest"]))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn argo_cd_shows_each_state_of_a_release_and_its_actions_steer_it() {
    TestEnv::run("argocd-actions", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let steps = json!({"steps": [{"setWeight": 50}, {"pause": {}}]});
        create_rollout(&env, &web_canary(2, steps)?).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;
        wait_health(&env, "web", "Healthy").await?;
        ensure!(
            offered(&env, "web").await? == set(&["pause"]),
            "at rest only pause"
        );

        // Paused by a step.
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        wait_health(&env, "web", "Suspended").await?;
        ensure!(
            offered(&env, "web").await? == set(&["promote", "promote-full", "abort", "pause"]),
            "paused by a step: {:?}",
            offered(&env, "web").await?
        );

        // pause and resume touch only the pause made by request.
        act(&env, "web", "pause").await?;
        let s = wait_status(&env, "web", "a pause by request", LIMIT, |s| {
            s.pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::UserPause)
        })
        .await?;
        ensure!(
            s.pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::CanaryPauseStep),
            "the step's pause stays: {:?}",
            s.pause_conditions
        );
        ensure!(offered(&env, "web").await?.contains("resume"));
        act(&env, "web", "resume").await?;
        let s = wait_status(&env, "web", "the pause by request lifted", LIMIT, |s| {
            !s.pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::UserPause)
        })
        .await?;
        ensure!(
            s.current_step_index == Some(1) && phase(&s) == Some(RolloutPhase::Paused),
            "still paused by its step: {s:?}"
        );

        // Aborted by a person: Suspended once no traffic reaches v2, not Degraded for ever.
        act(&env, "web", "abort").await?;
        wait_status(&env, "web", "the release aborted", LIMIT, |s| {
            s.abort == Some(true) && phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        let msg = wait_health(&env, "web", "Suspended").await?;
        ensure!(
            msg.contains("Rolled back") && msg.contains(&v1),
            "says the stable serves and what to do: {msg}"
        );
        ensure!(
            offered(&env, "web").await? == set(&["promote-full", "retry", "pause"]),
            "aborted: {:?}",
            offered(&env, "web").await?
        );

        // Retry: the release starts again from its first step.
        act(&env, "web", "retry").await?;
        wait_status(
            &env,
            "web",
            "the release retried and paused again",
            LIMIT,
            |s| {
                s.abort != Some(true)
                    && s.current_step_index == Some(1)
                    && phase(s) == Some(RolloutPhase::Paused)
            },
        )
        .await?;

        // Promote: past the pause, to the end.
        act(&env, "web", "promote").await?;
        let v2 = wait_promoted(&env, "web", &v1, LIMIT).await?;
        wait_health(&env, "web", "Healthy").await?;

        // Promote-full: every step skipped.
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        act(&env, "web", "promote-full").await?;
        wait_promoted(&env, "web", &v2, LIMIT).await?;

        // Progressing while new pods come up; Degraded once past the progress deadline.
        patch_spec(
            &env,
            "web",
            json!({"progressDeadlineSeconds": 10, "template": {
                "metadata": {"annotations": {BEHAVIOUR_ANNOTATION: "never-ready"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:4"}]}}}),
        )
        .await?;
        wait_status(&env, "web", "v4 releasing", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Progressing)
        })
        .await?;
        let (status, _) = health(&env, "web").await?;
        ensure!(
            status == "Progressing",
            "a release waiting for its pods, well within its deadline: {status}"
        );
        let msg = wait_health(&env, "web", "Degraded").await?;
        ensure!(msg.contains("ProgressDeadlineExceeded"), "{msg}");

        // A spec that cannot be released: Degraded, naming what is wrong.
        create_rollout(
            &env,
            &common::fixture::rollout(
                "broken",
                1,
                json!({"canary": {"stableService": "nowhere", "steps": [{"setWeight": 50}]}}),
            )?,
        )
        .await?;
        wait_condition(&env, "broken", "InvalidSpec", LIMIT).await?;
        let msg = wait_health(&env, "broken", "Degraded").await?;
        ensure!(msg.contains("nowhere"), "names the missing Service: {msg}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn argo_cd_shows_an_inconclusive_pause_and_a_rollback_by_analysis() {
    TestEnv::run("argocd-analysis", |env| async move {
        let mon = Monitoring::start(&env, GAUGE, 0.99).await?;
        let _controller = ControllerProcess::start(&env)?;
        mon.success_rate_template(&env, json!({"failureCondition": "result[0] < 0.5"}))
            .await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let analysis = json!({"templates": [{"templateName": "success-rate"}]});
        let steps = json!({"steps": [{"setWeight": 50}, {"analysis": analysis}]});
        create_rollout(&env, &web_canary(2, steps)?).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;

        // Neither condition holds: inconclusive, paused for a person.
        mon.set(0.8).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_status(
            &env,
            "web",
            "paused on an inconclusive analysis",
            LIMIT,
            |s| {
                s.pause_conditions
                    .iter()
                    .any(|p| p.reason == PauseReason::InconclusiveAnalysis)
            },
        )
        .await?;
        let msg = wait_health(&env, "web", "Suspended").await?;
        ensure!(msg.contains("inconclusive"), "{msg}");
        ensure!(offered(&env, "web").await?.contains("promote"));
        act(&env, "web", "promote").await?;
        // Promoted on the accepted verdict.
        let v2 = wait_promoted(&env, "web", &v1, LIMIT).await?;
        wait_health(&env, "web", "Healthy").await?;

        // The canary fails: rolled back by analysis; Suspended once v2 serves everything.
        mon.set(0.2).await?;
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_status(&env, "web", "v3 aborted by analysis", LIMIT, |s| {
            s.abort == Some(true) && phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        let msg = wait_health(&env, "web", "Suspended").await?;
        ensure!(
            msg.contains("Rolled back") && msg.contains(&v2) && msg.contains("success-rate"),
            "names the stable, what to do and the metric that failed: {msg}"
        );
        ensure!(offered(&env, "web").await?.contains("retry"));
        Ok(())
    })
    .await;
}

/// The block people paste into argocd-cm (and the chart's copy) holds exactly the scripts the
/// tests above run: `make argocd-cm` writes it.
#[test]
fn the_shipped_argocd_cm_block_holds_the_tested_scripts() -> anyhow::Result<()> {
    let read = |p: &str| std::fs::read_to_string(repo(p)).with_context(|| p.to_string());
    let block = read("integrations/argocd/argocd-cm.yaml")?;
    ensure!(
        block == read("charts/sluice/files/argocd-cm.yaml")?,
        "the chart's copy differs: run make argocd-cm"
    );
    let cm: Value = serde_saphyr::from_str(&block)?;
    let data = &cm["data"];
    ensure!(
        data["resource.customizations.health.sluice.dev_Rollout"].as_str()
            == Some(read("integrations/argocd/health.lua")?.as_str()),
        "the health check differs from health.lua: run make argocd-cm"
    );
    let actions: Value = serde_saphyr::from_str(
        data["resource.customizations.actions.sluice.dev_Rollout"]
            .as_str()
            .context("no actions")?,
    )?;
    ensure!(
        actions["discovery.lua"].as_str()
            == Some(read("integrations/argocd/actions/discovery.lua")?.as_str()),
        "discovery.lua differs: run make argocd-cm"
    );
    let definitions = actions["definitions"]
        .as_array()
        .context("no definitions")?;
    let names: Vec<&str> = definitions
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    ensure!(
        names
            == [
                "promote",
                "promote-full",
                "abort",
                "retry",
                "pause",
                "resume"
            ],
        "{names:?}"
    );
    for d in definitions {
        let name = d["name"].as_str().unwrap_or_default();
        ensure!(
            d["action.lua"].as_str()
                == Some(read(&format!("integrations/argocd/actions/{name}.lua"))?.as_str()),
            "{name}.lua differs: run make argocd-cm"
        );
    }
    Ok(())
}
