//! Blue-green behaviours that match Argo Rollouts', and the role metadata and restarts both
//! strategies share, on the local control plane through the real `sluice` controller. Each
//! test names the Argo Rollouts source and end-to-end case it follows.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, create_service, merged, replica_set_of_revision, rollout};
use common::{ControllerProcess, phase, poke_and_wait, rollouts, selector_hash, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::ListParams;
use serde_json::json;
use sluice::api::constants::{ANNOTATION_SCALE_DOWN_AT, LABEL_POD_TEMPLATE_HASH};
use sluice::api::rollout::{RolloutPhase, RolloutStatus};

const LIMIT: Duration = Duration::from_secs(60);

/// Rollout `name` (`replicas` pods labelled `app: <name>`), blue-green over the Services
/// `<name>-active` and `<name>-preview` with `extra` merged into its strategy; waits until its
/// first revision is Healthy and returns its hash.
async fn blue_green(
    env: &TestEnv,
    name: &str,
    replicas: i32,
    extra: serde_json::Value,
) -> anyhow::Result<String> {
    let (active, preview) = (format!("{name}-active"), format!("{name}-preview"));
    create_service(env, &active, json!({ "app": name })).await?;
    create_service(env, &preview, json!({ "app": name })).await?;
    let bg =
        json!({"activeService": active, "previewService": preview, "scaleDownDelaySeconds": 2});
    let ro = rollout(name, replicas, json!({ "blueGreen": merged(bg, extra) }))?;
    create_rollout(env, &ro).await?;
    let s = wait_status(env, name, &format!("{name} Healthy"), LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(replicas)
    })
    .await?;
    s.stable_rs.context("stableRS")
}

/// A new image for Rollout `name`'s container: a new revision.
async fn release(env: &TestEnv, name: &str, image: &str) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"template": {"spec": {
                "containers": [{"name": "web", "image": image}]
            }}}})),
        )
        .await?;
    Ok(())
}

async fn set_abort(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    rollouts(env)
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"abort": true}})),
        )
        .await?;
    Ok(())
}

/// `(spec.replicas, scale-down-at annotation)` of the ReplicaSet of revision `hash`.
async fn replicas_and_deadline(env: &TestEnv, hash: &str) -> anyhow::Result<(i32, Option<String>)> {
    let lp = ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={hash}"));
    let rs = env
        .api::<ReplicaSet>()
        .list(&lp)
        .await?
        .items
        .into_iter()
        .next()
        .context("the ReplicaSet of the revision")?;
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let deadline = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SCALE_DOWN_AT).cloned());
    Ok((replicas, deadline))
}

/// `(replicas, updatedReplicas, readyReplicas, availableReplicas)` of a status.
fn counts(s: &RolloutStatus) -> (Option<i32>, Option<i32>, Option<i32>, Option<i32>) {
    (
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas,
    )
}

/// Argo Rollouts, blue-green abort and status counts:
/// - `rollout/bluegreen.go` `syncRolloutStatusBlueGreen`: `readyReplicas` and
///   `availableReplicas` are the active ReplicaSet's; `replicas` counts the pods of every
///   ReplicaSet and `updatedReplicas` the new one's (`rollout/sync.go` `calculateBaseStatus`).
///   `test/e2e/bluegreen_test.go` `TestBlueGreenKitchenSink` (replicas 2, previewReplicaCount 1):
///   paused before promotion, `ExpectReplicaCounts(2, 3, 1, 2, 2)`.
/// - `rollout/service.go` `reconcilePreviewService`: after an abort the preview Service stays
///   on the aborted revision, the active Service on stable (`test/e2e/analysis_test.go`
///   `TestBlueGreenPrePromotionFail`, `TestBlueGreenPostPromotionFail`: active 1, preview 2).
/// - `utils/defaults/defaults.go` `GetAbortScaleDownDelaySecondsOrDefault` and
///   `rollout/replicaset.go` `reconcileNewReplicaSet`: `abortScaleDownDelaySeconds: 0` keeps
///   the preview's pods (no `scale-down-deadline`); a value N scales it to zero N seconds
///   after the stable is fully available (`docs/features/scaledown-aborted-rs.md`).
#[tokio::test]
async fn blue_green_abort_keeps_the_preview_on_the_aborted_revision_and_counts_the_active() {
    TestEnv::run("parity-bg-abort", |env| async move {
        let controller = ControllerProcess::start(&env)?;
        // "keep": abortScaleDownDelaySeconds 0; "drop": 2 s.
        let manual = json!({"autoPromotionEnabled": false, "previewReplicaCount": 1});
        let keep_v1 = blue_green(
            &env,
            "keep",
            2,
            merged(manual.clone(), json!({"abortScaleDownDelaySeconds": 0})),
        )
        .await?;
        let drop_v1 = blue_green(
            &env,
            "drop",
            2,
            merged(manual, json!({"abortScaleDownDelaySeconds": 2})),
        )
        .await?;
        release(&env, "keep", "registry.example/web:2").await?;
        release(&env, "drop", "registry.example/web:2").await?;
        let paused = wait_status(&env, "keep", "keep paused before promotion", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused) && s.updated_replicas == Some(1)
        })
        .await?;
        ensure!(
            counts(&paused) == (Some(3), Some(1), Some(2), Some(2)),
            "Argo's counts while paused: replicas 3, updated 1, ready 2, available 2; got {:?}",
            counts(&paused)
        );
        let keep_v2 = paused.current_pod_hash.clone().context("currentPodHash")?;
        let drop_v2 = wait_status(&env, "drop", "drop paused", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?
        .current_pod_hash
        .context("currentPodHash")?;

        set_abort(&env, "keep").await?;
        set_abort(&env, "drop").await?;
        for (name, v1, v2) in [("keep", &keep_v1, &keep_v2), ("drop", &drop_v1, &drop_v2)] {
            let s = wait_status(&env, name, "Degraded after the abort", LIMIT, |s| {
                phase(s) == Some(RolloutPhase::Degraded)
            })
            .await?;
            let active = selector_hash(&env, &format!("{name}-active")).await?;
            let preview = selector_hash(&env, &format!("{name}-preview")).await?;
            ensure!(
                active.as_ref() == Some(v1),
                "{name}: active on stable, got {active:?}"
            );
            ensure!(
                preview.as_ref() == Some(v2),
                "{name}: preview stays on the aborted revision, got {preview:?}"
            );
            ensure!(
                s.available_replicas == Some(2),
                "{name}: available counts the active revision: {:?}",
                counts(&s)
            );
        }
        // 2 s after the stable was full, "drop" goes to zero (its deadline on the ReplicaSet).
        wait_for("drop's preview scaled to zero", LIMIT, || async {
            let (replicas, deadline) = replicas_and_deadline(&env, &drop_v2).await?;
            Ok((replicas == 0 && deadline.is_some()).then_some(()))
        })
        .await?;
        // "keep" still has its preview pod and no deadline, reconciles later.
        poke_and_wait(&env, &controller, "keep").await?;
        let (replicas, deadline) = replicas_and_deadline(&env, &keep_v2).await?;
        ensure!(
            replicas == 1 && deadline.is_none(),
            "keep: preview kept at 1 with no deadline, got {replicas} {deadline:?}"
        );
        let kept = replica_set_of_revision(&env, &keep_v2)
            .await?
            .context("keep's preview")?;
        ensure!(kept.available == 1, "keep's preview pod still serves");
        ensure!(
            selector_hash(&env, "keep-preview").await?.as_ref() == Some(&keep_v2),
            "keep: preview still on the aborted revision"
        );
        Ok(())
    })
    .await;
}
