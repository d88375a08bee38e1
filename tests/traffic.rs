//! Traffic routing through the real `sluice` controller, against Istio's and Gateway API's
//! real CRDs (from their pinned Go modules): weights read back from the API server at every
//! step, aborts, deletion, a concurrent writer, and bad input.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{
    create_rollout, delete_rollout, promote, replica_set_of_revision, set_abort, set_image,
    wait_healthy, wait_paused_at, web_canary,
};
use common::routers::{
    create_object, destination_rules, gateway_weights, http_routes, istio_weights,
    primary_virtual_service, spec_of, virtual_services,
};
use common::{
    ControllerProcess, create_services, phase, rollouts, selector_hash, wait_condition, wait_status,
};
use e2e::{TestEnv, wait_for};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::{Rollout, RolloutPhase, RolloutStatus};

const LIMIT: Duration = Duration::from_secs(90);

/// Rollout `web`: 2 pods, a canary over the Services `web-stable` and `web-canary` routed by
/// `traffic` through `steps`.
fn rollout(traffic: Value, steps: Value) -> anyhow::Result<Rollout> {
    web_canary(
        2,
        json!({"scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
            "trafficRouting": traffic, "steps": steps}),
    )
}

/// Istio's and Gateway API's CRDs, and the Services `web-stable`, `web-canary` and `web`.
async fn routers_and_services(env: &TestEnv) -> anyhow::Result<()> {
    e2e::routers::install_router_crds(&env.client).await?;
    create_services(env, &["web-stable", "web-canary", "web"]).await
}

async fn paused_at(env: &TestEnv, step: i32) -> anyhow::Result<RolloutStatus> {
    wait_paused_at(env, "web", step, LIMIT).await
}

/// The (stable, canary) weights of the VirtualService's `primary` http route, read from the
/// API server.
async fn vs_weights(env: &TestEnv) -> anyhow::Result<(i64, i64)> {
    Ok(istio_weights(
        &spec_of(&virtual_services(env), "web").await?,
    ))
}

/// (stable, canary) weights of the HTTPRoute's split rule, read from the API server.
async fn route_weights(api: &Api<DynamicObject>) -> anyhow::Result<(i64, i64)> {
    Ok(gateway_weights(&spec_of(api, "web").await?))
}

fn route_names(spec: &Value) -> Vec<String> {
    spec["http"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

const STEPS: &str = r#"[{"setWeight": 20}, {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"exact": "yes"}}]}}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]"#;

#[tokio::test]
async fn istio_host_level_canary_walks_its_steps_aborts_and_gives_the_route_back() {
    TestEnv::run("traffic-istio-host", |env| async move {
        routers_and_services(&env).await?;
        let vs = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "web-stable"}}]},
                {"name": "primary", "retries": {"attempts": 3}, "route": [
                    {"destination": {"host": "web-stable"}, "weight": 100},
                    {"destination": {"host": "web-canary"}, "weight": 0}]}]}
        });
        create_object(&virtual_services(&env), vs).await?;
        let written = spec_of(&virtual_services(&env), "web").await?;
        let _c = ControllerProcess::start(&env)?;
        let ro = rollout(
            json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}, "managedRoutes": [{"name": "beta"}]}),
            serde_json::from_str(STEPS)?,
        )?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        ensure!(vs_weights(&env).await? == (100, 0));

        set_image(&env, "web", "registry.example/web:2").await?;
        paused_at(&env, 2).await?;
        ensure!(vs_weights(&env).await? == (80, 20), "step 0: {:?}", vs_weights(&env).await?);
        let spec = spec_of(&virtual_services(&env), "web").await?;
        ensure!(route_names(&spec) == ["beta", "admin", "primary"], "{spec}");
        ensure!(spec["http"][0]["match"] == json!([{"headers": {"x-beta": {"exact": "yes"}}}]), "{spec}");
        ensure!(spec["http"][2]["retries"] == json!({"attempts": 3}), "the user's fields stay");
        // Another field manager changes an unrelated part mid-rollout.
        virtual_services(&env)
            .patch(
                "web",
                &PatchParams {
                    field_manager: Some("someone-else".into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({"spec": {"gateways": ["mesh", "shop-gateway"]}})),
            )
            .await?;
        promote(&env, "web").await?;
        paused_at(&env, 4).await?;
        ensure!(vs_weights(&env).await? == (40, 60));
        let spec = spec_of(&virtual_services(&env), "web").await?;
        ensure!(spec["gateways"] == json!(["mesh", "shop-gateway"]), "both changes survive: {spec}");
        promote(&env, "web").await?;
        let done = wait_status(&env, "web", "v2 stable", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
        })
        .await?;
        ensure!(vs_weights(&env).await? == (100, 0), "all traffic on the (new) stable");
        let spec = spec_of(&virtual_services(&env), "web").await?;
        ensure!(route_names(&spec) == ["admin", "primary"], "header route removed: {spec}");

        // v3 aborted at 20%: 100/0 again, the header route gone, the rest untouched.
        set_image(&env, "web", "registry.example/web:3").await?;
        paused_at(&env, 2).await?;
        ensure!(vs_weights(&env).await? == (80, 20));
        set_abort(&env, "web", true).await?;
        wait_status(&env, "web", "aborted", LIMIT, |s| phase(s) == Some(RolloutPhase::Degraded)).await?;
        wait_for("traffic back on stable", LIMIT, || async {
            Ok((vs_weights(&env).await? == (100, 0)).then_some(()))
        })
        .await?;
        let mut written = written;
        written["gateways"] = json!(["mesh", "shop-gateway"]);
        let spec = spec_of(&virtual_services(&env), "web").await?;
        ensure!(spec == written, "the VirtualService is as its writers wrote it: {spec}");
        ensure!(done.stable_rs.is_some());

        // Deleting the Rollout gives it back as written.
        delete_rollout(&env, "web", LIMIT).await?;
        ensure!(spec_of(&virtual_services(&env), "web").await? == written);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn istio_subset_level_canary_points_the_subsets_at_the_revisions() {
    TestEnv::run("traffic-istio-subset", |env| async move {
        routers_and_services(&env).await?;
        let dr_api = destination_rules(&env);
        create_object(&dr_api, json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "web"},
            "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                     "subsets": [{"name": "stable", "labels": {"app": "web"}}, {"name": "canary", "labels": {"app": "web"}}]}
        })).await?;
        create_object(&virtual_services(&env), json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]}
        })).await?;
        let (dr_written, vs_written) = (spec_of(&dr_api, "web").await?, spec_of(&virtual_services(&env), "web").await?);
        let _c = ControllerProcess::start(&env)?;
        let ro = rollout(
            json!({"istio": {"virtualService": {"name": "web"},
                   "destinationRule": {"name": "web", "stableSubsetName": "stable", "canarySubsetName": "canary"}}}),
            json!([{"setWeight": 30}, {"pause": {}}]),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let s = paused_at(&env, 1).await?;
        let v2 = s.current_pod_hash.context("current")?;
        ensure!(vs_weights(&env).await? == (70, 30));
        let dr = spec_of(&dr_api, "web").await?;
        ensure!(dr["subsets"][0]["labels"] == json!({"app": "web", "rollouts-pod-template-hash": v1}), "{dr}");
        ensure!(dr["subsets"][1]["labels"] == json!({"app": "web", "rollouts-pod-template-hash": v2}), "{dr}");
        ensure!(dr["trafficPolicy"] == json!({"loadBalancer": {"simple": "ROUND_ROBIN"}}));
        promote(&env, "web").await?;
        wait_status(&env, "web", "v2 stable", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str())
        })
        .await?;
        ensure!(vs_weights(&env).await? == (100, 0));
        let dr = spec_of(&dr_api, "web").await?;
        ensure!(dr["subsets"][0]["labels"]["rollouts-pod-template-hash"] == json!(v2), "{dr}");
        // Deleting the Rollout gives both objects back as written.
        delete_rollout(&env, "web", LIMIT).await?;
        ensure!(spec_of(&dr_api, "web").await? == dr_written, "{}", spec_of(&dr_api, "web").await?);
        ensure!(spec_of(&virtual_services(&env), "web").await? == vs_written);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn gateway_api_canary_walks_its_steps_beside_a_concurrent_writer() {
    TestEnv::run("traffic-gateway", |env| async move {
        routers_and_services(&env).await?;
        let api = http_routes(&env);
        create_object(&api, json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "shop-gateway"}], "hostnames": ["web.example.com"], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}], "backendRefs": [{"name": "web", "port": 80}]},
                {"backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]}
        })).await?;
        let written = spec_of(&api, "web").await?;
        let _c = ControllerProcess::start(&env)?;
        let ro = rollout(
            json!({"gatewayAPI": {"httpRoute": "web"}, "managedRoutes": [{"name": "beta"}]}),
            serde_json::from_str(STEPS)?,
        )?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        paused_at(&env, 2).await?;
        ensure!(route_weights(&api).await? == (80, 20));
        let spec = spec_of(&api, "web").await?;
        ensure!(spec["rules"][0]["name"] == "beta", "{spec}");
        // Another field manager changes an unrelated part mid-rollout.
        api.patch(
            "web",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "web"}, "spec": {"hostnames": ["web.example.com", "shop.example.com"]}})),
        )
        .await?;
        promote(&env, "web").await?;
        paused_at(&env, 4).await?;
        ensure!(route_weights(&api).await? == (40, 60));
        let spec = spec_of(&api, "web").await?;
        ensure!(spec["hostnames"] == json!(["web.example.com", "shop.example.com"]), "both changes survive: {spec}");
        set_abort(&env, "web", true).await?;
        wait_for("100/0 after the abort", LIMIT, || async {
            Ok((route_weights(&api).await? == (100, 0)).then_some(()))
        })
        .await?;
        let spec = spec_of(&api, "web").await?;
        ensure!(spec["rules"].as_array().map(|r| r.len()) == Some(2), "the header rule is gone: {spec}");
        ensure!(spec["rules"][0]["matches"][0]["path"]["value"] == "/static", "the user's rule stays");
        // Deleting the Rollout: the route as written, with the other writer's change.
        delete_rollout(&env, "web", LIMIT).await?;
        let mut expected = written.clone();
        expected["hostnames"] = json!(["web.example.com", "shop.example.com"]);
        ensure!(spec_of(&api, "web").await? == expected, "{}", spec_of(&api, "web").await?);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_route_or_a_route_claimed_twice_is_invalid_spec_and_nothing_is_written() {
    TestEnv::run("traffic-invalid", |env| async move {
        routers_and_services(&env).await?;
        create_object(&virtual_services(&env), primary_virtual_service()).await?;
        let before = virtual_services(&env).get("web").await?.metadata.resource_version;
        let _c = ControllerProcess::start(&env)?;
        let ro = rollout(json!({"istio": {"virtualService": {"name": "web", "routes": ["nope"]}}}), json!([{"setWeight": 10}]))?;
        create_rollout(&env, &ro).await?;
        let (s, _) = wait_condition(&env, "web", INVALID_SPEC, LIMIT).await?;
        let msg = s.message.unwrap_or_default();
        ensure!(msg.contains("trafficRouting.istio.virtualService:") && msg.contains("no http route named \"nope\""), "{msg}");
        ensure!(virtual_services(&env).get("web").await?.metadata.resource_version == before, "nothing written");

        // Fixed: it runs; a second Rollout naming the same VirtualService is refused.
        rollouts(&env)
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"strategy": {"canary": {"trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}}}}})))
            .await?;
        wait_status(&env, "web", "Healthy", LIMIT, |s| phase(s) == Some(RolloutPhase::Healthy)).await?;
        let mut other = rollout(json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}), json!([{"setWeight": 10}]))?;
        other.metadata.name = Some("web-copy".into());
        other.spec.selector = serde_json::from_value(json!({"matchLabels": {"app": "web-copy"}}))?;
        other.spec.template = serde_json::from_value(json!({"metadata": {"labels": {"app": "web-copy"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}))?;
        create_rollout(&env, &other).await?;
        let (s, _) = wait_condition(&env, "web-copy", INVALID_SPEC, LIMIT).await?;
        let msg = s.message.unwrap_or_default();
        ensure!(msg.contains("already routed by Rollout \"web\""), "{msg}");
        Ok(())
    })
    .await;
}

/// (spec.replicas, available) of the ReplicaSet of revision `hash`, read from the API server.
async fn rs_size(env: &TestEnv, hash: &str) -> anyhow::Result<(i32, i32)> {
    let rs = replica_set_of_revision(env, hash)
        .await?
        .with_context(|| format!("ReplicaSet of {hash}"))?;
    Ok((rs.replicas, rs.available))
}

#[tokio::test]
async fn dynamic_stable_scale_follows_the_weight_and_grows_back_before_an_abort_returns_traffic() {
    TestEnv::run("traffic-dynamic-stable", |env| async move {
        routers_and_services(&env).await?;
        create_object(&virtual_services(&env), primary_virtual_service()).await?;
        let _c = ControllerProcess::start(&env)?;
        let mut ro = rollout(
            json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}}),
            json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]),
        )?;
        ro.spec.replicas = Some(4);
        let canary = ro.spec.strategy.canary.as_mut().context("canary")?;
        canary.dynamic_stable_scale = Some(true);
        canary.scale_down_delay_seconds = None;
        // Pods take a few seconds to become ready, so a stable growing back is seen not ready.
        let template = ro.spec.template.as_mut().context("template")?;
        template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations = Some(
            [(
                e2e::nodesim::READY_AFTER_ANNOTATION.to_string(),
                "4".to_string(),
            )]
            .into(),
        );
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 4, LIMIT).await?;
        ensure!(rs_size(&env, &v1).await?.0 == 4);

        set_image(&env, "web", "registry.example/web:2").await?;
        paused_at(&env, 1).await?;
        ensure!(
            vs_weights(&env).await? == (75, 25),
            "{:?}",
            vs_weights(&env).await?
        );
        wait_for("the stable at 75% of 4 pods", LIMIT, || async {
            Ok((rs_size(&env, &v1).await?.0 == 3).then_some(()))
        })
        .await?;
        promote(&env, "web").await?;
        paused_at(&env, 3).await?;
        ensure!(
            vs_weights(&env).await? == (50, 50),
            "{:?}",
            vs_weights(&env).await?
        );
        wait_for("the stable at 50% of 4 pods", LIMIT, || async {
            Ok((rs_size(&env, &v1).await?.0 == 2).then_some(()))
        })
        .await?;

        // Abort: the stable grows back to 4, and traffic returns to it only as its pods become
        // available: whenever the route shows all traffic on stable, its 4 pods are available.
        set_abort(&env, "web", true).await?;
        let size = wait_for("all traffic back on stable", LIMIT, || async {
            if vs_weights(&env).await? != (100, 0) {
                return Ok(None);
            }
            Ok(Some(rs_size(&env, &v1).await?))
        })
        .await?;
        ensure!(
            size == (4, 4),
            "all traffic back on stable with the stable at {size:?}"
        );
        let s = wait_status(&env, "web", "aborted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        ensure!(s.stable_rs.as_deref() == Some(v1.as_str()));
        ensure!(
            selector_hash(&env, "web-canary").await?.as_deref() == Some(v1.as_str()),
            "the canary Service back on stable"
        );
        Ok(())
    })
    .await;
}
