//! 300 Rollouts on one controller: it starts with all of them present, brings them to Healthy,
//! and then takes a new revision of every one of them at once to step 1's pause, with no
//! reconcile timing out and no request failing on the way (conflicts with the test's own
//! writes excepted, and counted). How fast is the benchmark's business, not this test's.
//!
//! Alone in its test binary: 600 pods at the peak on the shared control plane. Another size:
//! `SLUICE_SCALE_ROLLOUTS=1000 cargo test --test scale -- --nocapture` (prints its figures) on
//! a control plane with room for the pods (`sluice-e2e up --nodes 9`: 250 pods a node).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use common::fixture::{create_rollout, set_image};
use common::metrics::reconcile_errors;
use common::{ControllerProcess, rollouts};
use e2e::TestEnv;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

/// How many Rollouts: 300, or `SLUICE_SCALE_ROLLOUTS`; refused when their pods (2 each at the
/// peak) do not fit on the cluster's nodes.
async fn rollout_count(env: &TestEnv) -> anyhow::Result<usize> {
    let total: usize = match std::env::var("SLUICE_SCALE_ROLLOUTS") {
        Ok(v) => v
            .parse()
            .map_err(|e| anyhow::anyhow!("SLUICE_SCALE_ROLLOUTS={v:?}: {e}"))?,
        Err(_) => 300,
    };
    let nodes: Api<Node> = Api::all(env.client.clone());
    let room: usize = nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|n| n.status.as_ref()?.allocatable.as_ref()?.get("pods"))
        .filter_map(|q| q.0.parse::<usize>().ok())
        .sum();
    ensure!(
        total.saturating_mul(2) <= room,
        "{total} Rollouts need {} pods at the peak; the nodes hold {room} \
         (more simulated nodes: `sluice-e2e up --nodes N`, 250 pods each)",
        total.saturating_mul(2)
    );
    Ok(total)
}
const LIMIT: Duration = Duration::from_secs(900);

/// Rollout `app-<i>`: 1 pod, a basic canary pausing at 50%.
fn rollout(i: usize) -> anyhow::Result<Rollout> {
    common::fixture::rollout(
        &format!("app-{i}"),
        1,
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
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
    total: usize,
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
                "{what}: {n} of {total} after {:.0} s ({phases:?})",
                started.elapsed().as_secs_f64()
            );
            *last = Instant::now();
        }
        Ok((n == total).then_some(()))
    })
    .await?;
    Ok(started.elapsed())
}

#[tokio::test]
async fn three_hundred_rollouts_start_and_release_at_once_without_a_failed_request() {
    TestEnv::run("scale-300", |env| async move {
        let total = rollout_count(&env).await?;
        futures::stream::iter(0..total)
            .map(|i| {
                let env = &env;
                async move { create_rollout(env, &rollout(i)?).await }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;

        // Started with every Rollout already there.
        let controller = ControllerProcess::start(&env)?;
        let healthy = wait_all(&env, total, "all Healthy", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Healthy) && s.available_replicas == Some(1)
            })
        })
        .await?;
        eprintln!(
            "{total} Rollouts Healthy {:.1} s after the controller started",
            healthy.as_secs_f64()
        );

        // A new revision on every Rollout at once.
        futures::stream::iter(0..total)
            .map(|i| {
                let env = &env;
                async move { set_image(env, &format!("app-{i}"), "registry.example/web:2").await }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let paused = wait_all(&env, total, "all paused at step 1", |r| {
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
            "{total} Rollouts at step 1's pause {:.1} s after the update",
            paused.as_secs_f64()
        );

        let errors = reconcile_errors(&controller).await?;
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
