//! The I/O of `kubectl sluice`'s cluster commands: read what a command needs, call the pure
//! parts (`tree`, `wait`, `control`, `edit`), write the patch, say what happened.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;

use super::cluster::{Action, CliError, Cluster, not_found_hint};
use super::control::{Control, status_patch};
use super::edit::{self, Target};
use super::tree::{self, Parts, Style};
use super::wait::{Outcome, outcome};
use crate::api::analysis::AnalysisRun;
use crate::api::constants::{FIELD_MANAGER_CLI, LABEL_ROLLOUT};
use crate::api::rollout::Rollout;

const ROLLOUTS: &str = "rollouts.sluice.dev";
const ROLLOUT_STATUS: &str = "rollouts.sluice.dev/status";

/// `-o`: text for people, JSON or YAML for tools.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
    Yaml,
}

/// Colour and symbols when stdout is a terminal and `NO_COLOR` is unset.
pub fn style(no_color: bool) -> Style {
    Style {
        color: !no_color
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stdout().is_terminal(),
    }
}

/// Writes to stdout now (for output that streams); a closed pipe ends the command quietly.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Closed),
        Err(e) => Err(CliError::Usage(format!("writing output: {e}"))),
    }
}

pub fn encode<T: Serialize>(value: &T, output: Output) -> Result<String, CliError> {
    match output {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Usage(e.to_string())),
        _ => serde_saphyr::to_string(value).map_err(|e| CliError::Usage(e.to_string())),
    }
}

fn rollouts(cl: &Cluster) -> Api<Rollout> {
    Api::namespaced(cl.client.clone(), &cl.namespace)
}

/// Reads Rollout `name`; when it is not there, the error names the close ones.
pub async fn fetch(cl: &Cluster, name: &str) -> Result<Rollout, CliError> {
    let get = Action::new("get", ROLLOUTS)
        .named(name)
        .in_ns(&cl.namespace);
    if let Some(ro) = cl.call(&get, rollouts(cl).get_opt(name)).await? {
        return Ok(ro);
    }
    let list = Action::new("list", ROLLOUTS).in_ns(&cl.namespace);
    let names: Vec<String> = cl
        .call(&list, rollouts(cl).list_metadata(&ListParams::default()))
        .await?
        .items
        .iter()
        .map(|m| m.name_any())
        .collect();
    Err(CliError::NotFound {
        kind: "rollout",
        name: name.to_string(),
        namespace: cl.namespace.clone(),
        hint: not_found_hint(name, &names, &cl.namespace),
    })
}

/// What a Rollout is made of, read once.
struct Owned {
    sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    runs: Vec<AnalysisRun>,
}

async fn owned(cl: &Cluster, name: &str) -> Result<Owned, CliError> {
    let lp = ListParams::default().labels(&format!("{LABEL_ROLLOUT}={name}"));
    let ns = &cl.namespace;
    let sets: Api<ReplicaSet> = Api::namespaced(cl.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(cl.client.clone(), ns);
    let runs: Api<AnalysisRun> = Api::namespaced(cl.client.clone(), ns);
    let (a_sets, a_pods, a_runs) = (
        Action::new("list", "replicasets.apps").in_ns(ns),
        Action::new("list", "pods").in_ns(ns),
        Action::new("list", "analysisruns.sluice.dev").in_ns(ns),
    );
    let (s, p, r) = futures::try_join!(
        cl.call(&a_sets, sets.list(&lp)),
        cl.call(&a_pods, pods.list(&lp)),
        cl.call(&a_runs, runs.list(&lp)),
    )?;
    Ok(Owned {
        sets: s.items,
        pods: p.items,
        runs: r.items,
    })
}

/// `get rollout NAME`.
pub async fn get(
    cl: &Cluster,
    name: &str,
    output: Output,
    style: Style,
) -> Result<String, CliError> {
    let ro = fetch(cl, name).await?;
    let o = owned(cl, name).await?;
    let parts = Parts {
        rollout: &ro,
        replica_sets: &o.sets,
        pods: &o.pods,
        runs: &o.runs,
    };
    let v = tree::view(&parts);
    match output {
        Output::Text => Ok(tree::render(&ro, &v, style)),
        _ => encode(&v, output),
    }
}

/// The objects of one kind as a watch delivers them, by name.
struct Mirror<K> {
    objects: BTreeMap<String, K>,
    pending: BTreeMap<String, K>,
    ready: bool,
}

impl<K: Resource + Clone> Mirror<K> {
    fn new() -> Self {
        Mirror {
            objects: BTreeMap::new(),
            pending: BTreeMap::new(),
            ready: false,
        }
    }

    fn apply(&mut self, ev: Event<K>) {
        match ev {
            Event::Apply(o) => {
                self.objects.insert(o.name_any(), o);
            }
            Event::Delete(o) => {
                self.objects.remove(&o.name_any());
            }
            Event::Init => self.pending.clear(),
            Event::InitApply(o) => {
                self.pending.insert(o.name_any(), o);
            }
            Event::InitDone => {
                self.objects = std::mem::take(&mut self.pending);
                self.ready = true;
            }
        }
    }

    fn all(&self) -> Vec<K> {
        self.objects.values().cloned().collect()
    }
}

/// One change seen by one of `watch`'s four watches.
enum Change {
    Rollout(Box<Event<Rollout>>),
    Set(Event<ReplicaSet>),
    Pod(Event<Pod>),
    Run(Event<AnalysisRun>),
    Failed(String),
}

/// `get rollout NAME --watch`: the tree again whenever a watched object changes (not polled).
/// On a terminal each view replaces the last; piped, views follow each other.
pub async fn watch(cl: &Cluster, name: &str, style: Style) -> Result<(), CliError> {
    // A first read says "not found" or "forbidden" at once instead of a silent wait.
    fetch(cl, name).await?;
    let ns = &cl.namespace;
    let by_name = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(cl.watch_timeout());
    let owned = watcher::Config::default()
        .labels(&format!("{LABEL_ROLLOUT}={name}"))
        .timeout(cl.watch_timeout());
    let failed = |e: watcher::Error| Change::Failed(e.to_string());
    let changes = stream::select_all([
        watcher(rollouts(cl), by_name)
            .map(|e| e.map_or_else(failed, |ev| Change::Rollout(Box::new(ev))))
            .boxed(),
        watcher(
            Api::<ReplicaSet>::namespaced(cl.client.clone(), ns),
            owned.clone(),
        )
        .map(|e| e.map_or_else(failed, Change::Set))
        .boxed(),
        watcher(Api::<Pod>::namespaced(cl.client.clone(), ns), owned.clone())
            .map(|e| e.map_or_else(failed, Change::Pod))
            .boxed(),
        watcher(Api::<AnalysisRun>::namespaced(cl.client.clone(), ns), owned)
            .map(|e| e.map_or_else(failed, Change::Run))
            .boxed(),
    ]);
    let mut changes = changes;
    let (mut ros, mut sets, mut pods, mut runs) =
        (Mirror::new(), Mirror::new(), Mirror::new(), Mirror::new());
    let mut last = String::new();
    let mut last_error = String::new();
    let terminal = std::io::stdout().is_terminal();
    while let Some(change) = changes.next().await {
        match change {
            Change::Rollout(e) => ros.apply(*e),
            Change::Set(e) => sets.apply(e),
            Change::Pod(e) => pods.apply(e),
            Change::Run(e) => runs.apply(e),
            Change::Failed(e) => {
                // The watch retries on its own; say it once, not at every retry.
                if e != last_error {
                    eprintln!("kubectl sluice: watch: {e} (retrying)");
                    last_error = e;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if !(ros.ready && sets.ready && pods.ready && runs.ready) {
            continue;
        }
        let Some(ro) = ros.objects.get(name) else {
            emit(&format!("rollout {name} was deleted\n"))?;
            return Ok(());
        };
        let (s, p, r) = (sets.all(), pods.all(), runs.all());
        let v = tree::view(&Parts {
            rollout: ro,
            replica_sets: &s,
            pods: &p,
            runs: &r,
        });
        let text = tree::render(ro, &v, style);
        if text == last {
            continue;
        }
        let frame = match (terminal, last.is_empty()) {
            (true, _) => format!("\x1b[H\x1b[2J{text}"),
            (false, true) => text.clone(),
            (false, false) => format!("\n{text}"),
        };
        emit(&frame)?;
        last = text;
    }
    Ok(())
}

/// `list [-A]`.
pub async fn list(
    cl: &Cluster,
    all: bool,
    output: Output,
    style: Style,
) -> Result<String, CliError> {
    let (api, action) = if all {
        (
            Api::<Rollout>::all(cl.client.clone()),
            Action::new("list", ROLLOUTS),
        )
    } else {
        (
            rollouts(cl),
            Action::new("list", ROLLOUTS).in_ns(&cl.namespace),
        )
    };
    let items = cl
        .call(&action, api.list(&ListParams::default()))
        .await?
        .items;
    let rows = tree::list_rows(&items, Timestamp::now());
    match output {
        Output::Text if rows.is_empty() => Ok(if all {
            "no rollouts in any namespace\n".to_string()
        } else {
            format!("no rollouts in namespace {:?}\n", cl.namespace)
        }),
        Output::Text => Ok(tree::render_list(&rows, all, style)),
        _ => encode(&rows, output),
    }
}

/// `status NAME`: prints each change of where the Rollout stands until it is Healthy,
/// Degraded or Paused (or at once with `wait: false`), or until `timeout`.
pub async fn status(
    cl: &Cluster,
    name: &str,
    timeout: Option<Duration>,
    wait: bool,
) -> Result<Outcome, CliError> {
    let ro = fetch(cl, name).await?;
    let (now, line) = outcome(&ro);
    emit(&format!("{line}\n"))?;
    if now.settled() || !wait {
        return Ok(now);
    }
    let by_name = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(cl.watch_timeout());
    let mut events = watcher(rollouts(cl), by_name).boxed();
    let mut last = line;
    let follow = async {
        while let Some(ev) = events.next().await {
            let ro = match ev {
                Ok(Event::Apply(ro)) | Ok(Event::InitApply(ro)) => ro,
                Ok(Event::Delete(_)) => {
                    return Err(CliError::Usage(format!("rollout {name} was deleted")));
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("kubectl sluice: watch: {e} (retrying)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (o, line) = outcome(&ro);
            if line != last {
                emit(&format!("{line}\n"))?;
                last = line;
            }
            if o.settled() {
                return Ok(o);
            }
        }
        Ok(Outcome::Progressing)
    };
    match timeout {
        Some(t) => match tokio::time::timeout(t, follow).await {
            Ok(r) => r,
            Err(_) => {
                emit(&format!(
                    "{name}: still progressing after {}s (--timeout)\n",
                    t.as_secs()
                ))?;
                Ok(Outcome::Progressing)
            }
        },
        None => follow.await,
    }
}

/// `promote`, `abort`, `retry`, `pause`, `resume`: a patch of the status, with the
/// resourceVersion read; a concurrent change makes it read again.
pub async fn control(cl: &Cluster, name: &str, control: Control) -> Result<String, CliError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CLI.into()),
        ..Default::default()
    };
    let action = Action::new("patch", ROLLOUT_STATUS)
        .named(name)
        .in_ns(&cl.namespace);
    for _ in 0..3 {
        let ro = fetch(cl, name).await?;
        let status = status_patch(&ro, control, Timestamp::now())?;
        let patch = serde_json::json!({"metadata": {"resourceVersion": ro.metadata.resource_version}, "status": status});
        match cl
            .call(
                &action,
                rollouts(cl).patch_status(name, &params, &Patch::Merge(&patch)),
            )
            .await
        {
            Ok(_) => {
                let done = match control {
                    Control::Promote => "promoted",
                    Control::PromoteFull => "promoted to the end",
                    Control::Abort => "aborted: all traffic back to stable",
                    Control::Retry => "retrying from the first step",
                    Control::Pause => "paused",
                    Control::Resume => "resumed",
                };
                return Ok(format!("rollout {name} {done}\n"));
            }
            Err(CliError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CliError::Conflict {
        resource: ROLLOUT_STATUS,
        name: name.to_string(),
    })
}

/// Sends a `spec` patch carrying the version read (a 409 says the Rollout changed since).
async fn write_spec(
    cl: &Cluster,
    name: &str,
    patch: Patch<serde_json::Value>,
) -> Result<(), CliError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CLI.into()),
        ..Default::default()
    };
    let action = Action::new("patch", ROLLOUTS)
        .named(name)
        .in_ns(&cl.namespace);
    cl.call(&action, rollouts(cl).patch(name, &params, &patch))
        .await
        .map(|_| ())
}

/// `set image NAME CONTAINER=IMAGE...`.
pub async fn set_image(cl: &Cluster, name: &str, pairs: &[String]) -> Result<String, CliError> {
    let pairs = edit::parse_pairs(pairs).map_err(|e| CliError::Usage(e.to_string()))?;
    let ro = fetch(cl, name).await?;
    let Some(patch) =
        edit::set_image_patch(&ro, &pairs).map_err(|e| CliError::Usage(e.to_string()))?
    else {
        return Ok(format!(
            "rollout {name}: the image is already set; nothing written\n"
        ));
    };
    write_spec(
        cl,
        name,
        Patch::Json(serde_json::from_value(patch).map_err(|e| CliError::Usage(e.to_string()))?),
    )
    .await?;
    let set: Vec<String> = pairs.iter().map(|(c, i)| format!("{c}={i}")).collect();
    Ok(format!(
        "rollout {name}: image set ({}) in spec.template; a new release starts\n{}",
        set.join(", "),
        edit::gitops_note(&ro, "change the image in git")
    ))
}

/// `undo NAME [--to-revision N]`.
pub async fn undo(cl: &Cluster, name: &str, target: &Target) -> Result<String, CliError> {
    let ro = fetch(cl, name).await?;
    let o = owned(cl, name).await?;
    let u = edit::undo(&ro, &o.sets, target).map_err(|e| CliError::Usage(e.to_string()))?;
    write_spec(
        cl,
        name,
        Patch::Json(
            serde_json::from_value(u.patch.clone()).map_err(|e| CliError::Usage(e.to_string()))?,
        ),
    )
    .await?;
    let how = if u.exact {
        "Sluice goes back to that ReplicaSet"
    } else {
        "its template could not be rebuilt exactly (defaults filled in by the API server); the same pods are released as a new revision"
    };
    Ok(format!(
        "rollout {name}: spec.template set to revision {} ({}); {how}\n{}",
        u.revision,
        u.hash,
        edit::gitops_note(&ro, "revert the change in git (git revert)")
    ))
}

/// `restart NAME`.
pub async fn restart(cl: &Cluster, name: &str) -> Result<String, CliError> {
    let ro = fetch(cl, name).await?;
    let now = Timestamp::now();
    write_spec(cl, name, Patch::Merge(edit::restart_patch(&ro, now))).await?;
    Ok(format!(
        "rollout {name}: restart requested (spec.restartAt); its pods created before now are replaced one at a time, within its maxUnavailable and PodDisruptionBudgets\n"
    ))
}

/// `version`: the plugin's, and the cluster's when one is reachable.
pub async fn version(cl: Result<Cluster, CliError>) -> String {
    let mut out = format!(
        "kubectl-sluice {} ({}/{})\n",
        env!("CARGO_PKG_VERSION"),
        crate::api::constants::GROUP,
        crate::api::constants::VERSION
    );
    let cl = match cl {
        Ok(cl) => cl,
        Err(e) => {
            out.push_str(&format!("server: unknown ({e})\n"));
            return out;
        }
    };
    let action = Action::new("get", "/version");
    match cl.call(&action, cl.client.apiserver_version()).await {
        Ok(v) => out.push_str(&format!(
            "server: Kubernetes {} at {}\n",
            v.git_version, cl.server
        )),
        Err(e) => {
            out.push_str(&format!("server: unknown ({e})\n"));
            return out;
        }
    }
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cl.client.clone());
    let action = Action::new("get", "customresourcedefinitions.apiextensions.k8s.io");
    match cl.call(&action, crds.get_opt(ROLLOUTS)).await {
        Ok(Some(crd)) => {
            let served: Vec<String> = crd.spec.versions.iter().filter(|v| v.served).map(|v| v.name.clone()).collect();
            out.push_str(&format!("crd {ROLLOUTS}: installed, serving {}\n", served.join(", ")));
        }
        Ok(None) => out.push_str(&format!(
            "crd {ROLLOUTS}: not installed (kubectl sluice crds | kubectl apply --server-side -f -)\n"
        )),
        Err(CliError::Forbidden { .. }) => out.push_str(&format!("crd {ROLLOUTS}: not readable with your rights\n")),
        Err(e) => out.push_str(&format!("crd {ROLLOUTS}: unknown ({e})\n")),
    }
    out
}
