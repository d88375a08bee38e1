//! The `burnRate` provider's judgement, pure: which windows to measure and what the burn
//! rates over them mean.
//!
//! The rule is the multi-window, multi-burn-rate alert of Google's SRE workbook (chapter
//! "Alerting on SLOs", table 5-8 and the recommended setup): page when the error budget burns
//! 14.4 times too fast over both 1h and 5m, or 6 times over both 6h and 30m. A canary lives
//! minutes, not hours, so the windows are scaled: the workbook's 6h becomes `window`
//! (default 30m) and the others keep their ratio to it, none shorter than `minWindow`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::judge::Outcome;
use crate::api::analysis::{AnalysisPhase, BurnRateMetric};
use crate::api::duration::{DurationString, parse_duration};

/// The span the workbook's 6h window becomes when `window` is not given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The shortest window when `minWindow` is not given.
pub const DEFAULT_MIN_WINDOW: Duration = Duration::from_secs(30);
/// The SLO period when `period` is not given: 30 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);
/// The workbook's pairs, as fractions of its 6h window: (long, short, burn rate).
const WORKBOOK: [(u64, u64, f64); 2] = [
    // 1h and 5m at 14.4x: 2% of a 30-day budget in one hour.
    (6, 72, 14.4),
    // 6h and 30m at 6x: 5% of a 30-day budget in six hours.
    (1, 12, 6.0),
];

/// One alert: fires when the burn rate over both windows is above `burn_rate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub long: Duration,
    pub short: Duration,
    pub burn_rate: f64,
}

fn duration(
    field: &str,
    d: &Option<DurationString>,
    default: Duration,
) -> Result<Duration, String> {
    match d {
        None => Ok(default),
        Some(d) => parse_duration(&d.0).map_err(|e| format!("{field}: {e}")),
    }
}

/// The whole seconds of `d`, at least one.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// The alerts the metric judges by: its own `alerts`, or the workbook's pairs scaled to
/// `window`. Checks the spec's numbers.
pub fn alerts(spec: &BurnRateMetric) -> Result<Vec<Alert>, String> {
    if !(spec.objective > 0.0 && spec.objective < 1.0) {
        return Err(format!(
            "objective must be between 0 and 1 (e.g. 0.999), not {}",
            spec.objective
        ));
    }
    let min = duration("minWindow", &spec.min_window, DEFAULT_MIN_WINDOW)?;
    period(spec)?;
    if let Some(list) = &spec.alerts {
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let long = whole_seconds(duration("long", &Some(a.long.clone()), min)?.max(min));
            let short = whole_seconds(duration("short", &Some(a.short.clone()), min)?.max(min));
            if short > long {
                return Err(format!(
                    "alerts[{i}]: the short window ({}) is longer than the long one ({})",
                    prom_duration(short),
                    prom_duration(long)
                ));
            }
            if !(a.burn_rate.is_finite() && a.burn_rate > 0.0) {
                return Err(format!("alerts[{i}]: burnRate must be above 0"));
            }
            out.push(Alert {
                long,
                short,
                burn_rate: a.burn_rate,
            });
        }
        return Ok(out);
    }
    let window = duration("window", &spec.window, DEFAULT_WINDOW)?;
    if window.is_zero() {
        return Err("window must be longer than 0".into());
    }
    Ok(WORKBOOK
        .iter()
        .map(|&(long, short, burn_rate)| Alert {
            long: whole_seconds((window / long as u32).max(min)),
            short: whole_seconds((window / short as u32).max(min)),
            burn_rate,
        })
        .collect())
}

/// The SLO period.
pub fn period(spec: &BurnRateMetric) -> Result<Duration, String> {
    let p = duration("period", &spec.period, DEFAULT_PERIOD)?;
    if p.is_zero() {
        return Err("period must be longer than 0".into());
    }
    Ok(p)
}

/// Every window the alerts need, shortest first.
pub fn windows(alerts: &[Alert]) -> Vec<Duration> {
    let mut w: Vec<Duration> = alerts.iter().flat_map(|a| [a.long, a.short]).collect();
    w.sort();
    w.dedup();
    w
}

/// A duration as Prometheus reads it: `1h`, `5m`, `2m30s`, `25s`.
pub fn prom_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// `query` with `{{window}}` (spaces inside the braces allowed) replaced by `window`.
pub fn with_window(query: &str, window: Duration) -> String {
    let w = prom_duration(window);
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        if inner == "window" {
            out.push_str(&w);
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The fraction of bad events from what the queries returned: `None` when there was no
/// traffic (a total of 0, no data, or not a number). No bad-event series means none failed.
pub fn error_ratio(bad: Option<f64>, total: Option<f64>) -> Option<f64> {
    let total = total.filter(|t| t.is_finite() && *t > 0.0)?;
    let bad = bad.filter(|b| b.is_finite()).unwrap_or(0.0).max(0.0);
    Some(bad / total)
}

/// A ratio query's value: `None` when there was no traffic.
pub fn ratio(value: Option<f64>) -> Option<f64> {
    value.filter(|r| r.is_finite() && *r >= 0.0)
}

/// How many times faster than the SLO allows the budget burns at this error ratio.
pub fn burn_rate(error_ratio: f64, objective: f64) -> f64 {
    error_ratio / (1.0 - objective)
}

fn figure(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// What was measured: each window's error ratio (`None`: no traffic), and the error ratio
/// over the canary's life so far (`elapsed`) for the budget it consumed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub ratios: BTreeMap<Duration, Option<f64>>,
    pub elapsed: Option<(Duration, Option<f64>)>,
}

/// The verdict: Failed when an alert fires (both its windows burn faster than its rate),
/// Inconclusive when no window saw traffic, Successful otherwise. The value is the highest
/// burn rate an alert saw over both its windows; the metadata holds every window's burn rate
/// and the share of the period's error budget the canary consumed.
pub fn judge(spec: &BurnRateMetric, alerts: &[Alert], measured: &Measured) -> Outcome {
    let objective = spec.objective;
    let burn = |w: &Duration| {
        measured
            .ratios
            .get(w)
            .copied()
            .flatten()
            .map(|r| burn_rate(r, objective))
    };
    let mut metadata = BTreeMap::from([("objective".to_string(), format!("{objective}"))]);
    for (w, r) in &measured.ratios {
        let text = match r {
            Some(r) => format!("{}x", figure(burn_rate(*r, objective))),
            None => "no traffic".to_string(),
        };
        metadata.insert(format!("burnRate.{}", prom_duration(*w)), text);
    }
    if let Some((elapsed, r)) = &measured.elapsed
        && let (Some(r), Ok(period)) = (r, period(spec))
    {
        let consumed =
            burn_rate(*r, objective) * elapsed.as_secs_f64() / period.as_secs_f64() * 100.0;
        metadata.insert(
            "budgetConsumed".into(),
            format!(
                "{}% of the {} budget in {}",
                figure(consumed),
                prom_duration(period),
                prom_duration(*elapsed)
            ),
        );
    }
    let mut fired = Vec::new();
    let mut sustained: Option<f64> = None;
    let mut seen = false;
    for a in alerts {
        let (Some(long), Some(short)) = (burn(&a.long), burn(&a.short)) else {
            continue;
        };
        seen = true;
        let both = long.min(short);
        sustained = Some(sustained.map_or(both, |s| s.max(both)));
        if both > a.burn_rate {
            fired.push(format!(
                "burn rate {}x over {} and {}x over {} are above {}x",
                figure(long),
                prom_duration(a.long),
                figure(short),
                prom_duration(a.short),
                a.burn_rate
            ));
        }
    }
    let value = sustained.map(figure);
    if !seen {
        return Outcome::Decided {
            phase: AnalysisPhase::Inconclusive,
            value,
            message: Some("no traffic in the windows: no burn rate to judge".into()),
            metadata,
        };
    }
    if fired.is_empty() {
        Outcome::Decided {
            phase: AnalysisPhase::Successful,
            value,
            message: None,
            metadata,
        }
    } else {
        Outcome::Decided {
            phase: AnalysisPhase::Failed,
            value,
            message: Some(format!(
                "the error budget of a {} objective burns too fast: {}",
                objective,
                fired.join("; ")
            )),
            metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::BurnRateAlert;

    fn spec() -> BurnRateMetric {
        BurnRateMetric {
            objective: 0.99,
            ..Default::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_workbook_windows_scale_to_the_window() {
        // 30m: 6h->30m, 1h->5m, 30m->2m30s, 5m->25s, floored at the default 30s.
        let a = alerts(&spec()).expect("a value");
        assert_eq!(
            a,
            vec![
                Alert {
                    long: secs(300),
                    short: secs(30),
                    burn_rate: 14.4
                },
                Alert {
                    long: secs(1800),
                    short: secs(150),
                    burn_rate: 6.0
                },
            ]
        );
        // 6h is the workbook unscaled.
        let mut s = spec();
        s.window = Some(DurationString("6h".into()));
        let a = alerts(&s).expect("a value");
        assert_eq!((a[0].long, a[0].short), (secs(3600), secs(300)));
        assert_eq!((a[1].long, a[1].short), (secs(6 * 3600), secs(1800)));
        s.window = Some(DurationString("12m".into()));
        s.min_window = Some(DurationString("5s".into()));
        let a = alerts(&s).expect("a value");
        assert_eq!((a[0].long, a[0].short), (secs(120), secs(10)));
        assert_eq!(windows(&a), vec![secs(10), secs(60), secs(120), secs(720)]);
    }

    #[test]
    fn no_window_of_custom_alerts_is_shorter_than_min_window() {
        let mut s = spec();
        s.min_window = Some(DurationString("1m".into()));
        s.alerts = Some(vec![BurnRateAlert {
            long: DurationString("5m".into()),
            short: DurationString("10s".into()),
            burn_rate: 14.4,
        }]);
        let a = alerts(&s).expect("alerts");
        assert_eq!((a[0].long, a[0].short), (secs(300), secs(60)));
    }

    #[test]
    fn bad_numbers_are_refused_with_the_field() {
        let mut s = spec();
        s.objective = 1.0;
        assert!(alerts(&s).expect_err("an error").contains("objective"));
        let mut s = spec();
        s.window = Some(DurationString("soon".into()));
        assert!(alerts(&s).expect_err("an error").starts_with("window"));
        let mut s = spec();
        s.alerts = Some(vec![BurnRateAlert {
            long: DurationString("5m".into()),
            short: DurationString("1h".into()),
            burn_rate: 2.0,
        }]);
        assert!(
            alerts(&s)
                .expect_err("an error")
                .contains("longer than the long one")
        );
        s.alerts = Some(vec![BurnRateAlert {
            long: DurationString("1h".into()),
            short: DurationString("5m".into()),
            burn_rate: 0.0,
        }]);
        assert!(alerts(&s).expect_err("an error").contains("above 0"));
    }

    #[test]
    fn window_placeholders_become_prometheus_durations() {
        assert_eq!(prom_duration(secs(150)), "2m30s");
        assert_eq!(prom_duration(secs(3600)), "1h");
        assert_eq!(prom_duration(secs(0)), "0s");
        assert_eq!(
            with_window(
                "sum(rate(x[{{window}}])) / sum(rate(y[{{ window }}])) {{revision}}",
                secs(300)
            ),
            "sum(rate(x[5m])) / sum(rate(y[5m])) {{revision}}"
        );
        assert_eq!(with_window("x[{{window", secs(300)), "x[{{window");
    }

    #[test]
    fn ratios_without_traffic_are_none() {
        assert_eq!(error_ratio(Some(1.0), Some(100.0)), Some(0.01));
        assert_eq!(error_ratio(None, Some(100.0)), Some(0.0));
        assert_eq!(error_ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(error_ratio(Some(1.0), None), None);
        assert_eq!(error_ratio(Some(f64::NAN), Some(10.0)), Some(0.0));
        assert_eq!(ratio(Some(f64::NAN)), None);
        assert!((burn_rate(0.2, 0.99) - 20.0).abs() < 1e-9);
    }

    fn measured(ratios: &[(u64, Option<f64>)]) -> Measured {
        Measured {
            ratios: ratios.iter().map(|&(w, r)| (secs(w), r)).collect(),
            elapsed: Some((secs(600), ratios.first().and_then(|r| r.1))),
        }
    }

    fn phase(o: &Outcome) -> AnalysisPhase {
        match o {
            Outcome::Decided { phase, .. } => *phase,
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn twenty_times_fails_and_one_time_passes() {
        let s = spec();
        let a = alerts(&s).expect("a value");
        // 20% errors against a 99% objective: 20x everywhere.
        let all = |r| {
            measured(&[
                (30, Some(r)),
                (150, Some(r)),
                (300, Some(r)),
                (1800, Some(r)),
            ])
        };
        let out = judge(&s, &a, &all(0.2));
        assert_eq!(phase(&out), AnalysisPhase::Failed);
        let Outcome::Decided {
            value,
            message,
            metadata,
            ..
        } = &out
        else {
            unreachable!()
        };
        assert_eq!(value.as_deref(), Some("20.00"));
        let message = message.clone().expect("a value");
        assert!(
            message.contains("above 14.4x") && message.contains("above 6x"),
            "{message}"
        );
        assert_eq!(metadata["burnRate.5m"], "20.00x");
        // 20x for 10 minutes of a 30-day period: 20 * 600 / 2592000 = 0.463%.
        assert_eq!(
            metadata["budgetConsumed"],
            "0.463% of the 720h budget in 10m"
        );
        assert_eq!(phase(&judge(&s, &a, &all(0.01))), AnalysisPhase::Successful);
    }

    #[test]
    fn both_windows_must_burn() {
        let s = spec();
        let a = alerts(&s).expect("a value");
        // A spike in the short windows only (the long ones at 1x) does not fire.
        let m = measured(&[
            (30, Some(0.5)),
            (150, Some(0.5)),
            (300, Some(0.01)),
            (1800, Some(0.01)),
        ]);
        assert_eq!(phase(&judge(&s, &a, &m)), AnalysisPhase::Successful);
        // 10x: above the slow pair's 6x over 30m and 2m30s, below the fast pair's 14.4x.
        let m = measured(&[
            (30, Some(0.1)),
            (150, Some(0.1)),
            (300, Some(0.1)),
            (1800, Some(0.1)),
        ]);
        let out = judge(&s, &a, &m);
        assert_eq!(phase(&out), AnalysisPhase::Failed);
        let Outcome::Decided { message, .. } = out else {
            unreachable!()
        };
        assert!(
            message
                .expect("a value")
                .contains("over 30m and 10.00x over 2m30s are above 6x")
        );
    }

    #[test]
    fn no_traffic_is_inconclusive() {
        let s = spec();
        let a = alerts(&s).expect("a value");
        let m = measured(&[(30, None), (150, None), (300, None), (1800, None)]);
        let out = judge(&s, &a, &m);
        assert_eq!(phase(&out), AnalysisPhase::Inconclusive);
        let Outcome::Decided { metadata, .. } = out else {
            unreachable!()
        };
        assert_eq!(metadata["burnRate.30s"], "no traffic");
        assert!(!metadata.contains_key("budgetConsumed"));
    }
}
