//! `AnalysisTemplate`, `ClusterAnalysisTemplate` and `AnalysisRun`, as in Argo Rollouts.

// kube's `printcolumn(...)` attributes repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationString;
use super::schema::{preserve_unknown_object, preserve_unknown_value};

/// Metrics to measure and the conditions that judge them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    shortname = "sat",
    category = "sluice",
    doc = "An AnalysisTemplate says how to judge a release: metrics, providers and conditions.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("(has(self.metrics) && size(self.metrics) > 0) || (has(self.templates) && size(self.templates) > 0)").message("a template needs metrics or templates")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Option<Vec<Metric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<Argument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub dry_run: Option<Vec<DryRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    /// Other templates whose metrics and args this one includes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub templates: Option<Vec<super::rollout::AnalysisTemplateRef>>,
}

/// The cluster-scoped twin of `AnalysisTemplate`, shared by every namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    derive = "PartialEq",
    derive = "Default",
    shortname = "scat",
    category = "sluice",
    doc = "A ClusterAnalysisTemplate is an AnalysisTemplate shared by every namespace.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("(has(self.metrics) && size(self.metrics) > 0) || (has(self.templates) && size(self.templates) > 0)").message("a template needs metrics or templates")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAnalysisTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Option<Vec<Metric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<Argument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub dry_run: Option<Vec<DryRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub templates: Option<Vec<super::rollout::AnalysisTemplateRef>>,
}

impl From<ClusterAnalysisTemplateSpec> for AnalysisTemplateSpec {
    fn from(c: ClusterAnalysisTemplateSpec) -> Self {
        AnalysisTemplateSpec {
            metrics: c.metrics,
            args: c.args,
            dry_run: c.dry_run,
            measurement_retention: c.measurement_retention,
            templates: c.templates,
        }
    }
}

/// One metric: where to measure, how often, and what counts as success or failure.
///
/// `interval`, `initialDelay`, `count` and the three limits may be written as
/// `"{{args.name}}"`; the value is checked when the run is built from the template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.count) || type(self.count) != int || self.count <= 1 || has(self.interval)").message("count above 1 needs an interval")
)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Time between measurements, e.g. `30s`, or `{{args.name}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_duration")]
    pub interval: Option<DurationString>,
    /// Wait this long before the first measurement (a duration or `{{args.name}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_duration")]
    pub initial_delay: Option<DurationString>,
    /// Number of measurements; absent means one, or until stopped when `interval` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_count")]
    pub count: Option<IntOrString>,
    /// CEL over `result`, e.g. `result[0] >= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// CEL over `result`, e.g. `result[0] > 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_limit")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated before the metric is inconclusive (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_limit")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Provider errors in a row tolerated (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_limit")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// What a provider outage beyond `consecutiveErrorLimit` means: `Inconclusive` (default:
    /// the rollout pauses, never promotes on missing data) or `Failed` (the rollout aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_provider_error: Option<ProviderErrorVerdict>,
    /// What a result with no data (an empty Prometheus vector, a JSON `null`) means:
    /// `Inconclusive` (default), `Failed`, `Successful`, or `Evaluate` to hand it to the
    /// conditions (for conditions written with `default(...)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_empty_result: Option<EmptyResultVerdict>,
    pub provider: MetricProvider,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProviderErrorVerdict {
    Inconclusive,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EmptyResultVerdict {
    Inconclusive,
    Failed,
    Successful,
    Evaluate,
}

/// A `{{args.name}}` placeholder, alone (`ARG_ONLY`) or anywhere in a string (`ARG_INSIDE`).
const ARG_ONLY: &str = r"^\{\{ *args\.[^{} ]+ *\}\}$";

/// A duration (`DURATION_PATTERN`), or a string with a `{{args.name}}` placeholder in it
/// (`"{{args.interval}}"`, `"{{args.seconds}}s"`): checked when the run is built.
pub const TEMPLATED_DURATION_PATTERN: &str = r"^([0-9]{1,12}|([0-9]{1,12}(\.[0-9]{1,9})?(ns|us|µs|μs|ms|s|m|h)){1,8})$|^.*\{\{ *args\.[^{} ]+ *\}\}.*$";

/// `interval` and `initialDelay`.
fn templated_duration(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "nullable": true,
        "pattern": TEMPLATED_DURATION_PATTERN,
        "description": "A duration such as 30s, 5m or 1h30m (a bare whole number means seconds), or {{args.name}}."
    })
}

/// `count`: a whole number from 1, or `{{args.name}}` (a string of digits is read as the number).
fn templated_count(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": 1,
        "maximum": i32::MAX,
        "pattern": format!("^[0-9]{{1,9}}$|{ARG_ONLY}"),
        "description": "Number of measurements (from 1), or {{args.name}}; absent means one, or until stopped when `interval` is set."
    })
}

/// `failureLimit`, `inconclusiveLimit`, `consecutiveErrorLimit`: from -1 (no limit), or
/// `{{args.name}}`.
fn templated_limit(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": -1,
        "maximum": i32::MAX,
        "pattern": format!("^-?[0-9]{{1,9}}$|{ARG_ONLY}"),
        "description": "A whole number from -1 (-1: no limit), or {{args.name}}."
    })
}

/// Where a metric is measured: exactly one provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.prometheus) ? 1 : 0) + (has(self.web) ? 1 : 0) + (has(self.job) ? 1 : 0) + (has(self.compare) ? 1 : 0) + (has(self.burnRate) ? 1 : 0) == 1").message("a metric needs exactly one provider: prometheus, web, job, compare or burnRate")
)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// The canary against the stable revision, judged with statistics (docs/statistics.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareMetric>,
    /// The canary's SLO burn rate over several windows (docs/statistics.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<BurnRateMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
}

/// A PromQL query; `result` is its value (a scalar, or a vector of sample values).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1))]
    pub address: String,
    #[schemars(length(min = 1))]
    pub query: String,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout: Option<i64>,
    /// Skip TLS verification. Only when asked; never the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra request headers, e.g. `X-Scope-OrgID: team-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub headers: Option<Vec<WebMetricHeader>>,
    /// Credentials, read from Secrets in the AnalysisRun's namespace at each measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuthentication>,
    /// The CA bundle that signed the server's certificate, for `https://` addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl PrometheusMetric {
    /// The server part of the metric.
    pub fn server(&self) -> PrometheusServer {
        PrometheusServer {
            address: self.address.clone(),
            timeout: self.timeout,
            insecure: self.insecure,
            headers: self.headers.clone(),
            authentication: self.authentication.clone(),
            tls: self.tls.clone(),
        }
    }
}

/// A Prometheus server and how to reach it (as in the `prometheus` provider).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusServer {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1))]
    pub address: String,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout: Option<i64>,
    /// Skip TLS verification. Only when asked; never the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub headers: Option<Vec<WebMetricHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuthentication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// The canary against the stable revision: each query is run for both revisions over the
/// same window (`{{revision}}` in the query becomes `canary`, then `stable`), the two samples
/// are compared with a Mann-Whitney U test, and the metrics' verdicts make a weighted score
/// (Kayenta's method). The measurement is Successful at `passScore` or above, Inconclusive
/// from `marginalScore` (or with too few samples), Failed below.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.marginalScore) || !has(self.passScore) || self.marginalScore <= self.passScore").message("marginalScore cannot be above passScore")
)]
#[serde(rename_all = "camelCase")]
pub struct CompareMetric {
    pub prometheus: PrometheusServer,
    /// What `{{revision}}` becomes for the canary, usually `{{args.canary-hash}}` bound to
    /// `valueFrom.podTemplateHashValue: Latest`.
    #[schemars(length(min = 1))]
    pub canary: String,
    /// What `{{revision}}` becomes for the stable, usually `{{args.stable-hash}}` bound to
    /// `valueFrom.podTemplateHashValue: Stable`.
    #[schemars(length(min = 1))]
    pub stable: String,
    /// How far back the samples reach; absent means since the AnalysisRun started. At most
    /// 10,000 steps a side are kept: a longer window keeps its latest part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<DurationString>,
    /// The time between two samples of a series (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<DurationString>,
    /// The score (0-100) at or above which the canary passes (default 95, as in Kayenta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub pass_score: Option<f64>,
    /// The score at or above which a canary that does not pass is marginal: Inconclusive
    /// rather than Failed (default 75, as in Kayenta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub marginal_score: Option<f64>,
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<CompareQuery>,
}

/// One metric of a comparison.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareQuery {
    #[schemars(length(min = 1))]
    pub name: String,
    /// PromQL giving one value per step for one revision, with `{{revision}}` where the
    /// revision goes, e.g. `sum(rate(errors{revision="{{revision}}"}[1m]))`.
    #[schemars(length(min = 1))]
    pub query: String,
    /// Which change of the canary is bad (default Either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CompareDirection>,
    /// The change tolerated, as a fraction of the stable's median (default 0.25: a quarter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub tolerance: Option<f64>,
    /// Confidence of the interval of the shift between the revisions (default 0.98): a
    /// metric fails only when the whole interval lies beyond the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: Option<f64>,
    /// Fewer samples than this on either side is Inconclusive, never Failed (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3, max = 100000))]
    pub min_samples: Option<i32>,
    /// Weight in the score (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub weight: Option<f64>,
    /// A bad change of a critical metric fails the comparison whatever the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CompareDirection {
    /// Higher is bad (latency, errors).
    Increase,
    /// Lower is bad (throughput, success rate).
    Decrease,
    /// Any change is bad.
    Either,
}

/// The canary's error-budget burn rate, judged with the multi-window, multi-burn-rate rule
/// of Google's SRE workbook: Failed when any pair of windows both burn faster than the pair's
/// rate. `{{window}}` in the queries becomes each window (a Prometheus duration).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.ratioQuery) != (has(self.badQuery) && has(self.totalQuery))").message("burnRate takes ratioQuery, or badQuery and totalQuery"),
    validation = Rule::new("has(self.badQuery) == has(self.totalQuery)").message("badQuery and totalQuery go together")
)]
#[serde(rename_all = "camelCase")]
pub struct BurnRateMetric {
    pub prometheus: PrometheusServer,
    /// The SLO target: the fraction of good events, e.g. 0.999.
    #[schemars(range(min = 0.0, max = 0.999999))]
    pub objective: f64,
    /// PromQL: the rate of bad events over `{{window}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_query: Option<String>,
    /// PromQL: the rate of all events over `{{window}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_query: Option<String>,
    /// PromQL: the ratio of bad to all events over `{{window}}` (e.g. a recording rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_query: Option<String>,
    /// The span the workbook's 6h window is scaled to (default 30m); the other windows keep
    /// their ratios to it (1h, 30m and 5m become 1/6, 1/12 and 1/72 of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationString>,
    /// No window, scaled or in `alerts`, is shorter than this (default 30s; at least a few
    /// scrape intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_window: Option<DurationString>,
    /// The SLO period, for the share of the error budget the canary consumed (default 30d
    /// written as 720h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<DurationString>,
    /// The alert pairs, replacing the scaled workbook pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    pub alerts: Option<Vec<BurnRateAlert>>,
}

/// Fires when the burn rate over both windows exceeds `burnRate`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BurnRateAlert {
    pub long: DurationString,
    pub short: DurationString,
    #[schemars(range(min = 0.0))]
    pub burn_rate: f64,
}

/// Bearer token or basic auth, from Secrets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!(has(self.bearerToken) && has(self.basic))").message("authentication takes bearerToken or basic, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuthentication {
    /// `Authorization: Bearer <token>` with the token from this Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    #[schemars(length(min = 1))]
    pub username: String,
    pub password: SecretKeyRef,
}

/// Where the CA bundle (PEM) is: a Secret key or a ConfigMap key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!(has(self.caSecret) && has(self.caConfigMap))").message("tls takes caSecret or caConfigMap, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<SecretKeyRef>,
}

/// An HTTP check; `result` is the JSON value at `jsonPath` in the response body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<WebMetricMethod>,
    #[schemars(length(min = 1))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub headers: Option<Vec<WebMetricHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_value")]
    pub json_body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
    /// JSONPath into the response body, e.g. `{$.data.ok}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// The CA bundle that signed the server's certificate, for `https://` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WebMetricMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
}

/// A request header: a literal `value` (may use `{{args.name}}`) or a Secret key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a header takes value or valueFrom")
)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricHeader {
    #[schemars(length(min = 1))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueFrom>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueFrom {
    pub secret_key_ref: SecretKeyRef,
}

/// A Kubernetes Job; its success or failure is the measurement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct JobMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetricMetadata>,
    #[schemars(schema_with = "preserve_unknown_object")]
    pub spec: JobSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct JobMetricMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A template argument: a literal `value`, or a value taken from elsewhere.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!(has(self.value) && has(self.valueFrom))").message("an argument takes value or valueFrom, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// Arguments a Rollout passes to its analysis; the same shape as a template's.
pub type AnalysisRunArgument = Argument;

/// Exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.secretKeyRef) ? 1 : 0) + (has(self.fieldRef) ? 1 : 0) + (has(self.podTemplateHashValue) ? 1 : 0) == 1").message("valueFrom takes exactly one of secretKeyRef, fieldRef, podTemplateHashValue")
)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// The pod-template-hash of the `Stable` or `Latest` revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// A path into the Rollout, e.g. `metadata.labels['app']`.
    #[schemars(length(min = 1))]
    pub field_path: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PodTemplateHashValue {
    Stable,
    Latest,
}

/// Run the metrics this selects without letting their verdicts affect the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// A regular expression matched anywhere in a metric's name (`test` matches `my-test`;
    /// `.*` every metric; `^name$` one name). It must select at least one metric.
    #[schemars(length(min = 1))]
    pub metric_name: String,
}

/// Keep this many measurements of the metrics this selects (default 10).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// A regular expression matched anywhere in a metric's name, as in `dryRun`. When several
    /// rules select a metric, the last one wins.
    #[schemars(length(min = 1))]
    pub metric_name: String,
    /// Measurements kept; 0 means the default, 10.
    #[schemars(range(min = 0))]
    pub limit: i32,
}

/// One analysis, instantiated from templates with its arguments resolved.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    status = "AnalysisRunStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "sar",
    category = "sluice",
    doc = "An AnalysisRun measures metrics and reaches a verdict: Successful, Failed, Error or Inconclusive.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("size(self.metrics) > 0").message("an AnalysisRun needs at least one metric")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<Argument>>,
    /// Set to true to stop measuring; the run ends with the verdict so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub dry_run: Option<Vec<DryRun>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metricName"]))]
    pub measurement_retention: Option<Vec<MeasurementRetention>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AnalysisPhase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_summary: Option<RunSummary>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: Option<AnalysisPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub count: i32,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub error: i32,
    #[serde(default)]
    pub consecutive_error: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// One measurement: when, what value, what verdict, and for a failure why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: Option<AnalysisPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Provider details, e.g. the resolved query and the condition that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RunSummary {
    #[serde(default)]
    pub count: i32,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub error: i32,
}
