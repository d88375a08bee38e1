//! Blue-green releases through the real `sluice` controller on the local control plane.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::{ControllerProcess, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::constants::LABEL_POD_TEMPLATE_HASH;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

async fn setup(env: &TestEnv, strategy: serde_json::Value) -> anyhow::Result<String> {
    let api: Api<Service> = env.api();
    for name in ["web-active", "web-preview"] {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))?;
        api.create(&PostParams::default(), &svc).await?;
    }
    let mut bg = json!({"activeService": "web-active", "previewService": "web-preview", "scaleDownDelaySeconds": 3});
    if let (Some(b), Some(extra)) = (bg.as_object_mut(), strategy.as_object()) {
        b.extend(extra.clone());
    }
    let ro: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}},
            "strategy": {"blueGreen": bg}
        }
    }))?;
    rollouts(env).create(&PostParams::default(), &ro).await?;
    let healthy = wait_status(env, "web", "first revision Healthy", LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Healthy)
    })
    .await?;
    healthy.stable_rs.context("stableRS")
}

async fn selector(env: &TestEnv, name: &str) -> anyhow::Result<Option<String>> {
    let api: Api<Service> = env.api();
    Ok(api
        .get(name)
        .await?
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get(LABEL_POD_TEMPLATE_HASH).cloned()))
}

async fn release_v2(env: &TestEnv) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:2"}]}}}})),
        )
        .await?;
    Ok(())
}

async fn replicas(env: &TestEnv, hash: &str) -> anyhow::Result<i32> {
    let api: Api<ReplicaSet> = env.api();
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={hash}")))
        .await?;
    Ok(list
        .items
        .first()
        .and_then(|r| r.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(-1))
}

#[tokio::test]
async fn blue_green_auto_promotion_switches_once_the_preview_is_available() {
    TestEnv::run("bluegreen-auto", |env| async move {
        let mut controller = ControllerProcess::start(&env)?;
        let v1 = setup(&env, json!({"previewReplicaCount": 1})).await?;
        ensure!(selector(&env, "web-active").await?.as_deref() == Some(v1.as_str()));
        release_v2(&env).await?;
        controller.restart()?;
        let done = wait_status(&env, "web", "v2 active and Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() != Some(v1.as_str())
        })
        .await?;
        let v2 = done.stable_rs.clone().context("stableRS")?;
        ensure!(
            selector(&env, "web-active").await?.as_deref() == Some(v2.as_str()),
            "active Service on v2"
        );
        ensure!(
            selector(&env, "web-preview").await?.as_deref() == Some(v2.as_str()),
            "preview Service on v2"
        );
        ensure!(
            done.blue_green
                .as_ref()
                .and_then(|b| b.active_selector.clone())
                .as_deref()
                == Some(v2.as_str())
        );
        // The old revision keeps serving for scaleDownDelaySeconds, then goes.
        wait_for("v1 scaled to zero after the delay", LIMIT, || async {
            Ok((replicas(&env, &v1).await? == 0).then_some(()))
        })
        .await?;
        ensure!(replicas(&env, &v2).await? == 3);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn blue_green_manual_promotion_keeps_the_active_service_until_promoted() {
    TestEnv::run("bluegreen-manual", |env| async move {
        let mut controller = ControllerProcess::start(&env)?;
        let v1 = setup(&env, json!({"autoPromotionEnabled": false})).await?;
        release_v2(&env).await?;
        let paused = wait_status(&env, "web", "preview available and paused", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let v2 = paused.current_pod_hash.clone().context("currentPodHash")?;
        ensure!(
            selector(&env, "web-preview").await?.as_deref() == Some(v2.as_str()),
            "preview Service on v2"
        );
        ensure!(
            selector(&env, "web-active").await?.as_deref() == Some(v1.as_str()),
            "active Service still v1"
        );
        ensure!(
            replicas(&env, &v2).await? == 3 && replicas(&env, &v1).await? == 3,
            "both revisions at full size"
        );
        // Killed while paused and started again: still paused, still on v1.
        controller.restart()?;
        common::wait_first_reconcile(&controller).await?;
        ensure!(
            selector(&env, "web-active").await?.as_deref() == Some(v1.as_str()),
            "active Service still v1 after a restart"
        );
        let again = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            phase(&again) == Some(RolloutPhase::Paused),
            "{:?}",
            again.phase
        );

        rollouts(&env)
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"pauseConditions": null}})),
            )
            .await?;
        wait_status(&env, "web", "v2 active", LIMIT, |s| {
            s.stable_rs.as_deref() == Some(v2.as_str()) && phase(s) == Some(RolloutPhase::Healthy)
        })
        .await?;
        ensure!(
            selector(&env, "web-active").await?.as_deref() == Some(v2.as_str()),
            "active Service on v2"
        );
        Ok(())
    })
    .await;
}
