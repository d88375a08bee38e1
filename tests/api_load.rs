//! The load Sluice puts on the API server with nothing to do: 50 healthy Rollouts, one
//! controller, 60 s counted by the API server itself (`apiserver_request_total` on its
//! `/metrics`, by verb and resource). Each Rollout is reconciled every ~10 s in that time (the
//! periodic requeue, shortened by a hidden flag), and every one of those reconciles must read
//! from the watch caches and write nothing: 0 reads and 0 writes per reconcile. Watches are
//! the caches at work and are not counted.
//!
//! `apiserver_request_total` has no namespace or client label, so other clients of the same
//! control plane show in it: the node simulator (it lists every pod every 2 s), the controller
//! manager, and tests of other binaries running at the same time. So the API server is made
//! to tell Sluice's requests apart itself: the controller runs as a ServiceAccount of its own,
//! and two FlowSchemas of the API server's priority and fairness match that account's reads
//! (get, list) and writes (create, update, patch, delete); the API server counts what each
//! dispatches (`apiserver_flowcontrol_dispatched_requests_total` by flow schema). Those two
//! counts must stay at 0. `apiserver_request_total` for Sluice's kinds is reported beside them
//! (exact when nothing else runs: this test is alone in its binary, so no test of this
//! process disturbs it), and the controller's own count of its requests
//! (`sluice_api_requests_total`) must be 0 too.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, create_service, rollout};
use common::metrics::samples;
use common::{ControllerProcess, http_get, rollouts};
use e2e::{TestEnv, wait_for};
use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;
use sluice::api::rollout::RolloutPhase;

const ROLLOUTS: usize = 50;
const WINDOW: Duration = Duration::from_secs(60);
const REQUEUE_SECONDS: &str = "10";

/// The resources Sluice reads each reconcile, and those it may write.
const READ: &[&str] = &[
    "rollouts",
    "replicasets",
    "pods",
    "analysisruns",
    "analysistemplates",
    "clusteranalysistemplates",
    "services",
    "deployments",
    "virtualservices",
    "destinationrules",
    "httproutes",
];
const WRITTEN: &[&str] = &[
    "rollouts",
    "replicasets",
    "analysisruns",
    "services",
    "deployments",
    "virtualservices",
    "destinationrules",
    "httproutes",
    "events",
];
const CLUSTER_SCOPED: &[&str] = &["clusteranalysistemplates"];

/// Requests Sluice's kinds took at the API server: (reads, writes, by "VERB resource").
async fn apiserver_counts(env: &TestEnv) -> anyhow::Result<(f64, f64, BTreeMap<String, f64>)> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = env.client.request_text(req).await?;
    let (mut reads, mut writes, mut by) = (0.0, 0.0, BTreeMap::new());
    for (l, v) in samples(&text, "apiserver_request_total") {
        let get = |k: &str| l.get(k).map(String::as_str).unwrap_or_default();
        let (verb, resource, scope) = (get("verb"), get("resource"), get("scope"));
        if scope == "cluster" && !CLUSTER_SCOPED.contains(&resource) {
            continue;
        }
        let read = matches!(verb, "GET" | "LIST") && READ.contains(&resource);
        let write = matches!(
            verb,
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
        ) && WRITTEN.contains(&resource);
        if read {
            reads += v;
        }
        if write {
            writes += v;
        }
        if read || write {
            *by.entry(format!("{verb} {resource}")).or_insert(0.0) += v;
        }
    }
    Ok((reads, writes, by))
}

/// What the API server dispatched for `flow_schema`.
async fn dispatched(env: &TestEnv, flow_schema: &str) -> anyhow::Result<f64> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = env.client.request_text(req).await?;
    Ok(
        samples(&text, "apiserver_flowcontrol_dispatched_requests_total")
            .into_iter()
            .filter(|(l, _)| l.get("flow_schema").map(String::as_str) == Some(flow_schema))
            .map(|(_, v)| v)
            .sum(),
    )
}

/// A FlowSchema matching the `verbs` of the ServiceAccount `sa` in `ns`.
fn flow_schema(name: &str, ns: &str, sa: &str, verbs: &[&str]) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "matchingPrecedence": 1000,
            "priorityLevelConfiguration": {"name": "global-default"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": sa, "namespace": ns}}],
                "resourceRules": [{"verbs": verbs, "apiGroups": ["*"], "resources": ["*"],
                                   "namespaces": ["*"], "clusterScope": true}]
            }]
        }
    }))?)
}

/// A kubeconfig for the ServiceAccount `sa` (cluster-admin), beside the admin's.
async fn service_account_kubeconfig(
    env: &TestEnv,
    sa: &str,
    binding: &str,
) -> anyhow::Result<PathBuf> {
    let sas: Api<ServiceAccount> = env.api();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa}}))?;
    sas.create(&PostParams::default(), &account).await?;
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": env.namespace}]
    }))?;
    Api::<ClusterRoleBinding>::all(env.client.clone())
        .create(&PostParams::default(), &crb)
        .await?;
    let token: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?;
    let token = sas
        .create_token_request(sa, &PostParams::default(), &token)
        .await?
        .status
        .context("token")?
        .token;
    let admin = kube::config::Kubeconfig::read_from(&env.cluster.kubeconfig)?;
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("cluster in the admin kubeconfig")?;
    let path = std::env::temp_dir().join(format!("sluice-{}-{sa}.kubeconfig", env.namespace));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: {sa}\ncurrent-context: c\n",
            cluster.server.context("server")?,
            cluster.certificate_authority_data.context("CA")?,
        ),
    )?;
    Ok(path)
}

/// From the controller's /metrics: reconciles, and its requests other than watches.
async fn controller_counts(c: &ControllerProcess) -> anyhow::Result<(f64, f64)> {
    let (_, text) = http_get(c, "/metrics").await?;
    let reconciles = samples(&text, "sluice_reconciles_total")
        .first()
        .map(|(_, v)| *v)
        .context("sluice_reconciles_total")?;
    let requests = samples(&text, "sluice_api_requests_total")
        .into_iter()
        .filter(|(l, _)| l.get("verb").map(String::as_str) != Some("watch"))
        .map(|(_, v)| v)
        .sum();
    Ok((reconciles, requests))
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

#[tokio::test]
async fn fifty_healthy_rollouts_cost_the_api_server_nothing_but_watches() {
    TestEnv::run("api-load", |env| async move {
        for i in 0..ROLLOUTS {
            let name = format!("app-{i}");
            create_service(&env, &name, json!({ "app": name })).await?;
            let canary =
                json!({"stableService": name, "steps": [{"setWeight": 50}, {"pause": {}}]});
            create_rollout(&env, &rollout(&name, 1, json!({ "canary": canary }))?).await?;
        }
        // Cluster-wide objects of this test, named after its namespace; deleted at the end.
        let binding = format!("sluice-{}", env.namespace);
        let (reads_fs, writes_fs) = (
            format!("sluice-reads-{}", env.namespace),
            format!("sluice-writes-{}", env.namespace),
        );
        let schemas: Api<DynamicObject> = Api::all_with(
            env.client.clone(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk(
                "flowcontrol.apiserver.k8s.io",
                "v1",
                "FlowSchema",
            )),
        );
        let measured = async {
            let kubeconfig = service_account_kubeconfig(&env, "sluice", &binding).await?;
            schemas
                .create(
                    &PostParams::default(),
                    &flow_schema(&reads_fs, &env.namespace, "sluice", &["get", "list"])?,
                )
                .await?;
            schemas
                .create(
                    &PostParams::default(),
                    &flow_schema(
                        &writes_fs,
                        &env.namespace,
                        "sluice",
                        &["create", "update", "patch", "delete", "deletecollection"],
                    )?,
                )
                .await?;
            // The API server applies a FlowSchema once its configuration controller has seen it
            // (it then writes the schema's Dangling condition).
            for name in [&reads_fs, &writes_fs] {
                wait_for(
                    "the FlowSchema in force",
                    Duration::from_secs(60),
                    || async {
                        let fs = schemas.get(name).await?;
                        let seen = fs.data["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Dangling" && c["status"] == "False")
                        });
                        Ok(seen.then_some(()))
                    },
                )
                .await?;
            }
            measure(&env, &kubeconfig, &reads_fs, &writes_fs).await
        }
        .await;
        let _ = schemas.delete(&reads_fs, &DeleteParams::default()).await;
        let _ = schemas.delete(&writes_fs, &DeleteParams::default()).await;
        let _ = Api::<ClusterRoleBinding>::all(env.client.clone())
            .delete(&binding, &DeleteParams::default())
            .await;
        measured
    })
    .await;
}

/// Starts the controller as the ServiceAccount of `kubeconfig`, waits for the 50 Rollouts to
/// be Healthy and the controller quiet, and counts one window.
async fn measure(
    env: &TestEnv,
    kubeconfig: &std::path::Path,
    reads_fs: &str,
    writes_fs: &str,
) -> anyhow::Result<()> {
    let c = ControllerProcess::start_with_kubeconfig(
        env,
        "a",
        &["--no-leader-elect", "--requeue-seconds", REQUEUE_SECONDS],
        kubeconfig,
    )?;
    wait_for(
        "every Rollout Healthy",
        Duration::from_secs(180),
        || async {
            let list = rollouts(env).list(&Default::default()).await?;
            let healthy = list
                .items
                .iter()
                .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy))
                .count();
            Ok((healthy == ROLLOUTS).then_some(()))
        },
    )
    .await?;
    // Healthy is written by the last change; wait until the controller has sent nothing
    // but watches for 5 s (its own count), so the window starts after the release.
    let last = std::cell::Cell::new((controller_counts(&c).await?.1, Instant::now()));
    let (last, controller) = (&last, &c);
    wait_for(
        "the controller quiet for 5 s",
        Duration::from_secs(120),
        move || async move {
            let now = controller_counts(controller).await?.1;
            if now != last.get().0 {
                last.set((now, Instant::now()));
            }
            Ok((last.get().1.elapsed() >= Duration::from_secs(5)).then_some(()))
        },
    )
    .await?;

    let (reads0, writes0, by0) = apiserver_counts(env).await?;
    let (own_reads0, own_writes0) = (
        dispatched(env, reads_fs).await?,
        dispatched(env, writes_fs).await?,
    );
    let (reconciles0, requests0) = controller_counts(&c).await?;
    // The schemas do count Sluice: its caches' first lists and the release's writes.
    ensure!(
        own_reads0 > 0.0 && own_writes0 > 0.0,
        "the FlowSchemas saw {own_reads0} reads and {own_writes0} writes from Sluice's start"
    );
    // The measuring window itself (not a wait for something to happen).
    tokio::time::sleep(WINDOW).await;
    let (reads1, writes1, by1) = apiserver_counts(env).await?;
    let (own_reads1, own_writes1) = (
        dispatched(env, reads_fs).await?,
        dispatched(env, writes_fs).await?,
    );
    let (reconciles1, requests1) = controller_counts(&c).await?;
    let (own_reads, own_writes) = (own_reads1 - own_reads0, own_writes1 - own_writes0);

    let reconciles = reconciles1 - reconciles0;
    let (reads, writes) = (reads1 - reads0, writes1 - writes0);
    eprintln!(
        "{ROLLOUTS} healthy Rollouts, {} s: {reconciles} reconciles; the API server dispatched {own_reads} reads and {own_writes} writes from Sluice's account ({:.3} and {:.3} per reconcile); apiserver_request_total for Sluice's kinds, from every client: {reads} reads, {writes} writes {:?}; the controller's own count of non-watch requests: {}",
        WINDOW.as_secs(),
        own_reads / reconciles.max(1.0),
        own_writes / reconciles.max(1.0),
        delta(&by1, &by0),
        requests1 - requests0,
    );
    // At a requeue of 10 s (+-20%), every Rollout is reconciled at least 4 times in 60 s.
    ensure!(
        reconciles >= (ROLLOUTS * 4) as f64,
        "the periodic requeue reconciled only {reconciles} times"
    );
    ensure!(
        requests1 - requests0 == 0.0,
        "the controller sent {} requests other than watches",
        requests1 - requests0
    );
    ensure!(
        own_reads == 0.0 && own_writes == 0.0,
        "the API server dispatched {own_reads} reads and {own_writes} writes from Sluice"
    );
    Ok(())
}
