//! The I/O of a backtest: each metric's outcomes over a past range, read from Prometheus with
//! range queries, for `analysis::backtest::replay` to judge.
//!
//! A metric is evaluated every `interval` (the backtest's default for a metric without one)
//! from `from` to `to`, and each evaluation is what the live provider would have answered then:
//!
//! - `prometheus`: one range query at step `interval`; each timestamp's samples, in the order
//!   Prometheus returned the series, are the vector a live instant query would have returned
//!   (a query whose instant result is a scalar gives a scalar: one instant query at `to` finds
//!   out). A timestamp without samples is an empty vector, judged by `onEmptyResult` as live.
//! - `burnRate`: a range query per window (`ratioQuery`, or `badQuery` and `totalQuery`, with
//!   `{{window}}` replaced), combined per timestamp and judged by `burn::judge`. The share of
//!   the error budget consumed needs the canary's life so far and is not computed.
//! - `compare`: one range query per revision over `[from - lookback, to]` at the metric's
//!   `step`; at each evaluation time the samples in `[t - lookback, t]` (without a lookback:
//!   since the simulated run started) are judged by `compare::judge`.
//! - `web` and `job` measure the present, not the past: skipped, with why.
//!
//! A query that fails is a provider error at each evaluation time it covers, as live. Long
//! ranges are split so that no query asks Prometheus for more than [`MAX_POINTS`] points.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::MeasureContext;
use super::prometheus::{Connection, Series};
use crate::analysis::backtest::Timeline;
use crate::analysis::burn;
use crate::analysis::compare::{self, Samples};
use crate::analysis::judge::{MetricPolicy, Outcome};
use crate::analysis::value::MetricValue;
use crate::api::analysis::{BurnRateMetric, CompareMetric, Metric, PrometheusMetric};

/// The most points one range query asks for (Prometheus refuses more than 11,000).
pub const MAX_POINTS: i64 = 10_000;

/// What to replay.
#[derive(Clone, Copy, Debug)]
pub struct Range {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The interval of a metric that has none.
    pub default_interval: Duration,
}

/// A metric that cannot be replayed, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    pub metric: String,
    pub provider: String,
    pub why: String,
}

/// Each metric's outcomes, the metrics skipped, and what the reader should know.
#[derive(Default)]
pub struct Fetched {
    pub timelines: BTreeMap<String, Timeline>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `from`, `from + step`, … up to `to` (Unix seconds).
pub fn grid(from: i64, to: i64, step: Duration) -> Vec<i64> {
    let step = secs(step);
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        out.push(t);
        t = match t.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    out
}

/// `[from, to]` split into spans of at most [`MAX_POINTS`] points of the grid at `step`, each
/// starting on the grid.
pub fn chunks(from: i64, to: i64, step: Duration) -> Vec<(i64, i64)> {
    let step = secs(step);
    let span = step.saturating_mul(MAX_POINTS - 1);
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start.saturating_add(span).min(to);
        out.push((start, end));
        if end >= to {
            break;
        }
        start = end.saturating_add(step);
    }
    out
}

/// Each timestamp's values, in the order of the series.
pub fn by_time(series: &[Series]) -> BTreeMap<i64, Vec<f64>> {
    let mut out: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in series {
        for (t, v) in &s.points {
            out.entry(*t).or_default().push(*v);
        }
    }
    out
}

/// The value a live instant query would have returned at a timestamp with these samples.
pub fn value_at(values: Option<&Vec<f64>>, scalar: bool) -> MetricValue {
    match values {
        Some(v) if scalar && v.len() == 1 => MetricValue::Scalar(v[0]),
        Some(v) => MetricValue::Vector(v.clone()),
        None => MetricValue::Vector(Vec::new()),
    }
}

/// A range query's answer over a long range: the series (their points merged across the
/// spans) and the spans that failed, with why.
#[derive(Default)]
struct Answer {
    series: Vec<Series>,
    failed: Vec<(i64, i64, String)>,
}

impl Answer {
    fn failure_at(&self, t: i64) -> Option<&str> {
        self.failed
            .iter()
            .find(|(a, b, _)| *a <= t && t <= *b)
            .map(|(_, _, e)| e.as_str())
    }

    fn failure_within(&self, from: i64, to: i64) -> Option<&str> {
        self.failed
            .iter()
            .find(|(a, b, _)| *a <= to && from <= *b)
            .map(|(_, _, e)| e.as_str())
    }
}

/// The query over `[from, to]` at `step`, in spans Prometheus accepts.
async fn range_all(
    conn: &Connection,
    query: &str,
    from: i64,
    to: i64,
    step: Duration,
    progress: &dyn Fn(&str),
) -> Answer {
    let spans = chunks(from, to, step);
    let mut out = Answer::default();
    let mut index: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
    for (i, (a, b)) in spans.iter().enumerate() {
        if spans.len() > 1 {
            progress(&format!(
                "  {} to {} ({} of {})",
                ts(*a),
                ts(*b),
                i + 1,
                spans.len()
            ));
        }
        match conn.range(query, ts(*a), ts(*b), step).await {
            Ok(series) => {
                for s in series {
                    let at = *index.entry(s.labels.clone()).or_insert_with(|| {
                        out.series.push(Series {
                            labels: s.labels.clone(),
                            points: Vec::new(),
                        });
                        out.series.len() - 1
                    });
                    out.series[at].points.extend(s.points);
                }
            }
            Err(e) => out.failed.push((*a, *b, e)),
        }
    }
    out
}

fn error(message: &str, metadata: &BTreeMap<String, String>) -> Outcome {
    Outcome::ProviderError {
        message: message.to_string(),
        metadata: metadata.clone(),
    }
}

/// Every evaluation of the metric an error with `message`.
fn all_errors(times: &[i64], message: &str) -> Timeline {
    Timeline::Fixed(
        times
            .iter()
            .map(|t| (ts(*t), error(message, &BTreeMap::new())))
            .collect(),
    )
}

/// Each metric's outcomes over the range. `progress` gets a line per query.
pub async fn fetch(
    ctx: &MeasureContext<'_>,
    policies: &[(Metric, MetricPolicy)],
    range: &Range,
    progress: &dyn Fn(&str),
) -> Fetched {
    let mut out = Fetched::default();
    let (from, to) = (range.from.as_second(), range.to.as_second());
    for (m, p) in policies {
        let interval = p.interval.unwrap_or(range.default_interval);
        let times = grid(from, to, interval);
        let skip = |provider: &str, why: &str| Skipped {
            metric: m.name.clone(),
            provider: provider.into(),
            why: why.into(),
        };
        let pr = &m.provider;
        let timeline = if let Some(spec) = &pr.prometheus {
            progress(&format!("metric {:?}: {} evaluations", m.name, times.len()));
            prometheus(ctx, spec, &times, interval, progress).await
        } else if let Some(spec) = &pr.burn_rate {
            progress(&format!("metric {:?}: {} evaluations", m.name, times.len()));
            out.notes.push(format!(
                "metric {:?} (burnRate): the share of the error budget a canary consumed is not computed in a backtest",
                m.name
            ));
            burn_rate(ctx, spec, &times, interval, progress).await
        } else if let Some(spec) = &pr.compare {
            progress(&format!("metric {:?}: {} evaluations", m.name, times.len()));
            out.notes.push(format!(
                "metric {:?} (compare): the revisions compared are those the arguments name now ({} and {})",
                m.name, spec.canary, spec.stable
            ));
            compare(ctx, spec, &times, progress).await
        } else if pr.web.is_some() {
            out.skipped.push(skip(
                "web",
                "a web metric asks a URL for its present answer; past answers cannot be asked for",
            ));
            continue;
        } else if pr.job.is_some() {
            out.skipped.push(skip(
                "job",
                "a job metric runs a Job now; it cannot run in the past",
            ));
            continue;
        } else {
            out.skipped
                .push(skip("none", "the metric names no provider"));
            continue;
        };
        out.timelines.insert(m.name.clone(), timeline);
    }
    out
}

async fn prometheus(
    ctx: &MeasureContext<'_>,
    spec: &PrometheusMetric,
    times: &[i64],
    interval: Duration,
    progress: &dyn Fn(&str),
) -> Timeline {
    let metadata = BTreeMap::from([
        ("address".to_string(), spec.address.clone()),
        ("query".to_string(), spec.query.clone()),
    ]);
    let (Some(&from), Some(&to)) = (times.first(), times.last()) else {
        return Timeline::Fixed(Vec::new());
    };
    let conn = match Connection::open(ctx, &spec.server()).await {
        Ok(c) => c,
        Err(e) => return all_errors(times, &e),
    };
    let scalar = matches!(
        conn.instant(&spec.query, Some(ts(to))).await,
        Ok(MetricValue::Scalar(_))
    );
    let answer = range_all(&conn, &spec.query, from, to, interval, progress).await;
    let values = by_time(&answer.series);
    Timeline::Fixed(
        times
            .iter()
            .map(|t| {
                let o = match answer.failure_at(*t) {
                    Some(e) => error(e, &metadata),
                    None => Outcome::Value {
                        value: value_at(values.get(t), scalar),
                        metadata: metadata.clone(),
                    },
                };
                (ts(*t), o)
            })
            .collect(),
    )
}

/// The sum of each timestamp's values.
fn sums(series: &[Series]) -> BTreeMap<i64, f64> {
    by_time(series)
        .into_iter()
        .map(|(t, v)| (t, v.iter().sum()))
        .collect()
}

/// A window's error ratio at each timestamp (`None`: no traffic).
type Ratios = BTreeMap<i64, Option<f64>>;

async fn burn_rate(
    ctx: &MeasureContext<'_>,
    spec: &BurnRateMetric,
    times: &[i64],
    interval: Duration,
    progress: &dyn Fn(&str),
) -> Timeline {
    let metadata = BTreeMap::from([("address".to_string(), spec.prometheus.address.clone())]);
    let (Some(&from), Some(&to)) = (times.first(), times.last()) else {
        return Timeline::Fixed(Vec::new());
    };
    let alerts = match burn::alerts(spec) {
        Ok(a) => a,
        Err(e) => return all_errors(times, &e),
    };
    let conn = match Connection::open(ctx, &spec.prometheus).await {
        Ok(c) => c,
        Err(e) => return all_errors(times, &e),
    };
    // Each window: the ratio at each timestamp (None: no traffic), and the failed spans.
    let mut windows: Vec<(Duration, Ratios, Vec<Answer>)> = Vec::new();
    for w in burn::windows(&alerts) {
        let conn = &conn;
        let ask = |q: &str| {
            let q = burn::with_window(q, w);
            async move { range_all(conn, &q, from, to, interval, progress).await }
        };
        let (ratios, answers) = if let Some(q) = &spec.ratio_query {
            let a = ask(q).await;
            let s = sums(&a.series);
            let r = times
                .iter()
                .map(|t| (*t, burn::ratio(s.get(t).copied())))
                .collect();
            (r, vec![a])
        } else if let (Some(bad), Some(all)) = (&spec.bad_query, &spec.total_query) {
            let (b, a) = (ask(bad).await, ask(all).await);
            let (sb, sa) = (sums(&b.series), sums(&a.series));
            let r = times
                .iter()
                .map(|t| {
                    (
                        *t,
                        burn::error_ratio(sb.get(t).copied(), sa.get(t).copied()),
                    )
                })
                .collect();
            (r, vec![b, a])
        } else {
            return all_errors(
                times,
                "burnRate needs ratioQuery, or badQuery and totalQuery",
            );
        };
        windows.push((w, ratios, answers));
    }
    Timeline::Fixed(
        times
            .iter()
            .map(|t| {
                let failed = windows
                    .iter()
                    .flat_map(|(_, _, a)| a.iter())
                    .find_map(|a| a.failure_at(*t));
                let o = match failed {
                    Some(e) => error(e, &metadata),
                    None => {
                        let measured = burn::Measured {
                            ratios: windows
                                .iter()
                                .map(|(w, r, _)| (*w, r.get(t).copied().flatten()))
                                .collect(),
                            elapsed: None,
                        };
                        burn::judge(spec, &alerts, &measured)
                    }
                };
                (ts(*t), o)
            })
            .collect(),
    )
}

/// Where a `compare` evaluation's samples begin: `lookback` before `end`, or, without one,
/// when the simulated run started (as live, where it is the AnalysisRun's start).
pub fn window_start(end: i64, run_start: i64, lookback: Option<Duration>) -> i64 {
    match lookback {
        Some(l) => end.saturating_sub(i64::try_from(l.as_secs()).unwrap_or(i64::MAX)),
        None => run_start,
    }
}

/// The points of `series` with a timestamp in `[from, to]`, pooled.
fn within(series: &[Series], from: i64, to: i64) -> Vec<f64> {
    series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|(_, v)| *v)
        .collect()
}

async fn compare(
    ctx: &MeasureContext<'_>,
    spec: &CompareMetric,
    times: &[i64],
    progress: &dyn Fn(&str),
) -> Timeline {
    let (Some(&from), Some(&to)) = (times.first(), times.last()) else {
        return Timeline::Fixed(Vec::new());
    };
    let checked =
        compare::check(spec).and_then(|()| Ok((compare::step(spec)?, compare::lookback(spec)?)));
    let (step, lookback) = match checked {
        Ok(x) => x,
        Err(e) => return all_errors(times, &e),
    };
    let conn = match Connection::open(ctx, &spec.prometheus).await {
        Ok(c) => c,
        Err(e) => return all_errors(times, &e),
    };
    let back = lookback.map_or(0, secs);
    let start = from.saturating_sub(back);
    // Per metric: (name, canary, stable).
    let mut fetched: Vec<(String, Answer, Answer)> = Vec::new();
    for q in &spec.metrics {
        let canary = compare::for_revision(&q.query, &spec.canary);
        let stable = compare::for_revision(&q.query, &spec.stable);
        let c = range_all(&conn, &canary, start, to, step, progress).await;
        let s = range_all(&conn, &stable, start, to, step, progress).await;
        fetched.push((q.name.clone(), c, s));
    }
    let spec = spec.clone();
    let metadata = BTreeMap::from([
        ("address".to_string(), spec.prometheus.address.clone()),
        ("canary".to_string(), spec.canary.clone()),
        ("stable".to_string(), spec.stable.clone()),
    ]);
    Timeline::SinceStart {
        times: times.iter().map(|t| ts(*t)).collect(),
        judge: Box::new(move |t, run_start| {
            let end = t.as_second();
            let begin = window_start(end, run_start.as_second(), lookback);
            let mut metadata = metadata.clone();
            metadata.insert("window".into(), format!("{} to {t}", ts(begin)));
            let mut samples = Samples::new();
            for (name, c, s) in &fetched {
                if let Some(e) = c
                    .failure_within(begin, end)
                    .or(s.failure_within(begin, end))
                {
                    return error(&format!("metric {name:?}: {e}"), &metadata);
                }
                let pair = if end <= begin {
                    (Vec::new(), Vec::new())
                } else {
                    (within(&c.series, begin, end), within(&s.series, begin, end))
                };
                samples.insert(name.clone(), pair);
            }
            match compare::judge(&spec, &samples) {
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
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn the_grid_runs_from_from_to_to_at_the_interval() {
        assert_eq!(grid(0, 180, Duration::from_secs(60)), vec![0, 60, 120, 180]);
        assert_eq!(grid(0, 179, Duration::from_secs(60)), vec![0, 60, 120]);
        assert_eq!(grid(5, 5, Duration::from_secs(60)), vec![5]);
        assert!(grid(6, 5, Duration::from_secs(60)).is_empty());
        // A zero interval is read as one second, never a loop without end.
        assert_eq!(grid(0, 2, Duration::ZERO), vec![0, 1, 2]);
    }

    #[test]
    fn long_ranges_split_on_the_grid_with_no_gap_or_overlap() {
        let step = Duration::from_secs(10);
        assert_eq!(chunks(0, 600, step), vec![(0, 600)]);
        let to = 10 * (MAX_POINTS * 2 + 5);
        let c = chunks(0, to, step);
        assert_eq!(c.len(), 3);
        let mut points = 0;
        for (i, (a, b)) in c.iter().enumerate() {
            assert_eq!(a % 10, 0);
            assert!((b - a) / 10 < MAX_POINTS);
            points += grid(*a, *b, step).len() as i64;
            if i > 0 {
                assert_eq!(*a, c[i - 1].1 + 10);
            }
        }
        assert_eq!(points, grid(0, to, step).len() as i64);
        assert_eq!(c.last().map(|x| x.1), Some(to));
    }

    #[test]
    fn range_results_group_into_the_values_an_instant_query_would_have_returned() {
        let s = [
            series(&[("pod", "a")], &[(0, 1.0), (60, 2.0)]),
            series(&[("pod", "b")], &[(60, 3.0), (120, 4.0)]),
        ];
        let g = by_time(&s);
        assert_eq!(value_at(g.get(&0), false), MetricValue::Vector(vec![1.0]));
        assert_eq!(
            value_at(g.get(&60), false),
            MetricValue::Vector(vec![2.0, 3.0])
        );
        assert_eq!(value_at(g.get(&120), false), MetricValue::Vector(vec![4.0]));
        // No sample: an empty vector, for onEmptyResult to judge.
        assert_eq!(value_at(g.get(&180), false), MetricValue::Vector(vec![]));
        // A scalar query's one series reads as the scalar.
        let s = [series(&[], &[(0, 0.5)])];
        assert_eq!(
            value_at(by_time(&s).get(&0), true),
            MetricValue::Scalar(0.5)
        );
        assert_eq!(
            sums(&[series(&[], &[(0, 1.0)]), series(&[], &[(0, 2.5)])]).get(&0),
            Some(&3.5)
        );
        assert_eq!(
            within(&[series(&[], &[(0, 1.0), (10, 2.0), (20, 3.0)])], 5, 20),
            vec![2.0, 3.0]
        );
    }

    #[test]
    fn a_compare_window_reaches_back_its_lookback_or_to_the_run_start() {
        let five = Some(Duration::from_secs(300));
        assert_eq!(window_start(1000, 900, five), 700);
        assert_eq!(window_start(1000, 900, None), 900);
        // The run's first evaluation without a lookback: an empty window, as live.
        assert_eq!(window_start(900, 900, None), 900);
        let s = [series(
            &[],
            &[(600, 1.0), (700, 2.0), (950, 3.0), (1000, 4.0)],
        )];
        assert_eq!(
            within(&s, window_start(1000, 900, five), 1000),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(
            within(&s, window_start(1000, 900, None), 1000),
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn a_failed_span_is_an_error_at_the_times_it_covers() {
        let a = Answer {
            series: Vec::new(),
            failed: vec![(100, 200, "boom".into())],
        };
        assert_eq!(a.failure_at(100), Some("boom"));
        assert_eq!(a.failure_at(99), None);
        assert_eq!(a.failure_within(0, 100), Some("boom"));
        assert_eq!(a.failure_within(201, 300), None);
    }
}
