//! The `compare` provider: each metric's query over the same window for the canary and the
//! stable revision (`query_range` at `step`), judged by `analysis::compare`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::prometheus::{Connection, Series};
use super::{MeasureContext, Provider, provider_error};
use crate::analysis::compare::{self, Samples};
use crate::analysis::judge::Outcome;
use crate::api::analysis::{CompareMetric, CompareQuery, Measurement, Metric};

pub struct CompareProvider;

impl Provider for CompareProvider {
    type Spec = CompareMetric;

    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        _metric: &Metric,
        spec: &CompareMetric,
        _resume: Option<&Measurement>,
    ) -> Outcome {
        let mut metadata = BTreeMap::from([
            ("address".to_string(), spec.prometheus.address.clone()),
            ("canary".to_string(), spec.canary.clone()),
            ("stable".to_string(), spec.stable.clone()),
        ]);
        let (step, lookback) = match compare::check(spec)
            .and_then(|()| Ok((compare::step(spec)?, compare::lookback(spec)?)))
        {
            Ok(x) => x,
            Err(e) => return provider_error(e, metadata),
        };
        let started = ctx
            .run
            .status
            .as_ref()
            .and_then(|s| s.started_at.as_ref())
            .map(|t| t.0);
        let start = window_start(ctx.now, lookback, started, step);
        let end = ctx.now;
        metadata.insert(
            "window".into(),
            format!("{start} to {end} every {}s", step.as_secs()),
        );
        let conn = match Connection::open(ctx, &spec.prometheus).await {
            Ok(c) => c,
            Err(e) => return provider_error(e, metadata),
        };
        match samples(&conn, spec, start, end, step).await {
            Ok(s) => compare::judge(spec, &s).with_metadata(metadata),
            Err(e) => provider_error(e, metadata),
        }
    }
}

/// Where the samples begin: `lookback` before `end`, else when the run started; never more
/// than [`compare::MAX_SAMPLES`] steps before `end` (a longer window keeps its latest part).
pub fn window_start(
    end: Timestamp,
    lookback: Option<Duration>,
    started: Option<Timestamp>,
    step: Duration,
) -> Timestamp {
    let back = |d: Duration| {
        SignedDuration::try_from(d)
            .ok()
            .and_then(|d| end.checked_sub(d).ok())
    };
    let earliest = back(step * compare::MAX_SAMPLES).unwrap_or(end);
    let start = match lookback {
        Some(l) => back(l).unwrap_or(earliest),
        None => started.unwrap_or(end),
    };
    start.max(earliest).min(end)
}

/// Every point of every series, pooled (one series per revision is the usual case).
pub fn values(series: &[Series]) -> Vec<f64> {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect()
}

/// Both revisions' samples of each metric over `start..=end` at `step`.
pub async fn samples(
    conn: &Connection,
    spec: &CompareMetric,
    start: Timestamp,
    end: Timestamp,
    step: Duration,
) -> Result<Samples, String> {
    if end <= start {
        return Ok(spec
            .metrics
            .iter()
            .map(|q| (q.name.clone(), (Vec::new(), Vec::new())))
            .collect());
    }
    // Every query at once: a measurement takes about one query's time, not two per metric.
    let side = |q: &CompareQuery, revision: &str, which: &'static str| {
        let query = compare::for_revision(&q.query, revision);
        let name = q.name.clone();
        async move {
            conn.range(&query, start, end, step)
                .await
                .map(|s| values(&s))
                .map_err(|e| format!("metric {name:?}, {which}: {e}"))
        }
    };
    let pairs = spec.metrics.iter().map(|q| {
        let both = futures::future::try_join(
            side(q, &spec.canary, "canary"),
            side(q, &spec.stable, "stable"),
        );
        async move { Ok::<_, String>((q.name.clone(), both.await?)) }
    });
    Ok(futures::future::try_join_all(pairs)
        .await?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("a time")
    }

    #[test]
    fn the_window_begins_at_the_lookback_or_the_run_and_never_too_far_back() {
        let end = at(1_000_000);
        let step = Duration::from_secs(10);
        let l = Some(Duration::from_secs(600));
        assert_eq!(window_start(end, l, Some(at(1)), step), at(999_400));
        assert_eq!(
            window_start(end, None, Some(at(999_000)), step),
            at(999_000)
        );
        assert_eq!(window_start(end, None, None, step), end);
        // A run 30 hours old keeps its last 10,000 steps.
        assert_eq!(
            window_start(end, None, Some(at(892_000)), step),
            at(900_000)
        );
        // A lookback beyond any time does not panic: the last 10,000 steps.
        let huge = Some(Duration::from_secs(999_999_999_999 * 3600));
        assert_eq!(window_start(end, huge, None, step), at(900_000));
        // A run that claims to start in the future has no window.
        assert_eq!(window_start(end, None, Some(at(2_000_000)), step), end);
    }
}
