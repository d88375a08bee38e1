//! What the dashboard's pages show, pure: Rollouts, their AnalysisRuns, ReplicaSets and
//! Events in, plain serializable values out. The page renders these as they are; every
//! decision about what to show (roles, step marks, which run a sparkline follows, whether a
//! control applies) is taken here, where it is tested.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::Serialize;

use crate::api::analysis::{AnalysisPhase, AnalysisRun, Measurement, MetricResult};
use crate::api::constants::{LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT};
use crate::api::rollout::{CanaryStep, Rollout, RolloutStatus};
use crate::cli::control::{Control, status_patch};
use crate::runtime::malformed::Parsed;

/// The most Events one Rollout's page lists, newest first.
pub const EVENTS_SHOWN: usize = 50;

/// Everything the views read, as the watches hold it.
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    pub rollouts: &'a [Arc<Parsed<Rollout>>],
    pub runs: &'a [Arc<Parsed<AnalysisRun>>],
    pub replica_sets: &'a [Arc<ReplicaSet>],
    pub events: &'a [Arc<Event>],
}

/// The list page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListView {
    /// `namespace default`, `all namespaces`.
    pub scope: String,
    pub rollouts: Vec<RolloutRow>,
    /// Watches that are failing now, each with why (RBAC, the API server gone).
    pub problems: Vec<String>,
    /// True until every watch has had its first list: no Rollouts then means none read yet.
    pub loading: bool,
}

/// One Rollout, in a line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRow {
    pub namespace: String,
    pub name: String,
    /// `canary`, `blueGreen`, or `none`.
    pub strategy: String,
    /// `Healthy`, `Progressing`, `Paused`, `Degraded`, or `Unknown` before the first reconcile.
    pub phase: String,
    pub message: Option<String>,
    pub step: Option<StepPosition>,
    pub weights: Option<Weights>,
    /// The images of the revisions that serve, with their role; the template's when there is
    /// no ReplicaSet yet.
    pub images: Vec<RoleImage>,
    pub aborted: bool,
    /// The latest AnalysisRun's values, for a sparkline.
    pub analysis: Option<Sparkline>,
    /// Why the Rollout cannot be read (a field of the wrong type), when it cannot.
    pub malformed: Option<String>,
    /// A rollback exercise under way (`status.exercise`): its release and abort are a drill.
    pub exercise: Option<String>,
}

/// Step `index` of `total` (`index == total` once every step is done).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StepPosition {
    pub index: i32,
    pub total: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub canary: i32,
    pub stable: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleImage {
    pub role: Role,
    pub image: String,
}

/// What a revision is to its Rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Canary,
    Preview,
    Stable,
    Active,
    /// A revision kept for history or still scaling down.
    Old,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sparkline {
    pub run: String,
    pub metric: String,
    pub phase: String,
    pub values: Vec<f64>,
}

/// One Rollout's page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// False when the Rollout is not (or no longer) in the watched scope.
    pub found: bool,
    pub row: RolloutRow,
    pub steps: Vec<StepView>,
    pub revisions: Vec<RevisionView>,
    pub runs: Vec<RunView>,
    pub events: Vec<EventView>,
    /// `CanaryPauseStep since 2026-...`.
    pub pauses: Vec<String>,
    pub conditions: Vec<ConditionView>,
    pub controls: Vec<ControlView>,
    pub problems: Vec<String>,
    /// True until every watch has had its first list: `found: false` then means not read yet.
    pub loading: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub index: usize,
    pub text: String,
    /// `done`, `current` or `pending`.
    pub state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    pub hash: String,
    pub role: Role,
    pub images: Vec<String>,
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub created: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub name: String,
    /// `step`, `background`, `pre`, `post` (the run's `sluice.dev/analysis` label).
    pub kind: Option<String>,
    pub revision: Option<String>,
    pub phase: String,
    pub message: Option<String>,
    pub started: Option<String>,
    pub metrics: Vec<MetricView>,
    pub malformed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub phase: String,
    pub message: Option<String>,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub points: Vec<Point>,
    /// The last measurement that did not pass, and why.
    pub failing: Option<String>,
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Milliseconds since the epoch: when it finished (or started).
    pub at: Option<i64>,
    /// The value as a number, when it is one (or a vector's first element).
    pub value: Option<f64>,
    /// The value as the run records it.
    pub raw: Option<String>,
    pub phase: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub at: Option<String>,
    /// `Normal` or `Warning`.
    pub kind: String,
    pub reason: String,
    pub note: String,
    /// `Rollout/web`, `AnalysisRun/web-abc-1-step2`.
    pub object: String,
    pub count: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlView {
    /// `promote`, `abort`, `retry`, `pause`, `resume`.
    pub name: &'static str,
    /// Whether the control applies now; the page still lets it be pressed, and says why not.
    pub applies: bool,
    pub why_not: Option<String>,
}

/// The controls the page offers, by the names its buttons and URLs use.
pub const CONTROLS: [(&str, Control); 5] = [
    ("promote", Control::Promote),
    ("abort", Control::Abort),
    ("retry", Control::Retry),
    ("pause", Control::Pause),
    ("resume", Control::Resume),
];

/// The control a button's name stands for.
pub fn control_named(name: &str) -> Option<Control> {
    CONTROLS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The list page: every Rollout in the snapshot, by namespace and name.
pub fn list(snap: Snapshot<'_>, scope: &str, problems: Vec<String>) -> ListView {
    let mut rollouts: Vec<RolloutRow> = snap.rollouts.iter().map(|r| row(snap, r)).collect();
    rollouts.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    ListView {
        scope: scope.to_string(),
        rollouts,
        problems,
        loading: false,
    }
}

/// One Rollout's page; `found: false` when there is no such Rollout in the snapshot.
pub fn rollout(
    snap: Snapshot<'_>,
    namespace: &str,
    name: &str,
    now: Timestamp,
    problems: Vec<String>,
) -> RolloutView {
    let Some(parsed) = snap.rollouts.iter().find(|r| {
        r.meta().namespace.as_deref() == Some(namespace) && r.meta().name.as_deref() == Some(name)
    }) else {
        return RolloutView {
            row: RolloutRow {
                namespace: namespace.into(),
                name: name.into(),
                ..Default::default()
            },
            problems,
            ..Default::default()
        };
    };
    let row = row(snap, parsed);
    let Some(ro) = parsed.ok() else {
        return RolloutView {
            found: true,
            row,
            problems,
            ..Default::default()
        };
    };
    let st = ro.status.clone().unwrap_or_default();
    let runs = runs_of(snap, parsed);
    let run_names: BTreeSet<String> = runs.iter().map(|r| name_of(*r)).collect();
    RolloutView {
        found: true,
        steps: steps(ro, &st),
        revisions: revisions(ro, &st, snap.replica_sets),
        runs: runs.iter().map(|r| run_view(r)).collect(),
        events: events(snap.events, namespace, name, &run_names),
        pauses: st
            .pause_conditions
            .iter()
            .map(|p| format!("{:?} since {}", p.reason, p.start_time.0))
            .collect(),
        conditions: {
            let mut c: Vec<ConditionView> = st
                .conditions
                .iter()
                .map(|c| ConditionView {
                    kind: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect();
            c.sort_by(|a, b| a.kind.cmp(&b.kind));
            c
        },
        controls: CONTROLS
            .iter()
            .map(|(n, c)| {
                let why_not = status_patch(ro, *c, now).err().map(|e| e.to_string());
                ControlView {
                    name: n,
                    applies: why_not.is_none(),
                    why_not,
                }
            })
            .collect(),
        row,
        problems,
        loading: false,
    }
}

fn name_of<K: Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

/// The line of one Rollout.
fn row(snap: Snapshot<'_>, parsed: &Parsed<Rollout>) -> RolloutRow {
    let meta = parsed.meta();
    let base = RolloutRow {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        ..Default::default()
    };
    let ro = match &parsed.0 {
        Ok(ro) => ro,
        Err(m) => {
            return RolloutRow {
                strategy: "none".into(),
                phase: "Unknown".into(),
                malformed: Some(m.describe()),
                ..base
            };
        }
    };
    let st = ro.status.clone().unwrap_or_default();
    let canary = ro.spec.strategy.canary.as_ref();
    let strategy = match (canary, &ro.spec.strategy.blue_green) {
        (Some(_), _) => "canary",
        (None, Some(_)) => "blueGreen",
        _ => "none",
    };
    let step = canary.map(|c| StepPosition {
        index: st.current_step_index.unwrap_or(0),
        total: c.steps().len() as i32,
    });
    let weights = canary.and(
        st.canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map(|w| Weights {
                canary: w.canary.weight,
                stable: w.stable.weight,
            }),
    );
    let revisions = revisions(ro, &st, snap.replica_sets);
    let mut images: Vec<RoleImage> = revisions
        .iter()
        .filter(|r| r.role != Role::Old)
        .flat_map(|r| {
            r.images.iter().map(|i| RoleImage {
                role: r.role,
                image: i.clone(),
            })
        })
        .collect();
    if images.is_empty() {
        // No ReplicaSet seen (yet): the template is what is being released, the new revision
        // while one is, else the stable one.
        let releasing = st.current_pod_hash.is_some() && st.current_pod_hash != st.stable_rs;
        let role = match (releasing, strategy) {
            (true, "blueGreen") => Role::Preview,
            (true, _) => Role::Canary,
            (false, "blueGreen") => Role::Active,
            (false, _) => Role::Stable,
        };
        images = template_images(ro)
            .into_iter()
            .map(|image| RoleImage { role, image })
            .collect();
    }
    RolloutRow {
        strategy: strategy.into(),
        phase: st
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Unknown".into()),
        message: st.message.clone().filter(|m| !m.is_empty()),
        step,
        weights,
        images,
        aborted: st.abort == Some(true),
        analysis: sparkline(&runs_of(snap, parsed)),
        exercise: st.exercise.as_ref().map(crate::cli::control::exercise_line),
        ..base
    }
}

fn template_images(ro: &Rollout) -> Vec<String> {
    ro.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `meta` is owned by the Rollout (by uid), or else labelled with its name.
fn belongs(meta: &kube::api::ObjectMeta, ro: &kube::api::ObjectMeta) -> bool {
    if meta.namespace != ro.namespace {
        return false;
    }
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if !owners.is_empty() {
        return owners
            .iter()
            .any(|o| o.kind == "Rollout" && Some(&o.uid) == ro.uid.as_ref());
    }
    meta.labels.as_ref().and_then(|l| l.get(LABEL_ROLLOUT)) == ro.name.as_ref()
}

/// The Rollout's AnalysisRuns, newest first.
fn runs_of<'a>(snap: Snapshot<'a>, ro: &Parsed<Rollout>) -> Vec<&'a Parsed<AnalysisRun>> {
    let mut runs: Vec<&Parsed<AnalysisRun>> = snap
        .runs
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| belongs(r.meta(), ro.meta()))
        .collect();
    runs.sort_by(|a, b| {
        let key = |r: &Parsed<AnalysisRun>| {
            (r.meta().creation_timestamp.clone().map(|t| t.0), name_of(r))
        };
        key(b).cmp(&key(a))
    });
    runs
}

/// The newest run's first metric with numbers in it.
fn sparkline(runs: &[&Parsed<AnalysisRun>]) -> Option<Sparkline> {
    let run = runs.first()?.ok()?;
    let st = run.status.as_ref()?;
    let metric = st.metric_results.iter().find(|m| {
        m.measurements
            .iter()
            .any(|x| numeric(x.value.as_deref()).is_some())
    })?;
    Some(Sparkline {
        run: name_of(run),
        metric: metric.name.clone(),
        phase: phase_name(st.phase),
        values: metric
            .measurements
            .iter()
            .filter_map(|x| numeric(x.value.as_deref()))
            .collect(),
    })
}

fn phase_name(p: Option<AnalysisPhase>) -> String {
    p.map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".into())
}

/// A measured value as a number: a scalar (`0.97`), a vector's first element (`[0.97, 1]`),
/// or a JSON number; `None` for anything else (an empty vector, `NaN`, an object).
pub fn numeric(value: Option<&str>) -> Option<f64> {
    let v = value?.trim();
    let finite = |x: f64| x.is_finite().then_some(x);
    if let Ok(x) = v.parse::<f64>() {
        return finite(x);
    }
    match serde_json::from_str::<serde_json::Value>(v).ok()? {
        serde_json::Value::Number(n) => n.as_f64().and_then(finite),
        serde_json::Value::Array(a) => match a.first()? {
            serde_json::Value::Number(n) => n.as_f64().and_then(finite),
            serde_json::Value::String(s) => s.parse::<f64>().ok().and_then(finite),
            _ => None,
        },
        _ => None,
    }
}

/// The canary steps, the current one marked.
fn steps(ro: &Rollout, st: &RolloutStatus) -> Vec<StepView> {
    let Some(canary) = &ro.spec.strategy.canary else {
        return Vec::new();
    };
    let current = st.current_step_index.unwrap_or(0).max(0) as usize;
    canary
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| StepView {
            index: i,
            text: step_text(s),
            state: match i.cmp(&current) {
                std::cmp::Ordering::Less => "done",
                std::cmp::Ordering::Equal => "current",
                std::cmp::Ordering::Greater => "pending",
            },
        })
        .collect()
}

/// A step in words.
pub fn step_text(s: &CanaryStep) -> String {
    if let Some(w) = s.set_weight {
        return format!("set weight {w}%");
    }
    if let Some(p) = &s.pause {
        return match &p.duration {
            None => "pause until promoted".into(),
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                format!("pause {n}s")
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(d)) => {
                format!("pause {d}")
            }
        };
    }
    if let Some(c) = &s.set_canary_scale {
        return match (c.weight, c.replicas, c.match_traffic_weight) {
            (Some(w), _, _) => format!("canary scale {w}%"),
            (_, Some(r), _) => format!("canary scale {r} pods"),
            _ => "canary scale matches traffic weight".into(),
        };
    }
    if let Some(a) = &s.analysis {
        let names: Vec<&str> = a
            .templates
            .iter()
            .map(|t| t.template_name.as_str())
            .collect();
        return format!("analysis {}", names.join(", "));
    }
    if let Some(h) = &s.set_header_route {
        return format!("header route {}", h.name);
    }
    if let Some(m) = &s.set_mirror_route {
        return format!("mirror route {}", m.name);
    }
    "(empty step)".into()
}

/// The Rollout's ReplicaSets: the serving ones first (canary or preview, then stable or
/// active), then the old ones, newest first.
fn revisions(ro: &Rollout, st: &RolloutStatus, all: &[Arc<ReplicaSet>]) -> Vec<RevisionView> {
    let bg = st.blue_green.as_ref();
    let role = |hash: &str| {
        let is = |h: Option<&String>| h.map(String::as_str) == Some(hash);
        if ro.spec.strategy.blue_green.is_some() {
            if is(bg.and_then(|b| b.active_selector.as_ref())) {
                Role::Active
            } else if is(bg.and_then(|b| b.preview_selector.as_ref())) {
                Role::Preview
            } else {
                Role::Old
            }
        } else if is(st.stable_rs.as_ref()) {
            Role::Stable
        } else if is(st.current_pod_hash.as_ref()) {
            Role::Canary
        } else {
            Role::Old
        }
    };
    let mut out: Vec<(Option<Timestamp>, RevisionView)> = all
        .iter()
        .filter(|rs| belongs(&rs.metadata, &ro.metadata))
        .map(|rs| {
            let hash = rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_POD_TEMPLATE_HASH))
                .cloned()
                .unwrap_or_default();
            let images = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .map(|s| {
                    s.containers
                        .iter()
                        .filter_map(|c| c.image.clone())
                        .collect()
                })
                .unwrap_or_default();
            let status = rs.status.clone().unwrap_or_default();
            let created = rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (
                created,
                RevisionView {
                    role: role(&hash),
                    hash,
                    images,
                    replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                    ready: status.ready_replicas.unwrap_or(0),
                    available: status.available_replicas.unwrap_or(0),
                    created: created.map(|t| t.to_string()),
                },
            )
        })
        .collect();
    out.sort_by(|(ta, a), (tb, b)| a.role.cmp(&b.role).then(tb.cmp(ta)));
    out.into_iter().map(|(_, r)| r).collect()
}

fn run_view(parsed: &Parsed<AnalysisRun>) -> RunView {
    let meta = parsed.meta();
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let base = RunView {
        name: meta.name.clone().unwrap_or_default(),
        kind: label(crate::rollout::analysis::LABEL_ANALYSIS_KIND),
        revision: label(LABEL_POD_TEMPLATE_HASH),
        phase: "Pending".into(),
        message: None,
        started: None,
        metrics: Vec::new(),
        malformed: None,
    };
    let run = match &parsed.0 {
        Ok(run) => run,
        Err(m) => {
            return RunView {
                phase: "Unknown".into(),
                malformed: Some(m.describe()),
                ..base
            };
        }
    };
    let st = run.status.clone().unwrap_or_default();
    let metrics = run
        .spec
        .metrics
        .iter()
        .map(|m| {
            let result = st.metric_results.iter().find(|r| r.name == m.name);
            metric_view(
                &m.name,
                m.success_condition.clone(),
                m.failure_condition.clone(),
                result,
            )
        })
        .collect();
    RunView {
        phase: phase_name(st.phase),
        message: st.message.clone().filter(|m| !m.is_empty()),
        started: st.started_at.as_ref().map(|t| t.0.to_string()),
        metrics,
        ..base
    }
}

fn metric_view(
    name: &str,
    success_condition: Option<String>,
    failure_condition: Option<String>,
    result: Option<&MetricResult>,
) -> MetricView {
    let measurements: &[Measurement] = result.map(|r| r.measurements.as_slice()).unwrap_or(&[]);
    let points = measurements
        .iter()
        .map(|x| Point {
            at: x
                .finished_at
                .as_ref()
                .or(x.started_at.as_ref())
                .map(|t| t.0.as_millisecond()),
            value: numeric(x.value.as_deref()),
            raw: x.value.clone(),
            phase: phase_name(x.phase),
        })
        .collect();
    let failing = measurements
        .iter()
        .rev()
        .find(|x| {
            matches!(
                x.phase,
                Some(AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive)
            )
        })
        .map(|x| {
            let why = x.message.clone().unwrap_or_else(|| phase_name(x.phase));
            match x.value.as_deref() {
                // Sluice's messages name the value already ("... is false for result [0.5]").
                Some(v) if !why.contains(v) => format!("{why} (value {v})"),
                _ => why,
            }
        });
    MetricView {
        name: name.to_string(),
        phase: phase_name(result.and_then(|r| r.phase)),
        message: result
            .and_then(|r| r.message.clone())
            .filter(|m| !m.is_empty()),
        success_condition,
        failure_condition,
        points,
        failing,
    }
}

/// The Events about the Rollout and its runs, newest first.
fn events(
    all: &[Arc<Event>],
    namespace: &str,
    name: &str,
    runs: &BTreeSet<String>,
) -> Vec<EventView> {
    let mut out: Vec<(Option<Timestamp>, EventView)> = all
        .iter()
        .filter_map(|e| {
            let r = e.regarding.as_ref()?;
            let ours = r.namespace.as_deref() == Some(namespace)
                && match (r.kind.as_deref(), r.name.as_deref()) {
                    (Some("Rollout"), Some(n)) => n == name,
                    (Some("AnalysisRun"), Some(n)) => runs.contains(n),
                    _ => false,
                };
            if !ours {
                return None;
            }
            let at = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            Some((
                at,
                EventView {
                    at: at.map(|t| t.to_string()),
                    kind: e.type_.clone().unwrap_or_else(|| "Normal".into()),
                    reason: e.reason.clone().unwrap_or_default(),
                    note: e.note.clone().unwrap_or_default(),
                    object: format!(
                        "{}/{}",
                        r.kind.clone().unwrap_or_default(),
                        r.name.clone().unwrap_or_default()
                    ),
                    count: e
                        .series
                        .as_ref()
                        .map(|s| s.count)
                        .or(e.deprecated_count)
                        .unwrap_or(1)
                        .max(1),
                },
            ))
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| b.cmp(a));
    out.truncate(EVENTS_SHOWN);
    out.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
