"""Rank agreement of a score with accuracy: known rankings, orientation, bootstrap intervals, top-k, ceiling, percentile."""
import math

import numpy as np
import pytest
from scipy import stats

from common.study import stats as P


def _noisy(n=20, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def test_perfect_ranking_is_one_and_reversed_is_minus_one():
    truth = np.array([0.31, 0.35, 0.42, 0.47, 0.52, 0.60])
    same = P.rank_agreement(truth * 10, truth, higher_is_better=True, n_resamples=200)
    assert same["n"] == 6 and same["spearman"] == pytest.approx(1) and same["kendall"] == pytest.approx(1)
    assert same["spearman_ci"] == pytest.approx([1, 1]) and same["kendall_ci"] == pytest.approx([1, 1])
    loss = -truth  # a loss: lower is better, so once oriented it ranks exactly like accuracy
    assert P.rank_agreement(loss, truth, higher_is_better=False, n_resamples=200)["spearman"] == pytest.approx(1)
    wrong_way = P.rank_agreement(loss, truth, higher_is_better=True, n_resamples=200)
    assert wrong_way["spearman"] == pytest.approx(-1) and wrong_way["kendall"] == pytest.approx(-1)


def test_point_estimates_are_scipys_and_orientation_flips_the_sign():
    x, y = _noisy(noise=1.5)
    up = P.rank_agreement(x, y, higher_is_better=True, n_resamples=200)
    down = P.rank_agreement(x, y, higher_is_better=False, n_resamples=200)
    assert up["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert up["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert down["spearman"] == pytest.approx(-up["spearman"], abs=1e-12)
    assert down["kendall"] == pytest.approx(-up["kendall"], abs=1e-12)
    assert down["spearman_ci"] == pytest.approx([-up["spearman_ci"][1], -up["spearman_ci"][0]], abs=1e-9)


def test_ci_contains_the_estimate_is_seeded_and_narrows_with_more_architectures():
    x, y = _noisy(n=20, noise=1.0)
    a = P.rank_agreement(x, y)
    for name in ("spearman", "kendall"):
        lo, hi = a[f"{name}_ci"]
        assert -1 <= lo < a[name] < hi <= 1
    assert P.rank_agreement(x, y) == a  # the bootstrap is seeded: correlations.json is reproducible
    assert P.rank_agreement(x, y, seed=1)["spearman_ci"] != a["spearman_ci"]
    xl, yl = _noisy(n=200, noise=1.0)
    big = P.rank_agreement(xl, yl, n_resamples=500)
    assert np.diff(big["spearman_ci"])[0] < np.diff(a["spearman_ci"])[0]
    # a score unrelated to accuracy: the interval spans 0
    rng = np.random.default_rng(3)
    lo, hi = P.rank_agreement(rng.normal(size=30), rng.normal(size=30))["spearman_ci"]
    assert lo < 0 < hi


def test_percentile_interval_is_scipys_when_every_resample_is_defined():
    x, y = _noisy(n=15, noise=0.8)
    ci = P.bootstrap_ci(x, y, P.spearman_rows, n_resamples=300, seed=5)
    res = stats.bootstrap((x, y), lambda a, b, axis=-1: P.spearman_rows(a, b), paired=True, vectorized=True,
                          n_resamples=300, method="percentile", rng=np.random.default_rng(5))
    assert ci == pytest.approx([res.confidence_interval.low, res.confidence_interval.high], abs=1e-12)


def test_vectorised_statistics_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (40, 9)).astype(float)  # many ties, as bootstrap resamples have
    y = rng.integers(0, 5, (40, 9)).astype(float)
    x[0] = 1.0  # a constant row: undefined
    rho = [stats.spearmanr(a, b).statistic if np.ptp(a) else np.nan for a, b in zip(x, y)]
    tau = [stats.kendalltau(a, b).statistic if np.ptp(a) else np.nan for a, b in zip(x, y)]
    np.testing.assert_allclose(P.spearman_rows(x, y), rho, atol=1e-12)
    np.testing.assert_allclose(P.kendall_rows(x, y), tau, atol=1e-12)


def test_failed_measurements_are_dropped_and_too_few_or_tied_give_none():
    x, y = _noisy(n=10)
    x_gaps, y_gaps = x.copy(), y.copy()
    x_gaps[2], y_gaps[5] = np.nan, np.inf
    keep = np.ones(10, bool)
    keep[[2, 5]] = False
    got = P.rank_agreement(x_gaps, y_gaps, n_resamples=200)
    assert got["n"] == 8 and got == P.rank_agreement(x[keep], y[keep], n_resamples=200)
    for score, truth in (([1.0, 2.0], [1.0, 2.0]), ([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), ([2.0] * 4, [1, 2, 3, 4])):
        out = P.rank_agreement(score, truth, n_resamples=100)
        assert out["spearman"] is None and out["kendall_ci"] == [None, None]


def test_top_k_by_hand():
    # 10 architectures, k = 2: accuracy's best two are #0 and #3; the score's best two are #0 and #1 -> 1 of 2
    truth = [0.9, 0.5, 0.4, 0.8, 0.3, 0.2, 0.1, 0.0, 0.6, 0.7]
    score = [10, 9, 1, 2, 3, 4, 5, 6, 7, 8]
    assert P.top_k(score, truth) == {"k": 2, "share": 0.5, "chance": 0.2}
    # lower is better: the same ranking as a loss
    assert P.top_k([-s for s in score], truth, higher_is_better=False)["share"] == 0.5
    assert P.top_k(truth, truth)["share"] == 1.0
    assert P.top_k(score, truth, fraction=0.5) == {"k": 5, "share": 4 / 5, "chance": 0.5}  # {0,1,9,8,7} vs {0,3,9,8,1}
    assert P.top_k(range(15), range(15))["k"] == 3  # 0.2 * 15 is not rounded up to 4
    assert P.top_k([1, 2, 3], [5, 5, 5])["share"] is None  # accuracy all tied: no top to find
    ties = P.top_k([1, 1, 1, 0, 0], [5, 4, 3, 2, 1], fraction=0.2)  # tied scores: the first position wins
    assert ties == {"k": 1, "share": 1.0, "chance": 0.2}


def test_seed_agreement_is_the_mean_pairwise_rank_correlation():
    x, y = _noisy(n=25, noise=0.7)
    two = P.seed_agreement(np.stack([x, y], 1))
    r = stats.spearmanr(x, y).statistic
    assert two["n"] == 25 and two["seeds"] == 2 and two["spearman"] == pytest.approx(r)
    assert two["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert two["spearman_ci"][0] < r < two["spearman_ci"][1]
    assert two["spearman_of_mean"] == pytest.approx(math.sqrt(2 * r / (1 + r)))  # Spearman-Brown, then sqrt
    z = x + 0.7 * np.random.default_rng(9).normal(size=25)
    three = P.seed_agreement(np.stack([x, y, z], 1), n_resamples=300)
    pairs = [stats.spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z))]
    assert three["spearman"] == pytest.approx(np.mean(pairs))
    same = P.seed_agreement(np.stack([x, x], 1), n_resamples=200)
    assert same["spearman"] == pytest.approx(1) and same["spearman_of_mean"] == pytest.approx(1)
    gaps = np.stack([x, y], 1)
    gaps[0, 1] = np.nan
    assert P.seed_agreement(gaps, n_resamples=100)["n"] == 24
    with pytest.raises(ValueError):
        P.seed_agreement(x[:, None])


def test_percentile_counts_ties_half():
    random = [0.2, 0.3, 0.4, 0.5]
    assert P.percentile(0.4, random) == 62.5  # 2 below, 1 tied: (2 + 0.5) / 4
    assert P.percentile(0.9, random) == 100.0 and P.percentile(0.1, random) == 0.0
    assert P.percentile(0.45, [*random, math.nan]) == 75.0  # a failed random genotype does not count
    assert P.percentile(math.nan, random) is None and P.percentile(0.3, []) is None


# ----------------------------------------------------------------------------- reliability, size baseline


def test_icc1_is_the_one_way_anova_ratio_with_the_exact_f_interval():
    rng = np.random.default_rng(3)
    arch = rng.normal(0, 1.0, 30)
    table = arch[:, None] + rng.normal(0, 0.5, (30, 2))  # true ICC = 1 / (1 + 0.25) = 0.8
    out = P.icc1(table)
    k, n = 2, 30
    msb = k * np.var(table.mean(1), ddof=1)
    msw = np.mean(np.var(table, axis=1, ddof=1))
    assert out["icc"] == pytest.approx((msb - msw) / (msb + (k - 1) * msw))
    f_lo = out["f"] / stats.f.ppf(0.975, n - 1, n * (k - 1))
    assert out["icc_ci"][0] == pytest.approx((f_lo - 1) / (f_lo + k - 1))
    assert out["icc_ci"][0] < 0.8 < out["icc_ci"][1] and out["p"] < 1e-6
    noise = P.icc1(rng.normal(size=(30, 2)))  # no architecture effect
    assert noise["icc_ci"][0] < 0 < noise["icc_ci"][1] or noise["icc"] < 0.3
    with_nan = np.vstack([table, [[np.nan, 1.0]]])
    assert P.icc1(with_nan)["n"] == 30 and P.icc1(table[:2])["icc"] is None
    with pytest.raises(ValueError):
        P.icc1(table[:, :1])


def test_spearman_brown_and_the_seeds_it_takes():
    assert P.spearman_brown(0.5, 2) == pytest.approx(2 / 3) and P.spearman_brown(-0.2, 3) == 0.0
    assert P.spearman_brown(None, 2) is None
    # the guide's example: ICC 0.23 needs about 13 seeds for reliability 0.8
    assert P.seeds_for(0.23, 0.8) == 14 and P.spearman_brown(0.23, 14) >= 0.8 > P.spearman_brown(0.23, 13)
    assert P.seeds_for(0.9, 0.8) == 1 and P.seeds_for(0.0, 0.8) is None and P.seeds_for(None, 0.8) is None
    assert P.spearman_brown(0.5, P.seeds_for(0.5, 0.8)) >= 0.8


def test_partial_spearman_is_the_textbook_formula_on_ranks():
    rng = np.random.default_rng(0)
    z = rng.normal(size=50)
    x, y = z + rng.normal(size=50), z + rng.normal(size=50)
    rx, ry, rz = (stats.rankdata(a) for a in (x, y, z))
    r = lambda a, b: stats.pearsonr(a, b).statistic  # noqa: E731
    expected = (r(rx, ry) - r(rx, rz) * r(ry, rz)) / np.sqrt((1 - r(rx, rz) ** 2) * (1 - r(ry, rz) ** 2))
    assert P.partial_spearman(x, y, z) == pytest.approx(expected)
    assert P.spearman(x, y) > 0.3 and abs(P.partial_spearman(x, y, z)) < 0.3  # z explains their agreement
    out = P.partial_agreement(x, y, z, n_resamples=300)
    assert out["n"] == 50 and out["partial_spearman_ci"][0] <= out["partial_spearman"] <= out["partial_spearman_ci"][1]
    assert P.partial_spearman(x[:3], y[:3], z[:3]) is None and P.partial_spearman(x, y, np.ones(50)) is None


def test_difference_from_a_baseline_is_paired():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=40)
    good, size = truth + 0.3 * rng.normal(size=40), truth + 2.0 * rng.normal(size=40)
    out = P.difference_from(good, size, truth, n_resamples=500)
    assert out["difference"] == pytest.approx(P.spearman(good, truth) - P.spearman(size, truth))
    assert out["difference_ci"][0] > 0  # clearly better than the baseline
    same = P.difference_from(size, size, truth, n_resamples=200)
    assert same["difference"] == 0 and same["difference_ci"] == [0, 0]
    flipped = P.difference_from(-good, size, truth, higher_is_better=False, n_resamples=500)
    assert flipped["difference"] == pytest.approx(out["difference"])


def test_percentile_interval_from_resampled_references():
    ref = np.arange(1.0, 41.0)
    lo, hi = P.percentile_ci(30.5, ref, n_resamples=500)
    assert lo <= P.percentile(30.5, ref) <= hi and 50 < lo and hi < 95
    assert P.percentile_ci(100.0, ref, n_resamples=200) == [100.0, 100.0]
    assert P.percentile_ci(float("nan"), ref) == [None, None]
