//! `kubectl sluice get rollout NAME`: what a Rollout is made of, as a tree. The Rollout, its
//! revisions (ReplicaSets) with their pods, and its AnalysisRuns with their latest
//! measurements, built by pure functions from the objects as read (or as watched), so the same
//! view is printed as text, JSON or YAML.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::analysis::{AnalysisPhase, AnalysisRun};
use crate::api::constants::LABEL_POD_TEMPLATE_HASH;
use crate::api::rollout::{Rollout, RolloutPhase};

/// How many measurements of a metric the tree shows (the latest).
const MEASUREMENTS_SHOWN: usize = 5;
/// How many AnalysisRuns the tree shows (the newest).
const RUNS_SHOWN: usize = 5;

/// Everything `get rollout` shows, as data.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    pub name: String,
    pub namespace: String,
    pub strategy: &'static str,
    pub phase: Option<RolloutPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    pub aborted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<String>,
    pub revisions: Vec<RevisionView>,
    pub analysis_runs: Vec<RunView>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub canary: i32,
    pub stable: i32,
}

/// One revision: a ReplicaSet of the Rollout.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    /// Its place among the revisions kept, oldest first (what `undo --to-revision` takes).
    pub revision: usize,
    pub hash: String,
    pub name: String,
    /// stable, canary, active, preview; empty for an old revision.
    pub roles: Vec<&'static str>,
    pub images: Vec<String>,
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub pods: Vec<PodView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    /// Running, Pending, a container's waiting reason (CrashLoopBackOff), or Terminating.
    pub status: String,
    pub ready: String,
    pub restarts: i32,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub name: String,
    pub phase: Option<AnalysisPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub metrics: Vec<MetricView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub phase: Option<AnalysisPhase>,
    /// The latest measurements, oldest first: (phase, value).
    pub measurements: Vec<MeasurementView>,
    /// Why the latest measurement that failed did (the condition and the value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MeasurementView {
    pub phase: Option<AnalysisPhase>,
    pub value: Option<String>,
}

/// The objects the view is made from.
pub struct Parts<'a> {
    pub rollout: &'a Rollout,
    pub replica_sets: &'a [ReplicaSet],
    pub pods: &'a [Pod],
    pub runs: &'a [AnalysisRun],
}

/// Builds the view. ReplicaSets and runs not owned by the Rollout are left out.
pub fn view(parts: &Parts<'_>) -> RolloutView {
    let ro = parts.rollout;
    let st = ro.status.clone().unwrap_or_default();
    let canary = ro.spec.strategy.canary.as_ref();
    let weights = canary
        .and(st.canary.as_ref())
        .and_then(|c| c.weights.as_ref())
        .map(|w| Weights {
            canary: w.canary.weight,
            stable: w.stable.weight,
        });
    RolloutView {
        name: ro.name_any(),
        namespace: ro.namespace().unwrap_or_default(),
        strategy: match (canary, &ro.spec.strategy.blue_green) {
            (Some(_), _) => "canary",
            (None, Some(_)) => "blueGreen",
            _ => "none",
        },
        phase: st.phase,
        message: st.message.clone(),
        step: canary.and(st.current_step_index),
        steps: canary.map(|c| c.steps().len()),
        weights,
        aborted: st.abort == Some(true),
        pauses: st
            .pause_conditions
            .iter()
            .map(|p| format!("{:?}", p.reason))
            .collect(),
        revisions: revisions(parts),
        analysis_runs: runs(parts),
    }
}

fn owned_by(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    ro: &Rollout,
) -> bool {
    let uid = ro.uid();
    owners
        .iter()
        .any(|o| o.kind == "Rollout" && Some(&o.uid) == uid.as_ref())
}

fn revisions(parts: &Parts<'_>) -> Vec<RevisionView> {
    let ro = parts.rollout;
    let st = ro.status.clone().unwrap_or_default();
    let bg = st.blue_green.clone().unwrap_or_default();
    let mut sets: Vec<&ReplicaSet> = parts
        .replica_sets
        .iter()
        .filter(|rs| owned_by(rs.owner_references(), ro))
        .collect();
    sets.sort_by_key(|rs| (rs.creation_timestamp().map(|t| t.0), rs.name_any()));
    sets.iter()
        .enumerate()
        .map(|(i, rs)| {
            let hash = rs
                .labels()
                .get(LABEL_POD_TEMPLATE_HASH)
                .cloned()
                .unwrap_or_default();
            let is = |h: &Option<String>| h.as_deref() == Some(hash.as_str());
            let mut roles = Vec::new();
            let blue_green = ro.spec.strategy.blue_green.is_some();
            if is(&st.stable_rs) {
                roles.push("stable");
            }
            if is(&st.current_pod_hash) && !is(&st.stable_rs) {
                roles.push(if blue_green { "preview" } else { "canary" });
            }
            if blue_green && is(&bg.active_selector) {
                roles.push("active");
            }
            let spec = rs.spec.as_ref();
            let status = rs.status.clone().unwrap_or_default();
            RevisionView {
                revision: i + 1,
                hash: hash.clone(),
                name: rs.name_any(),
                roles,
                images: spec
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .map(|p| {
                        p.containers
                            .iter()
                            .filter_map(|c| c.image.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                desired: spec.and_then(|s| s.replicas).unwrap_or(0),
                ready: status.ready_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
                pods: pods_of(parts.pods, &hash),
            }
        })
        .collect()
}

fn pods_of(pods: &[Pod], hash: &str) -> Vec<PodView> {
    let mut mine: Vec<PodView> = pods
        .iter()
        .filter(|p| p.labels().get(LABEL_POD_TEMPLATE_HASH).map(String::as_str) == Some(hash))
        .map(pod_view)
        .collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    mine
}

fn pod_view(p: &Pod) -> PodView {
    let st = p.status.clone().unwrap_or_default();
    let containers = st.container_statuses.clone().unwrap_or_default();
    let waiting = containers
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let status = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or_else(|| st.phase.clone().unwrap_or_else(|| "Pending".into()))
    };
    let total = p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let ready = containers.iter().filter(|c| c.ready).count();
    PodView {
        name: p.name_any(),
        status,
        ready: format!("{ready}/{total}"),
        restarts: containers.iter().map(|c| c.restart_count).sum(),
    }
}

fn runs(parts: &Parts<'_>) -> Vec<RunView> {
    let mut runs: Vec<&AnalysisRun> = parts
        .runs
        .iter()
        .filter(|r| owned_by(r.owner_references(), parts.rollout))
        .collect();
    // Newest first.
    runs.sort_by_key(|r| std::cmp::Reverse((r.creation_timestamp().map(|t| t.0), r.name_any())));
    runs.into_iter().take(RUNS_SHOWN).map(run_view).collect()
}

fn run_view(run: &AnalysisRun) -> RunView {
    let st = run.status.clone().unwrap_or_default();
    RunView {
        name: run.name_any(),
        phase: st.phase,
        message: st.message.clone().filter(|m| !m.is_empty()),
        metrics: st
            .metric_results
            .iter()
            .map(|m| {
                let skip = m.measurements.len().saturating_sub(MEASUREMENTS_SHOWN);
                MetricView {
                    name: m.name.clone(),
                    phase: m.phase,
                    measurements: m.measurements[skip..]
                        .iter()
                        .map(|x| MeasurementView {
                            phase: x.phase,
                            value: x.value.clone(),
                        })
                        .collect(),
                    failing: m
                        .measurements
                        .iter()
                        .rev()
                        .find(|x| x.phase == Some(AnalysisPhase::Failed))
                        .and_then(|x| x.message.clone()),
                }
            })
            .collect(),
    }
}

/// How the text is dressed: colour and symbols on a terminal, plain words when piped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn phase(&self, phase: Option<RolloutPhase>) -> String {
        let (code, sym, word) = match phase {
            Some(RolloutPhase::Healthy) => ("32", "✔", "Healthy"),
            Some(RolloutPhase::Progressing) => ("33", "◌", "Progressing"),
            Some(RolloutPhase::Paused) => ("33", "⏸", "Paused"),
            Some(RolloutPhase::Degraded) => ("31", "✖", "Degraded"),
            None => ("2", "?", "Unknown"),
        };
        self.symbol_word(code, sym, word)
    }

    fn analysis(&self, phase: Option<AnalysisPhase>) -> String {
        let (code, sym, word) = match phase {
            Some(AnalysisPhase::Successful) => ("32", "✔", "Successful"),
            Some(AnalysisPhase::Failed) => ("31", "✖", "Failed"),
            Some(AnalysisPhase::Error) => ("31", "⚠", "Error"),
            Some(AnalysisPhase::Inconclusive) => ("33", "?", "Inconclusive"),
            Some(AnalysisPhase::Running) => ("33", "◌", "Running"),
            Some(AnalysisPhase::Pending) | None => ("2", "◌", "Pending"),
        };
        self.symbol_word(code, sym, word)
    }

    fn symbol_word(&self, code: &str, sym: &str, word: &str) -> String {
        if self.color {
            self.paint(code, &format!("{sym} {word}"))
        } else {
            word.to_string()
        }
    }

    fn pod(&self, status: &str) -> String {
        let code = match status {
            "Running" | "Succeeded" => "32",
            "Pending" | "ContainerCreating" | "Terminating" => "33",
            _ => "31",
        };
        self.paint(code, status)
    }
}

/// The tree under the summary: revisions with their pods, then analysis runs.
pub fn render_tree(v: &RolloutView, style: Style) -> String {
    let mut out = format!(
        "{} {}  Rollout  {}\n",
        if style.color { "⟳" } else { "Rollout" },
        v.name,
        style.phase(v.phase)
    );
    let revisions = v.revisions.iter().rev();
    let items = v.revisions.len() + v.analysis_runs.len();
    let mut n = 0;
    for r in revisions {
        n += 1;
        let (fork, stem) = branch(n == items);
        let roles = if r.roles.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.roles.join(", "))
        };
        out.push_str(&format!(
            "{fork}revision {}{roles}  {}  {}  {}/{} ready, desired {}\n",
            r.revision,
            r.hash,
            if r.images.is_empty() {
                "-".into()
            } else {
                r.images.join(",")
            },
            r.ready,
            r.pods.len(),
            r.desired,
        ));
        for (i, p) in r.pods.iter().enumerate() {
            let (b, _) = branch(i + 1 == r.pods.len());
            out.push_str(&format!(
                "{stem}{b}pod {}  {}  ready {}  restarts {}\n",
                p.name,
                style.pod(&p.status),
                p.ready,
                p.restarts
            ));
        }
    }
    for run in &v.analysis_runs {
        n += 1;
        let (fork, stem) = branch(n == items);
        let msg = run
            .message
            .as_ref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{fork}AnalysisRun {}  {}{msg}\n",
            run.name,
            style.analysis(run.phase)
        ));
        for (i, m) in run.metrics.iter().enumerate() {
            let (b, _) = branch(i + 1 == run.metrics.len());
            let values: Vec<String> = m
                .measurements
                .iter()
                .map(|x| {
                    let value = x.value.clone().unwrap_or_else(|| "-".into());
                    match (style.color, x.phase) {
                        (true, Some(AnalysisPhase::Failed)) => {
                            style.paint("31", &format!("✖{value}"))
                        }
                        (true, Some(AnalysisPhase::Successful)) => {
                            style.paint("32", &format!("✔{value}"))
                        }
                        (false, Some(AnalysisPhase::Failed)) => format!("{value}(failed)"),
                        _ => value,
                    }
                })
                .collect();
            let failing = m
                .failing
                .as_ref()
                .map(|f| format!("  {f}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{stem}{b}metric {}  {}  [{}]{failing}\n",
                m.name,
                style.analysis(m.phase),
                values.join(" ")
            ));
        }
    }
    out
}

/// The branch drawn before an item and the stem drawn before its children.
fn branch(last: bool) -> (&'static str, &'static str) {
    if last {
        ("└── ", "    ")
    } else {
        ("├── ", "│   ")
    }
}

/// `get rollout` as text: the summary (`describe`), then the tree.
pub fn render(ro: &Rollout, v: &RolloutView, style: Style) -> String {
    let mut summary = super::control::describe(ro);
    if style.color {
        // The phase word of the summary in its colour.
        if let Some(p) = v.phase {
            let word = format!("{p:?}");
            summary = summary.replacen(
                &format!("Phase:      {word}"),
                &format!("Phase:      {}", style.phase(Some(p))),
                1,
            );
        }
    }
    format!("{summary}\n{}", render_tree(v, style))
}

/// One row of `kubectl sluice list`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    pub namespace: String,
    pub name: String,
    pub strategy: &'static str,
    pub phase: Option<RolloutPhase>,
    pub step: String,
    pub weight: String,
    pub revision: String,
    pub age: String,
}

/// The rows of `list`, sorted by namespace and name.
pub fn list_rows(rollouts: &[Rollout], now: Timestamp) -> Vec<ListRow> {
    let mut rows: Vec<ListRow> = rollouts
        .iter()
        .map(|ro| {
            let v = view(&Parts {
                rollout: ro,
                replica_sets: &[],
                pods: &[],
                runs: &[],
            });
            let st = ro.status.clone().unwrap_or_default();
            ListRow {
                namespace: v.namespace,
                name: v.name,
                strategy: v.strategy,
                phase: v.phase,
                step: match (v.step, v.steps) {
                    (Some(i), Some(n)) => format!("{i}/{n}"),
                    _ => "-".into(),
                },
                weight: v
                    .weights
                    .map(|w| w.canary.to_string())
                    .unwrap_or_else(|| "-".into()),
                revision: st.current_pod_hash.unwrap_or_else(|| "-".into()),
                age: ro
                    .creation_timestamp()
                    .map(|t| age(now, t.0))
                    .unwrap_or_else(|| "-".into()),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

/// kubectl's short ages: 45s, 12m, 5h, 3d.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.as_second().saturating_sub(then.as_second()).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The rows as a table with a header; with a NAMESPACE column when `all_namespaces`.
pub fn render_list(rows: &[ListRow], all_namespaces: bool, style: Style) -> String {
    let mut table: Vec<Vec<String>> = vec![];
    let mut header = vec![
        "NAME",
        "STRATEGY",
        "PHASE",
        "STEP",
        "CANARY WEIGHT",
        "REVISION",
        "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    table.push(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        let mut cells = vec![
            r.name.clone(),
            r.strategy.to_string(),
            r.phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "Unknown".into()),
            r.step.clone(),
            r.weight.clone(),
            r.revision.clone(),
            r.age.clone(),
        ];
        if all_namespaces {
            cells.insert(0, r.namespace.clone());
        }
        table.push(cells);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let phase_col = if all_namespaces { 3 } else { 2 };
    let mut out = String::new();
    for (i, row) in table.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let padded = format!("{cell:<w$}", w = widths[c]);
                if i > 0 && c == phase_col && style.color {
                    let code = match cell.as_str() {
                        "Healthy" => "32",
                        "Degraded" => "31",
                        _ => "33",
                    };
                    style.paint(code, &padded)
                } else {
                    padded
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
