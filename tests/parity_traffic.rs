//! Argo Rollouts parity for traffic routing and the objects a Rollout names (issue 11): each
//! test states the Argo Rollouts behaviour it checks, with the Argo source it comes from, and
//! checks Sluice does the same on the local control plane (Istio's and Gateway API's real
//! CRDs; nothing routes real traffic, so the tests read back the objects Sluice writes).

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{
    create_rollout, replicas_by_hash, rollout, set_image, wait_healthy, wait_paused_at, web_canary,
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
