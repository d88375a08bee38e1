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
//! and FlowSchemas of the API server's priority and fairness, one per verb
//! (`e2e::identity`), match that account's requests; the API server counts what each
//! dispatches (`apiserver_flowcontrol_dispatched_requests_total` by flow schema). Its reads
//! (get, list) and writes (create, update, patch, delete) must stay at 0. `apiserver_request_total` for Sluice's kinds is reported beside them
//! (exact when nothing else runs: this test is alone in its binary, so no test of this
//! process disturbs it), and the controller's own count of its requests
//! (`sluice_api_requests_total`) must be 0 too.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, create_service, rollout};
use common::metrics::samples;
use common::{ControllerProcess, http_get, wait_all_healthy, with_service_account};
use e2e::identity::requests_by_verb;
use e2e::{TestEnv, wait_for};
use serde_json::json;

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

/// What the API server dispatched from the account `name`: (reads, writes).
async fn dispatched(env: &TestEnv, name: &str) -> anyhow::Result<(f64, f64)> {
    let by_verb = requests_by_verb(&env.client, name).await?;
    let sum = |verbs: &[&str]| -> f64 { verbs.iter().filter_map(|v| by_verb.get(*v)).sum() };
    Ok((
        sum(&["get", "list"]),
        sum(&["create", "update", "patch", "delete"]),
    ))
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
        let rules = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
        let env = &env;
        with_service_account(env, rules, |account, kubeconfig| async move {
            measure(env, &kubeconfig, &account).await
        })
        .await
    })
    .await;
}

/// Starts the controller as the ServiceAccount of `kubeconfig`, waits for the 50 Rollouts to
/// be Healthy and the controller quiet, and counts one window.
async fn measure(env: &TestEnv, kubeconfig: &std::path::Path, account: &str) -> anyhow::Result<()> {
    let c = ControllerProcess::start_with_kubeconfig(
        env,
        "a",
        &["--no-leader-elect", "--requeue-seconds", REQUEUE_SECONDS],
        kubeconfig,
    )?;
    wait_all_healthy(env, ROLLOUTS, Duration::from_secs(180)).await?;
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
    let (own_reads0, own_writes0) = dispatched(env, account).await?;
    let (reconciles0, requests0) = controller_counts(&c).await?;
    // The schemas do count Sluice: its caches' first lists and the release's writes.
    ensure!(
        own_reads0 > 0.0 && own_writes0 > 0.0,
        "the FlowSchemas saw {own_reads0} reads and {own_writes0} writes from Sluice's start"
    );
    // The measuring window itself (not a wait for something to happen).
    tokio::time::sleep(WINDOW).await;
    let (reads1, writes1, by1) = apiserver_counts(env).await?;
    let (own_reads1, own_writes1) = dispatched(env, account).await?;
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
