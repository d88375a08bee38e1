//! Router objects are watched: when someone else (a GitOps sync) writes git's weights back
//! onto a VirtualService or an HTTPRoute mid-canary, Sluice puts its weights back within 2 s,
//! without waiting for a periodic reconcile.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{ControllerProcess, create_services, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);
/// How soon Sluice must undo a write of git's weights.
const RESTORED_WITHIN: Duration = Duration::from_secs(2);

fn dynamic(env: &TestEnv, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(env.client.clone(), &env.namespace, &ar)
}

fn spec(o: &DynamicObject) -> Value {
    o.data.get("spec").cloned().unwrap_or(Value::Null)
}

fn rollout(traffic: Value) -> anyhow::Result<Rollout> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}},
            "strategy": {"canary": {
                "stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": traffic, "steps": [{"setWeight": 20}, {"pause": {}}]
            }}
        }
    }))?)
}

/// Releases v2 and waits until it pauses at 20%.
async fn canary_at_20(env: &TestEnv) -> anyhow::Result<()> {
    wait_status(env, "web", "v1 Healthy", LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Healthy)
    })
    .await?;
    rollouts(env)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:2"}]}}}})),
        )
        .await?;
    wait_status(env, "web", "paused at 20%", LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Paused) && s.current_step_index == Some(1)
    })
    .await?;
    Ok(())
}

/// (stable, canary) weights of the VirtualService's `primary` route.
fn istio_weights(spec: &Value) -> (i64, i64) {
    let route = spec["http"]
        .as_array()
        .and_then(|h| h.iter().find(|r| r["name"] == "primary"))
        .cloned()
        .unwrap_or(Value::Null);
    let w = |host: &str| {
        route["route"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"]["host"] == host))
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(-1)
    };
    (w("web-stable"), w("web-canary"))
}

/// (stable, canary) weights of the HTTPRoute's split rule.
fn gateway_weights(spec: &Value) -> (i64, i64) {
    let refs = spec["rules"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))
        })
        .map(|r| r["backendRefs"].clone())
        .unwrap_or(Value::Null);
    let w = |n: &str| {
        refs.as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == n))
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    (w("web-stable"), w("web-canary"))
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
        e2e::routers::install_router_crds(&env.client).await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let api = dynamic(&env, "networking.istio.io", "VirtualService");
        let vs: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]}
        }))?;
        let git = spec(&api.create(&PostParams::default(), &vs).await?);
        let _c = ControllerProcess::start(&env)?;
        rollouts(&env)
            .create(
                &PostParams::default(),
                &rollout(json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}))?,
            )
            .await?;
        canary_at_20(&env).await?;
        let took = git_sync_is_undone(&api, "http", &git, istio_weights).await?;
        eprintln!("VirtualService weights restored {} ms after the sync", took.as_millis());
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
        e2e::routers::install_router_crds(&env.client).await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let api = dynamic(&env, "gateway.networking.k8s.io", "HTTPRoute");
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "shop-gateway"}], "rules": [
                {"backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]}
        }))?;
        let git = spec(&api.create(&PostParams::default(), &route).await?);
        let _c = ControllerProcess::start(&env)?;
        rollouts(&env)
            .create(&PostParams::default(), &rollout(json!({"gatewayAPI": {"httpRoute": "web"}}))?)
            .await?;
        canary_at_20(&env).await?;
        let took = git_sync_is_undone(&api, "rules", &git, gateway_weights)
            .await
            .context("first sync")?;
        eprintln!("HTTPRoute weights restored {} ms after the sync", took.as_millis());
        Ok(())
    })
    .await;
}
