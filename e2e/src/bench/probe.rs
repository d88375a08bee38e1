//! What the benchmark reads about a process (memory and CPU from `/proc`) and from metrics
//! endpoints (Prometheus text: counters, histograms and their quantiles).

use std::collections::BTreeMap;
use std::path::Path;

pub use crate::promtext::{samples, total};

/// Memory and CPU of one process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStats {
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// The most resident memory so far, KiB.
    pub peak_kib: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux for every
/// architecture the benchmark runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time the whole machine has been busy since boot, all cores together (user, nice,
/// system, irq, softirq, steal from `/proc/stat`'s first line); `None` if it cannot be read.
pub fn machine_busy_seconds() -> Option<f64> {
    parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

pub fn parse_machine_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum::<f64>();
    Some(busy / TICKS_PER_SECOND)
}

/// Reads [`ProcStats`] of `pid`; `None` when the process is gone.
pub fn proc_stats(pid: u32) -> Option<ProcStats> {
    let dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    parse_proc(&status, &stat)
}

/// [`ProcStats`] from the text of `/proc/<pid>/status` and `/proc/<pid>/stat`.
pub fn parse_proc(status: &str, stat: &str) -> Option<ProcStats> {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(ProcStats {
        rss_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:")?,
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
    })
}

/// The pid of a running process whose command line has an argument containing `needle`.
pub fn find_process(needle: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        // setpriv wrappers exec the real binary: the process keeps its pid, its cmdline changes.
        if args.first().is_some_and(|a| a.ends_with(b"setpriv")) {
            continue;
        }
        if args
            .iter()
            .any(|a| String::from_utf8_lossy(a).contains(needle))
        {
            return Some(pid);
        }
    }
    None
}

/// A histogram summed over its label sets: cumulative counts by upper bound, and its count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound `le`, cumulative count), ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Histogram {
    /// The histogram `name` (its `_bucket`, `_count` and `_sum`), the label sets that have
    /// `only` (a label and its value; all when `None`) added up.
    pub fn read(text: &str, name: &str, only: Option<(&str, &str)>) -> Self {
        let keep = |labels: &BTreeMap<String, String>| {
            only.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
        };
        let sum_of = |metric: String| -> f64 {
            samples(text, &metric)
                .into_iter()
                .filter(|(l, _)| keep(l))
                .map(|(_, v)| v)
                .sum()
        };
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (labels, v) in samples(text, &format!("{name}_bucket")) {
            if !keep(&labels) {
                continue;
            }
            let Some(le) = labels.get("le").and_then(|l| match l.as_str() {
                "+Inf" => Some(f64::INFINITY),
                l => l.parse::<f64>().ok(),
            }) else {
                continue;
            };
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += v;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            count: sum_of(format!("{name}_count")),
            sum: sum_of(format!("{name}_sum")),
        }
    }

    /// What was observed between `earlier` and this one.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(l, _)| l.to_bits() == le.to_bits())
                .map(|(_, c)| *c)
                .unwrap_or(0.0)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, (c - before(*le)).max(0.0)))
                .collect(),
            count: (self.count - earlier.count).max(0.0),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does; `None` without observations. A quantile in the `+Inf`
    /// bucket is the highest finite bound (it is at least that).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.buckets.last().map(|(_, c)| *c)?;
        if count <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, c) in &self.buckets {
            if *c >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = c - below;
                if inside <= 0.0 {
                    return Some(*le);
                }
                return Some(lower + (le - lower) * (rank - below) / inside);
            }
            lower = *le;
            below = *c;
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_give_memory_and_cpu() {
        let status = "Name:\tsluice\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\nThreads:\t4\n";
        let stat = "4242 (sluice run) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 4 0";
        let s = parse_proc(status, stat).expect("parsed");
        assert_eq!(s.rss_kib, 70000);
        assert_eq!(s.peak_kib, 81234);
        assert!((s.cpu_seconds - 3.0).abs() < 1e-9, "{}", s.cpu_seconds);
        assert_eq!(parse_proc("Name: x\n", stat), None);
    }

    #[test]
    fn the_machine_busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 20 30 5000 40 5 5 10 0 0\ncpu0 50 10 15 2500 20 2 3 5 0 0\n";
        // (100 + 20 + 30 + 5 + 5 + 10) ticks of 10 ms.
        assert_eq!(parse_machine_busy(stat), Some(1.7));
        assert_eq!(parse_machine_busy("intr 1 2 3"), None);
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn this_process_can_be_read() {
        let s = proc_stats(std::process::id()).expect("own stats");
        assert!(s.rss_kib > 0 && s.peak_kib >= s.rss_kib, "{s:?}");
    }

    const TEXT: &str = r#"# HELP x_total things
# TYPE x_total counter
x_total{verb="get",code="200"} 3
x_total{verb="list",code="200"} 4.5
x_total_other 100
lat_bucket{name="a",le="0.1"} 1
lat_bucket{name="a",le="1"} 3
lat_bucket{name="a",le="+Inf"} 4
lat_bucket{name="b",le="0.1"} 1
lat_bucket{name="b",le="1"} 1
lat_bucket{name="b",le="+Inf"} 2
lat_count{name="a"} 4
lat_count{name="b"} 2
lat_sum{name="a"} 10
lat_sum{name="b"} 20
odd{msg="a \"quoted\", comma",x="y"} 7
"#;

    #[test]
    fn histograms_add_up_label_sets_and_interpolate_quantiles() {
        let only_b = Histogram::read(TEXT, "lat", Some(("name", "b")));
        assert_eq!(
            only_b.buckets,
            vec![(0.1, 1.0), (1.0, 1.0), (f64::INFINITY, 2.0)]
        );
        assert_eq!((only_b.count, only_b.sum), (2.0, 20.0));
        let h = Histogram::read(TEXT, "lat", None);
        assert_eq!(
            h.buckets,
            vec![(0.1, 2.0), (1.0, 4.0), (f64::INFINITY, 6.0)]
        );
        assert_eq!((h.count, h.sum), (6.0, 30.0));
        // rank 3 of 6: halfway through the (0.1, 1] bucket's two observations.
        assert!((h.quantile(0.5).expect("p50") - 0.55).abs() < 1e-9);
        // rank 5.94: in +Inf, reported as the highest finite bound.
        assert_eq!(h.quantile(0.99), Some(1.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
        let later = Histogram {
            buckets: vec![(0.1, 5.0), (1.0, 7.0), (f64::INFINITY, 9.0)],
            count: 9.0,
            sum: 40.0,
        };
        let d = later.since(&h);
        assert_eq!(
            d.buckets,
            vec![(0.1, 3.0), (1.0, 3.0), (f64::INFINITY, 3.0)]
        );
        // Three new observations, all at most 0.1: rank 1.5 is halfway into the first bucket.
        assert!((d.quantile(0.5).expect("p50") - 0.05).abs() < 1e-9);
    }
}
