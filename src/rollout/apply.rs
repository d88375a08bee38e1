//! Carries out a `Plan` without second-guessing it: Services first (traffic), then
//! ReplicaSets, then status, then Events. Every write is skipped when it would change nothing,
//! and every call runs under a timeout.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::api::analysis::AnalysisRun;
use crate::api::constants::{
    ANNOTATION_SCALE_DOWN_AT, FIELD_MANAGER_CONTROLLER, FIELD_MANAGER_TRAFFIC,
    LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT,
};
use crate::api::rollout::Rollout;

use super::analysis::LABEL_ANALYSIS_KIND;
use super::controller::Context;
use super::decide::{EventType, Plan};
use super::hash::replica_set_name;
use crate::runtime::calls::{gone_is_fine, timed};
use crate::runtime::error::Error;

/// The ReplicaSet of one revision, in full, as Sluice wants it.
pub fn desired_replica_set(
    ro: &Rollout,
    hash: &str,
    template: &PodTemplateSpec,
    replicas: i32,
) -> ReplicaSet {
    let name = ro.name_any();
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_POD_TEMPLATE_HASH.to_string(), hash.to_string());
    labels.insert(LABEL_ROLLOUT.to_string(), name.clone());
    let mut selector_labels = ro
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    selector_labels.insert(LABEL_POD_TEMPLATE_HASH.to_string(), hash.to_string());
    let mut rs_labels = selector_labels.clone();
    rs_labels.insert(LABEL_ROLLOUT.to_string(), name.clone());
    let owner = owner(ro);
    ReplicaSet {
        metadata: kube::api::ObjectMeta {
            name: Some(replica_set_name(&name, hash)),
            namespace: ro.namespace(),
            labels: Some(rs_labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: ro.spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: Some(selector_labels),
                match_expressions: None,
            },
            template: Some(template),
        }),
        status: None,
    }
}

/// Service selectors are atomic maps for server-side apply, so an apply would take the whole
/// selector; a merge patch of the one key leaves the user's keys as they wrote them.
pub fn selector_patch(hash: Option<&str>) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"selector": {LABEL_POD_TEMPLATE_HASH: hash}}}))
}

/// The owner reference of everything the Rollout owns (ReplicaSets, AnalysisRuns).
pub fn owner(ro: &Rollout) -> OwnerReference {
    OwnerReference {
        api_version: Rollout::api_version(&()).to_string(),
        kind: Rollout::kind(&()).to_string(),
        name: ro.name_any(),
        uid: ro.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Writes to objects users own go under Sluice's traffic field manager.
pub fn traffic_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER_TRAFFIC.into()),
        ..Default::default()
    }
}

/// Applies the plan. `existing` are the Rollout's ReplicaSets as observed; `template` the
/// pod template of the revision being released; `services` the current selectors.
pub async fn apply(
    ctx: &Context,
    ro: &Rollout,
    plan: &Plan,
    existing: &[ReplicaSet],
    template: Option<&PodTemplateSpec>,
    services: &BTreeMap<String, Service>,
) -> Result<(), Error> {
    let (client, recorder, writes) = (&ctx.shared.client, &ctx.shared.recorder, &ctx.shared.writes);
    let ns = ro.namespace().unwrap_or_default();
    let name = ro.name_any();

    // 1. Traffic routers (Istio, Gateway API) first: a weight that drops (an abort, a new
    // release, the switch) must not lead to traffic on a Service whose selector moved first.
    if let (Some(state), Some(canary)) = (&plan.traffic, &ro.spec.strategy.canary)
        && let Some(router) = crate::traffic::router::router_for(canary)
    {
        crate::traffic::kube::apply(
            &ctx.caches.routers,
            client,
            &ns,
            router.as_ref(),
            state,
            writes,
        )
        .await?;
    }

    // 1b. Traffic: the Services' selectors. Only the hash key is Sluice's (its own manager).
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    for sp in &plan.services {
        let current = services
            .get(&sp.name)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get(LABEL_POD_TEMPLATE_HASH));
        if current == Some(&sp.hash) {
            continue;
        }
        writes.add();
        timed(
            "patch Service selector",
            svc_api.patch(&sp.name, &traffic_params(), &selector_patch(Some(&sp.hash))),
        )
        .await?;
    }

    // 2. ReplicaSets: one server-side apply per changed ReplicaSet, with its full desired state.
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    for rp in &plan.replica_sets {
        let found = existing
            .iter()
            .find(|rs| rs.labels().get(LABEL_POD_TEMPLATE_HASH) == Some(&rp.hash));
        let (tmpl, current) = match found {
            Some(rs) => (
                rs.spec.as_ref().and_then(|s| s.template.clone()),
                rs.spec.as_ref().and_then(|s| s.replicas),
            ),
            None => (template.cloned(), None),
        };
        let current_deadline =
            found.and_then(|rs| rs.annotations().get(ANNOTATION_SCALE_DOWN_AT).cloned());
        // A revision planned without a scale-down time is in use: an old deadline goes.
        let want_deadline = rp.scale_down_at.map(|t| t.to_string());
        if found.is_some() && current == Some(rp.replicas) && current_deadline == want_deadline {
            continue;
        }
        if found.is_none() && rp.replicas == 0 {
            continue;
        }
        let Some(tmpl) = tmpl else { continue };
        let mut desired = desired_replica_set(ro, &rp.hash, &tmpl, rp.replicas);
        if let Some(t) = want_deadline {
            desired.metadata.annotations =
                Some(BTreeMap::from([(ANNOTATION_SCALE_DOWN_AT.to_string(), t)]));
        }
        let mut value = serde_json::to_value(&desired).map_err(Error::Serialize)?;
        value["apiVersion"] = json!("apps/v1");
        value["kind"] = json!("ReplicaSet");
        writes.add();
        timed(
            "apply ReplicaSet",
            rs_api.patch(
                &replica_set_name(&name, &rp.hash),
                &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
                &Patch::Apply(&value),
            ),
        )
        .await?;
    }
    for old in &plan.delete_replica_sets {
        writes.add();
        gone_is_fine(
            timed(
                "delete ReplicaSet",
                rs_api.delete(old, &DeleteParams::background()),
            )
            .await,
        )?;
    }

    // 2b. AnalysisRuns: created once (owned by the Rollout), stopped when no longer needed.
    let run_api: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns);
    for rp in &plan.create_runs {
        let mut run = AnalysisRun::new(&rp.name, rp.spec.clone());
        run.metadata.labels = Some(BTreeMap::from([
            (LABEL_ROLLOUT.to_string(), name.clone()),
            (LABEL_POD_TEMPLATE_HASH.to_string(), rp.hash.clone()),
            (LABEL_ANALYSIS_KIND.to_string(), rp.kind.to_string()),
        ]));
        run.metadata.owner_references = Some(vec![owner(ro)]);
        writes.add();
        timed(
            "apply AnalysisRun",
            run_api.patch(
                &rp.name,
                &PatchParams::apply(FIELD_MANAGER_CONTROLLER).force(),
                &Patch::Apply(&run),
            ),
        )
        .await?;
    }
    for n in &plan.terminate_runs {
        writes.add();
        gone_is_fine(
            timed(
                "terminate AnalysisRun",
                run_api.patch(
                    n,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(json!({"spec": {"terminate": true}})),
                ),
            )
            .await,
        )?;
    }

    for n in &plan.delete_runs {
        writes.add();
        gone_is_fine(
            timed(
                "delete AnalysisRun",
                run_api.delete(n, &DeleteParams::background()),
            )
            .await,
        )?;
    }

    // 3. Status: replaced whole, guarded by resourceVersion so a control written meanwhile
    // (abort, promote) is never overwritten; a conflict requeues.
    if ro.status.as_ref() != Some(&plan.status) {
        let api: Api<Rollout> = Api::namespaced(client.clone(), &ns);
        let mut updated = ro.clone();
        updated.status = Some(plan.status.clone());
        updated.metadata.managed_fields = None;
        writes.add();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
            ..Default::default()
        };
        timed(
            "replace Rollout status",
            api.replace_status(&name, &params, &updated),
        )
        .await?;
        if let Some(replaced) = ro.resource_version() {
            ctx.own_writes.wrote(&format!("{ns}/{name}"), &replaced);
        }
    }

    // 4. The workloadRef Deployment, once the status that explains it is written.
    if let Some(target) = plan.workload_replicas
        && let Some(w) = &ro.spec.workload_ref
    {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &ns);
        writes.add();
        timed(
            "scale down the workloadRef Deployment",
            api.patch_scale(
                &w.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": target}})),
            ),
        )
        .await?;
    }

    // 5. Events, after the changes they report have been made.
    let reference: ObjectReference = ro.object_ref(&());
    for ev in &plan.events {
        let event = Event {
            type_: match ev.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: ev.reason.to_string(),
            note: Some(ev.message.chars().take(1000).collect()),
            // The recorder folds Events with the same reason and action into one series, keeping
            // the first message: the message as the action keeps each decision its own Event
            // while true repeats still fold.
            action: ev.message.chars().take(128).collect(),
            secondary: None,
        };
        if let Err(e) = timed("publish Event", recorder.publish(&event, &reference)).await {
            tracing::warn!(error = %e, reason = ev.reason, "could not publish an Event");
        }
    }
    Ok(())
}
