//! Past traffic for Prometheus: a description of what an application served over a span of
//! time ([`History`]), written as the series the traffic simulator would have left
//! (`istio_requests_total` and `istio_request_duration_milliseconds`, with the same labels,
//! [`IstioLabels`], and buckets, [`LATENCY_BUCKETS`]), in OpenMetrics text that
//! `promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks ([`backfill`]). A
//! Prometheus started on those blocks
//! ([`Prometheus::start_with_data`](crate::prometheus::Prometheus::start_with_data)) answers the
//! same PromQL about the past as about the simulator's live traffic.
//!
//! Each [`Revision`] serves `rps` requests a second, failing (500) at its `error_rate` except
//! during its [`Episode`]s (incidents, short blips), which override the rate between two
//! times. There is one sample per scrape interval from `start` to `end`, at
//! `start + k * scrape_interval`, and the numbers are deterministic: an interval's requests
//! are `rps` times its length, its errors `rps` times the integral of the error rate over it
//! (each episode counting for the part of the interval it covers), and each counter adds the
//! whole requests owed, carrying the fraction to the next interval. Every counter (200 and
//! 500 alike) exists from the first sample, at 0, so `rate()` ratios over any window are
//! exact. Responses take exactly `latency_ms`, so each histogram fills one bucket and its sum
//! is `count * latency_ms`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use crate::trafficsim::{IstioLabels, LATENCY_BUCKETS, bucket_label};

/// The promtool binary (Debian's `prometheus` package), from `PATH`.
pub const PROMTOOL_BIN: &str = "promtool";
/// How long promtool may take to write the blocks.
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// A fraction of a request this close to a whole one counts as whole (floating-point error
/// of sums such as `0.01 * 100 * 15`).
const WHOLE_TOLERANCE: f64 = 1e-6;
/// The metric families, as the simulator registers them.
const REQUESTS: &str = "istio_requests";
const DURATIONS: &str = "istio_request_duration_milliseconds";

/// Traffic over `[start, end]` (Unix seconds), scraped every `scrape_interval`.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// The first sample's time, Unix seconds (milliseconds are kept, finer is rounded).
    pub start: f64,
    /// No sample is later; the last one is at `end` when `end - start` is a whole number of
    /// scrape intervals.
    pub end: f64,
    /// The time between two samples; at least a millisecond.
    pub scrape_interval: Duration,
    /// What each revision served; at least one, each with its own labels.
    pub revisions: Vec<Revision>,
}

/// One revision's traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// The series' labels (as [`IstioLabels::answered`] makes them); `response_code` is set
    /// to `200` or `500` for each series.
    pub labels: IstioLabels,
    /// Requests per second.
    pub rps: f64,
    /// The fraction of requests answered 500 outside episodes, in `[0, 1]`.
    pub error_rate: f64,
    /// Every response's time in milliseconds.
    pub latency_ms: f64,
    /// Times when the error rate is another; where two overlap, the later in the list wins.
    pub episodes: Vec<Episode>,
}

/// An error rate of `error_rate` over `[from, to)` (Unix seconds, any fraction), instead of
/// the revision's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    pub from: f64,
    pub to: f64,
    pub error_rate: f64,
}

impl Revision {
    /// A revision serving `rps` requests a second, failing at `error_rate`, answering in
    /// `latency_ms`, without episodes.
    pub fn new(labels: IstioLabels, rps: f64, error_rate: f64, latency_ms: f64) -> Revision {
        Revision {
            labels,
            rps,
            error_rate,
            latency_ms,
            episodes: Vec::new(),
        }
    }

    /// The same, with one more episode: `error_rate` over `[from, to)`.
    pub fn with_episode(mut self, from: f64, to: f64, error_rate: f64) -> Revision {
        self.episodes.push(Episode {
            from,
            to,
            error_rate,
        });
        self
    }

    /// The error rate at `t` (Unix seconds).
    pub fn error_rate_at(&self, t: f64) -> f64 {
        self.episodes
            .iter()
            .rev()
            .find(|e| e.from <= t && t < e.to)
            .map_or(self.error_rate, |e| e.error_rate)
    }

    /// The failed requests (exact, fractional) over `[from, to]`: `rps` times the integral
    /// of the error rate.
    pub fn errors_between(&self, from: f64, to: f64) -> f64 {
        if to <= from {
            return 0.0;
        }
        let mut cuts: Vec<f64> = vec![from, to];
        for e in &self.episodes {
            cuts.extend([e.from, e.to].into_iter().filter(|t| from < *t && *t < to));
        }
        cuts.sort_by(f64::total_cmp);
        cuts.windows(2)
            .map(|w| self.rps * self.error_rate_at((w[0] + w[1]) / 2.0) * (w[1] - w[0]))
            .sum()
    }

    fn check(&self) -> anyhow::Result<()> {
        let name = &self.labels.destination_canonical_revision;
        ensure!(
            self.rps.is_finite() && self.rps >= 0.0,
            "revision {name}: the request rate must be a finite number >= 0, not {}",
            self.rps
        );
        ensure!(
            self.latency_ms.is_finite() && self.latency_ms >= 0.0,
            "revision {name}: the latency must be a finite number >= 0, not {}",
            self.latency_ms
        );
        let rates =
            std::iter::once(self.error_rate).chain(self.episodes.iter().map(|e| e.error_rate));
        for rate in rates {
            ensure!(
                (0.0..=1.0).contains(&rate),
                "revision {name}: error rate {rate} is not in [0, 1]"
            );
        }
        for e in &self.episodes {
            ensure!(
                e.from.is_finite() && e.to.is_finite() && e.from < e.to,
                "revision {name}: episode [{}, {}) does not end after it starts",
                e.from,
                e.to
            );
        }
        Ok(())
    }
}

/// One sample of one revision: the counters of 200s and 500s at `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    at_ms: i64,
    ok: u64,
    failed: u64,
}

impl History {
    /// The samples' times in Unix milliseconds.
    fn sample_times(&self) -> anyhow::Result<Vec<i64>> {
        ensure!(
            self.start.is_finite() && self.end.is_finite() && self.start >= 0.0,
            "start {} and end {} must be finite times after 1970",
            self.start,
            self.end
        );
        let step = i64::try_from(self.scrape_interval.as_millis()).unwrap_or(i64::MAX);
        ensure!(
            step > 0,
            "scrape interval {:?} is shorter than a millisecond",
            self.scrape_interval
        );
        let (start, end) = (
            (self.start * 1000.0).round() as i64,
            (self.end * 1000.0).round() as i64,
        );
        ensure!(
            end > start,
            "end {} is not after start {}",
            self.end,
            self.start
        );
        Ok((start..=end).step_by(step as usize).collect())
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(!self.revisions.is_empty(), "a history needs a revision");
        let mut seen = std::collections::HashSet::new();
        for r in &self.revisions {
            r.check()?;
            ensure!(
                seen.insert(r.labels.with_code(0)),
                "two revisions have the same labels {:?}",
                r.labels
            );
        }
        Ok(())
    }

    /// The counters of `revision` at each sample.
    fn points(revision: &Revision, times: &[i64]) -> Vec<Point> {
        let (mut ok, mut failed) = (0_u64, 0_u64);
        let (mut ok_owed, mut failed_owed) = (0.0_f64, 0.0_f64);
        let mut points = Vec::with_capacity(times.len());
        let mut previous: Option<i64> = None;
        for &at_ms in times {
            if let Some(before) = previous {
                let (from, to) = (before as f64 / 1000.0, at_ms as f64 / 1000.0);
                let all = revision.rps * (to - from);
                let errors = revision.errors_between(from, to).min(all);
                failed_owed += errors;
                ok_owed += all - errors;
                failed += take_whole(&mut failed_owed);
                ok += take_whole(&mut ok_owed);
            }
            previous = Some(at_ms);
            points.push(Point { at_ms, ok, failed });
        }
        points
    }

    /// The history as OpenMetrics text: `# TYPE` and `# HELP` of each family, every series'
    /// samples in time order with timestamps in seconds, and `# EOF`.
    pub fn openmetrics(&self) -> anyhow::Result<String> {
        self.check()?;
        let times = self.sample_times()?;
        let series: Vec<(&Revision, Vec<Point>)> = self
            .revisions
            .iter()
            .map(|r| (r, History::points(r, &times)))
            .collect();
        let mut out = String::new();
        writeln!(
            out,
            "# HELP {REQUESTS} Requests, as Istio's proxies count them (backfilled)"
        )?;
        writeln!(out, "# TYPE {REQUESTS} counter")?;
        for (revision, points) in &series {
            for (code, count) in codes() {
                let labels = label_text(&revision.labels.with_code(code), None);
                for p in points {
                    writeln!(
                        out,
                        "{REQUESTS}_total{{{labels}}} {} {}",
                        count(p),
                        seconds(p.at_ms)
                    )?;
                }
            }
        }
        writeln!(
            out,
            "# HELP {DURATIONS} Request durations in milliseconds, as Istio's proxies measure \
             them (backfilled)"
        )?;
        writeln!(out, "# TYPE {DURATIONS} histogram")?;
        for (revision, points) in &series {
            for (code, count) in codes() {
                let labels = revision.labels.with_code(code);
                let buckets: Vec<(bool, String)> = LATENCY_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .map(|bound| {
                        (
                            revision.latency_ms <= bound,
                            label_text(&labels, Some(&bucket_label(bound))),
                        )
                    })
                    .collect();
                let plain = label_text(&labels, None);
                for p in points {
                    let (n, at) = (count(p), seconds(p.at_ms));
                    for (filled, labels) in &buckets {
                        let v = if *filled { n } else { 0 };
                        writeln!(out, "{DURATIONS}_bucket{{{labels}}} {v} {at}")?;
                    }
                    let sum = n as f64 * revision.latency_ms;
                    writeln!(out, "{DURATIONS}_sum{{{plain}}} {sum} {at}")?;
                    writeln!(out, "{DURATIONS}_count{{{plain}}} {n} {at}")?;
                }
            }
        }
        writeln!(out, "# EOF")?;
        Ok(out)
    }

    /// Writes [`openmetrics`](History::openmetrics) to `path`.
    pub fn write_openmetrics(&self, path: &Path) -> anyhow::Result<()> {
        let text = self.openmetrics()?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Which counter of a [`Point`] a series reads.
type Reading = fn(&Point) -> u64;

/// The two series of a revision: the response code and its counter.
fn codes() -> [(u16, Reading); 2] {
    [(200, |p| p.ok), (500, |p| p.failed)]
}

/// Takes the whole requests out of `owed`.
fn take_whole(owed: &mut f64) -> u64 {
    let whole = (*owed + WHOLE_TOLERANCE).floor().max(0.0);
    *owed -= whole;
    // A non-negative whole number of requests.
    whole as u64
}

/// `1700000000.250`
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// `a="b",c="d"` of `labels`, then `le` if given; values escaped as OpenMetrics says.
fn label_text(labels: &IstioLabels, le: Option<&str>) -> String {
    labels
        .pairs()
        .into_iter()
        .chain(le.map(|le| ("le", le)))
        .map(|(k, v)| {
            let v = v
                .replace('\\', r"\\")
                .replace('"', "\\\"")
                .replace('\n', r"\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Turns OpenMetrics file `openmetrics` into TSDB blocks in `data_dir` (created if missing)
/// with `promtool tsdb create-blocks-from openmetrics`; a Prometheus whose `--storage.tsdb.path`
/// is `data_dir` then serves them. Fails after 2 minutes, or when promtool fails, with its
/// output.
pub async fn backfill(openmetrics: &Path, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut command = tokio::process::Command::new(PROMTOOL_BIN);
    command
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(openmetrics)
        .arg(data_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let what = format!(
        "promtool tsdb create-blocks-from openmetrics {} {}",
        openmetrics.display(),
        data_dir.display()
    );
    let output = match tokio::time::timeout(PROMTOOL_TIMEOUT, command.output()).await {
        // Dropping the future kills promtool.
        Err(_) => bail!("{what} did not finish within {PROMTOOL_TIMEOUT:?}"),
        Ok(output) => output.with_context(|| {
            format!("running {what} (Debian's prometheus package has promtool)")
        })?,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("{what} failed ({}):\n{text}", output.status);
    }
    tracing::debug!(%what, output = %text, "backfilled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(revision: &str) -> IstioLabels {
        IstioLabels::answered("shop", "web", "web", "web", revision, 200)
    }

    fn history(revisions: Vec<Revision>) -> History {
        History {
            start: 1_700_000_040.0,
            end: 1_700_000_040.0 + 60.0,
            scrape_interval: Duration::from_secs(15),
            revisions,
        }
    }

    /// The value of the sample of `name` whose labels contain `has`, at `at`.
    fn value(text: &str, name: &str, has: &str, at: &str) -> Option<String> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, tail) = rest.split_once("} ")?;
            let (v, t) = tail.split_once(' ')?;
            (labels.contains(has) && t == at).then(|| v.to_string())
        })
    }

    #[test]
    fn episodes_override_the_error_rate_for_the_part_of_an_interval_they_cover() {
        let r = Revision::new(web("aaa"), 100.0, 0.01, 40.0)
            .with_episode(107.0, 407.0, 0.3)
            .with_episode(200.0, 210.0, 1.0);
        assert_eq!(r.error_rate_at(106.9), 0.01);
        assert_eq!(r.error_rate_at(107.0), 0.3);
        assert_eq!(r.error_rate_at(205.0), 1.0);
        assert_eq!(r.error_rate_at(407.0), 0.01);
        // 7 s at 1 % and 8 s at 30 %: 7 + 240.
        assert!((r.errors_between(100.0, 115.0) - 247.0).abs() < 1e-9);
        // 10 s at 30 % then 10 s at 100 %.
        assert!((r.errors_between(190.0, 210.0) - 1300.0).abs() < 1e-9);
        assert_eq!(r.errors_between(5.0, 5.0), 0.0);
    }

    #[test]
    fn counters_accumulate_exactly_from_zero_with_fractions_carried() -> anyhow::Result<()> {
        let h = history(vec![
            Revision::new(web("aaa"), 100.0, 0.01, 40.0).with_episode(
                1_700_000_040.0 + 22.0,
                1_700_000_040.0 + 300.0,
                0.3,
            ),
            // 0.1 rps: a request every 10 s, so a sample gains 1 or 2.
            Revision::new(web("bbb"), 0.1, 0.0, 3.0),
        ]);
        let text = h.openmetrics()?;
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# TYPE ").count(), 2);
        assert!(text.contains("# TYPE istio_requests counter\n"));
        assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
        let total = "istio_requests_total";
        let aaa = r#"destination_canonical_revision="aaa""#;
        let code = |c: &str| format!(r#"response_code="{c}""#);
        let at = |secs: i64| format!("{}.000", 1_700_000_040 + secs);
        let v = |has: &str, code_: &str, secs: i64| {
            value(
                &text,
                total,
                &format!("{has},request_protocol=\"http\",{}", code(code_)),
                &at(secs),
            )
        };
        // Both counters exist from the first sample, at 0.
        assert_eq!(v(aaa, "200", 0).as_deref(), Some("0"));
        assert_eq!(v(aaa, "500", 0).as_deref(), Some("0"));
        assert_eq!(v(aaa, "500", 15).as_deref(), Some("15"));
        // (15, 30]: 7 s at 1 %, 8 s at 30 %: 7 + 240.
        assert_eq!(v(aaa, "500", 30).as_deref(), Some("262"));
        assert_eq!(v(aaa, "200", 30).as_deref(), Some("2738"));
        assert_eq!(v(aaa, "500", 60).as_deref(), Some("1162"));
        let bbb = r#"destination_canonical_revision="bbb""#;
        let oks: Vec<_> = [0, 15, 30, 45, 60]
            .iter()
            .map(|s| v(bbb, "200", *s).unwrap_or_default())
            .collect();
        assert_eq!(oks, ["0", "1", "3", "4", "6"]);
        assert_eq!(v(bbb, "500", 60).as_deref(), Some("0"));
        // No sample after the end.
        assert_eq!(v(aaa, "200", 75), None);

        // The histogram: one bucket filled, sum = count * latency.
        let d = "istio_request_duration_milliseconds";
        let b = |le: &str| {
            value(
                &text,
                &format!("{d}_bucket"),
                &format!(
                    "{},{},le=\"{le}\"",
                    aaa, "request_protocol=\"http\",response_code=\"500\",response_flags=\"-\""
                ),
                &at(30),
            )
        };
        assert_eq!(b("25.0").as_deref(), Some("0"));
        assert_eq!(b("50.0").as_deref(), Some("262"));
        assert_eq!(b("+Inf").as_deref(), Some("262"));
        let s = value(
            &text,
            &format!("{d}_sum"),
            &format!("{aaa},request_protocol=\"http\",{}", code("500")),
            &at(30),
        );
        assert_eq!(s.as_deref(), Some("10480"));
        let c = value(
            &text,
            &format!("{d}_count"),
            &format!("{aaa},request_protocol=\"http\",{}", code("500")),
            &at(30),
        );
        assert_eq!(c.as_deref(), Some("262"));
        // Same text every time.
        assert_eq!(h.openmetrics()?, text);
        Ok(())
    }

    #[test]
    fn labels_are_escaped_and_descriptions_checked() {
        let mut labels = web("aaa");
        labels.destination_workload = "a\"b\\c\nd".into();
        assert!(label_text(&labels, Some("+Inf")).contains(r#"destination_workload="a\"b\\c\nd""#));
        assert!(label_text(&labels, Some("+Inf")).ends_with(r#",le="+Inf""#));
        assert_eq!(seconds(1_700_000_000_250), "1700000000.250");
        let bad = |r: Revision| history(vec![r]).openmetrics().is_err();
        assert!(bad(Revision::new(web("a"), -1.0, 0.0, 1.0)));
        assert!(bad(Revision::new(web("a"), 1.0, 1.5, 1.0)));
        assert!(bad(
            Revision::new(web("a"), 1.0, 0.0, 1.0).with_episode(5.0, 4.0, 0.1)
        ));
        assert!(history(vec![]).openmetrics().is_err());
        let twice = history(vec![
            Revision::new(web("a"), 1.0, 0.0, 1.0),
            Revision::new(web("a"), 2.0, 0.0, 1.0),
        ]);
        assert!(twice.openmetrics().is_err());
        let mut backwards = history(vec![Revision::new(web("a"), 1.0, 0.0, 1.0)]);
        backwards.end = backwards.start;
        assert!(backwards.openmetrics().is_err());
    }
}
