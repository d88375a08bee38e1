"""Reference values for Sluice's Mann-Whitney U test (src/analysis/stats.rs).

Prints, for a fixed list of sample pairs and each alternative, the U statistic of x and the
p-value that scipy.stats.mannwhitneyu gives with its defaults (method='auto',
use_continuity=True), with full precision, and the scipy version. The Rust tests hold these
numbers as literals; see README.md beside this file for how to rerun it.

The larger samples come from `formula` below, which the Rust tests repeat exactly (the same
integer arithmetic, then one float division and one addition), so no data file is needed.
"""

import scipy
from scipy.stats import mannwhitneyu


def formula(n, a, c, m, scale, offset):
    """((a*i + c) mod m) / scale + offset for i in 0..n."""
    return [((a * i + c) % m) / scale + offset for i in range(n)]


CASES = [
    # Tiny samples (exact method).
    ("n1_vs_n1", [1.0], [2.0]),
    ("n1_vs_n2", [3.0], [1.0, 2.0]),
    ("n2_vs_n3", [1.5, 4.0], [2.0, 3.0, 5.0]),
    ("n3_vs_n3_separated", [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
    # Exact method, no ties, both samples at most 8.
    ("exact_5_vs_7", [1.1, 2.3, 0.7, 5.2, 3.3], [4.4, 6.1, 2.9, 7.7, 5.5, 3.8, 6.6]),
    ("exact_7_vs_7", [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.25]),
    ("exact_8_vs_8", [8.1, 7.3, 9.9, 6.4, 8.8, 7.7, 9.2, 10.5],
     [5.2, 6.1, 7.0, 5.9, 6.6, 4.8, 7.4, 6.9]),
    # Exact method: scipy picks it when either sample has at most 8 values and there are no ties.
    ("exact_4_vs_30", [2.05, 3.15, 9.95, 0.35], formula(30, 7, 3, 31, 3.0, 0.0)),
    # Both samples over 8, no ties: normal approximation.
    ("asymptotic_9_vs_9", [1.2, 3.4, 5.6, 7.8, 9.1, 2.3, 4.5, 6.7, 8.9],
     [0.1, 2.2, 4.4, 6.6, 8.8, 1.05, 3.3, 5.5, 7.7]),
    # Ties force the normal approximation with tie correction.
    ("ties_4_vs_5", [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]),
    ("ties_counts", [0.0] * 20 + [1.0, 2.0], [0.0] * 22),
    # All values equal: no spread, p-value 1.
    ("all_equal_3_vs_2", [5.0, 5.0, 5.0], [5.0, 5.0]),
    ("all_equal_12_vs_15", [0.25] * 12, [0.25] * 15),
    # Large samples, about 50 values each.
    ("large_50_vs_50_shift", formula(50, 17, 5, 97, 10.0, 1.0), formula(50, 23, 11, 89, 10.0, 0.0)),
    ("large_50_vs_45_ties", formula(50, 13, 2, 20, 2.0, 0.0), formula(45, 7, 1, 18, 2.0, 0.0)),
]


def main():
    print(f"scipy {scipy.__version__}")
    for name, x, y in CASES:
        for alternative in ("two-sided", "less", "greater"):
            res = mannwhitneyu(x, y, alternative=alternative)
            print(f"{name} {alternative} U={float(res.statistic)!r} p={float(res.pvalue)!r}")


if __name__ == "__main__":
    main()
