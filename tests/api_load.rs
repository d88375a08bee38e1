//! The load Sluice puts on the API server with nothing to do: 50 healthy Rollouts, one
//! controller, 60 s counted by the API server itself (`apiserver_request_total` on its
//! `/metrics`, by verb and resource). Each Rollout is reconciled every ~10 s in that time (the
//! periodic requeue, shortened by a hidden flag), and every one of those reconciles must read
//! from the watch caches and write nothing: 0 reads and 0 writes per reconcile. Watches are
//! the caches at work and are not counted.
//!
//! `apiserver_request_total` has no namespace or client label, so this test is alone in its
//! test binary: no other test of this process disturbs the count. Other processes using the
//! same control plane at the same time (tests of other binaries run in parallel, by hand) do
//! disturb it; what runs with the control plane itself is left out as follows: the node
//! simulator lists every pod every 2 s and the controller manager's informers list at cluster
//! scope, so namespaced kinds are counted only at namespace and object scope (a controller
//! confined to one namespace, as this one is, makes no other). The controller's own count of
//! its requests (`sluice_api_requests_total`), which no other process can touch, must be 0
//! too.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{ControllerProcess, http_get, rollouts};
use e2e::{TestEnv, wait_for};
use kube::api::PostParams;
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

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

/// One sample of a Prometheus text exposition: metric name, labels, value.
fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            if name != metric {
                return None;
            }
            let mut map = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let end = after.find('"')?;
                map.insert(
                    key.trim_start_matches(',').to_string(),
                    after[..end].to_string(),
                );
                rest = &after[end + 1..];
            }
            Some((map, value.parse().ok()?))
        })
        .collect()
}

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
        let services = env.api::<k8s_openapi::api::core::v1::Service>();
        for i in 0..ROLLOUTS {
            let name = format!("app-{i}");
            let svc = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
            }))?;
            services.create(&PostParams::default(), &svc).await?;
            let ro: Rollout = serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}},
                    "strategy": {"canary": {"stableService": name, "steps": [{"setWeight": 50}, {"pause": {}}]}}
                }
            }))?;
            rollouts(&env).create(&PostParams::default(), &ro).await?;
        }
        let c = ControllerProcess::start_with(
            &env,
            "a",
            &["--no-leader-elect", "--requeue-seconds", REQUEUE_SECONDS],
        )?;
        wait_for("every Rollout Healthy", Duration::from_secs(180), || async {
            let list = rollouts(&env).list(&Default::default()).await?;
            let healthy = list
                .items
                .iter()
                .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy))
                .count();
            Ok((healthy == ROLLOUTS).then_some(()))
        })
        .await?;
        // Healthy is written by the last change; wait until the controller has sent nothing
        // but watches for 5 s (its own count), so the window starts after the release.
        let last = std::cell::Cell::new((controller_counts(&c).await?.1, Instant::now()));
        let (last, controller) = (&last, &c);
        wait_for("the controller quiet for 5 s", Duration::from_secs(120), move || async move {
            let now = controller_counts(controller).await?.1;
            if now != last.get().0 {
                last.set((now, Instant::now()));
            }
            Ok((last.get().1.elapsed() >= Duration::from_secs(5)).then_some(()))
        })
        .await?;

        let (reads0, writes0, by0) = apiserver_counts(&env).await?;
        let (reconciles0, requests0) = controller_counts(&c).await?;
        // The measuring window itself (not a wait for something to happen).
        tokio::time::sleep(WINDOW).await;
        let (reads1, writes1, by1) = apiserver_counts(&env).await?;
        let (reconciles1, requests1) = controller_counts(&c).await?;

        let reconciles = reconciles1 - reconciles0;
        let (reads, writes) = (reads1 - reads0, writes1 - writes0);
        eprintln!(
            "{ROLLOUTS} healthy Rollouts, {} s: {reconciles} reconciles; at the API server {reads} reads and {writes} writes of Sluice's kinds ({:.3} and {:.3} per reconcile); the controller's own count of non-watch requests: {}",
            WINDOW.as_secs(),
            reads / reconciles.max(1.0),
            writes / reconciles.max(1.0),
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
            reads == 0.0 && writes == 0.0,
            "requests at the API server: {:?}",
            delta(&by1, &by0)
        );
        Ok(())
    })
    .await;
}
