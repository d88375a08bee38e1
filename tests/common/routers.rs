//! Router objects (Istio's VirtualService and DestinationRule, Gateway API's HTTPRoute) as the
//! tests write and read them: untyped, through their real CRDs.

use anyhow::Context;
use e2e::TestEnv;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

/// The API of `kind` (version v1) of `group` in the test's namespace.
pub fn dynamic_api(env: &TestEnv, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(env.client.clone(), &env.namespace, &ar)
}

pub fn virtual_services(env: &TestEnv) -> Api<DynamicObject> {
    dynamic_api(env, "networking.istio.io", "VirtualService")
}

pub fn destination_rules(env: &TestEnv) -> Api<DynamicObject> {
    dynamic_api(env, "networking.istio.io", "DestinationRule")
}

pub fn http_routes(env: &TestEnv) -> Api<DynamicObject> {
    dynamic_api(env, "gateway.networking.k8s.io", "HTTPRoute")
}

/// Creates `object` (JSON with its apiVersion and kind) through `api`; returns it as created.
pub async fn create_object(
    api: &Api<DynamicObject>,
    object: Value,
) -> anyhow::Result<DynamicObject> {
    let o: DynamicObject = serde_json::from_value(object)?;
    let kind = o.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
    api.create(&PostParams::default(), &o)
        .await
        .with_context(|| format!("creating a {kind}"))
}

/// The spec of an untyped object.
pub fn spec(o: &DynamicObject) -> Value {
    o.data.get("spec").cloned().unwrap_or(Value::Null)
}

/// The spec of object `name`, read from the API server.
pub async fn spec_of(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<Value> {
    Ok(spec(&api.get(name).await?))
}

/// VirtualService `web` as a user writes it before Sluice: host `web`, one http route
/// `primary` sending all traffic to Service `web-stable` and none to `web-canary`.
pub fn primary_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}]}]}
    })
}

/// HTTPRoute `web` as a user writes it before Sluice: one rule sending all traffic to Service
/// `web-stable` and none to `web-canary`.
pub fn split_http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "shop-gateway"}], "rules": [
            {"backendRefs": [{"name": "web-stable", "port": 80, "weight": 100}, {"name": "web-canary", "port": 80, "weight": 0}]}]}
    })
}

/// (stable, canary) weights of the http route `primary` of a VirtualService's spec, its
/// destinations named by host (`web-stable`, `web-canary`) or subset (`stable`, `canary`);
/// -1 for a weight that is not there.
pub fn istio_weights(spec: &Value) -> (i64, i64) {
    let route = spec["http"]
        .as_array()
        .and_then(|h| h.iter().find(|r| r["name"] == "primary"))
        .cloned()
        .unwrap_or(Value::Null);
    let w = |name: &str| {
        route["route"]
            .as_array()
            .and_then(|d| {
                d.iter().find(|d| {
                    d["destination"]["host"] == name || d["destination"]["subset"] == name
                })
            })
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(-1)
    };
    (
        w("web-stable").max(w("stable")),
        w("web-canary").max(w("canary")),
    )
}

/// (stable, canary) weights of the split rule (the one with two backends) of an HTTPRoute's
/// spec; -1 for a weight that is not there.
pub fn gateway_weights(spec: &Value) -> (i64, i64) {
    let refs = spec["rules"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))
        })
        .map(|r| r["backendRefs"].clone())
        .unwrap_or(Value::Null);
    let w = |n: &str| {
        refs.as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == n))
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    (w("web-stable"), w("web-canary"))
}
