//! The `RolloutExercise` kind: a rehearsed rollback. It names a Rollout, a fault (a change to
//! the stable pod template that makes it misbehave) and objectives; Sluice releases the faulty
//! template through the Rollout's own steps and analysis, as a real release would go, and
//! records whether (and how fast) the release was caught and rolled back.
//!
//! The exercise's revision never reaches the Rollout's spec: while a run is under way the
//! Rollout's status carries it ([`ExerciseInForce`]), so GitOps tools see no diff.

// kube's `printcolumn(...)` attributes repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationString;
use super::rollout::NotifiedAnalysis;
use super::schema::preserve_unknown_object;

/// A JSON patch: a list of operations, each kept as written (checked when applied).
fn json_patch_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// Runs kept in `status.history` unless `historyLimit` says otherwise.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;
/// How long one run may last before Sluice ends it and puts the Rollout back on its stable
/// template, unless `maxDuration` says otherwise.
pub const DEFAULT_MAX_DURATION: &str = "30m";

/// A rehearsed rollback of a Rollout.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "RolloutExercise",
    namespaced,
    status = "RolloutExerciseStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "srex",
    category = "sluice",
    doc = "A RolloutExercise rehearses a rollback: it releases a deliberately faulty revision of a Rollout through the Rollout's own steps and analysis, and measures how fast it is caught and rolled back.",
    printcolumn(name = "Rollout", type_ = "string", json_path = ".spec.rolloutName"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Last",
        type_ = "string",
        json_path = ".status.history[0].result"
    ),
    printcolumn(
        name = "Detect",
        type_ = "string",
        json_path = ".status.history[0].timeToDetect"
    ),
    printcolumn(
        name = "Safe",
        type_ = "string",
        json_path = ".status.history[0].timeToSafe"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExerciseSpec {
    /// The Rollout to exercise, in the exercise's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub rollout_name: String,
    /// What makes the exercise's revision misbehave.
    pub fault: Fault,
    /// What the exercise must show to pass.
    #[serde(default)]
    pub objectives: Objectives,
    /// When to run, as a cron expression of five fields (minute hour day-of-month month
    /// day-of-week), in `timeZone`. Without it the exercise runs once when created, and again
    /// whenever `kubectl sluice exercise start` asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub schedule: Option<String>,
    /// The IANA time zone of `schedule` and `window` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// Scheduled runs start only within this window; a run due outside it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// Stop scheduling runs (a run under way goes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Runs kept in `status.history` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: Option<i32>,
    /// The longest a run may take (default 30m): past it Sluice ends the run as Failed and puts
    /// the Rollout back on its stable template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<DurationString>,
    /// How to count the requests the faulty revision served, when the Rollout has a mesh
    /// router (Istio or Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestCount>,
}

/// A change to the Rollout's pod template, as `kubectl patch` takes it: exactly one of
/// `strategicMergePatch` and `jsonPatch`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.strategicMergePatch) != has(self.jsonPatch)").message("exactly one of fault.strategicMergePatch and fault.jsonPatch must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// What the fault is, in words (shown with the results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// A strategic merge patch of the pod template (`metadata` and `spec` of a
    /// PodTemplateSpec): containers, env, volumes and ports merge by their keys as
    /// `kubectl patch --type strategic` merges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub strategic_merge_patch: Option<serde_json::Value>,
    /// A JSON patch (RFC 6902) of the pod template, as `kubectl patch --type json` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_patch_schema")]
    pub json_patch: Option<serde_json::Value>,
}

/// What a run must show to pass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    /// The release must be caught by its analysis or by Sluice's pod checks (default true).
    /// When nothing catches it before the last step, Sluice stops it itself before promotion
    /// (the safety stop), and the run fails.
    #[serde(default = "yes")]
    pub must_detect: bool,
    /// The longest acceptable time from the fault going live to its detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_to_detect: Option<DurationString>,
    /// The longest acceptable time from the fault going live to all traffic back on stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_to_safe: Option<DurationString>,
    /// The most requests the faulty revision may have failed (needs `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_failed_requests: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            must_detect: true,
            max_time_to_detect: None,
            max_time_to_safe: None,
            max_failed_requests: None,
        }
    }
}

/// Days and hours in which scheduled runs may start.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeWindow {
    /// The first minute of the window, `HH:MM` (24-hour clock).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// The minute the window closes, `HH:MM`; earlier than `start` means the next day.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
    /// Days the window opens on (`Mon` … `Sun`); every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Where and how to count the faulty revision's requests: Istio's standard metrics in
/// Prometheus by default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestCount {
    /// The Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1, max = 512))]
    pub prometheus_address: String,
    /// The query for every request the faulty revision served, with `{{namespace}}`,
    /// `{{rollout}}`, `{{revision}}` and `{{window}}` filled in. Default: the sum over
    /// `istio_requests_total` (reporter `destination`) of the revision's
    /// `destination_canonical_revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub total_query: Option<String>,
    /// The same for the requests that failed. Default: `response_code` 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub failed_query: Option<String>,
    /// How long after the faulty revision is off traffic to count (default 30s): at least two
    /// of Prometheus' scrape intervals, so its last requests are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<DurationString>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExerciseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ExercisePhase>,
    /// What the exercise is doing or waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Runs started or skipped so far (each run's `number`).
    #[serde(default)]
    pub runs: i32,
    /// The run under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<ExerciseRun>,
    /// When the schedule next falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<Time>,
    /// The last scheduled time taken (run or skipped), so a restart neither repeats nor
    /// misses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_at: Option<Time>,
    /// The last `sluice.dev/run-requested-at` annotation taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
    /// Finished runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ExerciseRun>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExercisePhase {
    /// Nothing to do until the schedule or a request.
    Idle,
    /// A run is due, and waits for the Rollout to be Healthy with no release under way.
    Waiting,
    /// The faulty revision is being released.
    Running,
    /// The release is over; the requests it served are being counted.
    Measuring,
    /// The spec cannot be run (see the `InvalidSpec` condition).
    Invalid,
}

/// One run of an exercise and what it measured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExerciseRun {
    pub number: i32,
    /// What started it: `Created`, `Schedule` or `Request`.
    pub trigger: String,
    /// When it fell due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// `Passed`, `Failed`, `Skipped` or `Cancelled`; none while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExerciseResult>,
    /// Why it ended as it did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Rollout's stable revision (pod-template hash) the fault was applied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The faulty revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When the faulty revision first had an available pod taking traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<Time>,
    /// When the fault was first seen: the first failed measurement of the analysis that
    /// aborted the release, or the abort itself when Sluice's pod checks caught it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// When the release was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// What aborted it: `AnalysisFailed`, `PodsFailing`, `ProgressDeadline`, `Request` or
    /// `SafetyStop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_cause: Option<String>,
    /// When no traffic went to the faulty revision any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_at: Option<Time>,
    /// `detectedAt` minus `liveAt` (from the start of the release when it never went live),
    /// as a duration such as `41.2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect: Option<String>,
    /// `safeAt` minus `liveAt` (from the start of the release when it never went live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_safe: Option<String>,
    /// The highest traffic weight (percent) the faulty revision had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_weight: Option<i32>,
    /// Requests the faulty revision served, from `spec.requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
    /// Of those, the requests that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_requests: Option<i64>,
    /// Why the requests were not counted, when they were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_message: Option<String>,
    /// The analysis that caught the fault: run, metric, value and condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<NotifiedAnalysis>,
    /// Each objective, judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<ObjectiveResult>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExerciseResult {
    Passed,
    Failed,
    Skipped,
    Cancelled,
}

impl ExerciseResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ExerciseResult::Passed => "Passed",
            ExerciseResult::Failed => "Failed",
            ExerciseResult::Skipped => "Skipped",
            ExerciseResult::Cancelled => "Cancelled",
        }
    }
}

/// One objective and what the run showed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveResult {
    /// `mustDetect`, `maxTimeToDetect`, `maxTimeToSafe` or `maxFailedRequests`.
    pub name: String,
    /// What the objective asks, as written.
    pub want: String,
    /// What the run showed (`not measured` when it could not be).
    pub got: String,
    pub met: bool,
}

/// An exercise run in force on a Rollout, in the Rollout's status (`status.exercise`). The
/// exercise controller writes `name`, `run`, `fault`, `stableRevision` and `startedAt` to
/// start it and removes the whole block to end it; the Rollout controller releases the fault
/// while the block is there and its template is still `stableRevision`, and fills in the
/// rest as the release goes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExerciseInForce {
    /// The RolloutExercise.
    pub name: String,
    /// Its run number.
    pub run: i32,
    pub fault: Fault,
    /// The revision the fault applies to; a Rollout whose template is no longer this one is
    /// in a real release, and the fault is not applied.
    pub stable_revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// The faulty revision, once the Rollout controller has built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Why the fault is not being released (it does not apply to the template, or a real
    /// release began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_cause: Option<String>,
    /// The analysis behind the abort, when one decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<NotifiedAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_at: Option<Time>,
    /// Set by the exercise controller once the run is recorded: the Rollout controller then
    /// drops the block and goes back to the stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<ExerciseEnd>,
}

/// How an exercise run ended, as the Rollout is told.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExerciseEnd {
    pub result: ExerciseResult,
    pub message: String,
}
