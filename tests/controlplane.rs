//! The local control plane behaves like a real cluster: the real scheduler, ReplicaSet,
//! EndpointSlice and garbage-collection controllers act on pods the node simulator runs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_service, ready_endpoints};
use e2e::nodesim::{BEHAVIOUR_ANNOTATION, EXIT_CODE_ANNOTATION};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(90);

fn deployment(
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 8080}]}]}
            }
        }
    }))?)
}

async fn pods_of(env: &TestEnv, app: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = env.api();
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn deployment_gets_ready_pods_and_its_service_lists_them() {
    TestEnv::run("deployment-ready", |env| async move {
        let deployments: Api<Deployment> = env.api();
        deployments
            .create(&PostParams::default(), &deployment("web", 3, json!({}))?)
            .await?;
        create_service(&env, "web", json!({"app": "web"})).await?;

        // The real Deployment and ReplicaSet controllers, scheduler and node simulator together.
        wait_for("3 ready replicas", LIMIT, || async {
            let d = deployments.get("web").await?;
            Ok((d.status.and_then(|s| s.ready_replicas) == Some(3)).then_some(()))
        })
        .await?;
        let rs: Api<ReplicaSet> = env.api();
        let sets = rs
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items;
        ensure!(
            sets.len() == 1,
            "one ReplicaSet expected, found {}",
            sets.len()
        );
        ensure!(
            sets[0]
                .owner_references()
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == "web"),
            "the ReplicaSet is owned by the Deployment"
        );

        let pods = pods_of(&env, "web").await?;
        ensure!(pods.len() == 3, "3 pods expected, found {}", pods.len());
        let mut ips = BTreeSet::new();
        for p in &pods {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            ensure!(
                node.starts_with("sim-node-"),
                "{} scheduled to {node:?}",
                p.name_any()
            );
            ensure!(is_ready(p), "{} is not Ready", p.name_any());
            let ip: std::net::Ipv4Addr = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .context("pod IP")?
                .parse()?;
            let o = ip.octets();
            ensure!(
                o[0] == 198 && (o[1] & 0xfe) == 18,
                "{ip} is outside the reserved test range"
            );
            ips.insert(ip.to_string());
        }
        ensure!(ips.len() == 3, "pod IPs are distinct: {ips:?}");

        wait_for("the EndpointSlice to list the 3 pod IPs", LIMIT, || async {
            let listed: BTreeSet<String> = ready_endpoints(&env, "web")
                .await?
                .into_iter()
                .flat_map(|e| e.addresses)
                .collect();
            Ok((listed == ips).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn failing_pods_look_as_a_kubelet_would_report_them() {
    TestEnv::run("failing-pods", |env| async move {
        let deployments: Api<Deployment> = env.api();
        for (name, behaviour) in [
            ("crash", "crashloop"),
            ("pull", "image-pull"),
            ("slow", "never-ready"),
        ] {
            let d = deployment(
                name,
                1,
                json!({BEHAVIOUR_ANNOTATION: behaviour, EXIT_CODE_ANNOTATION: "3"}),
            )?;
            deployments.create(&PostParams::default(), &d).await?;
        }

        let crash = wait_for(
            "a crash-looping pod restarting at least twice",
            LIMIT,
            || async {
                let pods = pods_of(&env, "crash").await?;
                Ok(pods.into_iter().find(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|c| c.first())
                        .is_some_and(|c| c.restart_count >= 2)
                }))
            },
        )
        .await?;
        let c = crash
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .context("status")?;
        let waiting = c
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .context("waiting")?;
        ensure!(
            waiting.reason.as_deref() == Some("CrashLoopBackOff"),
            "{waiting:?}"
        );
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .context("last state")?;
        ensure!(last.exit_code == 3, "last exit code {}", last.exit_code);
        ensure!(!is_ready(&crash), "a crash-looping pod is not Ready");

        wait_for("ImagePullBackOff", LIMIT, || async {
            let pods = pods_of(&env, "pull").await?;
            Ok(pods
                .iter()
                .any(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| {
                                c.state
                                    .as_ref()
                                    .and_then(|s| s.waiting.as_ref())
                                    .and_then(|w| w.reason.as_deref())
                                    == Some("ImagePullBackOff")
                            })
                        })
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
                })
                .then_some(()))
        })
        .await?;

        let slow = wait_for("a Running pod that never turns Ready", LIMIT, || async {
            let pods = pods_of(&env, "slow").await?;
            Ok(pods
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
        })
        .await?;
        ensure!(!is_ready(&slow), "never-ready pod is Ready");
        let d = deployments.get("slow").await?;
        ensure!(
            d.status.and_then(|s| s.ready_replicas).unwrap_or(0) == 0,
            "Deployment counts no ready replica"
        );

        // A healthy pod can be made to fail while it runs.
        deployments
            .create(&PostParams::default(), &deployment("turns", 1, json!({}))?)
            .await?;
        let healthy = wait_for("a Ready pod", LIMIT, || async {
            Ok(pods_of(&env, "turns").await?.into_iter().find(is_ready))
        })
        .await?;
        let pods: Api<Pod> = env.api();
        pods.patch(
            &healthy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {BEHAVIOUR_ANNOTATION: "oomkilled"}}}),
            ),
        )
        .await?;
        wait_for("the pod to be OOM-killed", LIMIT, || async {
            let p = pods.get(&healthy.name_any()).await?;
            let oom = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.last_state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled") && t.exit_code == 137);
            Ok((oom && !is_ready(&p)).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn scale_down_and_delete_remove_pods() {
    TestEnv::run("scale-down", |env| async move {
        let deployments: Api<Deployment> = env.api();
        deployments
            .create(&PostParams::default(), &deployment("shrink", 3, json!({}))?)
            .await?;
        wait_for("3 ready replicas", LIMIT, || async {
            let d = deployments.get("shrink").await?;
            Ok((d.status.and_then(|s| s.ready_replicas) == Some(3)).then_some(()))
        })
        .await?;
        deployments
            .patch(
                "shrink",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 1}})),
            )
            .await?;
        // Graceful deletion completes only when the "kubelet" confirms it.
        wait_for("1 pod left", LIMIT, || async {
            Ok((pods_of(&env, "shrink").await?.len() == 1).then_some(()))
        })
        .await?;

        deployments
            .delete("shrink", &DeleteParams::background())
            .await?;
        let rs: Api<ReplicaSet> = env.api();
        wait_for(
            "the garbage collector to remove the ReplicaSet and pod",
            LIMIT,
            || async {
                let sets = rs
                    .list(&ListParams::default().labels("app=shrink"))
                    .await?
                    .items
                    .len();
                let pods = pods_of(&env, "shrink").await?.len();
                Ok((sets == 0 && pods == 0).then_some(()))
            },
        )
        .await?;
        Ok(())
    })
    .await;
}
