//! A router CRD installed after Sluice started is picked up without a restart.
//!
//! This needs a cluster where Istio's VirtualService CRD does not exist yet, and deleting a
//! CRD deletes every object of its kind in every namespace: on the shared control plane that
//! would pull VirtualServices from under other tests. So this test binary starts a control
//! plane of its own (and its node simulator), and is the only test in it.

mod common;

use std::time::Duration;

use anyhow::ensure;
use common::{ControllerProcess, create_services, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);
const VS_CRD: &str = "virtualservices.networking.istio.io";

#[tokio::test]
async fn a_virtual_service_crd_installed_after_sluice_started_is_routed_without_a_restart() {
    e2e::harness::use_private_cluster();
    TestEnv::run("watch-late-crd", |env| async move {
        let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
        ensure!(
            crds.get_opt(VS_CRD).await?.is_none(),
            "a fresh control plane has no Istio CRDs"
        );
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let mut controller = ControllerProcess::start(&env)?;
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}},
                "strategy": {"canary": {
                    "stableService": "web-stable", "canaryService": "web-canary",
                    "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                    "steps": [{"setWeight": 20}, {"pause": {}}]
                }}
            }
        }))?;
        rollouts(&env).create(&PostParams::default(), &ro).await?;
        let s = wait_status(&env, "web", "InvalidSpec without the CRD", LIMIT, |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "InvalidSpec" && c.status == "True")
        })
        .await?;
        let msg = s.message.unwrap_or_default();
        ensure!(msg.contains(VS_CRD), "the message names the missing CRD: {msg}");

        // Istio is installed, then its VirtualService: the same controller process routes it.
        e2e::routers::install_router_crds(&env.client).await?;
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        ));
        let vs_api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), &env.namespace, &ar);
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]}
        }))?;
        vs_api.create(&PostParams::default(), &vs).await?;
        wait_status(&env, "web", "v1 Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && !s
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "InvalidSpec" && c.status == "True")
        })
        .await?;
        rollouts(&env)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:2"}]}}}})),
            )
            .await?;
        wait_for("the VirtualService at 80/20", LIMIT, || async {
            let spec = vs_api.get("web").await?.data["spec"].clone();
            let weights: Vec<i64> = spec["http"][0]["route"]
                .as_array()
                .map(|r| r.iter().filter_map(|d| d["weight"].as_i64()).collect())
                .unwrap_or_default();
            Ok((weights == [80, 20]).then_some(()))
        })
        .await?;
        ensure!(
            controller.still_running()?,
            "the controller that routed it is the one started before the CRD"
        );
        Ok(())
    })
    .await;
}
