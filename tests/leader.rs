//! Two controller instances: only the Lease holder acts; when it dies, the other takes over.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy};
use common::{ControllerProcess, create_services, phase, wait_status};
use e2e::{TestEnv, wait_for};
use serde_json::json;
use sluice::api::rollout::RolloutPhase;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    TestEnv::run("leader-failover", |env| async move {
        let mut first = ControllerProcess::start_as(&env, "first")?;
        wait_for("the first instance to lead", LIMIT, || async {
            Ok(first.leads().then_some(()))
        })
        .await?;
        let second = ControllerProcess::start_as(&env, "second")?;

        create_services(&env, &["web-stable"]).await?;
        let ro = rollout(
            "web",
            2,
            json!({"canary": {"stableService": "web-stable", "steps": [{"setWeight": 50}]}}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT)
            .await
            .context("Healthy under the first leader")?;
        ensure!(
            !second.leads(),
            "the standby must not lead while the first instance holds the Lease"
        );
        ensure!(
            common::http_get(&second, "/healthz").await?.0 == 200,
            "the standby is alive"
        );
        // Both are ready (a rolling update of the chart's two replicas must be able to go
        // on); the body and sluice_leader say which one leads.
        let standby = common::http_get(&second, "/readyz").await?;
        ensure!(
            standby == (200, "ok: standing by".to_string()),
            "the standby is ready and says it stands by: {standby:?}"
        );
        let leader = common::http_get(&first, "/readyz").await?;
        ensure!(
            leader == (200, "ok: leading".to_string()),
            "the leader is ready and says it leads: {leader:?}"
        );
        let leading = |body: &str| body.lines().any(|l| l.trim() == "sluice_leader 1");
        ensure!(
            leading(&common::http_get(&first, "/metrics").await?.1),
            "the leader's sluice_leader is 1"
        );
        ensure!(
            common::http_get(&second, "/metrics")
                .await?
                .1
                .lines()
                .any(|l| l.trim() == "sluice_leader 0"),
            "the standby's sluice_leader is 0"
        );

        // The leader dies without releasing the Lease; the standby takes over once it expires.
        first.kill();
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_status(&env, "web", "v2 released by the standby", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref().is_some_and(|h| h != v1)
        })
        .await?;
        ensure!(second.leads(), "the standby leads");
        Ok(())
    })
    .await;
}
