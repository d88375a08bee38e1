//! The shop that the demo and the labs release: a canary `Rollout` named `shop` behind the
//! Services `shop-stable` and `shop-canary` (or `shop-active` and `shop-preview` for
//! blue-green) and the Istio VirtualService `shop`, and how to read its state back from the
//! API server and Prometheus. Everything takes the namespace, so several shops can share one
//! control plane.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::prometheus::Prometheus;
use crate::wait_for;

/// The Rollout's name (and the `app` label of its pods).
pub const NAME: &str = "shop";

pub fn gvk(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

pub fn rollout_resource() -> ApiResource {
    gvk("sluice.dev", "v1alpha1", "Rollout")
}

pub fn analysis_run_resource() -> ApiResource {
    gvk("sluice.dev", "v1alpha1", "AnalysisRun")
}

pub fn virtual_service_resource() -> ApiResource {
    gvk("networking.istio.io", "v1", "VirtualService")
}

pub fn rollout_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &rollout_resource())
}

/// Server-side applies `obj` (of kind `ar`) in `ns` as field manager `manager`.
pub async fn apply(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    obj: Value,
    manager: &str,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let o: DynamicObject = serde_json::from_value(obj)?;
    let name = o.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&o),
    )
    .await
    .with_context(|| format!("applying {} {name} in {ns}", ar.kind))?;
    Ok(())
}

/// Creates namespace `ns` and waits for its default ServiceAccount (pods are refused until
/// the controller manager has made it).
pub async fn create_namespace(client: &Client, ns: &str, limit: Duration) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
    )
    .await
    .with_context(|| format!("creating namespace {ns}"))?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("the default ServiceAccount of {ns}"),
        limit,
        || async { Ok(sa.get_opt("default").await?.map(|_| ())) },
    )
    .await
}

/// A Service named `name` selecting the shop's pods (Sluice adds the revision to it).
pub fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": NAME}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// The VirtualService `shop`: one route `primary`, all of it to `shop-stable`.
pub fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": NAME},
        "spec": {"hosts": ["shop.example.com"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "shop-stable", "port": {"number": 80}}, "weight": 100},
            {"destination": {"host": "shop-canary", "port": {"number": 80}}, "weight": 0}]}]}
    })
}

/// What the demo and the labs read from the Rollout's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub phase: String,
    pub message: String,
    pub step: Option<i64>,
    pub steps: usize,
    pub canary_weight: i64,
    pub stable: String,
    pub current: String,
    pub abort: bool,
    /// The run the release waits on and its phase (`shop-abc-2-step1 Running`), or empty.
    pub analysis: String,
    /// The reasons of `status.pauseConditions`.
    pub pauses: Vec<String>,
    /// The `Progressing` condition's reason and message.
    pub progressing: (String, String),
}

impl View {
    /// `step 2/4`, or `all steps done`.
    pub fn step_text(&self) -> String {
        match self.step {
            Some(s) if (s as usize) < self.steps => format!("step {}/{}", s + 1, self.steps),
            _ => "all steps done".to_string(),
        }
    }
}

/// The Rollout `shop` in `ns`, as its status says.
pub async fn view(client: &Client, ns: &str) -> anyhow::Result<View> {
    let ro = rollout_api(client, ns)
        .get(NAME)
        .await
        .with_context(|| format!("reading Rollout {NAME} in {ns}"))?;
    Ok(view_of(&ro.data))
}

/// The [`View`] of a Rollout's JSON (`spec` and `status`).
pub fn view_of(data: &Value) -> View {
    let st = data.get("status").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let line = st
        .pointer("/canary/currentStepAnalysisRunStatus")
        .or_else(|| st.pointer("/canary/currentBackgroundAnalysisRunStatus"));
    let analysis = line
        .map(|l| {
            format!(
                "{} {}",
                l["name"].as_str().unwrap_or(""),
                l["status"].as_str().unwrap_or("Pending")
            )
        })
        .unwrap_or_default();
    let progressing = st
        .pointer("/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .map(|c| (s(c, "/reason"), s(c, "/message")))
        .unwrap_or_default();
    View {
        phase: s(&st, "/phase"),
        message: s(&st, "/message"),
        step: st.pointer("/currentStepIndex").and_then(Value::as_i64),
        steps: data
            .pointer("/spec/strategy/canary/steps")
            .and_then(Value::as_array)
            .map_or(0, |a| a.len()),
        canary_weight: st
            .pointer("/canary/weights/canary/weight")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        stable: s(&st, "/stableRS"),
        current: s(&st, "/currentPodHash"),
        abort: st.pointer("/abort").and_then(Value::as_bool) == Some(true),
        analysis,
        pauses: st
            .pointer("/pauseConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p["reason"].as_str().map(String::from))
            .collect(),
        progressing,
    }
}

/// The revision the Service `name` selects.
pub async fn selected_hash(client: &Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    Ok(api
        .get(name)
        .await
        .with_context(|| format!("reading Service {name} in {ns}"))?
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
        .unwrap_or_default())
}

/// The (stable, canary) weights of the VirtualService's `primary` route, as the API server has
/// them (what Envoy would be told).
pub async fn routed_weights(client: &Client, ns: &str) -> anyhow::Result<(i64, i64)> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &virtual_service_resource());
    let vs = api
        .get(NAME)
        .await
        .with_context(|| format!("reading VirtualService {NAME} in {ns}"))?;
    let route = vs
        .data
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .and_then(|h| h.iter().find(|r| r["name"] == "primary"))
        .context("the primary route")?;
    let w = |host: &str| {
        route["route"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"]["host"] == host))
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(0)
    };
    Ok((w("shop-stable"), w("shop-canary")))
}

/// Success rate of the requests to Service `service` over the last 5 s (Istio's metrics).
pub fn success_query(service: &str) -> String {
    format!(
        "sum(rate(istio_requests_total{{destination_service_name=\"{service}\",response_code!~\"5..\"}}[5s])) / sum(rate(istio_requests_total{{destination_service_name=\"{service}\"}}[5s]))"
    )
}

/// Success rate of the requests that reached pods of revision `hash`.
pub fn revision_success_query(hash: &str) -> String {
    format!(
        "sum(rate(istio_requests_total{{destination_canonical_revision=\"{hash}\",response_code!~\"5..\"}}[5s])) / sum(rate(istio_requests_total{{destination_canonical_revision=\"{hash}\"}}[5s]))"
    )
}

/// 99th percentile response time (ms) of the requests that reached pods of revision `hash`.
pub fn revision_latency_query(hash: &str) -> String {
    format!(
        "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{destination_canonical_revision=\"{hash}\"}}[5s])))"
    )
}

/// The first value of instant query `q`, when it is a finite number.
pub async fn scalar(p: &Prometheus, q: &str) -> Option<f64> {
    p.query(q)
        .await
        .ok()
        .and_then(|v| v.first().map(|(_, x)| *x))
        .filter(|x| x.is_finite())
}

/// A run's clock: seconds since it started, and the Unix time it started at.
pub struct Clock {
    start: Instant,
    unix: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
            unix: unix_now(),
        }
    }
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    /// A Unix time (seconds) on this clock.
    pub fn at(&self, unix: f64) -> f64 {
        unix - self.unix
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A heading (in bold on a terminal).
pub fn say(what: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {what}\x1b[0m");
    } else {
        println!("\n== {what}");
    }
}
