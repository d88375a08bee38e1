//! Two controller instances: only the Lease holder acts; when it dies, the other takes over.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::{ControllerProcess, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    TestEnv::run("leader-failover", |env| async move {
        let mut first = ControllerProcess::start_as(&env, "first")?;
        wait_for("the first instance to lead", LIMIT, || async { Ok(first.leads().then_some(())) }).await?;
        let second = ControllerProcess::start_as(&env, "second")?;

        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-stable"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        }))?;
        env.api::<Service>().create(&PostParams::default(), &svc).await?;
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}},
                "strategy": {"canary": {"stableService": "web-stable", "steps": [{"setWeight": 50}]}}
            }
        }))?;
        rollouts(&env).create(&PostParams::default(), &ro).await?;
        let v1 = wait_status(&env, "web", "Healthy under the first leader", LIMIT, |s| phase(s) == Some(RolloutPhase::Healthy))
            .await?
            .stable_rs
            .context("stableRS")?;
        ensure!(!second.leads(), "the standby must not lead while the first instance holds the Lease");
        ensure!(common::http_get(&second, "/healthz").await?.0 == 200, "the standby is alive");
        ensure!(common::http_get(&second, "/readyz").await?.0 == 503, "the standby is not ready");
        ensure!(common::http_get(&first, "/readyz").await?.0 == 200, "the leader is ready");

        // The leader dies without releasing the Lease; the standby takes over once it expires.
        first.kill();
        rollouts(&env)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:2"}]}}}})),
            )
            .await?;
        wait_status(&env, "web", "v2 released by the standby", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref().is_some_and(|h| h != v1)
        })
        .await?;
        ensure!(second.leads(), "the standby leads");
        Ok(())
    })
    .await;
}
