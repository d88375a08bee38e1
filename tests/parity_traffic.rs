//! Argo Rollouts parity for traffic routing and the objects a Rollout names (issue 11): each
//! test states the Argo Rollouts behaviour it checks, with the Argo source it comes from, and
//! checks Sluice does the same on the local control plane (Istio's and Gateway API's real
//! CRDs; nothing routes real traffic, so the tests read back the objects Sluice writes).

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, wait_healthy};
use common::{ControllerProcess, phase, rollouts, wait_condition, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::constants::LABEL_POD_TEMPLATE_HASH;
use sluice::api::constants::condition::INVALID_SPEC;
use sluice::api::rollout::{Rollout, RolloutPhase};

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
