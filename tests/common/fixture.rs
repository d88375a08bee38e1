//! The objects the tests make and the changes they make to them: Rollouts, Services, new
//! images, promotions and aborts, and the ReplicaSets the controller makes in return.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::constants::{LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT};
use sluice::api::rollout::{Rollout, RolloutPhase, RolloutStatus};

use super::{phase, rollouts, wait_status};

/// A Rollout `name` of `replicas` pods labelled `app: <name>`, each with one container `web`
/// running `registry.example/web:1`, released by `strategy` (`{"canary": ...}` or
/// `{"blueGreen": ...}`).
pub fn rollout(name: &str, replicas: i32, strategy: Value) -> anyhow::Result<Rollout> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
            },
            "strategy": strategy
        }
    }))?)
}

/// Rollout `web` of `replicas` pods, a canary over the Services `web-stable` and `web-canary`
/// with the other fields of its strategy from `canary` (steps, surge, routing, ...).
pub fn web_canary(replicas: i32, canary: Value) -> anyhow::Result<Rollout> {
    let services = json!({"stableService": "web-stable", "canaryService": "web-canary"});
    rollout(
        "web",
        replicas,
        json!({ "canary": merged(services, canary) }),
    )
}

/// `base` (a JSON object) with every field of `extra` (another) set on it: a fixture's
/// defaults with a test's own fields.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// Creates Rollout `ro`.
pub async fn create_rollout(env: &TestEnv, ro: &Rollout) -> anyhow::Result<()> {
    rollouts(env).create(&PostParams::default(), ro).await?;
    Ok(())
}

/// Creates Service `name` selecting `selector`, port 80 to the pods' 8080.
pub async fn create_service(env: &TestEnv, name: &str, selector: Value) -> anyhow::Result<()> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    env.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .with_context(|| format!("creating Service {name}"))?;
    Ok(())
}

/// A merge patch of Rollout `name`'s spec.
pub async fn patch_spec(env: &TestEnv, name: &str, spec: Value) -> anyhow::Result<()> {
    rollouts(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

/// A new image for the `web` container of Rollout `name`: a new revision to release.
pub async fn set_image(env: &TestEnv, name: &str, image: &str) -> anyhow::Result<()> {
    patch_spec(
        env,
        name,
        json!({"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}),
    )
    .await
}

/// A new image and pod annotations (e.g. how the simulated pods behave) for Rollout `name`.
pub async fn set_template(
    env: &TestEnv,
    name: &str,
    image: &str,
    annotations: Value,
) -> anyhow::Result<()> {
    patch_spec(
        env,
        name,
        json!({"template": {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "web", "image": image}]}
        }}),
    )
    .await
}

/// Merge-patches the status of Rollout `name`, as `kubectl sluice` and users do.
pub async fn patch_status(env: &TestEnv, name: &str, status: Value) -> anyhow::Result<()> {
    rollouts(env)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Promotes Rollout `name` past its pause: its pause conditions cleared.
pub async fn promote(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    patch_status(env, name, json!({"pauseConditions": null})).await
}

/// Aborts the release of Rollout `name` (`true`), or retries it (`false`).
pub async fn set_abort(env: &TestEnv, name: &str, abort: bool) -> anyhow::Result<()> {
    patch_status(env, name, json!({ "abort": abort })).await
}

/// Deletes Rollout `name` and waits until it is gone.
pub async fn delete_rollout(env: &TestEnv, name: &str, limit: Duration) -> anyhow::Result<()> {
    let api = rollouts(env);
    api.delete(name, &Default::default()).await?;
    wait_for("the Rollout gone", limit, || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// Waits until Rollout `name` is Healthy with `replicas` pods available; returns the hash of
/// its stable revision.
pub async fn wait_healthy(
    env: &TestEnv,
    name: &str,
    replicas: i32,
    limit: Duration,
) -> anyhow::Result<String> {
    let s = wait_status(env, name, &format!("{name} Healthy"), limit, |s| {
        phase(s) == Some(RolloutPhase::Healthy) && s.available_replicas == Some(replicas)
    })
    .await?;
    s.stable_rs.context("stableRS")
}

/// Waits until Rollout `name` is Healthy on a stable revision other than `previous` (a release
/// promoted to the end); returns the new stable revision's hash.
pub async fn wait_promoted(
    env: &TestEnv,
    name: &str,
    previous: &str,
    limit: Duration,
) -> anyhow::Result<String> {
    let what = format!("{name}: a revision after {previous} promoted");
    let s = wait_status(env, name, &what, limit, |s| {
        phase(s) == Some(RolloutPhase::Healthy)
            && s.stable_rs.is_some()
            && s.stable_rs.as_deref() != Some(previous)
            && s.stable_rs == s.current_pod_hash
    })
    .await?;
    s.stable_rs.context("stableRS")
}

/// Waits until Rollout `name` is Paused at step `step`, and returns its status.
pub async fn wait_paused_at(
    env: &TestEnv,
    name: &str,
    step: i32,
    limit: Duration,
) -> anyhow::Result<RolloutStatus> {
    wait_status(
        env,
        name,
        &format!("{name} paused at step {step}"),
        limit,
        |s| phase(s) == Some(RolloutPhase::Paused) && s.current_step_index == Some(step),
    )
    .await
}

/// One ReplicaSet as the API server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetState {
    /// Its `rollouts-pod-template-hash` label.
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Whether it is being deleted.
    pub deleting: bool,
}

/// The ReplicaSets matching label selector `labels`.
pub async fn replica_sets(env: &TestEnv, labels: &str) -> anyhow::Result<Vec<ReplicaSetState>> {
    let api = env.api::<ReplicaSet>();
    Ok(api
        .list(&ListParams::default().labels(labels))
        .await?
        .items
        .into_iter()
        .map(|rs| ReplicaSetState {
            hash: rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_POD_TEMPLATE_HASH).cloned())
                .unwrap_or_default(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            available: rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
        })
        .collect())
}

/// The ReplicaSets of Rollout `rollout`.
pub async fn replica_sets_of(env: &TestEnv, rollout: &str) -> anyhow::Result<Vec<ReplicaSetState>> {
    replica_sets(env, &format!("{LABEL_ROLLOUT}={rollout}")).await
}

/// The ReplicaSet of revision `hash`.
pub async fn replica_set_of_revision(
    env: &TestEnv,
    hash: &str,
) -> anyhow::Result<Option<ReplicaSetState>> {
    Ok(
        replica_sets(env, &format!("{LABEL_POD_TEMPLATE_HASH}={hash}"))
            .await?
            .into_iter()
            .next(),
    )
}

/// `spec.replicas` of each ReplicaSet of Rollout `rollout`, by pod-template-hash.
pub async fn replicas_by_hash(
    env: &TestEnv,
    rollout: &str,
) -> anyhow::Result<BTreeMap<String, i32>> {
    Ok(replica_sets_of(env, rollout)
        .await?
        .into_iter()
        .map(|rs| (rs.hash, rs.replicas))
        .collect())
}

/// The ready endpoints of Service `service`, from the EndpointSlices the real EndpointSlice
/// controller writes.
pub async fn ready_endpoints(env: &TestEnv, service: &str) -> anyhow::Result<Vec<Endpoint>> {
    let slices = env.api::<EndpointSlice>();
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    Ok(slices
        .list(&lp)
        .await?
        .items
        .into_iter()
        .flat_map(|s| s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .collect())
}
