//! Objects the API server accepts but Sluice cannot read (the CRDs keep unknown fields in a pod
//! template and a Job spec, so a value of the wrong type passes) stay on their own: a healthy
//! Rollout beside them still releases, and the broken object says what is wrong with it.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, set_image, wait_healthy, web_canary};
use common::{
    ControllerProcess, canary_weight, create_services, event_count, phase, wait_condition,
    wait_event, wait_status,
};
use e2e::{TestEnv, wait_for};
use serde_json::json;
use sluice::api::constants::condition;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

/// Rollout `web`: 2 pods, a canary over the Services `web-stable` and `web-canary`. The pause
/// is long enough to be seen: a pause's start is kept in whole seconds (as Argo Rollouts keeps
/// it), so a 1 s pause may last a tenth of a second, shorter than a poll.
fn web() -> anyhow::Result<Rollout> {
    web_canary(
        2,
        json!({"maxSurge": 1, "maxUnavailable": 0,
            "steps": [{"setWeight": 50}, {"pause": {"duration": "3s"}}]}),
    )
}

/// Creates an object from JSON with kubectl (Sluice's own types cannot carry it).
async fn create_raw(env: &TestEnv, object: serde_json::Value) -> anyhow::Result<()> {
    let out = env
        .kubectl(&["create", "-f", "-"], Some(&object.to_string()))
        .await?;
    ensure!(out.success, "kubectl create: {}", out.stderr);
    Ok(())
}

/// Waits for the InvalidSpec Event of `object`, and checks that it is a Warning naming `field`.
async fn invalid_spec_event_names(env: &TestEnv, object: &str, field: &str) -> anyhow::Result<()> {
    let what = format!("the InvalidSpec Event of {object}");
    let (kind, _, note) = wait_event(env, object, &what, |e| e.1 == "InvalidSpec").await?;
    ensure!(
        kind == "Warning" && note.contains(field),
        "Event: {kind} {note}"
    );
    Ok(())
}

/// The Rollout `web` becomes Healthy, then releases v2 through its steps to Healthy again.
async fn web_releases_v2(env: &TestEnv) -> anyhow::Result<()> {
    create_services(env, &["web-stable", "web-canary"]).await?;
    create_rollout(env, &web()?).await?;
    let v1 = wait_healthy(env, "web", 2, LIMIT).await?;
    set_image(env, "web", "registry.example/web:2").await?;
    wait_status(env, "web", "web at 50% of v2", LIMIT, |s| {
        s.current_pod_hash.as_deref() != Some(v1.as_str()) && canary_weight(s) == Some(50)
    })
    .await?;
    wait_status(env, "web", "v2 promoted and Healthy", LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Healthy)
            && s.stable_rs.is_some()
            && s.stable_rs != Some(v1.clone())
            && s.stable_rs == s.current_pod_hash
            && s.available_replicas == Some(2)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_rollout_that_does_not_read_stays_on_its_own() {
    TestEnv::run("malformed-rollout", |env| async move {
        create_raw(
            &env,
            json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Rollout",
                "metadata": {"name": "bad"},
                "spec": {
                    "selector": {"matchLabels": {"app": "bad"}},
                    "template": {
                        "metadata": {"labels": {"app": "bad"}},
                        "spec": {"containers": [{"name": "bad", "image": "registry.example/bad:1",
                            "ports": [{"containerPort": "eighty"}]}]}
                    },
                    "strategy": {"canary": {"steps": [{"setWeight": 50}]}}
                }
            }),
        )
        .await?;
        let controller = ControllerProcess::start(&env)?;
        web_releases_v2(&env).await?;

        let field = "spec.template.spec.containers[0].ports[0].containerPort";
        let shown = wait_for(
            "InvalidSpec on the Rollout that does not read",
            LIMIT,
            || async {
                let out = env
                    .kubectl(&["get", "rollouts.sluice.dev", "bad", "-o", "json"], None)
                    .await?;
                ensure!(out.success, "kubectl get: {}", out.stderr);
                let ro: serde_json::Value = serde_json::from_str(&out.stdout)?;
                Ok(ro["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == condition::INVALID_SPEC && c["status"] == "True")
                    .and_then(|c| c["message"].as_str().map(str::to_string)))
            },
        )
        .await?;
        ensure!(
            shown.contains(field) && shown.contains("\"eighty\""),
            "condition: {shown}"
        );
        invalid_spec_event_names(&env, "bad", field).await?;

        // A change to the broken Rollout that leaves the same error reports nothing new: the
        // condition already says it. Seen once the controller has read the change.
        let read = |c: &ControllerProcess| {
            let log = std::fs::read_to_string(&c.log).unwrap_or_default();
            log.lines()
                .filter(|l| l.contains("Rollout does not read"))
                .count()
        };
        let before = read(&controller);
        let out = env
            .kubectl(
                &[
                    "annotate",
                    "rollouts.sluice.dev",
                    "bad",
                    "test.sluice.dev/poke=1",
                ],
                None,
            )
            .await?;
        ensure!(out.success, "kubectl annotate: {}", out.stderr);
        wait_for("the reconcile of the changed Rollout", LIMIT, || async {
            Ok((read(&controller) > before).then_some(()))
        })
        .await?;
        // web released v1 and v2 meanwhile: the broken Rollout was not retried into more Events.
        let events = event_count(&env, "bad", "InvalidSpec").await?;
        ensure!(events == 1, "{events} InvalidSpec Events for one error");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_template_that_does_not_read_stops_only_the_rollouts_that_use_it() {
    TestEnv::run("malformed-template", |env| async move {
        create_raw(
            &env,
            json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": {"name": "smoke"},
                "spec": {"metrics": [{"name": "smoke", "provider": {"job": {"spec": {
                    "backoffLimit": "two",
                    "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "t", "image": "registry.example/smoke:1"}]}}
                }}}}]}
            }),
        )
        .await?;
        let _controller = ControllerProcess::start(&env)?;
        let mut uses: Rollout = web()?;
        uses.metadata.name = Some("uses".into());
        uses.spec.strategy.canary = serde_json::from_value(json!({
            "steps": [{"analysis": {"templates": [{"templateName": "smoke"}]}}]
        }))?;
        create_rollout(&env, &uses).await?;
        web_releases_v2(&env).await?;

        let field = "spec.metrics[0].provider.job.spec.backoffLimit";
        let (_, c) = wait_condition(&env, "uses", condition::INVALID_SPEC, LIMIT)
            .await
            .context("InvalidSpec naming the template")?;
        ensure!(
            c.message.contains("\"smoke\"") && c.message.contains(field),
            "condition: {}",
            c.message
        );
        invalid_spec_event_names(&env, "smoke", field).await?;
        let events = event_count(&env, "smoke", "InvalidSpec").await?;
        ensure!(events == 1, "{events} InvalidSpec Events for one error");
        Ok(())
    })
    .await;
}
