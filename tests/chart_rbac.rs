//! The chart's RBAC is what the controller needs: the real `sluice` binary runs on the host
//! with a token of the chart's own ServiceAccount (TokenRequest API), releases a canary with
//! Istio routing and Prometheus analysis to the end and rolls a bad one back. A permission the
//! chart forgot fails the release (the API server refuses a write, and the audit log shows a
//! 403); a permission it grants and the controller never used is found in the API server's
//! audit log, and fails the test unless it is listed below with the feature that needs it.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use common::analysis::Monitoring;
use common::fixture::{create_rollout, set_image, wait_healthy, wait_promoted, web_canary};
use common::helm::{install, of_kind};
use common::routers::{create_object, istio_weights, spec_of, virtual_services};
use common::{ControllerProcess, create_services, has_condition, phase, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PostParams;
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisTemplate;
use sluice::api::constants::condition::{INVALID_SPEC, WRITE_REFUSED};
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(120);
const GAUGE: &str = "sluice_chart_success_rate";

/// Grants the chart makes that this release does not exercise, each with the feature that
/// needs it (and where that feature is tested, with the admin identity). A grant missing from
/// this list and unused by the release below fails the test: either a feature uses it (add
/// it here, saying which), or the chart should not grant it.
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[
    (
        "sluice.dev",
        "rolloutexercises",
        "patch",
        "a rollback exercise's finalizer (tests/exercise.rs)",
    ),
    (
        "sluice.dev",
        "rolloutexercises/status",
        "update",
        "a rollback exercise's runs (tests/exercise.rs)",
    ),
    (
        "sluice.dev",
        "rollouts/status",
        "patch",
        "the conditions of a Rollout that does not parse (tests/malformed.rs)",
    ),
    (
        "sluice.dev",
        "rollouts/finalizers",
        "update",
        "checked, not requested: the OwnerReferencesPermissionEnforcement admission plugin (OpenShift) requires it to name a Rollout as the blocking owner of a ReplicaSet or AnalysisRun",
    ),
    (
        "sluice.dev",
        "analysisruns",
        "create",
        "checked, not requested: a server-side apply that creates an object is authorized as create too (the audit log records only the patch); without it the first run is refused",
    ),
    (
        "sluice.dev",
        "analysisruns",
        "delete",
        "finished runs of revisions beyond revisionHistoryLimit (tests/rollout_bluegreen.rs)",
    ),
    (
        "apps",
        "replicasets",
        "create",
        "checked, not requested: as for analysisruns (removing it, this test's first ReplicaSet is refused and the Rollout never becomes Healthy)",
    ),
    (
        "apps",
        "replicasets",
        "delete",
        "revisions beyond revisionHistoryLimit (tests/rollout_bluegreen.rs)",
    ),
    (
        "apps",
        "deployments/scale",
        "patch",
        "workloadRef's scaleDown (tests/rollout_workload.rs)",
    ),
    (
        "",
        "pods",
        "patch",
        "canaryMetadata/stableMetadata on running pods (tests/parity_bluegreen.rs)",
    ),
    (
        "",
        "pods/eviction",
        "create",
        "spec.restartAt (tests/parity_bluegreen.rs)",
    ),
    (
        "",
        "secrets",
        "get",
        "provider credentials a template names (tests/analysis_providers.rs)",
    ),
    (
        "",
        "configmaps",
        "get",
        "the web provider's caConfigMap (no integration test yet)",
    ),
    (
        "batch",
        "jobs",
        "get",
        "the job provider (tests/analysis_providers.rs)",
    ),
    (
        "batch",
        "jobs",
        "create",
        "the job provider (tests/analysis_providers.rs)",
    ),
    (
        "batch",
        "jobs",
        "delete",
        "the job provider (tests/analysis_providers.rs)",
    ),
    (
        "networking.istio.io",
        "virtualservices",
        "get",
        "re-read from the API server after a conflict (tests/traffic.rs)",
    ),
    (
        "networking.istio.io",
        "destinationrules",
        "get",
        "subset-level Istio routing, re-read after a conflict (tests/traffic.rs)",
    ),
    (
        "networking.istio.io",
        "destinationrules",
        "update",
        "subset-level Istio routing (tests/traffic.rs)",
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        "get",
        "Gateway API routing, re-read after a conflict (tests/traffic.rs)",
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        "update",
        "Gateway API routing (tests/traffic.rs)",
    ),
];

/// (apiGroup, resource[/subresource], verb) of every rule of the Roles and ClusterRoles in
/// `docs`, one per combination.
fn granted(docs: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    for role in of_kind(docs, "Role")
        .into_iter()
        .chain(of_kind(docs, "ClusterRole"))
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for g in strs(&rule["apiGroups"]) {
                for r in strs(&rule["resources"]) {
                    for v in strs(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

/// The requests of `user` in the API server's audit log: (apiGroup, resource[/subresource],
/// verb) of each, and those the server refused (403) with their URI.
fn audited(log: &str, user: &str) -> (BTreeSet<(String, String, String)>, Vec<String>) {
    let mut used = BTreeSet::new();
    let mut refused = Vec::new();
    for line in log.lines().filter(|l| l.contains(user)) {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["user"]["username"] != user {
            continue;
        }
        let o = &e["objectRef"];
        let Some(resource) = o["resource"].as_str() else {
            continue;
        };
        let resource = match o["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let group = o["apiGroup"].as_str().unwrap_or("").to_string();
        let verb = e["verb"].as_str().unwrap_or("").to_string();
        if e["responseStatus"]["code"] == 403 {
            refused.push(format!(
                "{verb} {}",
                e["requestURI"].as_str().unwrap_or("?")
            ));
        }
        used.insert((group, resource, verb));
    }
    (used, refused)
}

#[tokio::test]
async fn with_roles_only_the_charts_account_releases_and_rolls_back_using_what_it_grants() {
    TestEnv::run("chart-rbac-ns", |env| async move {
        release_and_audit(&env, "namespace").await
    })
    .await;
}

#[tokio::test]
async fn with_a_cluster_role_the_charts_account_releases_and_rolls_back_using_what_it_grants() {
    TestEnv::run("chart-rbac-cluster", |env| async move {
        release_and_audit(&env, "cluster").await
    })
    .await;
}

/// A webhook on loopback, and the notifications' ConfigMap and Secret (default name) in the
/// test's namespace sending it every abort there; returns what it is told (each body with
/// its Authorization header, from the Secret, as `authorized`).
async fn notifications(env: &TestEnv) -> anyhow::Result<Arc<Mutex<Vec<Value>>>> {
    let told = Arc::new(Mutex::new(Vec::new()));
    let keep = told.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                let mut v: Value = serde_json::from_str(&body).unwrap_or_default();
                v["authorized"] = json!(
                    headers
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                );
                if let Ok(mut g) = keep.lock() {
                    g.push(v);
                }
                "ok"
            }
        }),
    );
    let base = common::analysis::serve(app).await?;
    let config = format!(
        "receivers:\n- name: hook\n  webhook: {{url: \"{base}/hook\", headers: {{Authorization: $token}}}}\n\
         defaults:\n  {}:\n    on-aborted: [hook]\n",
        env.namespace
    );
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"}, "data": {"config.yaml": config}
    }))?;
    env.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"}, "stringData": {"token": "Bearer t0ken"}
    }))?;
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(told)
}

/// Creates namespace `name` (the test deletes it when done).
async fn create_namespace(env: &TestEnv, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    kube::Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// A Rollout in namespace `ns` (not the test's) reaches Healthy, then releases v2 to the end:
/// the controller watches and writes there.
async fn released_in(env: &TestEnv, ns: &str) -> anyhow::Result<()> {
    let api: kube::Api<Rollout> = kube::Api::namespaced(env.client.clone(), ns);
    let ro = common::fixture::rollout(
        "other",
        1,
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}),
    )?;
    api.create(&PostParams::default(), &ro).await?;
    let healthy_on = |want: Option<String>| {
        let api = api.clone();
        async move {
            let ro = api.get("other").await?;
            let s = ro.status.unwrap_or_default();
            let done = phase(&s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs == s.current_pod_hash
                && want
                    .as_ref()
                    .is_none_or(|w| s.stable_rs.as_ref() != Some(w));
            Ok::<_, anyhow::Error>(done.then_some(s.stable_rs))
        }
    };
    let v1 = wait_for(&format!("Rollout other Healthy in {ns}"), LIMIT, || {
        healthy_on(None)
    })
    .await?;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "registry.example/web:2"}]}}}});
    api.patch(
        "other",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    wait_for(&format!("v2 of other promoted in {ns}"), LIMIT, || {
        healthy_on(v1.clone())
    })
    .await?;
    Ok(())
}

/// Installs the chart with `rbac.scope=<scope>` into the test's namespace, runs the controller
/// as the chart's ServiceAccount with the chart's arguments, releases v2 (analysis passes) and
/// v3 (analysis fails, rolled back), then compares what the chart grants with what the
/// account used, from the audit log.
async fn release_and_audit(env: &TestEnv, scope: &str) -> anyhow::Result<()> {
    {
        let audit_log = env
            .cluster
            .state_dir
            .as_ref()
            .map(|d| d.join("audit.log"))
            .filter(|p| p.is_file())
            .context("the control plane keeps no audit log (start it with `sluice-e2e up`, which writes one)")?;
        let ns = env.namespace.clone();
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let release = format!("rbac-{suffix}");
        let scope_value = format!("rbac.scope={scope}");
        // Scope namespace watches two namespaces: the test's and a second one, each with its
        // Role, from one controller.
        let second = format!("{ns}-b");
        let namespaces_value = format!("rbac.namespaces={{{ns},{second}}}");
        let mut values: Vec<&str> = if scope == "namespace" {
            create_namespace(env, &second).await?;
            vec![scope_value.as_str(), namespaces_value.as_str()]
        } else {
            vec![scope_value.as_str()]
        };
        // Notifications on: the account watches their ConfigMap and Secret by name, and a
        // webhook on loopback is told of the abort below.
        values.push("notifications.enabled=true");
        let told = notifications(env).await?;
        let out = install(&env.cluster.kubeconfig, &release, &ns, &values).await?;
        ensure!(out.success, "helm install: {}", out.stderr);
        let account = format!("{release}-sluice");
        let kubeconfig = e2e::identity::token_kubeconfig(
            &env.client,
            &env.cluster.kubeconfig,
            &ns,
            &account,
            &std::env::temp_dir().join(format!("sluice-{ns}-chart.kubeconfig")),
        )
        .await?;

        e2e::routers::install_router_crds(&env.client).await?;
        create_services(env, &["web-stable", "web-canary"]).await?;
        create_object(
            &virtual_services(env),
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "web"},
                "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": [
                    {"destination": {"host": "web-stable"}, "weight": 100},
                    {"destination": {"host": "web-canary"}, "weight": 0}]}]}
            }),
        )
        .await?;
        let mon = Monitoring::start(env, GAUGE, 0.99).await?;
        let template: AnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "success-rate"},
            "spec": {"args": [{"name": "namespace"}], "metrics": [{
                "name": "success-rate", "interval": "2s", "count": 2,
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {
                    "address": mon.prometheus.url(),
                    "query": format!("{GAUGE}{{namespace=\"{{{{args.namespace}}}}\"}}"),
                }}
            }]}
        }))?;
        env.api::<AnalysisTemplate>()
            .create(&PostParams::default(), &template)
            .await?;

        // The controller runs as the chart's Deployment would run it: its arguments, less
        // the metrics port the test harness sets itself (and the test's namespace, which the
        // harness names too).
        let docs = common::helm::render(&release, &ns, &values, &[]).await?;
        let chart_args: Vec<String> = common::helm::one(&docs, "Deployment")?["spec"]["template"]
            ["spec"]["containers"][0]["args"]
            .as_array()
            .context("the chart's container has no args")?
            .iter()
            .filter_map(|a| a.as_str())
            .filter(|a| *a != "run" && !a.starts_with("--metrics-addr="))
            .map(String::from)
            .collect();
        ensure!(
            chart_args.iter().any(|a| a == "--no-cluster-reads") == (scope == "namespace"),
            "--no-cluster-reads in scope namespace only: {chart_args:?}"
        );
        let extra: Vec<&str> = chart_args.iter().map(String::as_str).collect();
        let controller =
            ControllerProcess::start_with_kubeconfig(env, "chart", &extra, &kubeconfig)?;
        let analysis = json!({"templates": [{"templateName": "success-rate"}],
                              "args": [{"name": "namespace", "value": ns}]});
        let ro = web_canary(
            2,
            json!({
                "scaleDownDelaySeconds": 2, "abortScaleDownDelaySeconds": 2,
                "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
                "steps": [{"setWeight": 25}, {"analysis": analysis}, {"setWeight": 50},
                          {"pause": {"duration": "1s"}}]
            }),
        )?;
        // A permission the chart forgot shows as a release that does not get where it
        // should; the audit log's refusals say which.
        let released = async {
            create_rollout(env, &ro).await?;
            let v1 = wait_healthy(env, "web", 2, LIMIT).await?;
            let weights = || async {
                Ok::<_, anyhow::Error>(istio_weights(
                    &spec_of(&virtual_services(env), "web").await?,
                ))
            };

            // v2: analysis passes, every step is walked, v2 becomes stable with all traffic.
            set_image(env, "web", "registry.example/web:2").await?;
            let v2 = wait_promoted(env, "web", &v1, LIMIT).await?;
            wait_for("all traffic on v2", LIMIT, || async {
                Ok((weights().await? == (100, 0)).then_some(()))
            })
            .await?;

            // v3: the success rate drops; analysis fails and the release is rolled back.
            mon.set(0.5).await?;
            set_image(env, "web", "registry.example/web:3").await?;
            let s = wait_status(env, "web", "v3 aborted by analysis", LIMIT, |s| {
                phase(s) == Some(RolloutPhase::Degraded) && s.abort == Some(true)
            })
            .await?;
            ensure!(
                s.stable_rs.as_deref() == Some(v2.as_str()),
                "v2 stays stable: {s:?}"
            );
            wait_for("the webhook told of the abort", LIMIT, || async {
                let got = told.lock().map(|g| g.clone()).unwrap_or_default();
                Ok(got
                    .iter()
                    .find(|b| b["trigger"] == "on-aborted" && b["authorized"] == "Bearer t0ken")
                    .map(|_| ()))
            })
            .await?;
            wait_for("all traffic back on v2", LIMIT, || async {
                Ok((weights().await? == (100, 0)).then_some(()))
            })
            .await?;
            ensure!(
                !has_condition(&s, WRITE_REFUSED),
                "no write was refused: {:?}",
                s.conditions
            );
            if scope == "namespace" {
                // Roles only: ClusterAnalysisTemplates are not read, and a Rollout naming one
                // is told so instead of waiting.
                let ro = common::fixture::rollout(
                    "uses-cluster-template",
                    1,
                    json!({"canary": {"steps": [{"analysis": {"templates": [
                        {"templateName": "web-check", "clusterScope": true}]}}]}}),
                )?;
                create_rollout(env, &ro).await?;
                let (_, c) =
                    common::wait_condition(env, "uses-cluster-template", INVALID_SPEC, LIMIT)
                        .await?;
                ensure!(
                    c.message.contains("--no-cluster-reads"),
                    "InvalidSpec says why the template is not read: {}",
                    c.message
                );
                // The second namespace is watched too, with its own Role only.
                released_in(env, &second).await?;
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        drop(controller);
        if scope == "namespace" {
            let _ = kube::Api::<Namespace>::all(env.client.clone())
                .delete(&second, &Default::default())
                .await;
        }

        // What the API server saw of the account.
        let user = format!("system:serviceaccount:{ns}:{account}");
        let log = tokio::fs::read_to_string(&audit_log).await?;
        let (used, refused) = audited(&log, &user);
        if let Err(e) = released {
            bail!("{e:#}\nthe API server refused {user}: {refused:?}");
        }
        ensure!(!used.is_empty(), "no request of {user} in the audit log");
        ensure!(
            refused.is_empty(),
            "the API server refused {user}: {refused:?}"
        );
        let granted = granted(&docs);
        let not_granted: Vec<_> = used.difference(&granted).collect();
        ensure!(
            not_granted.is_empty(),
            "used without a grant (answered by another rule?): {not_granted:?}"
        );
        let explained: BTreeSet<(String, String, String)> = NOT_EXERCISED
            .iter()
            .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
            .collect();
        // A kind the controller watched but never listed read its first list streamed
        // (WatchList, `runtime::lists`); the list grant is its paged fallback, on an API server
        // without WatchList (tests/initial_lists.rs).
        let streamed = |g: &(String, String, String)| {
            g.2 == "list" && used.contains(&(g.0.clone(), g.1.clone(), "watch".to_string()))
        };
        let unused: Vec<_> = granted
            .difference(&used)
            .filter(|g| !explained.contains(*g) && !streamed(g))
            .collect();
        ensure!(
            unused.is_empty(),
            "the chart grants what the controller never used and no feature is listed for: {unused:?}\n(used: {used:?})"
        );
        let stale: Vec<_> = explained.difference(&granted).collect();
        ensure!(
            stale.is_empty(),
            "NOT_EXERCISED lists grants the chart does not make: {stale:?}"
        );
        println!(
            "the chart grants {} (group, resource, verb) combinations; this release used {}, {} are listed with the feature that needs them",
            granted.len(),
            used.len(),
            explained.intersection(&granted).count()
        );
        Ok(())
    }
}
