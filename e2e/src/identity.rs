//! Controllers under test run as ordinary users: a ServiceAccount with a ClusterRole of its
//! own, through a kubeconfig holding a token from the TokenRequest API. The admin identity
//! (group `system:masters`) is exempt from the API server's priority and fairness; a
//! ServiceAccount is not, so the server queues and throttles it as it would in a cluster.
//!
//! The account's requests are also counted by the API server itself, by verb: one FlowSchema
//! per verb (`<name>-get`, `<name>-list`, `<name>-watch`, `<name>-create`, `<name>-update`,
//! `<name>-patch`, `<name>-delete`, the last with `deletecollection`), each routing to the
//! priority level `workload-low`, which is where the API server's own `service-accounts`
//! FlowSchema puts any ServiceAccount, so the schemas count without changing how the account
//! is served. [`requests_by_verb`] reads `apiserver_flowcontrol_dispatched_requests_total`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::promtext::samples;

/// The verbs counted, each with its FlowSchema, and the request verbs each one matches.
pub const VERBS: &[(&str, &[&str])] = &[
    ("get", &["get"]),
    ("list", &["list"]),
    ("watch", &["watch"]),
    ("create", &["create"]),
    ("update", &["update"]),
    ("patch", &["patch"]),
    ("delete", &["delete", "deletecollection"]),
];
/// The priority level the account's requests go to: the one the API server's
/// `service-accounts` FlowSchema gives every ServiceAccount.
pub const PRIORITY_LEVEL: &str = "workload-low";
/// How long the account's token is valid: longer than any benchmark. The API server honours
/// the request as asked when `--service-account-max-token-expiration` is not set (as here);
/// it would cap it at that flag otherwise.
pub const TOKEN_SECONDS: i64 = 24 * 3600;
/// Before every built-in schema that can match a ServiceAccount (`kube-system-service-accounts`
/// at 900, `service-accounts` at 9000, `global-default` 9900), after those of the system's own
/// users and groups (up to `kube-controller-manager` and `kube-scheduler` at 800).
const MATCHING_PRECEDENCE: i64 = 850;
const FIELD_MANAGER: &str = "sluice-e2e";
const CALL_LIMIT: Duration = Duration::from_secs(30);
const IN_FORCE_LIMIT: Duration = Duration::from_secs(60);

fn flow_schemas(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
        )),
    )
}

/// The FlowSchema name for `verb` of the account `name`.
pub fn flow_schema_name(name: &str, verb: &str) -> String {
    format!("{name}-{verb}")
}

async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(CALL_LIMIT, f)
        .await
        .with_context(|| format!("{what}: no answer within {} s", CALL_LIMIT.as_secs()))?
        .with_context(|| what.to_string())
}

/// Creates (or updates) the ServiceAccount `name` in `namespace`, a ClusterRole `name` with
/// `rules` (a JSON array of PolicyRules) bound to it, and its per-verb FlowSchemas (waiting
/// until the API server applies them); requests a token valid for [`TOKEN_SECONDS`] and writes
/// a kubeconfig for the account at `out`, with the server and CA of `admin_kubeconfig`.
/// Returns `out`.
pub async fn service_account_kubeconfig(
    client: &Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
    rules: serde_json::Value,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace}});
    call(
        "applying the ServiceAccount",
        sas.patch(name, &apply, &Patch::Apply(&sa)),
    )
    .await?;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": name}, "rules": rules});
    call(
        "applying the ClusterRole",
        Api::<ClusterRole>::all(client.clone()).patch(name, &apply, &Patch::Apply(&role)),
    )
    .await?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    });
    call(
        "applying the ClusterRoleBinding",
        Api::<ClusterRoleBinding>::all(client.clone()).patch(name, &apply, &Patch::Apply(&binding)),
    )
    .await?;
    apply_flow_schemas(client, namespace, name).await?;
    token_kubeconfig(client, admin_kubeconfig, namespace, name, out).await
}

/// Writes a kubeconfig at `out` for the existing ServiceAccount `name` in `namespace` (a token
/// from the TokenRequest API valid for [`TOKEN_SECONDS`]), with the server and CA of
/// `admin_kubeconfig`. Returns `out`.
pub async fn token_kubeconfig(
    client: &Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(
        json!({"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS}}),
    )?;
    let token = call(
        "requesting a token",
        sas.create_token_request(name, &Default::default(), &request),
    )
    .await?
    .status
    .context("the TokenRequest has no status")?
    .token;

    let admin = kube::config::Kubeconfig::read_from(admin_kubeconfig)
        .with_context(|| format!("reading {}", admin_kubeconfig.display()))?;
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("no cluster in the admin kubeconfig")?;
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sluice-e2e", "cluster": {
            "server": cluster.server.context("no server in the admin kubeconfig")?,
            "certificate-authority-data": cluster.certificate_authority_data
                .context("no CA in the admin kubeconfig")?,
        }}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "sluice-e2e", "context": {
            "cluster": "sluice-e2e", "user": name, "namespace": namespace}}],
        "current-context": "sluice-e2e",
    });
    // JSON is YAML: every kubeconfig reader takes it.
    std::fs::write(out, serde_json::to_vec_pretty(&kubeconfig)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out.to_path_buf())
}

/// Applies the per-verb FlowSchemas of the account `name` in `namespace` and waits until the
/// API server has taken each into its configuration (it then writes the schema's `Dangling`
/// condition).
async fn apply_flow_schemas(client: &Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let api = flow_schemas(client);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for (verb, verbs) in VERBS {
        let fs_name = flow_schema_name(name, verb);
        let fs = json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": fs_name},
            "spec": {
                "matchingPrecedence": MATCHING_PRECEDENCE,
                "priorityLevelConfiguration": {"name": PRIORITY_LEVEL},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "ServiceAccount",
                                  "serviceAccount": {"name": name, "namespace": namespace}}],
                    "resourceRules": [{"verbs": verbs, "apiGroups": ["*"], "resources": ["*"],
                                       "namespaces": ["*"], "clusterScope": true}]
                }]
            }
        });
        call(
            "applying a FlowSchema",
            api.patch(&fs_name, &apply, &Patch::Apply(&fs)),
        )
        .await?;
    }
    let deadline = tokio::time::Instant::now() + IN_FORCE_LIMIT;
    for (verb, _) in VERBS {
        let fs_name = flow_schema_name(name, verb);
        loop {
            let fs = call("reading a FlowSchema", api.get(&fs_name)).await?;
            let in_force = fs.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Dangling" && c["status"] == "False")
            });
            if in_force {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "FlowSchema {fs_name} not in force after {} s",
                    IN_FORCE_LIMIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Deletes the cluster-wide objects of the account `name` (ClusterRole, ClusterRoleBinding,
/// FlowSchemas); the ServiceAccount goes with its namespace. Objects already gone are fine.
pub async fn remove_service_account(client: &Client, name: &str) -> anyhow::Result<()> {
    async fn delete<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match call("deleting", api.delete(name, &DeleteParams::default())).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.downcast_ref::<kube::Error>(),
                    Some(kube::Error::Api(r)) if r.code == 404
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.context(format!("deleting {name}"))),
        }
    }
    let fs = flow_schemas(client);
    for (verb, _) in VERBS {
        delete(&fs, &flow_schema_name(name, verb)).await?;
    }
    delete(&Api::<ClusterRoleBinding>::all(client.clone()), name).await?;
    delete(&Api::<ClusterRole>::all(client.clone()), name).await?;
    Ok(())
}

/// The requests the API server dispatched for the account `name`, by verb (the keys of
/// [`VERBS`]), since the API server started: `apiserver_flowcontrol_dispatched_requests_total`
/// of the account's FlowSchemas.
pub async fn requests_by_verb(
    client: &Client,
    name: &str,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = tokio::time::timeout(CALL_LIMIT, client.request_text(req))
        .await
        .context("the API server's /metrics: no answer")?
        .context("the API server's /metrics")?;
    let by_schema: BTreeMap<String, String> = VERBS
        .iter()
        .map(|(verb, _)| (flow_schema_name(name, verb), verb.to_string()))
        .collect();
    let mut out: BTreeMap<String, f64> = VERBS.iter().map(|(v, _)| (v.to_string(), 0.0)).collect();
    for (labels, value) in samples(&text, "apiserver_flowcontrol_dispatched_requests_total") {
        if let Some(verb) = labels.get("flow_schema").and_then(|s| by_schema.get(s)) {
            *out.entry(verb.clone()).or_insert(0.0) += value;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatched_counts_are_read_by_schema() {
        let text = "# HELP x\n\
            apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"a-get\",priority_level=\"workload-low\"} 7\n\
            apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"b-get\",priority_level=\"workload-low\"} 3\n";
        let s = samples(text, "apiserver_flowcontrol_dispatched_requests_total");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0.get("flow_schema").map(String::as_str), Some("a-get"));
        assert_eq!(s[0].1, 7.0);
    }
}
