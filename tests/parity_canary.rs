//! Canary behaviours that must match Argo Rollouts' (issue 11), through the real `sluice`
//! controller on the local control plane. Each test names the Argo Rollouts source and e2e
//! case it follows; where Sluice chose to differ the test says so and why.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::analysis::{json_body, serve};
use common::fixture::{
    create_rollout, patch_status, promote, replicas_by_hash, set_abort, set_image, wait_healthy,
    wait_paused_at, web_canary,
};
use common::routers::{create_object, gateway_weights, http_routes, spec_of, split_http_route};
use common::{
    ControllerProcess, condition, create_services, events_for, paused_for, phase, poke_and_wait,
    rollouts, selector_hash, wait_status,
};
use e2e::nodesim::READY_AFTER_ANNOTATION;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisRun, AnalysisTemplate};
use sluice::api::constants::{
    ANNOTATION_SCALE_DOWN_AT, LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT, condition::INVALID_SPEC,
};
use sluice::api::rollout::{PauseReason, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(60);

/// Merge-patches the spec of Rollout `web` (GitOps changing the manifest).
async fn patch_spec(env: &TestEnv, spec: Value) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

async fn sizes(env: &TestEnv) -> anyhow::Result<BTreeMap<String, i32>> {
    replicas_by_hash(env, "web").await
}

/// Waits until the ReplicaSets of `web` have exactly the sizes `want` (revision, replicas).
async fn wait_sizes(env: &TestEnv, what: &str, want: &[(&str, i32)]) -> anyhow::Result<()> {
    wait_for(what, LIMIT, || async {
        let sets = sizes(env).await?;
        Ok(want
            .iter()
            .all(|(hash, n)| sets.get(*hash).copied().unwrap_or(0) == *n)
            .then_some(()))
    })
    .await
}

/// The Gateway API router of a routed canary: its CRDs, the Services `web-stable`,
/// `web-canary` and `web`, and the HTTPRoute `web` split between the first two.
async fn gateway_route(env: &TestEnv) -> anyhow::Result<()> {
    e2e::routers::install_router_crds(&env.client).await?;
    create_services(env, &["web-stable", "web-canary", "web"]).await?;
    create_object(&http_routes(env), split_http_route()).await?;
    Ok(())
}

/// The scale-down deadline Sluice wrote on the ReplicaSet of revision `hash`, if any.
async fn deadline_of(env: &TestEnv, hash: &str) -> anyhow::Result<Option<String>> {
    let labels = format!("{LABEL_ROLLOUT}=web,{LABEL_POD_TEMPLATE_HASH}={hash}");
    let sets = env
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&labels))
        .await?;
    Ok(sets
        .items
        .first()
        .and_then(|rs| rs.annotations().get(ANNOTATION_SCALE_DOWN_AT).cloned()))
}

/// The names of the AnalysisRuns in the test's namespace.
async fn runs(env: &TestEnv) -> anyhow::Result<Vec<String>> {
    let list = env
        .api::<AnalysisRun>()
        .list(&ListParams::default())
        .await?;
    Ok(list.items.iter().map(|r| r.name_any()).collect())
}

/// A local web check answering `{"v": N}` with N settable, and the AnalysisTemplate `check`
/// judging it once (1 passes, 0 fails, anything else is inconclusive).
async fn web_check(env: &TestEnv, value: i64) -> anyhow::Result<Arc<AtomicI64>> {
    let v = Arc::new(AtomicI64::new(value));
    let served = v.clone();
    let app = axum::Router::new().route(
        "/v",
        axum::routing::get(move || {
            let v = served.load(Ordering::Relaxed);
            async move { json_body(json!({ "v": v })) }
        }),
    );
    let base = serve(app).await?;
    let t: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "check"},
        "spec": {"metrics": [{"name": "v", "interval": "1s", "count": 1,
            "successCondition": "result.v == 1", "failureCondition": "result.v == 0",
            "provider": {"web": {"url": format!("{base}/v")}}}]}
    }))?;
    env.api::<AnalysisTemplate>()
        .create(&PostParams::default(), &t)
        .await?;
    Ok(v)
}

/// Argo Rollouts: `abortScaleDownDelaySeconds` with trafficRouting (utils/defaults/defaults.go
/// GetAbortScaleDownDelaySecondsOrDefault, rollout/replicaset.go reconcileNewReplicaSet and
/// shouldDelayScaleDownOnAbort; docs/features/scaledown-aborted-rs.md; e2e canary_test.go
/// TestCanaryUnScaleDownOnAbort and TestCanaryScaleDownOnAbort). An explicit 0 keeps the
/// aborted canary's pods with no scale-down deadline; a delay of N seconds writes the deadline
/// once the stable is fully available and scales the canary to zero after it. Traffic leaves
/// the canary at once either way. (Sluice keeps the pods with 0 whatever the steps were;
/// Argo keeps them only after a `setCanaryScale` step, issue #1841: see the differences doc.)
#[tokio::test]
async fn routed_abort_keeps_the_canary_with_zero_and_scales_it_down_after_a_delay() {
    TestEnv::run("parity-abort-delay", |env| async move {
        gateway_route(&env).await?;
        let controller = ControllerProcess::start(&env)?;
        let ro = web_canary(
            2,
            json!({"abortScaleDownDelaySeconds": 0,
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
                "steps": [{"setWeight": 50}, {"pause": {}}]}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let paused = wait_paused_at(&env, "web", 1, LIMIT).await?;
        let v2 = paused.current_pod_hash.context("currentPodHash")?;
        let weights = gateway_weights(&spec_of(&http_routes(&env), "web").await?);
        ensure!(weights == (50, 50), "step 0: {weights:?}");

        set_abort(&env, "web", true).await?;
        wait_status(&env, "web", "Degraded after the abort", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Degraded) && s.abort == Some(true)
        })
        .await?;
        let weights = gateway_weights(&spec_of(&http_routes(&env), "web").await?);
        ensure!(
            weights == (100, 0),
            "all traffic back on stable: {weights:?}"
        );
        ensure!(selector_hash(&env, "web-canary").await?.as_deref() == Some(v1.as_str()));
        // Reconciled again and again: the canary keeps its pod, with no deadline.
        for _ in 0..2 {
            poke_and_wait(&env, &controller, "web").await?;
        }
        let sets = sizes(&env).await?;
        ensure!(
            sets.get(&v2) == Some(&1),
            "0 keeps the canary's pods: {sets:?}"
        );
        ensure!(
            deadline_of(&env, &v2).await?.is_none(),
            "no scale-down deadline with 0"
        );

        // A delay of 2 s: the deadline is written (the stable is whole), then the canary goes.
        patch_spec(
            &env,
            json!({"strategy": {"canary": {"abortScaleDownDelaySeconds": 2}}}),
        )
        .await?;
        wait_for("the scale-down deadline on the canary", LIMIT, || async {
            let d = deadline_of(&env, &v2).await?;
            let n = sizes(&env).await?.get(&v2).copied().unwrap_or(0);
            Ok((d.is_some() || n == 0).then_some(()))
        })
        .await?;
        wait_sizes(
            &env,
            "the canary at zero after its delay",
            &[(&v2, 0), (&v1, 2)],
        )
        .await?;
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(phase(&st) == Some(RolloutPhase::Degraded) && st.abort == Some(true));
        Ok(())
    })
    .await;
}

/// Argo Rollouts: e2e functional_test.go TestRolloutAbortRetryPromote and canary_test.go
/// TestCanaryScaleDownOnAbortNoTrafficRouting (without trafficRouting an abort is a rolling
/// update back to stable, `abortScaleDownDelaySeconds` ignored: utils/replicaset/canary.go
/// CalculateReplicaCountsForBasicCanary); pkg/kubectl-argo-rollouts/cmd/promote/promote.go (a
/// plain promote never touches `status.abort`, so an aborted release stays aborted); e2e
/// TestCanaryPromoteFull and rollout/canary.go syncRolloutStatusCanary (a full promotion on
/// an aborted release lifts the abort, skips the steps and creates no analysis run:
/// rollout/analysis.go reconcileAnalysisRuns).
#[tokio::test]
async fn abort_retry_promote_and_a_full_promotion_of_an_aborted_release() {
    TestEnv::run("parity-abort-retry", |env| async move {
        web_check(&env, 1).await?;
        let controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let ro = web_canary(
            1,
            json!({"abortScaleDownDelaySeconds": 60, "steps": [{"setWeight": 50}, {"pause": {}},
                {"analysis": {"templates": [{"templateName": "check"}]}}]}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let v2 = wait_paused_at(&env, "web", 1, LIMIT)
            .await?
            .current_pod_hash
            .context("currentPodHash")?;
        wait_sizes(&env, "rev1 1, rev2 1", &[(&v1, 1), (&v2, 1)]).await?;

        // Abort: no 60 s hold without a router.
        set_abort(&env, "web", true).await?;
        wait_sizes(&env, "rev2 scaled down at once", &[(&v1, 1), (&v2, 0)]).await?;
        ensure!(selector_hash(&env, "web-canary").await?.as_deref() == Some(v1.as_str()));
        // A plain promotion (the pauses cleared) does nothing to an aborted release.
        promote(&env, "web").await?;
        poke_and_wait(&env, &controller, "web").await?;
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.abort == Some(true) && phase(&st) == Some(RolloutPhase::Degraded),
            "still aborted: {:?} {:?}",
            st.abort,
            st.phase
        );

        // Retry: from the first step again, then promoted through its analysis.
        set_abort(&env, "web", false).await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        wait_sizes(&env, "rev2 back to 1", &[(&v1, 1), (&v2, 1)]).await?;
        promote(&env, "web").await?;
        wait_status(&env, "web", "rev2 Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str())
        })
        .await?;
        wait_sizes(&env, "rev1 0, rev2 1", &[(&v1, 0), (&v2, 1)]).await?;
        let analysed = runs(&env).await?;
        ensure!(analysed.len() == 1, "one analysis run: {analysed:?}");

        // Rev 3 aborted, then promoted in full: the abort is lifted, no analysis runs.
        set_image(&env, "web", "registry.example/web:3").await?;
        let v3 = wait_paused_at(&env, "web", 1, LIMIT)
            .await?
            .current_pod_hash
            .context("currentPodHash")?;
        set_abort(&env, "web", true).await?;
        wait_status(&env, "web", "rev3 aborted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        patch_status(&env, "web", json!({"promoteFull": true})).await?;
        let done = wait_status(
            &env,
            "web",
            "rev3 Healthy after the full promotion",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Healthy)
                    && s.stable_rs.as_deref() == Some(v3.as_str())
            },
        )
        .await?;
        ensure!(
            done.abort != Some(true),
            "the abort is lifted: {:?}",
            done.abort
        );
        let after = runs(&env).await?;
        ensure!(after.len() == 1, "no new analysis run: {after:?}");
        Ok(())
    })
    .await;
}

/// Argo Rollouts: a `setWeight` lower than an earlier one is valid (pkg/apis/rollouts/
/// validation checks only 0..=100) and the canary scales down only as the stable's new pods
/// become available (utils/replicaset/canary.go CalculateReplicaCountsForBasicCanary, "if we
/// are reducing our weight"); e2e canary_test.go TestReduceWeightAndHonorMaxUnavailable.
#[tokio::test]
async fn a_lower_weight_is_allowed_and_the_stable_comes_back_before_the_canary_goes() {
    TestEnv::run("parity-lower-weight", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let mut ro = web_canary(
            3,
            json!({"maxSurge": 2, "maxUnavailable": 0, "steps": [{"setWeight": 100},
                {"pause": {}}, {"setWeight": 0}, {"pause": {}}]}),
        )?;
        if let Some(t) = ro.spec.template.as_mut() {
            t.metadata.get_or_insert_with(Default::default).annotations =
                Some([(READY_AFTER_ANNOTATION.to_string(), "3".to_string())].into());
        }
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 3, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let st = wait_paused_at(&env, "web", 1, LIMIT).await?;
        ensure!(
            condition(&st, INVALID_SPEC).is_none(),
            "a lower weight is valid"
        );
        let v2 = st.current_pod_hash.context("currentPodHash")?;
        wait_sizes(&env, "canary 3, stable 0", &[(&v2, 3), (&v1, 0)]).await?;

        promote(&env, "web").await?;
        // The stable surges by 2 first; no canary pod goes while they are not ready.
        wait_sizes(&env, "canary 3, stable 2", &[(&v2, 3), (&v1, 2)]).await?;
        let st = wait_paused_at(&env, "web", 3, LIMIT).await?;
        ensure!(st.current_pod_hash.as_deref() == Some(v2.as_str()));
        wait_sizes(&env, "canary 0, stable 3", &[(&v2, 0), (&v1, 3)]).await?;
        Ok(())
    })
    .await;
}

/// Argo Rollouts: `spec.paused` halts a canary (rollout/context.go haltProgress, rollout/
/// canary.go reconcileCanaryReplicaSets): a new template applied while paused gets no pods and
/// no step advances. Scaling while paused keeps the step's ratio (rollout/sync.go
/// syncReplicasOnly, utils/replicaset/canary.go approximateWeightedCanaryStableReplicaCounts;
/// e2e canary_test.go TestRolloutScalingWhenPaused: 1 replica at 25%, scaled to 8 gives 2 + 6,
/// to 4 gives 1 + 3). Sluice also scales under `spec.paused` as Argo Rollouts' documentation
/// says (its canary code does not: issue #4261, a bug).
#[tokio::test]
async fn spec_paused_holds_the_release_and_scaling_keeps_the_steps_ratio() {
    TestEnv::run("parity-paused", |env| async move {
        let controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let ro = web_canary(1, json!({"steps": [{"setWeight": 25}, {"pause": {}}]}))?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;

        patch_spec(&env, json!({"paused": true})).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let st = wait_status(
            &env,
            "web",
            "the new release held by spec.paused",
            LIMIT,
            |s| {
                phase(s) == Some(RolloutPhase::Paused)
                    && s.current_pod_hash.is_some()
                    && s.current_pod_hash != s.stable_rs
            },
        )
        .await?;
        let v2 = st.current_pod_hash.context("currentPodHash")?;
        for _ in 0..2 {
            poke_and_wait(&env, &controller, "web").await?;
        }
        let sets = sizes(&env).await?;
        ensure!(
            sets.get(&v2).copied().unwrap_or(0) == 0,
            "no canary pod while paused: {sets:?}"
        );
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.current_step_index == Some(0),
            "no step advanced: {:?}",
            st.current_step_index
        );

        patch_spec(&env, json!({"paused": false})).await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        wait_sizes(&env, "1 + 1 at 25%", &[(&v2, 1), (&v1, 1)]).await?;
        patch_spec(&env, json!({"replicas": 8})).await?;
        wait_sizes(&env, "2 + 6 at 25% of 8", &[(&v2, 2), (&v1, 6)]).await?;
        patch_spec(&env, json!({"paused": true, "replicas": 4})).await?;
        wait_sizes(
            &env,
            "1 + 3 at 25% of 4, while paused",
            &[(&v2, 1), (&v1, 3)],
        )
        .await?;
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.current_step_index == Some(1),
            "{:?}",
            st.current_step_index
        );
        Ok(())
    })
    .await;
}

/// Argo Rollouts v1.10.2, measured on the local control plane: a canary Rollout created with
/// `spec.paused: true` gets its ReplicaSet at zero replicas (phase Paused, the first revision
/// already its stable), a `replicas` change while paused leaves it at zero, and resuming
/// scales it to `replicas` and makes it Healthy (rollout/context.go haltProgress: nothing
/// scales up from zero while paused). Sluice does the same, except that it creates the
/// ReplicaSet only once it has a pod to run.
#[tokio::test]
async fn a_canary_created_paused_stays_at_zero_until_resumed() {
    TestEnv::run("parity-created-paused", |env| async move {
        let controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let mut ro = web_canary(2, json!({"steps": [{"setWeight": 25}, {"pause": {}}]}))?;
        ro.spec.paused = Some(true);
        create_rollout(&env, &ro).await?;
        let st = wait_status(&env, "web", "web Paused on creation", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused) && s.stable_rs.is_some()
        })
        .await?;
        let v1 = st.stable_rs.clone().context("stableRS")?;
        ensure!(
            st.current_pod_hash.as_deref() == Some(v1.as_str()),
            "the first revision is the stable one: {st:?}"
        );
        ensure!(
            st.message
                .as_deref()
                .unwrap_or("")
                .contains("created paused"),
            "the message says why nothing runs: {:?}",
            st.message
        );
        patch_spec(&env, json!({"replicas": 3})).await?;
        for _ in 0..2 {
            poke_and_wait(&env, &controller, "web").await?;
        }
        // Argo Rollouts creates the ReplicaSet at zero; Sluice creates none until it has a pod
        // to run (a chosen difference, in the differences doc).
        let sets = sizes(&env).await?;
        ensure!(
            sets.values().all(|n| *n == 0),
            "no pod while paused: {sets:?}"
        );
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            phase(&st) == Some(RolloutPhase::Paused),
            "still Paused: {:?}",
            st.phase
        );

        patch_spec(&env, json!({"paused": false})).await?;
        wait_healthy(&env, "web", 3, LIMIT).await?;
        wait_sizes(&env, "3 pods of the first revision", &[(&v1, 3)]).await?;
        Ok(())
    })
    .await;
}

/// Argo Rollouts: scaling a routed canary mid-release (utils/replicaset/canary.go
/// CalculateReplicaCountsForTrafficRoutedCanary, GetCanaryReplicasOrWeight; e2e
/// canary_test.go TestCanaryWithSetCanaryScale...): the stable stays at `replicas` (no
/// dynamicStableScale), the canary is `setCanaryScale`'s share of the new `replicas` while one
/// is in force, else its traffic weight's share, rounded up.
#[tokio::test]
async fn scaling_a_routed_canary_mid_release_follows_set_canary_scale_then_the_weight() {
    TestEnv::run("parity-routed-scale", |env| async move {
        gateway_route(&env).await?;
        let _controller = ControllerProcess::start(&env)?;
        let ro = web_canary(
            4,
            json!({"trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
                "steps": [{"setCanaryScale": {"weight": 25}}, {"setWeight": 50}, {"pause": {}},
                          {"setCanaryScale": {"matchTrafficWeight": true}}, {"pause": {}}]}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 4, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        let st = wait_paused_at(&env, "web", 2, LIMIT).await?;
        let v2 = st.current_pod_hash.context("currentPodHash")?;
        wait_sizes(&env, "canary 25% of 4, stable 4", &[(&v2, 1), (&v1, 4)]).await?;
        patch_spec(&env, json!({"replicas": 8})).await?;
        wait_sizes(&env, "canary 25% of 8, stable 8", &[(&v2, 2), (&v1, 8)]).await?;
        promote(&env, "web").await?;
        wait_paused_at(&env, "web", 4, LIMIT).await?;
        wait_sizes(&env, "canary at the 50% weight of 8", &[(&v2, 4), (&v1, 8)]).await?;
        patch_spec(&env, json!({"replicas": 3})).await?;
        wait_sizes(
            &env,
            "canary ceil(50% of 3), stable 3",
            &[(&v2, 2), (&v1, 3)],
        )
        .await?;
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.current_step_index == Some(4) && st.abort.is_none(),
            "still at the pause, not aborted: {st:?}"
        );
        Ok(())
    })
    .await;
}

/// Argo Rollouts: background analysis starts at `startingStep` (utils/replicaset/canary.go
/// BeforeStartingStep); an Inconclusive run pauses the Rollout with `InconclusiveAnalysis`
/// (rollout/analysis.go reconcileBackgroundAnalysisRun; e2e analysis_test.go
/// TestCanaryInconclusiveBackgroundAnalysis), and once a person promotes a new background run
/// starts (needsNewAnalysisRun).
#[tokio::test]
async fn an_inconclusive_background_run_pauses_and_a_promotion_starts_a_new_one() {
    TestEnv::run("parity-background", |env| async move {
        let value = web_check(&env, 2).await?;
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let ro = web_canary(
            2,
            json!({"analysis": {"templates": [{"templateName": "check"}], "startingStep": 1},
                "steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]}),
        )?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;
        ensure!(
            runs(&env).await?.is_empty(),
            "no background run while Healthy"
        );
        set_image(&env, "web", "registry.example/web:2").await?;
        let st = wait_status(&env, "web", "paused on the inconclusive run", LIMIT, |s| {
            paused_for(s, PauseReason::InconclusiveAnalysis)
        })
        .await?;
        ensure!(phase(&st) == Some(RolloutPhase::Paused), "{:?}", st.phase);
        ensure!(st.current_step_index == Some(1), "started at step 1");
        let first = runs(&env).await?;
        ensure!(first.len() == 1, "{first:?}");

        value.store(1, Ordering::Relaxed);
        promote(&env, "web").await?;
        let both = wait_for("a new background run", LIMIT, || async {
            let r = runs(&env).await?;
            Ok((r.len() == 2).then_some(r))
        })
        .await?;
        ensure!(both.iter().all(|n| n.contains("background")), "{both:?}");
        let reasons: Vec<String> = events_for(&env, "web")
            .await?
            .into_iter()
            .map(|e| e.1)
            .collect();
        ensure!(
            reasons.iter().any(|r| r == "AnalysisInconclusive"),
            "{reasons:?}"
        );
        Ok(())
    })
    .await;
}

/// Releases `image` on Rollout `web` and waits until it is the Healthy stable revision.
async fn release(env: &TestEnv, image: &str) -> anyhow::Result<()> {
    let before = rollouts(env)
        .get("web")
        .await?
        .status
        .and_then(|s| s.stable_rs);
    next_second(env).await?;
    set_image(env, "web", image).await?;
    wait_status(env, "web", &format!("{image} Healthy"), LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Healthy)
            && s.stable_rs != before
            && s.stable_rs == s.current_pod_hash
    })
    .await?;
    Ok(())
}

/// Waits until the clock has left the second the newest ReplicaSet was created in, so the
/// next revision's creation time orders it after every earlier one (they have whole seconds;
/// revisions created in one second are never fast-tracked, see `within_rollback_window`).
async fn next_second(env: &TestEnv) -> anyhow::Result<()> {
    let newest = env
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .max();
    let Some(newest) = newest else {
        return Ok(());
    };
    wait_for("a new second", LIMIT, || async move {
        Ok((k8s_openapi::jiff::Timestamp::now().as_second() > newest.as_second()).then_some(()))
    })
    .await
}

/// Argo Rollouts: `rollbackWindow` (rollout/sync.go isRollbackWithinWindow;
/// docs/features/rollback.md; e2e rollback_window_test.go TestRollbackAnalysisWithinWindow and
/// TestRollbackAnalysisOutsideWindow). Going back to a revision with fewer than `revisions`
/// revisions between it and the stable skips the steps and creates no analysis run; further
/// back it is a normal release.
#[tokio::test]
async fn a_rollback_within_the_window_is_fast_tracked_and_outside_it_is_a_release() {
    TestEnv::run("parity-rollback-window", |env| async move {
        web_check(&env, 1).await?;
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let mut ro = web_canary(
            1,
            json!({"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "check"}]}}]}),
        )?;
        ro.spec.rollback_window = Some(sluice::api::rollout::RollbackWindow { revisions: Some(2) });
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 1, LIMIT).await?;
        for image in ["registry.example/web:2", "registry.example/web:3", "registry.example/web:4"] {
            let before = runs(&env).await?.len();
            release(&env, image).await?;
            let after = runs(&env).await?.len();
            ensure!(after == before + 1, "{image}: one analysis run ({before} -> {after})");
        }
        // Back to rev 1: two revisions (2, 3) between it and the stable (4): outside the window,
        // a normal release with its analysis.
        release(&env, "registry.example/web:1").await?;
        let n = runs(&env).await?.len();
        ensure!(n == 4, "a normal release runs its analysis: {n} runs");
        // Rev 5, then back to rev 4: nothing between them, within the window.
        release(&env, "registry.example/web:5").await?;
        release(&env, "registry.example/web:4").await?;
        let n = runs(&env).await?.len();
        ensure!(n == 5, "no analysis for the fast-tracked rollback: {n} runs");
        let reasons: Vec<String> =
            events_for(&env, "web").await?.into_iter().map(|e| e.1).collect();
        let fast = reasons.iter().filter(|r| *r == "FastTrackRollback").count();
        ensure!(fast == 1, "one fast-tracked rollback: {reasons:?}");
        Ok(())
    })
    .await;
}

/// Argo Rollouts: `scaleDownDelayRevisionLimit` on a routed canary (rollout/replicaset.go
/// scaleDownDelayHelper; e2e canary_test.go TestCanaryScaleDownDelay, limit 1, no steps):
/// after rev 2 rev 1 keeps its pod with a deadline; after rev 3 rev 1 is at zero and rev 2
/// keeps its pod with a deadline; back to rev 2's template, rev 2 serves with no deadline and
/// rev 3 keeps its pod with one.
#[tokio::test]
async fn scale_down_delay_revision_limit_keeps_only_the_newest_old_revision() {
    TestEnv::run("parity-sdd-limit", |env| async move {
        gateway_route(&env).await?;
        let _controller = ControllerProcess::start(&env)?;
        let ro = web_canary(
            1,
            json!({"scaleDownDelaySeconds": 600, "scaleDownDelayRevisionLimit": 1,
                "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        release(&env, "registry.example/web:2").await?;
        let v2 = stable(&env).await?;
        wait_sizes(&env, "rev1 kept", &[(&v1, 1), (&v2, 1)]).await?;
        ensure!(
            deadline_of(&env, &v1).await?.is_some(),
            "rev1 has its deadline"
        );
        release(&env, "registry.example/web:3").await?;
        let v3 = stable(&env).await?;
        wait_sizes(
            &env,
            "rev1 at zero, rev2 kept",
            &[(&v1, 0), (&v2, 1), (&v3, 1)],
        )
        .await?;
        ensure!(
            deadline_of(&env, &v2).await?.is_some(),
            "rev2 has its deadline"
        );
        release(&env, "registry.example/web:2").await?;
        ensure!(stable(&env).await? == v2, "rev2's ReplicaSet serves again");
        wait_sizes(
            &env,
            "rev2 serves, rev3 kept",
            &[(&v1, 0), (&v2, 1), (&v3, 1)],
        )
        .await?;
        ensure!(
            deadline_of(&env, &v2).await?.is_none(),
            "no deadline on the stable"
        );
        ensure!(
            deadline_of(&env, &v3).await?.is_some(),
            "rev3 has its deadline"
        );
        Ok(())
    })
    .await;
}

async fn stable(env: &TestEnv) -> anyhow::Result<String> {
    rollouts(env)
        .get("web")
        .await?
        .status
        .and_then(|s| s.stable_rs)
        .context("stableRS")
}

/// Argo Rollouts: blue-green back to a revision still within its scale-down delay is fast
/// tracked (rollout/bluegreen.go isBlueGreenFastTracked; rollout/analysis.go
/// reconcileAnalysisRuns skips analysis on rollbackToScaleDownDelay; e2e analysis_test.go
/// TestBlueGreenAnalysis, last step: the run count stays the same and the Rollout is Healthy
/// at once).
#[tokio::test]
async fn blue_green_back_within_the_scale_down_delay_skips_analysis_and_the_pause() {
    TestEnv::run("parity-bg-fast-track", |env| async move {
        web_check(&env, 1).await?;
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-active", "web-preview"]).await?;
        let ro = common::fixture::rollout(
            "web",
            1,
            json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
                "autoPromotionEnabled": false, "scaleDownDelaySeconds": 600,
                "prePromotionAnalysis": {"templates": [{"templateName": "check"}]}}}),
        )?;
        create_rollout(&env, &ro).await?;
        let v1 = wait_healthy(&env, "web", 1, LIMIT).await?;
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_status(&env, "web", "v2 waiting for promotion", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        promote(&env, "web").await?;
        wait_status(&env, "web", "v2 active", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs != Some(v1.clone())
        })
        .await?;
        ensure!(runs(&env).await?.len() == 1, "the pre-promotion run");
        ensure!(
            deadline_of(&env, &v1).await?.is_some(),
            "v1 serves out its delay"
        );

        // Back to v1 while it still has its pods: no analysis, no pause.
        set_image(&env, "web", "registry.example/web:1").await?;
        wait_status(&env, "web", "v1 active again", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v1.as_str())
        })
        .await?;
        ensure!(selector_hash(&env, "web-active").await?.as_deref() == Some(v1.as_str()));
        let n = runs(&env).await?;
        ensure!(n.len() == 1, "no new analysis run: {n:?}");
        let reasons: Vec<String> = events_for(&env, "web")
            .await?
            .into_iter()
            .map(|e| e.1)
            .collect();
        ensure!(
            reasons.iter().any(|r| r == "FastTrackRollback"),
            "{reasons:?}"
        );
        Ok(())
    })
    .await;
}
