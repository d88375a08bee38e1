//! The benchmark's figures, its table (both controllers side by side, the targets
//! beside them) and the machine it ran on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Delta;
use super::workload::{ANALYSIS_INTERVAL_SECONDS, Flavour};

/// The machine and its load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
    /// 1-, 5- and 15-minute load averages.
    pub load: [f64; 3],
}

impl Machine {
    pub fn now() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut load = [0.0; 3];
        for (slot, v) in load.iter_mut().zip(loadavg.split_whitespace()) {
            *slot = v.parse().unwrap_or(0.0);
        }
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_gib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| kib / 1024.0 / 1024.0)
                .unwrap_or(0.0),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
            load,
        }
    }
}

/// Where a time to safe went, in seconds from the moment the probe's metric turned bad; each
/// `None` when it was not seen before the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SafeSplit {
    /// The analysis asked the benchmark's endpoint and was answered bad: the measurement
    /// schedule's share (the interval, less how long after the last good measurement the
    /// metric turned bad).
    pub answered_bad: Option<f64>,
    /// The Rollout's status said `abort` (read from the benchmark's watch).
    pub aborted: Option<f64>,
    /// Every ReplicaSet but the stable had a spec of 0 replicas.
    pub scaled_down: Option<f64>,
    /// Safe: no pod outside the stable, the stable's all available (the time to safe).
    pub safe: f64,
}

/// `answered bad / aborted / scaled to 0 / safe`, e.g. `4.2 / 4.4 / 4.4 / 5.0`.
pub fn split(s: Option<&SafeSplit>) -> String {
    let Some(s) = s else { return "-".into() };
    format!(
        "{} / {} / {} / {}",
        num(s.answered_bad, 1),
        num(s.aborted, 1),
        num(s.scaled_down, 1),
        num(Some(s.safe), 1)
    )
}

/// The lists a controller's caches make when it starts, made by the benchmark itself with the
/// controller's account, all at once, on the same world: how long the API server takes to
/// hand over what the first pass must read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListFloor {
    /// Until the last list was complete.
    pub seconds: f64,
    /// Per kind: (kind, objects, seconds until its list was complete).
    pub kinds: Vec<(String, usize, f64)>,
    /// When it was taken: before the controller's restart, or once its first pass had
    /// settled (the quicker of the two is kept).
    pub when: String,
}

/// One controller's figures at one size; `None` where a step did not finish.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerFigures {
    pub rss_empty_mib: Option<f64>,
    pub rss_steady_mib: Option<f64>,
    pub rss_restarted_mib: Option<f64>,
    pub peak_mib: Option<f64>,
    pub kib_per_rollout: Option<f64>,
    /// How long the benchmark took to create the Rollouts (the API server's pace).
    pub create_seconds: Option<f64>,
    pub healthy_seconds: Option<f64>,
    pub first_pass_seconds: Option<f64>,
    /// The controller's CPU time (user and system) from its start to its first full pass.
    pub first_pass_cpu_seconds: Option<f64>,
    pub update_to_paused_seconds: Option<f64>,
    pub reconcile_p50_ms: Option<f64>,
    pub reconcile_p99_ms: Option<f64>,
    /// The upper bounds of the controller's latency histogram (quantiles are interpolated
    /// inside them).
    pub latency_buckets: Vec<f64>,
    pub cpu_seconds_per_1000_reconciles: Option<f64>,
    pub time_to_safe_idle_seconds: Option<f64>,
    pub time_to_safe_busy_seconds: Option<f64>,
    pub time_to_safe_idle_split: Option<SafeSplit>,
    pub time_to_safe_busy_split: Option<SafeSplit>,
    /// The same lists as the controller's caches, by a bare client, before the restart.
    pub list_floor: Option<ListFloor>,
    pub create_phase: Option<Delta>,
    pub noop: Option<Delta>,
    pub update_phase: Option<Delta>,
    pub whole: Option<Delta>,
    /// Waits that ran out of time, with how far they got.
    pub shortfalls: Vec<String>,
}

/// Everything measured at one size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SizeReport {
    pub rollouts: usize,
    pub per_namespace: usize,
    pub nodes: usize,
    pub pods_per_node: usize,
    pub machine_before: Machine,
    pub machine_after: Machine,
    pub controllers: BTreeMap<Flavour, ControllerFigures>,
    pub notes: Vec<String>,
    /// Step 6 (a new image on all N) was left out on purpose (`--no-update`): its figures
    /// are not missing.
    pub update_left_out: bool,
}

impl Serialize for Flavour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Flavour::Sluice => "sluice",
            Flavour::Argo => "argo-rollouts",
        })
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// Requests per reconcile by verb, e.g. `0 ` or `get 0.50, patch 1.00`.
pub fn per_reconcile(d: Option<&Delta>) -> String {
    let Some(d) = d else { return "-".into() };
    if d.reconciles <= 0.0 {
        return "no reconciles".into();
    }
    let parts: Vec<String> = d
        .requests
        .iter()
        .filter(|(verb, _)| verb.as_str() != "watch")
        .map(|(verb, v)| format!("{verb} {:.2}", v / d.reconciles))
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(", ")
    }
}

/// All requests of a phase but watches, per Rollout: the phase's cost whatever the number of
/// reconciles it took.
pub fn per_rollout(d: Option<&Delta>, n: usize) -> Option<f64> {
    let d = d?;
    if n == 0 {
        return None;
    }
    let total: f64 = d
        .requests
        .iter()
        .filter(|(verb, _)| verb.as_str() != "watch")
        .map(|(_, v)| v)
        .sum();
    Some(total / n as f64)
}

/// A quantile read from a histogram with its bucket around it, e.g. `2430 (1000-2500)`:
/// two histograms with different buckets compare only as far as their buckets allow.
pub fn quantile_in_bucket(ms: Option<f64>, buckets: &[f64]) -> String {
    let Some(v) = ms.filter(|v| v.is_finite()) else {
        return "-".into();
    };
    let seconds = v / 1000.0;
    let mut lower = 0.0;
    for b in buckets.iter().copied().filter(|b| b.is_finite()) {
        if seconds <= b {
            return format!("{v:.0} ({}-{})", fmt_ms(lower * 1000.0), fmt_ms(b * 1000.0));
        }
        lower = b;
    }
    format!("{v:.0} (> {})", fmt_ms(lower * 1000.0))
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1.0 || ms == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

fn cpu(d: Option<&Delta>, pick: fn(&Delta) -> f64) -> Option<f64> {
    d.map(pick)
}

/// The side-by-side table for one size.
pub fn table(r: &SizeReport) -> String {
    let n = r.rollouts;
    let get = |f: Flavour| r.controllers.get(&f);
    let tts_target = format!("<= {} s", ANALYSIS_INTERVAL_SECONDS + 2);
    let memory_target = if n >= 10_000 { "< 300" } else { "" };
    let per_rollout_target = if n >= 10_000 { "< 20" } else { "" };
    let first_pass_target = if n >= 10_000 { "< 10" } else { "" };
    type Row<'a> = (
        &'a str,
        Box<dyn Fn(&ControllerFigures) -> String + 'a>,
        String,
    );
    let rows: Vec<Row> = vec![
        (
            "memory, empty (MiB RSS)",
            Box::new(|c| num(c.rss_empty_mib, 0)),
            String::new(),
        ),
        (
            "memory, N Healthy (MiB RSS)",
            Box::new(|c| num(c.rss_steady_mib, 0)),
            memory_target.into(),
        ),
        (
            "memory after restart, all present (MiB RSS)",
            Box::new(|c| num(c.rss_restarted_mib, 0)),
            memory_target.into(),
        ),
        (
            "peak memory (MiB)",
            Box::new(|c| num(c.peak_mib, 0)),
            String::new(),
        ),
        (
            "memory per Rollout (KiB)",
            Box::new(|c| num(c.kib_per_rollout, 1)),
            per_rollout_target.into(),
        ),
        (
            "creating N+1 Rollouts (s, the API server's pace)",
            Box::new(|c| num(c.create_seconds, 1)),
            String::new(),
        ),
        (
            "created -> all Healthy (s)",
            Box::new(|c| num(c.healthy_seconds, 1)),
            "<= Argo".into(),
        ),
        (
            "restart -> first full pass (s)",
            Box::new(|c| num(c.first_pass_seconds, 1)),
            first_pass_target.into(),
        ),
        (
            "restart -> first full pass: the controller's CPU time (s)",
            Box::new(|c| num(c.first_pass_cpu_seconds, 1)),
            String::new(),
        ),
        (
            "restart: the same lists by a bare client, at once, the quicker of two tries (s)",
            Box::new(|c| num(c.list_floor.as_ref().map(|f| f.seconds), 1)),
            String::new(),
        ),
        (
            "new image on all N -> all paused at step 1 (s)",
            Box::new(|c| num(c.update_to_paused_seconds, 1)),
            String::new(),
        ),
        (
            "reconcile latency p50 (ms, in its histogram bucket)",
            Box::new(|c| quantile_in_bucket(c.reconcile_p50_ms, &c.latency_buckets)),
            String::new(),
        ),
        (
            "reconcile latency p99 (ms, in its histogram bucket)",
            Box::new(|c| quantile_in_bucket(c.reconcile_p99_ms, &c.latency_buckets)),
            String::new(),
        ),
        (
            "requests per no-op reconcile",
            Box::new(|c| per_reconcile(c.noop.as_ref())),
            "0".into(),
        ),
        (
            "requests per reconcile, update to step 1",
            Box::new(|c| per_reconcile(c.update_phase.as_ref())),
            String::new(),
        ),
        (
            "API requests per Rollout (watches aside): created -> Healthy / update -> step 1",
            Box::new(move |c| {
                format!(
                    "{} / {}",
                    num(per_rollout(c.create_phase.as_ref(), n + 1), 1),
                    num(per_rollout(c.update_phase.as_ref(), n), 1)
                )
            }),
            String::new(),
        ),
        (
            "reconciles: no-op / update",
            Box::new(|c| {
                format!(
                    "{} / {}",
                    num(c.noop.as_ref().map(|d| d.reconciles), 0),
                    num(c.update_phase.as_ref().map(|d| d.reconciles), 0)
                )
            }),
            String::new(),
        ),
        (
            "CPU s per 1,000 reconciles",
            Box::new(|c| num(c.cpu_seconds_per_1000_reconciles, 2)),
            String::new(),
        ),
        (
            "time to safe, others idle (s)",
            Box::new(|c| num(c.time_to_safe_idle_seconds, 1)),
            tts_target.clone(),
        ),
        (
            "time to safe, others idle, split: answered bad / aborted / scaled to 0 / safe (s)",
            Box::new(|c| split(c.time_to_safe_idle_split.as_ref())),
            String::new(),
        ),
        (
            "time to safe, 10% releasing (s)",
            Box::new(|c| num(c.time_to_safe_busy_seconds, 1)),
            tts_target,
        ),
        (
            "time to safe, 10% releasing, split (s)",
            Box::new(|c| split(c.time_to_safe_busy_split.as_ref())),
            String::new(),
        ),
        (
            "API server CPU s: create / update",
            Box::new(|c| {
                format!(
                    "{} / {}",
                    num(cpu(c.create_phase.as_ref(), |d| d.apiserver_cpu_seconds), 0),
                    num(cpu(c.update_phase.as_ref(), |d| d.apiserver_cpu_seconds), 0)
                )
            }),
            String::new(),
        ),
        (
            "machine busy (cores, all processes): create / update",
            Box::new(|c| {
                let cores = |d: Option<&Delta>| {
                    d.filter(|d| d.seconds > 0.0)
                        .map(|d| d.machine_cpu_seconds / d.seconds)
                };
                format!(
                    "{} / {}",
                    num(cores(c.create_phase.as_ref()), 2),
                    num(cores(c.update_phase.as_ref()), 2)
                )
            }),
            String::new(),
        ),
        (
            "harness CPU s (node simulator): create / update",
            Box::new(|c| {
                format!(
                    "{} / {}",
                    num(cpu(c.create_phase.as_ref(), |d| d.harness_cpu_seconds), 0),
                    num(cpu(c.update_phase.as_ref(), |d| d.harness_cpu_seconds), 0)
                )
            }),
            String::new(),
        ),
    ];
    let flavours: Vec<Flavour> = r.controllers.keys().copied().collect();
    let mut header = vec!["figure".to_string()];
    header.extend(flavours.iter().map(|f| f.title().to_string()));
    header.push("target".into());
    let mut lines = vec![header];
    for (name, value, target) in &rows {
        let mut line = vec![name.to_string()];
        for f in &flavours {
            line.push(get(*f).map(value).unwrap_or_else(|| "-".into()));
        }
        line.push(target.clone());
        lines.push(line);
    }
    let mut out = String::new();
    let m = &r.machine_before;
    let _ = writeln!(
        out,
        "\n## N = {n} Rollouts ({} per namespace, 3 replicas, 2 Services, 4 canary steps with an analysis step)\n",
        r.per_namespace
    );
    let _ = writeln!(
        out,
        "Machine: {} cores, {:.0} GiB, {}; load average {:.2} / {:.2} / {:.2} before, {:.2} / {:.2} / {:.2} after. \
         One API server, {} simulated nodes of {} pods; one controller runs at a time, as a ServiceAccount.\n",
        m.cores,
        m.memory_gib,
        m.cpu,
        m.load[0],
        m.load[1],
        m.load[2],
        r.machine_after.load[0],
        r.machine_after.load[1],
        r.machine_after.load[2],
        r.nodes,
        r.pods_per_node
    );
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(out, "| {} |", line.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(line.len()));
        }
    }
    for f in &flavours {
        if let Some(c) = get(*f) {
            for s in &c.shortfalls {
                let _ = writeln!(out, "\n{}: did not finish: {s}", f.title());
            }
        }
    }
    for f in &flavours {
        if let Some(floor) = get(*f).and_then(|c| c.list_floor.as_ref()) {
            let _ = writeln!(out, "\n{}", floor_line(f.title(), floor));
        }
    }
    if r.update_left_out {
        let _ = writeln!(
            out,
            "\nNote: the new image on all N (step 6) was left out (`--no-update`): its rows are empty, \
             and the latency, CPU and peak figures cover the other steps only."
        );
    }
    for note in &r.notes {
        let _ = writeln!(out, "\nNote: {note}");
    }
    for note in saturation(r) {
        let _ = writeln!(out, "\n{note}");
    }
    out
}

/// What the bare client's lists read, kind by kind, e.g. `Sluice's lists, made at once by a
/// bare client with its account (before the restart): pods 203 in 0.4 s, ...; all in 0.5 s`.
pub fn floor_line(title: &str, floor: &ListFloor) -> String {
    let kinds: Vec<String> = floor
        .kinds
        .iter()
        .map(|(kind, count, secs)| format!("{kind} {count} in {secs:.1} s"))
        .collect();
    format!(
        "{title}'s lists, made at once by a bare client with its account ({}): {}; all in {:.1} s: \
         how long this API server takes to hand over what a first pass must read.",
        floor.when,
        kinds.join(", "),
        floor.seconds
    )
}

/// A phase through which the machine's cores were nearly all busy: its time is the machine's
/// pace (the API server, etcd, the controller manager, the scheduler, the node simulator and
/// the controller share them), not the controller's alone.
pub fn saturation(r: &SizeReport) -> Vec<String> {
    let cores = r.machine_before.cores.max(1) as f64;
    let mut out = Vec::new();
    for (f, c) in &r.controllers {
        for (phase, d) in [
            ("created -> all Healthy", &c.create_phase),
            ("new image -> all paused at step 1", &c.update_phase),
        ] {
            let Some(d) = d else { continue };
            if d.seconds <= 0.0 {
                continue;
            }
            let busy = d.machine_cpu_seconds / d.seconds;
            if busy >= 0.85 * cores {
                out.push(format!(
                    "{}, {phase}: the machine was busy {:.0}% of its {} cores through the phase \
                     (the API server alone {:.1} cores, the controller {:.2}); this figure is the \
                     machine's pace as much as the controller's.",
                    f.title(),
                    100.0 * busy / cores,
                    r.machine_before.cores,
                    d.apiserver_cpu_seconds / d.seconds,
                    d.cpu_seconds / d.seconds,
                ));
            }
        }
    }
    out
}

/// The figures a controller lacks at this size (a step that did not finish or was not
/// measured), as `"<controller>: <figure>"`; empty when every figure is there.
pub fn missing(r: &SizeReport) -> Vec<String> {
    let mut out = Vec::new();
    for (f, c) in &r.controllers {
        let figures = [
            ("memory when empty", c.rss_empty_mib),
            ("memory at steady state", c.rss_steady_mib),
            ("memory after a restart", c.rss_restarted_mib),
            ("peak memory", c.peak_mib),
            ("memory per Rollout", c.kib_per_rollout),
            ("time to Healthy", c.healthy_seconds),
            ("first full pass", c.first_pass_seconds),
            ("CPU time of the first full pass", c.first_pass_cpu_seconds),
            ("time to paused at step 1", c.update_to_paused_seconds),
            ("reconcile latency p50", c.reconcile_p50_ms),
            ("reconcile latency p99", c.reconcile_p99_ms),
            (
                "CPU per 1,000 reconciles",
                c.cpu_seconds_per_1000_reconciles,
            ),
            ("time to safe, others idle", c.time_to_safe_idle_seconds),
            ("time to safe, 10% releasing", c.time_to_safe_busy_seconds),
        ];
        for (name, v) in figures {
            if r.update_left_out && name == "time to paused at step 1" {
                continue;
            }
            if !v.is_some_and(f64::is_finite) {
                out.push(format!("{}: {name}", f.title()));
            }
        }
        for (name, d) in [
            ("no-op reconciles", &c.noop),
            ("update reconciles", &c.update_phase),
        ] {
            if r.update_left_out && name == "update reconciles" {
                continue;
            }
            if !d.as_ref().is_some_and(|d| d.reconciles > 0.0) {
                out.push(format!("{}: {name}", f.title()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_reconcile_read_by_verb_and_say_zero() {
        let mut d = Delta {
            reconciles: 4.0,
            ..Delta::default()
        };
        assert_eq!(per_reconcile(Some(&d)), "0");
        d.requests.insert("watch".into(), 3.0);
        assert_eq!(per_reconcile(Some(&d)), "0");
        d.requests.insert("patch".into(), 4.0);
        d.requests.insert("get".into(), 2.0);
        assert_eq!(per_reconcile(Some(&d)), "get 0.50, patch 1.00");
        d.reconciles = 0.0;
        assert_eq!(per_reconcile(Some(&d)), "no reconciles");
        assert_eq!(per_reconcile(None), "-");
    }

    #[test]
    fn quantiles_show_their_bucket_and_requests_count_per_rollout() {
        let buckets = [0.0005, 0.001, 0.1, 1.0, 2.5, f64::INFINITY];
        assert_eq!(
            quantile_in_bucket(Some(2430.3), &buckets),
            "2430 (1000-2500)"
        );
        assert_eq!(quantile_in_bucket(Some(0.7), &buckets), "1 (0.5-1)");
        assert_eq!(quantile_in_bucket(Some(0.2), &buckets), "0 (0-0.5)");
        assert_eq!(quantile_in_bucket(Some(9000.0), &buckets), "9000 (> 2500)");
        assert_eq!(quantile_in_bucket(None, &buckets), "-");
        let mut d = Delta::default();
        d.requests.insert("watch".into(), 7.0);
        d.requests.insert("create".into(), 30.0);
        d.requests.insert("patch".into(), 10.0);
        assert_eq!(per_rollout(Some(&d), 10), Some(4.0));
        assert_eq!(per_rollout(Some(&d), 0), None);
        assert_eq!(per_rollout(None, 10), None);
    }

    #[test]
    fn the_table_has_both_columns_targets_and_what_did_not_finish() {
        let mut r = SizeReport {
            rollouts: 10_000,
            per_namespace: 100,
            ..SizeReport::default()
        };
        r.controllers.insert(
            Flavour::Sluice,
            ControllerFigures {
                healthy_seconds: Some(12.34),
                ..ControllerFigures::default()
            },
        );
        r.controllers.insert(
            Flavour::Argo,
            ControllerFigures {
                shortfalls: vec!["Healthy: 5 of 10001 after 900 s (time limit)".into()],
                ..ControllerFigures::default()
            },
        );
        let t = table(&r);
        assert!(
            t.contains("| figure | Sluice | Argo Rollouts | target |"),
            "{t}"
        );
        assert!(
            t.contains("| created -> all Healthy (s) | 12.3 | - | <= Argo |"),
            "{t}"
        );
        assert!(
            t.contains("| memory per Rollout (KiB) | - | - | < 20 |"),
            "{t}"
        );
        assert!(
            t.contains("Argo Rollouts: did not finish: Healthy: 5 of 10001"),
            "{t}"
        );
        r.machine_before.cores = 2;
        r.controllers
            .entry(Flavour::Sluice)
            .or_default()
            .create_phase = Some(Delta {
            seconds: 100.0,
            machine_cpu_seconds: 190.0,
            apiserver_cpu_seconds: 95.0,
            cpu_seconds: 10.0,
            ..Delta::default()
        });
        r.controllers.entry(Flavour::Argo).or_default().create_phase = Some(Delta {
            seconds: 100.0,
            machine_cpu_seconds: 120.0,
            ..Delta::default()
        });
        let t = table(&r);
        assert!(
            t.contains(
                "Sluice, created -> all Healthy: the machine was busy 95% of its 2 cores \
                        through the phase (the API server alone 0.9 cores, the controller 0.10)"
            ),
            "{t}"
        );
        assert!(!t.contains("Argo Rollouts, created"), "{t}");
        let lacking = missing(&r);
        assert!(
            lacking.contains(&"Sluice: first full pass".to_string()),
            "{lacking:?}"
        );
        assert!(
            !lacking.contains(&"Sluice: time to Healthy".to_string()),
            "{lacking:?}"
        );
        assert!(
            lacking.contains(&"Sluice: CPU time of the first full pass".to_string()),
            "{lacking:?}"
        );
        assert!(
            lacking.contains(&"Argo Rollouts: no-op reconciles".to_string()),
            "{lacking:?}"
        );
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["controllers"]["sluice"]["healthy_seconds"], 12.34);
        assert!(lacking.contains(&"Sluice: time to paused at step 1".to_string()));
        r.update_left_out = true;
        let lacking = missing(&r);
        assert!(
            !lacking
                .iter()
                .any(|m| m.contains("paused at step 1") || m.contains("update reconciles")),
            "a step left out on purpose is not missing: {lacking:?}"
        );
        assert!(lacking.contains(&"Sluice: first full pass".to_string()));
        assert!(table(&r).contains("was left out (`--no-update`)"));
    }

    #[test]
    fn a_time_to_safe_is_split_and_the_list_floor_is_said_by_kind() {
        let mut r = SizeReport {
            rollouts: 1000,
            per_namespace: 100,
            ..SizeReport::default()
        };
        r.controllers.insert(
            Flavour::Sluice,
            ControllerFigures {
                time_to_safe_idle_seconds: Some(5.04),
                time_to_safe_idle_split: Some(SafeSplit {
                    answered_bad: Some(4.12),
                    aborted: Some(4.31),
                    scaled_down: None,
                    safe: 5.04,
                }),
                list_floor: Some(ListFloor {
                    seconds: 2.26,
                    kinds: vec![("pods".into(), 4003, 2.26), ("Rollouts".into(), 1001, 0.9)],
                    when: "before the restart".into(),
                }),
                ..ControllerFigures::default()
            },
        );
        let t = table(&r);
        assert!(
            t.contains("| time to safe, others idle, split: answered bad / aborted / scaled to 0 / safe (s) | 4.1 / 4.3 / - / 5.0 |"),
            "{t}"
        );
        assert!(
            t.contains("| time to safe, 10% releasing, split (s) | - |"),
            "{t}"
        );
        assert!(
            t.contains("| restart: the same lists by a bare client, at once, the quicker of two tries (s) | 2.3 |"),
            "{t}"
        );
        assert!(
            t.contains(
                "(before the restart): pods 4003 in 2.3 s, Rollouts 1001 in 0.9 s; all in 2.3 s"
            ),
            "{t}"
        );
    }
}
