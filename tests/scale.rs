//! 300 Rollouts on one controller: it starts with all of them present, brings them to Healthy,
//! and then takes a new revision of every one of them at once to step 1's pause, with no
//! reconcile timing out and no request failing on the way (conflicts with the test's own
//! writes excepted, and counted). How fast is the benchmark's business, not this test's.
//!
//! Alone in its test binary: 600 pods at the peak on the shared control plane.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{ControllerProcess, rollouts};
use e2e::TestEnv;
use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

const N: usize = 300;
const LIMIT: Duration = Duration::from_secs(900);

fn rollout(i: usize) -> anyhow::Result<Rollout> {
    let app = format!("app-{i}");
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
        }
    }))?)
}

/// How many Rollouts satisfy `check`, with a sample of phases for the failure message.
async fn count(
    env: &TestEnv,
    check: impl Fn(&Rollout) -> bool,
) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let all = rollouts(env).list(&ListParams::default()).await?.items;
    let mut phases = BTreeMap::new();
    for ro in &all {
        let p = ro
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "none".into());
        *phases.entry(p).or_insert(0) += 1;
    }
    Ok((all.iter().filter(|r| check(r)).count(), phases))
}

async fn wait_all(
    env: &TestEnv,
    what: &str,
    check: impl Fn(&Rollout) -> bool + Copy,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    let last = &last;
    e2e::wait_for(what, LIMIT, || async move {
        let (n, phases) = count(env, check).await?;
        // Progress every 30 s, for a person watching a slow machine.
        if let Ok(mut last) = last.lock()
            && last.elapsed() > Duration::from_secs(30)
        {
            eprintln!(
                "{what}: {n} of {N} after {:.0} s ({phases:?})",
                started.elapsed().as_secs_f64()
            );
            *last = Instant::now();
        }
        Ok((n == N).then_some(()))
    })
    .await?;
    Ok(started.elapsed())
}

/// The controller's failed reconciles by reason, from its /metrics.
async fn errors(controller: &ControllerProcess) -> anyhow::Result<BTreeMap<String, u64>> {
    let (_, body) = common::http_get(controller, "/metrics").await?;
    Ok(body
        .lines()
        .filter_map(|l| l.strip_prefix("sluice_reconcile_errors_total{reason=\""))
        .filter_map(|l| {
            let (reason, rest) = l.split_once("\"} ")?;
            Some((reason.to_string(), rest.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}

#[tokio::test]
async fn three_hundred_rollouts_start_and_release_at_once_without_a_failed_request() {
    TestEnv::run("scale-300", |env| async move {
        let api = rollouts(&env);
        futures::stream::iter(0..N)
            .map(|i| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &rollout(i)?)
                        .await
                        .map_err(anyhow::Error::from)
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;

        // Started with every Rollout already there.
        let controller = ControllerProcess::start(&env)?;
        let healthy = wait_all(&env, "all Healthy", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Healthy) && s.available_replicas == Some(1)
            })
        })
        .await?;
        eprintln!(
            "{N} Rollouts Healthy {:.1} s after the controller started",
            healthy.as_secs_f64()
        );

        // A new revision on every Rollout at once.
        futures::stream::iter(0..N)
            .map(|i| {
                let api = api.clone();
                async move {
                    api.patch(
                        &format!("app-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                            {"name": "web", "image": "registry.example/web:2"}
                        ]}}}})),
                    )
                    .await
                    .map_err(anyhow::Error::from)
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let paused = wait_all(&env, "all paused at step 1", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Paused)
                    && s.current_step_index == Some(1)
                    && s.canary
                        .as_ref()
                        .and_then(|c| c.weights.as_ref())
                        .is_some_and(|w| w.canary.weight == 50)
            })
        })
        .await?;
        eprintln!(
            "{N} Rollouts at step 1's pause {:.1} s after the update",
            paused.as_secs_f64()
        );

        let errors = errors(&controller).await?;
        eprintln!("failed reconciles by reason: {errors:?}");
        let failed: u64 = errors
            .iter()
            .filter(|(r, _)| r.as_str() != "Conflict")
            .map(|(_, n)| n)
            .sum();
        ensure!(failed == 0, "reconciles failed: {errors:?}");
        ensure!(
            errors.get("Timeout").copied().unwrap_or(0) == 0,
            "reconciles timed out: {errors:?}"
        );
        Ok(())
    })
    .await;
}
