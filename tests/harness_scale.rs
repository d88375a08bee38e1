//! The harness is not the bottleneck of a benchmark: the Service range holds more than a /24,
//! the node simulator brings pods up by watching (and lists nothing while idle), and
//! controllers can run as ordinary ServiceAccounts whose requests the API server counts.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use e2e::controlplane::ControlPlane;
use e2e::identity::{remove_service_account, requests_by_verb, service_account_kubeconfig};
use e2e::nodesim::NodeSim;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const SERVICES: usize = 300;

#[tokio::test]
async fn three_hundred_services_all_get_a_cluster_ip() {
    TestEnv::run("many-services", |env| async move {
        let api: Api<Service> = env.api();
        for i in 0..SERVICES {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("s-{i}")},
                "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}
            }))?;
            api.create(&PostParams::default(), &svc)
                .await
                .with_context(|| format!("creating Service s-{i}"))?;
        }
        let list = api.list(&ListParams::default()).await?;
        let ips: HashSet<String> = list
            .items
            .iter()
            .filter_map(|s| s.spec.as_ref()?.cluster_ip.clone())
            .filter(|ip| ip != "None")
            .collect();
        ensure!(
            list.items.len() == SERVICES && ips.len() == SERVICES,
            "{} Services, {} distinct cluster IPs",
            list.items.len(),
            ips.len()
        );
        Ok(())
    })
    .await;
}

/// What the node simulator may do: register and renew its Nodes, watch pods, write their
/// status, confirm their deletion.
fn node_rules() -> serde_json::Value {
    json!([
        {"apiGroups": [""], "resources": ["nodes", "nodes/status", "pods", "pods/status"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "list", "watch", "create", "update", "patch"]}
    ])
}

const PODS: usize = 1500;
const REPLICA_SETS: usize = 15;
const NODES: usize = 6;

/// 1,500 pods need more room than the shared cluster's 3 x 250, and adding Nodes to the shared
/// cluster would leave them behind (NotReady, with pods of other tests bound to them) when this
/// test ends; so this test starts its own control plane with 6 Nodes of 250 pods. Its only
/// clients are the controller manager, the scheduler and this node simulator, which runs as a
/// ServiceAccount so the API server counts its requests by verb.
#[tokio::test]
async fn node_simulator_brings_up_1500_pods_and_lists_nothing_while_idle() -> anyhow::Result<()> {
    let mut cp = ControlPlane::start(Default::default()).await?;
    let result = pods_through_the_simulator(&cp).await;
    if result.is_err() {
        eprintln!("{}", cp.logs(20));
    }
    cp.stop();
    result
}

async fn pods_through_the_simulator(cp: &ControlPlane) -> anyhow::Result<()> {
    let admin = cp.client().await?;
    let account = "node-sim";
    let kubeconfig = service_account_kubeconfig(
        &admin,
        &cp.kubeconfig,
        "kube-system",
        account,
        node_rules(),
        &cp.state_dir.join("node-sim.kubeconfig"),
    )
    .await?;
    let sim_client = e2e::controlplane::client_from_kubeconfig(&kubeconfig).await?;
    let _sim = NodeSim::start(sim_client, "scale-node", NODES).await?;

    let ns = "pods";
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let started = Instant::now();
    let rs_api: Api<ReplicaSet> = Api::namespaced(admin.clone(), ns);
    for i in 0..REPLICA_SETS {
        let name = format!("rs-{i}");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": PODS / REPLICA_SETS,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
                }
            }
        }))?;
        rs_api.create(&PostParams::default(), &rs).await?;
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    wait_for(
        "1,500 pods Running and Ready",
        Duration::from_secs(100),
        || async {
            let list = pods.list(&ListParams::default()).await?;
            let ready = list.items.iter().filter(|p| is_ready(p)).count();
            Ok((ready == PODS).then_some(()))
        },
    )
    .await?;
    let up = started.elapsed();
    let ips: HashSet<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ensure!(ips.len() == PODS, "{} distinct pod IPs", ips.len());

    // Idle: wait until the simulator has sent nothing but lease renewals for a moment, then
    // count a window. (The window is the measurement, not a wait for something to happen.)
    let before = settled(&admin, account).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = requests_by_verb(&admin, account).await?;
    let delta: BTreeMap<&String, f64> = after
        .iter()
        .map(|(verb, n)| (verb, n - before.get(verb).copied().unwrap_or(0.0)))
        .collect();
    eprintln!(
        "{PODS} pods Running and Ready {:.1} s after their ReplicaSets were created; \
         the simulator's requests while idle for 15 s, by verb: {delta:?}; in all: {after:?}",
        up.as_secs_f64()
    );
    ensure!(
        after.get("list").copied().unwrap_or(0.0) > 0.0
            && after.get("patch").copied().unwrap_or(0.0) >= PODS as f64,
        "the FlowSchemas counted the simulator's work: {after:?}"
    );
    for verb in ["list", "get", "update", "create", "delete"] {
        ensure!(
            delta.get(&verb.to_string()).copied().unwrap_or(0.0) == 0.0,
            "idle, the simulator sent {verb} requests: {delta:?}"
        );
    }
    // Only the leases of the Nodes are renewed (one patch per Node every 5 s, and their Node
    // status every 50 s): no pod status writes.
    let patches = delta.get(&"patch".to_string()).copied().unwrap_or(0.0);
    ensure!(
        patches <= (NODES * 5) as f64,
        "idle, the simulator sent {patches} patches"
    );
    Ok(())
}

/// Waits until the simulator's request counts other than patches (lease renewals) have stayed
/// still for 3 s, and returns them.
async fn settled(client: &Client, account: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let last = std::cell::RefCell::new((BTreeMap::<String, f64>::new(), Instant::now()));
    wait_for(
        "the node simulator idle",
        Duration::from_secs(60),
        || async {
            let mut now = requests_by_verb(client, account).await?;
            let counts = now.clone();
            now.remove("patch");
            let mut l = last.borrow_mut();
            if now != l.0 {
                *l = (now, Instant::now());
                return Ok(None);
            }
            Ok((l.1.elapsed() >= Duration::from_secs(3)).then_some(counts))
        },
    )
    .await
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test]
async fn a_service_account_gets_what_its_rules_allow_and_is_counted_by_verb() {
    TestEnv::run("identity", |env| async move {
        let name = format!("reader-{}", env.namespace);
        let result = async {
            let out = std::env::temp_dir().join(format!("{name}.kubeconfig"));
            let kubeconfig = service_account_kubeconfig(
                &env.client,
                &env.cluster.kubeconfig,
                &env.namespace,
                &name,
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]),
                &out,
            )
            .await?;
            let admin_cms: Api<ConfigMap> = env.api();
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "v"}}))?;
            admin_cms.create(&PostParams::default(), &cm).await?;

            let before = requests_by_verb(&env.client, &name).await?;
            let client = e2e::controlplane::client_from_kubeconfig(&kubeconfig).await?;
            let cms: Api<ConfigMap> = Api::namespaced(client, &env.namespace);
            cms.list(&ListParams::default()).await?;
            cms.list(&ListParams::default()).await?;
            let got = cms.get("c").await?;
            ensure!(got.data.and_then(|d| d.get("k").cloned()).as_deref() == Some("v"));
            let refused = cms
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "d"}}))?,
                )
                .await;
            match refused {
                Err(kube::Error::Api(e)) if e.code == 403 => {}
                other => anyhow::bail!("a create outside the rules: {other:?}"),
            }
            let after = requests_by_verb(&env.client, &name).await?;
            let delta: BTreeMap<String, f64> = after
                .iter()
                .map(|(v, n)| (v.clone(), n - before.get(v).copied().unwrap_or(0.0)))
                .collect();
            let want: BTreeMap<String, f64> = [
                ("get", 1.0),
                ("list", 2.0),
                ("watch", 0.0),
                ("create", 1.0),
                ("update", 0.0),
                ("patch", 0.0),
                ("delete", 0.0),
            ]
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect();
            ensure!(delta == want, "counted by verb: {delta:?}, want {want:?}");
            Ok(())
        }
        .await;
        remove_service_account(&env.client, &name).await?;
        result
    })
    .await;
}
