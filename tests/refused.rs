//! A write the API server refuses is shown on the Rollout: a ValidatingAdmissionPolicy (the
//! API server's own admission, no webhook server) that refuses the canary's ReplicaSet puts
//! its message into the Rollout's `WriteRefused` condition and one Warning Event, however
//! often the controller retries; once the policy is gone the release goes on and the
//! condition clears.
//!
//! A list the API server refuses (RBAC without `list` of a kind the controller caches) holds
//! every reconcile: nothing is written from a world with parts missing, the log says which
//! watch fails and why and which caches the reconciles wait for; once the list is granted
//! the release goes on by itself.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy, web_canary};
use common::metrics::reconcile_errors;
use common::{
    ControllerProcess, canary_weight, condition, create_services, event_count, phase, rollouts,
    wait_condition, wait_log_line, wait_status, with_service_account,
};
use e2e::TestEnv;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::analysis::ClusterAnalysisTemplate;
use sluice::api::constants::condition::{INVALID_SPEC, WRITE_REFUSED};
use sluice::api::rollout::RolloutPhase;

const LIMIT: Duration = Duration::from_secs(90);
const DENIAL: &str = "images tagged :2 are not allowed here";

#[tokio::test]
async fn an_admission_policy_refusing_the_canary_is_shown_once_and_the_release_resumes_without_it()
{
    TestEnv::run("refused-write", |env| async move {
        let ns = env.namespace.clone();
        let controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let ro = web_canary(2, json!({"steps": [{"setWeight": 50}, {"pause": {}}]}))?;
        create_rollout(&env, &ro).await?;
        wait_healthy(&env, "web", 2, LIMIT).await?;

        // The policy and its binding are cluster-wide objects: named after the namespace and
        // bound to it alone, so no other test is affected.
        let policy_name = format!("deny-tag-2-{ns}");
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(env.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.client.clone());
        policies
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": policy_name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{
                        "apiGroups": ["apps"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": ["replicasets"]
                    }]},
                    "validations": [{
                        "expression": "!object.spec.template.spec.containers.exists(c, c.image.endsWith(':2'))",
                        "message": DENIAL
                    }]
                }
            }))?)
            .await?;
        bindings
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": policy_name},
                "spec": {
                    "policyName": policy_name,
                    "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
                }
            }))?)
            .await?;
        // The API server loads policies asynchronously: wait until a dry run of such a
        // ReplicaSet is refused, so the release below meets the policy.
        let probe: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "probe"},
            "spec": {
                "selector": {"matchLabels": {"probe": "1"}},
                "template": {"metadata": {"labels": {"probe": "1"}},
                             "spec": {"containers": [{"name": "c", "image": "registry.example/web:2"}]}}
            }
        }))?;
        let rs_api: Api<ReplicaSet> = env.api();
        e2e::wait_for("the policy in force", LIMIT, || async {
            let dry = PostParams { dry_run: true, ..Default::default() };
            Ok(match rs_api.create(&dry, &probe).await {
                Err(kube::Error::Api(e)) if e.message.contains(DENIAL) => Some(()),
                _ => None,
            })
        })
        .await?;

        set_image(&env, "web", "registry.example/web:2").await?;
        let (_, c) = wait_condition(&env, "web", WRITE_REFUSED, LIMIT)
            .await
            .context("the refusal in the Rollout's status")?;
        ensure!(c.message.contains(DENIAL) && c.message.contains("apply ReplicaSet"), "the API server's message: {c:?}");
        ensure!(c.reason == "Invalid", "reason {:?}", c.reason);

        // Retried with backoff, and still one Event: wait for three refused reconciles.
        e2e::wait_for("three refused reconciles", LIMIT, || async {
            let refused = reconcile_errors(&controller).await?.get("Refused").copied();
            Ok((refused.unwrap_or(0) >= 3).then_some(()))
        })
        .await?;
        common::wait_event(&env, "web", "the WriteRefused Event", |(t, r, m)| {
            t == "Warning" && r == WRITE_REFUSED && m.contains(DENIAL)
        })
        .await?;
        let events = event_count(&env, "web", WRITE_REFUSED).await?;
        ensure!(events == 1, "{events} WriteRefused Events for one refusal retried three times");

        // The policy goes: the release goes on by itself, and the condition clears.
        bindings.delete(&policy_name, &DeleteParams::default()).await?;
        policies.delete(&policy_name, &DeleteParams::default()).await?;
        let resumed = wait_status(&env, "web", "the canary at 50% with the refusal cleared", LIMIT, |s| {
            canary_weight(s) == Some(50) && phase(s) == Some(RolloutPhase::Paused) && condition(s, WRITE_REFUSED).is_none()
        })
        .await?;
        ensure!(resumed.current_step_index == Some(1), "step {:?}", resumed.current_step_index);
        Ok(())
    })
    .await;
}

/// What the controller needs in this test's namespace (its Rollouts, ReplicaSets, pods,
/// Services, runs, templates, Jobs, Events, its Lease), with Deployments readable only one by
/// one unless `list_deployments` (the controller caches Deployments, for `workloadRef`, and so
/// needs to list and watch them), and ClusterAnalysisTemplates only with `cluster_templates`.
fn rules(list_deployments: bool, cluster_templates: bool) -> serde_json::Value {
    let deployments = if list_deployments {
        json!(["get", "list", "watch", "patch", "update"])
    } else {
        json!(["get", "patch", "update"])
    };
    let mut sluice = vec![
        "rollouts",
        "rollouts/status",
        "rollouts/finalizers",
        "analysisruns",
        "analysisruns/status",
        "analysistemplates",
        "rolloutexercises",
        "rolloutexercises/status",
        "rolloutexercises/finalizers",
    ];
    if cluster_templates {
        sluice.push("clusteranalysistemplates");
    }
    json!([
        {"apiGroups": ["", "coordination.k8s.io", "events.k8s.io", "batch", "networking.istio.io",
                       "gateway.networking.k8s.io", "apiextensions.k8s.io"],
         "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": ["sluice.dev"], "resources": sluice, "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["replicasets", "replicasets/scale", "replicasets/status"],
         "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": deployments}
    ])
}

/// Replaces the rules of the account's ClusterRole.
async fn grant(env: &TestEnv, account: &str, rules: serde_json::Value) -> anyhow::Result<()> {
    let roles: Api<ClusterRole> = Api::all(env.client.clone());
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": account}, "rules": rules});
    roles
        .patch(
            account,
            &PatchParams::apply("sluice-e2e").force(),
            &Patch::Apply(&role),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_list_holds_every_reconcile_says_why_and_the_release_goes_on_once_granted() {
    TestEnv::run("refused-list", |env| async move {
        let env = &env;
        with_service_account(env, rules(false, true), |account, kubeconfig| async move {
            let controller = ControllerProcess::start_with_kubeconfig(env, "a", &[], &kubeconfig)?;
            create_services(env, &["web-stable", "web-canary"]).await?;
            let ro = web_canary(1, json!({"steps": [{"setWeight": 50}, {"pause": {}}]}))?;
            create_rollout(env, &ro).await?;

            // The log says which watch fails, and the API server's answer.
            let line = wait_log_line(
                &controller,
                "a warning that the Deployments watch failed",
                &["WARN", "watch failed", "Deployments", "forbidden"],
            )
            .await?;
            ensure!(
                line.contains("cannot")
                    && line.contains("\"deployments\"")
                    && !line.contains("Status {"),
                "the API server's own message: {line}"
            );
            // Each reconcile waits for the caches, gives up after 30 s and says which.
            e2e::wait_for(
                "a reconcile that gave up on the Deployments list",
                LIMIT,
                || async {
                    let n = reconcile_errors(&controller)
                        .await?
                        .get("CachesNotListed")
                        .copied();
                    Ok((n.unwrap_or(0) >= 1).then_some(()))
                },
            )
            .await?;
            let line = wait_log_line(
                &controller,
                "a warning naming the caches every reconcile waits for",
                &[
                    "WARN",
                    "no first list yet of Deployments",
                    "every reconcile waits",
                ],
            )
            .await?;
            ensure!(
                !line.contains("pods") && !line.contains("Rollouts"),
                "only Deployments: {line}"
            );
            // Nothing was written from a world with parts missing.
            let status = rollouts(env).get("web").await?.status;
            ensure!(
                status.is_none(),
                "a status written before the caches were listed: {status:?}"
            );
            let sets: Api<ReplicaSet> = env.api();
            let made = sets.list(&ListParams::default()).await?.items.len();
            ensure!(
                made == 0,
                "{made} ReplicaSets made before the caches were listed"
            );

            // Granted: the watch lists at its next try and the waiting reconcile goes on
            // (it waits again each second, without backoff).
            grant(env, &account, rules(true, true)).await?;
            let granted = std::time::Instant::now();
            wait_healthy(env, "web", 1, LIMIT).await?;
            eprintln!(
                "Healthy {:.1} s after the list was granted",
                granted.elapsed().as_secs_f64()
            );
            wait_log_line(
                &controller,
                "the controller saying every cache is listed",
                &["every watch cache listed; reconciles proceed"],
            )
            .await?;
            Ok(())
        })
        .await
    })
    .await;
}

/// A refused list of ClusterAnalysisTemplates, streamed (this API server's default) as well as
/// paged, is told to the Rollout that names one: `InvalidSpec` quoting the API server, instead
/// of a reconcile that times out waiting for the list. Once the list is granted the template
/// is read and the Rollout goes on.
#[tokio::test]
async fn a_refused_list_of_cluster_templates_is_told_to_the_rollout_that_names_one() {
    TestEnv::run("refused-cluster-list", |env| async move {
        let env = &env;
        // Cluster-wide, so named after the namespace; deleted at the end.
        let template = format!("web-check-{}", env.namespace);
        let templates: Api<ClusterAnalysisTemplate> = Api::all(env.client.clone());
        let t: ClusterAnalysisTemplate = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "ClusterAnalysisTemplate",
            "metadata": {"name": template},
            "spec": {"metrics": [{"name": "up", "interval": "5s",
                "provider": {"web": {"url": "http://127.0.0.1:9/up", "jsonPath": "{$.ok}"}}}]}
        }))?;
        templates.create(&PostParams::default(), &t).await?;
        let tested = with_service_account(env, rules(true, false), |account, kubeconfig| {
            let template = template.clone();
            async move {
                let _controller =
                    ControllerProcess::start_with_kubeconfig(env, "a", &[], &kubeconfig)?;
                let ro = rollout(
                    "uses-cluster-template",
                    1,
                    json!({"canary": {"steps": [{"analysis": {"templates": [
                        {"templateName": template, "clusterScope": true}]}}]}}),
                )?;
                create_rollout(env, &ro).await?;
                let (_, c) =
                    wait_condition(env, "uses-cluster-template", INVALID_SPEC, LIMIT).await?;
                ensure!(
                    c.message.contains("list ClusterAnalysisTemplates")
                        && c.message.contains("forbidden"),
                    "InvalidSpec quotes the refusal: {}",
                    c.message
                );
                grant(env, &account, rules(true, true)).await?;
                wait_status(
                    env,
                    "uses-cluster-template",
                    "the Rollout Healthy with the template read",
                    LIMIT,
                    |s| {
                        phase(s) == Some(RolloutPhase::Healthy)
                            && condition(s, INVALID_SPEC).is_none()
                    },
                )
                .await?;
                Ok(())
            }
        })
        .await;
        let _ = templates.delete(&template, &DeleteParams::default()).await;
        tested
    })
    .await;
}
