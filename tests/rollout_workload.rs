//! A Rollout with `workloadRef`: the Deployment stays in git, Sluice runs its pod template.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::{ControllerProcess, events_for, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn workload_ref_takes_over_the_deployment_and_follows_its_template() {
    TestEnv::run("workload-ref", |env| async move {
        let deployments: Api<Deployment> = env.api();
        let d: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}
            }
        }))?;
        deployments.create(&PostParams::default(), &d).await?;
        wait_for("the Deployment's 3 pods ready", LIMIT, || async {
            Ok((deployments.get("web").await?.status.and_then(|s| s.ready_replicas) == Some(3)).then_some(()))
        })
        .await?;

        let mut controller = ControllerProcess::start(&env)?;
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": 1}}]}}
            }
        }))?;
        rollouts(&env).create(&PostParams::default(), &ro).await?;
        let healthy = wait_status(&env, "web", "the Rollout's own pods available", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(3)
        })
        .await?;
        let v1 = healthy.stable_rs.clone().context("stableRS")?;
        wait_for("the Deployment scaled to zero", LIMIT, || async {
            Ok((deployments.get("web").await?.spec.and_then(|s| s.replicas) == Some(0)).then_some(()))
        })
        .await?;
        // The Event is published after the scale-down it explains: wait for it, do not race it.
        wait_for("a WorkloadScaledDown Event", LIMIT, || async {
            let events = events_for(&env, "web").await?;
            Ok(events.iter().any(|e| e.1 == "WorkloadScaledDown").then_some(()))
        })
        .await?;

        // A new image in the Deployment (as git would change it) is a new release.
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:2"}]}}}})),
            )
            .await?;
        controller.restart()?;
        let done = wait_status(&env, "web", "v2 released from the Deployment's template", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref().is_some_and(|h| h != v1) && s.available_replicas == Some(3)
        })
        .await?;
        ensure!(done.current_step_index == Some(2), "{:?}", done.current_step_index);
        ensure!(deployments.get("web").await?.spec.and_then(|s| s.replicas) == Some(0), "the Deployment stays at zero");
        Ok(())
    })
    .await;
}
