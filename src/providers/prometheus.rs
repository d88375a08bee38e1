//! The `prometheus` provider: an instant PromQL query; `result` is a scalar or the vector of
//! sample values.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;

use super::{
    MeasureContext, Provider, describe_error, http_client, timeout_or_default, value_or_error,
};
use crate::analysis::judge::Outcome;
use crate::analysis::value::MetricValue;
use crate::api::analysis::{Measurement, Metric, PrometheusMetric};

pub struct PrometheusProvider;

impl Provider for PrometheusProvider {
    type Spec = PrometheusMetric;

    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        _metric: &Metric,
        p: &PrometheusMetric,
        _resume: Option<&Measurement>,
    ) -> Outcome {
        let metadata = BTreeMap::from([
            ("address".to_string(), p.address.clone()),
            ("query".to_string(), p.query.clone()),
        ]);
        value_or_error(query(ctx, p).await, metadata)
    }
}

async fn query(ctx: &MeasureContext<'_>, p: &PrometheusMetric) -> Result<MetricValue, String> {
    let timeout = timeout_or_default(p.timeout);
    let http = http_client(ctx, p.tls.as_ref(), p.insecure.unwrap_or(false), timeout).await?;
    let client = prometheus_http_query::Client::from(http, &p.address)
        .map_err(|e| format!("bad Prometheus address {:?}: {e}", p.address))?;
    let mut q = client.query(&p.query).timeout(timeout.as_millis() as i64);
    if let Some(auth) = &p.authentication {
        if let Some(r) = &auth.bearer_token {
            let token = ctx.secret(r).await?;
            q = q.header(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "the bearer token is not a valid header value".to_string())?,
            );
        } else if let Some(b) = &auth.basic {
            let password = ctx.secret(&b.password).await?;
            let creds = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", b.username, password));
            q = q.header(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(&format!("Basic {creds}")).map_err(
                    |_| "the basic credentials are not a valid header value".to_string(),
                )?,
            );
        }
    }
    for h in p.headers.iter().flatten() {
        let (name, value) = ctx.header(h).await?;
        q = q.header(name, value);
    }
    // The HTTP client carries the same timeout; this one also bounds reading the body.
    let res = tokio::time::timeout(timeout + Duration::from_secs(1), q.get())
        .await
        .map_err(|_| format!("the query timed out after {}s", timeout.as_secs()))?
        .map_err(|e| format!("Prometheus query failed: {}", describe_error(&e)))?;
    use prometheus_http_query::response::Data;
    match res.data() {
        Data::Scalar(s) => Ok(MetricValue::Scalar(s.value())),
        Data::Vector(v) => Ok(MetricValue::Vector(
            v.iter().map(|s| s.sample().value()).collect(),
        )),
        Data::Matrix(_) => {
            Err("the query returned a range vector; use an instant vector or a scalar".to_string())
        }
    }
}
