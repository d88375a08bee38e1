//! Metric providers: where a measurement comes from. Each provider turns one metric of an
//! AnalysisRun into an [`Outcome`]; judging it is the pure core's job (`analysis::judge`).
//!
//! Every call is bounded by a timeout, and every failure to measure is an
//! `Outcome::ProviderError`, never a verdict.

pub mod backtest;
pub mod burnrate;
pub mod compare;
pub mod job;
pub mod prometheus;
pub mod web;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::analysis::judge::Outcome;
use crate::analysis::value::MetricValue;
use crate::api::analysis::{
    AnalysisRun, Measurement, Metric, SecretKeyRef, TlsConfig, WebMetricHeader,
};

/// How long a read of a Secret or ConfigMap may take.
pub const KUBE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A provider's default time limit when the metric sets none.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a provider may use for one measurement.
pub struct MeasureContext<'a> {
    pub client: &'a Client,
    pub run: &'a AnalysisRun,
    pub namespace: &'a str,
    pub now: Timestamp,
    /// 1 for a metric's first measurement, 2 for the next (errors included).
    pub attempt: i32,
    /// Every secret value read for this measurement, so the caller can mask it in whatever
    /// the measurement reports.
    pub secrets: std::sync::Mutex<Vec<String>>,
}

impl MeasureContext<'_> {
    /// Reads a Secret key and remembers the value for masking.
    pub async fn secret(&self, r: &SecretKeyRef) -> Result<String, String> {
        let v = secret_value(self.client, self.namespace, r).await?;
        if let Ok(mut seen) = self.secrets.lock() {
            seen.push(v.clone());
        }
        Ok(v)
    }

    /// A request header a metric asks for, its value read from a Secret when it says so.
    pub async fn header(
        &self,
        h: &WebMetricHeader,
    ) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => self.secret(&from.secret_key_ref).await?,
            (None, None) => String::new(),
        };
        let name = reqwest::header::HeaderName::from_bytes(h.key.as_bytes())
            .map_err(|_| format!("{:?} is not a valid header name", h.key))?;
        let value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("header {:?} has a value that is not valid", h.key))?;
        Ok((name, value))
    }

    /// The secret values read so far.
    pub fn secrets_read(&self) -> Vec<String> {
        self.secrets.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One source of measurements.
pub trait Provider {
    /// The provider's part of a metric (`metric.provider.<provider>`).
    type Spec;

    /// Takes a measurement of `metric` as `spec` says, or continues `resume` (a measurement
    /// still running).
    fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        metric: &Metric,
        spec: &Self::Spec,
        resume: Option<&Measurement>,
    ) -> impl Future<Output = Outcome> + Send;
}

pub fn provider_error(message: impl Into<String>, metadata: BTreeMap<String, String>) -> Outcome {
    Outcome::ProviderError {
        message: message.into(),
        metadata,
    }
}

/// A provider's answer as an outcome: a value to judge, or why it could not measure.
pub fn value_or_error(
    answer: Result<MetricValue, String>,
    metadata: BTreeMap<String, String>,
) -> Outcome {
    match answer {
        Ok(value) => Outcome::Value { value, metadata },
        Err(message) => provider_error(message, metadata),
    }
}

/// A metric's time limit, given in whole seconds, or the default when it gives none (or a
/// negative one).
pub fn timeout_or_default(seconds: Option<i64>) -> Duration {
    seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_PROVIDER_TIMEOUT)
}

/// The most one measurement may take, all its requests together, unless the metric's own
/// timeout asks for more.
pub const MEASURE_LIMIT: Duration = Duration::from_secs(180);

/// How long a measurement of `metric` may take in all: [`MEASURE_LIMIT`], or the metric's
/// timeout and 30 s when that is longer.
pub fn measure_limit(metric: &Metric) -> Duration {
    let p = &metric.provider;
    let own = p
        .prometheus
        .as_ref()
        .and_then(|x| x.timeout)
        .or(p.compare.as_ref().and_then(|x| x.prometheus.timeout))
        .or(p.burn_rate.as_ref().and_then(|x| x.prometheus.timeout))
        .or(p.web.as_ref().and_then(|x| x.timeout_seconds));
    own.map_or(MEASURE_LIMIT, |t| {
        MEASURE_LIMIT.max(timeout_or_default(Some(t)) + Duration::from_secs(30))
    })
}

/// Measures with whichever provider the metric names, within [`measure_limit`]: a
/// measurement that takes longer is a provider error.
pub async fn measure(
    ctx: &MeasureContext<'_>,
    metric: &Metric,
    resume: Option<&Measurement>,
) -> Outcome {
    let limit = measure_limit(metric);
    match tokio::time::timeout(limit, measure_now(ctx, metric, resume)).await {
        Ok(outcome) => outcome,
        Err(_) => provider_error(
            format!(
                "the measurement took longer than {}s in all and was given up",
                limit.as_secs()
            ),
            BTreeMap::new(),
        ),
    }
}

async fn measure_now(
    ctx: &MeasureContext<'_>,
    metric: &Metric,
    resume: Option<&Measurement>,
) -> Outcome {
    let provider = &metric.provider;
    if let Some(spec) = &provider.prometheus {
        prometheus::PrometheusProvider
            .measure(ctx, metric, spec, resume)
            .await
    } else if let Some(spec) = &provider.web {
        web::WebProvider.measure(ctx, metric, spec, resume).await
    } else if let Some(spec) = &provider.job {
        job::JobProvider.measure(ctx, metric, spec, resume).await
    } else if let Some(spec) = &provider.compare {
        compare::CompareProvider
            .measure(ctx, metric, spec, resume)
            .await
    } else if let Some(spec) = &provider.burn_rate {
        burnrate::BurnRateProvider
            .measure(ctx, metric, spec, resume)
            .await
    } else {
        provider_error("the metric names no provider", BTreeMap::new())
    }
}

/// Reads one object of kind `K` in `namespace`, under the read timeout.
async fn read<K>(client: &Client, namespace: &str, name: &str) -> Result<K, String>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let kind = K::kind(&());
    tokio::time::timeout(KUBE_READ_TIMEOUT, api.get(name))
        .await
        .map_err(|_| format!("reading {kind} {name:?} timed out"))?
        .map_err(|e| format!("cannot read {kind} {name:?}: {}", short_kube_error(&e)))
}

/// Reads one key of a Secret in `namespace`.
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<String, String> {
    let secret: Secret = read(client, namespace, &r.name).await?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("Secret {:?} has no key {:?}", r.name, r.key))?;
    String::from_utf8(bytes)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|_| format!("Secret {:?} key {:?} is not UTF-8 text", r.name, r.key))
}

async fn config_map_value(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<String, String> {
    let cm: ConfigMap = read(client, namespace, &r.name).await?;
    cm.data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .cloned()
        .ok_or_else(|| format!("ConfigMap {:?} has no key {:?}", r.name, r.key))
}

fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// An HTTP client that trusts the configured CA bundle (and only skips verification when
/// `insecure` is asked for), with `timeout` on every request.
pub async fn http_client(
    ctx: &MeasureContext<'_>,
    tls: Option<&TlsConfig>,
    insecure: bool,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        let pem = match (&tls.ca_secret, &tls.ca_config_map) {
            (Some(s), _) => Some(ctx.secret(s).await?),
            (None, Some(c)) => Some(config_map_value(ctx.client, ctx.namespace, c).await?),
            (None, None) => None,
        };
        if let Some(pem) = pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("the CA bundle is not valid PEM: {e}"))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
    }
    if insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The error chain of a request failure, in one line.
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}
