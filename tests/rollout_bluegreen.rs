//! Blue-green releases through the real `sluice` controller on the local control plane.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{json_body, serve};
use common::fixture::{
    create_rollout, merged, promote, replica_set_of_revision, replica_sets_of, rollout, set_image,
    wait_healthy,
};
use common::{ControllerProcess, create_services, phase, rollouts, selector_hash, wait_status};
use e2e::{TestEnv, wait_for};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::analysis::{AnalysisRun, AnalysisTemplate};
use sluice::api::constants::LABEL_POD_TEMPLATE_HASH;
use sluice::api::rollout::RolloutPhase;

const LIMIT: Duration = Duration::from_secs(90);

/// The Services `web-active` and `web-preview`, and Rollout `web` (3 pods, blue-green over
/// them with `strategy`'s fields); waits until its first revision is Healthy and returns its
/// hash.
async fn setup(env: &TestEnv, strategy: serde_json::Value) -> anyhow::Result<String> {
    create_services(env, &["web-active", "web-preview"]).await?;
    let bg = json!({"activeService": "web-active", "previewService": "web-preview", "scaleDownDelaySeconds": 3});
    let ro = rollout("web", 3, json!({ "blueGreen": merged(bg, strategy) }))?;
    create_rollout(env, &ro).await?;
    wait_healthy(env, "web", 3, LIMIT).await
}

/// spec.replicas of the ReplicaSet of revision `hash`; -1 when there is none.
async fn replicas(env: &TestEnv, hash: &str) -> anyhow::Result<i32> {
    Ok(replica_set_of_revision(env, hash)
        .await?
        .map_or(-1, |rs| rs.replicas))
}

#[tokio::test]
async fn blue_green_auto_promotion_switches_once_the_preview_is_available() {
    TestEnv::run("bluegreen-auto", |env| async move {
        let mut controller = ControllerProcess::start(&env)?;
        let v1 = setup(&env, json!({"previewReplicaCount": 1})).await?;
        ensure!(selector_hash(&env, "web-active").await?.as_deref() == Some(v1.as_str()));
        set_image(&env, "web", "registry.example/web:2").await?;
        controller.restart()?;
        let done = wait_status(&env, "web", "v2 active and Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() != Some(v1.as_str())
        })
        .await?;
        let v2 = done.stable_rs.clone().context("stableRS")?;
        ensure!(
            selector_hash(&env, "web-active").await?.as_deref() == Some(v2.as_str()),
            "active Service on v2"
        );
        ensure!(
            selector_hash(&env, "web-preview").await?.as_deref() == Some(v2.as_str()),
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
        set_image(&env, "web", "registry.example/web:2").await?;
        let paused = wait_status(&env, "web", "preview available and paused", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let v2 = paused.current_pod_hash.clone().context("currentPodHash")?;
        ensure!(
            selector_hash(&env, "web-preview").await?.as_deref() == Some(v2.as_str()),
            "preview Service on v2"
        );
        ensure!(
            selector_hash(&env, "web-active").await?.as_deref() == Some(v1.as_str()),
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
            selector_hash(&env, "web-active").await?.as_deref() == Some(v1.as_str()),
            "active Service still v1 after a restart"
        );
        let again = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            phase(&again) == Some(RolloutPhase::Paused),
            "{:?}",
            again.phase
        );

        promote(&env, "web").await?;
        wait_status(&env, "web", "v2 active", LIMIT, |s| {
            s.stable_rs.as_deref() == Some(v2.as_str()) && phase(s) == Some(RolloutPhase::Healthy)
        })
        .await?;
        ensure!(
            selector_hash(&env, "web-active").await?.as_deref() == Some(v2.as_str()),
            "active Service on v2"
        );
        Ok(())
    })
    .await;
}

/// A JSON health endpoint that always says ok, for a `web` analysis that passes.
async fn healthy_endpoint() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { json_body(json!({"ok": true})) }),
    );
    Ok(format!("{}/health", serve(app).await?))
}

/// The hashes of the Rollout's ReplicaSets as the API server has them, with their replicas
/// (those being deleted left out).
async fn replica_sets(env: &TestEnv) -> anyhow::Result<Vec<(String, i32)>> {
    let mut sets: Vec<(String, i32)> = replica_sets_of(env, "web")
        .await?
        .into_iter()
        .filter(|r| !r.deleting)
        .map(|r| (r.hash, r.replicas))
        .collect();
    sets.sort();
    Ok(sets)
}

/// The names of the AnalysisRuns that judged revision `hash`.
async fn runs_of(env: &TestEnv, hash: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<AnalysisRun> = env.api();
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={hash}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect())
}

/// Releases `image` and waits until its revision is active and Healthy; returns its hash.
async fn release(env: &TestEnv, image: &str, previous: &str) -> anyhow::Result<String> {
    set_image(env, "web", image).await?;
    let done = wait_status(
        env,
        "web",
        &format!("{image} active and Healthy"),
        LIMIT,
        |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref().is_some_and(|h| h != previous)
        },
    )
    .await?;
    done.stable_rs.context("stableRS")
}

#[tokio::test]
async fn blue_green_keeps_revision_history_limit_old_replica_sets_and_prunes_their_runs() {
    TestEnv::run("bluegreen-history", |env| async move {
        let url = healthy_endpoint().await?;
        let template: AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "health"},
            "spec": {"metrics": [{"name": "health", "successCondition": "result.ok == true",
                "provider": {"web": {"url": url}}}]}
        }))?;
        env.api::<AnalysisTemplate>()
            .create(&PostParams::default(), &template)
            .await?;
        let _controller = ControllerProcess::start(&env)?;
        let v1 = setup(
            &env,
            json!({"scaleDownDelaySeconds": 0,
                   "prePromotionAnalysis": {"templates": [{"templateName": "health"}]}}),
        )
        .await?;
        rollouts(&env)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"revisionHistoryLimit": 1}})),
            )
            .await?;
        let v2 = release(&env, "registry.example/web:2", &v1).await?;
        let v3 = release(&env, "registry.example/web:3", &v2).await?;
        ensure!(
            !runs_of(&env, &v2).await?.is_empty(),
            "v2 was judged by a pre-promotion run"
        );
        let v4 = release(&env, "registry.example/web:4", &v3).await?;

        // v4 serves; of the old revisions only the newest, v3, is kept (scaled to zero).
        let mut want = vec![(v3.clone(), 0), (v4.clone(), 3)];
        want.sort();
        let kept = wait_for("one old ReplicaSet left", LIMIT, || async {
            let sets = replica_sets(&env).await?;
            Ok((sets == want).then_some(sets))
        })
        .await;
        ensure!(
            kept.is_ok(),
            "ReplicaSets (hash, replicas): {:?}, want {want:?}",
            replica_sets(&env).await?
        );
        // The pruned revision's runs went with it; the kept ones still have theirs.
        wait_for("v2's AnalysisRuns deleted", LIMIT, || async {
            Ok(runs_of(&env, &v2).await?.is_empty().then_some(()))
        })
        .await?;
        ensure!(!runs_of(&env, &v3).await?.is_empty(), "v3 keeps its run");
        ensure!(!runs_of(&env, &v4).await?.is_empty(), "v4 keeps its run");
        Ok(())
    })
    .await;
}
