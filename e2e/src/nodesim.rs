//! The node simulator: plays the kubelet for a few Nodes, so the real scheduler, ReplicaSet,
//! EndpointSlice and garbage-collection controllers see realistic Nodes and pods.
//!
//! It registers Nodes, renews their Leases, and writes the status of each pod bound to them:
//! Running and Ready by default. Nothing ever connects to a simulated pod or Node:
//!
//! - Node addresses are on loopback (`127.0.10N.1`, see [`node_ip`]), so even an API server
//!   call that would reach a kubelet (`kubectl logs`, `exec`) stays on this machine and is
//!   refused.
//! - Pod IPs come from `198.18.0.0/15`, the range reserved for network benchmark tests
//!   (RFC 2544; neither private nor public), each Node owning an equal block of it and reusing
//!   the addresses of pods that are gone. The loopback range cannot be used: the API server
//!   refuses loopback addresses in EndpointSlices, and the real EndpointSlice controller must
//!   be able to list the pods. The traffic simulator routes requests in-process and never
//!   opens a connection to a pod IP.
//!
//! It watches the pods bound to a Node (never lists them again after the watch's first list)
//! and writes a pod's status only when it differs from what the pod should show, with at most
//! [`WRITERS`] writes in flight; a periodic tick looks only at the pods whose status moves with
//! time alone (crash loops, delayed readiness, image pulls).
//!
//! A pod's behaviour comes from its annotation [`BEHAVIOUR_ANNOTATION`], normally set in the
//! pod template, or set later on the pod itself to make a running pod fail:
//!
//! | value | what the pod shows |
//! |---|---|
//! | `ready` (default) | Running, Ready |
//! | `never-ready` | Running, containers started but not ready |
//! | `crashloop` | Running, not ready, `CrashLoopBackOff`, restart count rising, last exit code from [`EXIT_CODE_ANNOTATION`] (default 1) |
//! | `oomkilled` | like `crashloop`, last state `OOMKilled` with exit code 137 |
//! | `image-pull` | Pending, `ErrImagePull` then `ImagePullBackOff` |
//! | `config-error` | Pending, `CreateContainerConfigError` |
//! | `complete` | Succeeded, exit code 0 (default for pods that do not restart, e.g. Jobs) |
//! | `fail` | Failed, exit code from [`EXIT_CODE_ANNOTATION`] (default 1) |
//!
//! [`READY_AFTER_ANNOTATION`] (seconds) delays readiness of a `ready` pod.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub const BEHAVIOUR_ANNOTATION: &str = "sim.sluice.dev/behaviour";
pub const EXIT_CODE_ANNOTATION: &str = "sim.sluice.dev/exit-code";
pub const READY_AFTER_ANNOTATION: &str = "sim.sluice.dev/ready-after";
/// Label on every simulated Node.
pub const NODE_LABEL: &str = "sim.sluice.dev/node";
const FIELD_MANAGER: &str = "sluice-e2e-node-sim";
/// How often crash-looping pods restart and leases are renewed.
const TICK: Duration = Duration::from_secs(2);
const CRASH_RESTART_EVERY: Duration = Duration::from_secs(4);
/// Seconds after which an image pull that failed shows `ImagePullBackOff`.
const IMAGE_PULL_BACKOFF_AFTER: f64 = 4.0;
/// The limit on one pod status write or deletion.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Ready,
    NeverReady,
    CrashLoop,
    OomKilled,
    ImagePull,
    ConfigError,
    Complete,
    Fail,
}

impl Behaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Ready => "ready",
            Behaviour::NeverReady => "never-ready",
            Behaviour::CrashLoop => "crashloop",
            Behaviour::OomKilled => "oomkilled",
            Behaviour::ImagePull => "image-pull",
            Behaviour::ConfigError => "config-error",
            Behaviour::Complete => "complete",
            Behaviour::Fail => "fail",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Behaviour::Ready,
            "never-ready" => Behaviour::NeverReady,
            "crashloop" => Behaviour::CrashLoop,
            "oomkilled" => Behaviour::OomKilled,
            "image-pull" => Behaviour::ImagePull,
            "config-error" => Behaviour::ConfigError,
            "complete" => Behaviour::Complete,
            "fail" => Behaviour::Fail,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeSimError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("node simulator: {0}")]
    Config(String),
}

/// The default number of pods a simulated Node holds (what a kubelet allows by default).
pub const PODS_PER_NODE: usize = 250;
/// How many pod status writes (and deletions) are in flight at once.
const WRITERS: usize = 16;
/// The pod IP range: 198.18.0.0/15.
const POD_RANGE_START: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const POD_RANGE_SIZE: u32 = 1 << 17;

/// What the simulator remembers per pod (all of it can be rebuilt from the pod's status).
#[derive(Clone, Debug)]
struct PodMemory {
    ip: String,
    first_seen: Timestamp,
    /// The Node's index and the address's offset in that Node's block, when it is ours to
    /// give back.
    slot: Option<(usize, u32)>,
}

/// Pod IPs: each Node owns a block of the range (the range split in a power of two of equal
/// blocks), and gives an address back when its pod goes away, so churn never runs out or
/// hands out an address twice. Addresses ending in .0 or .255 are skipped.
#[derive(Debug)]
struct IpPool {
    block: u32,
    used: Vec<std::collections::HashSet<u32>>,
    cursor: Vec<u32>,
}

impl IpPool {
    fn new(nodes: usize, pods_per_node: usize) -> Result<Self, NodeSimError> {
        let blocks = nodes.max(1).next_power_of_two() as u64;
        if blocks > POD_RANGE_SIZE as u64 {
            return Err(NodeSimError::Config(format!(
                "{nodes} nodes do not fit in 198.18.0.0/15"
            )));
        }
        let block = (POD_RANGE_SIZE as u64 / blocks) as u32;
        let usable = (0..block).filter(|o| Self::usable(*o)).count();
        if usable < pods_per_node {
            return Err(NodeSimError::Config(format!(
                "{nodes} nodes of {pods_per_node} pods do not fit in 198.18.0.0/15 ({usable} addresses a node)"
            )));
        }
        Ok(IpPool {
            block,
            used: vec![Default::default(); nodes],
            cursor: vec![0; nodes],
        })
    }

    fn usable(offset: u32) -> bool {
        // Blocks start on a multiple of their size, so an offset's last octet is the address's.
        !matches!(offset % 256, 0 | 255)
    }

    fn address(&self, node: usize, offset: u32) -> String {
        std::net::Ipv4Addr::from(POD_RANGE_START + node as u32 * self.block + offset).to_string()
    }

    /// The next free address of `node`'s block, or `None` when the block is full.
    fn take(&mut self, node: usize) -> Option<(u32, String)> {
        let used = self.used.get_mut(node)?;
        let start = self.cursor[node];
        for i in 0..self.block {
            let offset = (start + i) % self.block;
            if Self::usable(offset) && used.insert(offset) {
                self.cursor[node] = (offset + 1) % self.block;
                return Some((offset, self.address(node, offset)));
            }
        }
        None
    }

    /// Marks an address found on an existing pod as taken, when it is in `node`'s block.
    fn claim(&mut self, node: usize, ip: &str) -> Option<u32> {
        let addr: std::net::Ipv4Addr = ip.parse().ok()?;
        let offset = u32::from(addr)
            .checked_sub(POD_RANGE_START + node as u32 * self.block)
            .filter(|o| *o < self.block)?;
        self.used.get_mut(node)?.insert(offset);
        Some(offset)
    }

    fn give_back(&mut self, node: usize, offset: u32) {
        if let Some(used) = self.used.get_mut(node) {
            used.remove(&offset);
        }
    }
}

struct State {
    nodes: HashMap<String, usize>,
    node_ips: Vec<String>,
    pods: HashMap<String, PodMemory>,
    ips: IpPool,
    /// Pods whose status changes with time alone (crash loops, delayed readiness, image
    /// pulls), with the latest version seen: the only pods the periodic tick looks at.
    timed: HashMap<String, Arc<Pod>>,
}

/// Pods waiting for a status write, one entry per pod (a newer version replaces a waiting
/// one), and never two writes for the same pod at once.
#[derive(Default)]
struct Queue {
    pending: HashMap<String, Arc<Pod>>,
    order: VecDeque<String>,
    busy: HashSet<String>,
}

impl Queue {
    /// Queues `pod`; returns whether a worker should be woken.
    fn push(&mut self, uid: &str, pod: Arc<Pod>) -> bool {
        if self.pending.insert(uid.to_string(), pod).is_some() || self.busy.contains(uid) {
            return false;
        }
        self.order.push_back(uid.to_string());
        true
    }

    /// Queues `pod` unless a version of it is already waiting (that one is at least as new).
    fn push_if_absent(&mut self, uid: &str, pod: Arc<Pod>) -> bool {
        if self.pending.contains_key(uid) {
            return false;
        }
        self.push(uid, pod)
    }

    fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        let uid = self.order.pop_front()?;
        let pod = self.pending.remove(&uid)?;
        self.busy.insert(uid.clone());
        Some((uid, pod))
    }

    /// The write for `uid` is over; returns whether a newer version now waits.
    fn done(&mut self, uid: &str) -> bool {
        self.busy.remove(uid);
        if self.pending.contains_key(uid) {
            self.order.push_back(uid.to_string());
            return true;
        }
        false
    }
}

struct Shared {
    state: std::sync::Mutex<State>,
    queue: std::sync::Mutex<Queue>,
    wake: Notify,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A version of a pod bound to one of our Nodes arrived from the watch.
    fn seen(&self, pod: Pod) {
        let (Some(uid), Some(node)) = (
            pod.metadata.uid.clone(),
            pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ) else {
            return;
        };
        let pod = Arc::new(pod);
        {
            let mut st = self.state();
            if !st.nodes.contains_key(&node) {
                return;
            }
            if may_change_with_time(&pod) {
                st.timed.insert(uid.clone(), pod.clone());
            } else {
                st.timed.remove(&uid);
            }
        }
        if self.queue().push(&uid, pod) {
            self.wake.notify_one();
        }
    }

    /// A pod is gone: its address goes back to its Node's pool.
    fn forget(&self, uid: &str) {
        let mut st = self.state();
        st.timed.remove(uid);
        if let Some(PodMemory {
            slot: Some((node, offset)),
            ..
        }) = st.pods.remove(uid)
        {
            st.ips.give_back(node, offset);
        }
    }
}

/// A running node simulator; dropping it stops it (the Nodes stay registered).
pub struct NodeSim {
    pub nodes: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NodeSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Node `i`'s address: `127.0.10N.1` for the first hundred (as before), then
/// `127.(i/100).(100 + i%100).1`: unique for up to 25,600 Nodes, always on loopback.
fn node_ip(i: usize) -> String {
    format!("127.{}.{}.1", (i / 100) % 256, 100 + i % 100)
}

impl NodeSim {
    /// Registers `count` Nodes named `{prefix}-{i}` of [`PODS_PER_NODE`] pods each and starts
    /// simulating their kubelets.
    pub async fn start(client: Client, prefix: &str, count: usize) -> Result<Self, NodeSimError> {
        Self::start_sized(client, prefix, count, PODS_PER_NODE).await
    }

    /// Registers `count` Nodes named `{prefix}-{i}` that hold `pods_per_node` pods each and
    /// starts simulating their kubelets.
    pub async fn start_sized(
        client: Client,
        prefix: &str,
        count: usize,
        pods_per_node: usize,
    ) -> Result<Self, NodeSimError> {
        let ips = IpPool::new(count, pods_per_node)?;
        let nodes: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let node_api: Api<Node> = Api::all(client.clone());
        for (i, name) in nodes.iter().enumerate() {
            register_node(&node_api, name, &node_ip(i), pods_per_node).await?;
        }
        let shared = Arc::new(Shared {
            state: std::sync::Mutex::new(State {
                nodes: nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), i))
                    .collect(),
                node_ips: (0..count).map(node_ip).collect(),
                pods: HashMap::new(),
                ips,
                timed: HashMap::new(),
            }),
            queue: Default::default(),
            wake: Notify::new(),
        });
        let mut tasks = vec![
            tokio::spawn(heartbeat_loop(client.clone(), nodes.clone(), pods_per_node)),
            tokio::spawn(watch_loop(client.clone(), shared.clone())),
            tokio::spawn(tick_loop(shared.clone())),
        ];
        for _ in 0..WRITERS {
            tasks.push(tokio::spawn(writer(client.clone(), shared.clone())));
        }
        Ok(NodeSim { nodes, tasks })
    }
}

async fn register_node(
    api: &Api<Node>,
    name: &str,
    ip: &str,
    pods: usize,
) -> Result<(), NodeSimError> {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert(NODE_LABEL.to_string(), "true".to_string());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let status = node_status(ip, pods);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Node", "status": status})),
    )
    .await?;
    Ok(())
}

fn node_status(ip: &str, pods: usize) -> NodeStatus {
    let t = Time(now());
    let pods = pods.to_string();
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", "32"),
        ("memory", "128Gi"),
        ("pods", pods.as_str()),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect();
    let cond = |type_: &str, status: &str, reason: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some("simulated by sluice-e2e".to_string()),
        last_heartbeat_time: Some(t.clone()),
        last_transition_time: Some(t.clone()),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ]),
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kubelet_version: "v1.37.2".into(),
            kube_proxy_version: String::new(),
            container_runtime_version: "sim://1.0".into(),
            kernel_version: "sim".into(),
            os_image: "sluice node simulator".into(),
            boot_id: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Renews each Node's Lease (what the node lifecycle controller reads) and, less often, its
/// Ready condition, so the controller manager never marks a simulated Node unreachable.
async fn heartbeat_loop(client: Client, nodes: Vec<String>, pods: usize) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let node_api: Api<Node> = Api::all(client);
    let mut round: u64 = 0;
    loop {
        for (i, name) in nodes.iter().enumerate() {
            let lease = serde_json::json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(MicroTime(now())),
                    ..Default::default()
                }
            });
            if let Err(e) = leases
                .patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(lease),
                )
                .await
            {
                tracing::warn!(node = %name, error = %e, "renewing node lease");
            }
            if round.is_multiple_of(10) {
                let status = serde_json::json!({"apiVersion": "v1", "kind": "Node", "status": node_status(&node_ip(i), pods)});
                if let Err(e) = node_api
                    .patch_status(
                        name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(status),
                    )
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "node heartbeat");
                }
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Watches the pods bound to a Node (any Node: those not ours are skipped) and queues each
/// version for a status write. A re-list forgets the pods that went away meanwhile.
async fn watch_loop(client: Client, shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut stream = watcher(pods, config).boxed();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.metadata.uid.as_ref()) {
                    seen.insert(uid.clone());
                }
                shared.seen(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = relisted.take() {
                    let gone: Vec<String> = shared
                        .state()
                        .pods
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        shared.forget(&uid);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => shared.seen(pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid {
                    shared.forget(&uid);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "pod watch");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One of [`WRITERS`] workers writing pod statuses from the queue.
async fn writer(client: Client, shared: Arc<Shared>) {
    loop {
        let next = shared.queue().pop();
        let Some((uid, pod)) = next else {
            shared.wake.notified().await;
            continue;
        };
        match tokio::time::timeout(WRITE_TIMEOUT, reconcile_pod(&client, &shared, &pod)).await {
            Ok(Ok(())) => {}
            Ok(Err(NodeSimError::Kube(kube::Error::Api(e)))) if e.code == 404 => {
                shared.forget(&uid)
            }
            Ok(Err(e)) => tracing::debug!(pod = %pod.name_any(), error = %e, "pod status"),
            Err(_) => tracing::debug!(pod = %pod.name_any(), "pod status: timed out"),
        }
        if shared.queue().done(&uid) {
            shared.wake.notify_one();
        }
    }
}

/// Moves time-based behaviour along (delayed readiness, crash loops' restart counts, image
/// pull back-off) for the pods that have it, and only those; a pod whose status no longer
/// changes with time leaves the set.
async fn tick_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(TICK).await;
        let at = now();
        // Every timed pod gets a look now, then those whose status will not change any more
        // after this look leave the set (their last write happens at or after `at`).
        let due: Vec<(String, Arc<Pod>)> = {
            let mut guard = shared.state();
            let st = &mut *guard;
            let due = st
                .timed
                .iter()
                .map(|(uid, pod)| (uid.clone(), pod.clone()))
                .collect();
            let pods = &st.pods;
            st.timed.retain(|uid, pod| {
                pods.get(uid)
                    .is_none_or(|m| changes_with_time(pod, behaviour_of(pod), m, at))
            });
            due
        };
        let mut queue = shared.queue();
        let mut woken = 0;
        for (uid, pod) in due {
            if queue.push_if_absent(&uid, pod) {
                woken += 1;
            }
        }
        drop(queue);
        for _ in 0..woken.min(WRITERS) {
            shared.wake.notify_one();
        }
    }
}

/// Whether a pod's status may change with time alone, from the pod only (before the
/// simulator knows when it started).
fn may_change_with_time(pod: &Pod) -> bool {
    match behaviour_of(pod) {
        Behaviour::CrashLoop | Behaviour::OomKilled | Behaviour::ImagePull => true,
        Behaviour::Ready => ready_after(pod) > 0.0,
        _ => false,
    }
}

/// Whether the pod's status will still change with time alone after `at`.
fn changes_with_time(pod: &Pod, behaviour: Behaviour, memory: &PodMemory, at: Timestamp) -> bool {
    let age = at.duration_since(memory.first_seen).as_secs_f64();
    match behaviour {
        Behaviour::CrashLoop | Behaviour::OomKilled => true,
        Behaviour::ImagePull => age < IMAGE_PULL_BACKOFF_AFTER,
        Behaviour::Ready => age < ready_after(pod),
        _ => false,
    }
}

fn ready_after(pod: &Pod) -> f64 {
    annotation(pod, READY_AFTER_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn behaviour_of(pod: &Pod) -> Behaviour {
    if let Some(b) = annotation(pod, BEHAVIOUR_ANNOTATION).and_then(Behaviour::parse) {
        return b;
    }
    let restarts = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if restarts == "Always" {
        Behaviour::Ready
    } else {
        Behaviour::Complete
    }
}

async fn reconcile_pod(client: &Client, shared: &Shared, pod: &Pod) -> Result<(), NodeSimError> {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return Ok(());
    };
    let (Some(ns), Some(uid)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    if pod.metadata.deletion_timestamp.is_some() {
        // The kubelet confirms a graceful deletion once the containers have stopped.
        api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await?;
        return Ok(());
    }
    let (memory, host_ip) = {
        let mut guard = shared.state();
        let st = &mut *guard;
        let Some(&idx) = st.nodes.get(node) else {
            return Ok(());
        };
        let memory = match st.pods.get(uid) {
            Some(m) => m.clone(),
            None => {
                let existing = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
                let (ip, slot) = match existing {
                    Some(ip) => {
                        let slot = st.ips.claim(idx, &ip).map(|o| (idx, o));
                        (ip, slot)
                    }
                    None => match st.ips.take(idx) {
                        Some((offset, ip)) => (ip, Some((idx, offset))),
                        None => {
                            return Err(NodeSimError::Config(format!(
                                "no pod address left on {node}"
                            )));
                        }
                    },
                };
                let first_seen = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or_else(now);
                let m = PodMemory {
                    ip,
                    first_seen,
                    slot,
                };
                st.pods.insert(uid.to_string(), m.clone());
                m
            }
        };
        (memory, st.node_ips.get(idx).cloned().unwrap_or_default())
    };

    let desired = desired_status(pod, behaviour_of(pod), &memory, &host_ip, now());
    if status_matches(pod.status.as_ref(), &desired) {
        return Ok(());
    }
    let patch = serde_json::json!({"status": desired});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await?;
    Ok(())
}

/// Compares only what the simulator writes, ignoring timestamps, so an unchanged pod gets no
/// write.
fn status_matches(current: Option<&PodStatus>, desired: &PodStatus) -> bool {
    let Some(cur) = current else { return false };
    let conds = |s: &PodStatus| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = s
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_ != "PodScheduled")
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        v.sort();
        v
    };
    let containers = |s: &PodStatus| -> Vec<(String, bool, i32, String)> {
        s.container_statuses
            .iter()
            .flatten()
            .map(|c| {
                let state = match &c.state {
                    Some(ContainerState {
                        waiting: Some(w), ..
                    }) => format!("waiting:{}", w.reason.clone().unwrap_or_default()),
                    Some(ContainerState {
                        running: Some(_), ..
                    }) => "running".to_string(),
                    Some(ContainerState {
                        terminated: Some(t),
                        ..
                    }) => format!("terminated:{}", t.exit_code),
                    _ => String::new(),
                };
                (c.name.clone(), c.ready, c.restart_count, state)
            })
            .collect()
    };
    cur.phase == desired.phase
        && cur.pod_ip == desired.pod_ip
        && conds(cur) == conds(desired)
        && containers(cur) == containers(desired)
}

/// The status a kubelet would report for this pod now: a pure function of the pod, its
/// behaviour and the clock.
fn desired_status(
    pod: &Pod,
    behaviour: Behaviour,
    memory: &PodMemory,
    host_ip: &str,
    at: Timestamp,
) -> PodStatus {
    let containers: Vec<(String, String)> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let started = Time(memory.first_seen);
    let age = at.duration_since(memory.first_seen).as_secs_f64().max(0.0);
    let exit_code: i32 = annotation(pod, EXIT_CODE_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let ready_after = ready_after(pod);
    let restarts = (age / CRASH_RESTART_EVERY.as_secs_f64()) as i32 + 1;

    let waiting = |reason: &str, message: String| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message),
        }),
        ..Default::default()
    };
    let running = || ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(started.clone()),
        }),
        ..Default::default()
    };
    let terminated = |code: i32, reason: &str| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.to_string()),
            started_at: Some(started.clone()),
            finished_at: Some(started.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };

    let (phase, ready, has_ip) = match behaviour {
        Behaviour::Ready => ("Running", age >= ready_after, true),
        Behaviour::NeverReady | Behaviour::CrashLoop | Behaviour::OomKilled => {
            ("Running", false, true)
        }
        Behaviour::ImagePull | Behaviour::ConfigError => ("Pending", false, false),
        Behaviour::Complete => ("Succeeded", false, true),
        Behaviour::Fail => ("Failed", false, true),
    };
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|(name, image)| {
            let (state, last, restart_count, started_flag) = match behaviour {
                Behaviour::Ready | Behaviour::NeverReady => (running(), None, 0, true),
                Behaviour::CrashLoop => (
                    waiting(
                        "CrashLoopBackOff",
                        format!(
                            "back-off 10s restarting failed container={name} pod={}",
                            pod.name_any()
                        ),
                    ),
                    Some(terminated(exit_code, "Error")),
                    restarts,
                    false,
                ),
                Behaviour::OomKilled => (
                    waiting(
                        "CrashLoopBackOff",
                        format!(
                            "back-off 10s restarting failed container={name} pod={}",
                            pod.name_any()
                        ),
                    ),
                    Some(terminated(137, "OOMKilled")),
                    restarts,
                    false,
                ),
                Behaviour::ImagePull => {
                    let (reason, message) = if age < IMAGE_PULL_BACKOFF_AFTER {
                        (
                            "ErrImagePull",
                            format!("failed to pull image \"{image}\": not found"),
                        )
                    } else {
                        (
                            "ImagePullBackOff",
                            format!("Back-off pulling image \"{image}\""),
                        )
                    };
                    (waiting(reason, message), None, 0, false)
                }
                Behaviour::ConfigError => (
                    waiting(
                        "CreateContainerConfigError",
                        "secret \"missing\" not found".to_string(),
                    ),
                    None,
                    0,
                    false,
                ),
                Behaviour::Complete => (terminated(0, "Completed"), None, 0, false),
                Behaviour::Fail => (terminated(exit_code, "Error"), None, 0, false),
            };
            ContainerStatus {
                name: name.clone(),
                image: image.clone(),
                image_id: if has_ip {
                    format!("sim://{image}")
                } else {
                    String::new()
                },
                container_id: if has_ip {
                    Some(format!("sim://{name}"))
                } else {
                    None
                },
                ready,
                started: Some(started_flag),
                restart_count,
                state: Some(state),
                last_state: last,
                ..Default::default()
            }
        })
        .collect();
    let t = Time(at);
    let cond = |type_: &str, ok: bool, reason: Option<&str>| PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: Some(t.clone()),
        ..Default::default()
    };
    let terminal = matches!(behaviour, Behaviour::Complete | Behaviour::Fail);
    PodStatus {
        phase: Some(phase.to_string()),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: has_ip.then(|| memory.ip.clone()),
        pod_ips: has_ip.then(|| {
            vec![PodIP {
                ip: memory.ip.clone(),
            }]
        }),
        start_time: Some(started.clone()),
        conditions: Some(vec![
            cond("Initialized", true, None),
            cond(
                "ContainersReady",
                ready,
                Some(if terminal {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                }),
            ),
            cond(
                "Ready",
                ready,
                Some(if terminal {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                }),
            ),
        ]),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(annotations: &[(&str, &str)], restart: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("app:v1".into()),
                    ..Default::default()
                }],
                restart_policy: Some(restart.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mem() -> PodMemory {
        PodMemory {
            ip: "198.18.0.11".into(),
            first_seen: Timestamp::UNIX_EPOCH,
            slot: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    fn ready(s: &PodStatus) -> bool {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }

    #[test]
    fn default_pod_is_running_and_ready_with_its_ip() {
        let p = pod(&[], "Always");
        let s = desired_status(&p, behaviour_of(&p), &mem(), "127.0.100.1", at(1));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(ready(&s));
        assert_eq!(s.pod_ip.as_deref(), Some("198.18.0.11"));
    }

    #[test]
    fn crashloop_shows_reason_exit_code_and_rising_restarts() {
        let p = pod(
            &[
                (BEHAVIOUR_ANNOTATION, "crashloop"),
                (EXIT_CODE_ANNOTATION, "3"),
            ],
            "Always",
        );
        let early = desired_status(&p, behaviour_of(&p), &mem(), "h", at(1));
        let later = desired_status(&p, behaviour_of(&p), &mem(), "h", at(20));
        let c = &early.container_statuses.as_ref().expect("statuses")[0];
        assert!(!ready(&early));
        let waiting = c
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!(last.exit_code, 3);
        let restarts_later = later.container_statuses.as_ref().expect("statuses")[0].restart_count;
        assert!(
            restarts_later > c.restart_count,
            "{restarts_later} > {}",
            c.restart_count
        );
    }

    #[test]
    fn image_pull_moves_from_err_to_backoff_without_an_ip() {
        let p = pod(&[(BEHAVIOUR_ANNOTATION, "image-pull")], "Always");
        let reason = |secs| {
            let s = desired_status(&p, Behaviour::ImagePull, &mem(), "h", at(secs));
            assert_eq!(s.phase.as_deref(), Some("Pending"));
            assert!(s.pod_ip.is_none());
            s.container_statuses.expect("statuses")[0]
                .state
                .clone()
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
        };
        assert_eq!(reason(1).as_deref(), Some("ErrImagePull"));
        assert_eq!(reason(10).as_deref(), Some("ImagePullBackOff"));
    }

    fn in_range(ip: &str) {
        let addr: std::net::Ipv4Addr = ip.parse().expect("valid address");
        let o = addr.octets();
        assert_eq!((o[0], o[1] & 0xfe), (198, 18), "{ip} outside 198.18.0.0/15");
        assert!(o[3] != 0 && o[3] != 255, "{ip}");
    }

    #[test]
    fn pod_ips_stay_in_the_benchmark_range_and_differ() {
        for (nodes, per_node) in [(3, 250), (40, 1000), (64, 2000), (1, 100_000)] {
            let mut pool = IpPool::new(nodes, per_node).expect("fits");
            let mut ips = HashSet::new();
            for node in 0..nodes {
                for _ in 0..per_node {
                    let (_, ip) = pool.take(node).expect("room on the node");
                    in_range(&ip);
                    assert!(ips.insert(ip.clone()), "{ip} handed out twice");
                }
            }
            assert_eq!(ips.len(), nodes * per_node);
        }
    }

    #[test]
    fn too_many_pods_for_the_range_are_refused() {
        assert!(IpPool::new(40, 3000).is_err());
        assert!(IpPool::new(3, 250).is_ok());
    }

    #[test]
    fn addresses_come_back_when_pods_go_and_existing_ones_are_kept() {
        let mut pool = IpPool::new(2, 3).expect("fits");
        let taken: Vec<(u32, String)> = (0..pool.block - 2).map_while(|_| pool.take(1)).collect();
        assert!(pool.take(1).is_none(), "node 1's block is full");
        let (offset, ip) = taken[5].clone();
        pool.give_back(1, offset);
        assert_eq!(pool.take(1), Some((offset, ip.clone())));
        // An address already on a pod (the simulator restarted) is not handed out again.
        let mut fresh = IpPool::new(2, 3).expect("fits");
        assert_eq!(fresh.claim(1, &ip), Some(offset));
        assert_eq!(fresh.claim(0, &ip), None, "not in node 0's block");
        let all: HashSet<String> = (0..pool.block)
            .map_while(|_| fresh.take(1))
            .map(|t| t.1)
            .collect();
        assert!(!all.contains(&ip));
    }

    #[test]
    fn node_ips_are_unique_loopback_addresses() {
        assert_eq!(node_ip(0), "127.0.100.1");
        assert_eq!(node_ip(2), "127.0.102.1");
        let ips: HashSet<String> = (0..1000).map(node_ip).collect();
        assert_eq!(ips.len(), 1000);
        for ip in &ips {
            let addr: std::net::Ipv4Addr = ip.parse().expect("valid address");
            assert!(addr.is_loopback(), "{ip}");
        }
    }

    #[test]
    fn queue_keeps_one_entry_per_pod_and_never_two_writes_at_once() {
        let mut q = Queue::default();
        let v = |n: &str| Arc::new(pod(&[(EXIT_CODE_ANNOTATION, n)], "Always"));
        let version = |p: &Pod| annotation(p, EXIT_CODE_ANNOTATION).map(str::to_string);
        assert!(q.push("a", v("1")));
        assert!(
            !q.push("a", v("2")),
            "a newer version replaces the waiting one"
        );
        assert!(q.push("b", v("1")));
        let (uid, p) = q.pop().expect("a waits");
        assert_eq!((uid.as_str(), version(&p).as_deref()), ("a", Some("2")));
        // While a is written, a newer version waits and is not handed to another writer.
        assert!(!q.push("a", v("3")));
        assert!(
            !q.push_if_absent("a", v("0")),
            "the tick never replaces a newer version"
        );
        assert_eq!(q.pop().map(|t| t.0).as_deref(), Some("b"));
        assert!(q.pop().is_none(), "a is busy");
        assert!(q.done("a"), "a newer version of a waits");
        let (uid, p) = q.pop().expect("a again");
        assert_eq!((uid.as_str(), version(&p).as_deref()), ("a", Some("3")));
        assert!(!q.done("a"));
        assert!(!q.done("b"));
        assert!(q.pop().is_none());
    }

    #[test]
    fn only_pods_whose_status_moves_with_time_are_ticked() {
        let plain = pod(&[], "Always");
        let later = pod(&[(READY_AFTER_ANNOTATION, "5")], "Always");
        let crash = pod(&[(BEHAVIOUR_ANNOTATION, "crashloop")], "Always");
        let pull = pod(&[(BEHAVIOUR_ANNOTATION, "image-pull")], "Always");
        let job = pod(&[], "Never");
        assert!(!may_change_with_time(&plain));
        assert!(!may_change_with_time(&job));
        assert!(may_change_with_time(&later));
        assert!(may_change_with_time(&crash));
        assert!(may_change_with_time(&pull));
        let m = mem();
        assert!(changes_with_time(&later, Behaviour::Ready, &m, at(2)));
        assert!(!changes_with_time(&later, Behaviour::Ready, &m, at(6)));
        assert!(changes_with_time(&crash, Behaviour::CrashLoop, &m, at(600)));
        assert!(changes_with_time(&pull, Behaviour::ImagePull, &m, at(1)));
        assert!(!changes_with_time(&pull, Behaviour::ImagePull, &m, at(10)));
        assert!(!changes_with_time(&plain, Behaviour::Ready, &m, at(1)));
    }

    #[test]
    fn job_pods_complete_by_default_and_fail_when_told() {
        let p = pod(&[], "Never");
        assert_eq!(behaviour_of(&p), Behaviour::Complete);
        let s = desired_status(&p, Behaviour::Complete, &mem(), "h", at(1));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let f = pod(&[(BEHAVIOUR_ANNOTATION, "fail")], "Never");
        assert_eq!(
            desired_status(&f, behaviour_of(&f), &mem(), "h", at(1))
                .phase
                .as_deref(),
            Some("Failed")
        );
    }

    #[test]
    fn ready_after_delays_readiness() {
        let p = pod(&[(READY_AFTER_ANNOTATION, "5")], "Always");
        assert!(!ready(&desired_status(
            &p,
            Behaviour::Ready,
            &mem(),
            "h",
            at(2)
        )));
        assert!(ready(&desired_status(
            &p,
            Behaviour::Ready,
            &mem(),
            "h",
            at(6)
        )));
    }

    #[test]
    fn unchanged_status_needs_no_write() {
        let p = pod(&[], "Always");
        let s1 = desired_status(&p, Behaviour::Ready, &mem(), "h", at(1));
        let s2 = desired_status(&p, Behaviour::Ready, &mem(), "h", at(50));
        assert!(status_matches(Some(&s1), &s2));
        let crash = desired_status(&p, Behaviour::CrashLoop, &mem(), "h", at(50));
        assert!(!status_matches(Some(&s1), &crash));
    }
}
