//! The node simulator: plays the kubelet for a few Nodes, so the real scheduler, ReplicaSet,
//! EndpointSlice and garbage-collection controllers see realistic Nodes and pods.
//!
//! It registers Nodes, renews their Leases, and writes the status of each pod bound to them:
//! Running and Ready by default. Nothing ever connects to a simulated pod or Node:
//!
//! - Node addresses are on loopback (`127.0.10N.1`), so even an API server call that would
//!   reach a kubelet (`kubectl logs`, `exec`) stays on this machine and is refused.
//! - Pod IPs come from `198.18.0.0/15`, the range reserved for network benchmark tests
//!   (RFC 2544; neither private nor public). The loopback range cannot be used: the API server
//!   refuses loopback addresses in EndpointSlices, and the real EndpointSlice controller must
//!   be able to list the pods. The traffic simulator routes requests in-process and never
//!   opens a connection to a pod IP.
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

use std::collections::{BTreeMap, HashMap};
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
use tokio::sync::Mutex;
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
}

/// What the simulator remembers per pod (all of it can be rebuilt from the pod's status).
#[derive(Clone, Debug)]
struct PodMemory {
    ip: String,
    first_seen: Timestamp,
}

struct State {
    nodes: Vec<String>,
    node_ips: HashMap<String, String>,
    pods: HashMap<String, PodMemory>,
    next_ip: HashMap<String, u32>,
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

/// The `n`th pod IP of node `idx`: `198.18.(idx*8 + n/250).(2 + n%250)`, 2000 per node.
fn pod_ip(idx: usize, n: u32) -> String {
    let third = (idx as u32 * 8 + (n / 250) % 8) % 256;
    format!("198.18.{third}.{}", 2 + n % 250)
}

fn node_ip(i: usize) -> String {
    format!("127.0.{}.1", 100 + i)
}

impl NodeSim {
    /// Registers `count` Nodes named `{prefix}-{i}` and starts simulating their kubelets.
    pub async fn start(client: Client, prefix: &str, count: usize) -> Result<Self, NodeSimError> {
        let nodes: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let node_api: Api<Node> = Api::all(client.clone());
        for (i, name) in nodes.iter().enumerate() {
            register_node(&node_api, name, &node_ip(i)).await?;
        }
        let state = Arc::new(Mutex::new(State {
            nodes: nodes.clone(),
            node_ips: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), node_ip(i)))
                .collect(),
            pods: HashMap::new(),
            next_ip: HashMap::new(),
        }));
        let tasks = vec![
            tokio::spawn(heartbeat_loop(client.clone(), nodes.clone())),
            tokio::spawn(pod_loop(client.clone(), state.clone())),
            tokio::spawn(tick_loop(client, state)),
        ];
        Ok(NodeSim { nodes, tasks })
    }
}

async fn register_node(api: &Api<Node>, name: &str, ip: &str) -> Result<(), NodeSimError> {
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
    let status = node_status(ip);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Node", "status": status})),
    )
    .await?;
    Ok(())
}

fn node_status(ip: &str) -> NodeStatus {
    let t = Time(now());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", "32"),
        ("memory", "128Gi"),
        ("pods", "250"),
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
async fn heartbeat_loop(client: Client, nodes: Vec<String>) {
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
                let status = serde_json::json!({"apiVersion": "v1", "kind": "Node", "status": node_status(&node_ip(i))});
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

/// Reacts to every pod change at once.
async fn pod_loop(client: Client, state: Arc<Mutex<State>>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher(pods.clone(), watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                if let Err(e) = reconcile_pod(&pods, &state, &pod).await {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "pod status");
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid {
                    state.lock().await.pods.remove(&uid);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "pod watch");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Moves time-based behaviour along: delayed readiness, crash loops' restart counts.
async fn tick_loop(client: Client, state: Arc<Mutex<State>>) {
    let pods: Api<Pod> = Api::all(client);
    loop {
        tokio::time::sleep(TICK).await;
        let list = match pods.list(&Default::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "listing pods");
                continue;
            }
        };
        for pod in list.items {
            if let Err(e) = reconcile_pod(&pods, &state, &pod).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "pod status");
            }
        }
    }
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

async fn reconcile_pod(
    api: &Api<Pod>,
    state: &Arc<Mutex<State>>,
    pod: &Pod,
) -> Result<(), NodeSimError> {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(());
    };
    let (Some(ns), Some(uid)) = (pod.metadata.namespace.clone(), pod.metadata.uid.clone()) else {
        return Ok(());
    };
    let mut st = state.lock().await;
    if !st.nodes.contains(&node) {
        return Ok(());
    }
    let api = Api::<Pod>::namespaced(api.clone().into_client(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        // The kubelet confirms a graceful deletion once the containers have stopped.
        drop(st);
        let _ = api
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await;
        return Ok(());
    }
    let existing_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    let memory = match st.pods.get(&uid) {
        Some(m) => m.clone(),
        None => {
            let ip = match existing_ip {
                Some(ip) => ip,
                None => {
                    let idx = st.nodes.iter().position(|n| n == &node).unwrap_or(0);
                    let counter = st.next_ip.entry(node.clone()).or_insert(10);
                    *counter += 1;
                    let n = *counter;
                    pod_ip(idx, n)
                }
            };
            let first_seen = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .unwrap_or_else(now);
            let m = PodMemory { ip, first_seen };
            st.pods.insert(uid.clone(), m.clone());
            m
        }
    };
    let host_ip = st.node_ips.get(&node).cloned().unwrap_or_default();
    drop(st);

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
    let ready_after: f64 = annotation(pod, READY_AFTER_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
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
                    let (reason, message) = if age < 4.0 {
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

    #[test]
    fn pod_ips_stay_in_the_benchmark_range_and_differ() {
        let ips: std::collections::HashSet<String> = (0..3)
            .flat_map(|node| (0..2000).map(move |n| pod_ip(node, n)))
            .collect();
        assert_eq!(ips.len(), 6000);
        for ip in &ips {
            let addr: std::net::Ipv4Addr = ip.parse().expect("valid address");
            let o = addr.octets();
            assert_eq!((o[0], o[1] & 0xfe), (198, 18), "{ip} outside 198.18.0.0/15");
            assert!(o[3] >= 2, "{ip}");
        }
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
