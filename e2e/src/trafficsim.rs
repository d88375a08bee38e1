//! The traffic simulator: a steady request load to an application, routed the way real
//! infrastructure would route it, answered according to the version of the pod it lands on,
//! and counted in Istio's standard metrics.
//!
//! Routing follows what the API server says, read through watches (reflectors) of the
//! namespace's EndpointSlices and Pods and of the router's objects:
//!
//! - [`Routing::Service`]: as kube-proxy does, every request goes to one of the Service's
//!   ready endpoints, uniformly.
//! - [`Routing::VirtualService`]: as Envoy does, a request follows the weights of the
//!   VirtualService's http route, then goes to a ready endpoint of the chosen destination's
//!   Service; a `subset` destination keeps the endpoints whose pods carry the labels of that
//!   subset in the DestinationRule for the destination's host.
//! - [`Routing::HttpRoute`]: as a Gateway does, a request follows the weights of the
//!   HTTPRoute's rule (`weight` defaults to 1), then goes to a ready endpoint of the Service.
//!
//! The route or rule taken is the one a real router takes for the simulated request, a plain
//! `GET /` without headers or query parameters: the first whose matches accept it (no
//! matches, a path or uri prefix `/`, exact `/`, method `GET`; any header or query match
//! rejects it), so header routes (such as Sluice's managed routes) and path-specific routes
//! (`/admin`) get none of this load. A [`Routing::VirtualService`] with a route name takes
//! that route whatever its matches.
//!
//! Only endpoints whose `conditions.ready` is true count; an endpoint maps to its pod through
//! its `targetRef`. Each pod answers according to its [`FaultProfile`], read from its
//! annotations [`ERROR_RATE_ANNOTATION`] and [`LATENCY_ANNOTATION`] (normally set in the pod
//! template; changing them on a running pod takes effect at once). A request answers 500 with
//! probability `error_rate`, else 200, after `latency_ms` with ±10 % jitter. With no ready
//! endpoint the answer is 503 (Envoy's "no healthy upstream", `response_flags="UH"`) with
//! `destination_workload="unknown"`; with no route at all (the router object is missing, no
//! rule matches, every weight is 0) it is 503 with `response_flags="NR"` and
//! `destination_service_name="unknown"`. Destinations in other namespaces are not watched and
//! have no endpoints.
//!
//! Nothing is ever sent to a pod or Service IP: routes are decided in-process, requests are
//! simulated in batches every 100 ms (the requests owed since the last batch at `rps`, with
//! fractional remainders carried over), and the only socket is the simulator's own `/metrics`
//! endpoint on `127.0.0.1`. Choices come from a small deterministic generator seeded from the
//! routing, so a run over the same cluster state makes the same choices.
//!
//! A noisy day: [`TrafficSim::set_noise`] adds a time-varying error rate shared by every pod,
//! with the same phase for all of them (a canary and its stable see the same noise). With a
//! [`Noise`] `{ base, amplitude, period }` set, every request that reaches a pod fails with
//! probability `error_rate + base + amplitude * (1 + sin(2π t / period)) / 2` (clamped to
//! `[0, 1]`), `t` counting from the moment the noise was set ([`Noise::extra_at`],
//! [`FaultProfile::noisy_error_rate`]). The noise takes no draws of its own, so the sequence
//! of choices for a seed stays the same with or without it.
//!
//! Metrics, as Istio's sidecars report them (`reporter="destination"`):
//! `istio_requests_total` and `istio_request_duration_milliseconds` (buckets 1 … 5000), with
//! the labels `source_workload`, `source_workload_namespace`, `destination_workload` (the
//! pod's ReplicaSet without its `-<hash>` suffix, i.e. the Deployment's or Rollout's name),
//! `destination_workload_namespace`, `destination_service` (the Service's cluster FQDN),
//! `destination_service_name`, `destination_service_namespace`,
//! `destination_canonical_service`, `destination_canonical_revision` (the pod's
//! `rollouts-pod-template-hash` label, or `latest`), `request_protocol`, `response_code` and
//! `response_flags`. Prometheus gets OpenMetrics when it asks for it, anyone else the classic
//! text format.

#[path = "../../src/telemetry/classic.rs"]
mod classic;
use classic::classic_text;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Pod annotation: the fraction of requests the pod answers with 500, e.g. `"0.2"`.
pub const ERROR_RATE_ANNOTATION: &str = "sim.sluice.dev/error-rate";
/// Pod annotation: the pod's response time in milliseconds, e.g. `"40"`.
pub const LATENCY_ANNOTATION: &str = "sim.sluice.dev/latency-ms";
/// Response time of a pod without [`LATENCY_ANNOTATION`].
pub const DEFAULT_LATENCY_MS: f64 = 10.0;
/// Bucket bounds of `istio_request_duration_milliseconds`.
pub const LATENCY_BUCKETS: [f64; 11] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The pod label that names a Rollout's revision.
const REVISION_LABEL: &str = "rollouts-pod-template-hash";
/// The label a Deployment's ReplicaSets and pods carry.
const DEPLOYMENT_HASH_LABEL: &str = "pod-template-hash";
/// Labels Istio takes the canonical service from, in order.
const CANONICAL_SERVICE_LABELS: [&str; 3] = [
    "service.istio.io/canonical-name",
    "app.kubernetes.io/name",
    "app",
];
/// `source_workload` of every request.
const SOURCE_WORKLOAD: &str = "trafficsim";
/// What Istio reports for a label it cannot know.
const UNKNOWN: &str = "unknown";
/// How often a batch of requests is simulated.
const TICK: Duration = Duration::from_millis(100);
/// At most this much time is made up for in one batch after a stall.
const MAX_CATCH_UP: Duration = Duration::from_secs(5);
/// How long `start` waits for the first list of each watched kind.
const LIST_LIMIT: Duration = Duration::from_secs(30);
/// How long `stop` waits for the metrics server to close its connections.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
/// Jitter of a response time: ± this fraction.
const JITTER: f64 = 0.1;

/// How a pod answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultProfile {
    /// Fraction of requests answered 500, in `[0, 1]`.
    pub error_rate: f64,
    /// Mean response time in milliseconds.
    pub latency_ms: f64,
}

impl Default for FaultProfile {
    fn default() -> Self {
        FaultProfile {
            error_rate: 0.0,
            latency_ms: DEFAULT_LATENCY_MS,
        }
    }
}

impl FaultProfile {
    /// The probability that a request fails on a pod of this profile with `extra` added by
    /// the simulator's [`Noise`]: `error_rate + extra`, clamped to `[0, 1]`. Pods with the
    /// same profile fail at the same rate at the same moment.
    pub fn noisy_error_rate(&self, extra: f64) -> f64 {
        let rate = self.error_rate + extra;
        if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        }
    }

    /// The profile the annotations give; a missing or unreadable value keeps its default, an
    /// error rate outside `[0, 1]` is clamped, a negative latency counts as 0.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let number = |key: &str| {
            annotations
                .get(key)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let default = FaultProfile::default();
        FaultProfile {
            error_rate: number(ERROR_RATE_ANNOTATION)
                .map_or(default.error_rate, |v| v.clamp(0.0, 1.0)),
            latency_ms: number(LATENCY_ANNOTATION).map_or(default.latency_ms, |v| v.max(0.0)),
        }
    }
}

/// A simulator-wide extra error rate that varies with time, the same for every pod: at `t`
/// after it was set, `base + amplitude * (1 + sin(2π t / period)) / 2`, i.e. from `base` (at
/// `t = 3/4 period`) to `base + amplitude` (at `t = 1/4 period`), starting half-way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// The extra error rate at the wave's trough.
    pub base: f64,
    /// How much higher it is at the wave's crest.
    pub amplitude: f64,
    /// The wave's period; more than zero.
    pub period: Duration,
}

impl Noise {
    /// The extra error probability `elapsed` after the noise was set (not clamped; the pod's
    /// rate plus this is, by [`FaultProfile::noisy_error_rate`]).
    pub fn extra_at(&self, elapsed: Duration) -> f64 {
        let period = self.period.as_secs_f64();
        // A whole number of periods changes nothing; dropping them keeps `sin`'s argument
        // small over long runs.
        let phase = (elapsed.as_secs_f64() % period) / period;
        self.base + self.amplitude * (1.0 + (std::f64::consts::TAU * phase).sin()) / 2.0
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.base.is_finite() && self.amplitude.is_finite(),
            "the noise's base and amplitude must be finite numbers, not {} and {}",
            self.base,
            self.amplitude
        );
        ensure!(
            !self.period.is_zero(),
            "the noise's period must be longer than zero"
        );
        Ok(())
    }
}

/// Where the simulated requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    /// kube-proxy: every request to `service` goes to one of its ready endpoints, uniformly.
    Service { service: String },
    /// Envoy: requests follow the weights of VirtualService `name`'s http route that a plain
    /// `GET /` takes (or the route named `route`), then a ready endpoint of the chosen
    /// destination's Service (the host may be `svc`, `svc.ns` or `svc.ns.svc.cluster.local`);
    /// subset destinations resolve through the DestinationRule of that host.
    VirtualService { name: String, route: Option<String> },
    /// A Gateway: requests follow the weights of HTTPRoute `name`'s rule that a plain `GET /`
    /// takes.
    HttpRoute { name: String },
}

/// One row of [`TrafficSim::stats`]: (destination_service_name, destination_workload,
/// destination_canonical_revision, response_code).
pub type StatKey = (String, String, String, u16);

/// A running traffic simulator; [`stop`](TrafficSim::stop) it, or drop it, to stop it.
pub struct TrafficSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
    /// Sending (or dropping) it shuts the metrics server down and closes its connections.
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TrafficSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TrafficSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Dropping `shutdown` (with the rest of `self`) shuts the metrics server down
        // gracefully: it stops listening and closes its connections, then its task ends.
    }
}

impl TrafficSim {
    /// Starts sending `rps` requests per second in `namespace` as `routing` says, and serves
    /// `/metrics` on `127.0.0.1:0`. Returns once the watched objects have been listed.
    pub async fn start(
        client: Client,
        namespace: &str,
        routing: Routing,
        rps: f64,
    ) -> anyhow::Result<TrafficSim> {
        ensure!(
            rps.is_finite() && rps >= 0.0,
            "the request rate must be a finite number >= 0, not {rps}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the traffic simulator's metrics endpoint to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the metrics endpoint's address")?;
        let shared = Arc::new(Shared::new());
        let mut sim = TrafficSim {
            addr,
            shared: Arc::clone(&shared),
            tasks: Vec::new(),
            server: None,
            shutdown: None,
        };

        // Watches; on an error below, dropping `sim` aborts those already started.
        let slices = watch(
            &mut sim.tasks,
            Api::<EndpointSlice>::namespaced(client.clone(), namespace),
            (),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        );
        let pods = watch(
            &mut sim.tasks,
            Api::<Pod>::namespaced(client.clone(), namespace),
            (),
            watcher::Config::default(),
        );
        let by_name =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (router, rules) = match &routing {
            Routing::Service { .. } => (None, None),
            Routing::VirtualService { name, .. } => {
                let vs = dynamic_watch(
                    &mut sim.tasks,
                    &client,
                    namespace,
                    ISTIO,
                    "VirtualService",
                    by_name(name),
                );
                let dr = dynamic_watch(
                    &mut sim.tasks,
                    &client,
                    namespace,
                    ISTIO,
                    "DestinationRule",
                    watcher::Config::default(),
                );
                (Some(vs), Some(dr))
            }
            Routing::HttpRoute { name } => {
                let route = dynamic_watch(
                    &mut sim.tasks,
                    &client,
                    namespace,
                    GATEWAY,
                    "HTTPRoute",
                    by_name(name),
                );
                (Some(route), None)
            }
        };
        let world = World {
            namespace: namespace.to_string(),
            routing: routing.clone(),
            slices,
            pods,
            router,
            rules,
        };
        world.wait_listed().await?;

        let app = Router::new().route(
            "/metrics",
            get({
                let shared = Arc::clone(&shared);
                move |headers: HeaderMap| {
                    let shared = Arc::clone(&shared);
                    async move { shared.serve(&headers) }
                }
            }),
        );
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        sim.shutdown = Some(shutdown_tx);
        sim.server = Some(tokio::spawn(async move {
            let shutdown = async move {
                // Resolves when the sender is used or dropped.
                let _ = shutdown_rx.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%addr, error = %err, "traffic simulator metrics endpoint stopped");
            }
        }));
        let seed = fnv1a(format!("{routing:?}").as_bytes());
        sim.tasks
            .push(tokio::spawn(run_load(world, shared, rps, Rng::new(seed))));
        tracing::debug!(%addr, namespace, ?routing, rps, "traffic simulator started");
        Ok(sim)
    }

    /// `127.0.0.1:PORT` of the `/metrics` endpoint, as a Prometheus scrape target.
    pub fn metrics_target(&self) -> String {
        self.addr.to_string()
    }

    /// The requests simulated so far: (service, workload, version, code) and their count,
    /// sorted.
    pub fn stats(&self) -> Vec<(StatKey, u64)> {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Sets (or with `None` clears) the extra error rate every pod gets on top of its own;
    /// its time `t` starts now. Takes effect from the next batch of requests (100 ms).
    pub fn set_noise(&self, noise: Option<Noise>) -> anyhow::Result<()> {
        if let Some(noise) = &noise {
            noise.check()?;
        }
        *self
            .shared
            .noise
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = noise.map(|n| (n, Instant::now()));
        Ok(())
    }

    /// Stops the load and the watches, and closes the metrics endpoint.
    pub async fn stop(mut self) {
        let tasks: Vec<_> = self.tasks.drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_LIMIT, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

// ----- Watching -----

const ISTIO: &str = "networking.istio.io";
const GATEWAY: &str = "gateway.networking.k8s.io";

/// Starts a reflector of `api` and returns its store.
fn watch<K>(
    tasks: &mut Vec<JoinHandle<()>>,
    api: Api<K>,
    dyntype: K::DynamicType,
    config: watcher::Config,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype.clone());
    let store = writer.as_reader();
    let kind = K::kind(&dyntype).into_owned();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(err) = event {
                tracing::debug!(%kind, error = %err, "traffic simulator: watch failed; retrying");
            }
        }
    }));
    store
}

fn dynamic_watch(
    tasks: &mut Vec<JoinHandle<()>>,
    client: &Client,
    namespace: &str,
    group: &str,
    kind: &str,
    config: watcher::Config,
) -> Store<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
    watch(tasks, api, ar, config)
}

/// What the simulator knows of the cluster.
struct World {
    namespace: String,
    routing: Routing,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    /// The VirtualService or HTTPRoute.
    router: Option<Store<DynamicObject>>,
    /// The DestinationRules.
    rules: Option<Store<DynamicObject>>,
}

impl World {
    async fn wait_listed(&self) -> anyhow::Result<()> {
        async fn listed<K>(store: &Store<K>, what: &str) -> anyhow::Result<()>
        where
            K: kube::runtime::reflector::Lookup + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            tokio::time::timeout(LIST_LIMIT, store.wait_until_ready())
                .await
                .with_context(|| {
                    format!(
                        "{what} not listed within {} s (are the CRDs installed, may the client list them?)",
                        LIST_LIMIT.as_secs()
                    )
                })?
                .with_context(|| format!("watching {what}"))
        }
        listed(&self.slices, "EndpointSlices").await?;
        listed(&self.pods, "Pods").await?;
        if let Some(router) = &self.router {
            let what = match self.routing {
                Routing::HttpRoute { .. } => "HTTPRoutes",
                _ => "VirtualServices",
            };
            listed(router, what).await?;
        }
        if let Some(rules) = &self.rules {
            listed(rules, "DestinationRules").await?;
        }
        Ok(())
    }

    /// Where requests go now: each destination with its weight and ready targets; empty when
    /// there is no route.
    fn plan(&self) -> Vec<Resolved> {
        let destinations = match &self.routing {
            Routing::Service { service } => {
                let (service, namespace) = parse_host(service, &self.namespace);
                vec![Destination {
                    service,
                    namespace,
                    subset: None,
                    weight: 1,
                }]
            }
            Routing::VirtualService { name, route } => self
                .router_spec(name)
                .and_then(|spec| vs_destinations(&spec, route.as_deref(), &self.namespace))
                .unwrap_or_default(),
            Routing::HttpRoute { name } => self
                .router_spec(name)
                .and_then(|spec| httproute_destinations(&spec, &self.namespace))
                .unwrap_or_default(),
        };
        let rules: Vec<Value> = self
            .rules
            .as_ref()
            .map(|s| {
                s.state()
                    .iter()
                    .filter_map(|o| o.data.get("spec").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let slices = self.slices.state();
        destinations
            .into_iter()
            .filter(|d| d.weight > 0)
            .map(|d| {
                let targets = if d.namespace != self.namespace {
                    Vec::new()
                } else {
                    let subset = match &d.subset {
                        None => Some(None),
                        Some(name) => {
                            subset_labels(&rules, &d.service, &d.namespace, name, &self.namespace)
                                .map(Some)
                        }
                    };
                    match subset {
                        // A subset no DestinationRule defines: no upstream.
                        None => Vec::new(),
                        Some(labels) => {
                            ready_targets(&slices, &d.service, labels.as_ref(), |name| {
                                self.pods.get(&ObjectRef::new(name).within(&self.namespace))
                            })
                        }
                    }
                };
                Resolved {
                    weight: d.weight,
                    service: d.service,
                    namespace: d.namespace,
                    targets,
                }
            })
            .collect()
    }

    fn router_spec(&self, name: &str) -> Option<Value> {
        let store = self.router.as_ref()?;
        let obj = store.get(
            &ObjectRef::new_with(name, store_dyntype(&self.routing)).within(&self.namespace),
        )?;
        obj.data.get("spec").cloned()
    }
}

fn store_dyntype(routing: &Routing) -> ApiResource {
    let (group, kind) = match routing {
        Routing::HttpRoute { .. } => (GATEWAY, "HTTPRoute"),
        _ => (ISTIO, "VirtualService"),
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind))
}

// ----- Routing decisions (pure) -----

/// A destination of a route, before its endpoints are known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Destination {
    service: String,
    namespace: String,
    subset: Option<String>,
    weight: u64,
}

/// A destination with its ready targets.
#[derive(Clone, Debug)]
struct Resolved {
    weight: u64,
    service: String,
    namespace: String,
    targets: Vec<Target>,
}

/// A ready endpoint's pod, as the metrics name it.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    workload: String,
    namespace: String,
    canonical_service: String,
    revision: String,
    profile: FaultProfile,
}

/// (service, namespace) of a host `svc`, `svc.ns`, `svc.ns.svc` or `svc.ns.svc.cluster.local`.
fn parse_host(host: &str, namespace: &str) -> (String, String) {
    let mut parts = host.split('.');
    let service = parts.next().unwrap_or_default().to_string();
    let ns = parts
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace)
        .to_string();
    (service, ns)
}

/// Whether an Istio StringMatch accepts `value`.
fn string_match(m: &Value, value: &str) -> bool {
    if let Some(exact) = m.get("exact").and_then(Value::as_str) {
        return exact == value;
    }
    if let Some(prefix) = m.get("prefix").and_then(Value::as_str) {
        return value.starts_with(prefix);
    }
    if let Some(regex) = m.get("regex").and_then(Value::as_str) {
        return regex_accepts(regex, value);
    }
    true
}

/// The regular expressions recognised as accepting `value` (there is no regex engine here).
fn regex_accepts(regex: &str, value: &str) -> bool {
    let r = regex.trim_start_matches('^').trim_end_matches('$');
    r == ".*" || r == value || r == format!("{value}.*")
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Whether an Istio HTTPRoute (VirtualService `http` entry) takes a plain `GET /`.
fn vs_route_takes_plain_get(route: &Value) -> bool {
    let Some(matches) = route.get("match").and_then(Value::as_array) else {
        return true;
    };
    if matches.is_empty() {
        return true;
    }
    matches.iter().any(|m| {
        !non_empty(m.get("headers"))
            && !non_empty(m.get("queryParams"))
            && m.get("uri").is_none_or(|u| string_match(u, "/"))
            && m.get("method").is_none_or(|u| string_match(u, "GET"))
    })
}

/// The weighted destinations of VirtualService `spec` for a plain `GET /` (or of the route
/// named `route`); `None` when no route applies.
fn vs_destinations(spec: &Value, route: Option<&str>, namespace: &str) -> Option<Vec<Destination>> {
    let http = spec.get("http")?.as_array()?;
    let chosen = match route {
        Some(name) => http
            .iter()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(name))?,
        None => http.iter().find(|r| vs_route_takes_plain_get(r))?,
    };
    let dests = chosen.get("route")?.as_array()?;
    let single = dests.len() == 1;
    Some(
        dests
            .iter()
            .filter_map(|d| {
                let dest = d.get("destination")?;
                let (service, ns) = parse_host(dest.get("host")?.as_str()?, namespace);
                let weight = match d.get("weight").and_then(Value::as_u64) {
                    Some(w) => w,
                    None if single => 100,
                    None => 0,
                };
                Some(Destination {
                    service,
                    namespace: ns,
                    subset: dest.get("subset").and_then(Value::as_str).map(String::from),
                    weight,
                })
            })
            .collect(),
    )
}

/// Whether a Gateway API HTTPRoute rule takes a plain `GET /`.
fn rule_takes_plain_get(rule: &Value) -> bool {
    let Some(matches) = rule.get("matches").and_then(Value::as_array) else {
        return true;
    };
    if matches.is_empty() {
        return true;
    }
    matches.iter().any(|m| {
        let path_ok = m.get("path").is_none_or(|p| {
            let value = p.get("value").and_then(Value::as_str).unwrap_or("/");
            match p
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix")
            {
                "PathPrefix" => value.trim_end_matches('/').is_empty(),
                "Exact" => value == "/",
                "RegularExpression" => regex_accepts(value, "/"),
                _ => false,
            }
        });
        let method_ok = m
            .get("method")
            .and_then(Value::as_str)
            .is_none_or(|method| method == "GET");
        path_ok && method_ok && !non_empty(m.get("headers")) && !non_empty(m.get("queryParams"))
    })
}

/// The weighted backends of HTTPRoute `spec` for a plain `GET /`; `None` when no rule applies.
fn httproute_destinations(spec: &Value, namespace: &str) -> Option<Vec<Destination>> {
    let rules = spec.get("rules")?.as_array()?;
    let rule = rules.iter().find(|r| rule_takes_plain_get(r))?;
    let refs = rule.get("backendRefs")?.as_array()?;
    Some(
        refs.iter()
            .filter_map(|b| {
                let name = b.get("name")?.as_str()?.to_string();
                let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
                let group = b.get("group").and_then(Value::as_str).unwrap_or("");
                let ns = b
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace)
                    .to_string();
                let weight = b.get("weight").and_then(Value::as_u64).unwrap_or(1);
                Some(Destination {
                    service: name,
                    // A backend that is not a Service has no endpoints here.
                    namespace: if kind == "Service" && group.is_empty() {
                        ns
                    } else {
                        String::new()
                    },
                    subset: None,
                    weight,
                })
            })
            .collect(),
    )
}

/// The labels of subset `subset` in the DestinationRule (among the `rules` specs) whose host is
/// `service` in `namespace`.
fn subset_labels(
    rules: &[Value],
    service: &str,
    namespace: &str,
    subset: &str,
    own_namespace: &str,
) -> Option<BTreeMap<String, String>> {
    rules
        .iter()
        .filter(|spec| {
            spec.get("host")
                .and_then(Value::as_str)
                .is_some_and(|h| parse_host(h, own_namespace) == (service.into(), namespace.into()))
        })
        .find_map(|spec| {
            spec.get("subsets")?
                .as_array()?
                .iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(subset))
        })
        .map(|s| {
            s.get("labels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        })
}

/// The ready endpoints of `service` (among `slices`) whose pods carry `labels`, as targets.
fn ready_targets(
    slices: &[Arc<EndpointSlice>],
    service: &str,
    labels: Option<&BTreeMap<String, String>>,
    pod: impl Fn(&str) -> Option<Arc<Pod>>,
) -> Vec<Target> {
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    let of_service = slices.iter().filter(|s| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|n| n == service)
    });
    for slice in of_service {
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            if !ready {
                continue;
            }
            let pod_name = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            match pod_name {
                Some(name) => {
                    // Dual-stack Services list a pod once per address family.
                    if !seen.insert(name.clone()) {
                        continue;
                    }
                    let Some(pod) = pod(&name) else { continue };
                    if let Some(want) = labels {
                        let have = pod.labels();
                        if !want.iter().all(|(k, v)| have.get(k) == Some(v)) {
                            continue;
                        }
                    }
                    targets.push(target_of(&pod));
                }
                None if labels.is_none() => {
                    if !seen.insert(endpoint.addresses.join(",")) {
                        continue;
                    }
                    targets.push(Target {
                        workload: UNKNOWN.into(),
                        namespace: slice.namespace().unwrap_or_default(),
                        canonical_service: UNKNOWN.into(),
                        revision: "latest".into(),
                        profile: FaultProfile::default(),
                    });
                }
                None => {}
            }
        }
    }
    targets
}

fn target_of(pod: &Pod) -> Target {
    let labels = pod.labels();
    let workload = workload_of(pod);
    Target {
        canonical_service: CANONICAL_SERVICE_LABELS
            .iter()
            .find_map(|l| labels.get(*l).cloned())
            .unwrap_or_else(|| workload.clone()),
        revision: labels
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_else(|| "latest".into()),
        namespace: pod.namespace().unwrap_or_default(),
        profile: FaultProfile::from_annotations(pod.annotations()),
        workload,
    }
}

/// The pod's workload: its ReplicaSet's name without the `-<hash>` suffix (the Deployment's
/// or Rollout's name), another controller's name, or the pod's own name.
fn workload_of(pod: &Pod) -> String {
    let owners = pod.owner_references();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first());
    let Some(owner) = owner else {
        return pod.name_any();
    };
    if owner.kind != "ReplicaSet" {
        return owner.name.clone();
    }
    let labels = pod.labels();
    for hash_label in [REVISION_LABEL, DEPLOYMENT_HASH_LABEL] {
        if let Some(stripped) = labels
            .get(hash_label)
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|s| s.strip_suffix('-'))
        {
            return stripped.to_string();
        }
    }
    owner
        .name
        .rsplit_once('-')
        .map_or_else(|| owner.name.clone(), |(base, _)| base.to_string())
}

// ----- The load -----

/// One simulated request's outcome, as its labels say.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Outcome {
    service: String,
    service_namespace: String,
    workload: String,
    workload_namespace: String,
    canonical_service: String,
    revision: String,
    code: u16,
    flags: &'static str,
}

/// Simulates `n` requests over `plan`, each pod failing at its own rate plus `extra` (the
/// noise); returns each outcome with the response times.
fn simulate(
    plan: &[Resolved],
    n: u64,
    rng: &mut Rng,
    namespace: &str,
    extra: f64,
) -> HashMap<Outcome, Vec<f64>> {
    let mut out: HashMap<Outcome, Vec<f64>> = HashMap::new();
    let total: u64 = plan.iter().map(|d| d.weight).sum();
    for _ in 0..n {
        let (outcome, latency) = if total == 0 {
            (
                Outcome {
                    service: UNKNOWN.into(),
                    service_namespace: namespace.into(),
                    workload: UNKNOWN.into(),
                    workload_namespace: UNKNOWN.into(),
                    canonical_service: UNKNOWN.into(),
                    revision: UNKNOWN.into(),
                    code: 503,
                    flags: "NR",
                },
                0.0,
            )
        } else {
            let mut pick = rng.below(total);
            let chosen = plan.iter().find(|d| {
                if pick < d.weight {
                    true
                } else {
                    pick -= d.weight;
                    false
                }
            });
            // `pick` < the sum of the weights, so some destination takes it.
            let Some(dest) = chosen.or(plan.last()) else {
                continue;
            };
            if dest.targets.is_empty() {
                (
                    Outcome {
                        service: dest.service.clone(),
                        service_namespace: dest.namespace.clone(),
                        workload: UNKNOWN.into(),
                        workload_namespace: UNKNOWN.into(),
                        canonical_service: UNKNOWN.into(),
                        revision: UNKNOWN.into(),
                        code: 503,
                        flags: "UH",
                    },
                    0.0,
                )
            } else {
                let idx = usize::try_from(rng.below(dest.targets.len() as u64)).unwrap_or(0);
                let t = &dest.targets[idx];
                let failed = rng.unit() < t.profile.noisy_error_rate(extra);
                let jitter = 1.0 + JITTER * (2.0 * rng.unit() - 1.0);
                (
                    Outcome {
                        service: dest.service.clone(),
                        service_namespace: dest.namespace.clone(),
                        workload: t.workload.clone(),
                        workload_namespace: t.namespace.clone(),
                        canonical_service: t.canonical_service.clone(),
                        revision: t.revision.clone(),
                        code: if failed { 500 } else { 200 },
                        flags: "-",
                    },
                    (t.profile.latency_ms * jitter).max(0.0),
                )
            }
        };
        out.entry(outcome).or_default().push(latency);
    }
    out
}

async fn run_load(world: World, shared: Arc<Shared>, rps: f64, mut rng: Rng) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut owed = 0.0_f64;
    loop {
        interval.tick().await;
        let now = Instant::now();
        owed += rps * now.duration_since(last).min(MAX_CATCH_UP).as_secs_f64();
        last = now;
        let whole = owed.floor();
        owed -= whole;
        if whole < 1.0 {
            continue;
        }
        let plan = world.plan();
        let extra = shared.noise_at(now);
        // `whole` is a small non-negative whole number here.
        let outcomes = simulate(&plan, whole as u64, &mut rng, &world.namespace, extra);
        shared.record(&world.namespace, outcomes);
    }
}

// ----- Metrics -----

/// The labels of Istio's standard metrics, as the simulator sets them (and
/// [`crate::history`] writes them for past traffic).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IstioLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_service: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub request_protocol: String,
    pub response_code: String,
    pub response_flags: String,
}

impl IstioLabels {
    /// The labels of a simulated request answered `code` by a pod of `workload` (its
    /// canonical service `canonical_service`) whose revision (pod-template hash) is
    /// `revision`, reached through Service `service`, everything in `namespace`.
    pub fn answered(
        namespace: &str,
        service: &str,
        workload: &str,
        canonical_service: &str,
        revision: &str,
        code: u16,
    ) -> IstioLabels {
        let outcome = Outcome {
            service: service.into(),
            service_namespace: namespace.into(),
            workload: workload.into(),
            workload_namespace: namespace.into(),
            canonical_service: canonical_service.into(),
            revision: revision.into(),
            code,
            flags: "-",
        };
        IstioLabels::of(namespace, &outcome)
    }

    /// The same labels with `response_code` `code`.
    pub fn with_code(&self, code: u16) -> IstioLabels {
        IstioLabels {
            response_code: code.to_string(),
            ..self.clone()
        }
    }

    /// (name, value) of every label, in the order the simulator's `/metrics` writes them.
    pub fn pairs(&self) -> [(&'static str, &str); 13] {
        [
            ("reporter", &self.reporter),
            ("source_workload", &self.source_workload),
            ("source_workload_namespace", &self.source_workload_namespace),
            ("destination_workload", &self.destination_workload),
            (
                "destination_workload_namespace",
                &self.destination_workload_namespace,
            ),
            ("destination_service", &self.destination_service),
            ("destination_service_name", &self.destination_service_name),
            (
                "destination_service_namespace",
                &self.destination_service_namespace,
            ),
            (
                "destination_canonical_service",
                &self.destination_canonical_service,
            ),
            (
                "destination_canonical_revision",
                &self.destination_canonical_revision,
            ),
            ("request_protocol", &self.request_protocol),
            ("response_code", &self.response_code),
            ("response_flags", &self.response_flags),
        ]
    }

    /// The labels of outcome `o` of a request sent from `namespace`.
    fn of(namespace: &str, o: &Outcome) -> IstioLabels {
        IstioLabels {
            reporter: "destination".into(),
            source_workload: SOURCE_WORKLOAD.into(),
            source_workload_namespace: namespace.into(),
            destination_workload: o.workload.clone(),
            destination_workload_namespace: o.workload_namespace.clone(),
            destination_service: if o.service == UNKNOWN {
                UNKNOWN.into()
            } else {
                format!("{}.{}.svc.cluster.local", o.service, o.service_namespace)
            },
            destination_service_name: o.service.clone(),
            destination_service_namespace: o.service_namespace.clone(),
            destination_canonical_service: o.canonical_service.clone(),
            destination_canonical_revision: o.revision.clone(),
            request_protocol: "http".into(),
            response_code: o.code.to_string(),
            response_flags: o.flags.into(),
        }
    }
}

/// The `le` label of the bucket bounded by `bound`, as the simulator's `/metrics` writes it
/// (`"5.0"`, `"+Inf"`), so that queries naming a bucket match live and past series alike.
pub fn bucket_label(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".into()
    } else if bound.fract() == 0.0 && bound.abs() < 1e16 {
        format!("{bound:.1}")
    } else {
        format!("{bound}")
    }
}

fn new_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

struct Shared {
    registry: Registry,
    requests: Family<IstioLabels, Counter>,
    durations: Family<IstioLabels, Histogram, fn() -> Histogram>,
    stats: Mutex<BTreeMap<StatKey, u64>>,
    /// The noise and when it was set.
    noise: Mutex<Option<(Noise, Instant)>>,
}

impl Shared {
    fn new() -> Self {
        let requests = Family::<IstioLabels, Counter>::default();
        let durations = Family::<IstioLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            new_histogram,
        );
        let mut registry = Registry::default();
        registry.register(
            "istio_requests",
            "Requests, as Istio's proxies count them (simulated)",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request durations in milliseconds, as Istio's proxies measure them (simulated)",
            durations.clone(),
        );
        Shared {
            registry,
            requests,
            durations,
            stats: Mutex::new(BTreeMap::new()),
            noise: Mutex::new(None),
        }
    }

    /// The noise's extra error rate at `now` (0 without noise).
    fn noise_at(&self, now: Instant) -> f64 {
        self.noise
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(0.0, |(noise, since)| {
                noise.extra_at(now.saturating_duration_since(since))
            })
    }

    fn record(&self, namespace: &str, outcomes: HashMap<Outcome, Vec<f64>>) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        for (o, latencies) in outcomes {
            let labels = IstioLabels::of(namespace, &o);
            let count = latencies.len() as u64;
            self.requests.get_or_create(&labels).inc_by(count);
            let histogram = self.durations.get_or_create(&labels);
            for l in latencies {
                histogram.observe(l);
            }
            *stats
                .entry((o.service, o.workload, o.revision, o.code))
                .or_default() += count;
        }
    }

    /// OpenMetrics text of every metric.
    fn openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// `/metrics`: OpenMetrics for clients that ask for it (Prometheus), the classic text
    /// format for the rest.
    fn serve(&self, headers: &HeaderMap) -> ([(header::HeaderName, &'static str); 1], String) {
        let openmetrics = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        if openmetrics {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                self.openmetrics(),
            )
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                classic_text(&self.openmetrics()),
            )
        }
    }
}

// ----- Randomness -----

/// SplitMix64: small, fast, and the same sequence for the same seed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in `[0, n)`; `n` > 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rs: &str, labels: Value, annotations: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": rs, "uid": "u", "controller": true}]}
            }))
            .expect("pod"),
        )
    }

    fn slice(service: &str, endpoints: Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-x"), "namespace": "ns",
                    "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4", "endpoints": endpoints
            }))
            .expect("slice"),
        )
    }

    fn ep(ip: &str, pod: &str, ready: bool) -> Value {
        json!({"addresses": [ip], "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"}})
    }

    #[test]
    fn profiles_come_from_annotations_with_defaults() {
        let a = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            FaultProfile::from_annotations(&a(&[])),
            FaultProfile::default()
        );
        let p = FaultProfile::from_annotations(&a(&[
            (ERROR_RATE_ANNOTATION, "0.2"),
            (LATENCY_ANNOTATION, " 40 "),
        ]));
        assert_eq!((p.error_rate, p.latency_ms), (0.2, 40.0));
        let p = FaultProfile::from_annotations(&a(&[
            (ERROR_RATE_ANNOTATION, "7"),
            (LATENCY_ANNOTATION, "fast"),
        ]));
        assert_eq!((p.error_rate, p.latency_ms), (1.0, DEFAULT_LATENCY_MS));
        let p = FaultProfile::from_annotations(&a(&[(ERROR_RATE_ANNOTATION, "NaN")]));
        assert_eq!(p.error_rate, 0.0);
    }

    #[test]
    fn workloads_drop_the_replicaset_hash() {
        let p = pod(
            "web-abc12-xyz",
            "web-abc12",
            json!({REVISION_LABEL: "abc12"}),
            json!({}),
        );
        assert_eq!(workload_of(&p), "web");
        let p = pod(
            "my-app-5d9f-q",
            "my-app-5d9f",
            json!({DEPLOYMENT_HASH_LABEL: "5d9f"}),
            json!({}),
        );
        assert_eq!(workload_of(&p), "my-app");
        let p = pod("x-y-z", "shop-web-77", json!({}), json!({}));
        assert_eq!(workload_of(&p), "shop-web");
        let bare: Pod =
            serde_json::from_value(json!({"metadata": {"name": "lonely"}})).expect("pod");
        assert_eq!(workload_of(&bare), "lonely");
    }

    #[test]
    fn hosts_name_a_service_and_namespace() {
        assert_eq!(parse_host("web", "ns"), ("web".into(), "ns".into()));
        assert_eq!(
            parse_host("web.other", "ns"),
            ("web".into(), "other".into())
        );
        assert_eq!(
            parse_host("web.ns.svc.cluster.local", "x"),
            ("web".into(), "ns".into())
        );
    }

    #[test]
    fn virtualservice_routes_are_taken_as_envoy_takes_them_for_a_plain_get() {
        let spec = json!({"hosts": ["web"], "http": [
            {"name": "beta", "match": [{"headers": {"x-beta": {"exact": "yes"}}}],
             "route": [{"destination": {"host": "web-canary"}}]},
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
             "route": [{"destination": {"host": "web-stable"}}]},
            {"name": "primary", "match": [{"uri": {"prefix": "/"}, "method": {"exact": "GET"}}], "route": [
                {"destination": {"host": "web-stable.ns.svc.cluster.local"}, "weight": 80},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 20}]}]});
        let d = vs_destinations(&spec, None, "ns").expect("a route");
        assert_eq!(
            d,
            vec![
                Destination {
                    service: "web-stable".into(),
                    namespace: "ns".into(),
                    subset: None,
                    weight: 80
                },
                Destination {
                    service: "web".into(),
                    namespace: "ns".into(),
                    subset: Some("canary".into()),
                    weight: 20
                },
            ]
        );
        let d = vs_destinations(&spec, Some("admin"), "ns").expect("the named route");
        assert_eq!(d[0].weight, 100);
        assert!(vs_destinations(&spec, Some("nope"), "ns").is_none());
        let only_headers = json!({"http": [{"match": [{"headers": {"a": {"exact": "b"}}}],
            "route": [{"destination": {"host": "a"}}]}]});
        assert!(vs_destinations(&only_headers, None, "ns").is_none());
    }

    #[test]
    fn httproute_rules_are_taken_as_a_gateway_takes_them_for_a_plain_get() {
        let spec = json!({"rules": [
            {"name": "beta", "matches": [{"headers": [{"name": "x-beta", "value": "yes"}]}],
             "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
             "backendRefs": [{"name": "web", "port": 80}]},
            {"backendRefs": [{"name": "web-stable", "port": 80, "weight": 60},
                             {"name": "web-canary", "port": 80, "weight": 40},
                             {"name": "bucket", "group": "storage.example", "kind": "Bucket"}]}]});
        let d = httproute_destinations(&spec, "ns").expect("a rule");
        let w: Vec<_> = d
            .iter()
            .map(|d| (d.service.as_str(), d.namespace.as_str(), d.weight))
            .collect();
        assert_eq!(
            w,
            [
                ("web-stable", "ns", 60),
                ("web-canary", "ns", 40),
                ("bucket", "", 1)
            ]
        );
        let prefix_root = json!({"rules": [{"matches": [{"path": {"value": "/"}}],
            "backendRefs": [{"name": "a"}]}]});
        assert_eq!(
            httproute_destinations(&prefix_root, "ns").expect("rule")[0].weight,
            1
        );
    }

    #[test]
    fn subsets_select_pods_by_the_destinationrule_labels() {
        let rules = vec![json!({"host": "web.ns.svc.cluster.local", "subsets": [
            {"name": "stable", "labels": {REVISION_LABEL: "aaa"}},
            {"name": "canary", "labels": {REVISION_LABEL: "bbb"}}]})];
        let canary = subset_labels(&rules, "web", "ns", "canary", "ns").expect("subset");
        assert!(subset_labels(&rules, "web", "ns", "preview", "ns").is_none());
        let pods: HashMap<String, Arc<Pod>> = [
            ("a1", "web-aaa", "aaa", "0"),
            ("b1", "web-bbb", "bbb", "0.5"),
        ]
        .into_iter()
        .map(|(n, rs, h, e)| {
            (
                n.to_string(),
                pod(
                    n,
                    rs,
                    json!({REVISION_LABEL: h, "app": "web"}),
                    json!({ERROR_RATE_ANNOTATION: e}),
                ),
            )
        })
        .collect();
        let slices = vec![
            slice(
                "web",
                json!([
                    ep("198.18.0.2", "a1", true),
                    ep("198.18.0.3", "b1", true),
                    ep("198.18.0.4", "b2", false)
                ]),
            ),
            slice("other", json!([ep("198.18.0.9", "a1", true)])),
        ];
        let all = ready_targets(&slices, "web", None, |n| pods.get(n).cloned());
        assert_eq!(all.len(), 2);
        let c = ready_targets(&slices, "web", Some(&canary), |n| pods.get(n).cloned());
        assert_eq!(c.len(), 1);
        assert_eq!(
            (
                c[0].workload.as_str(),
                c[0].revision.as_str(),
                c[0].profile.error_rate
            ),
            ("web", "bbb", 0.5)
        );
        assert_eq!(c[0].canonical_service, "web");
    }

    #[test]
    fn requests_split_by_weight_and_fail_at_the_pod_error_rate() {
        let target = |rev: &str, error_rate: f64| Target {
            workload: "web".into(),
            namespace: "ns".into(),
            canonical_service: "web".into(),
            revision: rev.into(),
            profile: FaultProfile {
                error_rate,
                latency_ms: 40.0,
            },
        };
        let plan = vec![
            Resolved {
                weight: 80,
                service: "s".into(),
                namespace: "ns".into(),
                targets: vec![target("a", 0.0)],
            },
            Resolved {
                weight: 20,
                service: "c".into(),
                namespace: "ns".into(),
                targets: vec![target("b", 0.5)],
            },
            Resolved {
                weight: 0,
                service: "z".into(),
                namespace: "ns".into(),
                targets: vec![],
            },
        ];
        let out = simulate(&plan, 10_000, &mut Rng::new(7), "ns", 0.0);
        let count = |svc: &str, code: u16| {
            out.iter()
                .filter(|(o, _)| o.service == svc && o.code == code)
                .map(|(_, l)| l.len())
                .sum::<usize>()
        };
        assert_eq!(count("s", 500), 0);
        let c = count("c", 200) + count("c", 500);
        assert!((1800..2200).contains(&c), "{c}");
        assert!((c / 2 - 150..c / 2 + 150).contains(&count("c", 500)));
        assert!(out.values().flatten().all(|l| (36.0..=44.0).contains(l)));
        let empty = simulate(&[], 3, &mut Rng::new(1), "ns", 0.0);
        assert_eq!(
            empty.keys().map(|o| (o.code, o.flags)).collect::<Vec<_>>(),
            [(503, "NR")]
        );
        let no_pods = vec![Resolved {
            weight: 1,
            service: "s".into(),
            namespace: "ns".into(),
            targets: vec![],
        }];
        let o = simulate(&no_pods, 3, &mut Rng::new(1), "ns", 0.0);
        let o: Vec<_> = o.keys().collect();
        assert_eq!(
            (
                o[0].code,
                o[0].flags,
                o[0].workload.as_str(),
                o[0].service.as_str()
            ),
            (503, "UH", "unknown", "s")
        );
    }

    #[test]
    fn noise_is_a_sine_wave_from_base_to_base_plus_amplitude() {
        let noise = Noise {
            base: 0.02,
            amplitude: 0.1,
            period: Duration::from_secs(60),
        };
        let at = |secs: f64| noise.extra_at(Duration::from_secs_f64(secs));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(at(0.0), 0.07), "{}", at(0.0));
        assert!(close(at(15.0), 0.12), "{}", at(15.0));
        assert!(close(at(30.0), 0.07), "{}", at(30.0));
        assert!(close(at(45.0), 0.02), "{}", at(45.0));
        // Periodic, also far from the start.
        assert!(close(at(60.0 * 1000.0 + 15.0), 0.12));
        // (1 + sin(π/6)) / 2 = 0.75 at a twelfth of the period.
        assert!(close(at(5.0), 0.02 + 0.1 * 0.75), "{}", at(5.0));
        for secs in 0..=120 {
            let v = at(f64::from(secs) / 2.0);
            assert!((0.02 - 1e-12..=0.12 + 1e-12).contains(&v), "{secs}: {v}");
        }
        assert!(
            Noise {
                period: Duration::ZERO,
                ..noise
            }
            .check()
            .is_err()
        );
        assert!(
            Noise {
                base: f64::NAN,
                ..noise
            }
            .check()
            .is_err()
        );
        assert!(noise.check().is_ok());
    }

    #[test]
    fn noise_adds_to_each_pod_rate_and_is_clamped() {
        let p = FaultProfile {
            error_rate: 0.3,
            latency_ms: 10.0,
        };
        assert_eq!(p.noisy_error_rate(0.0), 0.3);
        assert!((p.noisy_error_rate(0.2) - 0.5).abs() < 1e-12);
        assert_eq!(p.noisy_error_rate(0.9), 1.0);
        assert_eq!(p.noisy_error_rate(-0.5), 0.0);
        assert_eq!(p.noisy_error_rate(f64::NAN), 0.0);
    }

    #[test]
    fn pods_with_the_same_profile_see_the_same_noise() {
        let profile = FaultProfile {
            error_rate: 0.05,
            latency_ms: 10.0,
        };
        let shared = Shared::new();
        let since = Instant::now();
        *shared.noise.lock().expect("noise") = Some((
            Noise {
                base: 0.1,
                amplitude: 0.2,
                period: Duration::from_secs(40),
            },
            since,
        ));
        // One extra rate for the whole simulator at a moment: stable and canary pods with
        // the same profile expect the same rate.
        let extra = shared.noise_at(since + Duration::from_secs(10));
        assert!((extra - 0.3).abs() < 1e-12, "{extra}");
        let (stable, canary) = (profile, profile);
        assert_eq!(
            stable.noisy_error_rate(extra),
            canary.noisy_error_rate(extra)
        );
        assert!((stable.noisy_error_rate(extra) - 0.35).abs() < 1e-12);
        assert_eq!(Shared::new().noise_at(Instant::now()), 0.0);

        // And they fail at that rate, in a batch simulated with the noise.
        let target = |rev: &str| Target {
            workload: "web".into(),
            namespace: "ns".into(),
            canonical_service: "web".into(),
            revision: rev.into(),
            profile,
        };
        let plan = vec![
            Resolved {
                weight: 50,
                service: "web-stable".into(),
                namespace: "ns".into(),
                targets: vec![target("aaa")],
            },
            Resolved {
                weight: 50,
                service: "web-canary".into(),
                namespace: "ns".into(),
                targets: vec![target("bbb")],
            },
        ];
        let out = simulate(&plan, 40_000, &mut Rng::new(3), "ns", extra);
        let rate = |rev: &str| {
            let n = |code: u16| {
                out.iter()
                    .filter(|(o, _)| o.revision == rev && o.code == code)
                    .map(|(_, l)| l.len())
                    .sum::<usize>() as f64
            };
            n(500) / (n(200) + n(500))
        };
        for rev in ["aaa", "bbb"] {
            assert!((rate(rev) - 0.35).abs() < 0.02, "{rev}: {}", rate(rev));
        }

        // The noise takes no draws: the same seed routes the same requests either way.
        let routed = |extra: f64| {
            let mut by_rev: BTreeMap<String, usize> = BTreeMap::new();
            for (o, l) in simulate(&plan, 1_000, &mut Rng::new(9), "ns", extra) {
                *by_rev.entry(o.revision).or_default() += l.len();
            }
            by_rev
        };
        assert_eq!(routed(0.0), routed(0.4));
    }

    #[test]
    fn istio_label_pairs_and_bucket_labels_are_those_of_metrics() {
        let labels = IstioLabels::answered("ns", "web-canary", "web", "web", "bbb", 500);
        assert_eq!(labels.with_code(200).response_code, "200");
        let shared = Shared::new();
        shared.requests.get_or_create(&labels).inc();
        shared.durations.get_or_create(&labels).observe(3.0);
        let text = shared.openmetrics();
        let pairs = labels
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            text.contains(&format!("istio_requests_total{{{pairs}}} 1")),
            "{pairs}\n{text}"
        );
        assert!(
            text.contains(r#"destination_service="web-canary.ns.svc.cluster.local""#),
            "{text}"
        );
        for bound in LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]) {
            let le = format!(r#"le="{}""#, bucket_label(bound));
            assert!(text.contains(&le), "{le} not in {text}");
        }
        assert_eq!(bucket_label(2.5), "2.5");
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let shared = Shared::new();
        let mut out = HashMap::new();
        out.insert(
            Outcome {
                service: "web".into(),
                service_namespace: "ns".into(),
                workload: "web".into(),
                workload_namespace: "ns".into(),
                canonical_service: "web".into(),
                revision: "aaa".into(),
                code: 200,
                flags: "-",
            },
            vec![3.0, 30.0],
        );
        shared.record("ns", out);
        let text = classic_text(&shared.openmetrics());
        assert!(
            text.contains("# TYPE istio_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE istio_request_duration_milliseconds histogram"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("a sample");
        assert!(
            line.contains(r#"destination_service_name="web""#) && line.ends_with(" 2"),
            "{line}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains(r#"{le="5.0","#) && l.ends_with("} 1")),
            "{text}"
        );
        assert_eq!(shared.stats.lock().expect("stats").len(), 1);
    }

    #[test]
    fn the_generator_is_uniform_enough_and_repeatable() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..1000).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..1000).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        for v in 0..10 {
            let n = xs.iter().filter(|x| **x == v).count();
            assert!((60..140).contains(&n), "{v}: {n}");
        }
        assert!((0..1000).map(|_| a.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
