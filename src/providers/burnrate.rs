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

/// A ratio query's value: one series, or none (no traffic). Several series would be several
/// ratios, and adding them up would inflate the burn rate.
fn single(v: MetricValue) -> Result<Option<f64>, String> {
    match v {
        MetricValue::Vector(v) if v.len() > 1 => Err(format!(
            "ratioQuery returned {} series; aggregate it to one (e.g. sum(...) / sum(...))",
            v.len()
        )),
        other => Ok(total(other)),
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
        return Ok(burn::ratio(single(v)?));
    }
    let (Some(bad), Some(all)) = (&spec.bad_query, &spec.total_query) else {
        return Err("burnRate needs ratioQuery, or badQuery and totalQuery".into());
    };
    let (bad, all) = futures::future::try_join(
        conn.instant(&burn::with_window(bad, window), at),
        conn.instant(&burn::with_window(all, window), at),
    )
    .await?;
    Ok(burn::error_ratio(total(bad), total(all)))
}

/// Every window's error ratio at `at`, and over `elapsed` (the canary's life so far) when
/// known; all queries at once.
pub async fn measure_at(
    conn: &Connection,
    spec: &BurnRateMetric,
    alerts: &[Alert],
    at: Option<Timestamp>,
    elapsed: Option<Duration>,
) -> Result<Measured, String> {
    let windows = burn::windows(alerts);
    let elapsed = elapsed.map(|e| {
        let min = alerts
            .iter()
            .map(|a| a.short)
            .min()
            .unwrap_or(Duration::from_secs(30));
        Duration::from_secs(e.as_secs()).max(min)
    });
    let ratios =
        futures::future::try_join_all(windows.iter().map(|w| ratio_over(conn, spec, *w, at)));
    let life = async {
        match elapsed {
            Some(e) => ratio_over(conn, spec, e, at).await.map(|r| Some((e, r))),
            None => Ok(None),
        }
    };
    let (ratios, life) = futures::future::try_join(ratios, life).await?;
    Ok(Measured {
        ratios: windows.into_iter().zip(ratios).collect(),
        elapsed: life,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_is_one_series_and_sums_add_up() {
        assert_eq!(single(MetricValue::Vector(vec![0.01])), Ok(Some(0.01)));
        assert_eq!(single(MetricValue::Vector(vec![])), Ok(None));
        assert_eq!(single(MetricValue::Scalar(0.02)), Ok(Some(0.02)));
        let e = single(MetricValue::Vector(vec![0.01, 0.01, 0.01])).expect_err("refused");
        assert!(e.contains("3 series"), "{e}");
        assert_eq!(total(MetricValue::Vector(vec![1.0, 2.0])), Some(3.0));
    }
}
