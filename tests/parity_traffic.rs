//! Argo Rollouts parity for traffic routing and the objects a Rollout names (issue 11): each
//! test states the Argo Rollouts behaviour it checks, with the Argo source it comes from, and
//! checks Sluice does the same on the local control plane (Istio's and Gateway API's real
//! CRDs; nothing routes real traffic, so the tests read back the objects Sluice writes).

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{
    create_rollout, patch_status, promote, replicas_by_hash, rollout, set_abort, set_image,
    wait_healthy, wait_paused_at, web_canary,
};
use common::routers::{create_object, destination_rules, spec, spec_of, virtual_services};
use common::{
    ControllerProcess, create_services, has_condition, phase, rollouts, wait_condition, wait_status,
};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::constants::LABEL_POD_TEMPLATE_HASH;
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice::traffic::given_back::ANNOTATION_ROUTED_BY;

const LIMIT: Duration = Duration::from_secs(60);

/// Argo Rollouts: rollout/templateref.go `informerBasedTemplateResolver.Resolve` copies the
/// referenced Deployment's selector when `spec.selector` is nil, without persisting it; a
/// missing Deployment leaves the Rollout unhealthy until it appears (test/e2e/functional_test.go
/// `TestWorkloadRef`). Sluice shows the missing Deployment as `InvalidSpec` naming
/// `spec.workloadRef`, then runs the Deployment's pods under its selector plus the
/// pod-template-hash, and leaves `spec.selector` unset.
#[tokio::test]
async fn workload_ref_without_a_selector_takes_the_deployments() {
    TestEnv::run("parity-workload-selector", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": 1}}]}}
            }
        }))?;
        create_rollout(&env, &ro).await?;
        let (_, c) = wait_condition(&env, "web", INVALID_SPEC, LIMIT).await?;
        ensure!(
            c.message.contains("spec.workloadRef") && c.message.contains("not found"),
            "the missing Deployment is named: {}",
            c.message
        );

        let d: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web", "tier": "front"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
                }
            }
        }))?;
        env.api::<Deployment>()
            .create(&PostParams::default(), &d)
            .await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT)
            .await
            .context("Healthy once the Deployment exists")?;

        let sets: Api<ReplicaSet> = env.api();
        let rs = sets
            .list(&ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={v1}")))
            .await?
            .items
            .into_iter()
            .next()
            .context("the stable ReplicaSet")?;
        let selector = rs.spec.map(|s| s.selector.match_labels.unwrap_or_default());
        let want = [
            ("app", "web"),
            ("rollouts-pod-template-hash", v1.as_str()),
            ("tier", "front"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        ensure!(
            selector == Some(want.into_iter().collect()),
            "the Deployment's selector and the hash: {selector:?}"
        );
        let stored = rollouts(&env).get("web").await?;
        ensure!(
            stored.spec.selector.is_none(),
            "the resolved selector is not persisted"
        );
        let shown = stored.status.and_then(|s| s.selector);
        ensure!(
            shown.as_deref() == Some("app=web,tier=front"),
            "status.selector for the scale subresource: {shown:?}"
        );

        // A new template in the Deployment is a new release under the same selector.
        env.api::<Deployment>()
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "image": "registry.example/web:2"}]}}}})),
            )
            .await?;
        wait_status(&env, "web", "v2 released", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref().is_some_and(|h| h != v1)
                && s.available_replicas == Some(2)
        })
        .await?;
        wait_for("no InvalidSpec", LIMIT, || async {
            let s = rollouts(&env).get("web").await?.status.unwrap_or_default();
            Ok((!common::has_condition(&s, INVALID_SPEC)).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

/// Patches Rollout `web`'s spec with `patch` (a JSON merge patch).
async fn patch_spec(env: &TestEnv, patch: Value) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": patch})),
        )
        .await?;
    Ok(())
}

/// Argo Rollouts: service/service.go `syncService` with utils/service/service.go
/// `CheckRolloutForService` takes the pod-template-hash key out of a Service its Rollout no
/// longer references (test/e2e/functional_test.go `TestBlueGreenToCanary`: after the switch the
/// active Service's selector is exactly the user's). Sluice does the same, and the canary
/// starts from the old active revision as its stable one.
#[tokio::test]
async fn blue_green_switched_to_canary_gives_the_services_back() {
    TestEnv::run("parity-bluegreen-to-canary", |env| async move {
        create_services(&env, &["web-active", "web-preview"]).await?;
        let _controller = ControllerProcess::start(&env)?;
        let bg = json!({"blueGreen": {"activeService": "web-active",
            "previewService": "web-preview", "scaleDownDelaySeconds": 5}});
        create_rollout(&env, &rollout("web", 2, bg)?).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;
        let selector = |name: &'static str| {
            let env = &env;
            async move {
                let s = env.api::<Service>().get(name).await?;
                anyhow::Ok(s.spec.and_then(|s| s.selector).unwrap_or_default())
            }
        };
        ensure!(
            selector("web-active")
                .await?
                .get("rollouts-pod-template-hash")
                == Some(&v1),
            "blue-green keys the active Service"
        );

        patch_spec(
            &env,
            json!({
                "template": {"metadata": {"annotations": {"switched": "yes"}}},
                "strategy": {"blueGreen": null,
                    "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
            }),
        )
        .await?;
        let paused = wait_paused_at(&env, "web", 1, LIMIT).await?;
        ensure!(
            paused.stable_rs.as_deref() == Some(v1.as_str()),
            "{paused:?}"
        );
        let user_only = [("app".to_string(), "web".to_string())].into();
        for name in ["web-active", "web-preview"] {
            wait_for(&format!("{name} given back"), LIMIT, || async {
                Ok((selector(name).await? == user_only).then_some(()))
            })
            .await?;
        }
        let by_hash = replicas_by_hash(&env, "web").await?;
        let canary: i32 = by_hash
            .iter()
            .filter(|(h, _)| **h != v1)
            .map(|(_, r)| *r)
            .sum();
        ensure!(
            canary == 1,
            "setWeight 50 of 2 pods: one canary pod: {by_hash:?}"
        );
        Ok(())
    })
    .await;
}

/// A route between the Services `web-stable` and `web-canary` (or the subsets `stable` and
/// `canary` of host `web`), all traffic on stable.
fn split(subsets: bool) -> Value {
    let dest = |side: &str| {
        if subsets {
            json!({"host": "web", "subset": side})
        } else {
            json!({"host": format!("web-{side}")})
        }
    };
    json!([{"destination": dest("stable"), "weight": 100},
        {"destination": dest("canary"), "weight": 0}])
}

/// (stable, canary) weights of the first `protocol` route of a VirtualService's spec.
fn first_route_weights(spec: &Value, protocol: &str) -> (i64, i64) {
    let w = |i: usize| {
        spec[protocol][0]["route"][i]["weight"]
            .as_i64()
            .unwrap_or(-1)
    };
    (w(0), w(1))
}

fn routed_by(o: &DynamicObject) -> Option<String> {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ROUTED_BY).cloned())
}

/// Argo Rollouts: rollout/trafficrouting/istio/istio.go `reconcileVirtualService` and
/// `getTlsRouteIndexesToPatch` / `getTcpRouteIndexesToPatch` split each section present on its
/// own, so a VirtualService with only `tls` (or only `tcp`) routes and a Rollout naming no
/// routes gets the weights on its one route; rollout/trafficrouting/istio/controller.go
/// `syncDestinationRule` takes the hash label out of a DestinationRule its Rollout no longer
/// names. Sluice does both, and (a chosen difference: Argo Rollouts leaves a VirtualService as
/// last written) gives the VirtualService it no longer names back as on deletion: all traffic
/// on stable, its mark gone.
#[tokio::test]
async fn tls_and_tcp_only_virtual_services_and_routers_no_longer_named() {
    TestEnv::run("parity-istio-unnamed", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        create_services(&env, &["web-stable", "web-canary", "web"]).await?;
        let vs = virtual_services(&env);
        let dr = destination_rules(&env);
        let tls_match = json!([{"port": 443, "sniHosts": ["web.example.com"]}]);
        create_object(&vs, json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web-tls"},
            "spec": {"hosts": ["web.example.com"],
                "tls": [{"match": tls_match, "route": split(true)}]}
        }))
        .await?;
        create_object(&vs, json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web-tcp"},
            "spec": {"hosts": ["web"], "tcp": [{"match": [{"port": 9000}], "route": split(false)}]}
        }))
        .await?;
        create_object(&dr, json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "canary", "labels": {"app": "web"}}]}
        }))
        .await?;

        let _controller = ControllerProcess::start(&env)?;
        let traffic = json!({"istio": {"virtualService": {"name": "web-tls"},
            "destinationRule": {"name": "web", "stableSubsetName": "stable", "canarySubsetName": "canary"}}});
        let ro = web_canary(2, json!({"trafficRouting": traffic,
            "steps": [{"setWeight": 20}, {"pause": {}}]}))?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let paused = wait_paused_at(&env, "web", 1, LIMIT).await?;
        ensure!(!has_condition(&paused, INVALID_SPEC), "a tls-only VirtualService is valid: {paused:?}");
        let tls = spec_of(&vs, "web-tls").await?;
        ensure!(first_route_weights(&tls, "tls") == (80, 20), "tls route at 80/20: {tls}");
        ensure!(routed_by(&vs.get("web-tls").await?).is_some(), "the VirtualService is marked");
        let subsets = spec_of(&dr, "web").await?["subsets"].clone();
        ensure!(
            subsets.as_array().is_some_and(|s| s.iter().all(|s| s["labels"]["rollouts-pod-template-hash"].is_string())),
            "both subsets labelled: {subsets}"
        );

        // The Rollout now routes through a tcp-only VirtualService between the Services.
        patch_spec(&env, json!({"strategy": {"canary": {"trafficRouting": {"istio": {
            "virtualService": {"name": "web-tcp"}, "destinationRule": null}}}}}))
        .await?;
        wait_for("the tcp route at 80/20", LIMIT, || async {
            Ok((first_route_weights(&spec_of(&vs, "web-tcp").await?, "tcp") == (80, 20)).then_some(()))
        })
        .await?;
        wait_for("the tls VirtualService given back", LIMIT, || async {
            let o = vs.get("web-tls").await?;
            let back = first_route_weights(&spec(&o), "tls") == (100, 0) && routed_by(&o).is_none();
            Ok(back.then_some(()))
        })
        .await?;
        wait_for("the DestinationRule given back", LIMIT, || async {
            let o = dr.get("web").await?;
            let labels = spec(&o)["subsets"].as_array().map(|s| s.iter().map(|s| s["labels"].clone()).collect::<Vec<_>>());
            let back = labels == Some(vec![json!({"app": "web"}), json!({"app": "web"})]) && routed_by(&o).is_none();
            Ok(back.then_some(()))
        })
        .await?;
        let s = rollouts(&env).get("web").await?.status.unwrap_or_default();
        ensure!(phase(&s) == Some(RolloutPhase::Paused) && !has_condition(&s, INVALID_SPEC), "{s:?}");
        Ok(())
    })
    .await;
}

/// Names and (stable, canary) weights of every http route of a VirtualService's spec, with the
/// mirror percentage of each (or -1).
fn http_routes(spec: &Value) -> Vec<(String, (i64, i64), i64)> {
    spec["http"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|r| {
                    let w = |i: usize| r["route"][i]["weight"].as_i64().unwrap_or(-1);
                    let pct = r["mirrorPercentage"]["value"].as_i64().unwrap_or(-1);
                    (
                        r["name"].as_str().unwrap_or_default().to_string(),
                        (w(0), w(1)),
                        pct,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Argo Rollouts: test/e2e/mirror_route_test.go `TestIstioHostMirrorRoute` (manifest
/// test/e2e/mirror-route/istio-mirror-host.yaml, group changed, 2 pods instead of 5):
/// `setMirrorRoute` writes a managed route at the top of `spec.http` in `managedRoutes` order,
/// copying the split route's destinations and weights and mirroring to the canary
/// (rollout/trafficrouting/istio/istio.go `createMirrorRoute`, `orderRoutes`); later
/// setWeight steps move the mirror routes' weights too; a step without `match` removes its
/// route; a full promotion leaves only the user's route at 100/0 (`RemoveManagedRoutes`), and so
/// does an abort. A mirror route not listed in `managedRoutes` is refused
/// (pkg/apis/rollouts/validation/validation.go).
#[tokio::test]
async fn istio_mirror_routes_as_argo_rollouts_writes_them() {
    TestEnv::run("parity-mirror-route", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let vs = virtual_services(&env);
        create_object(&vs, json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"gateways": ["shop-gateway"], "hosts": ["web.example.com"],
                "http": [{"name": "primary", "route": [
                    {"destination": {"host": "web-stable"}, "weight": 80},
                    {"destination": {"host": "web-canary"}, "weight": 20}]}]}
        }))
        .await?;
        let _controller = ControllerProcess::start(&env)?;
        let mirror = |name: &str, pct: i32, m: Value| {
            json!({"setMirrorRoute": {"name": name, "percentage": pct, "match": m}})
        };
        let steps = json!([
            {"setWeight": 20},
            mirror("mirror-route-1", 100, json!([{"path": {"prefix": "/"}}])),
            mirror("mirror-route-2", 80, json!([{"path": {"prefix": "/"}, "method": {"exact": "GET"}}])),
            {"pause": {}},
            mirror("mirror-route-1", 100, json!([{"path": {"prefix": "/rewrite"}}])),
            {"pause": {}},
            {"setWeight": 40},
            {"setMirrorRoute": {"name": "mirror-route-1"}},
            {"pause": {}}
        ]);
        let traffic = json!({
            "managedRoutes": [{"name": "mirror-route-1"}, {"name": "mirror-route-2"}],
            "istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
        let ro = web_canary(2, json!({"trafficRouting": traffic, "steps": steps}))?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        let routes = || async { anyhow::Ok(http_routes(&spec_of(&vs, "web").await?)) };
        ensure!(routes().await?.first().map(|r| r.0.as_str()) == Some("primary"));

        set_image(&env, "web", "registry.example/web:2").await?;
        wait_paused_at(&env, "web", 3, LIMIT).await?;
        let s = |n: &str, w: (i64, i64), p: i64| (n.to_string(), w, p);
        let want = vec![
            s("mirror-route-1", (80, 20), 100),
            s("mirror-route-2", (80, 20), 80),
            s("primary", (80, 20), -1),
        ];
        wait_for("both mirror routes first, at 80/20", LIMIT, || async {
            Ok((routes().await? == want).then_some(()))
        })
        .await?;
        let spec = spec_of(&vs, "web").await?;
        ensure!(
            spec["http"][0]["mirror"] == json!({"host": "web-canary"})
                && spec["http"][1]["match"] == json!([{"method": {"exact": "GET"}, "uri": {"prefix": "/"}}]),
            "mirror destination and match: {spec}"
        );

        promote(&env, "web").await?;
        wait_paused_at(&env, "web", 5, LIMIT).await?;
        promote(&env, "web").await?;
        wait_paused_at(&env, "web", 8, LIMIT).await?;
        let want = vec![s("mirror-route-2", (60, 40), 80), s("primary", (60, 40), -1)];
        wait_for("mirror-route-1 removed, weights at 60/40", LIMIT, || async {
            Ok((routes().await? == want).then_some(()))
        })
        .await?;

        patch_status(&env, "web", json!({"promoteFull": true})).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        let want = vec![s("primary", (100, 0), -1)];
        wait_for("only the user's route, all on stable", LIMIT, || async {
            Ok((routes().await? == want).then_some(()))
        })
        .await?;

        // An abort takes the mirror routes away too.
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_paused_at(&env, "web", 3, LIMIT).await?;
        ensure!(routes().await?.len() == 3, "{:?}", routes().await?);
        set_abort(&env, "web", true).await?;
        wait_for("the abort removes the mirror routes", LIMIT, || async {
            Ok((routes().await? == want).then_some(()))
        })
        .await?;

        // A mirror route not in managedRoutes is refused.
        patch_spec(&env, json!({"strategy": {"canary": {"steps": [
            {"setWeight": 20}, mirror("elsewhere", 10, json!([{"path": {"exact": "/x"}}]))]}}}))
        .await?;
        let (_, c) = wait_condition(&env, "web", INVALID_SPEC, LIMIT).await?;
        ensure!(
            c.message.contains("steps[1].setMirrorRoute.name") && c.message.contains("managedRoutes"),
            "{}",
            c.message
        );
        Ok(())
    })
    .await;
}
