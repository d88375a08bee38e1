//! The `compare` provider's judgement, pure: each metric's canary and stable samples
//! compared with a Mann-Whitney U test (`stats::classify`), and the verdicts scored as
//! Kayenta scores them (`stats::score`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::judge::Outcome;
use crate::analysis::stats::{
    self, Classification, CompareParams, Direction, ScoreVerdict, Scored,
};
use crate::api::analysis::{AnalysisPhase, CompareDirection, CompareMetric, CompareQuery};
use crate::api::duration::parse_duration;

/// The time between two samples when `step` is not given.
pub const DEFAULT_STEP: Duration = Duration::from_secs(10);
/// Kayenta's pass threshold.
pub const DEFAULT_PASS: f64 = 95.0;
/// Kayenta's marginal threshold.
pub const DEFAULT_MARGINAL: f64 = 75.0;

/// The most samples a side of one metric: a longer window keeps its latest. (Prometheus
/// answers at most 11,000 points a series per range query.)
pub const MAX_SAMPLES: u32 = 10_000;

/// The placeholder a query's revision goes in.
pub const REVISION: &str = "{{revision}}";

/// The query for one revision.
pub fn for_revision(query: &str, revision: &str) -> String {
    query.replace(REVISION, revision)
}

/// The step between samples, checked.
pub fn step(spec: &CompareMetric) -> Result<Duration, String> {
    let s = match &spec.step {
        None => DEFAULT_STEP,
        Some(d) => parse_duration(&d.0).map_err(|e| format!("step: {e}"))?,
    };
    if s < Duration::from_secs(1) {
        return Err("step must be at least 1s".into());
    }
    Ok(s)
}

/// How far back the samples reach, when the metric says.
pub fn lookback(spec: &CompareMetric) -> Result<Option<Duration>, String> {
    spec.lookback
        .as_ref()
        .map(|d| parse_duration(&d.0).map_err(|e| format!("lookback: {e}")))
        .transpose()
}

/// The test's parameters for one metric, Kayenta's defaults where it says nothing.
pub fn params(q: &CompareQuery) -> CompareParams {
    let d = CompareParams::default();
    CompareParams {
        direction: match q.direction {
            Some(CompareDirection::Increase) => Direction::Increase,
            Some(CompareDirection::Decrease) => Direction::Decrease,
            Some(CompareDirection::Either) => Direction::Either,
            None => d.direction,
        },
        confidence: q.confidence.unwrap_or(d.confidence),
        tolerance: q.tolerance.unwrap_or(d.tolerance),
        min_samples: q
            .min_samples
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(d.min_samples),
    }
}

/// What is wrong with the spec, if anything: checked before a run starts and at each
/// measurement.
pub fn check(spec: &CompareMetric) -> Result<(), String> {
    let step = step(spec)?;
    if let Some(l) = lookback(spec)? {
        let fewest = spec
            .metrics
            .iter()
            .map(|q| params(q).min_samples.max(3))
            .max()
            .unwrap_or(3);
        if l < step * fewest as u32 {
            return Err(format!(
                "lookback ({}s) holds fewer than {fewest} samples at a step of {}s: it could \
                 never be judged",
                l.as_secs(),
                step.as_secs()
            ));
        }
        if l > step * MAX_SAMPLES {
            return Err(format!(
                "lookback ({}s) holds more than {MAX_SAMPLES} samples at a step of {}s: use a \
                 larger step or a shorter lookback",
                l.as_secs(),
                step.as_secs()
            ));
        }
    }
    let pass = spec.pass_score.unwrap_or(DEFAULT_PASS);
    let marginal = spec.marginal_score.unwrap_or(DEFAULT_MARGINAL);
    if !(0.0..=100.0).contains(&pass) || !(0.0..=100.0).contains(&marginal) || marginal > pass {
        return Err(format!(
            "scores must satisfy 0 <= marginalScore ({marginal}) <= passScore ({pass}) <= 100"
        ));
    }
    if spec.metrics.is_empty() {
        return Err("compare needs at least one metric".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for q in &spec.metrics {
        if !names.insert(q.name.as_str()) {
            return Err(format!("metric {:?} is named twice", q.name));
        }
        if !q.query.contains(REVISION) {
            return Err(format!(
                "metric {:?}: the query has no {REVISION}, so the canary and the stable would \
                 be measured by the same query",
                q.name
            ));
        }
        let p = params(q);
        if !(p.confidence > 0.0 && p.confidence < 1.0) {
            return Err(format!(
                "metric {:?}: confidence must be between 0 and 1",
                q.name
            ));
        }
        if !(p.tolerance.is_finite() && p.tolerance >= 0.0) {
            return Err(format!("metric {:?}: tolerance cannot be negative", q.name));
        }
        if q.weight.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
            return Err(format!("metric {:?}: weight cannot be negative", q.name));
        }
    }
    Ok(())
}

fn figure(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.3}")
    } else if x.abs() >= 0.001 {
        format!("{x:.4}")
    } else {
        // A p-value of 8.25e-6 is not 0.0000.
        format!("{x:.3e}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), figure)
}

/// A score as people read it: `100`, `50`, `94.67` (never rounded up to a pass: 94.6 is
/// not shown as 95). `+ 0.0` turns a negative zero into zero.
fn score_text(x: f64) -> String {
    let t = format!("{:.2}", x + 0.0);
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The samples of each metric: (canary, stable), by metric name.
pub type Samples = BTreeMap<String, (Vec<f64>, Vec<f64>)>;

/// The verdict over every metric's samples: Successful at `passScore`, Inconclusive when
/// marginal or when no metric had enough samples, Failed below `marginalScore` or when a
/// critical metric changed for the worse. The value is the score; the metadata holds, per
/// metric, both samples' sizes and medians, the p-value, the effect size and the verdict.
pub fn judge(spec: &CompareMetric, samples: &Samples) -> Outcome {
    let mut metadata = BTreeMap::new();
    let mut scored = Vec::new();
    let mut why = Vec::new();
    for q in &spec.metrics {
        let empty = (Vec::new(), Vec::new());
        let (canary, stable) = samples.get(&q.name).unwrap_or(&empty);
        let c = stats::classify(canary, stable, &params(q));
        let n = &q.name;
        metadata.insert(
            format!("{n}.canary"),
            format!("n={} median={}", c.canary_n, opt(c.canary_median)),
        );
        metadata.insert(
            format!("{n}.stable"),
            format!("n={} median={}", c.stable_n, opt(c.stable_median)),
        );
        metadata.insert(format!("{n}.pValue"), opt(c.p_value));
        metadata.insert(format!("{n}.effectSize"), opt(c.effect_size));
        metadata.insert(format!("{n}.verdict"), format!("{:?}", c.classification));
        if c.classification != Classification::Pass {
            why.push(format!("{n}: {}", c.reason));
        }
        scored.push(Scored {
            name: n.clone(),
            weight: q.weight.unwrap_or(1.0),
            critical: q.critical.unwrap_or(false),
            classification: c.classification,
        });
    }
    let s = stats::score(
        &scored,
        spec.pass_score.unwrap_or(DEFAULT_PASS),
        spec.marginal_score.unwrap_or(DEFAULT_MARGINAL),
    );
    let score = s.score.map(score_text);
    metadata.insert("score".into(), score.clone().unwrap_or_else(|| "-".into()));
    let phase = match s.verdict {
        ScoreVerdict::Pass => AnalysisPhase::Successful,
        ScoreVerdict::Marginal | ScoreVerdict::Inconclusive => AnalysisPhase::Inconclusive,
        ScoreVerdict::Fail => AnalysisPhase::Failed,
    };
    let message = (phase != AnalysisPhase::Successful || !why.is_empty()).then(|| {
        let mut m = s.reason.clone();
        if !why.is_empty() {
            m.push_str(": ");
            m.push_str(&why.join("; "));
        }
        m
    });
    Outcome::Decided {
        phase,
        value: score,
        message,
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(metrics: &[(&str, Option<CompareDirection>, bool)]) -> CompareMetric {
        CompareMetric {
            canary: "c".into(),
            stable: "s".into(),
            metrics: metrics
                .iter()
                .map(|&(name, direction, critical)| CompareQuery {
                    name: name.into(),
                    query: "x{rev=\"{{revision}}\"}".into(),
                    direction,
                    critical: Some(critical),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `n` values around `level`, spread by ±2% in a fixed pattern.
    fn around(level: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| level * (1.0 + 0.02 * ((i * 7 % 11) as f64 / 5.0 - 1.0)))
            .collect()
    }

    fn decided(
        o: Outcome,
    ) -> (
        AnalysisPhase,
        Option<String>,
        Option<String>,
        BTreeMap<String, String>,
    ) {
        match o {
            Outcome::Decided {
                phase,
                value,
                message,
                metadata,
            } => (phase, value, message, metadata),
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn a_canary_30_percent_slower_fails_and_says_why() {
        let s = spec(&[("latency", Some(CompareDirection::Increase), false)]);
        let samples = Samples::from([("latency".into(), (around(13.0, 20), around(10.0, 20)))]);
        let (phase, value, message, md) = decided(judge(&s, &samples));
        assert_eq!(phase, AnalysisPhase::Failed);
        assert_eq!(value.as_deref(), Some("0"));
        assert_eq!(md["latency.verdict"], "High");
        assert!(md["latency.canary"].starts_with("n=20 median=13"), "{md:?}");
        assert!(md["latency.stable"].starts_with("n=20 median=10"), "{md:?}");
        assert!(md["latency.pValue"].parse::<f64>().expect("a value") < 0.02);
        assert!(message.expect("a value").contains("latency: "));
    }

    #[test]
    fn identical_revisions_pass_with_a_full_score() {
        let s = spec(&[
            ("latency", Some(CompareDirection::Increase), false),
            ("errors", None, false),
        ]);
        let samples = Samples::from([
            ("latency".into(), (around(10.0, 20), around(10.0, 20))),
            ("errors".into(), (around(0.05, 20), around(0.05, 20))),
        ]);
        let (phase, value, message, md) = decided(judge(&s, &samples));
        assert_eq!(phase, AnalysisPhase::Successful, "{message:?}");
        assert_eq!(value.as_deref(), Some("100"));
        assert_eq!(md["score"], "100");
        assert_eq!(md["errors.verdict"], "Pass");
    }

    #[test]
    fn one_bad_metric_of_two_is_below_marginal_and_a_better_one_is_no_harm() {
        // Half the weight passes: 50 < 75.
        let s = spec(&[
            ("latency", Some(CompareDirection::Increase), false),
            ("throughput", Some(CompareDirection::Decrease), false),
        ]);
        let samples = Samples::from([
            ("latency".into(), (around(13.0, 20), around(10.0, 20))),
            // More throughput is not bad when only a decrease is.
            ("throughput".into(), (around(200.0, 20), around(100.0, 20))),
        ]);
        let (phase, value, ..) = decided(judge(&s, &samples));
        assert_eq!(phase, AnalysisPhase::Failed);
        assert_eq!(value.as_deref(), Some("50"));
    }

    #[test]
    fn too_few_samples_is_inconclusive_never_failed() {
        let s = spec(&[("latency", Some(CompareDirection::Increase), true)]);
        let samples = Samples::from([("latency".into(), (around(30.0, 4), around(10.0, 40)))]);
        let (phase, value, message, md) = decided(judge(&s, &samples));
        assert_eq!(phase, AnalysisPhase::Inconclusive);
        assert_eq!(value, None);
        assert_eq!(md["latency.verdict"], "TooFewSamples");
        assert!(message.is_some());
        // No samples at all (the metric missing from the map) too.
        let (phase, ..) = decided(judge(&s, &Samples::new()));
        assert_eq!(phase, AnalysisPhase::Inconclusive);
    }

    #[test]
    fn a_critical_metric_fails_the_comparison_whatever_the_score() {
        let mut s = spec(&[
            ("errors", Some(CompareDirection::Increase), true),
            ("a", None, false),
            ("b", None, false),
            ("c", None, false),
        ]);
        s.marginal_score = Some(0.0);
        s.pass_score = Some(10.0);
        let same = (around(10.0, 20), around(10.0, 20));
        let samples = Samples::from([
            ("errors".into(), (around(20.0, 20), around(10.0, 20))),
            ("a".into(), same.clone()),
            ("b".into(), same.clone()),
            ("c".into(), same),
        ]);
        let (phase, ..) = decided(judge(&s, &samples));
        assert_eq!(phase, AnalysisPhase::Failed);
    }

    #[test]
    fn the_spec_is_checked() {
        let mut s = spec(&[("latency", None, false)]);
        assert!(check(&s).is_ok());
        s.metrics[0].query = "x".into();
        assert!(
            check(&s)
                .expect_err("an error")
                .contains("has no {{revision}}")
        );
        let mut s = spec(&[("a", None, false), ("a", None, false)]);
        assert!(check(&s).expect_err("an error").contains("named twice"));
        s.metrics.pop();
        s.marginal_score = Some(96.0);
        assert!(check(&s).expect_err("an error").contains("marginalScore"));
        s.marginal_score = None;
        s.step = Some(crate::api::duration::DurationString("0s".into()));
        assert!(check(&s).expect_err("an error").contains("step"));
        s.step = None;
        s.metrics[0].confidence = Some(1.0);
        assert!(check(&s).expect_err("an error").contains("confidence"));
        assert_eq!(
            (figure(8.25e-6), figure(0.0912), figure(12.969)),
            ("8.250e-6".into(), "0.0912".into(), "12.969".into())
        );
        assert_eq!(for_revision("a{r=\"{{revision}}\"}", "abc"), "a{r=\"abc\"}");
        assert_eq!(
            (score_text(100.0), score_text(-0.0), score_text(94.6)),
            ("100".into(), "0".into(), "94.6".into())
        );
        let mut s = spec(&[("latency", None, false)]);
        s.lookback = Some(crate::api::duration::DurationString("0s".into()));
        assert!(
            check(&s)
                .expect_err("refused")
                .contains("could never be judged")
        );
        s.lookback = Some(crate::api::duration::DurationString("999999999999h".into()));
        assert!(
            check(&s)
                .expect_err("refused")
                .contains("more than 10000 samples")
        );
        s.lookback = Some(crate::api::duration::DurationString("10m".into()));
        assert!(check(&s).is_ok());
    }
}
