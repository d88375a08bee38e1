//! Safety defects replayed on the local control plane through the real `sluice` binary: each
//! test failed before its fix. The share of traffic each revision serves without a router is
//! read from the EndpointSlices the real EndpointSlice controller writes, not from Sluice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{
    create_rollout, create_service, promote, replica_set_of_revision, replicas_by_hash, set_image,
    set_template, wait_healthy, wait_paused_at,
};
use common::{ControllerProcess, canary_weight, event_count, phase, rollouts, wait_status};
use e2e::TestEnv;
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use sluice::api::constants::{LABEL_POD_TEMPLATE_HASH, condition};
use sluice::api::rollout::{Rollout, RolloutPhase, RolloutStatus};

const LIMIT: Duration = Duration::from_secs(120);

/// A basic canary (no router, no Services named): `name`'s pods carry `app: name`.
fn rollout(name: &str, replicas: i32, canary: serde_json::Value) -> anyhow::Result<Rollout> {
    common::fixture::rollout(name, replicas, json!({ "canary": canary }))
}

/// The application's Service: it selects every pod of the app, whatever its revision, as a
/// basic canary's users do.
async fn app_service(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    create_service(env, name, json!({ "app": name })).await
}

/// Ready endpoints of Service `service` by pod-template-hash, from its EndpointSlices.
async fn ready_endpoints(env: &TestEnv, service: &str) -> anyhow::Result<BTreeMap<String, i32>> {
    let pods: Api<Pod> = env.api();
    let hash_of: BTreeMap<String, String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| {
            let hash = p
                .metadata
                .labels
                .as_ref()?
                .get(LABEL_POD_TEMPLATE_HASH)?
                .clone();
            Some((p.metadata.name?, hash))
        })
        .collect();
    let mut by_hash = BTreeMap::new();
    for ep in common::fixture::ready_endpoints(env, service).await? {
        if let Some(pod) = ep.target_ref.as_ref().and_then(|r| r.name.clone()) {
            let hash = hash_of.get(&pod).cloned().unwrap_or_else(|| "?".into());
            *by_hash.entry(hash).or_insert(0) += 1;
        }
    }
    Ok(by_hash)
}

fn ceil_div(a: i32, b: i32) -> i32 {
    (a + b - 1) / b
}

/// Without a router, each step's canary serves its weight rounded up to whole pods and no more:
/// the stable keeps its own share rounded up (Argo Rollouts' counts). Checked on every poll
/// from the release's start until the step is reached, from the EndpointSlices.
#[tokio::test]
async fn basic_canary_never_serves_more_than_its_weight_rounded_up_to_a_pod() {
    TestEnv::run("safety-basic-share", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        // (replicas, weight): the figures.
        let table = [(1, 25), (1, 50), (3, 20), (2, 10)];
        let name = |r: i32, w: i32| format!("web-{r}-{w}");
        for (replicas, weight) in table {
            let n = name(replicas, weight);
            app_service(&env, &n).await?;
            let canary = json!({"steps": [{"setWeight": weight}, {"pause": {}}]});
            create_rollout(&env, &rollout(&n, replicas, canary)?).await?;
        }
        let mut stable_of = BTreeMap::new();
        for (replicas, weight) in table {
            let n = name(replicas, weight);
            stable_of.insert(n.clone(), wait_healthy(&env, &n, replicas, LIMIT).await?);
            set_image(&env, &n, "registry.example/web:2").await?;
        }
        for (replicas, weight) in table {
            let n = name(replicas, weight);
            let stable = stable_of[&n].clone();
            let max_canary = ceil_div(replicas * weight, 100);
            let want_stable = ceil_div(replicas * (100 - weight), 100);
            let seen = e2e::wait_for(
                &format!("{n}: step 0 reached with {max_canary} canary and {want_stable} stable endpoints"),
                LIMIT,
                || {
                    let (env, n, stable) = (env.clone(), n.clone(), stable.clone());
                    async move {
                        let eps = ready_endpoints(&env, &n).await?;
                        let s_ready = eps.get(&stable).copied().unwrap_or(0);
                        let c_ready: i32 = eps.iter().filter(|(h, _)| **h != stable).map(|(_, c)| *c).sum();
                        // Safety on every poll: never more canary than its rounded-up share,
                        // never a canary serving alone.
                        if c_ready > max_canary || (c_ready > 0 && s_ready == 0) {
                            return Ok(Some(Err(format!(
                                "{n} at setWeight {weight}: {c_ready} canary and {s_ready} stable endpoints ready"
                            ))));
                        }
                        let status: RolloutStatus = rollouts(&env).get(&n).await?.status.unwrap_or_default();
                        let settled = status.current_step_index == Some(1)
                            && c_ready == max_canary
                            && s_ready == want_stable;
                        Ok(settled.then_some(Ok((c_ready, s_ready, status))))
                    }
                },
            )
            .await?;
            let (canary, stable_ready, status) = seen.map_err(anyhow::Error::msg)?;
            // The weight in status is the real share of ready pods.
            let real = (canary * 100 + (canary + stable_ready) / 2) / (canary + stable_ready);
            let shown = wait_status(&env, &n, "the status weight to match the endpoints", LIMIT, |s| {
                canary_weight(s) == Some(real)
            })
            .await;
            ensure!(
                shown.is_ok(),
                "{n}: status says {:?}, the EndpointSlices {real}% ({canary} canary, {stable_ready} stable)",
                canary_weight(&status)
            );
            ensure!(phase(&status) == Some(RolloutPhase::Paused), "{n}: {:?}", status.phase);
        }
        Ok(())
    })
    .await;
}

/// A first revision that crash-loops is followed by a fixed one released in steps: the fix
/// goes through every step, and while broken the status is not rewritten (no condition's
/// `lastTransitionTime` moves without its status).
#[tokio::test]
async fn a_broken_first_revision_is_fixed_by_a_stepped_release() {
    TestEnv::run("safety-broken-first", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        let canary = json!({"maxSurge": 1, "maxUnavailable": 0,
            "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]});
        let mut ro = rollout("web", 2, canary)?;
        ro.spec.progress_deadline_seconds = Some(5);
        if let Some(meta) = ro.spec.template.as_mut().and_then(|t| t.metadata.as_mut()) {
            meta.annotations =
                Some([(BEHAVIOUR_ANNOTATION.to_string(), "crashloop".to_string())].into());
        }
        create_rollout(&env, &ro).await?;
        let stuck = wait_status(
            &env,
            "web",
            "the broken first revision past its deadline",
            LIMIT,
            |s| {
                s.conditions.iter().any(|c| {
                    c.type_ == condition::PROGRESSING && c.reason == "ProgressDeadlineExceeded"
                })
            },
        )
        .await?;
        let v1 = stuck.stable_rs.clone().context("stableRS")?;
        // Nothing changes while it stays broken: watch for a while (the controller is woken by
        // the crash-looping pods' status changes meanwhile).
        let rv = |env: std::sync::Arc<TestEnv>| async move {
            let ro = rollouts(&env).get("web").await?;
            anyhow::Ok((
                ro.metadata.resource_version,
                ro.status.map(|s| s.conditions).unwrap_or_default(),
            ))
        };
        let before = rv(env.clone()).await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = rv(env.clone()).await?;
        for c in &after.1 {
            if let Some(b) = before
                .1
                .iter()
                .find(|b| b.type_ == c.type_ && b.status == c.status)
            {
                ensure!(
                    b.last_transition_time == c.last_transition_time,
                    "{} kept status {} but its lastTransitionTime moved {:?} -> {:?}",
                    c.type_,
                    c.status,
                    b.last_transition_time,
                    c.last_transition_time
                );
            }
        }
        ensure!(
            before.0 == after.0,
            "the status of a broken revision was rewritten: {:?} -> {:?}",
            before.1,
            after.1
        );

        set_template(
            &env,
            "web",
            "registry.example/web:2",
            json!({BEHAVIOUR_ANNOTATION: "ready"}),
        )
        .await?;
        let done = wait_status(
            &env,
            "web",
            "the fixed revision stable and Healthy",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Healthy)
                    && s.stable_rs.as_deref().is_some_and(|h| h != v1)
            },
        )
        .await?;
        ensure!(
            done.available_replicas == Some(2),
            "{:?}",
            done.available_replicas
        );
        // Through the steps, not around them.
        ensure!(
            event_count(&env, "web", "StepCompleted").await? >= 1,
            "no step completed"
        );
        ensure!(
            event_count(&env, "web", "PauseEnded").await? == 1,
            "the pause was skipped"
        );
        Ok(())
    })
    .await;
}

/// `replicas` lowered 8 -> 4 mid-release while the new pods are not ready: the pods come back
/// under `replicas + maxSurge` instead of staying at 8.
#[tokio::test]
async fn lowering_replicas_mid_release_respects_max_surge() {
    TestEnv::run("safety-surge", |env| async move {
        let mut controller = ControllerProcess::start(&env)?;
        let canary = json!({"maxSurge": 2, "maxUnavailable": 0,
            "steps": [{"setWeight": 50}, {"pause": {}}]});
        create_rollout(&env, &rollout("web", 8, canary)?).await?;
        let v1 = wait_healthy(&env, "web", 8, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let paused = wait_paused_at(&env, "web", 1, LIMIT).await?;
        let v2 = paused.current_pod_hash.context("currentPodHash")?;
        // With the controller down: the new pods stop being ready, replicas drop to 4 and
        // the release is promoted.
        controller.kill();
        let pods: Api<Pod> = env.api();
        for p in pods
            .list(&ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={v2}")))
            .await?
            .items
        {
            let name = p.metadata.name.context("pod name")?;
            pods.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {BEHAVIOUR_ANNOTATION: "never-ready"}}}),
                ),
            )
            .await?;
        }
        e2e::wait_for("the new pods not ready", LIMIT, || async {
            let v2_set = replica_set_of_revision(&env, &v2).await?;
            Ok((v2_set.map_or(0, |rs| rs.available) == 0).then_some(()))
        })
        .await?;
        rollouts(&env)
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 4}})),
            )
            .await?;
        promote(&env, "web").await?;
        controller.restart()?;
        let total = e2e::wait_for("at most replicas + maxSurge = 6 pods", LIMIT, || async {
            let sets = replicas_by_hash(&env, "web").await?;
            let total: i32 = sets.values().sum();
            Ok((total <= 6).then_some(sets))
        })
        .await?;
        ensure!(
            total.get(&v1).copied().unwrap_or(0) >= 4,
            "the stable kept the floor of available pods: {total:?}"
        );
        Ok(())
    })
    .await;
}

/// A pod template the API server accepts in a Rollout but refuses in a ReplicaSet is an
/// `InvalidSpec` naming the field, with one Warning Event and no ReplicaSet.
#[tokio::test]
async fn an_unparsable_quantity_is_invalid_spec_naming_the_field() {
    TestEnv::run("safety-quantity", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        let mut ro = rollout("web", 2, json!({"steps": [{"setWeight": 50}]}))?;
        if let Some(c) = ro.spec.template.as_mut().and_then(|t| t.spec.as_mut()).and_then(|s| s.containers.first_mut()) {
            c.resources = Some(serde_json::from_value(json!({"limits": {"memory": "invalid"}}))?);
        }
        create_rollout(&env, &ro).await?;
        let field = "spec.template.spec.containers[0].resources.limits.memory";
        let (_, cond) = common::wait_condition(&env, "web", condition::INVALID_SPEC, LIMIT).await?;
        ensure!(cond.message.contains(field) && cond.message.contains("invalid"), "{cond:?}");
        common::wait_event(&env, "web", "an InvalidSpec Event", |(t, r, m)| {
            t == "Warning" && r == "InvalidSpec" && m.contains(field)
        })
        .await?;
        // No retry storm: the status and the Events stay as they are.
        let rv = rollouts(&env).get("web").await?.metadata.resource_version;
        tokio::time::sleep(Duration::from_secs(8)).await;
        ensure!(rollouts(&env).get("web").await?.metadata.resource_version == rv, "the status was rewritten");
        ensure!(event_count(&env, "web", "InvalidSpec").await? == 1, "more than one InvalidSpec Event");
        ensure!(replicas_by_hash(&env, "web").await?.is_empty(), "a ReplicaSet was created");

        // Fixed: the Rollout runs.
        rollouts(&env)
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:1", "resources": {"limits": {"memory": "64Mi"}}}]}}}})))
            .await?;
        wait_status(&env, "web", "Healthy once fixed", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(2)
        })
        .await?;
        Ok(())
    })
    .await;
}
