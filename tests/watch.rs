//! Router objects are watched: when someone else (a GitOps sync) writes git's weights back
//! onto a VirtualService or an HTTPRoute mid-canary, Sluice puts its weights back within 2 s,
//! without waiting for a periodic reconcile.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, set_image, wait_healthy, wait_paused_at, web_canary};
use common::routers::{
    create_object, gateway_weights, http_routes, istio_weights, primary_virtual_service, spec,
    split_http_route, virtual_services,
};
use common::{ControllerProcess, create_services};
use e2e::{TestEnv, wait_for};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sluice::api::rollout::Rollout;

const LIMIT: Duration = Duration::from_secs(90);
/// How soon Sluice must undo a write of git's weights.
const RESTORED_WITHIN: Duration = Duration::from_secs(2);

/// Rollout `web`: 1 pod, a canary over the Services `web-stable` and `web-canary` routed by
/// `traffic`, paused at 20%.
fn rollout(traffic: Value) -> anyhow::Result<Rollout> {
    web_canary(
        1,
        json!({"trafficRouting": traffic, "steps": [{"setWeight": 20}, {"pause": {}}]}),
    )
}

/// Istio's and Gateway API's CRDs, and the Services `web-stable` and `web-canary`.
async fn routers_and_services(env: &TestEnv) -> anyhow::Result<()> {
    e2e::routers::install_router_crds(&env.client).await?;
    create_services(env, &["web-stable", "web-canary"]).await
}

/// Releases v2 and waits until it pauses at 20%.
async fn canary_at_20(env: &TestEnv) -> anyhow::Result<()> {
    wait_healthy(env, "web", 1, LIMIT).await?;
    set_image(env, "web", "registry.example/web:2").await?;
    wait_paused_at(env, "web", 1, LIMIT).await?;
    Ok(())
}

/// Writes `field` of the spec as git has it (what a GitOps sync does), checks the write took
/// (the weights read `(100, 0)` in the server's answer), and waits for Sluice to put
/// `(80, 20)` back; returns how long that took.
async fn git_sync_is_undone(
    api: &Api<DynamicObject>,
    field: &str,
    git: &Value,
    weights: fn(&Value) -> (i64, i64),
) -> anyhow::Result<Duration> {
    ensure!(
        weights(&spec(&api.get("web").await?)) == (80, 20),
        "Sluice's weights before the sync"
    );
    let synced = api
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("argocd-controller".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {field: git[field].clone()}})),
        )
        .await?;
    let written = Instant::now();
    ensure!(
        weights(&spec(&synced)) == (100, 0),
        "the sync wrote git's weights: {}",
        spec(&synced)
    );
    wait_for(
        "Sluice's weights back after the sync",
        RESTORED_WITHIN,
        || async { Ok((weights(&spec(&api.get("web").await?)) == (80, 20)).then_some(())) },
    )
    .await?;
    Ok(written.elapsed())
}

#[tokio::test]
async fn git_weights_written_onto_a_virtual_service_mid_canary_are_put_back_within_2s() {
    TestEnv::run("watch-vs", |env| async move {
        routers_and_services(&env).await?;
        let api = virtual_services(&env);
        let git = spec(&create_object(&api, primary_virtual_service()).await?);
        let _c = ControllerProcess::start(&env)?;
        let ro =
            rollout(json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}))?;
        create_rollout(&env, &ro).await?;
        canary_at_20(&env).await?;
        let took = git_sync_is_undone(&api, "http", &git, istio_weights).await?;
        eprintln!(
            "VirtualService weights restored {} ms after the sync",
            took.as_millis()
        );
        // Again: each sync is undone, not only the first.
        let took = git_sync_is_undone(&api, "http", &git, istio_weights).await?;
        eprintln!("and {} ms after a second sync", took.as_millis());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn git_weights_written_onto_an_http_route_mid_canary_are_put_back_within_2s() {
    TestEnv::run("watch-httproute", |env| async move {
        routers_and_services(&env).await?;
        let api = http_routes(&env);
        let git = spec(&create_object(&api, split_http_route()).await?);
        let _c = ControllerProcess::start(&env)?;
        create_rollout(&env, &rollout(json!({"gatewayAPI": {"httpRoute": "web"}}))?).await?;
        canary_at_20(&env).await?;
        let took = git_sync_is_undone(&api, "rules", &git, gateway_weights)
            .await
            .context("first sync")?;
        eprintln!(
            "HTTPRoute weights restored {} ms after the sync",
            took.as_millis()
        );
        Ok(())
    })
    .await;
}
