//! The `prometheus` provider: an instant PromQL query; `result` is a scalar or the vector of
//! sample values.
//!
//! [`Connection`] is how every Prometheus-backed provider (`prometheus`, `compare`,
//! `burnRate`) and the backtest reach a server: instant queries (now or at a past time) and
//! range queries, with the metric's credentials, headers, TLS and timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use reqwest::header::{HeaderName, HeaderValue};

use super::{
    MeasureContext, Provider, describe_error, http_client, timeout_or_default, value_or_error,
};
use crate::analysis::judge::Outcome;
use crate::analysis::value::MetricValue;
use crate::api::analysis::{Measurement, Metric, PrometheusMetric, PrometheusServer};

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
        let answer = match Connection::open(ctx, &p.server()).await {
            Ok(conn) => conn.instant(&p.query, None).await,
            Err(e) => Err(e),
        };
        value_or_error(answer, metadata)
    }
}

/// One series of a range query: its labels and its points (Unix seconds, value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

/// A Prometheus server, ready to query with the metric's credentials and time limit.
pub struct Connection {
    client: prometheus_http_query::Client,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl Connection {
    /// Reads the credentials (Secrets) and CA bundle the server needs and builds the client.
    pub async fn open(
        ctx: &MeasureContext<'_>,
        server: &PrometheusServer,
    ) -> Result<Connection, String> {
        let timeout = timeout_or_default(server.timeout);
        let http = http_client(
            ctx,
            server.tls.as_ref(),
            server.insecure.unwrap_or(false),
            timeout,
        )
        .await?;
        let client = prometheus_http_query::Client::from(http, &server.address)
            .map_err(|e| format!("bad Prometheus address {:?}: {e}", server.address))?;
        let mut headers = Vec::new();
        if let Some(auth) = &server.authentication {
            if let Some(r) = &auth.bearer_token {
                let token = ctx.secret(r).await?;
                headers.push((
                    reqwest::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|_| "the bearer token is not a valid header value".to_string())?,
                ));
            } else if let Some(b) = &auth.basic {
                let password = ctx.secret(&b.password).await?;
                let creds = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", b.username, password));
                headers.push((
                    reqwest::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Basic {creds}")).map_err(|_| {
                        "the basic credentials are not a valid header value".to_string()
                    })?,
                ));
            }
        }
        for h in server.headers.iter().flatten() {
            headers.push(ctx.header(h).await?);
        }
        Ok(Connection {
            client,
            headers,
            timeout,
        })
    }

    /// The query's value now, or at `at`: a scalar, or the vector's sample values.
    pub async fn instant(&self, query: &str, at: Option<Timestamp>) -> Result<MetricValue, String> {
        let mut q = self
            .client
            .query(query)
            .timeout(self.timeout.as_millis() as i64);
        if let Some(at) = at {
            q = q.at(at.as_second());
        }
        for (name, value) in &self.headers {
            q = q.header(name.clone(), value.clone());
        }
        // The HTTP client carries the same timeout; this one also bounds reading the body.
        let res = tokio::time::timeout(self.timeout + Duration::from_secs(1), q.get())
            .await
            .map_err(|_| format!("the query timed out after {}s", self.timeout.as_secs()))?
            .map_err(|e| format!("Prometheus query failed: {}", describe_error(&e)))?;
        use prometheus_http_query::response::Data;
        match res.data() {
            Data::Scalar(s) => Ok(MetricValue::Scalar(s.value())),
            Data::Vector(v) => Ok(MetricValue::Vector(
                v.iter().map(|s| s.sample().value()).collect(),
            )),
            Data::Matrix(_) => Err(
                "the query returned a range vector; use an instant vector or a scalar".to_string(),
            ),
        }
    }

    /// The query evaluated at `start`, `start + step`, … up to `end` (Prometheus'
    /// `query_range`): one [`Series`] per series, in the order Prometheus returned them.
    pub async fn range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<Series>, String> {
        let mut q = self
            .client
            .query_range(
                query,
                start.as_second(),
                end.as_second(),
                step.as_secs_f64().max(1.0),
            )
            .timeout(self.timeout.as_millis() as i64);
        for (name, value) in &self.headers {
            q = q.header(name.clone(), value.clone());
        }
        let res = tokio::time::timeout(self.timeout + Duration::from_secs(1), q.get())
            .await
            .map_err(|_| {
                format!(
                    "the range query timed out after {}s",
                    self.timeout.as_secs()
                )
            })?
            .map_err(|e| format!("Prometheus range query failed: {}", describe_error(&e)))?;
        use prometheus_http_query::response::Data;
        match res.data() {
            Data::Matrix(m) => Ok(m
                .iter()
                .map(|r| Series {
                    labels: r
                        .metric()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    points: r
                        .samples()
                        .iter()
                        .map(|s| (s.timestamp().round() as i64, s.value()))
                        .collect(),
                })
                .collect()),
            Data::Vector(_) | Data::Scalar(_) => {
                Err("a range query returned an instant result".to_string())
            }
        }
    }
}
