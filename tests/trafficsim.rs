//! The traffic simulator against a real control plane and node simulator: requests follow the
//! Service's ready endpoints, VirtualService and HTTPRoute weights (and their changes), pods
//! answer by their annotations, and /metrics serves Istio's metrics.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::fixture::{create_service, ready_endpoints};
use common::metrics::samples;
use common::routers::{create_object, destination_rules, http_routes, virtual_services};
use e2e::trafficsim::{
    ERROR_RATE_ANNOTATION, LATENCY_ANNOTATION, LATENCY_BUCKETS, Routing, StatKey, TrafficSim,
};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(90);
const RPS: f64 = 500.0;

async fn replicaset(
    env: &TestEnv,
    hash: &str,
    replicas: i32,
    annotations: Value,
) -> anyhow::Result<()> {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": format!("web-{hash}")},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": hash}},
            "template": {
                "metadata": {"labels": {"app": "web", "rollouts-pod-template-hash": hash}, "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": format!("registry.example/web:{hash}")}]}
            }
        }
    }))?;
    env.api::<ReplicaSet>()
        .create(&PostParams::default(), &rs)
        .await
        .with_context(|| format!("creating ReplicaSet web-{hash}"))?;
    Ok(())
}

/// Waits until the EndpointSlices of `svc` list `n` ready endpoints.
async fn wait_ready_endpoints(env: &TestEnv, svc: &str, n: usize) -> anyhow::Result<()> {
    wait_for(&format!("{n} ready endpoints of {svc}"), LIMIT, || async {
        Ok((ready_endpoints(env, svc).await?.len() == n).then_some(()))
    })
    .await
}

/// The two versions: `aaa` healthy, `bbb` failing 20 % of requests; each behind its own
/// Service (`web-stable`, `web-canary`) and both behind `web`.
async fn two_versions(env: &TestEnv) -> anyhow::Result<()> {
    replicaset(env, "aaa", 2, json!({})).await?;
    replicaset(
        env,
        "bbb",
        2,
        json!({ERROR_RATE_ANNOTATION: "0.2", LATENCY_ANNOTATION: "40"}),
    )
    .await?;
    create_service(env, "web", json!({"app": "web"})).await?;
    create_service(
        env,
        "web-stable",
        json!({"app": "web", "rollouts-pod-template-hash": "aaa"}),
    )
    .await?;
    create_service(
        env,
        "web-canary",
        json!({"app": "web", "rollouts-pod-template-hash": "bbb"}),
    )
    .await?;
    wait_ready_endpoints(env, "web", 4).await?;
    wait_ready_endpoints(env, "web-stable", 2).await?;
    wait_ready_endpoints(env, "web-canary", 2).await
}

/// Counts summed by `key` of each row.
fn by<K: Ord>(stats: &[(StatKey, u64)], key: impl Fn(&StatKey) -> K) -> BTreeMap<K, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in stats {
        *out.entry(key(k)).or_default() += v;
    }
    out
}

fn per_service(stats: &[(StatKey, u64)]) -> BTreeMap<String, u64> {
    by(stats, |k| k.0.clone())
}

fn minus(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// `first`'s share of the requests in `counts`, and their total.
fn share(counts: &BTreeMap<String, u64>, first: &str) -> (f64, u64) {
    let total: u64 = counts.values().sum();
    let n = counts.get(first).copied().unwrap_or(0);
    (n as f64 / total.max(1) as f64, total)
}

/// Waits until a window of at least `window` new requests gives `first` a share within ±5 %
/// of `want`; returns how long that took and the share.
async fn wait_split(
    sim: &TrafficSim,
    first: &str,
    want: f64,
    window: u64,
) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let base = Mutex::new(per_service(&sim.stats()));
    wait_for(
        &format!("{first} getting {want} of {window} new requests"),
        LIMIT,
        || async {
            let now = per_service(&sim.stats());
            let mut base = base.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let delta = minus(&now, &base);
            let (s, total) = share(&delta, first);
            if total < window {
                return Ok(None);
            }
            if (s - want).abs() <= 0.05 {
                return Ok(Some((started.elapsed(), s)));
            }
            *base = now;
            anyhow::bail!("{first} had {s:.3} of {total} ({delta:?})")
        },
    )
    .await
}

/// Polls (every 10 ms, for up to 30 s) until `service` has been sent a request; returns how
/// long that took.
async fn first_request_to(sim: &TrafficSim, service: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let before = per_service(&sim.stats()).get(service).copied().unwrap_or(0);
    while started.elapsed() < Duration::from_secs(30) {
        if per_service(&sim.stats()).get(service).copied().unwrap_or(0) > before {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no request to {service} within 30 s")
}

/// Checks that `sim` follows the weights of router object `web` (served by `api`; its spec for
/// (stable, canary) weights is `spec`) as they change: 80/20 as created, 50/50 within 10 s of
/// the patch and then settled, 100/0, and 0/100 with a first canary request within 2 s.
async fn weights_are_followed(
    sim: &TrafficSim,
    api: &Api<DynamicObject>,
    router: &str,
    spec: impl Fn(u64, u64) -> Value,
) -> anyhow::Result<()> {
    let (_, s) = wait_split(sim, "web-stable", 0.8, 3000).await?;
    eprintln!("{router} 80/20: stable share {s:.3}");
    let set = |stable: u64, canary: u64| {
        let spec = spec(stable, canary);
        async move {
            api.patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
            anyhow::Ok(())
        }
    };
    set(50, 50).await?;
    let (took, s) = wait_split(sim, "web-stable", 0.5, 1000).await?;
    eprintln!("{router} 50/50: stable share {s:.3} of a 1000-request window, seen after {took:?}");
    ensure!(
        took < Duration::from_secs(10),
        "the split followed in {took:?}"
    );
    let (_, s) = wait_split(sim, "web-stable", 0.5, 3000).await?;
    eprintln!("{router} 50/50 settled: stable share {s:.3}");

    // How fast a change is followed: all to stable, then all to canary.
    set(100, 0).await?;
    wait_split(sim, "web-stable", 1.0, 500).await?;
    set(0, 100).await?;
    let took = first_request_to(sim, "web-canary").await?;
    eprintln!("{router} 100/0 -> 0/100: first canary request {took:?} after the patch returned");
    ensure!(
        took < Duration::from_secs(2),
        "routing followed in {took:?}"
    );
    Ok(())
}

/// Starts the traffic simulator in the test's namespace: `rps` requests a second, routed by
/// `routing`.
async fn simulate(env: &TestEnv, routing: Routing, rps: f64) -> anyhow::Result<TrafficSim> {
    TrafficSim::start(env.client.clone(), &env.namespace, routing, rps).await
}

#[tokio::test]
async fn service_routing_spreads_over_ready_endpoints_and_pods_fail_at_their_rate() {
    TestEnv::run("sim-service", |env| async move {
        two_versions(&env).await?;
        let sim = simulate(
            &env,
            Routing::Service {
                service: "web".into(),
            },
            RPS,
        )
        .await?;
        let stats = wait_for("2000 requests to each version", LIMIT, || async {
            let stats = sim.stats();
            let per_version = by(&stats, |k| k.2.clone());
            let enough = ["aaa", "bbb"]
                .iter()
                .all(|v| per_version.get(*v).copied().unwrap_or(0) >= 2000);
            Ok(enough.then_some(stats))
        })
        .await?;
        let counts = by(&stats, |k| (k.0.clone(), k.1.clone(), k.2.clone(), k.3));
        let get = |v: &str, code: u16| {
            counts
                .get(&("web".into(), "web".into(), v.into(), code))
                .copied()
                .unwrap_or(0)
        };
        ensure!(
            get("aaa", 500) == 0,
            "the healthy version never fails: {counts:?}"
        );
        let bbb = get("bbb", 200) + get("bbb", 500);
        let rate = get("bbb", 500) as f64 / bbb as f64;
        ensure!(
            (rate - 0.2).abs() <= 0.05,
            "bbb error rate {rate:.3}: {counts:?}"
        );
        let aaa = get("aaa", 200);
        let split = aaa as f64 / (aaa + bbb) as f64;
        ensure!(
            (split - 0.5).abs() <= 0.05,
            "4 endpoints, 2 per version: {split:.3}"
        );
        let total: u64 = stats.iter().map(|(_, v)| v).sum();
        ensure!(
            total == aaa + bbb,
            "nothing but web's two versions: {stats:?}"
        );
        eprintln!("service routing: aaa {aaa}, bbb {bbb}, bbb error rate {rate:.3}");

        // A pod made to fail now: its annotation changes on the running pod.
        let pods: Api<k8s_openapi::api::core::v1::Pod> = env.api();
        let a_pod = pods
            .list(&ListParams::default().labels("rollouts-pod-template-hash=aaa"))
            .await?
            .items
            .into_iter()
            .next()
            .context("a pod of aaa")?;
        let name = a_pod.metadata.name.clone().context("pod name")?;
        pods.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {ERROR_RATE_ANNOTATION: "1"}}})),
        )
        .await?;
        let before = get("aaa", 500);
        wait_for("aaa failing on one pod", LIMIT, || async {
            let counts = by(&sim.stats(), |k| (k.2.clone(), k.3));
            Ok(
                (counts.get(&("aaa".into(), 500)).copied().unwrap_or(0) > before + 100)
                    .then_some(()),
            )
        })
        .await?;
        sim.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn virtualservice_weights_split_requests_and_changes_follow_at_once() {
    TestEnv::run("sim-istio", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        two_versions(&env).await?;
        let vs = virtual_services(&env);
        let spec = |stable: u64, canary: u64| {
            json!({"hosts": ["web"], "http": [
                {"name": "beta", "match": [{"headers": {"x-beta": {"exact": "yes"}}}],
                 "route": [{"destination": {"host": "web-canary"}}]},
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "web-stable"}}]},
                {"name": "primary", "route": [
                    {"destination": {"host": "web-stable"}, "weight": stable},
                    {"destination": {"host": format!("web-canary.{}.svc.cluster.local", env.namespace)}, "weight": canary}]}]})
        };
        create_object(&vs, json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web"}, "spec": spec(80, 20)})).await?;
        let sim = simulate(&env, Routing::VirtualService { name: "web".into(), route: None }, RPS).await?;
        weights_are_followed(&sim, &vs, "istio", spec).await?;
        let stats = sim.stats();
        ensure!(
            stats.iter().all(|(k, _)| k.0 == "web-stable" || k.0 == "web-canary"),
            "header and path routes get none of the load: {stats:?}"
        );
        sim.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn virtualservice_subsets_resolve_through_the_destinationrule() {
    TestEnv::run("sim-istio-subset", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        two_versions(&env).await?;
        create_object(&destination_rules(&env), json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "web"},
            "spec": {"host": "web", "subsets": [
                {"name": "stable", "labels": {"rollouts-pod-template-hash": "aaa"}},
                {"name": "canary", "labels": {"rollouts-pod-template-hash": "bbb"}},
                {"name": "preview", "labels": {"rollouts-pod-template-hash": "ccc"}}]}
        })).await?;
        create_object(&virtual_services(&env), json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [
                {"name": "primary", "route": [
                    {"destination": {"host": "web", "subset": "stable"}, "weight": 70},
                    {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
                    {"destination": {"host": "web", "subset": "preview"}, "weight": 10}]}]}
        })).await?;
        let routing = Routing::VirtualService { name: "web".into(), route: Some("primary".into()) };
        let sim = simulate(&env, routing, RPS).await?;
        let stats = wait_for("3000 requests", LIMIT, || async {
            let stats = sim.stats();
            Ok((stats.iter().map(|(_, v)| v).sum::<u64>() >= 3000).then_some(stats))
        })
        .await?;
        let per = by(&stats, |k| (k.2.clone(), k.3 == 503));
        let total: u64 = per.values().sum();
        let frac = |v: &str, unavailable: bool| per.get(&(v.to_string(), unavailable)).copied().unwrap_or(0) as f64 / total as f64;
        ensure!((frac("aaa", false) - 0.7).abs() <= 0.05, "{per:?}");
        ensure!((frac("bbb", false) - 0.2).abs() <= 0.05, "{per:?}");
        ensure!((frac("unknown", true) - 0.1).abs() <= 0.05, "an empty subset answers 503: {per:?}");
        ensure!(stats.iter().all(|(k, _)| k.0 == "web"), "the Service is web: {stats:?}");
        sim.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn httproute_weights_split_requests_and_changes_follow_at_once() {
    TestEnv::run("sim-gateway", |env| async move {
        e2e::routers::install_router_crds(&env.client).await?;
        two_versions(&env).await?;
        let api = http_routes(&env);
        let spec = |stable: u64, canary: u64| {
            json!({"parentRefs": [{"name": "shop-gateway"}], "hostnames": ["web.example.com"], "rules": [
                {"name": "beta", "matches": [{"headers": [{"name": "x-beta", "value": "yes"}]}],
                 "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}], "backendRefs": [{"name": "web", "port": 80}]},
                {"backendRefs": [{"name": "web-stable", "port": 80, "weight": stable}, {"name": "web-canary", "port": 80, "weight": canary}]}]})
        };
        create_object(&api, json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web"}, "spec": spec(80, 20)})).await?;
        let sim = simulate(&env, Routing::HttpRoute { name: "web".into() }, RPS).await?;
        weights_are_followed(&sim, &api, "gateway", spec).await?;
        // The route goes away: no route, 503.
        api.delete("web", &Default::default()).await?;
        wait_for("503 NR once the route is gone", LIMIT, || async {
            Ok(sim.stats().iter().any(|(k, _)| k.0 == "unknown" && k.3 == 503).then_some(()))
        })
        .await?;
        sim.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn metrics_endpoint_serves_istio_metrics() {
    TestEnv::run("sim-metrics", |env| async move {
        two_versions(&env).await?;
        let sim = simulate(
            &env,
            Routing::Service {
                service: "web".into(),
            },
            RPS,
        )
        .await?;
        let empty = simulate(
            &env,
            Routing::Service {
                service: "nobody".into(),
            },
            50.0,
        )
        .await?;
        wait_for("1000 requests", LIMIT, || async {
            Ok((sim.stats().iter().map(|(_, v)| v).sum::<u64>() >= 1000).then_some(()))
        })
        .await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let url = format!("http://{}/metrics", sim.metrics_target());
        ensure!(
            sim.metrics_target().starts_with("127.0.0.1:"),
            "{}",
            sim.metrics_target()
        );
        let resp = http.get(&url).send().await?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ensure!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().await?;
        ensure!(
            text.contains("# TYPE istio_requests_total counter"),
            "{text}"
        );
        ensure!(
            text.contains("# TYPE istio_request_duration_milliseconds histogram"),
            "{text}"
        );
        let requests = samples(&text, "istio_requests_total");
        let ns = env.namespace.clone();
        let want = |rev: &str, code: &str| {
            let ns = ns.clone();
            let rev = rev.to_string();
            let code = code.to_string();
            move |l: &BTreeMap<String, String>| {
                let expect = [
                    ("reporter", "destination"),
                    ("destination_workload", "web"),
                    ("destination_workload_namespace", ns.as_str()),
                    ("destination_service_name", "web"),
                    ("destination_service_namespace", ns.as_str()),
                    ("destination_canonical_revision", rev.as_str()),
                    ("response_code", code.as_str()),
                ];
                expect
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            }
        };
        for (rev, code) in [("aaa", "200"), ("bbb", "200"), ("bbb", "500")] {
            let found: Vec<_> = requests
                .iter()
                .filter(|(l, _)| want(rev, code)(l))
                .collect();
            ensure!(
                found.len() == 1 && found[0].1 > 0.0,
                "{rev} {code}: {found:?} in\n{text}"
            );
            let series = &found[0].0;
            ensure!(
                series.get("destination_service").map(String::as_str)
                    == Some(format!("web.{ns}.svc.cluster.local").as_str()),
                "{series:?}"
            );
        }
        ensure!(
            !requests.iter().any(|(l, _)| want("aaa", "500")(l)),
            "aaa never fails"
        );
        let buckets = samples(&text, "istio_request_duration_milliseconds_bucket");
        let bbb_ok: Vec<_> = buckets
            .iter()
            .filter(|(l, _)| want("bbb", "200")(l))
            .collect();
        let les: Vec<&str> = bbb_ok
            .iter()
            .filter_map(|(l, _)| l.get("le").map(String::as_str))
            .collect();
        ensure!(
            les.len() == LATENCY_BUCKETS.len() + 1 && les.last() == Some(&"+Inf"),
            "{les:?}"
        );
        let le = |b: &str| {
            bbb_ok
                .iter()
                .find(|(l, _)| l.get("le").map(String::as_str) == Some(b))
                .map(|(_, v)| *v)
        };
        // bbb answers in 40 ms ± 10 %: nothing under 25, everything under 50.
        ensure!(
            le("25.0") == Some(0.0) && le("50.0") == le("+Inf") && le("50.0") > Some(0.0),
            "{bbb_ok:?}"
        );
        let ok_count = samples(&text, "istio_request_duration_milliseconds_count")
            .into_iter()
            .find(|(l, _)| want("bbb", "200")(l))
            .map(|(_, v)| v);
        ensure!(ok_count == le("+Inf"), "count {ok_count:?}");

        // OpenMetrics for Prometheus.
        let om = http
            .get(&url)
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .send()
            .await?;
        ensure!(
            om.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/openmetrics-text"))
        );
        let om = om.text().await?;
        ensure!(
            om.contains("# TYPE istio_requests counter") && om.trim_end().ends_with("# EOF"),
            "{om}"
        );

        // No endpoints: 503, workload unknown.
        wait_for("503s for a Service without pods", LIMIT, || async {
            Ok(empty
                .stats()
                .iter()
                .any(|(k, v)| k.0 == "nobody" && k.1 == "unknown" && k.3 == 503 && *v > 0)
                .then_some(()))
        })
        .await?;
        let text = http
            .get(format!("http://{}/metrics", empty.metrics_target()))
            .send()
            .await?
            .text()
            .await?;
        let s = samples(&text, "istio_requests_total");
        ensure!(
            s.len() == 1
                && s[0].0.get("destination_workload").map(String::as_str) == Some("unknown")
                && s[0].0.get("response_code").map(String::as_str) == Some("503")
                && s[0].0.get("response_flags").map(String::as_str) == Some("UH"),
            "{text}"
        );

        // Stopped: the port is closed.
        let target = sim.metrics_target();
        sim.stop().await;
        ensure!(
            tokio::net::TcpStream::connect(&target).await.is_err(),
            "{target} still open"
        );
        // Dropped: the port closes too.
        let target = empty.metrics_target();
        drop(empty);
        wait_for("the dropped simulator's port closed", LIMIT, || async {
            Ok(tokio::net::TcpStream::connect(&target)
                .await
                .is_err()
                .then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn prometheus_scrapes_it_and_istio_queries_work() {
    TestEnv::run("sim-prometheus", |env| async move {
        two_versions(&env).await?;
        let sim = simulate(&env, Routing::Service { service: "web".into() }, RPS).await?;
        let dir = std::env::temp_dir().join(format!("trafficsim-prom-{}", env.namespace));
        let prom = e2e::prometheus::Prometheus::start(&dir, &[sim.metrics_target()], Duration::from_secs(1)).await?;
        let ns = &env.namespace;
        // The success rate query of Argo Rollouts' and Flagger's Istio templates.
        let q = format!(
            r#"sum(irate(istio_requests_total{{reporter="destination",destination_service_name="web",destination_service_namespace="{ns}",destination_canonical_revision="bbb",response_code!~"5.*"}}[10s])) / sum(irate(istio_requests_total{{reporter="destination",destination_service_name="web",destination_service_namespace="{ns}",destination_canonical_revision="bbb"}}[10s]))"#
        );
        let got = prom
            .wait_until(&q, LIMIT, |s| s.first().is_some_and(|(_, v)| (v - 0.8).abs() <= 0.1))
            .await?;
        eprintln!("prometheus: bbb success rate {got:?}");
        let p = format!(
            r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{destination_workload_namespace="{ns}",destination_canonical_revision="bbb"}}[10s])) by (le))"#
        );
        // bbb answers in 40 ms ± 10 %, all in the (25, 50] bucket.
        let got = prom
            .wait_until(&p, LIMIT, |s| s.first().is_some_and(|(_, v)| (25.0..=50.0).contains(v)))
            .await?;
        eprintln!("prometheus: bbb p99 {got:?} ms");
        sim.stop().await;
        drop(prom);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
    .await;
}
