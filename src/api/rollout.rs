//! The `Rollout` kind. Field names and meanings follow Argo Rollouts' `argoproj.io/v1alpha1`,
//! so a manifest migrates by changing its `apiVersion`.

// kube's `printcolumn(...)` attributes repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{AnalysisRunArgument, DryRun, MeasurementRetention};
use super::constants::defaults;
use super::schema::{count_or_percent, preserve_unknown_object, seconds_or_duration};

/// A Rollout runs an application and releases each new revision progressively.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "sro",
    category = "sluice",
    doc = "A Rollout runs an application and releases each new revision progressively (canary or blue-green).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canary.weights.canary.weight"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.template) != has(self.workloadRef)").message("exactly one of spec.template and spec.workloadRef must be set"),
    validation = Rule::new("!has(self.template) || has(self.selector)").message("spec.selector is required when spec.template is set")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Label selector of the pods; must match the template's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Pod template of the application. Exactly one of `template` and `workloadRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<PodTemplateSpec>,
    /// An existing Deployment whose pod template Sluice runs (the Deployment stays in git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Seconds a new pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept at zero replicas (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,
    /// Pauses the rollout where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds a rollout may go without progress before it is reported failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the rollout when the progress deadline is exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Going back to one of the last `revisions` revisions before the stable one skips the
    /// steps, pauses and analysis (a fast-track rollback), as in Argo Rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// Restart every pod created before this time, a few at a time, without a new revision
    /// (as `kubectl argo rollouts restart` sets it; a future time schedules the restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// How a new revision is released: exactly one of `canary` and `blueGreen`.
    pub strategy: RolloutStrategy,
}

impl RolloutSpec {
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(defaults::REPLICAS)
    }
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(defaults::REVISION_HISTORY_LIMIT)
    }
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS)
    }
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds.unwrap_or(0)
    }
}

/// `spec.rollbackWindow`: how far back a rollback is fast-tracked.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// A rollback to a revision with fewer than this many revisions between it and the stable
    /// one skips the steps and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revisions: Option<i32>,
}

/// A reference to the workload whose pod template the Rollout runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    #[schemars(extend("enum" = ["Deployment"]))]
    pub kind: String,
    /// Name of the Deployment, in the Rollout's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// When Sluice scales the referenced Deployment down: `never`, `onsuccess` (default) or
    /// `progressively`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadScaleDown {
    Never,
    OnSuccess,
    Progressively,
}

/// Exactly one of `canary` and `blueGreen`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.canary) != has(self.blueGreen)").message("exactly one of strategy.canary and strategy.blueGreen must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// Canary: shift traffic to the new revision step by step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service Sluice points at the canary pods (by pod-template-hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service Sluice points at the stable pods (by pod-template-hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// The steps of a release, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub steps: Option<Vec<CanaryStep>>,
    /// Weighted routing through a mesh or gateway; without it the weight is the canary's share
    /// of ready replicas behind one Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Pods allowed above `replicas` during the release (count or percentage; default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_surge: Option<IntOrString>,
    /// Pods allowed to be unavailable during the release (count or percentage; default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_unavailable: Option<IntOrString>,
    /// Analysis that runs in the background for the whole release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysisBackground>,
    /// Seconds the old stable pods keep running after traffic left them (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds the canary pods keep running after an abort, counted from the moment the
    /// stable is fully available again (default 30 with `trafficRouting`; 0 keeps them until
    /// the next release; ignored without `trafficRouting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// How many old revisions, newest first, may keep their pods during
    /// `scaleDownDelaySeconds`; older ones go to zero at once (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Scale the stable down as traffic leaves it, instead of keeping it at full size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// Labels and annotations on the canary's pods while it is the canary (not part of the
    /// revision: changing them restarts nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations on the stable revision's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodTemplateMetadata>,
}

impl CanaryStrategy {
    pub fn steps(&self) -> &[CanaryStep] {
        self.steps.as_deref().unwrap_or(&[])
    }
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(defaults::SCALE_DOWN_DELAY_SECONDS)
    }
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(defaults::ABORT_SCALE_DOWN_DELAY_SECONDS)
    }
    pub fn max_surge(&self) -> IntOrString {
        self.max_surge
            .clone()
            .unwrap_or_else(|| IntOrString::String(defaults::MAX_SURGE.into()))
    }
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(defaults::MAX_UNAVAILABLE.into()))
    }
}

/// One step of a canary release: exactly one of its fields is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) + (has(self.setMirrorRoute) ? 1 : 0) == 1").message("each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute, setMirrorRoute")
)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic sent to the canary (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or until promoted when no duration is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Size the canary independently of its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Run an analysis and wait for its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Send requests matching headers to the canary (needs a traffic router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    /// Mirror requests that match to the canary (Istio only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
}

/// A pause step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// Seconds (integer) or a duration such as `30s`, `5m`, `1h`; absent means until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "seconds_or_duration")]
    pub duration: Option<IntOrString>,
}

/// Sizes the canary by weight or by replica count.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.weight) ? 1 : 0) + (has(self.replicas) ? 1 : 0) + (has(self.matchTrafficWeight) && self.matchTrafficWeight ? 1 : 0) <= 1").message("setCanaryScale takes at most one of weight, replicas, matchTrafficWeight")
)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Canary size as a percentage of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// Canary size as a pod count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Go back to sizing the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// Routes requests that match headers to the canary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// Name of the route; must be listed in `trafficRouting.managedRoutes`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Header matches; no matches removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub matches: Option<Vec<HeaderRoutingMatch>>,
}

/// Mirrors the requests that match to the canary, while they are still served as the split
/// route serves them (Istio only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// Name of the route; must be listed in `trafficRouting.managedRoutes`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Request matches (any one matches); no matches removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub matches: Option<Vec<RouteMatch>>,
    /// Percentage of the matching requests mirrored (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percentage: Option<i32>,
}

/// One request match of a mirror route: every field given must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatch>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    #[schemars(length(min = 1))]
    pub header_name: String,
    pub header_value: StringMatch,
}

/// Exactly one of `exact`, `prefix` and `regex`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1").message("a header value takes exactly one of exact, prefix, regex")
)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Weighted traffic routing. Sluice supports Istio and Gateway API natively.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!(has(self.istio) && has(self.gatewayAPI))").message("trafficRouting takes one of istio and gatewayAPI, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTrafficRouting>,
    /// Routes Sluice adds and removes (for `setHeaderRoute`), highest precedence first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub managed_routes: Option<Vec<ManagedRoute>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ManagedRoute {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Istio: host-level (VirtualService routes between two Services) or subset-level (with a
/// DestinationRule).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.virtualService) || (has(self.virtualServices) && size(self.virtualServices) > 0)").message("istio needs virtualService or virtualServices")
)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub virtual_services: Option<Vec<IstioVirtualService>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Names of the HTTP routes to split; may be omitted when the VirtualService has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub routes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tls_routes: Option<Vec<IstioTlsRoute>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tcp_routes: Option<Vec<IstioTcpRoute>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTlsRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub sni_hosts: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct IstioTcpRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub canary_subset_name: String,
    #[schemars(length(min = 1))]
    pub stable_subset_name: String,
}

/// Gateway API: `backendRefs` weights of HTTPRoutes between the stable and canary Services.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.httpRoute) || (has(self.httpRoutes) && size(self.httpRoutes) > 0)").message("gatewayAPI needs httpRoute or httpRoutes")
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTrafficRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub http_routes: Option<Vec<GatewayApiRoute>>,
    /// Namespace of the routes (default: the Rollout's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRoute {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Blue-green: run the new revision beside the old, then switch the active Service at once.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service that receives production traffic.
    #[schemars(length(min = 1))]
    pub active_service: String,
    /// Service that points at the new revision before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Size of the new revision before promotion (default: `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub preview_replica_count: Option<i32>,
    /// Promote as soon as the new revision is available (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// Promote this many seconds after the new revision is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub auto_promotion_seconds: Option<i32>,
    /// Seconds the old revision keeps running after the switch (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds the new revision keeps running after an abort (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// How many old revisions, newest first, may keep their pods during
    /// `scaleDownDelaySeconds`; older ones go to zero at once (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Analysis that must pass before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis that must pass after the switch, or the switch is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Labels and annotations on the active revision's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations on the preview's pods until it is the stable revision (not part
    /// of the revision: changing them restarts nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
}

/// Labels and annotations Sluice puts on the pods of one role (canary, stable, preview,
/// active), on top of the template's; they move with the role, never make a new revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl BlueGreenStrategy {
    pub fn auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled
            .unwrap_or(defaults::AUTO_PROMOTION_ENABLED)
    }
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(defaults::SCALE_DOWN_DELAY_SECONDS)
    }
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(defaults::ABORT_SCALE_DOWN_DELAY_SECONDS)
    }
}

/// Analysis run as a step or around a blue-green promotion.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("size(self.templates) > 0").message("analysis needs at least one template")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    #[schemars(length(max = 16))]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<AnalysisRunArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub dry_run: Option<Vec<DryRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
}

/// Analysis that runs in the background from `startingStep` to the end of the release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("size(self.templates) > 0").message("analysis needs at least one template")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisBackground {
    #[schemars(length(max = 16))]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<AnalysisRunArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub dry_run: Option<Vec<DryRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Index of the step at which the background analysis starts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_step: Option<i32>,
}

/// A reference to an AnalysisTemplate (or ClusterAnalysisTemplate with `clusterScope`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    #[schemars(length(min = 1))]
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// What the controller observed and decided. Written by Sluice alone, except the controls
/// (`abort`, `promoteFull`, `pauseConditions`) that people and tools patch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Hash of the pod template being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Hash of the stable ReplicaSet's pod template.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// True while Sluice itself has paused the rollout (a pause step, an inconclusive
    /// analysis); clearing `pauseConditions` while it is set is a promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// Set to true to abort the rollout; false to retry after an abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Releases this Rollout has started: each new revision and each retry after an abort.
    /// It numbers the release's AnalysisRuns, so an attempt is never judged by the runs of an
    /// earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_count: Option<i32>,
    /// Set to true to skip the remaining steps and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// When the release last made progress (a step, a pod available, a new revision); the
    /// progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressed_at: Option<Time>,
    /// Label selector in string form, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The `spec.restartAt` whose restart is complete: every pod was created after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// Notifications of this Rollout's decisions: each is recorded in the same status write as
    /// the decision, and says which receivers have it, so a restart neither loses nor repeats
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationLog>,
    /// A rollback exercise under way (`RolloutExercise`): its faulty revision is released
    /// instead of the template while this is here, and the spec never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exercise: Option<super::exercise::ExerciseInForce>,
}

/// The last notifications of a Rollout, oldest first.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationLog {
    /// The id of the last notification recorded (ids only grow).
    #[serde(default)]
    pub sequence: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<NotificationRecord>,
}

/// One decision told to receivers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    pub id: i64,
    /// `on-release-started`, `on-step-completed`, `on-paused`, `on-promoted`, `on-aborted`,
    /// `on-analysis-inconclusive`, `on-recovered` or `on-exercise-failed`.
    pub trigger: String,
    /// The revision (pod-template hash) the decision is about.
    pub revision: String,
    pub at: Time,
    pub message: String,
    /// The metric that failed or was inconclusive, when an analysis decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<NotifiedAnalysis>,
    /// Receivers still to be told.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Receivers that took it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    /// Receivers Sluice gave up on, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// What an analysis measured when it decided.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedAnalysis {
    /// The AnalysisRun.
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The last value measured, as the run records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The condition it was judged by (`successCondition` or `failureCondition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    Healthy,
    Progressing,
    Paused,
    Degraded,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    pub reason: PauseReason,
    pub start_time: Time,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PauseReason {
    CanaryPauseStep,
    BlueGreenPause,
    InconclusiveAnalysis,
    UserPause,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// True once a promotion has started and the preview is being scaled to full size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

/// The AnalysisRun a rollout is waiting on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RolloutAnalysisRunStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<super::analysis::AnalysisPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
