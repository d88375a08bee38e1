//! Statistics for the `compare` analysis provider, which judges a canary against the stable
//! version the way Netflix's Kayenta does: each metric's two samples are compared with the
//! Mann-Whitney U test and a Hodges-Lehmann confidence interval for the shift between them
//! (`classify`), and the metrics' classifications are weighed into one score (`score`).
//!
//! Everything here is pure: numbers in, numbers and one-line reasons out. No function panics,
//! whatever the input (empty, NaN, infinite, a single value, values near the largest double).
//!
//! Sources, for whoever checks the numbers:
//! - scipy.stats.mannwhitneyu (scipy 1.17) for `mann_whitney_u`, its U and its p-values;
//! - R's wilcox.test(conf.int = TRUE) for the shift's estimate and confidence interval;
//! - Kayenta's kayenta-judge module (NetflixACAJudge.scala, MannWhitneyClassifier.scala,
//!   EffectSizes.scala, WeightedSumScorer.scala) for how the interval becomes a classification
//!   and the classifications a score. Where this module does otherwise, the item says so.

use std::cmp::Ordering;
use std::f64::consts::FRAC_1_SQRT_2;

/// The alternative hypothesis of a test of x against y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alternative {
    /// x and y differ in either direction.
    TwoSided,
    /// x tends to be smaller than y.
    Less,
    /// x tends to be larger than y.
    Greater,
}

/// The result of a Mann-Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UTest {
    /// The U statistic of x, as scipy reports it: the number of pairs (x, y) with x > y, ties
    /// counting one half.
    pub u: f64,
    /// The p-value for the chosen alternative, between 0 and 1.
    pub p_value: f64,
}

/// Above this product of the two sample sizes the exact distribution is not built (it would
/// take memory in proportion to the product) and the normal approximation is used instead.
/// scipy has no such limit; no metric query returns samples this large.
const EXACT_MAX_PRODUCT: usize = 10_000_000;

/// R's wilcox.test computes an exact confidence interval while both samples are under this
/// size and no value is tied.
const EXACT_CI_MAX_N: usize = 50;

/// The Mann-Whitney U test of x against y, as scipy.stats.mannwhitneyu(x, y, alternative=...,
/// method='auto', use_continuity=True) computes it.
///
/// Like scipy's 'auto' method, the p-value comes from the exact distribution of U when at least
/// one of the samples has 8 values or fewer and no value is tied; otherwise from the normal
/// approximation, with the tie correction and the continuity correction. (The exact
/// distribution is also skipped, for the normal approximation, when the product of the sample
/// sizes is over ten million.) The two-sided p-value is twice the one-sided one, capped at 1.
///
/// None when either sample is empty or holds a NaN (scipy raises an error for both). Infinite
/// values are ranked like any other.
pub fn mann_whitney_u(x: &[f64], y: &[f64], alternative: Alternative) -> Option<UTest> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let xs = sorted(x);
    let ys = sorted(y);
    let ranks = rank_sums(&xs, &ys);
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let u1 = ranks.first - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let (u, factor) = match alternative {
        Alternative::Greater => (u1, 1.0),
        // By symmetry, the lower tail of U1 is the upper tail of U2.
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let exact = (x.len() <= 8 || y.len() <= 8)
        && !ranks.tied
        && x.len().saturating_mul(y.len()) <= EXACT_MAX_PRODUCT;
    let one_sided = if exact {
        exact_survival(u, x.len(), y.len())
    } else {
        let n = n1 + n2;
        let spread = (n + 1.0) - ranks.tie_term / (n * (n - 1.0));
        let sigma = (n1 * n2 / 12.0 * spread).max(0.0).sqrt();
        // With every value tied sigma is 0 and z is minus infinity: the p-value is 1, as in
        // scipy.
        let z = (u - n1 * n2 / 2.0 - 0.5) / sigma;
        normal_cdf(-z)
    };
    let p = one_sided * factor;
    let p_value = if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
    Some(UTest { u: u1, p_value })
}

/// A sample sorted ascending; the caller has removed NaNs.
fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    s
}

/// What ranking the pooled sample tells about its first part.
struct RankSums {
    /// The sum of the first sample's ranks, ties getting the average of the ranks they span.
    first: f64,
    /// The sum of t^3 - t over the groups of t tied values.
    tie_term: f64,
    /// Whether any value occurs more than once in the pooled sample.
    tied: bool,
}

/// Ranks two sorted samples together in one pass.
fn rank_sums(a: &[f64], b: &[f64]) -> RankSums {
    let (mut i, mut j) = (0, 0);
    let mut position = 0.0;
    let mut sums = RankSums {
        first: 0.0,
        tie_term: 0.0,
        tied: false,
    };
    while i < a.len() || j < b.len() {
        let value = match (a.get(i), b.get(j)) {
            (Some(&va), Some(&vb)) => va.min(vb),
            (Some(&va), None) => va,
            (None, Some(&vb)) => vb,
            (None, None) => break,
        };
        let mut in_a = 0.0;
        while a.get(i).is_some_and(|&v| v == value) {
            in_a += 1.0;
            i += 1;
        }
        let mut in_b = 0.0;
        while b.get(j).is_some_and(|&v| v == value) {
            in_b += 1.0;
            j += 1;
        }
        let t: f64 = in_a + in_b;
        if t == 0.0 {
            // Only reachable with a NaN, which callers remove; never loop forever.
            break;
        }
        let average_rank = position + (t + 1.0) / 2.0;
        sums.first += in_a * average_rank;
        sums.tie_term += t * t * t - t;
        sums.tied |= t > 1.0;
        position += t;
    }
    sums
}

/// P(U >= u) under the null hypothesis, from the exact distribution of U for samples of sizes
/// m and n with no ties, summed from the nearer tail as scipy does.
fn exact_survival(u: f64, m: usize, n: usize) -> f64 {
    let total = m * n;
    let k = (u.round().max(0.0) as usize).min(total);
    let complement = total - k;
    let upto = k.min(complement);
    let pmf = wilcoxon_pmf(m, n, upto);
    let cdf: f64 = pmf.iter().sum();
    if k < complement {
        // P(U >= k) = 1 - P(U <= k) + P(U = k).
        1.0 - cdf + pmf.last().copied().unwrap_or(0.0)
    } else {
        // By symmetry P(U >= k) = P(U <= m*n - k).
        cdf
    }
}

/// P(U = u) for u in 0..=upto, for samples of sizes m and n with no ties.
///
/// The number of orderings with U = u is the coefficient of q^u in the Gaussian binomial
/// coefficient [m+n choose m]_q, built one factor (1 - q^(n+j)) / (1 - q^j) at a time; the
/// coefficients are counts, divided at the end by the number of orderings, C(m+n, m).
fn wilcoxon_pmf(m: usize, n: usize, upto: usize) -> Vec<f64> {
    let (small, large) = if m <= n { (m, n) } else { (n, m) };
    let mut counts = vec![0.0_f64; upto + 1];
    let mut partial = vec![0.0_f64; upto + 1];
    if let Some(first) = counts.first_mut() {
        *first = 1.0;
    }
    for j in 1..=small {
        // Divide by (1 - q^j): a running sum with stride j.
        for u in 0..=upto {
            let carried = if u >= j { partial[u - j] } else { 0.0 };
            partial[u] = counts[u] + carried;
        }
        // Multiply by (1 - q^(large + j)).
        let cut = large + j;
        for u in 0..=upto {
            let removed = if u >= cut { partial[u - cut] } else { 0.0 };
            counts[u] = (partial[u] - removed).max(0.0);
        }
    }
    let orderings = binomial(small + large, small);
    counts.iter().map(|c| c / orderings).collect()
}

/// C(n, k) as a double.
fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n.saturating_sub(k));
    (1..=k).fold(1.0, |c, i| c * (n - k + i) as f64 / i as f64)
}

/// The first q with P(U <= q) >= p, as R's qwilcox(p, m, n) for p at most one half.
fn wilcoxon_quantile(p: f64, m: usize, n: usize) -> usize {
    let half = m * n / 2;
    let pmf = wilcoxon_pmf(m, n, half);
    // R's tolerance, so that a p that equals a cumulative probability finds it.
    let target = p - 10.0 * f64::EPSILON;
    let mut cumulative = 0.0;
    for (q, mass) in pmf.iter().enumerate() {
        cumulative += mass;
        if cumulative >= target {
            return q;
        }
    }
    half
}

/// The standard normal distribution function, computed as scipy's ndtr (Cephes) does.
fn normal_cdf(a: f64) -> f64 {
    let x = a * FRAC_1_SQRT_2;
    let z = x.abs();
    if z < FRAC_1_SQRT_2 {
        0.5 + 0.5 * libm::erf(x)
    } else {
        let tail = 0.5 * libm::erfc(z);
        if x > 0.0 { 1.0 - tail } else { tail }
    }
}

/// The standard normal quantile of p (0 < p < 1), by bisection on `normal_cdf`: only a few
/// quantiles are needed per comparison, and bisection is exact to the last bit.
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0_f64, 40.0_f64);
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo + (hi - lo) / 2.0
}

/// The Hodges-Lehmann estimate of the shift x - y and its two-sided confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShiftInterval {
    /// The estimated shift of x against y (positive when x is larger).
    pub estimate: f64,
    /// The interval's lower end.
    pub lower: f64,
    /// The interval's upper end.
    pub upper: f64,
    /// Whether the interval comes from the exact distribution (else the normal approximation).
    pub exact: bool,
}

/// The shift of x against y with its confidence interval at level `confidence`, as R's
/// wilcox.test(x, y, conf.int = TRUE, conf.level = confidence) computes them.
///
/// Exact while both samples are under 50 and no value is tied: the estimate is the median of
/// the pairwise differences x_i - y_j and the interval runs between two of their order
/// statistics, chosen with the exact distribution of U. Otherwise the normal approximation
/// (with the tie and continuity corrections) is inverted: the interval's ends are the shifts d
/// at which the rank-sum test of x - d against y sits exactly on the quantile, found by
/// bisection to full precision (R's uniroot stops at 1e-4; Kayenta's MannWhitney.scala uses
/// this asymptotic inversion always); the estimate is the shift at which the test statistic
/// is centred, as in R.
///
/// When every x equals one value and every y another, the shift is that difference, certain.
/// None when either sample is empty, any value is not finite, or `confidence` is not strictly
/// between 0 and 1.
pub fn shift_interval(x: &[f64], y: &[f64], confidence: f64) -> Option<ShiftInterval> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    // Differences of values near the largest double overflow: work on values scaled by a
    // power of two (exact, and ranks do not change), and scale the results back.
    let largest = x.iter().chain(y).fold(0.0_f64, |m, v| m.max(v.abs()));
    let scale = if largest > 2f64.powi(1000) {
        2f64.powi(-64)
    } else {
        1.0
    };
    let xs: Vec<f64> = sorted(x).iter().map(|v| v * scale).collect();
    let ys: Vec<f64> = sorted(y).iter().map(|v| v * scale).collect();
    let alpha = 1.0 - confidence;
    let tied = rank_sums(&xs, &ys).tied;
    let interval = if !tied && xs.len() < EXACT_CI_MAX_N && ys.len() < EXACT_CI_MAX_N {
        exact_shift_interval(&xs, &ys, alpha)
    } else {
        asymptotic_shift_interval(&xs, &ys, alpha)
    }?;
    Some(ShiftInterval {
        estimate: interval.estimate / scale,
        lower: interval.lower / scale,
        upper: interval.upper / scale,
        exact: interval.exact,
    })
}

fn exact_shift_interval(xs: &[f64], ys: &[f64], alpha: f64) -> Option<ShiftInterval> {
    let (m, n) = (xs.len(), ys.len());
    let mut diffs: Vec<f64> = xs
        .iter()
        .flat_map(|a| ys.iter().map(move |b| a - b))
        .collect();
    diffs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    let pairs = diffs.len();
    // R: qu <- qwilcox(alpha/2, m, n); if (qu == 0) qu <- 1; ql <- m*n - qu;
    // interval = c(diffs[qu], diffs[ql + 1]) with R's indices starting at 1.
    let qu = wilcoxon_quantile(alpha / 2.0, m, n).max(1).min(pairs);
    let ql = pairs - qu;
    Some(ShiftInterval {
        estimate: median_of_sorted(&diffs)?,
        lower: *diffs.get(qu - 1)?,
        upper: *diffs.get(ql)?,
        exact: true,
    })
}

fn asymptotic_shift_interval(xs: &[f64], ys: &[f64], alpha: f64) -> Option<ShiftInterval> {
    let (x_min, x_max) = (*xs.first()?, *xs.last()?);
    let (y_min, y_max) = (*ys.first()?, *ys.last()?);
    let (mu_min, mu_max) = (x_min - y_max, x_max - y_min);
    if mu_min >= mu_max {
        // Every difference x_i - y_j is the same number.
        return Some(ShiftInterval {
            estimate: mu_min,
            lower: mu_min,
            upper: mu_min,
            exact: false,
        });
    }
    let zq = normal_quantile(1.0 - alpha / 2.0);
    Some(ShiftInterval {
        estimate: invert_rank_test(xs, ys, mu_min, mu_max, 0.0)?,
        lower: invert_rank_test(xs, ys, mu_min, mu_max, zq)?,
        upper: invert_rank_test(xs, ys, mu_min, mu_max, -zq)?,
        exact: false,
    })
}

/// The standardized rank-sum statistic of x - d against y with the continuity correction
/// (R's wdiff in wilcox.test, before the quantile is subtracted). None when all values tie.
fn shifted_z(xs: &[f64], ys: &[f64], d: f64) -> Option<f64> {
    let moved: Vec<f64> = xs.iter().map(|v| v - d).collect();
    let ranks = rank_sums(&moved, ys);
    let (m, n) = (xs.len() as f64, ys.len() as f64);
    let dz = ranks.first - m * (m + 1.0) / 2.0 - m * n / 2.0;
    let correction = if dz > 0.0 {
        0.5
    } else if dz < 0.0 {
        -0.5
    } else {
        0.0
    };
    let spread = (m + n + 1.0) - ranks.tie_term / ((m + n) * (m + n - 1.0));
    let sigma = (m * n / 12.0 * spread).max(0.0).sqrt();
    if sigma <= 0.0 || !sigma.is_finite() {
        return None;
    }
    Some((dz - correction) / sigma)
}

/// The shift d in [lo, hi] where the statistic of x - d crosses zq (it falls as d grows); the
/// nearer end when it does not cross, as R's wilcox.test does. Bisection: the statistic is a
/// step function of d.
fn invert_rank_test(xs: &[f64], ys: &[f64], lo: f64, hi: f64, zq: f64) -> Option<f64> {
    let f = |d: f64| shifted_z(xs, ys, d).map(|z| z - zq);
    if f(lo)? <= 0.0 {
        return Some(lo);
    }
    if f(hi)? >= 0.0 {
        return Some(hi);
    }
    // Twelve digits of the data's range are plenty (R stops at an absolute 1e-4); the count
    // bounds the loop whatever the doubles do.
    let resolution = (hi - lo) * 1e-12;
    let (mut lo, mut hi) = (lo, hi);
    for _ in 0..100 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi || hi - lo <= resolution {
            break;
        }
        let value = f(mid)?;
        if value > 0.0 {
            lo = mid;
        } else if value < 0.0 {
            hi = mid;
        } else {
            return Some(mid);
        }
    }
    Some(lo + (hi - lo) / 2.0)
}

fn median_of_sorted(s: &[f64]) -> Option<f64> {
    let n = s.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    if n % 2 == 1 {
        s.get(mid).copied()
    } else {
        // Halve before adding: two values near the largest double do not overflow.
        Some(s.get(mid - 1)? / 2.0 + s.get(mid)? / 2.0)
    }
}

/// The median of finite values; None when there are none.
fn median(v: &[f64]) -> Option<f64> {
    median_of_sorted(&sorted(v))
}

/// Which change of the canary against the stable is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Only a higher canary is bad (latency, errors).
    Increase,
    /// Only a lower canary is bad (throughput, success rate).
    Decrease,
    /// Both are bad (Kayenta's default).
    Either,
}

/// How `classify` judges one metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompareParams {
    /// Which change is bad.
    pub direction: Direction,
    /// The confidence level of the shift's interval (Kayenta: 0.98).
    pub confidence: f64,
    /// The change allowed, as a fraction of the stable median's size (0.25: a quarter).
    pub tolerance: f64,
    /// The fewest values (after NaN and infinite ones are removed) each side needs to be
    /// judged at all. Values below 3 count as 3: with one value a side the "interval" is a
    /// single difference, and any difference at all would be High or Low.
    pub min_samples: usize,
}

impl Default for CompareParams {
    /// Kayenta's NetflixACAJudge: direction "either" (what a metric without `direction` gets,
    /// NetflixACAJudge.scala and BaseMetricClassifier.scala), confidence 0.98 and tolerance
    /// 0.25 (both fixed in NetflixACAJudge.scala; Kayenta measures the tolerance against
    /// another quantity, see `classify`). Kayenta judges any non-empty sample; the minimum of
    /// 10 values is Sluice's.
    fn default() -> Self {
        CompareParams {
            direction: Direction::Either,
            confidence: 0.98,
            tolerance: 0.25,
            min_samples: 10,
        }
    }
}

/// How one metric of the canary compares with the stable's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// No bad change beyond the tolerance.
    Pass,
    /// The canary is higher than the tolerance allows, and higher is bad.
    High,
    /// The canary is lower than the tolerance allows, and lower is bad.
    Low,
    /// One side had fewer values than `min_samples` (at least 3), or the shift's interval
    /// could not be computed: not judged (Kayenta's Nodata), never passed.
    TooFewSamples,
}

/// The judgement of one metric, with the figures behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Values of the canary judged (NaN and infinite ones removed).
    pub canary_n: usize,
    /// Values of the stable judged (NaN and infinite ones removed).
    pub stable_n: usize,
    pub canary_median: Option<f64>,
    pub stable_median: Option<f64>,
    /// The Mann-Whitney U test's p-value for the direction judged: one-sided "canary greater"
    /// for Increase, "canary less" for Decrease, two-sided for Either. Reported only; the
    /// classification rests on the confidence interval.
    pub p_value: Option<f64>,
    /// The relative shift: the Hodges-Lehmann shift (canary minus stable) divided by the
    /// stable median's size; 0.3 means the canary runs about 30% higher. None when the stable
    /// median is 0 or the metric was not judged.
    pub effect_size: Option<f64>,
    pub classification: Classification,
    /// One line for a person: why this classification, with the figures.
    pub reason: String,
}

/// Judges one metric: is the canary's sample worse than the stable's by more than the
/// tolerance?
///
/// NaN and infinite values are removed first (Kayenta's default NaN strategy, "remove"); with
/// fewer than `min_samples` left on either side the metric is TooFewSamples, never High or Low.
/// Otherwise the shift canary minus stable is estimated (Hodges-Lehmann) with a confidence
/// interval at `confidence` (see `shift_interval`), and the metric is
/// - High when the whole interval lies above tolerance x |stable median| and the direction
///   counts an increase as bad;
/// - Low when the whole interval lies below minus that and the direction counts a decrease as
///   bad;
/// - Pass otherwise.
///
/// When the stable median is 0 (normal for error ratios) the tolerance band is 0 too: any
/// change the interval shows in the bad direction counts, and the reason says so. When the
/// interval cannot be computed the metric is TooFewSamples, not Pass.
///
/// So a metric fails only when the data show, with the given confidence, a change bigger than
/// the tolerance. Kayenta's MannWhitneyClassifier uses the same interval but sets its band at
/// 25% of the estimated shift itself, not of the stable's level, and leaves the size of the
/// change to separate effect-size limits on the ratio of means (allowedIncrease and
/// allowedDecrease, 1.0 by default, which is to say none): there, any change the test finds
/// significant fails, 5% as much as 50%. Here the tolerance is that limit.
///
/// Parameters out of range are replaced, and the reason says so: a confidence not strictly
/// between 0 and 1 by 0.98; a tolerance that is NaN or negative by 0.25 or 0. A `min_samples`
/// below 3 counts as 3.
pub fn classify(canary: &[f64], stable: &[f64], p: &CompareParams) -> Comparison {
    let total = canary.len() + stable.len();
    let canary = finite_values(canary);
    let stable = finite_values(stable);
    let removed = total - canary.len() - stable.len();
    let mut comparison = Comparison {
        canary_n: canary.len(),
        stable_n: stable.len(),
        canary_median: median(&canary),
        stable_median: median(&stable),
        p_value: None,
        effect_size: None,
        classification: Classification::TooFewSamples,
        reason: String::new(),
    };
    let needed = p.min_samples.max(MIN_SAMPLES_FLOOR);
    if canary.len() < needed || stable.len() < needed {
        comparison.reason = too_few_reason(canary.len(), stable.len(), needed, removed);
        return comparison;
    }
    let (params, notes) = sanitize(p);
    let alternative = alternative_for(params.direction);
    comparison.p_value = mann_whitney_u(&canary, &stable, alternative).map(|t| t.p_value);
    let shift = shift_interval(&canary, &stable, params.confidence);
    let context = ReasonContext {
        alternative,
        removed,
        notes,
    };
    judge_shift(comparison, shift, &params, &context)
}

/// The fewest values per side `classify` judges, whatever `min_samples` says: with fewer, the
/// exact interval is a single pairwise difference (one value a side) or the whole range of
/// them, and a High or Low would rest on almost nothing.
const MIN_SAMPLES_FLOOR: usize = 3;

/// The finite values of a sample, in order.
fn finite_values(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|v| v.is_finite()).collect()
}

/// The reason for a metric with too few values on a side.
fn too_few_reason(canary_n: usize, stable_n: usize, needed: usize, removed: usize) -> String {
    let removed_text = if removed > 0 {
        format!(" ({removed} NaN or infinite values removed)")
    } else {
        String::new()
    };
    format!(
        "too few values to judge: canary {canary_n}, stable {stable_n}, at least {needed} \
         needed on each side{removed_text}"
    )
}

/// The Mann-Whitney alternative that matches the direction judged.
fn alternative_for(direction: Direction) -> Alternative {
    match direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    }
}

/// What the reason of a judged metric tells besides the shift.
struct ReasonContext {
    /// The alternative of the Mann-Whitney test reported.
    alternative: Alternative,
    /// How many NaN or infinite values were removed.
    removed: usize,
    /// The notes of `sanitize` on replaced parameters.
    notes: String,
}

/// Classifies a metric with enough values from the shift's interval (None when it could not
/// be computed: the metric is then not judged, never passed), and writes the reason.
fn judge_shift(
    mut comparison: Comparison,
    shift: Option<ShiftInterval>,
    params: &CompareParams,
    context: &ReasonContext,
) -> Comparison {
    let (Some(canary_median), Some(stable_median)) =
        (comparison.canary_median, comparison.stable_median)
    else {
        // Unreachable: both sides have at least one finite value here.
        comparison.classification = Classification::TooFewSamples;
        comparison.reason = "not judged: no values to compare".into();
        return comparison;
    };
    let Some(shift) = shift else {
        comparison.classification = Classification::TooFewSamples;
        comparison.reason = format!(
            "not judged: the shift's {}% confidence interval could not be computed from these \
             values (canary {}, stable {}), so nothing shows the canary is as good{}",
            fmt_num(params.confidence * 100.0),
            comparison.canary_n,
            comparison.stable_n,
            context.notes
        );
        return comparison;
    };
    let level = stable_median.abs();
    let margin = params.tolerance * level;
    comparison.effect_size = relative_to(shift.estimate, level);
    let (classification, verdict) = verdict_for(
        shift.lower > margin,
        shift.upper < -margin,
        params.direction,
    );
    comparison.classification = classification;
    let shift_text = describe_shift(&shift, level, params);
    let p_text = describe_p(comparison.p_value, context.alternative);
    let removed_text = if context.removed > 0 {
        format!(" ({} NaN or infinite removed)", context.removed)
    } else {
        String::new()
    };
    comparison.reason = format!(
        "{verdict}: {shift_text}; medians canary {}, stable {}; values canary {}, stable \
         {}{removed_text}{p_text}{}",
        fmt_num(canary_median),
        fmt_num(stable_median),
        comparison.canary_n,
        comparison.stable_n,
        context.notes,
    );
    comparison
}

/// v as a fraction of the stable's level; None when the level is 0.
fn relative_to(v: f64, level: f64) -> Option<f64> {
    if level > 0.0 { Some(v / level) } else { None }
}

/// The classification and its verdict, from whether the shift's interval lies wholly above
/// or wholly below the tolerance band.
fn verdict_for(above: bool, below: bool, direction: Direction) -> (Classification, &'static str) {
    let increase_bad = matches!(direction, Direction::Increase | Direction::Either);
    let decrease_bad = matches!(direction, Direction::Decrease | Direction::Either);
    if above && increase_bad {
        (
            Classification::High,
            "canary higher than the tolerance allows",
        )
    } else if below && decrease_bad {
        (
            Classification::Low,
            "canary lower than the tolerance allows",
        )
    } else if above {
        (
            Classification::Pass,
            "canary higher beyond the tolerance, but only a decrease is bad",
        )
    } else if below {
        (
            Classification::Pass,
            "canary lower beyond the tolerance, but only an increase is bad",
        )
    } else {
        (Classification::Pass, "no change beyond the tolerance")
    }
}

/// The shift, its interval and the tolerance, relative to the stable's level when it is not 0.
/// When it is 0 the tolerance band is empty, and the text says that any significant change
/// in the bad direction counts.
fn describe_shift(shift: &ShiftInterval, level: f64, params: &CompareParams) -> String {
    let confidence_pct = fmt_num(params.confidence * 100.0);
    match (
        relative_to(shift.estimate, level),
        relative_to(shift.lower, level),
        relative_to(shift.upper, level),
    ) {
        (Some(e), Some(l), Some(u)) => format!(
            "shift {} of the stable median ({confidence_pct}% interval {} to {}), tolerance \
             ±{}",
            fmt_pct(e),
            fmt_pct(l),
            fmt_pct(u),
            fmt_pct_abs(params.tolerance)
        ),
        _ => {
            let change = match params.direction {
                Direction::Increase => "increase",
                Direction::Decrease => "decrease",
                Direction::Either => "change",
            };
            format!(
                "shift {} ({confidence_pct}% interval {} to {}), tolerance ±0 as the stable \
                 median is 0, so any significant {change} counts",
                fmt_signed(shift.estimate),
                fmt_signed(shift.lower),
                fmt_signed(shift.upper)
            )
        }
    }
}

/// The Mann-Whitney p-value and its alternative, as "; Mann-Whitney p = ..." or nothing.
fn describe_p(p_value: Option<f64>, alternative: Alternative) -> String {
    match p_value {
        Some(pv) => format!(
            "; Mann-Whitney p = {} ({})",
            fmt_p(pv),
            match alternative {
                Alternative::Greater => "canary greater",
                Alternative::Less => "canary less",
                Alternative::TwoSided => "two-sided",
            }
        ),
        None => String::new(),
    }
}

/// The parameters `classify` uses, with out-of-range ones replaced, and a note saying which.
fn sanitize(p: &CompareParams) -> (CompareParams, String) {
    let defaults = CompareParams::default();
    let mut used = *p;
    let mut notes = String::new();
    if !(p.confidence > 0.0 && p.confidence < 1.0) {
        used.confidence = defaults.confidence;
        notes.push_str(&format!(
            "; confidence {} is not between 0 and 1, used {}",
            p.confidence, defaults.confidence
        ));
    }
    if p.tolerance.is_nan() {
        used.tolerance = defaults.tolerance;
        notes.push_str(&format!(
            "; tolerance is not a number, used {}",
            defaults.tolerance
        ));
    } else if p.tolerance < 0.0 {
        used.tolerance = 0.0;
        notes.push_str(&format!("; tolerance {} is negative, used 0", p.tolerance));
    }
    (used, notes)
}

/// A number with four significant digits, without trailing zeros.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor();
    if !(-3.0..9.0).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A number with its sign: "+3.2", "-0.5", "0".
fn fmt_signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", fmt_num(v))
    } else {
        fmt_num(v)
    }
}

/// A fraction as a signed percentage with one decimal: 0.302 -> "+30.2%".
fn fmt_pct(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    format!("{:+.1}%", v * 100.0)
}

/// A fraction as a percentage without sign: 0.25 -> "25%".
fn fmt_pct_abs(v: f64) -> String {
    format!("{}%", fmt_num(v * 100.0))
}

/// A p-value: four decimals, or scientific notation below 0.001.
fn fmt_p(p: f64) -> String {
    if p >= 0.001 || p == 0.0 {
        fmt_num(p)
    } else {
        format!("{p:.2e}")
    }
}

/// One metric's classification with how it counts in the score.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub name: String,
    /// The metric's weight; weights that are not positive numbers count as 0.
    pub weight: f64,
    /// A critical metric that is High or Low fails the whole comparison.
    pub critical: bool,
    pub classification: Classification,
}

/// The verdict on the canary as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreVerdict {
    Pass,
    Marginal,
    Fail,
    /// Nothing could be judged: no metric had enough values, or a critical one had too few.
    Inconclusive,
}

/// The canary's score and verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// 0..=100, rounded to two decimals as Kayenta does; None when no metric was judged.
    pub score: Option<f64>,
    pub verdict: ScoreVerdict,
    /// One line for a person: how the score came about.
    pub reason: String,
}

/// The default score a canary needs to pass (Kayenta's usual pass threshold).
pub const DEFAULT_PASS_SCORE: f64 = 95.0;
/// The default score below which a canary fails (Kayenta's usual marginal threshold).
pub const DEFAULT_MARGINAL_SCORE: f64 = 75.0;

/// Weighs the metrics' classifications into a score, as Kayenta's WeightedSumScorer does.
///
/// Metrics with too few values are left out (Kayenta's Nodata). The score is 100 times the
/// weight of the passing metrics over the weight of the metrics counted, rounded to two
/// decimals. A critical metric classified High or Low fails the canary with score 0. Then a
/// score of at least `pass` passes, at least `marginal` is marginal, anything lower fails
/// (both comparisons inclusive, as in Kayenta). With nothing counted the verdict is
/// Inconclusive.
///
/// Differences from Kayenta: Kayenta weighs groups of metrics (each metric counting equally in
/// its group), here each metric carries its own weight. Kayenta fails the canary when half the
/// metrics or more have no data, and when a critical metric has none; here the metrics left
/// are scored, and a critical metric with too few values makes the verdict Inconclusive (a
/// person decides) rather than Fail, unless another critical metric failed.
pub fn score(metrics: &[Scored], pass: f64, marginal: f64) -> Score {
    let tally = tally(metrics);
    let detail = tally.describe();
    let critical_failures = critical_names(metrics, |c| {
        matches!(c, Classification::High | Classification::Low)
    });
    if !critical_failures.is_empty() {
        let others = tally.weighted.map_or("none".to_string(), fmt_num);
        return Score {
            score: Some(0.0),
            verdict: ScoreVerdict::Fail,
            reason: format!(
                "score 0: critical metric {} failed (weighted score otherwise {others}); {detail}",
                critical_failures.join(", ")
            ),
        };
    }
    let Some(value) = tally.weighted else {
        let why = if tally.judged == 0 {
            "no metric had enough values to judge"
        } else {
            "the metrics judged weigh nothing"
        };
        return Score {
            score: None,
            verdict: ScoreVerdict::Inconclusive,
            reason: format!("inconclusive: {why}; {detail}"),
        };
    };
    let critical_unjudged = critical_names(metrics, |c| c == Classification::TooFewSamples);
    if !critical_unjudged.is_empty() {
        return Score {
            score: Some(value),
            verdict: ScoreVerdict::Inconclusive,
            reason: format!(
                "inconclusive: critical metric {} had too few values to judge (score of the \
                 others {}); {detail}",
                critical_unjudged.join(", "),
                fmt_num(value)
            ),
        };
    }
    graded(value, pass, marginal, &detail)
}

/// The weight a metric counts with: its own when a positive number, else 0.
fn weight_of(m: &Scored) -> f64 {
    if m.weight.is_finite() && m.weight > 0.0 {
        m.weight
    } else {
        0.0
    }
}

/// The names of the critical metrics whose classification matches.
fn critical_names(metrics: &[Scored], matching: impl Fn(Classification) -> bool) -> Vec<&str> {
    metrics
        .iter()
        .filter(|m| m.critical && matching(m.classification))
        .map(|m| m.name.as_str())
        .collect()
}

/// The metrics counted up for the score.
struct Tally<'a> {
    /// How many metrics were judged (had enough values).
    judged: usize,
    /// The names of the metrics with too few values.
    unjudged: Vec<&'a str>,
    /// The judged metrics not passing, as "name (High)".
    failing: Vec<String>,
    /// The weight of the judged metrics.
    counted_weight: f64,
    /// The weight of the passing metrics.
    passing_weight: f64,
    /// The weighted score, None when the judged metrics weigh nothing.
    weighted: Option<f64>,
}

fn tally(metrics: &[Scored]) -> Tally<'_> {
    let judged: Vec<&Scored> = metrics
        .iter()
        .filter(|m| m.classification != Classification::TooFewSamples)
        .collect();
    let counted_weight: f64 = judged.iter().map(|m| weight_of(m)).sum();
    let passing_weight: f64 = judged
        .iter()
        .filter(|m| m.classification == Classification::Pass)
        .map(|m| weight_of(m))
        .sum();
    let weighted = if counted_weight > 0.0 && counted_weight.is_finite() {
        Some(round2(100.0 * passing_weight / counted_weight))
    } else {
        None
    };
    Tally {
        judged: judged.len(),
        unjudged: metrics
            .iter()
            .filter(|m| m.classification == Classification::TooFewSamples)
            .map(|m| m.name.as_str())
            .collect(),
        failing: judged
            .iter()
            .filter(|m| m.classification != Classification::Pass)
            .map(|m| format!("{} ({:?})", m.name, m.classification))
            .collect(),
        counted_weight,
        passing_weight,
        weighted,
    }
}

impl Tally<'_> {
    /// How the metrics counted: passed, not passing, left out.
    fn describe(&self) -> String {
        let passed_count = self.judged - self.failing.len();
        let mut detail = format!(
            "{passed_count} of {} metrics judged passed (weight {} of {})",
            self.judged,
            fmt_num(self.passing_weight),
            fmt_num(self.counted_weight)
        );
        if !self.failing.is_empty() {
            detail.push_str(&format!("; not passing: {}", self.failing.join(", ")));
        }
        if !self.unjudged.is_empty() {
            detail.push_str(&format!(
                "; left out for too few values: {}",
                self.unjudged.join(", ")
            ));
        }
        detail
    }
}

/// The verdict of a score against the pass and marginal thresholds (both inclusive).
fn graded(value: f64, pass: f64, marginal: f64, detail: &str) -> Score {
    let (verdict, word) = if value >= pass {
        (ScoreVerdict::Pass, "pass")
    } else if value >= marginal {
        (ScoreVerdict::Marginal, "marginal")
    } else {
        (ScoreVerdict::Fail, "fail")
    };
    Score {
        score: Some(value),
        verdict,
        reason: format!(
            "score {} ({word}: pass at {}, marginal at {}); {detail}",
            fmt_num(value),
            fmt_num(pass),
            fmt_num(marginal)
        ),
    }
}

/// Rounds to two decimals, as Kayenta rounds its summary score. A negative zero (an empty sum
/// of f64 is -0.0, so nothing passing gives 100 * -0.0 / w) comes back as +0.0.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0 + 0.0
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
