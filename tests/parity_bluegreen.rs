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
use k8s_openapi::api::core::v1::Pod;
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
        ensure!(
            paused.selector == Some(format!("app=keep,{LABEL_POD_TEMPLATE_HASH}={keep_v1}")),
            "the scale subresource's selector is the active revision's: {:?}",
            paused.selector
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

/// `(name, uid, labels)` of each live pod of revision `hash`.
async fn pods_of(
    env: &TestEnv,
    hash: &str,
) -> anyhow::Result<Vec<(String, String, std::collections::BTreeMap<String, String>)>> {
    let lp = ListParams::default().labels(&format!("{LABEL_POD_TEMPLATE_HASH}={hash}"));
    Ok(env
        .api::<Pod>()
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.uid.clone().unwrap_or_default(),
                p.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits until revision `hash` has `n` live pods (any number but none when `n` is `None`)
/// and every one satisfies `check` on its labels; returns their UIDs, sorted.
async fn wait_pods(
    env: &TestEnv,
    what: &str,
    hash: &str,
    n: Option<usize>,
    check: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> anyhow::Result<Vec<String>> {
    wait_for(what, LIMIT, || async {
        let pods = pods_of(env, hash).await?;
        let count_ok = n.map_or(!pods.is_empty(), |n| pods.len() == n);
        let ok = count_ok && pods.iter().all(|(_, _, l)| check(l));
        let mut uids: Vec<String> = pods.into_iter().map(|(_, u, _)| u).collect();
        uids.sort();
        Ok(ok.then_some(uids))
    })
    .await
}

fn label<'a>(l: &'a std::collections::BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    l.get(k).map(String::as_str)
}

async fn patch_strategy(
    env: &TestEnv,
    name: &str,
    strategy: serde_json::Value,
) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"strategy": strategy}})),
        )
        .await?;
    Ok(())
}

async fn clear_pause(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    rollouts(env)
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"pauseConditions": null}})),
        )
        .await?;
    Ok(())
}

/// Argo Rollouts' ephemeral metadata (`rollout/ephemeralmetadata.go`
/// `reconcileEphemeralMetadata`, `utils/replicaset/canary.go` `SyncEphemeralPodMetadata`;
/// `docs/features/ephemeral-metadata.md`), as `test/e2e/canary_test.go` `TestEphemeralMetadata`
/// checks it: canary pods carry `canaryMetadata`, stable pods `stableMetadata`; changing
/// `canaryMetadata` replaces the labels on the running canary pods in place (no new revision, no
/// restart); after promotion the new revision's pods carry `stableMetadata`. Blue-green the same
/// with `previewMetadata`/`activeMetadata`.
#[tokio::test]
async fn role_metadata_follows_each_revisions_role_without_restarting_pods() {
    TestEnv::run("parity-ephemeral", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        // Canary "c": replicas 2, setWeight 50 then pause.
        create_service(&env, "c-stable", json!({"app": "c"})).await?;
        create_service(&env, "c-canary", json!({"app": "c"})).await?;
        let ro = rollout(
            "c",
            2,
            json!({"canary": {
                "stableService": "c-stable", "canaryService": "c-canary",
                "canaryMetadata": {"labels": {"role": "canary"}},
                "stableMetadata": {"labels": {"role": "stable"}},
                "steps": [{"setWeight": 50}, {"pause": {}}]
            }}),
        )?;
        create_rollout(&env, &ro).await?;
        // Blue-green "b": replicas 1.
        let b1 = blue_green(
            &env,
            "b",
            1,
            json!({"autoPromotionEnabled": false,
                   "previewMetadata": {"labels": {"role": "preview"}},
                   "activeMetadata": {"labels": {"role": "active"}}}),
        )
        .await?;
        let c1 = wait_status(&env, "c", "c Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(2)
        })
        .await?
        .stable_rs
        .context("stableRS")?;
        wait_pods(&env, "c's first pods role=stable", &c1, Some(2), |l| {
            label(l, "role") == Some("stable")
        })
        .await?;
        wait_pods(&env, "b's first pod role=active", &b1, Some(1), |l| {
            label(l, "role") == Some("active")
        })
        .await?;

        release(&env, "c", "registry.example/web:2").await?;
        release(&env, "b", "registry.example/web:2").await?;
        let c2 = wait_status(&env, "c", "c paused at step 1", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused) && s.current_step_index == Some(1)
        })
        .await?
        .current_pod_hash
        .context("currentPodHash")?;
        let canary_uids = wait_pods(&env, "c's canary pod role=canary", &c2, Some(1), |l| {
            label(l, "role") == Some("canary")
        })
        .await?;
        wait_pods(&env, "c's stable pods still role=stable", &c1, None, |l| {
            label(l, "role") == Some("stable")
        })
        .await?;
        let b2 = wait_status(&env, "b", "b paused before promotion", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused)
        })
        .await?
        .current_pod_hash
        .context("currentPodHash")?;
        let preview_uids = wait_pods(&env, "b's preview pod role=preview", &b2, Some(1), |l| {
            label(l, "role") == Some("preview")
        })
        .await?;
        wait_pods(&env, "b's active pod role=active", &b1, Some(1), |l| {
            label(l, "role") == Some("active")
        })
        .await?;

        // canaryMetadata changes mid-release: replaced in place on the running canary pod.
        patch_strategy(
            &env,
            "c",
            json!({"canary": {"canaryMetadata": {"labels": {"role": null, "role2": "canary2"}}}}),
        )
        .await?;
        let after = wait_pods(
            &env,
            "c's canary pod role2=canary2, no role",
            &c2,
            Some(1),
            |l| label(l, "role").is_none() && label(l, "role2") == Some("canary2"),
        )
        .await?;
        ensure!(after == canary_uids, "the canary pod was not restarted");
        let sets = env
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels("sluice.dev/rollout=c"))
            .await?
            .items
            .len();
        ensure!(
            sets == 2,
            "no new revision for a metadata change: {sets} ReplicaSets"
        );

        // Promotion: the new revision takes the stable's (active's) metadata, in place.
        clear_pause(&env, "c").await?;
        clear_pause(&env, "b").await?;
        for name in ["c", "b"] {
            wait_status(&env, name, "Healthy on the new revision", LIMIT, |s| {
                phase(s) == Some(RolloutPhase::Healthy)
                    && s.stable_rs.is_some()
                    && s.stable_rs == s.current_pod_hash
            })
            .await?;
        }
        let c_stable = wait_pods(&env, "c's new pods role=stable", &c2, Some(2), |l| {
            label(l, "role") == Some("stable") && label(l, "role2").is_none()
        })
        .await?;
        ensure!(
            canary_uids.iter().all(|u| c_stable.contains(u)),
            "the former canary pod kept running"
        );
        let b_active = wait_pods(&env, "b's new pod role=active", &b2, Some(1), |l| {
            label(l, "role") == Some("active")
        })
        .await?;
        ensure!(
            b_active == preview_uids,
            "the former preview pod kept running"
        );
        Ok(())
    })
    .await;
}

/// Argo Rollouts' `spec.restartAt` (`rollout/restart.go` `RolloutPodRestarter.Reconcile`,
/// `docs/features/restart.md`; `test/e2e/functional_test.go` `TestRolloutRestart`): pods
/// created before `restartAt` are evicted, at most `max(maxUnavailable, 1)` below the
/// available count at a time (blue-green: one at a time), with no new revision; once every pod
/// is newer, `status.restartedAt` equals `restartAt`.
#[tokio::test]
async fn restart_at_replaces_every_older_pod_one_at_a_time_without_a_new_revision() {
    TestEnv::run("parity-restart", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        create_service(&env, "r-active", json!({"app": "r"})).await?;
        // New pods take two seconds to be ready, so a restart going too fast would be seen.
        let mut ro = rollout("r", 3, json!({"blueGreen": {"activeService": "r-active"}}))?;
        if let Some(t) = ro.spec.template.as_mut() {
            t.metadata.get_or_insert_with(Default::default).annotations = Some(
                [(
                    e2e::nodesim::READY_AFTER_ANNOTATION.to_string(),
                    "2".to_string(),
                )]
                .into(),
            );
        }
        create_rollout(&env, &ro).await?;
        let v1 = wait_status(&env, "r", "r Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(3)
        })
        .await?
        .stable_rs
        .context("stableRS")?;
        let before: Vec<String> = pods_of(&env, &v1).await?.into_iter().map(|p| p.1).collect();
        ensure!(before.len() == 3);
        // Whole seconds, as `kubectl argo rollouts restart` writes it.
        let restart_at = k8s_openapi::jiff::Timestamp::from_second(
            k8s_openapi::jiff::Timestamp::now().as_second() + 1,
        )?;
        rollouts(&env)
            .patch(
                "r",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"restartAt": restart_at.to_string()}})),
            )
            .await?;
        // Until the restart is recorded, never fewer than two of three pods ready.
        let api = env.api::<Pod>();
        let lp = ListParams::default().labels("sluice.dev/rollout=r");
        let fewest = std::sync::atomic::AtomicUsize::new(3);
        let done = wait_for("restartedAt recorded", LIMIT, || async {
            let pods = api.list(&lp).await?.items;
            let ready = pods
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                })
                .count();
            fewest.fetch_min(ready, std::sync::atomic::Ordering::Relaxed);
            let s = rollouts(&env).get("r").await?.status.unwrap_or_default();
            Ok(s.restarted_at)
        })
        .await?;
        ensure!(
            done.0 == restart_at,
            "restartedAt {:?} is restartAt",
            done.0
        );
        let fewest = fewest.into_inner();
        ensure!(
            fewest >= 2,
            "{fewest} of 3 pods ready at one point: one at a time"
        );
        let after = pods_of(&env, &v1).await?;
        ensure!(after.len() == 3, "three pods after the restart");
        ensure!(
            after.iter().all(|(_, uid, _)| !before.contains(uid)),
            "every pod was replaced"
        );
        let sets = env.api::<ReplicaSet>().list(&lp).await?.items.len();
        ensure!(sets == 1, "no new revision: {sets} ReplicaSets");
        let s = wait_status(&env, "r", "r Healthy after the restart", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(3)
        })
        .await?;
        ensure!(s.stable_rs.as_deref() == Some(v1.as_str()));
        Ok(())
    })
    .await;
}

/// Argo Rollouts v1.10.2, measured on the local control plane: a blue-green Rollout created
/// with `spec.paused: true` scales its first revision to `replicas` but switches neither the
/// active nor the preview Service to it (no hash in their selectors) and stays Paused;
/// resuming switches both and makes it Healthy. Sluice does the same.
#[tokio::test]
async fn a_blue_green_created_paused_scales_up_but_switches_no_service_until_resumed() {
    TestEnv::run("parity-bg-created-paused", |env| async move {
        let controller = ControllerProcess::start(&env)?;
        create_service(&env, "bg-active", json!({"app": "bg"})).await?;
        create_service(&env, "bg-preview", json!({"app": "bg"})).await?;
        let mut ro = rollout(
            "bg",
            2,
            json!({"blueGreen": {"activeService": "bg-active", "previewService": "bg-preview"}}),
        )?;
        ro.spec.paused = Some(true);
        create_rollout(&env, &ro).await?;
        let st = wait_status(&env, "bg", "bg Paused with its pods up", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Paused) && s.ready_replicas == Some(2)
        })
        .await?;
        let v1 = st.stable_rs.clone().context("stableRS")?;
        ensure!(
            st.message
                .as_deref()
                .unwrap_or("")
                .contains("created paused"),
            "the message says why no Service is switched: {:?}",
            st.message
        );
        poke_and_wait(&env, &controller, "bg").await?;
        let (replicas, _) = replicas_and_deadline(&env, &v1).await?;
        ensure!(replicas == 2, "the first revision is scaled up: {replicas}");
        for svc in ["bg-active", "bg-preview"] {
            let hash = selector_hash(&env, svc).await?;
            ensure!(
                hash.is_none(),
                "{svc} is not switched while paused: {hash:?}"
            );
        }
        let st = rollouts(&env).get("bg").await?.status.context("status")?;
        ensure!(
            phase(&st) == Some(RolloutPhase::Paused),
            "still Paused: {:?}",
            st.phase
        );

        rollouts(&env)
            .patch(
                "bg",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"paused": false}})),
            )
            .await?;
        wait_status(&env, "bg", "bg Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(2)
        })
        .await?;
        for svc in ["bg-active", "bg-preview"] {
            let hash = selector_hash(&env, svc).await?;
            ensure!(
                hash.as_deref() == Some(v1.as_str()),
                "{svc} switched to {v1} once resumed: {hash:?}"
            );
        }
        Ok(())
    })
    .await;
}
