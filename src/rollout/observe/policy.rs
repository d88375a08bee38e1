//! Observe's policy, pure: what a Rollout names and declares, the run spec its templates make,
//! which router objects it may route, and how ReplicaSets, pods and AnalysisRuns read as the
//! `Observed` value. Every function takes plain values (the Rollout, slices of cached objects);
//! the I/O that fetches them is `observe`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::{ObservedExercise, ObservedPod, ObservedRs, ObservedRun, PodFailure};
use crate::analysis::judge;
use crate::analysis::template::{ArgContext, build_run, merge_templates, with_rollout_rules};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, DryRun, MeasurementRetention,
};
use crate::api::constants::{ANNOTATION_SCALE_DOWN_AT, LABEL_POD_TEMPLATE_HASH};
use crate::api::rollout::{AnalysisTemplateRef, CanaryStrategy, Rollout, RolloutAnalysis};
use crate::rollout::analysis::AnalysisKey;
use crate::runtime::malformed::{Malformed, Parsed};
use crate::traffic::router::{TrafficRouter, router_for};
use crate::traffic::{HeaderMatch, MirrorRoute, RouteState};

/// The pod template to run and, for a `workloadRef`, the Deployment's `spec.replicas`: the
/// Rollout's own template, or the referenced Deployment's (`deployment`, when it exists).
pub fn workload(
    ro: &Rollout,
    deployment: Option<&Deployment>,
) -> (Option<PodTemplateSpec>, Option<i32>) {
    match (&ro.spec.template, &ro.spec.workload_ref) {
        (Some(t), _) => (Some(t.clone()), None),
        (None, Some(_)) => {
            let spec = deployment.and_then(|d| d.spec.as_ref());
            (
                spec.map(|s| s.template.clone()),
                spec.and_then(|s| s.replicas),
            )
        }
        (None, None) => (None, None),
    }
}

/// The template to run while a rollback exercise is in force (`status.exercise`): the
/// stable template with the exercise's fault applied, as long as the Rollout's own template is
/// still the revision the exercise started from (otherwise a real release began, and wins).
/// Returns the template to run and what became of the exercise.
pub fn exercise(
    ro: &Rollout,
    template: Option<PodTemplateSpec>,
) -> (Option<PodTemplateSpec>, Option<ObservedExercise>) {
    let Some(ex) = ro
        .status
        .as_ref()
        .and_then(|s| s.exercise.as_ref())
        .filter(|e| e.ended.is_none())
    else {
        return (template, None);
    };
    let Some(own) = template else {
        let refused = "the Rollout has no pod template to apply the fault to".to_string();
        return (
            None,
            Some(ObservedExercise {
                revision: None,
                refused: Some(refused),
            }),
        );
    };
    let own_hash = crate::rollout::hash::pod_template_hash(&own);
    if own_hash != ex.stable_revision {
        let refused = format!(
            "a real release began: the template is revision {own_hash}, the exercise started from {}",
            ex.stable_revision
        );
        return (
            Some(own),
            Some(ObservedExercise {
                revision: None,
                refused: Some(refused),
            }),
        );
    }
    match crate::exercise::fault::apply(&own, &ex.fault, &match_labels(ro)) {
        Ok(faulty) => {
            let revision = crate::rollout::hash::pod_template_hash(&faulty);
            (
                Some(faulty),
                Some(ObservedExercise {
                    revision: Some(revision),
                    refused: None,
                }),
            )
        }
        Err(e) => (
            Some(own),
            Some(ObservedExercise {
                revision: None,
                refused: Some(e.to_string()),
            }),
        ),
    }
}

/// The `matchLabels` of the Rollout's selector (empty without one): what a faulty template
/// must keep.
pub fn match_labels(ro: &Rollout) -> BTreeMap<String, String> {
    ro.spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default()
}

/// The Rollout with the selector it runs under: its own, or, when it has none and names a
/// `workloadRef`, the referenced Deployment's (`deployment`, when it exists), as Argo Rollouts
/// resolves it (`rollout/templateref.go` `Resolve`: the selector is copied only when
/// `spec.selector` is nil). Resolved at each reconcile, never written back: the spec is the
/// user's. `None` when there is nothing to resolve.
pub fn with_resolved_selector(ro: &Rollout, deployment: Option<&Deployment>) -> Option<Rollout> {
    if ro.spec.selector.is_some() || ro.spec.template.is_some() {
        return None;
    }
    ro.spec.workload_ref.as_ref()?;
    let selector = deployment?.spec.as_ref()?.selector.clone();
    let mut resolved = ro.clone();
    resolved.spec.selector = Some(selector);
    Some(resolved)
}

/// The Services a Rollout names.
pub fn named_services(ro: &Rollout) -> Vec<&String> {
    match (&ro.spec.strategy.canary, &ro.spec.strategy.blue_green) {
        (Some(c), _) => [&c.stable_service, &c.canary_service]
            .into_iter()
            .flatten()
            .collect(),
        (None, Some(b)) => std::iter::once(&b.active_service)
            .chain(b.preview_service.as_ref())
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// One ReplicaSet as `decide` reads it, with the first failing pod among `pods` (the
/// Rollout's pods; those of other revisions are skipped). `None` for a ReplicaSet without the
/// pod-template-hash label.
pub fn observed_rs(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    restart_threshold: i32,
) -> Option<ObservedRs> {
    let hash = rs.labels().get(LABEL_POD_TEMPLATE_HASH)?.clone();
    let status = rs.status.clone().unwrap_or_default();
    let own_pods: Vec<Pod> = pods
        .iter()
        .filter(|p| p.labels().get(LABEL_POD_TEMPLATE_HASH) == Some(&hash))
        .map(|p| p.as_ref().clone())
        .collect();
    Some(ObservedRs {
        name: rs.name_any(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        pods: status.replicas,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        scale_down_at: rs
            .annotations()
            .get(ANNOTATION_SCALE_DOWN_AT)
            .and_then(|v| v.parse::<Timestamp>().ok()),
        failure: diagnose(&own_pods, restart_threshold),
        hash,
    })
}

/// One pod as `decide` reads it; `None` for a pod without the pod-template-hash label.
pub fn observed_pod(pod: &Pod) -> Option<ObservedPod> {
    let hash = pod.labels().get(LABEL_POD_TEMPLATE_HASH)?.clone();
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        });
    Some(ObservedPod {
        name: pod.name_any(),
        hash,
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        ready_since,
        deleting: pod.metadata.deletion_timestamp.is_some(),
    })
}

/// One AnalysisRun as `decide` reads it. A run that does not read is a run in error: its
/// verdict cannot be known, as a provider's error would leave it.
pub fn observed_run(parsed: &Parsed<AnalysisRun>) -> ObservedRun {
    let hash = parsed
        .labels()
        .get(LABEL_POD_TEMPLATE_HASH)
        .cloned()
        .unwrap_or_default();
    let r = match &parsed.0 {
        Ok(r) => r,
        Err(bad) => {
            return ObservedRun {
                name: parsed.name_any(),
                hash,
                phase: Some(AnalysisPhase::Error),
                message: Some(format!(
                    "the AnalysisRun cannot be read: {}",
                    bad.describe()
                )),
                terminated: false,
                measuring: false,
                decided_by: None,
            };
        }
    };
    let status = r.status.clone().unwrap_or_default();
    let policies = judge::policies(&r.spec).unwrap_or_default();
    let terminated = r.spec.terminate == Some(true);
    ObservedRun {
        name: r.name_any(),
        hash,
        phase: status.phase,
        message: status.message.clone(),
        terminated,
        measuring: !terminated && judge::is_measuring(&status, &policies),
        decided_by: decided_by(r, &status),
    }
}

/// The first metric whose phase is not a success (Failed, Error, then Inconclusive): its
/// last finished measurement's value and the condition the metric is judged by.
fn decided_by(
    r: &AnalysisRun,
    status: &crate::api::analysis::AnalysisRunStatus,
) -> Option<crate::api::rollout::NotifiedAnalysis> {
    use crate::api::analysis::AnalysisPhase as P;
    let rank = |p: Option<P>| match p {
        Some(P::Failed) => Some(0),
        Some(P::Error) => Some(1),
        Some(P::Inconclusive) => Some(2),
        _ => None,
    };
    let result = status
        .metric_results
        .iter()
        .filter_map(|m| rank(m.phase).map(|k| (k, m)))
        .min_by_key(|(k, _)| *k)?
        .1;
    let metric = r.spec.metrics.iter().find(|m| m.name == result.name);
    let condition = metric.and_then(|m| {
        m.failure_condition
            .as_ref()
            .map(|c| format!("failureCondition: {c}"))
            .or_else(|| {
                m.success_condition
                    .as_ref()
                    .map(|c| format!("successCondition: {c}"))
            })
    });
    let value = result
        .measurements
        .iter()
        .rev()
        .find(|m| m.phase == result.phase || m.phase == Some(P::Failed))
        .or(result.measurements.last())
        .and_then(|m| m.value.clone());
    Some(crate::api::rollout::NotifiedAnalysis {
        run: r.name_any(),
        metric: Some(result.name.clone()),
        value,
        condition,
    })
}

/// The parts of a step, background or promotion analysis that make its run.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisUse {
    pub templates: Vec<AnalysisTemplateRef>,
    pub args: Vec<Argument>,
    pub dry_run: Option<Vec<DryRun>>,
    pub retention: Option<Vec<MeasurementRetention>>,
}

impl AnalysisUse {
    fn of(a: &RolloutAnalysis) -> Self {
        AnalysisUse {
            templates: a.templates.clone(),
            args: a.args.clone().unwrap_or_default(),
            dry_run: a.dry_run.clone(),
            retention: a.measurement_retention.clone(),
        }
    }
}

/// Every analysis the Rollout declares, by where it declares it.
pub fn analysis_uses(ro: &Rollout) -> Vec<(AnalysisKey, AnalysisUse)> {
    let mut uses = Vec::new();
    if let Some(c) = &ro.spec.strategy.canary {
        for (i, step) in c.steps().iter().enumerate() {
            if let Some(a) = &step.analysis {
                uses.push((AnalysisKey::Step(i), AnalysisUse::of(a)));
            }
        }
        if let Some(a) = &c.analysis {
            let a = AnalysisUse {
                templates: a.templates.clone(),
                args: a.args.clone().unwrap_or_default(),
                dry_run: a.dry_run.clone(),
                retention: a.measurement_retention.clone(),
            };
            uses.push((AnalysisKey::Background, a));
        }
    }
    if let Some(b) = &ro.spec.strategy.blue_green {
        if let Some(a) = &b.pre_promotion_analysis {
            uses.push((AnalysisKey::PrePromotion, AnalysisUse::of(a)));
        }
        if let Some(a) = &b.post_promotion_analysis {
            uses.push((AnalysisKey::PostPromotion, AnalysisUse::of(a)));
        }
    }
    uses
}

/// True when one of `uses` names a ClusterAnalysisTemplate.
pub fn needs_cluster_templates(uses: &[(AnalysisKey, AnalysisUse)]) -> bool {
    uses.iter()
        .flat_map(|(_, u)| u.templates.iter())
        .any(|t| t.cluster_scope == Some(true))
}

/// True when one of the Rollout's analyses names the template (a ClusterAnalysisTemplate
/// when `cluster`).
pub fn uses_template(ro: &Rollout, name: &str, cluster: bool) -> bool {
    analysis_uses(ro).iter().any(|(_, u)| {
        u.templates
            .iter()
            .any(|r| (r.cluster_scope == Some(true)) == cluster && r.template_name == name)
    })
}

/// The templates an analysis may name: the namespace's and the cluster's (or why the
/// cluster's cannot be read).
pub struct Templates<'a> {
    pub local: &'a [Arc<Parsed<AnalysisTemplate>>],
    pub cluster: Result<&'a [Arc<Parsed<ClusterAnalysisTemplate>>], String>,
}

/// Each analysis of `uses` with the run spec its templates make for revision `desired` (or
/// why they cannot make one).
pub fn declared_analysis(
    ro: &Rollout,
    uses: Vec<(AnalysisKey, AnalysisUse)>,
    templates: &Templates<'_>,
    desired: &str,
) -> BTreeMap<AnalysisKey, Result<AnalysisRunSpec, String>> {
    let args = arg_context(ro, desired);
    uses.into_iter()
        .map(|(key, u)| {
            let built = match &templates.cluster {
                Err(e) => Err(e.clone()),
                Ok(cluster) => run_spec(&u, templates.local, cluster, &args),
            };
            (key, built)
        })
        .collect()
}

/// What `{{args...}}` and `valueFrom` resolve against when revision `desired` is released.
pub fn arg_context(ro: &Rollout, desired: &str) -> ArgContext {
    ArgContext {
        stable_hash: ro
            .status
            .as_ref()
            .and_then(|s| s.stable_rs.clone())
            .or_else(|| Some(desired.to_string())),
        latest_hash: Some(desired.to_string()),
        rollout: serde_json::to_value(ro).unwrap_or_default(),
    }
}

/// The run spec one analysis makes: its templates merged, its arguments bound, and its own
/// `dryRun` and `measurementRetention` added to the templates'.
pub fn run_spec(
    u: &AnalysisUse,
    local: &[Arc<Parsed<AnalysisTemplate>>],
    cluster: &[Arc<Parsed<ClusterAnalysisTemplate>>],
    args: &ArgContext,
) -> Result<AnalysisRunSpec, String> {
    if let Some(why) = unreadable_template(&u.templates, local, cluster) {
        return Err(why);
    }
    let lookup = |r: &AnalysisTemplateRef| -> Option<AnalysisTemplateSpec> {
        if r.cluster_scope == Some(true) {
            find(cluster, &r.template_name).map(|t| t.spec.clone().into())
        } else {
            find(local, &r.template_name).map(|t| t.spec.clone())
        }
    };
    merge_templates(&u.templates, &lookup)
        .and_then(|merged| build_run(&merged, &u.args, args))
        .and_then(|spec| with_rollout_rules(spec, u.dry_run.as_deref(), u.retention.as_deref()))
        .map_err(|e| e.to_string())
}

/// The template called `name` among `all`, when it reads.
fn find<'a, K: Resource>(all: &'a [Arc<Parsed<K>>], name: &str) -> Option<&'a K> {
    all.iter()
        .filter_map(|t| t.ok())
        .find(|t| t.meta().name.as_deref() == Some(name))
}

/// Why the first of `refs` that names a template which does not read cannot be used.
pub fn unreadable_template(
    refs: &[AnalysisTemplateRef],
    local: &[Arc<Parsed<AnalysisTemplate>>],
    cluster: &[Arc<Parsed<ClusterAnalysisTemplate>>],
) -> Option<String> {
    fn bad<K: Resource>(all: &[Arc<Parsed<K>>], name: &str) -> Option<Malformed> {
        all.iter()
            .find(|t| t.meta().name.as_deref() == Some(name))
            .and_then(|t| t.0.as_ref().err().cloned())
    }
    refs.iter().find_map(|r| {
        let (kind, bad) = if r.cluster_scope == Some(true) {
            ("ClusterAnalysisTemplate", bad(cluster, &r.template_name))
        } else {
            ("AnalysisTemplate", bad(local, &r.template_name))
        };
        bad.map(|b| {
            format!(
                "{kind} {:?} cannot be read: {}",
                r.template_name,
                b.describe()
            )
        })
    })
}

/// What the router's objects must hold for every step of the canary: every header route any
/// step sets (checked up front, so a step never fails later), with placeholder subsets.
pub fn route_state_to_verify(canary: &CanaryStrategy) -> RouteState {
    let mut header_routes: Vec<(String, Vec<HeaderMatch>)> = Vec::new();
    for h in canary
        .steps()
        .iter()
        .filter_map(|s| s.set_header_route.as_ref())
    {
        let m: Vec<_> = h
            .matches
            .iter()
            .flatten()
            .filter_map(HeaderMatch::from_api)
            .collect();
        if !m.is_empty() && !header_routes.iter().any(|(n, _)| n == &h.name) {
            header_routes.push((h.name.clone(), m));
        }
    }
    let mut mirror_routes: Vec<MirrorRoute> = Vec::new();
    for m in canary
        .steps()
        .iter()
        .filter_map(|s| s.set_mirror_route.as_ref())
        .filter_map(MirrorRoute::from_api)
    {
        if !mirror_routes.iter().any(|r| r.name == m.name) {
            mirror_routes.push(m);
        }
    }
    RouteState {
        header_routes,
        mirror_routes,
        stable_hash: "stable".into(),
        canary_hash: "canary".into(),
        ..Default::default()
    }
}

/// The objects of `router` that an older Rollout among `others` (the Rollouts of namespace
/// `ns`) already routes, by the field that names them, with why: two Rollouts must not route
/// one object, and the younger one is refused. Age is the creation time, then the name.
pub fn claimed_by_others(
    ro: &Rollout,
    others: &[&Rollout],
    ns: &str,
    router: &dyn TrafficRouter,
) -> BTreeMap<String, String> {
    let age = |r: &Rollout| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    };
    let mut out = BTreeMap::new();
    for other in others
        .iter()
        .filter(|o| o.uid() != ro.uid() && age(o) < age(ro))
    {
        let Some(theirs) = other.spec.strategy.canary.as_ref().and_then(router_for) else {
            continue;
        };
        let theirs = theirs.targets();
        for t in router.targets() {
            let same = theirs.iter().any(|o| {
                o.kind == t.kind
                    && o.name == t.name
                    && o.namespace.as_deref().unwrap_or(ns) == t.namespace.as_deref().unwrap_or(ns)
            });
            if same {
                let why = format!(
                    "{} is already routed by Rollout {:?}",
                    t.describe(),
                    other.name_any()
                );
                out.insert(t.field.clone(), why);
            }
        }
    }
    out
}

/// Reasons that mean a container will not come up on its own.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
];

/// The first pod in `pods` that is failing: a fatal waiting reason, an OOM kill, or a crash
/// loop with at least `restart_threshold` restarts.
pub fn diagnose(pods: &[Pod], restart_threshold: i32) -> Option<PodFailure> {
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for c in statuses.into_iter().flatten() {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
            let oom = last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
            let crash = reason == "CrashLoopBackOff" && c.restart_count >= restart_threshold;
            if FATAL_WAITING.contains(&reason.as_str()) || crash || oom {
                return Some(PodFailure {
                    pod: name,
                    container: c.name.clone(),
                    reason: if oom { "OOMKilled".to_string() } else { reason },
                    exit_code: last.map(|t| t.exit_code),
                    restarts: c.restart_count,
                    message: waiting
                        .and_then(|w| w.message.clone())
                        .or_else(|| last.and_then(|t| t.message.clone()))
                        .unwrap_or_default(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(waiting: Option<(&str, &str)>, last: Option<(&str, i32)>, restarts: i32) -> Pod {
        let mut status = json!({"name": "web", "image": "web:2", "imageID": "", "ready": false, "restartCount": restarts});
        if let Some((reason, message)) = waiting {
            status["state"] = json!({"waiting": {"reason": reason, "message": message}});
        } else {
            status["state"] = json!({"running": {}});
        }
        if let Some((reason, code)) = last {
            status["lastState"] = json!({"terminated": {"reason": reason, "exitCode": code}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc"},
            "status": {"containerStatuses": [status]}
        }))
        .expect("pod")
    }

    #[test]
    fn each_fatal_reason_is_diagnosed_with_its_details() {
        let cases = [
            (
                pod(
                    Some(("CrashLoopBackOff", "back-off 10s")),
                    Some(("Error", 3)),
                    2,
                ),
                Some(("CrashLoopBackOff", Some(3))),
            ),
            (
                pod(
                    Some(("CrashLoopBackOff", "back-off 10s")),
                    Some(("Error", 3)),
                    1,
                ),
                None,
            ),
            (
                pod(
                    Some(("ImagePullBackOff", "Back-off pulling image")),
                    None,
                    0,
                ),
                Some(("ImagePullBackOff", None)),
            ),
            (
                pod(Some(("ErrImagePull", "not found")), None, 0),
                Some(("ErrImagePull", None)),
            ),
            (
                pod(
                    Some(("CreateContainerConfigError", "secret \"db\" not found")),
                    None,
                    0,
                ),
                Some(("CreateContainerConfigError", None)),
            ),
            (
                pod(None, Some(("OOMKilled", 137)), 1),
                Some(("OOMKilled", Some(137))),
            ),
            (pod(None, None, 0), None),
            (pod(Some(("ContainerCreating", "")), None, 0), None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let got = diagnose(&[p], 2).map(|f| (f.reason.clone(), f.exit_code));
            let want = want.map(|(r, c)| (r.to_string(), c));
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn the_diagnosis_reads_like_a_sentence() {
        let f = diagnose(
            &[pod(
                Some(("CrashLoopBackOff", "back-off 10s")),
                Some(("Error", 3)),
                4,
            )],
            2,
        )
        .expect("failure");
        assert_eq!(
            f.describe(),
            "pod web-abc container web: CrashLoopBackOff, last exit code 3, 4 restarts: back-off 10s"
        );
    }

    #[test]
    fn templates_are_matched_by_scope_and_name() {
        let ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "a", "namespace": "shop"},
            "spec": {"strategy": {"canary": {"steps": [{"analysis": {"templates": [
                {"templateName": "rate"}, {"templateName": "slo", "clusterScope": true}]}}]}}}
        }))
        .expect("rollout");
        assert!(uses_template(&ro, "rate", false));
        assert!(!uses_template(&ro, "rate", true));
        assert!(uses_template(&ro, "slo", true));
        assert!(!uses_template(&ro, "slo", false));
    }

    fn rollout(name: &str, created: &str, spec: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "shop", "uid": name,
                "creationTimestamp": created},
            "spec": spec
        }))
        .expect("rollout")
    }

    fn routed(name: &str, created: &str, vs: &str) -> Rollout {
        rollout(
            name,
            created,
            json!({"strategy": {"canary": {"stableService": "s", "canaryService": "c",
                "trafficRouting": {"istio": {"virtualService": {"name": vs}}}}}}),
        )
    }

    #[test]
    fn an_older_rollout_keeps_a_contested_virtual_service() {
        let old = routed("web", "2026-01-01T00:00:00Z", "web");
        let young = routed("api", "2026-02-01T00:00:00Z", "web");
        let apart = routed("cart", "2026-03-01T00:00:00Z", "cart");
        let all = [&old, &young, &apart];
        let router_of = |r: &Rollout| {
            r.spec
                .strategy
                .canary
                .as_ref()
                .and_then(router_for)
                .expect("router")
        };
        let refused = claimed_by_others(&young, &all, "shop", router_of(&young).as_ref());
        assert_eq!(refused.len(), 1, "{refused:?}");
        let why = refused.values().next().expect("one");
        assert!(
            why.ends_with("is already routed by Rollout \"web\""),
            "{why}"
        );
        assert!(claimed_by_others(&old, &all, "shop", router_of(&old).as_ref()).is_empty());
        assert!(claimed_by_others(&apart, &all, "shop", router_of(&apart).as_ref()).is_empty());
    }

    #[test]
    fn created_together_the_name_decides() {
        let a = routed("a", "2026-01-01T00:00:00Z", "web");
        let b = routed("b", "2026-01-01T00:00:00Z", "web");
        let router = b.spec.strategy.canary.as_ref().and_then(router_for);
        let router = router.expect("router");
        assert_eq!(
            claimed_by_others(&b, &[&a, &b], "shop", router.as_ref()).len(),
            1
        );
        assert!(claimed_by_others(&a, &[&a, &b], "shop", router.as_ref()).is_empty());
    }

    fn template(name: &str, metric: serde_json::Value) -> Arc<Parsed<AnalysisTemplate>> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"metrics": [metric]}
            }))
            .expect("parsed"),
        )
    }

    fn rate() -> serde_json::Value {
        json!({"name": "rate", "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"address": "http://prom:9090", "query": "rate"}}})
    }

    #[test]
    fn each_strategy_declares_its_analyses_under_their_keys() {
        let uses = |spec| {
            analysis_uses(&rollout("web", "2026-01-01T00:00:00Z", spec))
                .into_iter()
                .map(|(k, u)| (k, u.templates[0].template_name.clone()))
                .collect::<Vec<_>>()
        };
        let at = |n: &str| json!({"templates": [{"templateName": n}]});
        let canary = json!({"strategy": {"canary": {
            "steps": [{"setWeight": 20}, {"analysis": at("one")}, {"pause": {}},
                {"analysis": at("three")}],
            "analysis": at("bg")}}});
        assert_eq!(
            uses(canary),
            [
                (AnalysisKey::Step(1), "one".to_string()),
                (AnalysisKey::Step(3), "three".to_string()),
                (AnalysisKey::Background, "bg".to_string()),
            ]
        );
        let blue_green = json!({"strategy": {"blueGreen": {"activeService": "a",
            "prePromotionAnalysis": at("pre"), "postPromotionAnalysis": at("post")}}});
        assert_eq!(
            uses(blue_green),
            [
                (AnalysisKey::PrePromotion, "pre".to_string()),
                (AnalysisKey::PostPromotion, "post".to_string()),
            ]
        );
        assert!(uses(json!({"strategy": {"canary": {}}})).is_empty());
    }

    #[test]
    fn a_template_that_does_not_read_is_named() {
        let broken = template(
            "rate",
            json!({"name": "rate", "provider": {"job": {"spec": {"backoffLimit": "two",
                "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}}}}}),
        );
        assert!(broken.ok().is_none(), "backoffLimit is a number");
        let fine = template("errors", rate());
        let ro = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"steps": [{"analysis": {"templates": [
                {"templateName": "errors"}, {"templateName": "rate"}]}}]}}}),
        );
        let local = [fine, broken];
        let templates = Templates {
            local: &local,
            cluster: Ok(&[]),
        };
        let built = declared_analysis(&ro, analysis_uses(&ro), &templates, "abc");
        let why = built[&AnalysisKey::Step(0)]
            .clone()
            .expect_err("unreadable");
        assert_eq!(
            why,
            "AnalysisTemplate \"rate\" cannot be read: field \
             spec.metrics[0].provider.job.spec.backoffLimit: invalid type: string \"two\", \
             expected i32"
        );
    }

    #[test]
    fn cluster_templates_that_cannot_be_listed_fail_every_analysis_with_the_reason() {
        let ro = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"analysis": {"templates": [
                {"templateName": "slo", "clusterScope": true}]}}}}),
        );
        let uses = analysis_uses(&ro);
        assert!(needs_cluster_templates(&uses));
        let templates = Templates {
            local: &[],
            cluster: Err("list ClusterAnalysisTemplates: forbidden".into()),
        };
        let built = declared_analysis(&ro, uses, &templates, "abc");
        assert_eq!(
            built[&AnalysisKey::Background],
            Err("list ClusterAnalysisTemplates: forbidden".to_string())
        );
    }

    #[test]
    fn the_analysis_adds_its_dry_run_and_retention_to_the_templates() {
        let ro = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"steps": [{"analysis": {
                "templates": [{"templateName": "rate"}],
                "dryRun": [{"metricName": "rate"}],
                "measurementRetention": [{"metricName": "rate", "limit": 3}]}}]}}}),
        );
        let local = [template("rate", rate())];
        let templates = Templates {
            local: &local,
            cluster: Ok(&[]),
        };
        let built = declared_analysis(&ro, analysis_uses(&ro), &templates, "abc");
        let spec = built[&AnalysisKey::Step(0)].clone().expect("built");
        assert_eq!(spec.metrics.len(), 1);
        assert_eq!(
            spec.dry_run,
            Some(vec![DryRun {
                metric_name: "rate".into()
            }])
        );
        assert_eq!(
            spec.measurement_retention,
            Some(vec![MeasurementRetention {
                metric_name: "rate".into(),
                limit: 3
            }])
        );
        let plain = AnalysisUse {
            dry_run: None,
            retention: None,
            ..analysis_uses(&ro).remove(0).1
        };
        let spec = run_spec(&plain, &local, &[], &arg_context(&ro, "abc")).expect("built");
        assert_eq!((spec.dry_run, spec.measurement_retention), (None, None));
    }

    #[test]
    fn a_missing_template_is_an_error_not_a_run() {
        let ro = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"steps": [{"analysis": {
                "templates": [{"templateName": "gone"}]}}]}}}),
        );
        let templates = Templates {
            local: &[],
            cluster: Ok(&[]),
        };
        let built = declared_analysis(&ro, analysis_uses(&ro), &templates, "abc");
        let why = built[&AnalysisKey::Step(0)].clone().expect_err("missing");
        assert!(why.contains("gone"), "{why}");
    }

    /// Argo Rollouts: rollout/templateref.go `Resolve` copies the referenced object's selector
    /// only when `spec.selector` is nil, and never persists it.
    #[test]
    fn a_workload_ref_without_a_selector_runs_under_the_deployments() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}}
        }))
        .expect("deployment");
        let reference = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
        let bare = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"workloadRef": reference, "strategy": {"canary": {}}}),
        );
        let resolved = with_resolved_selector(&bare, Some(&deployment)).expect("resolved");
        let labels = resolved.spec.selector.and_then(|s| s.match_labels);
        assert_eq!(
            labels.map(|l| l.into_iter().collect::<Vec<_>>()),
            Some(vec![
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string())
            ])
        );
        assert!(
            bare.spec.selector.is_none(),
            "the Rollout itself is left as written"
        );
        // The Deployment is missing: nothing to resolve (validation names the workloadRef).
        assert!(with_resolved_selector(&bare, None).is_none());
        // A selector of the Rollout's own is kept, as Argo Rollouts keeps it.
        let own = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"selector": {"matchLabels": {"app": "web"}}, "workloadRef": reference,
                "strategy": {"canary": {}}}),
        );
        assert!(with_resolved_selector(&own, Some(&deployment)).is_none());
    }

    #[test]
    fn each_strategy_names_its_services() {
        let canary = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"stableService": "s", "canaryService": "c"}}}),
        );
        let blue_green = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"blueGreen": {"activeService": "a", "previewService": "p"}}}),
        );
        let basic = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {}}}),
        );
        assert_eq!(named_services(&canary), ["s", "c"]);
        assert_eq!(named_services(&blue_green), ["a", "p"]);
        assert!(named_services(&basic).is_empty());
    }

    #[test]
    fn a_run_that_does_not_read_is_a_run_in_error() {
        let parsed: Parsed<AnalysisRun> = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-1", "namespace": "shop",
                "labels": {LABEL_POD_TEMPLATE_HASH: "abc"}},
            "spec": {"metrics": "none"}
        }))
        .expect("parsed");
        let run = observed_run(&parsed);
        assert_eq!((run.name.as_str(), run.hash.as_str()), ("web-1", "abc"));
        assert_eq!(run.phase, Some(AnalysisPhase::Error));
        assert!(
            run.message.as_deref().is_some_and(
                |m| m.starts_with("the AnalysisRun cannot be read: field spec.metrics")
            ),
            "{:?}",
            run.message
        );
        assert!(!run.measuring);
    }

    #[test]
    fn the_route_state_checked_holds_every_header_route_a_step_sets_once() {
        let ro = rollout(
            "web",
            "2026-01-01T00:00:00Z",
            json!({"strategy": {"canary": {"steps": [
                {"setHeaderRoute": {"name": "beta", "match": [
                    {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
                {"setHeaderRoute": {"name": "beta", "match": [
                    {"headerName": "x-other", "headerValue": {"exact": "2"}}]}},
                {"setHeaderRoute": {"name": "off"}}]}}}),
        );
        let state = route_state_to_verify(ro.spec.strategy.canary.as_ref().expect("canary"));
        assert_eq!(state.header_routes.len(), 1);
        assert_eq!(state.header_routes[0].0, "beta");
        assert_eq!(state.header_routes[0].1[0].name, "x-beta");
    }
}
