//! What the controller knows about a Rollout's world at one moment: the `Observed` value that
//! the pure `decide` reads, and `observe`, the I/O that fills it from the watch caches (and,
//! for a router object outside the watched namespace, from the API server). What the values
//! read mean (which run a template makes, which Rollout may route an object, which pod is
//! failing) is decided in `policy`, pure.

pub mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::analysis::AnalysisKey;
use super::cache::{Caches, Reads};
use super::hash::pod_template_hash;
use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec, ClusterAnalysisTemplate};
use crate::api::rollout::Rollout;
use crate::runtime::error::Error;
use crate::runtime::malformed::Parsed;
use crate::traffic::router::router_for;
use policy::Templates;

/// What a reconcile reads: the `Observed` value for `decide`, and the objects `apply` compares
/// its plan with (so it writes only what changes).
pub struct World {
    pub observed: Observed,
    /// The Rollout's ReplicaSets.
    pub replica_sets: Vec<ReplicaSet>,
    /// The Services the Rollout names that exist, by name.
    pub services: BTreeMap<String, Service>,
    /// The Rollout's pods.
    pub pods: Vec<Arc<Pod>>,
}

/// Where observe reads from.
pub struct Sources<'a> {
    pub caches: &'a Caches,
    /// For router objects outside the watched namespace.
    pub client: &'a Client,
    /// Restarts of a crash-looping container that make its pod a failure.
    pub restart_threshold: i32,
}

/// Reads everything `decide` needs about `ro`.
pub async fn observe(ro: &Rollout, from: &Sources<'_>) -> Result<World, Error> {
    let ns = ro.namespace().ok_or(Error::NoNamespace)?;
    let caches = from.caches;
    let deployment = ro
        .spec
        .workload_ref
        .as_ref()
        .and_then(|w| caches.deployments.get(&ObjectRef::new(&w.name).within(&ns)));
    let (template, workload_replicas) = policy::workload(ro, deployment.as_deref());
    // A rollback exercise in force releases its faulty template instead.
    let (template, exercise) = policy::exercise(ro, template);
    let (replica_sets, observed_sets, pods) = replica_sets(ro, caches, &ns, from.restart_threshold);
    let (services, exists) = services(ro, caches, &ns);
    let uid = ro.uid().unwrap_or_default();
    let runs = caches
        .runs_of(&ns, &uid)
        .iter()
        .map(|r| policy::observed_run(r))
        .collect();
    let analysis = match &template {
        Some(t) => declared_analysis(ro, caches, &ns, &pod_template_hash(t)).await?,
        None => BTreeMap::new(),
    };
    let traffic = traffic_problems(ro, from, &ns).await?;
    Ok(World {
        observed: Observed {
            template,
            exercise,
            workload_replicas,
            replica_sets: observed_sets,
            services: exists,
            analysis,
            runs,
            traffic,
            pods: pods
                .iter()
                .filter_map(|p| policy::observed_pod(p))
                .collect(),
        },
        replica_sets,
        services,
        pods,
    })
}

/// `ro` with the selector it runs under (see [`policy::with_resolved_selector`]): a
/// `workloadRef` Rollout without `spec.selector` takes the Deployment's.
pub fn resolve_selector(ro: Arc<Rollout>, caches: &Caches) -> Arc<Rollout> {
    let (Some(ns), Some(w)) = (ro.namespace(), ro.spec.workload_ref.as_ref()) else {
        return ro;
    };
    let deployment = caches.deployments.get(&ObjectRef::new(&w.name).within(&ns));
    match policy::with_resolved_selector(&ro, deployment.as_deref()) {
        Some(resolved) => Arc::new(resolved),
        None => ro,
    }
}

/// The ReplicaSets the Rollout controls, as cached and as `decide` reads them, and its pods.
fn replica_sets(
    ro: &Rollout,
    caches: &Caches,
    ns: &str,
    restart_threshold: i32,
) -> (Vec<ReplicaSet>, Vec<ObservedRs>, Vec<Arc<Pod>>) {
    let name = ro.name_any();
    let uid = ro.uid().unwrap_or_default();
    let sets: Vec<ReplicaSet> = caches.replica_sets_of(ns, &uid);
    let pods: Vec<Arc<Pod>> = caches.pods_of(ns, &name);
    let observed = sets
        .iter()
        .filter_map(|rs| policy::observed_rs(rs, &pods, restart_threshold))
        .collect();
    (sets, observed, pods)
}

/// The Services the Rollout names that exist, and whether each named one does.
fn services(
    ro: &Rollout,
    caches: &Caches,
    ns: &str,
) -> (BTreeMap<String, Service>, BTreeMap<String, bool>) {
    let mut found = BTreeMap::new();
    let mut exists = BTreeMap::new();
    for n in policy::named_services(ro) {
        let s = caches.service(ns, n);
        exists.insert(n.clone(), s.is_some());
        if let Some(s) = s {
            found.insert(n.clone(), s);
        }
    }
    (found, exists)
}

/// Every analysis the Rollout declares, by where it declares it, with the run spec its
/// templates make for revision `desired` (or why they cannot make one).
async fn declared_analysis(
    ro: &Rollout,
    caches: &Caches,
    ns: &str,
    desired: &str,
) -> Result<BTreeMap<AnalysisKey, Result<AnalysisRunSpec, String>>, Error> {
    let uses = policy::analysis_uses(ro);
    if uses.is_empty() {
        return Ok(BTreeMap::new());
    }
    let local = caches.templates_in(ns);
    // A refused list is the Rollout's problem (InvalidSpec, naming it); a cache that has not
    // synced yet is retried.
    let cluster: Result<Vec<Arc<Parsed<ClusterAnalysisTemplate>>>, String> =
        if policy::needs_cluster_templates(&uses) {
            caches
                .cluster_templates()
                .await
                .map_err(|()| Error::Timeout {
                    what: "first sync of the ClusterAnalysisTemplate watch cache",
                })?
        } else {
            Ok(Vec::new())
        };
    let templates = Templates {
        local: &local,
        cluster: cluster.as_deref().map_err(Clone::clone),
    };
    Ok(policy::declared_analysis(ro, uses, &templates, desired))
}

/// What the traffic router's objects lack, by the Rollout field that names them; also
/// refuses an object another (older) Rollout already routes.
async fn traffic_problems(
    ro: &Rollout,
    from: &Sources<'_>,
    ns: &str,
) -> Result<BTreeMap<String, Result<(), String>>, Error> {
    let Some(canary) = &ro.spec.strategy.canary else {
        return Ok(BTreeMap::new());
    };
    let Some(router) = router_for(canary) else {
        return Ok(BTreeMap::new());
    };
    let state = policy::route_state_to_verify(canary);
    let mut out = crate::traffic::kube::verify(
        &from.caches.routers,
        from.client,
        ns,
        router.as_ref(),
        &state,
    )
    .await?;
    for (field, why) in claimed_by_others(ro, from.caches, ns, router.as_ref()) {
        out.insert(field, Err(why));
    }
    Ok(out)
}

/// The objects of `router` that an older Rollout in `ns` already routes (see
/// [`policy::claimed_by_others`]). Only the Rollouts of `ns` that route one of the same
/// objects are looked at.
pub fn claimed_by_others(
    ro: &Rollout,
    caches: &Caches,
    ns: &str,
    router: &dyn crate::traffic::router::TrafficRouter,
) -> BTreeMap<String, String> {
    let mut cached: BTreeMap<String, Parsed<Rollout>> = BTreeMap::new();
    for t in router.targets() {
        let target = Reads::RouterObject {
            kind: t.kind,
            namespace: t.namespace.unwrap_or_else(|| ns.to_string()),
            name: t.name,
        };
        for o in caches.rollouts_reading(&target) {
            if o.namespace().as_deref() == Some(ns) {
                cached.insert(o.name_any(), o.to_parsed());
            }
        }
    }
    let others: Vec<&Rollout> = cached.values().filter_map(|o| o.ok()).collect();
    policy::claimed_by_others(ro, &others, ns, router)
}

/// One ReplicaSet owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRs {
    pub name: String,
    /// The pod-template-hash label.
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: the pods it has now (the status counts are made of these).
    pub pods: i32,
    pub ready: i32,
    pub available: i32,
    pub created: Option<Timestamp>,
    /// When Sluice may scale it to zero (kept in an annotation on the ReplicaSet).
    pub scale_down_at: Option<Timestamp>,
    /// The first failing pod, if any (fail fast).
    pub failure: Option<PodFailure>,
}

/// Why a pod of a revision cannot run, as a person would want to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFailure {
    pub pod: String,
    pub container: String,
    pub reason: String,
    pub exit_code: Option<i32>,
    pub restarts: i32,
    pub message: String,
}

impl PodFailure {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "pod {} container {}: {}",
            self.pod, self.container, self.reason
        );
        if let Some(code) = self.exit_code {
            s.push_str(&format!(", last exit code {code}"));
        }
        if self.restarts > 0 {
            s.push_str(&format!(", {} restarts", self.restarts));
        }
        if !self.message.is_empty() {
            s.push_str(&format!(": {}", self.message));
        }
        s
    }
}

/// Everything `decide` needs besides the Rollout and the clock.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The pod template to run: the Rollout's own, or its `workloadRef` Deployment's. `None`
    /// when the referenced Deployment does not exist.
    pub template: Option<PodTemplateSpec>,
    /// A rollback exercise named in the Rollout's status: the faulty revision `template` now
    /// is, or why its fault is not applied.
    pub exercise: Option<ObservedExercise>,
    /// The referenced Deployment's `spec.replicas`, when `workloadRef` is used.
    pub workload_replicas: Option<i32>,
    pub replica_sets: Vec<ObservedRs>,
    /// Services the Rollout names, with whether each exists.
    pub services: BTreeMap<String, bool>,
    /// Each analysis the Rollout declares: the AnalysisRun its templates make, or why they
    /// cannot make one.
    pub analysis: BTreeMap<AnalysisKey, Result<AnalysisRunSpec, String>>,
    /// The AnalysisRuns the Rollout owns.
    pub runs: Vec<ObservedRun>,
    /// The Rollout's pods.
    pub pods: Vec<ObservedPod>,
    /// Each object the traffic router names, by the Rollout field that names it: whether it
    /// has everything the Rollout needs (`Err` says what is missing).
    pub traffic: BTreeMap<String, Result<(), String>>,
}

/// A rollback exercise in force (`status.exercise`), as observe found it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedExercise {
    /// The faulty revision: `template` is the stable template with the fault applied.
    pub revision: Option<String>,
    /// Why the fault is not applied (`template` is then the Rollout's own).
    pub refused: Option<String>,
}

/// One pod of the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    /// Its pod-template-hash label.
    pub hash: String,
    pub created: Option<Timestamp>,
    /// Since when it has been Ready (none while it is not).
    pub ready_since: Option<Timestamp>,
    /// It is being deleted.
    pub deleting: bool,
}

/// An AnalysisRun owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRun {
    pub name: String,
    /// The revision it judges (its `rollouts-pod-template-hash` label).
    pub hash: String,
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    /// `spec.terminate` is set: Sluice no longer acts on its verdict.
    pub terminated: bool,
    /// Still taking measurements (not final, or final only through a provider outage).
    pub measuring: bool,
    /// The metric behind a Failed, Error or Inconclusive verdict: its last value and the
    /// condition it was judged by (for notifications).
    pub decided_by: Option<crate::api::rollout::NotifiedAnalysis>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::cache::fake;
    use std::time::{Duration, Instant};

    /// Not a test: prints what the cache reads of one reconcile cost with 10,000 Rollouts
    /// cached (`cargo test --lib observe_cost -- --ignored --nocapture`, best in release).
    #[tokio::test]
    #[ignore]
    async fn observe_cost_at_10000_rollouts() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
                })
                .unwrap_or_default()
        };
        println!("RSS before filling the caches: {}", rss());
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        let started = Instant::now();
        fake::fill(&mut feeds, 100, 100);
        println!("RSS after: {}", rss());
        println!(
            "filled: {} Rollouts, {} ReplicaSets, {} pods, {} Services in {:?}",
            caches.rollouts.state().len(),
            caches.replica_sets.state().len(),
            caches.pods.state().len(),
            caches.services.state().len(),
            started.elapsed()
        );
        let client = fake::offline_client();
        let sources = Sources {
            caches: &caches,
            client: &client,
            restart_threshold: 3,
        };
        let writes =
            crate::runtime::writes::WriteCounter::new(Arc::new(crate::telemetry::Metrics::new()));
        let rounds = 50u32;
        let (mut observing, mut giving_back) = (Duration::ZERO, Duration::ZERO);
        for i in 0..rounds {
            let key = ObjectRef::new(&format!("r{i}")).within(&format!("ns{i}"));
            let ro = caches.rollouts.get(&key).expect("cached");
            let parsed = ro.to_parsed();
            let ro = parsed.ok().expect("reads");
            let t = Instant::now();
            let world = observe(ro, &sources).await.expect("observe");
            observing += t.elapsed();
            assert_eq!(world.pods.len(), 4);
            assert_eq!(world.replica_sets.len(), 2);
            assert_eq!(world.observed.runs.len(), 1);
            let hashes = world
                .replica_sets
                .iter()
                .filter_map(|rs| {
                    rs.labels()
                        .get(crate::api::constants::LABEL_POD_TEMPLATE_HASH)
                        .cloned()
                })
                .collect();
            let t = Instant::now();
            crate::traffic::kube::give_back_left_behind(&caches, &client, ro, &hashes, &writes)
                .await
                .expect("give back");
            giving_back += t.elapsed();
        }
        assert_eq!(writes.get(), 0);
        let (o, g) = (observing / rounds, giving_back / rounds);
        println!("per reconcile: observe {o:?}, give back {g:?}");
        println!(
            "a full pass of 10,000 Rollouts, these two steps alone: {:?}",
            (o + g) * 10_000
        );
    }
}
