//! A Rollout with `workloadRef`: the Deployment stays in git, Sluice runs its pod template.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, merged, replica_sets_of, wait_healthy};
use common::{ControllerProcess, events_for, phase, wait_event, wait_status};
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice::api::constants::LABEL_POD_TEMPLATE_HASH;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

/// Deployment `web` as git has it: 3 pods of `registry.example/web:1` with pod `annotations`.
async fn create_deployment(env: &TestEnv, annotations: serde_json::Value) -> anyhow::Result<()> {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
            }
        }
    }))?;
    env.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

/// Rollout `web` of 3 pods that runs Deployment `web`'s template (`workload_ref`'s fields
/// beside the reference), released by canary `steps`.
async fn create_workload_rollout(
    env: &TestEnv,
    workload_ref: serde_json::Value,
    steps: serde_json::Value,
) -> anyhow::Result<()> {
    let reference = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    let ro: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "workloadRef": merged(reference, workload_ref),
            "strategy": {"canary": {"steps": steps}}
        }
    }))?;
    create_rollout(env, &ro).await
}

#[tokio::test]
async fn workload_ref_takes_over_the_deployment_and_follows_its_template() {
    TestEnv::run("workload-ref", |env| async move {
        let deployments: Api<Deployment> = env.api();
        create_deployment(&env, json!({})).await?;
        wait_for("the Deployment's 3 pods ready", LIMIT, || async {
            Ok((deployments.get("web").await?.status.and_then(|s| s.ready_replicas) == Some(3)).then_some(()))
        })
        .await?;

        let mut controller = ControllerProcess::start(&env)?;
        create_workload_rollout(&env, json!({}), json!([{"setWeight": 50}, {"pause": {"duration": 1}}])).await?;
        let v1 = wait_healthy(&env, "web", 3, LIMIT)
            .await
            .context("the Rollout's own pods available")?;
        wait_for("the Deployment scaled to zero", LIMIT, || async {
            Ok((deployments.get("web").await?.spec.and_then(|s| s.replicas) == Some(0)).then_some(()))
        })
        .await?;
        // The Event is published after the scale-down it explains: wait for it, do not race it.
        wait_event(&env, "web", "a WorkloadScaledDown Event", |e| e.1 == "WorkloadScaledDown").await?;

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

#[tokio::test]
async fn workload_ref_scale_down_progressively_hands_over_pod_by_pod() {
    TestEnv::run("workload-ref-progressive", |env| async move {
        let deployments: Api<Deployment> = env.api();
        // The Rollout runs this template too: its pods stay unready until the test says so.
        create_deployment(&env, json!({BEHAVIOUR_ANNOTATION: "never-ready"})).await?;

        let _controller = ControllerProcess::start(&env)?;
        create_workload_rollout(
            &env,
            json!({"scaleDown": "progressively"}),
            json!([{"setWeight": 50}]),
        )
        .await?;
        let pods: Api<Pod> = env.api();
        let ours = ListParams::default().labels(LABEL_POD_TEMPLATE_HASH);
        let names = wait_for("the Rollout's 3 pods", LIMIT, || async {
            let mut names: Vec<String> = pods
                .list(&ours)
                .await?
                .items
                .iter()
                .map(|p| p.name_any())
                .collect();
            names.sort();
            Ok((names.len() == 3).then_some(names))
        })
        .await?;
        let replicas =
            || async { anyhow::Ok(deployments.get("web").await?.spec.and_then(|s| s.replicas)) };
        ensure!(
            replicas().await? == Some(3),
            "no Rollout pod available: the Deployment keeps all"
        );

        // Each Rollout pod that becomes available takes one replica from the Deployment.
        for (i, name) in names.iter().enumerate() {
            pods.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {BEHAVIOUR_ANNOTATION: "ready"}}}),
                ),
            )
            .await?;
            let want = 2 - i as i32;
            wait_for(&format!("the Deployment at {want}"), LIMIT, || async {
                Ok((replicas().await? == Some(want)).then_some(()))
            })
            .await?;
            // What Sluice counts as the Rollout's available pods: its ReplicaSets' status, which
            // the ReplicaSet controller wrote before Sluice could act on it. (The Rollout's own
            // status is written after the Deployment, in the same reconcile.)
            let sets = replica_sets_of(&env, "web").await?;
            let available: i32 = sets.iter().map(|rs| rs.available).sum();
            ensure!(
                available > i as i32,
                "the Deployment shrank before the Rollout's pod was available: {sets:?}"
            );
        }
        wait_healthy(&env, "web", 3, LIMIT)
            .await
            .context("Healthy on its own pods")?;
        // Events are published after the scale-downs they explain: wait for them.
        wait_for("a WorkloadScaledDown Event per step", LIMIT, || async {
            let events = events_for(&env, "web").await?;
            Ok((events
                .iter()
                .filter(|e| e.1 == "WorkloadScaledDown")
                .count()
                == 3)
                .then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}
