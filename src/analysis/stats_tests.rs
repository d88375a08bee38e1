use super::*;

// ---------------------------------------------------------------------------------------------
// Mann-Whitney U against scipy
// ---------------------------------------------------------------------------------------------

/// ((a*i + c) mod m) / scale + offset for i in 0..n: the same arithmetic as `formula` in
/// tests/stats/mannwhitneyu_reference.py, so both produce the same doubles.
fn formula(n: u64, a: u64, c: u64, m: u64, scale: f64, offset: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((a * i + c) % m) as f64 / scale + offset)
        .collect()
}

/// The sample pairs of tests/stats/mannwhitneyu_reference.py, by case name.
fn reference_samples(name: &str) -> (Vec<f64>, Vec<f64>) {
    match name {
        "n1_vs_n1" => (vec![1.0], vec![2.0]),
        "n1_vs_n2" => (vec![3.0], vec![1.0, 2.0]),
        "n2_vs_n3" => (vec![1.5, 4.0], vec![2.0, 3.0, 5.0]),
        "n3_vs_n3_separated" => (vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]),
        "exact_5_vs_7" => (
            vec![1.1, 2.3, 0.7, 5.2, 3.3],
            vec![4.4, 6.1, 2.9, 7.7, 5.5, 3.8, 6.6],
        ),
        "exact_7_vs_7" => (
            vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.25],
        ),
        "exact_8_vs_8" => (
            vec![8.1, 7.3, 9.9, 6.4, 8.8, 7.7, 9.2, 10.5],
            vec![5.2, 6.1, 7.0, 5.9, 6.6, 4.8, 7.4, 6.9],
        ),
        "exact_4_vs_30" => (
            vec![2.05, 3.15, 9.95, 0.35],
            formula(30, 7, 3, 31, 3.0, 0.0),
        ),
        "asymptotic_9_vs_9" => (
            vec![1.2, 3.4, 5.6, 7.8, 9.1, 2.3, 4.5, 6.7, 8.9],
            vec![0.1, 2.2, 4.4, 6.6, 8.8, 1.05, 3.3, 5.5, 7.7],
        ),
        "ties_4_vs_5" => (vec![1.0, 2.0, 2.0, 3.0], vec![2.0, 3.0, 3.0, 4.0, 5.0]),
        "ties_counts" => {
            let mut x = vec![0.0; 20];
            x.extend([1.0, 2.0]);
            (x, vec![0.0; 22])
        }
        "all_equal_3_vs_2" => (vec![5.0; 3], vec![5.0; 2]),
        "all_equal_12_vs_15" => (vec![0.25; 12], vec![0.25; 15]),
        "large_50_vs_50_shift" => (
            formula(50, 17, 5, 97, 10.0, 1.0),
            formula(50, 23, 11, 89, 10.0, 0.0),
        ),
        "large_50_vs_45_ties" => (
            formula(50, 13, 2, 20, 2.0, 0.0),
            formula(45, 7, 1, 18, 2.0, 0.0),
        ),
        other => panic!("no samples for case {other}"),
    }
}

/// A case name and, for each alternative, scipy's U of x and p-value.
type ReferenceCase = (&'static str, [(Alternative, f64, f64); 3]);

/// scipy.stats.mannwhitneyu(x, y, alternative=..., method='auto', use_continuity=True):
/// (case, [(alternative, U of x, p-value)]), printed by tests/stats/mannwhitneyu_reference.py
/// with scipy 1.17.1.
#[rustfmt::skip]
const SCIPY_1_17_1: &[ReferenceCase] = &[
    ("n1_vs_n1", [
        (Alternative::TwoSided, 0.0, 1.0),
        (Alternative::Less, 0.0, 0.5),
        (Alternative::Greater, 0.0, 1.0),
    ]),
    ("n1_vs_n2", [
        (Alternative::TwoSided, 2.0, 0.6666666666666666),
        (Alternative::Less, 2.0, 1.0),
        (Alternative::Greater, 2.0, 0.3333333333333333),
    ]),
    ("n2_vs_n3", [
        (Alternative::TwoSided, 2.0, 0.8),
        (Alternative::Less, 2.0, 0.4),
        (Alternative::Greater, 2.0, 0.8),
    ]),
    ("n3_vs_n3_separated", [
        (Alternative::TwoSided, 0.0, 0.1),
        (Alternative::Less, 0.0, 0.05),
        (Alternative::Greater, 0.0, 1.0),
    ]),
    ("exact_5_vs_7", [
        (Alternative::TwoSided, 4.0, 0.030303030303030304),
        (Alternative::Less, 4.0, 0.015151515151515152),
        (Alternative::Greater, 4.0, 0.9911616161616161),
    ]),
    ("exact_7_vs_7", [
        (Alternative::TwoSided, 21.0, 0.7103729603729605),
        (Alternative::Less, 21.0, 0.35518648018648025),
        (Alternative::Greater, 21.0, 0.6899766899766899),
    ]),
    ("exact_8_vs_8", [
        (Alternative::TwoSided, 59.0, 0.0029526029526029526),
        (Alternative::Less, 59.0, 0.999067599067599),
        (Alternative::Greater, 59.0, 0.0014763014763014763),
    ]),
    ("exact_4_vs_30", [
        (Alternative::TwoSided, 48.0, 0.5529153010177678),
        (Alternative::Less, 48.0, 0.2764576505088839),
        (Alternative::Greater, 48.0, 0.7407063998619977),
    ]),
    ("asymptotic_9_vs_9", [
        (Alternative::TwoSided, 53.0, 0.28931483238198774),
        (Alternative::Less, 53.0, 0.8745008647785387),
        (Alternative::Greater, 53.0, 0.14465741619099387),
    ]),
    ("ties_4_vs_5", [
        (Alternative::TwoSided, 3.0, 0.09934224785346528),
        (Alternative::Less, 3.0, 0.04967112392673264),
        (Alternative::Greater, 3.0, 0.9713880745611612),
    ]),
    ("ties_counts", [
        (Alternative::TwoSided, 264.0, 0.16209787559975086),
        (Alternative::Less, 264.0, 0.9282767352356619),
        (Alternative::Greater, 264.0, 0.08104893779987543),
    ]),
    ("all_equal_3_vs_2", [
        (Alternative::TwoSided, 3.0, 1.0),
        (Alternative::Less, 3.0, 1.0),
        (Alternative::Greater, 3.0, 1.0),
    ]),
    ("all_equal_12_vs_15", [
        (Alternative::TwoSided, 90.0, 1.0),
        (Alternative::Less, 90.0, 1.0),
        (Alternative::Greater, 90.0, 1.0),
    ]),
    ("large_50_vs_50_shift", [
        (Alternative::TwoSided, 1571.5, 0.0268919801553436),
        (Alternative::Less, 1571.5, 0.9867898192779218),
        (Alternative::Greater, 1571.5, 0.0134459900776718),
    ]),
    ("large_50_vs_45_ties", [
        (Alternative::TwoSided, 1244.0, 0.376442398036967),
        (Alternative::Less, 1244.0, 0.8137858898239034),
        (Alternative::Greater, 1244.0, 0.1882211990184835),
    ]),
];

fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1e-300);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:e}, scipy {expected:e}"
    );
}

#[test]
fn stats_mann_whitney_matches_scipy() {
    assert_eq!(SCIPY_1_17_1.len(), 15, "every case of the reference script");
    for (name, rows) in SCIPY_1_17_1 {
        let (x, y) = reference_samples(name);
        for (alternative, u, p) in rows {
            let test =
                mann_whitney_u(&x, &y, *alternative).unwrap_or_else(|| panic!("{name}: no result"));
            assert_close(test.u, *u, &format!("{name} {alternative:?} U"));
            assert_close(test.p_value, *p, &format!("{name} {alternative:?} p"));
        }
    }
}

#[test]
fn stats_mann_whitney_u_of_y_is_the_complement() {
    let (x, y) = reference_samples("exact_5_vs_7");
    let xy = mann_whitney_u(&x, &y, Alternative::Less).expect("result");
    let yx = mann_whitney_u(&y, &x, Alternative::Greater).expect("result");
    assert_eq!(xy.u + yx.u, 35.0);
    assert_close(
        yx.p_value,
        xy.p_value,
        "swapped samples, mirrored alternative",
    );
}

#[test]
fn stats_mann_whitney_refuses_empty_and_nan() {
    assert_eq!(mann_whitney_u(&[], &[1.0], Alternative::TwoSided), None);
    assert_eq!(mann_whitney_u(&[1.0], &[], Alternative::Less), None);
    assert_eq!(mann_whitney_u(&[], &[], Alternative::Greater), None);
    assert_eq!(
        mann_whitney_u(&[1.0, f64::NAN], &[2.0], Alternative::TwoSided),
        None
    );
}

#[test]
fn stats_mann_whitney_ranks_infinities() {
    let test = mann_whitney_u(
        &[f64::INFINITY, 5.0, f64::MAX],
        &[f64::NEG_INFINITY, 1.0, 2.0],
        Alternative::Greater,
    )
    .expect("result");
    assert_eq!(test.u, 9.0);
    // Exact: the one ordering out of C(6, 3) = 20 with every x above every y.
    assert_close(test.p_value, 0.05, "p");
}

#[test]
fn stats_mann_whitney_exact_with_one_large_sample() {
    // One value against a hundred thousand, no ties: the exact distribution puts U uniformly
    // on 0..=100000, so U = 99000 (99000 values below x) has P(U >= 99000) = 1001/100001.
    let y: Vec<f64> = (0..100_000).map(|i| i as f64).collect();
    let test = mann_whitney_u(&[98_999.5], &y, Alternative::Greater).expect("result");
    assert_eq!(test.u, 99_000.0);
    assert_close(test.p_value, 1_001.0 / 100_001.0, "p greater");
    // "Less" uses U2 = 1000: P(U >= 1000) = 99001/100001.
    let test = mann_whitney_u(&[98_999.5], &y, Alternative::Less).expect("result");
    assert_close(test.p_value, 99_001.0 / 100_001.0, "p less");
    let test = mann_whitney_u(&[98_999.5], &y, Alternative::TwoSided).expect("result");
    assert_close(test.p_value, 2.0 * 1_001.0 / 100_001.0, "p two-sided");
}

/// The number of orderings with U = u for samples of sizes m and n, by listing every choice of
/// the m positions the first sample takes among m + n.
fn brute_force_counts(m: usize, n: usize) -> Vec<f64> {
    let mut counts = vec![0.0; m * n + 1];
    for mask in 0u32..(1 << (m + n)) {
        if mask.count_ones() as usize != m {
            continue;
        }
        // U = for each first-sample position, the second-sample positions below it.
        let mut u = 0;
        let mut below = 0;
        for position in 0..m + n {
            if mask & (1 << position) != 0 {
                u += below;
            } else {
                below += 1;
            }
        }
        counts[u] += 1.0;
    }
    counts
}

#[test]
fn stats_exact_distribution_matches_brute_force() {
    for m in 1..=6 {
        for n in 1..=7 {
            let counts = brute_force_counts(m, n);
            let orderings: f64 = counts.iter().sum();
            let pmf = wilcoxon_pmf(m, n, m * n);
            assert_eq!(pmf.len(), m * n + 1);
            for (u, (p, c)) in pmf.iter().zip(&counts).enumerate() {
                assert!(
                    (p - c / orderings).abs() < 1e-14,
                    "m {m} n {n} u {u}: {p} against {}",
                    c / orderings
                );
            }
        }
    }
}

#[test]
fn stats_wilcoxon_quantile_is_the_first_reaching_p() {
    let (m, n) = (6, 7);
    let counts = brute_force_counts(m, n);
    let orderings: f64 = counts.iter().sum();
    for p in [0.005, 0.01, 0.025, 0.05, 0.25] {
        let q = wilcoxon_quantile(p, m, n);
        let below: f64 = counts[..q].iter().sum::<f64>() / orderings;
        let upto: f64 = counts[..=q].iter().sum::<f64>() / orderings;
        assert!(below < p && upto >= p, "p {p}: q {q}, {below} .. {upto}");
    }
}

#[test]
fn stats_normal_functions() {
    assert_close(normal_cdf(0.0), 0.5, "cdf 0");
    assert_close(normal_cdf(-1.959963984540054), 0.025, "cdf -1.96");
    assert_close(normal_cdf(-5.0), 2.866515718791939e-7, "cdf -5");
    assert_close(normal_cdf(3.0), 0.9986501019683699, "cdf 3");
    assert_close(normal_quantile(0.99), 2.3263478740408408, "quantile 0.99");
    assert_close(normal_quantile(0.025), -1.959963984540054, "quantile 0.025");
}

// ---------------------------------------------------------------------------------------------
// The shift's confidence interval
// ---------------------------------------------------------------------------------------------

/// A deterministic generator of normal noise (splitmix64 and Box-Muller), so every run of
/// these tests sees the same samples.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// n values around `center` with a standard deviation of `spread` times the center.
    fn sample(&mut self, n: usize, center: f64, spread: f64) -> Vec<f64> {
        (0..n)
            .map(|_| center * (1.0 + spread * self.normal()))
            .collect()
    }
}

#[test]
fn stats_shift_interval_exact_is_order_statistics_of_the_differences() {
    let x = [1.1, 2.3, 0.7, 5.2, 3.3];
    let y = [4.4, 6.1, 2.9, 7.7, 5.5, 3.8, 6.6];
    let interval = shift_interval(&x, &y, 0.9).expect("interval");
    assert!(interval.exact);
    let mut diffs: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    diffs.sort_by(f64::total_cmp);
    // 35 differences: the median is the 18th.
    assert_eq!(interval.estimate, diffs[17]);
    // qwilcox(0.05, 5, 7) from the brute-force counts; the interval is diffs[q] .. diffs[35 - q + 1]
    // counted from 1.
    let counts = brute_force_counts(5, 7);
    let total: f64 = counts.iter().sum();
    let mut cumulative = 0.0;
    let q = counts
        .iter()
        .position(|c| {
            cumulative += c / total;
            cumulative >= 0.05
        })
        .expect("quantile");
    assert_eq!(interval.lower, diffs[q - 1]);
    assert_eq!(interval.upper, diffs[35 - q]);
    assert!(interval.lower < interval.estimate && interval.estimate < interval.upper);
}

#[test]
fn stats_shift_interval_asymptotic_agrees_with_exact() {
    // No ties and under 50 values each: exact. The same samples with one tie added go through
    // the normal approximation; both intervals must nearly agree.
    let mut noise = Noise(7);
    let x = noise.sample(40, 110.0, 0.05);
    let y = noise.sample(40, 100.0, 0.05);
    let exact = shift_interval(&x, &y, 0.98).expect("exact");
    assert!(exact.exact);
    let mut x_tied = x.clone();
    x_tied.push(y[0]);
    let approximate = shift_interval(&x_tied, &y, 0.98).expect("approximate");
    assert!(!approximate.exact);
    let width = exact.upper - exact.lower;
    assert!(width > 0.0);
    for (a, e, what) in [
        (approximate.lower, exact.lower, "lower"),
        (approximate.upper, exact.upper, "upper"),
        (approximate.estimate, exact.estimate, "estimate"),
    ] {
        assert!((a - e).abs() < 0.1 * width, "{what}: {a} against {e}");
    }
}

#[test]
fn stats_shift_interval_finds_a_pure_shift() {
    let mut noise = Noise(11);
    let y = noise.sample(80, 100.0, 0.1);
    let x: Vec<f64> = y.iter().map(|v| v + 7.0).collect();
    let interval = shift_interval(&x, &y, 0.98).expect("interval");
    assert!(!interval.exact);
    assert!((interval.estimate - 7.0).abs() < 0.5, "{interval:?}");
    assert!(interval.lower < 7.0 && 7.0 < interval.upper, "{interval:?}");
    // The ends are where the rank-sum test of x - d sits on the 99% quantile.
    let z = normal_quantile(0.99);
    let (xs, ys) = (sorted(&x), sorted(&y));
    let step = 1e-6 * interval.upper.abs();
    let before = shifted_z(&xs, &ys, interval.lower - step).expect("z");
    let after = shifted_z(&xs, &ys, interval.lower + step).expect("z");
    assert!(before >= z && after <= z, "{before} {after} {z}");
}

#[test]
fn stats_shift_interval_edge_cases() {
    assert_eq!(shift_interval(&[], &[1.0], 0.98), None);
    assert_eq!(shift_interval(&[1.0], &[f64::NAN], 0.98), None);
    assert_eq!(shift_interval(&[1.0], &[f64::INFINITY], 0.98), None);
    assert_eq!(shift_interval(&[1.0], &[2.0], 1.0), None);
    assert_eq!(shift_interval(&[1.0], &[2.0], f64::NAN), None);
    // One value each: the only difference, with itself as the interval.
    let one = shift_interval(&[3.0], &[1.0], 0.98).expect("one value");
    assert_eq!((one.estimate, one.lower, one.upper), (2.0, 2.0, 2.0));
    // Constant samples: the difference is certain.
    let constant = shift_interval(&[5.0; 12], &[3.0; 20], 0.98).expect("constant");
    assert_eq!((constant.lower, constant.upper), (2.0, 2.0));
    // All values equal: no shift.
    let equal = shift_interval(&[4.0; 12], &[4.0; 20], 0.98).expect("equal");
    assert_eq!((equal.estimate, equal.lower, equal.upper), (0.0, 0.0, 0.0));
    // Near the largest double the differences would overflow without scaling.
    let big = shift_interval(&[f64::MAX, f64::MAX / 2.0], &[-f64::MAX, 0.0], 0.98).expect("big");
    assert!(
        big.lower > 0.0 && !big.lower.is_nan() && !big.upper.is_nan(),
        "{big:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// classify
// ---------------------------------------------------------------------------------------------

fn params(direction: Direction) -> CompareParams {
    CompareParams {
        direction,
        ..CompareParams::default()
    }
}

#[test]
fn stats_defaults_are_kayentas() {
    let d = CompareParams::default();
    assert_eq!(d.direction, Direction::Either);
    assert_eq!(d.confidence, 0.98);
    assert_eq!(d.tolerance, 0.25);
    assert_eq!(d.min_samples, 10);
    assert_eq!((DEFAULT_PASS_SCORE, DEFAULT_MARGINAL_SCORE), (95.0, 75.0));
}

#[test]
fn stats_classify_thirty_percent_higher_is_high() {
    let mut noise = Noise(1);
    let stable = noise.sample(24, 100.0, 0.02);
    let canary = noise.sample(24, 130.0, 0.02);
    for direction in [Direction::Increase, Direction::Either] {
        let c = classify(&canary, &stable, &params(direction));
        assert_eq!(
            c.classification,
            Classification::High,
            "{direction:?}: {}",
            c.reason
        );
        let effect = c.effect_size.expect("effect size");
        assert!((effect - 0.3).abs() < 0.03, "effect {effect}");
        assert!(c.p_value.expect("p") < 1e-6);
    }
    let c = classify(&canary, &stable, &params(Direction::Decrease));
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
    assert!(c.reason.contains("only a decrease is bad"), "{}", c.reason);
    // One-sided "canary less" against a higher canary: no evidence at all.
    assert!(c.p_value.expect("p") > 0.99);
}

#[test]
fn stats_classify_ten_percent_higher_is_within_tolerance() {
    let mut noise = Noise(2);
    let stable = noise.sample(24, 100.0, 0.02);
    let canary = noise.sample(24, 110.0, 0.02);
    let c = classify(&canary, &stable, &params(Direction::Increase));
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
    // The change is real (the test sees it) but smaller than the 25% allowed.
    assert!(c.p_value.expect("p") < 1e-6);
    let effect = c.effect_size.expect("effect size");
    assert!((effect - 0.1).abs() < 0.03, "effect {effect}");
    // With a tolerance of 5% the same change is High.
    let strict = CompareParams {
        tolerance: 0.05,
        ..params(Direction::Increase)
    };
    assert_eq!(
        classify(&canary, &stable, &strict).classification,
        Classification::High
    );
}

#[test]
fn stats_classify_lower_canary() {
    let mut noise = Noise(3);
    let stable = noise.sample(30, 200.0, 0.03);
    let canary = noise.sample(30, 120.0, 0.03);
    let low = classify(&canary, &stable, &params(Direction::Decrease));
    assert_eq!(low.classification, Classification::Low, "{}", low.reason);
    assert!(low.effect_size.expect("effect") < -0.3);
    let either = classify(&canary, &stable, &params(Direction::Either));
    assert_eq!(either.classification, Classification::Low);
    let increase = classify(&canary, &stable, &params(Direction::Increase));
    assert_eq!(increase.classification, Classification::Pass);
    assert!(
        increase.reason.contains("only an increase is bad"),
        "{}",
        increase.reason
    );
}

#[test]
fn stats_classify_identical_distributions_pass() {
    let mut flagged = 0;
    for seed in 0..200 {
        let mut noise = Noise(1000 + seed);
        let stable = noise.sample(30, 100.0, 0.1);
        let canary = noise.sample(30, 100.0, 0.1);
        let c = classify(&canary, &stable, &CompareParams::default());
        if c.classification != Classification::Pass {
            flagged += 1;
        }
    }
    assert_eq!(
        flagged, 0,
        "identical distributions flagged {flagged} times in 200"
    );
    // The same values on both sides.
    let mut noise = Noise(5);
    let same = noise.sample(20, 50.0, 0.2);
    let c = classify(&same, &same, &CompareParams::default());
    assert_eq!(c.classification, Classification::Pass);
    assert_eq!(c.effect_size, Some(0.0));
    assert_close(c.p_value.expect("p"), 1.0, "p of identical samples");
}

#[test]
fn stats_classify_identical_distributions_around_zero_rarely_fail() {
    // With a stable median near 0 the tolerance band is nearly empty, so only the confidence
    // level protects: about 2% of identical pairs may fail, not more.
    let mut flagged = 0;
    for seed in 0..300 {
        let mut noise = Noise(5000 + seed);
        let stable: Vec<f64> = (0..30).map(|_| noise.normal()).collect();
        let canary: Vec<f64> = (0..30).map(|_| noise.normal()).collect();
        if classify(&canary, &stable, &CompareParams::default()).classification
            != Classification::Pass
        {
            flagged += 1;
        }
    }
    assert!(flagged <= 15, "flagged {flagged} of 300");
}

#[test]
fn stats_classify_removes_nan_and_infinite_values() {
    let mut noise = Noise(4);
    let stable = noise.sample(20, 100.0, 0.02);
    let canary = noise.sample(20, 130.0, 0.02);
    let mut dirty = canary.clone();
    dirty.insert(3, f64::NAN);
    dirty.push(f64::INFINITY);
    dirty.insert(0, f64::NEG_INFINITY);
    let mut dirty_stable = stable.clone();
    dirty_stable.push(f64::NAN);
    let clean = classify(&canary, &stable, &CompareParams::default());
    let c = classify(&dirty, &dirty_stable, &CompareParams::default());
    assert_eq!((c.canary_n, c.stable_n), (20, 20));
    assert_eq!(c.classification, Classification::High);
    assert_eq!(c.p_value, clean.p_value);
    assert_eq!(c.effect_size, clean.effect_size);
    assert_eq!(c.canary_median, clean.canary_median);
    assert!(
        c.reason.contains("4 NaN or infinite removed"),
        "{}",
        c.reason
    );
}

#[test]
fn stats_classify_too_few_samples() {
    let mut noise = Noise(6);
    let stable = noise.sample(20, 100.0, 0.02);
    let canary = noise.sample(9, 300.0, 0.02);
    let c = classify(&canary, &stable, &CompareParams::default());
    assert_eq!(c.classification, Classification::TooFewSamples);
    assert_eq!((c.canary_n, c.stable_n), (9, 20));
    assert_eq!((c.p_value, c.effect_size), (None, None));
    assert!(c.canary_median.is_some());
    assert!(
        c.reason.contains("canary 9, stable 20, at least 10 needed"),
        "{}",
        c.reason
    );
    // NaNs do not count towards the minimum.
    let mut padded = canary.clone();
    padded.push(f64::NAN);
    let c = classify(&padded, &stable, &CompareParams::default());
    assert_eq!(c.classification, Classification::TooFewSamples);
    assert!(
        c.reason.contains("1 NaN or infinite values removed"),
        "{}",
        c.reason
    );
    // Ten values are enough, and this canary is far higher.
    padded[9] = 300.0;
    let c = classify(&padded, &stable, &CompareParams::default());
    assert_eq!(c.classification, Classification::High, "{}", c.reason);
    // Nothing at all, or only NaNs.
    let c = classify(&[], &[], &CompareParams::default());
    assert_eq!(c.classification, Classification::TooFewSamples);
    assert_eq!((c.canary_median, c.stable_median), (None, None));
    let c = classify(&[f64::NAN; 30], &stable, &CompareParams::default());
    assert_eq!(
        (c.classification, c.canary_n),
        (Classification::TooFewSamples, 0)
    );
    // A minimum of 0 still needs three values (see stats_classify_min_samples_floor).
    let none_needed = CompareParams {
        min_samples: 0,
        ..CompareParams::default()
    };
    let c = classify(&[], &[1.0], &none_needed);
    assert_eq!(c.classification, Classification::TooFewSamples);
    let c = classify(&[1.0; 3], &[1.0; 3], &none_needed);
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
}

#[test]
fn stats_classify_reason_has_the_figures() {
    let stable: Vec<f64> = (0..20).map(|i| 100.0 + i as f64 * 0.1).collect();
    let canary: Vec<f64> = stable.iter().map(|v| v * 1.3).collect();
    let c = classify(&canary, &stable, &params(Direction::Increase));
    assert_eq!(c.classification, Classification::High);
    assert_eq!(c.canary_median, Some(101.0 * 1.3 - 0.05 * 1.3));
    assert_eq!(c.stable_median, Some(100.95));
    let r = &c.reason;
    assert!(!r.contains('\n'));
    assert!(
        r.starts_with("canary higher than the tolerance allows: shift +30."),
        "{r}"
    );
    assert!(r.contains("of the stable median (98% interval +"), "{r}");
    assert!(r.contains("tolerance ±25%"), "{r}");
    // Four significant digits: 131.235 and 100.95.
    assert!(r.contains("medians canary 131.2, stable 101;"), "{r}");
    assert!(r.contains("values canary 20, stable 20"), "{r}");
    assert!(
        r.contains("Mann-Whitney p = ") && r.contains("(canary greater)"),
        "{r}"
    );
}

#[test]
fn stats_classify_zero_stable_median() {
    // Error counts: the stable had none, the canary has some every time.
    let stable = [0.0; 15];
    let canary = [3.0, 4.0, 2.0, 5.0, 3.0, 4.0, 6.0, 3.0, 2.0, 4.0, 5.0, 3.0];
    let c = classify(&canary, &stable, &params(Direction::Increase));
    assert_eq!(c.classification, Classification::High, "{}", c.reason);
    assert_eq!(c.effect_size, None);
    assert!(
        c.reason.contains("as the stable median is 0"),
        "{}",
        c.reason
    );
    // Both without errors.
    let c = classify(&[0.0; 12], &stable, &params(Direction::Increase));
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
}

#[test]
fn stats_classify_min_samples_floor() {
    // One value a side: any difference at all used to be High, with a "98% interval" that was
    // a single difference.
    for min_samples in [0, 1, 2] {
        let p = CompareParams {
            min_samples,
            ..CompareParams::default()
        };
        let c = classify(&[1.001], &[1.0], &p);
        assert_eq!(
            c.classification,
            Classification::TooFewSamples,
            "{}",
            c.reason
        );
        assert_eq!((c.p_value, c.effect_size), (None, None));
        assert!(
            c.reason.contains("canary 1, stable 1, at least 3 needed"),
            "{}",
            c.reason
        );
        let c = classify(&[5.0, 6.0], &[1.0, 2.0], &p);
        assert_eq!(
            c.classification,
            Classification::TooFewSamples,
            "{}",
            c.reason
        );
        // Three a side are judged.
        let c = classify(&[10.0, 11.0, 12.0], &[1.0, 2.0, 3.0], &p);
        assert_eq!(c.classification, Classification::High, "{}", c.reason);
    }
}

#[test]
fn stats_classify_without_an_interval_is_not_judged() {
    // shift_interval does not fail on the finite values classify passes it, so the step after
    // it is fed the failure directly.
    let comparison = Comparison {
        canary_n: 12,
        stable_n: 12,
        canary_median: Some(2.0),
        stable_median: Some(1.0),
        p_value: Some(0.5),
        effect_size: None,
        classification: Classification::TooFewSamples,
        reason: String::new(),
    };
    let context = ReasonContext {
        alternative: Alternative::TwoSided,
        removed: 0,
        notes: String::new(),
    };
    let c = judge_shift(comparison, None, &CompareParams::default(), &context);
    assert_eq!(c.classification, Classification::TooFewSamples);
    assert_eq!(c.effect_size, None);
    assert!(
        c.reason
            .contains("not judged: the shift's 98% confidence interval could not be computed"),
        "{}",
        c.reason
    );
    // So the comparison is inconclusive, never a silent pass.
    let s = score(
        &[Scored {
            name: "m".into(),
            weight: 1.0,
            critical: false,
            classification: c.classification,
        }],
        DEFAULT_PASS_SCORE,
        DEFAULT_MARGINAL_SCORE,
    );
    assert_eq!(s.verdict, ScoreVerdict::Inconclusive, "{}", s.reason);
}

#[test]
fn stats_classify_zero_stable_median_says_any_change_counts() {
    let stable = [0.0; 15];
    let canary = [3.0, 4.0, 2.0, 5.0, 3.0, 4.0, 6.0, 3.0, 2.0, 4.0, 5.0, 3.0];
    let c = classify(&canary, &stable, &params(Direction::Increase));
    assert_eq!(c.classification, Classification::High, "{}", c.reason);
    assert!(
        c.reason
            .contains("the stable median is 0, so any significant increase counts"),
        "{}",
        c.reason
    );
    let c = classify(&canary, &stable, &params(Direction::Either));
    assert!(
        c.reason
            .contains("the stable median is 0, so any significant change counts"),
        "{}",
        c.reason
    );
    // Said also when nothing changed.
    let c = classify(&[0.0; 12], &stable, &params(Direction::Decrease));
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
    assert!(
        c.reason
            .contains("the stable median is 0, so any significant decrease counts"),
        "{}",
        c.reason
    );
    // A stable median that is not 0 keeps the relative text.
    let c = classify(&[2.0; 12], &[1.0; 12], &params(Direction::Increase));
    assert!(!c.reason.contains("median is 0"), "{}", c.reason);
}

#[test]
fn stats_classify_constant_samples() {
    let c = classify(&[5.0; 10], &[3.0; 10], &CompareParams::default());
    assert_eq!(c.classification, Classification::High, "{}", c.reason);
    assert_close(c.effect_size.expect("effect"), 2.0 / 3.0, "effect");
    let c = classify(&[3.5; 10], &[3.0; 10], &CompareParams::default());
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
}

#[test]
fn stats_classify_replaces_parameters_out_of_range() {
    let mut noise = Noise(8);
    let stable = noise.sample(24, 100.0, 0.02);
    let canary = noise.sample(24, 130.0, 0.02);
    let odd = CompareParams {
        confidence: 1.5,
        tolerance: f64::NAN,
        ..CompareParams::default()
    };
    let c = classify(&canary, &stable, &odd);
    assert_eq!(c.classification, Classification::High);
    assert!(
        c.reason
            .contains("confidence 1.5 is not between 0 and 1, used 0.98"),
        "{}",
        c.reason
    );
    assert!(
        c.reason.contains("tolerance is not a number, used 0.25"),
        "{}",
        c.reason
    );
    let negative = CompareParams {
        tolerance: -1.0,
        ..CompareParams::default()
    };
    let c = classify(&canary, &stable, &negative);
    assert!(
        c.reason.contains("tolerance -1 is negative, used 0"),
        "{}",
        c.reason
    );
}

#[test]
fn stats_classify_extreme_values_do_not_panic() {
    let huge = [
        f64::MAX,
        -f64::MAX,
        f64::MAX / 3.0,
        1e300,
        -1e300,
        0.0,
        5e-324,
        -5e-324,
        1.0,
        2.0,
    ];
    let c = classify(
        &huge,
        &huge[..].iter().rev().copied().collect::<Vec<_>>(),
        &CompareParams::default(),
    );
    assert_eq!(c.classification, Classification::Pass, "{}", c.reason);
    let high = [f64::MAX; 10];
    let c = classify(&high, &[-f64::MAX; 10], &CompareParams::default());
    assert_eq!(c.classification, Classification::High, "{}", c.reason);
    let c = classify(&[1e-300; 10], &[2e-300; 10], &CompareParams::default());
    assert_eq!(c.classification, Classification::Low, "{}", c.reason);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            -1e6..1e6f64,
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(-f64::MAX),
            (0u8..4).prop_map(f64::from),
        ]
    }

    proptest! {
        #[test]
        fn stats_never_panics_and_stays_in_range(
            x in prop::collection::vec(any_value(), 0..40),
            y in prop::collection::vec(any_value(), 0..40),
            min_samples in 0usize..12,
        ) {
            for alternative in [Alternative::TwoSided, Alternative::Less, Alternative::Greater] {
                if let Some(t) = mann_whitney_u(&x, &y, alternative) {
                    prop_assert!((0.0..=1.0).contains(&t.p_value));
                    prop_assert!(t.u >= 0.0 && t.u <= (x.len() * y.len()) as f64);
                } else {
                    prop_assert!(x.is_empty() || y.is_empty() || x.iter().chain(&y).any(|v| v.is_nan()));
                }
            }
            let p = CompareParams { min_samples, ..CompareParams::default() };
            let c = classify(&x, &y, &p);
            prop_assert!(!c.reason.is_empty());
            prop_assert!(c.canary_n <= x.len() && c.stable_n <= y.len());
            if c.canary_n < min_samples.max(3) || c.stable_n < min_samples.max(3) {
                prop_assert_eq!(c.classification, Classification::TooFewSamples);
            } else {
                prop_assert!(c.classification != Classification::TooFewSamples);
                let pv = c.p_value.expect("p-value when judged");
                prop_assert!((0.0..=1.0).contains(&pv));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// score
// ---------------------------------------------------------------------------------------------

fn metric(name: &str, weight: f64, classification: Classification) -> Scored {
    Scored {
        name: name.into(),
        weight,
        critical: false,
        classification,
    }
}

fn critical(name: &str, classification: Classification) -> Scored {
    Scored {
        critical: true,
        ..metric(name, 1.0, classification)
    }
}

use Classification::{High, Low, Pass as Passed, TooFewSamples};

#[test]
fn stats_score_weighs_the_metrics() {
    let s = score(
        &[
            metric("latency", 3.0, Passed),
            metric("errors", 1.0, High),
            metric("cpu", 1.0, Passed),
        ],
        95.0,
        75.0,
    );
    assert_eq!(s.score, Some(80.0));
    assert_eq!(s.verdict, ScoreVerdict::Marginal);
    assert!(
        s.reason
            .starts_with("score 80 (marginal: pass at 95, marginal at 75)"),
        "{}",
        s.reason
    );
    assert!(
        s.reason
            .contains("2 of 3 metrics judged passed (weight 4 of 5)"),
        "{}",
        s.reason
    );
    assert!(
        s.reason.contains("not passing: errors (High)"),
        "{}",
        s.reason
    );
    // The heavier metric failing instead.
    let s = score(
        &[metric("latency", 3.0, Low), metric("errors", 1.0, Passed)],
        95.0,
        75.0,
    );
    assert_eq!((s.score, s.verdict), (Some(25.0), ScoreVerdict::Fail));
}

#[test]
fn stats_score_thresholds_are_inclusive() {
    let with = |passing: f64, failing: f64| {
        score(
            &[metric("a", passing, Passed), metric("b", failing, High)],
            DEFAULT_PASS_SCORE,
            DEFAULT_MARGINAL_SCORE,
        )
    };
    assert_eq!(
        (with(95.0, 5.0).score, with(95.0, 5.0).verdict),
        (Some(95.0), ScoreVerdict::Pass)
    );
    assert_eq!(with(9499.0, 501.0).score, Some(94.99));
    assert_eq!(with(9499.0, 501.0).verdict, ScoreVerdict::Marginal);
    assert_eq!(
        (with(75.0, 25.0).score, with(75.0, 25.0).verdict),
        (Some(75.0), ScoreVerdict::Marginal)
    );
    assert_eq!(with(7499.0, 2501.0).verdict, ScoreVerdict::Fail);
    // 19 of 20 equal weights is exactly 95, even with weights that are not whole numbers.
    let mut many: Vec<Scored> = (0..19)
        .map(|i| metric(&format!("m{i}"), 0.1, Passed))
        .collect();
    many.push(metric("bad", 0.1, Low));
    let s = score(&many, 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (Some(95.0), ScoreVerdict::Pass));
    // Everything passing.
    let s = score(&[metric("a", 1.0, Passed)], 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (Some(100.0), ScoreVerdict::Pass));
}

#[test]
fn stats_score_critical_failure_fails_everything() {
    let mut metrics: Vec<Scored> = (0..9)
        .map(|i| metric(&format!("m{i}"), 10.0, Passed))
        .collect();
    metrics.push(critical("errors", High));
    let s = score(&metrics, 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (Some(0.0), ScoreVerdict::Fail));
    assert!(
        s.reason
            .starts_with("score 0: critical metric errors failed (weighted score otherwise 98.9"),
        "{}",
        s.reason
    );
    metrics.pop();
    metrics.push(critical("throughput", Low));
    assert_eq!(score(&metrics, 95.0, 75.0).verdict, ScoreVerdict::Fail);
    // A critical metric that passes is an ordinary one.
    metrics.pop();
    metrics.push(critical("errors", Passed));
    let s = score(&metrics, 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (Some(100.0), ScoreVerdict::Pass));
}

#[test]
fn stats_score_leaves_out_metrics_with_too_few_samples() {
    let s = score(
        &[metric("a", 1.0, Passed), metric("b", 5.0, TooFewSamples)],
        95.0,
        75.0,
    );
    assert_eq!((s.score, s.verdict), (Some(100.0), ScoreVerdict::Pass));
    assert!(
        s.reason.contains("left out for too few values: b"),
        "{}",
        s.reason
    );
    // None counted: inconclusive.
    let s = score(
        &[
            metric("a", 1.0, TooFewSamples),
            metric("b", 2.0, TooFewSamples),
        ],
        95.0,
        75.0,
    );
    assert_eq!((s.score, s.verdict), (None, ScoreVerdict::Inconclusive));
    assert!(
        s.reason.contains("no metric had enough values"),
        "{}",
        s.reason
    );
    let s = score(&[], 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (None, ScoreVerdict::Inconclusive));
}

#[test]
fn stats_score_critical_metric_without_data_is_inconclusive() {
    let s = score(
        &[metric("a", 1.0, Passed), critical("errors", TooFewSamples)],
        95.0,
        75.0,
    );
    assert_eq!(
        (s.score, s.verdict),
        (Some(100.0), ScoreVerdict::Inconclusive)
    );
    assert!(
        s.reason
            .contains("critical metric errors had too few values"),
        "{}",
        s.reason
    );
    // A critical failure elsewhere still fails.
    let s = score(
        &[critical("latency", High), critical("errors", TooFewSamples)],
        95.0,
        75.0,
    );
    assert_eq!(s.verdict, ScoreVerdict::Fail);
}

#[test]
fn stats_score_ignores_weights_that_are_not_positive_numbers() {
    let s = score(
        &[
            metric("a", 1.0, Passed),
            metric("nan", f64::NAN, High),
            metric("negative", -4.0, High),
            metric("infinite", f64::INFINITY, High),
        ],
        95.0,
        75.0,
    );
    assert_eq!((s.score, s.verdict), (Some(100.0), ScoreVerdict::Pass));
    let s = score(&[metric("zero", 0.0, Passed)], 95.0, 75.0);
    assert_eq!((s.score, s.verdict), (None, ScoreVerdict::Inconclusive));
    assert!(s.reason.contains("weigh nothing"), "{}", s.reason);
}

#[test]
fn stats_score_of_nothing_passing_is_positive_zero() {
    let s = score(&[metric("a", 1.0, High)], 95.0, 75.0);
    let value = s.score.expect("score");
    assert_eq!(format!("{value}"), "0");
    assert!(value.is_sign_positive());
    assert_eq!(s.verdict, ScoreVerdict::Fail);
    let s = score(&[metric("a", 2.0, Low), metric("b", 1.0, High)], 95.0, 75.0);
    assert_eq!(format!("{}", s.score.expect("score")), "0");
}
