//! The `burnRate` provider: the canary's error ratio over each window the alerts need, as
//! instant queries, judged by `analysis::burn`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::prometheus::Connection;
use super::{MeasureContext, Provider, provider_error};
use crate::analysis::burn::{self, Alert, Measured};
use crate::analysis::judge::Outcome;
use crate::analysis::value::MetricValue;
use crate::api::analysis::{BurnRateMetric, Measurement, Metric};

pub struct BurnRateProvider;

impl Provider for BurnRateProvider {
    type Spec = BurnRateMetric;

    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        _metric: &Metric,
        spec: &BurnRateMetric,
        _resume: Option<&Measurement>,
    ) -> Outcome {
        let metadata = BTreeMap::from([("address".to_string(), spec.prometheus.address.clone())]);
        let alerts = match burn::alerts(spec) {
            Ok(a) => a,
            Err(e) => return provider_error(e, metadata),
        };
        let conn = match Connection::open(ctx, &spec.prometheus).await {
            Ok(c) => c,
            Err(e) => return provider_error(e, metadata),
        };
        let started = ctx
            .run
            .status
            .as_ref()
            .and_then(|s| s.started_at.as_ref())
            .map(|t| t.0);
        let elapsed =
            started.map(|s| Duration::from_secs(ctx.now.duration_since(s).as_secs().max(0) as u64));
        match measure_at(&conn, spec, &alerts, None, elapsed).await {
            Ok(m) => burn::judge(spec, &alerts, &m),
            Err(e) => provider_error(e, metadata),
        }
    }
}

/// The sum of a query's values; `None` when it returned nothing.
fn total(v: MetricValue) -> Option<f64> {
    match v {
        MetricValue::Scalar(x) => Some(x),
        MetricValue::Vector(v) if v.is_empty() => None,
        MetricValue::Vector(v) => Some(v.iter().sum()),
        MetricValue::Json(_) => None,
    }
}

/// The error ratio over `window` at `at` (now when `None`).
pub async fn ratio_over(
    conn: &Connection,
    spec: &BurnRateMetric,
    window: Duration,
    at: Option<Timestamp>,
) -> Result<Option<f64>, String> {
    if let Some(q) = &spec.ratio_query {
        let v = conn.instant(&burn::with_window(q, window), at).await?;
        return Ok(burn::ratio(total(v)));
    }
    let (Some(bad), Some(all)) = (&spec.bad_query, &spec.total_query) else {
        return Err("burnRate needs ratioQuery, or badQuery and totalQuery".into());
    };
    let bad = total(conn.instant(&burn::with_window(bad, window), at).await?);
    let all = total(conn.instant(&burn::with_window(all, window), at).await?);
    Ok(burn::error_ratio(bad, all))
}

/// Every window's error ratio at `at`, and over `elapsed` (the canary's life so far) when
/// known.
pub async fn measure_at(
    conn: &Connection,
    spec: &BurnRateMetric,
    alerts: &[Alert],
    at: Option<Timestamp>,
    elapsed: Option<Duration>,
) -> Result<Measured, String> {
    let mut m = Measured::default();
    for w in burn::windows(alerts) {
        m.ratios.insert(w, ratio_over(conn, spec, w, at).await?);
    }
    if let Some(e) = elapsed {
        let min = alerts
            .iter()
            .map(|a| a.short)
            .min()
            .unwrap_or(Duration::from_secs(30));
        let e = Duration::from_secs(e.as_secs()).max(min);
        m.elapsed = Some((e, ratio_over(conn, spec, e, at).await?));
    }
    Ok(m)
}
