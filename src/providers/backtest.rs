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
/// The most points a `compare` metric reads per revision and query over the whole range
/// (its lookback included); more is refused before any query.
pub const MAX_COMPARE_POINTS: i64 = 200_000;
/// The most samples a side of one `compare` evaluation without a lookback takes: the latest
/// (as the live provider does).
pub const MAX_SAMPLES: usize = 10_000;

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

/// A duration as a user writes it: `1h30m`, or `2.5s` when not whole seconds.
pub fn shown(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        burn::prom_duration(d)
    } else {
        format!("{d:?}")
    }
}

/// How many points a `compare` metric reads per revision and query over `[from - lookback,
/// to]` (Unix seconds) at its step; `None` when its step or lookback is invalid (each
/// evaluation then says why).
pub fn compare_points(spec: &CompareMetric, from: i64, to: i64) -> Option<i64> {
    let step = compare::step(spec).ok()?;
    let back = compare::lookback(spec).ok()?.map_or(0, secs);
    let span = to.saturating_sub(from).saturating_add(back).max(0);
    Some((span as f64 / step.as_secs_f64()).floor() as i64 + 1)
}

/// Refuses, before any query, a `compare` metric that would read more than
/// [`MAX_COMPARE_POINTS`] points a side.
pub fn check_compare(name: &str, spec: &CompareMetric, from: i64, to: i64) -> Result<(), String> {
    match compare_points(spec, from, to) {
        Some(n) if n > MAX_COMPARE_POINTS => Err(format!(
            "metric {name:?} (compare) would read {n} points a side per query (every {} over the \
             range{}); at most {MAX_COMPARE_POINTS}: use a shorter range or a larger step",
            compare::step(spec).map(shown).unwrap_or_default(),
            match compare::lookback(spec) {
                Ok(Some(l)) => format!(" and its {} lookback", shown(l)),
                _ => String::new(),
            }
        )),
        _ => Ok(()),
    }
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

/// The sum of each timestamp's values (the rates of `badQuery` and `totalQuery` add up).
fn sums(series: &[Series]) -> BTreeMap<i64, f64> {
    by_time(series)
        .into_iter()
        .map(|(t, v)| (t, v.iter().sum()))
        .collect()
}

/// A window's error ratio at each timestamp (`Ok(None)`: no traffic; `Err`: the evaluation is
/// a provider error).
type Ratios = BTreeMap<i64, Result<Option<f64>, String>>;

/// A `ratioQuery`'s ratio at each of `times`: ratios do not add up, so a timestamp with more
/// than one series is an error there.
fn single_ratios(series: &[Series], times: &[i64]) -> Ratios {
    let values = by_time(series);
    times
        .iter()
        .map(|t| {
            let r = match values.get(t).map(Vec::as_slice) {
                None => Ok(burn::ratio(None)),
                Some([v]) => Ok(burn::ratio(Some(*v))),
                Some(v) => Err(format!(
                    "ratioQuery returned {} series; aggregate it to one (e.g. sum(...) / sum(...))",
                    v.len()
                )),
            };
            (*t, r)
        })
        .collect()
}

/// The error ratio of summed `badQuery` and `totalQuery` series at each of `times`.
fn summed_ratios(bad: &[Series], all: &[Series], times: &[i64]) -> Ratios {
    let (sb, sa) = (sums(bad), sums(all));
    times
        .iter()
        .map(|t| {
            let r = burn::error_ratio(sb.get(t).copied(), sa.get(t).copied());
            (*t, Ok(r))
        })
        .collect()
}

/// One window of a burnRate metric: its ratios and the answers they came from.
struct Window {
    window: Duration,
    ratios: Ratios,
    answers: Vec<Answer>,
}

/// Each evaluation judged from the windows' ratios; a failed span or a bad ratio there is a
/// provider error.
fn burn_timeline(
    spec: &BurnRateMetric,
    alerts: &[burn::Alert],
    windows: &[Window],
    times: &[i64],
    metadata: &BTreeMap<String, String>,
) -> Timeline {
    let outcome = |t: i64| {
        let failed = windows
            .iter()
            .flat_map(|w| w.answers.iter())
            .find_map(|a| a.failure_at(t))
            .or_else(|| {
                windows
                    .iter()
                    .find_map(|w| w.ratios.get(&t).and_then(|r| r.as_ref().err()))
                    .map(String::as_str)
            });
        if let Some(e) = failed {
            return error(e, metadata);
        }
        let measured = burn::Measured {
            ratios: windows
                .iter()
                .map(|w| {
                    let r = w.ratios.get(&t).and_then(|r| r.clone().ok()).flatten();
                    (w.window, r)
                })
                .collect(),
            elapsed: None,
        };
        burn::judge(spec, alerts, &measured)
    };
    Timeline::Fixed(times.iter().map(|t| (ts(*t), outcome(*t))).collect())
}

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
    let mut windows: Vec<Window> = Vec::new();
    for w in burn::windows(&alerts) {
        let conn = &conn;
        let ask = |q: &str| {
            let q = burn::with_window(q, w);
            async move { range_all(conn, &q, from, to, interval, progress).await }
        };
        let (ratios, answers) = if let Some(q) = &spec.ratio_query {
            let a = ask(q).await;
            (single_ratios(&a.series, times), vec![a])
        } else if let (Some(bad), Some(all)) = (&spec.bad_query, &spec.total_query) {
            let (b, a) = (ask(bad).await, ask(all).await);
            (summed_ratios(&b.series, &a.series, times), vec![b, a])
        } else {
            return all_errors(
                times,
                "burnRate needs ratioQuery, or badQuery and totalQuery",
            );
        };
        windows.push(Window {
            window: w,
            ratios,
            answers,
        });
    }
    burn_timeline(spec, &alerts, &windows, times, &metadata)
}

/// Where a `compare` evaluation's samples begin: `lookback` before `end`, or, without one,
/// when the simulated run started (as live, where it is the AnalysisRun's start).
pub fn window_start(end: i64, run_start: i64, lookback: Option<Duration>) -> i64 {
    match lookback {
        Some(l) => end.saturating_sub(i64::try_from(l.as_secs()).unwrap_or(i64::MAX)),
        None => run_start,
    }
}

/// The points of `series` with a timestamp in `[from, to]`, pooled in the order of the
/// series; with a `cap`, only the latest `cap` of them (in time order). Each series' points are
/// in time order, so the window is found by binary search.
fn within(series: &[Series], from: i64, to: i64, cap: Option<usize>) -> Vec<f64> {
    let slices = series.iter().map(|s| {
        let p = &s.points;
        let a = p.partition_point(|(t, _)| *t < from);
        let b = p.partition_point(|(t, _)| *t <= to).max(a);
        &p[a..b]
    });
    let Some(cap) = cap else {
        return slices.flat_map(|p| p.iter().map(|(_, v)| *v)).collect();
    };
    // Only a series' latest `cap` points can be among the latest `cap` of all.
    let mut points: Vec<(i64, f64)> = slices
        .flat_map(|p| p[p.len().saturating_sub(cap)..].iter().copied())
        .collect();
    if points.len() > cap {
        points.sort_by_key(|(t, _)| *t);
        points.drain(..points.len() - cap);
    }
    points.into_iter().map(|(_, v)| v).collect()
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
                    // Without a lookback the window grows with the run: the latest samples.
                    let cap = lookback.is_none().then_some(MAX_SAMPLES);
                    (
                        within(&c.series, begin, end, cap),
                        within(&s.series, begin, end, cap),
                    )
                };
                samples.insert(name.clone(), pair);
            }
            compare::judge(&spec, &samples).with_metadata(metadata)
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
            within(
                &[series(&[], &[(0, 1.0), (10, 2.0), (20, 3.0)])],
                5,
                20,
                None
            ),
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
            within(&s, window_start(1000, 900, five), 1000, None),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(
            within(&s, window_start(1000, 900, None), 1000, None),
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

    #[test]
    fn a_window_is_found_in_each_series_and_a_cap_keeps_the_latest() {
        let s = [
            series(
                &[("pod", "a")],
                &[(0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0)],
            ),
            series(&[("pod", "b")], &[(5, 5.0), (15, 6.0), (25, 7.0)]),
        ];
        // Pooled in the order of the series, bounds included.
        assert_eq!(within(&s, 10, 25, None), vec![2.0, 3.0, 6.0, 7.0]);
        assert_eq!(within(&s, 10, 25, Some(10)), vec![2.0, 3.0, 6.0, 7.0]);
        // The latest three of the window, whichever series they are in.
        assert_eq!(within(&s, 0, 30, Some(3)), vec![3.0, 7.0, 4.0]);
        assert!(within(&s, 31, 40, None).is_empty());
        assert!(within(&s, 21, 24, Some(3)).is_empty());
        assert!(within(&s, 30, 0, None).is_empty());
        // A long window without a lookback: at most MAX_SAMPLES a side, the latest.
        let long: Vec<(i64, f64)> = (0..MAX_SAMPLES as i64 + 500)
            .map(|t| (t, t as f64))
            .collect();
        let got = within(&[series(&[], &long)], 0, i64::MAX, Some(MAX_SAMPLES));
        assert_eq!(got.len(), MAX_SAMPLES);
        assert_eq!(got.first(), Some(&500.0));
        assert_eq!(got.last(), Some(&(MAX_SAMPLES as f64 + 499.0)));
    }

    fn compare_spec(step: &str, lookback: Option<&str>) -> CompareMetric {
        let mut v = serde_json::json!({
            "prometheus": {"address": "http://p"},
            "canary": "c",
            "stable": "s",
            "step": step,
            "metrics": [{"name": "latency", "query": "q"}],
        });
        if let Some(l) = lookback {
            v["lookback"] = l.into();
        }
        serde_json::from_value(v).expect("a compare metric")
    }

    #[test]
    fn a_compare_metric_reading_too_many_points_is_refused_before_any_query() {
        let week = 7 * 86400;
        // A week at 10s: 60,481 points a side.
        let s = compare_spec("10s", None);
        assert_eq!(compare_points(&s, 0, week), Some(60_481));
        assert_eq!(check_compare("latency", &s, 0, week), Ok(()));
        // The lookback is read too.
        let s = compare_spec("10s", Some("1h"));
        assert_eq!(compare_points(&s, 0, week), Some(60_481 + 360));
        // A week at 1s: 604,801 points a side.
        let s = compare_spec("1s", Some("1m"));
        let e = check_compare("latency", &s, 0, week).expect_err("too many");
        assert!(
            e.contains("metric \"latency\" (compare) would read 604861 points a side")
                && e.contains("every 1s")
                && e.contains("1m lookback")
                && e.contains("at most 200000")
                && e.contains("use a shorter range or a larger step"),
            "{e}"
        );
        // A step that is not whole seconds counts as it is queried.
        assert_eq!(
            compare_points(&compare_spec("2500ms", None), 0, 100),
            Some(41)
        );
        // An invalid step is left to each evaluation to report.
        assert_eq!(compare_points(&compare_spec("0s", None), 0, week), None);
        assert_eq!(
            check_compare("latency", &compare_spec("0s", None), 0, week),
            Ok(())
        );
    }

    fn burn_spec() -> BurnRateMetric {
        BurnRateMetric {
            objective: 0.99,
            ratio_query: Some("r".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_ratio_query_with_several_series_at_a_time_is_an_error_there() {
        let s = [
            series(&[("pod", "a")], &[(0, 0.5), (60, 0.001)]),
            series(&[("pod", "b")], &[(0, 0.5)]),
        ];
        let r = single_ratios(&s, &[0, 60, 120]);
        let want = "ratioQuery returned 2 series; aggregate it to one (e.g. sum(...) / sum(...))";
        assert_eq!(r[&0], Err(want.to_string()));
        assert_eq!(r[&60], Ok(Some(0.001)));
        assert_eq!(r[&120], Ok(None));
        // badQuery and totalQuery are rates: their series add up.
        let bad = [series(&[], &[(0, 1.0)]), series(&[], &[(0, 1.0)])];
        let all = [series(&[], &[(0, 10.0)]), series(&[], &[(0, 10.0)])];
        assert_eq!(summed_ratios(&bad, &all, &[0])[&0], Ok(Some(0.1)));
        // Judged: the evaluation with two series is a provider error, the others are judged.
        let spec = burn_spec();
        let alerts = burn::alerts(&spec).expect("alerts");
        let windows: Vec<Window> = burn::windows(&alerts)
            .into_iter()
            .map(|w| Window {
                window: w,
                ratios: single_ratios(&s, &[0, 60, 120]),
                answers: Vec::new(),
            })
            .collect();
        let Timeline::Fixed(outcomes) =
            burn_timeline(&spec, &alerts, &windows, &[0, 60, 120], &BTreeMap::new())
        else {
            panic!("a fixed timeline");
        };
        assert_eq!(outcomes.len(), 3);
        match &outcomes[0].1 {
            Outcome::ProviderError { message, .. } => assert_eq!(message, want),
            other => panic!("{other:?}"),
        }
        assert!(
            !matches!(outcomes[1].1, Outcome::ProviderError { .. }),
            "{:?}",
            outcomes[1].1
        );
    }
}
