//! A router CRD installed after Sluice started is picked up without a restart.
//!
//! This needs a cluster where Istio's VirtualService CRD does not exist yet, and deleting a
//! CRD deletes every object of its kind in every namespace: on the shared control plane that
//! would pull VirtualServices from under other tests. So this test binary starts a control
//! plane of its own (and its node simulator), and is the only test in it.

mod common;

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use common::fixture::{create_rollout, set_image, web_canary};
use common::routers::{
    create_object, istio_weights, primary_virtual_service, spec_of, virtual_services,
};
use common::{
    ControllerProcess, create_services, has_condition, phase, wait_condition, wait_status,
};
use e2e::{TestEnv, wait_for};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::json;
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::RolloutPhase;

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
        let ro = web_canary(
            1,
            json!({
                "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                "steps": [{"setWeight": 20}, {"pause": {}}]
            }),
        )?;
        create_rollout(&env, &ro).await?;
        let (s, _) = wait_condition(&env, "web", INVALID_SPEC, LIMIT)
            .await
            .context("InvalidSpec without the CRD")?;
        let msg = s.message.unwrap_or_default();
        ensure!(msg.contains(VS_CRD), "the message names the missing CRD: {msg}");

        // Istio is installed, then its VirtualService: the same controller process routes it.
        e2e::routers::install_router_crds(&env.client).await?;
        let vs_api = virtual_services(&env);
        create_object(&vs_api, primary_virtual_service()).await?;
        wait_status(&env, "web", "v1 Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && !has_condition(s, INVALID_SPEC)
        })
        .await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_for("the VirtualService at 80/20", LIMIT, || async {
            let weights = istio_weights(&spec_of(&vs_api, "web").await?);
            Ok((weights == (80, 20)).then_some(()))
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
