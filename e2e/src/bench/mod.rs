//! `sluice-e2e bench`: Sluice and Argo Rollouts side by side on one local API server, on the
//! same workload, one controller running at a time.
//!
//! For each size N a fresh control plane (`sluice-e2e up`, as its own process so its node
//! simulator's CPU is told apart) gets both workloads' Services and AnalysisTemplates. Then,
//! for each controller in turn, running as a ServiceAccount of its own (so the API server's
//! priority and fairness treats it as it would in a cluster, and counts its requests by verb
//! in per-verb FlowSchemas):
//!
//! 1. start it with none of its Rollouts present (memory when empty);
//! 2. create N Rollouts and a probe Rollout: time to all Healthy;
//! 3. wake every Rollout with an annotation that changes nothing: requests per no-op
//!    reconcile, by verb, from the API server's own counts; memory at steady state;
//! 4. time to safe with the others idle: the probe's canary is in its analysis step when its
//!    metric turns bad; from that moment until the release is aborted, the stable ReplicaSet
//!    has all its pods available and no other ReplicaSet keeps a pod;
//! 5. time to safe again while 10% of the N start a release at the same moment;
//! 6. a new image on all N at once: time to all paused at step 1, requests per reconcile;
//! 7. stop it.
//!
//! Then each is restarted with everything present (both workloads, so both see the same
//! world): time to its first full pass (every Rollout reconciled once) and memory after.

mod controller;
mod probe;
mod report;
mod track;
pub mod web;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use controller::{Binaries, Controller, Reconciles, SYSTEM_NAMESPACE};
use report::{ControllerFigures, ListFloor, Machine, SafeSplit, SizeReport};
use track::Tracker;
use web::GoodEndpoint;
use workload::{Flavour, Slot};

/// Options of one benchmark run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The sizes N to run, each on a fresh control plane.
    pub sizes: Vec<usize>,
    pub controllers: Vec<Flavour>,
    pub sluice_bin: PathBuf,
    /// The `sluice-e2e` binary (to start `up`).
    pub e2e_bin: PathBuf,
    /// Where state, logs and the JSON go.
    pub out_dir: PathBuf,
    pub per_namespace: usize,
    pub pods_per_node: usize,
    /// How long any one wait may take, at N = 1,000 (scaled with N, at least 5 minutes).
    pub limit_per_1000: Duration,
    /// Whether step 6 (a new image on all N at once) runs.
    pub update: bool,
}

/// Requests in flight from the benchmark's own writes (as the admin).
const WRITERS: usize = 32;

fn limit(opts: &BenchOptions, n: usize) -> Duration {
    opts.limit_per_1000
        .mul_f64(n as f64 / 1000.0)
        .max(Duration::from_secs(300))
}

/// Runs every size; prints the tables and writes `bench-<N>.json` for each.
pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.out_dir)?;
    let out_dir = std::fs::canonicalize(&opts.out_dir)?;
    let bins = Binaries {
        sluice: std::fs::canonicalize(&opts.sluice_bin)
            .with_context(|| format!("the Sluice binary {}", opts.sluice_bin.display()))?,
        argo_dir: if opts.controllers.contains(&Flavour::Argo) {
            eprintln!("bench: Argo Rollouts' controller (built once, then cached)");
            Some(tokio::task::spawn_blocking(crate::argo::build).await??)
        } else {
            None
        },
    };
    let debug_build = bins.sluice.components().any(|c| c.as_os_str() == "debug");
    let mut reports = Vec::new();
    for &n in &opts.sizes {
        let r = run_size(&opts, &bins, &out_dir, n).await?;
        let mut r = r;
        if debug_build {
            r.notes.push(
                "Sluice is a debug build here: its figures are not representative \
                 (`make bench` builds a release)"
                    .into(),
            );
        }
        let path = out_dir.join(format!("bench-{n}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&r)?)?;
        println!("{}", report::table(&r));
        println!("JSON: {}", path.display());
        reports.push(r);
    }
    let lacking: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            report::missing(r)
                .into_iter()
                .map(move |m| format!("N = {}: {m}", r.rollouts))
        })
        .collect();
    if !lacking.is_empty() {
        bail!(
            "some figures could not be measured (see the tables above):\n  {}",
            lacking.join("\n  ")
        );
    }
    Ok(())
}

/// The control plane of one size, as a child process.
struct Plane {
    child: std::process::Child,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_plane(opts: &BenchOptions, dir: &Path, nodes: usize) -> anyhow::Result<Plane> {
    let state = dir.join("cluster");
    let env_file = dir.join("env");
    let _ = std::fs::remove_file(&env_file);
    let log = dir.join("up.log");
    let file = std::fs::File::create(&log)?;
    let child = std::process::Command::new(&opts.e2e_bin)
        .arg("up")
        .arg("--state-dir")
        .arg(&state)
        .arg("--env-file")
        .arg(&env_file)
        .arg("--nodes")
        .arg(nodes.to_string())
        .arg("--pods-per-node")
        .arg(opts.pods_per_node.to_string())
        .arg("--exit-with-parent")
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting sluice-e2e up")?;
    let mut plane = Plane {
        child,
        kubeconfig: PathBuf::new(),
        state_dir: state.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            let kc = text
                .lines()
                .find_map(|l| l.strip_prefix("export SLUICE_E2E_KUBECONFIG="))
                .context("no kubeconfig in the env file")?;
            plane.kubeconfig = PathBuf::from(kc);
            plane.state_dir = std::fs::canonicalize(&state)?;
            return Ok(plane);
        }
        if let Some(status) = plane.child.try_wait()? {
            bail!(
                "the control plane stopped ({status}):\n{}",
                crate::controlplane::tail(&log, 30)
            );
        }
        if Instant::now() > deadline {
            bail!("the control plane was not up within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often a long write or wait prints how far it has come.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Creates `objects` (JSON with apiVersion, kind, namespace) as the admin, `WRITERS` at a time;
/// prints how many are done every [`PROGRESS_EVERY`] while it takes longer than that.
async fn create_all(client: &Client, what: &str, objects: Vec<Value>) -> anyhow::Result<()> {
    let total = objects.len();
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut done = 0usize;
    let mut writes = stream::iter(objects)
        .map(|o| {
            let client = client.clone();
            async move { create(&client, o).await }
        })
        .buffer_unordered(WRITERS);
    while let Some(r) = writes.next().await {
        r?;
        done += 1;
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            eprintln!(
                "bench:   creating {what}: {done} of {total} after {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn dynamic_api(client: &Client, o: &Value) -> anyhow::Result<Api<DynamicObject>> {
    let api_version = o["apiVersion"].as_str().context("apiVersion")?;
    let kind = o["kind"].as_str().context("kind")?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let ar =
        kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
    Ok(match o["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    })
}

async fn create(client: &Client, o: Value) -> anyhow::Result<()> {
    let api = dynamic_api(client, &o)?;
    let mut obj: DynamicObject = serde_json::from_value(o.clone())?;
    let mut tries = 0;
    loop {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            // A cluster IP the benchmark chose that is taken: let the API server choose.
            Err(kube::Error::Api(e))
                if e.code == 422 && e.message.contains("already allocated") && tries < 20 =>
            {
                tries += 1;
                obj.data["spec"]["clusterIP"] = Value::Null;
            }
            // Throttled or the server is busy: try again a little later.
            Err(kube::Error::Api(e)) if (e.code == 429 || e.code >= 500) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "creating {} {}/{}",
                        o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]
                    )
                });
            }
        }
    }
}

/// Merge-patches each of `slots` of `flavour` with `patch` (`status` for the status
/// subresource), `WRITERS` at a time.
async fn patch_all(
    client: &Client,
    flavour: Flavour,
    slots: &[Slot],
    patch: &Value,
    status: bool,
) -> anyhow::Result<()> {
    let ar = track::resource(flavour, "Rollout");
    stream::iter(slots.iter().cloned())
        .map(|slot| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &slot.namespace, &ar);
            let patch = patch.clone();
            async move {
                let mut tries = 0;
                loop {
                    let p = Patch::Merge(&patch);
                    let r = if status {
                        api.patch_status(&slot.name, &PatchParams::default(), &p)
                            .await
                    } else {
                        api.patch(&slot.name, &PatchParams::default(), &p).await
                    };
                    match r {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e))
                            if (e.code == 409 || e.code == 429 || e.code >= 500) && tries < 20 =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                        }
                        Err(e) => {
                            return Err(anyhow::Error::from(e)).with_context(|| {
                                format!("patching {}/{}", slot.namespace, slot.name)
                            });
                        }
                    }
                }
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The rules of Sluice's ClusterRole for the benchmark: what the controller reads and writes.
fn sluice_rules() -> Value {
    let all = json!([
        "get", "list", "watch", "create", "update", "patch", "delete"
    ]);
    let read = json!(["get", "list", "watch"]);
    json!([
        {"apiGroups": ["sluice.dev"], "resources": ["*"], "verbs": all},
        {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": all},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "update", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": all},
        {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "destinationrules"], "verbs": ["get", "list", "watch", "update", "patch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch", "update", "patch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": read}
    ])
}

/// The ServiceAccount name of a flavour's controller.
fn account(flavour: Flavour) -> String {
    format!("bench-{}", flavour.tag())
}

/// A snapshot of what is counted across a phase.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    at: Option<Instant>,
    requests: BTreeMap<String, f64>,
    reconciles: Reconciles,
    cpu: f64,
    apiserver_cpu: f64,
    plane_cpu: f64,
    machine_busy: f64,
}

struct Phase<'a> {
    client: &'a Client,
    http: &'a reqwest::Client,
    apiserver_pid: Option<u32>,
    plane_pid: u32,
}

impl Phase<'_> {
    async fn snapshot(&self, c: &mut Controller) -> anyhow::Result<Snapshot> {
        let requests = crate::identity::requests_by_verb(self.client, &account(c.flavour)).await?;
        let reconciles = c.reconciles(self.http).await?;
        let cpu = c.stats()?.cpu_seconds;
        let cpu_of = |pid: Option<u32>| {
            pid.and_then(probe::proc_stats)
                .map(|s| s.cpu_seconds)
                .unwrap_or(0.0)
        };
        Ok(Snapshot {
            at: Some(Instant::now()),
            requests,
            reconciles,
            cpu,
            apiserver_cpu: cpu_of(self.apiserver_pid),
            plane_cpu: cpu_of(Some(self.plane_pid)),
            machine_busy: probe::machine_busy_seconds().unwrap_or(0.0),
        })
    }
}

/// What changed between two snapshots.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Delta {
    pub seconds: f64,
    pub reconciles: f64,
    /// Requests the API server dispatched for the controller, by verb.
    pub requests: BTreeMap<String, f64>,
    pub cpu_seconds: f64,
    pub apiserver_cpu_seconds: f64,
    /// CPU of the harness process (control plane supervisor and node simulator).
    pub harness_cpu_seconds: f64,
    /// CPU time every process of the machine used (all cores; from `/proc/stat`).
    pub machine_cpu_seconds: f64,
}

fn delta(a: &Snapshot, b: &Snapshot) -> Delta {
    let seconds = match (a.at, b.at) {
        (Some(x), Some(y)) => y.duration_since(x).as_secs_f64(),
        _ => 0.0,
    };
    Delta {
        seconds,
        reconciles: b.reconciles.since(&a.reconciles).count,
        requests: b
            .requests
            .iter()
            .map(|(k, v)| (k.clone(), v - a.requests.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d > 0.0)
            .collect(),
        cpu_seconds: b.cpu - a.cpu,
        apiserver_cpu_seconds: b.apiserver_cpu - a.apiserver_cpu,
        harness_cpu_seconds: b.plane_cpu - a.plane_cpu,
        machine_cpu_seconds: b.machine_busy - a.machine_busy,
    }
}

async fn run_size(
    opts: &BenchOptions,
    bins: &Binaries,
    out_dir: &Path,
    n: usize,
) -> anyhow::Result<SizeReport> {
    let machine_before = Machine::now();
    let dir = out_dir.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Pods at the peak: 3 stable and 1 canary per Rollout, for each flavour; room to spare.
    let pods = (n + 1) * 4 * opts.controllers.len();
    let nodes = (pods * 5 / 4).div_ceil(opts.pods_per_node).max(3);
    eprintln!(
        "bench: N = {n}: starting a control plane with {nodes} simulated nodes of {} pods",
        opts.pods_per_node
    );
    let plane = start_plane(opts, &dir, nodes).await?;
    let client = crate::controlplane::client_from_kubeconfig(&plane.kubeconfig).await?;
    let http = reqwest::Client::new();
    let apiserver_pid = probe::find_process(&format!(
        "--cert-dir={}",
        plane.state_dir.join("apiserver-certs").display()
    ));
    let phase = Phase {
        client: &client,
        http: &http,
        apiserver_pid,
        plane_pid: plane.child.id(),
    };
    let good = GoodEndpoint::start().await?;
    let mut notes = Vec::new();
    if apiserver_pid.is_none() {
        notes.push("the API server's process was not found: its CPU is not reported".into());
    }

    // Everything both workloads need before any controller runs.
    let t_setup = Instant::now();
    if opts.controllers.contains(&Flavour::Argo) {
        let dir = bins.argo_dir.as_ref().context("Argo's build")?;
        crate::argo::install(&client, dir).await?;
        crate::argo::prepare_namespace(&client, SYSTEM_NAMESPACE).await?;
    }
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let _ = ns_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": SYSTEM_NAMESPACE}}))?,
        )
        .await;
    let mut kubeconfigs = BTreeMap::new();
    for &f in &opts.controllers {
        let rules = match f {
            Flavour::Sluice => sluice_rules(),
            Flavour::Argo => {
                crate::argo::controller_rules(bins.argo_dir.as_ref().context("Argo's build")?)?
            }
        };
        let kc = crate::identity::service_account_kubeconfig(
            &client,
            &plane.kubeconfig,
            SYSTEM_NAMESPACE,
            &account(f),
            rules,
            &dir.join(format!("{}.kubeconfig", account(f))),
        )
        .await?;
        kubeconfigs.insert(f, kc);
    }
    let mut all_slots = BTreeMap::new();
    let mut next_ip = 0u32;
    for &f in &opts.controllers {
        let slots = workload::slots(f, n, opts.per_namespace);
        let probe = Slot {
            namespace: workload::probe_namespace(f),
            name: workload::PROBE.into(),
        };
        let mut namespaces: Vec<String> = slots.iter().map(|s| s.namespace.clone()).collect();
        namespaces.push(probe.namespace.clone());
        namespaces.dedup();
        create_all(
            &client,
            "namespaces",
            namespaces
                .iter()
                .map(
                    |ns| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .collect(),
        )
        .await?;
        let mut objects: Vec<Value> = namespaces
            .iter()
            .map(|ns| workload::template(f, ns, &good.base))
            .collect();
        for s in slots.iter().chain([&probe]) {
            objects.extend(workload::services(s, Some(next_ip)));
            next_ip += 2;
        }
        create_all(&client, "Services and AnalysisTemplates", objects).await?;
        all_slots.insert(f, (slots, probe));
    }
    eprintln!(
        "bench: N = {n}: namespaces, Services and AnalysisTemplates of {} in {:.0} s",
        opts.controllers
            .iter()
            .map(|f| f.title())
            .collect::<Vec<_>>()
            .join(" and "),
        t_setup.elapsed().as_secs_f64()
    );

    let mut figures: BTreeMap<Flavour, ControllerFigures> = BTreeMap::new();
    for &f in &opts.controllers {
        let (slots, probe) = &all_slots[&f];
        let kc = &kubeconfigs[&f];
        let fig = measure(opts, bins, &phase, &good, &dir, f, kc, slots, probe, n)
            .await
            .with_context(|| format!("{} at N = {n}", f.title()))?;
        figures.insert(f, fig);
    }
    // Restarts with everything present: both see the same world.
    for &f in &opts.controllers {
        let fig = figures.entry(f).or_default();
        restart(opts, bins, &phase, &dir, f, &kubeconfigs[&f], n, fig)
            .await
            .with_context(|| format!("restarting {} at N = {n}", f.title()))?;
    }
    drop(plane);
    Ok(SizeReport {
        rollouts: n,
        per_namespace: opts.per_namespace,
        nodes,
        pods_per_node: opts.pods_per_node,
        machine_before,
        machine_after: Machine::now(),
        controllers: figures,
        notes,
        update_left_out: !opts.update,
    })
}

/// Steps 1-7 for one controller.
#[allow(clippy::too_many_arguments)]
async fn measure(
    opts: &BenchOptions,
    bins: &Binaries,
    phase: &Phase<'_>,
    good: &GoodEndpoint,
    dir: &Path,
    f: Flavour,
    kubeconfig: &Path,
    slots: &[Slot],
    probe: &Slot,
    n: usize,
) -> anyhow::Result<ControllerFigures> {
    let mut fig = ControllerFigures::default();
    let limit = limit(opts, n);
    let title = f.title();
    eprintln!("bench: {title}: starting with none of its Rollouts present");
    let mut c = Controller::start(
        f,
        bins,
        kubeconfig,
        &dir.join(format!("{}.log", account(f))),
    )?;
    c.wait_serving(phase.http).await?;
    // Settled when its reconcile count stays put for 5 s.
    settle(&mut c, phase.http).await?;
    fig.rss_empty_mib = Some(mib(c.stats()?.rss_kib));
    eprintln!(
        "bench: {title}: {:.0} MiB resident with none of its Rollouts",
        fig.rss_empty_mib.unwrap_or_default()
    );
    let tracker = Tracker::start(phase.client, f).await?;

    // 2. Create N + the probe: all Healthy.
    let start = phase.snapshot(&mut c).await?;
    let t0 = Instant::now();
    let mut objects: Vec<Value> = slots.iter().map(|s| workload::rollout(f, s)).collect();
    objects.push(workload::rollout(f, probe));
    create_all(phase.client, "Rollouts", objects).await?;
    let created = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench: {title}: {} Rollouts created in {created:.0} s",
        n + 1
    );
    fig.create_seconds = Some(created);
    match tracker
        .wait_for("Healthy", n + 1, t0, limit, track::healthy)
        .await
    {
        Ok(s) => fig.healthy_seconds = Some(s),
        Err(short) => {
            fig.shortfalls.push(short.to_string());
            eprintln!("bench: {title}: {short}");
            c.stop().await?;
            return Ok(fig);
        }
    }
    eprintln!(
        "bench: {title}: all {} Healthy {:.1} s after the first was created",
        n + 1,
        fig.healthy_seconds.unwrap_or_default()
    );
    let healthy = phase.snapshot(&mut c).await?;
    fig.create_phase = Some(delta(&start, &healthy));

    // 3. No-op reconciles.
    let mut everyone: Vec<Slot> = slots.to_vec();
    everyone.push(probe.clone());
    settle(&mut c, phase.http).await?;
    let before = phase.snapshot(&mut c).await?;
    patch_all(phase.client, f, &everyone, &workload::poke_patch(1), false).await?;
    let want = before.reconciles.count + (n + 1) as f64;
    let t = Instant::now();
    loop {
        let r = c.reconciles(phase.http).await?;
        if r.count >= want {
            break;
        }
        if t.elapsed() > limit {
            fig.shortfalls.push(format!(
                "no-op reconciles: {} of {} after {:.0} s",
                r.count - before.reconciles.count,
                n + 1,
                t.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    settle(&mut c, phase.http).await?;
    let after = phase.snapshot(&mut c).await?;
    fig.noop = Some(delta(&before, &after));
    let s = c.stats()?;
    fig.rss_steady_mib = Some(mib(s.rss_kib));
    eprintln!(
        "bench: {title}: {:.0} MiB resident with {} Healthy, after a no-op reconcile of each",
        mib(s.rss_kib),
        n + 1
    );

    // 4. Time to safe, the others idle.
    match time_to_safe(phase, good, &tracker, f, probe, 2, None, limit).await {
        Ok(t) => {
            fig.time_to_safe_idle_seconds = Some(t.safe);
            fig.time_to_safe_idle_split = Some(t);
        }
        Err(e) => fig.shortfalls.push(format!("time to safe (idle): {e:#}")),
    }
    // 5. Again while 10% start a release.
    let tenth: Vec<Slot> = slots.iter().take(n.div_ceil(10)).cloned().collect();
    match time_to_safe(
        phase,
        good,
        &tracker,
        f,
        probe,
        3,
        Some((&tenth[..], 2)),
        limit,
    )
    .await
    {
        Ok(t) => {
            fig.time_to_safe_busy_seconds = Some(t.safe);
            fig.time_to_safe_busy_split = Some(t);
        }
        Err(e) => fig
            .shortfalls
            .push(format!("time to safe (10% releasing): {e:#}")),
    }
    let releasing: std::collections::HashSet<(String, String)> = tenth
        .iter()
        .map(|s| (s.namespace.clone(), s.name.clone()))
        .collect();
    tracker
        .wait_for(
            "the 10% paused at step 1",
            tenth.len(),
            Instant::now(),
            limit,
            |o| {
                let key = (
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                );
                releasing.contains(&key)
                    && track::paused_at(o, 1)
                    && image_of(o) == Some(workload::image(2))
            },
        )
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;

    // 6. A new image on all N at once.
    let after = if opts.update {
        update_all(phase, &tracker, &mut c, f, slots, n, limit, &mut fig).await?
    } else {
        settle(&mut c, phase.http).await?;
        phase.snapshot(&mut c).await?
    };
    let whole = delta(&start, &after);
    fig.reconcile_p50_ms = after
        .reconciles
        .since(&start.reconciles)
        .latency
        .quantile(0.5)
        .map(|s| s * 1000.0);
    fig.reconcile_p99_ms = after
        .reconciles
        .since(&start.reconciles)
        .latency
        .quantile(0.99)
        .map(|s| s * 1000.0);
    if whole.reconciles > 0.0 {
        fig.cpu_seconds_per_1000_reconciles = Some(whole.cpu_seconds * 1000.0 / whole.reconciles);
    }
    fig.latency_buckets = after
        .reconciles
        .latency
        .buckets
        .iter()
        .map(|b| b.0)
        .collect();
    fig.peak_mib = Some(mib(c.stats()?.peak_kib));
    fig.whole = Some(whole);
    drop(tracker);
    c.stop().await?;
    Ok(fig)
}

/// Step 6, a new image on all N at once: the time until all are paused at step 1, and the
/// requests of the phase. Returns the snapshot at its end.
#[allow(clippy::too_many_arguments)]
async fn update_all(
    phase: &Phase<'_>,
    tracker: &Tracker,
    c: &mut Controller,
    f: Flavour,
    slots: &[Slot],
    n: usize,
    limit: Duration,
    fig: &mut ControllerFigures,
) -> anyhow::Result<Snapshot> {
    let title = f.title();
    settle(c, phase.http).await?;
    let before = phase.snapshot(c).await?;
    let t0 = Instant::now();
    patch_all(phase.client, f, slots, &workload::image_patch(3), false).await?;
    let is_slot = |o: &DynamicObject| o.metadata.name.as_deref() != Some(workload::PROBE);
    match tracker
        .wait_for("paused at step 1", n, t0, limit, |o| {
            is_slot(o) && track::paused_at(o, 1) && image_of(o) == Some(workload::image(3))
        })
        .await
    {
        Ok(s) => {
            fig.update_to_paused_seconds = Some(s);
            eprintln!("bench: {title}: all {n} paused at step 1 {s:.1} s after the update");
        }
        Err(short) => {
            eprintln!("bench: {title}: {short}");
            fig.shortfalls.push(short.to_string());
        }
    }
    settle(c, phase.http).await?;
    let after = phase.snapshot(c).await?;
    fig.update_phase = Some(delta(&before, &after));
    Ok(after)
}

/// The image of a Rollout's first container.
fn image_of(o: &DynamicObject) -> Option<String> {
    Some(
        o.data
            .pointer("/spec/template/spec/containers/0/image")?
            .as_str()?
            .to_string(),
    )
}

/// Waits until the controller's reconcile count has not moved for 5 s (at most 5 minutes).
async fn settle(c: &mut Controller, http: &reqwest::Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = c.reconciles(http).await?.count;
    let mut still_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.stats()?;
        let now = c.reconciles(http).await?.count;
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(5) {
            return Ok(());
        }
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The probe's release at `revision`: paused at step 1, promoted into its analysis step, one
/// good measurement taken; then its metric turns bad (and, with `also`, those Rollouts get
/// `also.1` at the same moment). From the bad turn until the release is aborted, the stable
/// ReplicaSet has all its pods available and no other ReplicaSet keeps a pod, with when the
/// bad answer was given, the abort was seen and the others were scaled to 0 on the way.
#[allow(clippy::too_many_arguments)]
async fn time_to_safe(
    phase: &Phase<'_>,
    good: &GoodEndpoint,
    tracker: &Tracker,
    f: Flavour,
    probe: &Slot,
    revision: u32,
    also: Option<(&[Slot], u32)>,
    limit: Duration,
) -> anyhow::Result<SafeSplit> {
    good.set_bad(&probe.namespace, &probe.name, false);
    let one = std::slice::from_ref(probe);
    patch_all(
        phase.client,
        f,
        one,
        &workload::image_patch(revision),
        false,
    )
    .await?;
    let is_probe = |o: &DynamicObject| o.metadata.name.as_deref() == Some(workload::PROBE);
    let t = Instant::now();
    tracker
        .wait_for("the probe paused at step 1", 1, t, limit, |o| {
            is_probe(o) && track::paused_at(o, 1) && image_of(o) == Some(workload::image(revision))
        })
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let asked = good.asked(&probe.namespace, &probe.name);
    patch_all(phase.client, f, one, &workload::promote_patch(), true).await?;
    let deadline = Instant::now() + limit;
    while good.asked(&probe.namespace, &probe.name) <= asked {
        if Instant::now() > deadline {
            bail!("the probe's analysis did not measure within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let others = also.map(|(slots, rev)| {
        let client = phase.client.clone();
        let slots = slots.to_vec();
        tokio::spawn(async move {
            patch_all(&client, f, &slots, &workload::image_patch(rev), false).await
        })
    });
    let t0 = Instant::now();
    good.set_bad(&probe.namespace, &probe.name, true);
    let sets: Api<ReplicaSet> = Api::namespaced(phase.client.clone(), &probe.namespace);
    let mut split = SafeSplit::default();
    let since = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    let mut round = 0u32;
    let result = loop {
        if t0.elapsed() > limit {
            break Err(anyhow::anyhow!("not safe within {limit:?} ({split:?})"));
        }
        if split.answered_bad.is_none() {
            split.answered_bad = good
                .answered_bad_at(&probe.namespace, &probe.name)
                .map(since);
        }
        let ro = tracker.get(&probe.namespace, &probe.name);
        let aborted = ro.as_deref().is_some_and(track::aborted);
        if aborted && split.aborted.is_none() {
            split.aborted = Some(t0.elapsed().as_secs_f64());
        }
        // The status is read from the watch every 20 ms; the ReplicaSets are listed every
        // 100 ms (the scale-down may be written before or after the status).
        round += 1;
        if round % 5 == 1
            && let Some(stable) = ro.as_deref().and_then(track::stable_hash)
        {
            let list = sets.list(&ListParams::default()).await?;
            let state = replica_sets_state(&list.items, &stable);
            if state.others_scaled_down && split.scaled_down.is_none() {
                split.scaled_down = Some(t0.elapsed().as_secs_f64());
            }
            if aborted && state.safe {
                split.safe = t0.elapsed().as_secs_f64();
                break Ok(split);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if let Some(task) = others {
        task.await??;
    }
    good.set_bad(&probe.namespace, &probe.name, false);
    let r = result?;
    eprintln!(
        "bench: {}: time to safe {:.1} s{} (answered bad / aborted / scaled to 0 / safe: {})",
        f.title(),
        r.safe,
        if also.is_some() {
            " (10% releasing)"
        } else {
            " (others idle)"
        },
        report::split(Some(&r))
    );
    Ok(r)
}

/// What the probe's ReplicaSets say, the stable's hash known.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SetsState {
    /// Every ReplicaSet but the stable asks for 0 replicas.
    others_scaled_down: bool,
    /// ... and has no pod left, and the stable has all its pods available.
    safe: bool,
}

fn replica_sets_state(sets: &[ReplicaSet], stable: &str) -> SetsState {
    let mut state = SetsState {
        others_scaled_down: true,
        safe: true,
    };
    for rs in sets {
        let hash = rs
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rollouts-pod-template-hash"));
        let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let status = rs.status.as_ref();
        let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
        let pods = status.map(|s| s.replicas).unwrap_or(0);
        if hash.map(String::as_str) == Some(stable) {
            state.safe &= available >= workload::REPLICAS;
        } else {
            state.others_scaled_down &= spec == 0;
            state.safe &= spec == 0 && pods == 0;
        }
    }
    state
}

/// Restarts `f`'s controller with everything present: the time to its first full pass, and
/// its memory after.
#[allow(clippy::too_many_arguments)]
async fn restart(
    opts: &BenchOptions,
    bins: &Binaries,
    phase: &Phase<'_>,
    dir: &Path,
    f: Flavour,
    kubeconfig: &Path,
    n: usize,
    fig: &mut ControllerFigures,
) -> anyhow::Result<()> {
    let limit = limit(opts, n);
    if f == Flavour::Sluice {
        floor_try(kubeconfig, "before the restart", fig).await;
    }
    let t0 = Instant::now();
    let mut c = Controller::start(
        f,
        bins,
        kubeconfig,
        &dir.join(format!("{}-restart.log", account(f))),
    )?;
    let want = (n + 1) as f64;
    loop {
        // Each look reads the controller's whole /metrics (at 10,000 Rollouts, tens of
        // thousands of series it must encode), so the wait after it grows with what it took:
        // the benchmark's reads take at most a fifth of the controller's time.
        let asked = Instant::now();
        let read = c.reconciles(phase.http).await;
        let pause = Duration::from_millis(100).max(asked.elapsed() * 4);
        if let Ok(r) = read
            && r.count >= want
        {
            fig.first_pass_seconds = Some(t0.elapsed().as_secs_f64());
            fig.first_pass_cpu_seconds = Some(c.stats()?.cpu_seconds);
            break;
        }
        c.stats()?;
        if t0.elapsed() > limit {
            let got = c
                .reconciles(phase.http)
                .await
                .map(|r| r.count)
                .unwrap_or(0.0);
            fig.shortfalls.push(format!(
                "first pass after a restart: {got} of {want} reconciled after {:.0} s",
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(pause).await;
    }
    eprintln!(
        "bench: {}: first full pass {:.1} s after a restart ({:.1} CPU-seconds of its own)",
        f.title(),
        fig.first_pass_seconds.unwrap_or(f64::NAN),
        fig.first_pass_cpu_seconds.unwrap_or(f64::NAN)
    );
    settle(&mut c, phase.http).await?;
    let s = c.stats()?;
    fig.rss_restarted_mib = Some(mib(s.rss_kib));
    if f == Flavour::Sluice {
        floor_try(kubeconfig, "once its pass had settled", fig).await;
    }
    if let (Some(empty), n) = (fig.rss_empty_mib, n.max(1)) {
        fig.kib_per_rollout = Some((mib(s.rss_kib) - empty).max(0.0) * 1024.0 / n as f64);
    }
    eprintln!(
        "bench: {}: {:.0} MiB resident after the restart's first pass ({:.1} KiB per Rollout)",
        f.title(),
        mib(s.rss_kib),
        fig.kib_per_rollout.unwrap_or(f64::NAN)
    );
    c.stop().await?;
    Ok(())
}

/// What Sluice's caches list when it starts (`src/rollout/cache.rs`): (kind, path, label
/// selector, from the API server's watch cache when paged). Streamed (Sluice's choice on an
/// API server with WatchList, as the local control plane is), each kind comes from the watch
/// cache as the initial events of a watch; paged (`SLUICE_INITIAL_LISTS=paged`), built-in
/// kinds are read in pages of 500 from etcd, custom resources at any resource version (the
/// watch cache), as kube-runtime's watcher does with each cache's settings.
const SLUICE_LISTS: [(&str, &str, Option<&str>, bool); 8] = [
    ("Rollouts", "/apis/sluice.dev/v1alpha1/rollouts", None, true),
    (
        "ReplicaSets",
        "/apis/apps/v1/replicasets",
        Some("sluice.dev/rollout"),
        false,
    ),
    ("pods", "/api/v1/pods", Some("sluice.dev/rollout"), false),
    (
        "AnalysisRuns",
        "/apis/sluice.dev/v1alpha1/analysisruns",
        Some("sluice.dev/rollout"),
        true,
    ),
    (
        "AnalysisTemplates",
        "/apis/sluice.dev/v1alpha1/analysistemplates",
        None,
        true,
    ),
    (
        "ClusterAnalysisTemplates",
        "/apis/sluice.dev/v1alpha1/clusteranalysistemplates",
        None,
        false,
    ),
    ("Services", "/api/v1/services", None, false),
    ("Deployments", "/apis/apps/v1/deployments", None, false),
];

/// One page of a list: its objects are counted, not read.
#[derive(serde::Deserialize)]
struct Page {
    metadata: PageMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct PageMeta {
    #[serde(rename = "continue")]
    next: Option<String>,
}

/// One try of [`list_floor`]; the quicker of the tries is kept (the machine may still be
/// busy with the step before).
async fn floor_try(kubeconfig: &Path, when: &str, fig: &mut ControllerFigures) {
    match list_floor(kubeconfig).await {
        Ok(mut floor) => {
            floor.when = when.to_string();
            eprintln!("bench: {}", report::floor_line("Sluice", &floor));
            if fig
                .list_floor
                .as_ref()
                .is_none_or(|f| floor.seconds < f.seconds)
            {
                fig.list_floor = Some(floor);
            }
        }
        Err(e) => fig
            .shortfalls
            .push(format!("the same lists by a bare client ({when}): {e:#}")),
    }
}

/// Makes [`SLUICE_LISTS`] at once with the account in `kubeconfig`: when each kind was
/// complete, and how many objects it held.
async fn list_floor(kubeconfig: &Path) -> anyhow::Result<ListFloor> {
    let client = crate::controlplane::client_from_kubeconfig(kubeconfig).await?;
    let streamed = std::env::var("SLUICE_INITIAL_LISTS").ok().as_deref() != Some("paged");
    let t0 = Instant::now();
    let lists = SLUICE_LISTS.iter().map(|&(kind, path, labels, any)| {
        let client = client.clone();
        async move {
            if streamed {
                let count = initial_events(&client, kind, path, labels).await?;
                return anyhow::Ok((kind.to_string(), count, t0.elapsed().as_secs_f64()));
            }
            let mut count = 0usize;
            let mut next: Option<String> = None;
            loop {
                let mut lp = ListParams::default().limit(500);
                if let Some(l) = labels {
                    lp = lp.labels(l);
                }
                if any {
                    lp = lp.match_any();
                }
                if let Some(token) = next.take() {
                    lp = lp.continue_token(&token);
                }
                let req = kube::core::Request::new(path)
                    .list(&lp)
                    .with_context(|| format!("listing {kind}"))?;
                let page: Page =
                    tokio::time::timeout(Duration::from_secs(120), client.request(req))
                        .await
                        .with_context(|| format!("listing {kind}: no answer within 120 s"))?
                        .with_context(|| format!("listing {kind}"))?;
                count += page.items.len();
                match page.metadata.next.filter(|t| !t.is_empty()) {
                    Some(t) => next = Some(t),
                    None => break,
                }
            }
            anyhow::Ok((kind.to_string(), count, t0.elapsed().as_secs_f64()))
        }
    });
    let kinds = futures::future::try_join_all(lists).await?;
    Ok(ListFloor {
        seconds: t0.elapsed().as_secs_f64(),
        kinds,
        when: String::new(),
    })
}

/// Counts the initial events of a streamed watch of `path` (`sendInitialEvents`, from the
/// API server's watch cache), up to the bookmark that ends them.
async fn initial_events(
    client: &kube::Client,
    kind: &str,
    path: &str,
    labels: Option<&str>,
) -> anyhow::Result<usize> {
    let mut wp = kube::api::WatchParams::default()
        .initial_events()
        .timeout(120);
    if let Some(l) = labels {
        wp = wp.labels(l);
    }
    let req = kube::core::Request::new(path)
        .watch(&wp, "0")
        .with_context(|| format!("watching {kind}"))?;
    let counted = async {
        let mut events = client
            .request_events::<serde::de::IgnoredAny>(req)
            .await
            .with_context(|| format!("watching {kind}"))?
            .boxed();
        let mut count = 0usize;
        while let Some(e) = events.next().await {
            match e.with_context(|| format!("watching {kind}"))? {
                kube::api::WatchEvent::Added(_) | kube::api::WatchEvent::Modified(_) => count += 1,
                kube::api::WatchEvent::Bookmark(b)
                    if b.metadata
                        .annotations
                        .contains_key("k8s.io/initial-events-end") =>
                {
                    return Ok(count);
                }
                kube::api::WatchEvent::Error(e) => {
                    anyhow::bail!("watching {kind}: {} {}", e.code, e.message)
                }
                _ => {}
            }
        }
        anyhow::bail!("watching {kind}: the watch ended before its initial events did")
    };
    tokio::time::timeout(Duration::from_secs(120), counted)
        .await
        .with_context(|| format!("watching {kind}: initial events not over within 120 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(hash: &str, spec: i32, pods: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": hash, "labels": {"rollouts-pod-template-hash": hash}},
            "spec": {"replicas": spec, "selector": {}},
            "status": {"replicas": pods, "availableReplicas": available}
        }))
        .expect("replica set")
    }

    #[test]
    fn a_probe_is_safe_when_only_the_stable_keeps_pods_and_has_them_all() {
        let mid = [rs("s", 3, 3, 3), rs("c", 1, 1, 1)];
        let state = replica_sets_state(&mid, "s");
        assert!(!state.others_scaled_down && !state.safe, "{state:?}");
        let scaled = [rs("s", 3, 3, 3), rs("c", 0, 1, 1)];
        let state = replica_sets_state(&scaled, "s");
        assert!(
            state.others_scaled_down && !state.safe,
            "a pod is left: {state:?}"
        );
        let gone = [rs("s", 3, 3, 3), rs("c", 0, 0, 0)];
        assert!(replica_sets_state(&gone, "s").safe);
        let short = [rs("s", 3, 3, 2), rs("c", 0, 0, 0)];
        assert!(
            !replica_sets_state(&short, "s").safe,
            "the stable lacks a pod"
        );
    }
}
