//! The `compare` provider: each metric's query over the same window for the canary and the
//! stable revision (`query_range` at `step`), judged by `analysis::compare`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::prometheus::{Connection, Series};
use super::{MeasureContext, Provider, provider_error};
use crate::analysis::compare::{self, Samples};
use crate::analysis::judge::Outcome;
use crate::api::analysis::{CompareMetric, Measurement, Metric};

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
        let end = ctx.now;
        let start = match lookback {
            Some(l) => end - SignedDuration::try_from(l).unwrap_or(SignedDuration::ZERO),
            None => ctx
                .run
                .status
                .as_ref()
                .and_then(|s| s.started_at.as_ref())
                .map_or(end, |t| t.0),
        };
        metadata.insert(
            "window".into(),
            format!("{start} to {end} every {}s", step.as_secs()),
        );
        let conn = match Connection::open(ctx, &spec.prometheus).await {
            Ok(c) => c,
            Err(e) => return provider_error(e, metadata),
        };
        match samples(&conn, spec, start, end, step).await {
            Ok(s) => match compare::judge(spec, &s) {
                Outcome::Decided {
                    phase,
                    value,
                    message,
                    metadata: more,
                } => {
                    metadata.extend(more);
                    Outcome::Decided {
                        phase,
                        value,
                        message,
                        metadata,
                    }
                }
                other => other,
            },
            Err(e) => provider_error(e, metadata),
        }
    }
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
    let mut out = Samples::new();
    for q in &spec.metrics {
        if end <= start {
            out.insert(q.name.clone(), (Vec::new(), Vec::new()));
            continue;
        }
        let canary = conn
            .range(
                &compare::for_revision(&q.query, &spec.canary),
                start,
                end,
                step,
            )
            .await
            .map_err(|e| format!("metric {:?}, canary: {e}", q.name))?;
        let stable = conn
            .range(
                &compare::for_revision(&q.query, &spec.stable),
                start,
                end,
                step,
            )
            .await
            .map_err(|e| format!("metric {:?}, stable: {e}", q.name))?;
        out.insert(q.name.clone(), (values(&canary), values(&stable)));
    }
    Ok(out)
}
