//! Carries out a `Plan` without second-guessing it: Services first (traffic), then
//! ReplicaSets, then status, then Events. Every write is skipped when it would change nothing,
//! and every call runs under a timeout.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, EvictParams, Patch, PatchParams};
use kube::runtime::events::EventType as KubeEventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::analysis::AnalysisRun;
use crate::api::constants::{
    ANNOTATION_EPHEMERAL_METADATA, ANNOTATION_SCALE_DOWN_AT, FIELD_MANAGER_CONTROLLER,
    FIELD_MANAGER_TRAFFIC, LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT,
};
use crate::api::rollout::{PodTemplateMetadata, Rollout, RolloutStatus};

use super::analysis::LABEL_ANALYSIS_KIND;
use super::controller::Context;
use super::decide::{EventType, Plan, RsPlan};
use super::hash::replica_set_name;
use super::pods::{self, PodPlan};
use crate::runtime::calls::{gone_is_fine, timed};
use crate::runtime::context::key;
use crate::runtime::error::Error;
use crate::runtime::events;
use crate::runtime::malformed::Parsed;
use crate::runtime::status::replace_status;

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

/// What the plan is applied to, as observed: the Rollout's ReplicaSets, the pod template of
/// the revision being released, the Services' current selectors and the Rollout's pods.
pub struct Current<'a> {
    pub replica_sets: &'a [ReplicaSet],
    pub template: Option<&'a PodTemplateSpec>,
    pub services: &'a BTreeMap<String, Service>,
    pub pods: &'a [Arc<Pod>],
}

/// Applies the plan (and the pods' part of it) to what is observed.
pub async fn apply(
    ctx: &Context,
    ro: &Rollout,
    plan: &Plan,
    pod_plan: &PodPlan,
    current: &Current<'_>,
) -> Result<(), Error> {
    let ns = ro.namespace().unwrap_or_default();
    // 1. Traffic first: a weight that drops (an abort, a new release, the switch) must not lead
    // to traffic on a Service whose selector moved first, so routers go before selectors.
    route(ctx, ro, plan, &ns).await?;
    give_back(ctx, ro, current.replica_sets).await?;
    select(ctx, plan, current.services, &ns).await?;
    // 2. The role labels of running pods (before their ReplicaSets' record of them changes),
    // the revisions, the pods a restart replaces, then the runs that judge them.
    label_pods(ctx, pod_plan, current, &ns).await?;
    scale(ctx, ro, plan, pod_plan, current, &ns).await?;
    analyse(ctx, ro, plan, &ns).await?;
    // 3. Status, after every write it reports went through.
    write_status(
        ctx,
        StatusOf::Read(ro),
        &plan.status,
        "replace Rollout status",
    )
    .await?;
    // 4. The workloadRef Deployment, once the status that explains it is written; the pods a
    // restart replaces, last, so a PodDisruptionBudget holding them back holds nothing else.
    scale_workload(ctx, ro, plan, &ns).await?;
    evict(ctx, &pod_plan.evict, &ns).await?;
    // 5. Events, after the changes they report have been made.
    publish_events(ctx, ro, plan);
    Ok(())
}

/// The traffic routers' objects (Istio, Gateway API) say what the plan says.
async fn route(ctx: &Context, ro: &Rollout, plan: &Plan, ns: &str) -> Result<(), Error> {
    let (Some(state), Some(canary)) = (&plan.traffic, &ro.spec.strategy.canary) else {
        return Ok(());
    };
    let Some(router) = crate::traffic::router::router_for(canary) else {
        return Ok(());
    };
    let shared = &ctx.shared;
    let mark = crate::traffic::given_back::RoutedBy::of(ro).map(|m| m.encode());
    crate::traffic::kube::apply(
        &ctx.caches.routers,
        &shared.client,
        ns,
        router.as_ref(),
        state,
        mark.as_deref().unwrap_or_default(),
        &shared.writes,
    )
    .await
}

/// What the Rollout no longer names (a Service, a router object) is given back as on deletion.
async fn give_back(ctx: &Context, ro: &Rollout, existing: &[ReplicaSet]) -> Result<(), Error> {
    let hashes = existing
        .iter()
        .filter_map(|rs| rs.labels().get(LABEL_POD_TEMPLATE_HASH).cloned())
        .collect();
    let shared = &ctx.shared;
    crate::traffic::kube::give_back_left_behind(
        &ctx.caches,
        &shared.client,
        ro,
        &hashes,
        &shared.writes,
    )
    .await
}

/// The Services' selectors. Only the hash key is Sluice's (its own manager).
async fn select(
    ctx: &Context,
    plan: &Plan,
    services: &BTreeMap<String, Service>,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<Service> = Api::namespaced(ctx.shared.client.clone(), ns);
    for sp in &plan.services {
        let current = services
            .get(&sp.name)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get(LABEL_POD_TEMPLATE_HASH));
        if current == Some(&sp.hash) {
            continue;
        }
        ctx.shared.writes.add();
        timed(
            "patch Service selector",
            api.patch(&sp.name, &traffic_params(), &selector_patch(Some(&sp.hash))),
        )
        .await?;
    }
    Ok(())
}

/// The ReplicaSets: one server-side apply per changed ReplicaSet, with its full desired state
/// (a revision the plan does not size is written only when its role metadata changes); then
/// the ones the plan prunes.
async fn scale(
    ctx: &Context,
    ro: &Rollout,
    plan: &Plan,
    pod_plan: &PodPlan,
    current: &Current<'_>,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.shared.client.clone(), ns);
    let none = PodTemplateMetadata::default();
    let role = |hash: &str| pod_plan.metadata.get(hash).unwrap_or(&none);
    let found = |hash: &str| {
        current
            .replica_sets
            .iter()
            .find(|rs| rs.labels().get(LABEL_POD_TEMPLATE_HASH).map(String::as_str) == Some(hash))
    };
    let mut writes: Vec<ReplicaSet> = plan
        .replica_sets
        .iter()
        .filter_map(|rp| {
            replica_set_to_write(ro, rp, found(&rp.hash), current.template, role(&rp.hash))
        })
        .collect();
    for rs in current.replica_sets {
        let Some(hash) = rs.labels().get(LABEL_POD_TEMPLATE_HASH) else {
            continue;
        };
        if plan.replica_sets.iter().any(|rp| &rp.hash == hash) {
            continue;
        }
        let rp = RsPlan {
            hash: hash.clone(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            scale_down_at: rs
                .annotations()
                .get(ANNOTATION_SCALE_DOWN_AT)
                .and_then(|v| v.parse().ok()),
        };
        writes.extend(replica_set_to_write(ro, &rp, Some(rs), None, role(hash)));
    }
    for desired in &writes {
        apply_owned(ctx, &api, &desired.name_any(), desired, "apply ReplicaSet").await?;
    }
    delete_each(ctx, &api, &plan.delete_replica_sets, "delete ReplicaSet").await
}

/// The ReplicaSet to write for `rp` with the role metadata `role` on its pod template, or
/// `None` when the one `found` already is what the plan says (or there is nothing to write: a
/// revision never created that the plan leaves at zero, or no template to create it from).
fn replica_set_to_write(
    ro: &Rollout,
    rp: &RsPlan,
    found: Option<&ReplicaSet>,
    template: Option<&PodTemplateSpec>,
    role: &PodTemplateMetadata,
) -> Option<ReplicaSet> {
    let spec = found.and_then(|rs| rs.spec.as_ref());
    let current = spec.and_then(|s| s.replicas);
    let annotation = |key: &str| found.and_then(|rs| rs.annotations().get(key).cloned());
    let current_deadline = annotation(ANNOTATION_SCALE_DOWN_AT);
    let current_record = annotation(ANNOTATION_EPHEMERAL_METADATA);
    // A revision planned without a scale-down time is in use: an old deadline goes.
    let want_deadline = rp.scale_down_at.map(|t| t.to_string());
    let want_record = pods::record(role);
    if found.is_some()
        && current == Some(rp.replicas)
        && current_deadline == want_deadline
        && current_record == want_record
    {
        return None;
    }
    if found.is_none() && rp.replicas == 0 {
        return None;
    }
    let mut tmpl = match found {
        Some(_) => spec.and_then(|s| s.template.clone())?,
        None => template.cloned()?,
    };
    let old = pods::parse_record(current_record.as_ref());
    tmpl.metadata = Some(pods::with_role(
        &tmpl.metadata.unwrap_or_default(),
        &old,
        role,
    ));
    let mut desired = desired_replica_set(ro, &rp.hash, &tmpl, rp.replicas);
    // A ReplicaSet's selector cannot change: one created under another selector (the
    // workloadRef Deployment's changed since) keeps its own.
    if let (Some(d), Some(s)) = (desired.spec.as_mut(), spec) {
        d.selector = s.selector.clone();
    }
    let annotations: BTreeMap<String, String> = [
        want_deadline.map(|t| (ANNOTATION_SCALE_DOWN_AT.to_string(), t)),
        want_record.map(|r| (ANNOTATION_EPHEMERAL_METADATA.to_string(), r)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !annotations.is_empty() {
        desired.metadata.annotations = Some(annotations);
    }
    Some(desired)
}

/// The running pods of each revision get its role's labels and annotations in place (no
/// restart), and lose the ones Sluice put on them for a role they no longer have.
async fn label_pods(
    ctx: &Context,
    pod_plan: &PodPlan,
    current: &Current<'_>,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.shared.client.clone(), ns);
    let none = PodTemplateMetadata::default();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    for rs in current.replica_sets {
        let Some(hash) = rs.labels().get(LABEL_POD_TEMPLATE_HASH) else {
            continue;
        };
        let old = pods::parse_record(rs.annotations().get(ANNOTATION_EPHEMERAL_METADATA));
        let want = pod_plan.metadata.get(hash).unwrap_or(&none);
        for pod in current.pods.iter().filter(|p| {
            p.labels().get(LABEL_POD_TEMPLATE_HASH) == Some(hash)
                && p.metadata.deletion_timestamp.is_none()
        }) {
            let Some(patch) = pods::pod_patch(&pod.metadata, &old, want) else {
                continue;
            };
            ctx.shared.writes.add();
            gone_is_fine(
                timed(
                    "patch pod role metadata",
                    api.patch(&pod.name_any(), &params, &Patch::Merge(patch)),
                )
                .await,
            )?;
        }
    }
    Ok(())
}

/// Evicts the pods a restart replaces (the Eviction API, so PodDisruptionBudgets hold). One a
/// budget refuses (429; the API server may also take longer than Sluice waits before it
/// refuses) waits for a later reconcile, which looks again at what is left: a restart never
/// fails a reconcile. One already gone is fine.
async fn evict(ctx: &Context, names: &[String], ns: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.shared.client.clone(), ns);
    for n in names {
        ctx.shared.writes.add();
        match timed("evict pod", api.evict(n, &EvictParams::default())).await {
            Err(e) if e.code() == Some(429) || matches!(e, Error::Timeout { .. }) => {
                tracing::info!(pod = %n, error = %e, "eviction not done; the restart tries again later");
                return Ok(());
            }
            other => gone_is_fine(other)?,
        }
    }
    Ok(())
}

/// One server-side apply of an object Sluice owns, with its full desired state.
async fn apply_owned<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    desired: &K,
    what: &'static str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let mut value = serde_json::to_value(desired).map_err(Error::Serialize)?;
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    ctx.shared.writes.add();
    let params = PatchParams::apply(FIELD_MANAGER_CONTROLLER).force();
    timed(what, api.patch(name, &params, &Patch::Apply(&value))).await?;
    Ok(())
}

/// Deletes each of `names` (in the background: what it owns goes with it); one already gone
/// is fine.
async fn delete_each<K>(
    ctx: &Context,
    api: &Api<K>,
    names: &[String],
    what: &'static str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    for n in names {
        ctx.shared.writes.add();
        gone_is_fine(timed(what, api.delete(n, &DeleteParams::background())).await)?;
    }
    Ok(())
}

/// The AnalysisRuns: created once (owned by the Rollout), stopped when no longer needed,
/// deleted with the revisions they judged.
async fn analyse(ctx: &Context, ro: &Rollout, plan: &Plan, ns: &str) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.shared.client.clone(), ns);
    for rp in &plan.create_runs {
        let mut run = AnalysisRun::new(&rp.name, rp.spec.clone());
        run.metadata.labels = Some(BTreeMap::from([
            (LABEL_ROLLOUT.to_string(), ro.name_any()),
            (LABEL_POD_TEMPLATE_HASH.to_string(), rp.hash.clone()),
            (LABEL_ANALYSIS_KIND.to_string(), rp.kind.to_string()),
        ]));
        run.metadata.owner_references = Some(vec![owner(ro)]);
        apply_owned(ctx, &api, &rp.name, &run, "apply AnalysisRun").await?;
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    let stop = Patch::Merge(json!({"spec": {"terminate": true}}));
    for n in &plan.terminate_runs {
        ctx.shared.writes.add();
        gone_is_fine(timed("terminate AnalysisRun", api.patch(n, &params, &stop)).await)?;
    }
    delete_each(ctx, &api, &plan.delete_runs, "delete AnalysisRun").await
}

/// Scales the workloadRef Deployment as the plan says.
async fn scale_workload(ctx: &Context, ro: &Rollout, plan: &Plan, ns: &str) -> Result<(), Error> {
    let (Some(target), Some(w)) = (plan.workload_replicas, &ro.spec.workload_ref) else {
        return Ok(());
    };
    let api: Api<Deployment> = Api::namespaced(ctx.shared.client.clone(), ns);
    ctx.shared.writes.add();
    timed(
        "scale down the workloadRef Deployment",
        api.patch_scale(
            &w.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": target}})),
        ),
    )
    .await?;
    Ok(())
}

/// The plan's Events, each its own (its message is its action), true repeats folded; handed
/// to the background lanes (`runtime::events`), so the reconcile does not wait for them.
fn publish_events(ctx: &Context, ro: &Rollout, plan: &Plan) {
    let reference: ObjectReference = ro.object_ref(&());
    for ev in &plan.events {
        let type_ = match ev.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        events::publish(
            &ctx.shared.events,
            &reference,
            type_,
            ev.reason,
            &ev.message,
            &ev.message,
        );
    }
}

/// Whose status is written.
#[derive(Clone, Copy)]
pub enum StatusOf<'a> {
    /// A Rollout that reads: its status is replaced whole, under the resourceVersion it was
    /// read at, so a control written meanwhile (abort, promote) is never overwritten (a
    /// conflict requeues).
    Read(&'a Rollout),
    /// A Rollout that does not read: only its conditions, by merge patch (the rest of it
    /// cannot be sent back). A merge patch replaces the list: the other conditions go back as
    /// they were.
    Unread(&'a Parsed<Rollout>),
}

/// The one writer of a Rollout's status (the plan's, a refusal's, an unreadable Rollout's
/// `InvalidSpec`): nothing when `next` says what the status already says; otherwise one write
/// as Sluice's controller field manager, counted, and for a replace remembered until the
/// cache has seen it (see `runtime::own_writes`). Returns whether it wrote.
pub async fn write_status(
    ctx: &Context,
    of: StatusOf<'_>,
    next: &RolloutStatus,
    what: &'static str,
) -> Result<bool, Error> {
    match of {
        StatusOf::Read(ro) => {
            if ro.status.as_ref() == Some(next) {
                return Ok(false);
            }
            let mut updated = ro.clone();
            updated.status = Some(next.clone());
            replace_status(&ctx.shared.client, &ctx.shared.writes, updated, what).await?;
            if let Some(replaced) = ro.resource_version() {
                ctx.own_writes.wrote(&key(ro), &replaced);
            }
        }
        StatusOf::Unread(parsed) => {
            if readable_status(parsed).conditions == next.conditions {
                return Ok(false);
            }
            let ns = parsed.namespace().ok_or(Error::NoNamespace)?;
            let api: Api<Parsed<Rollout>> = Api::namespaced(ctx.shared.client.clone(), &ns);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
                ..Default::default()
            };
            let patch = Patch::Merge(json!({"status": {"conditions": next.conditions}}));
            ctx.shared.writes.add();
            timed(what, api.patch_status(&parsed.name_any(), &params, &patch)).await?;
        }
    }
    Ok(true)
}

/// What can be read of a Rollout's status, also when the Rollout does not read (Sluice wrote
/// the status, so it usually reads on its own).
pub fn readable_status(parsed: &Parsed<Rollout>) -> RolloutStatus {
    match &parsed.0 {
        Ok(ro) => ro.status.clone().unwrap_or_default(),
        Err(bad) => bad
            .status
            .clone()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default(),
    }
}
