"""How well a score ranks architectures like their accuracy: rank correlations, bootstrap CIs, top-k, ceiling.

Pure functions on arrays. A score's `higher_is_better` orients it first (a lower-is-better score is negated), so a
positive correlation always means "the score ranks architectures the way accuracy does". Pairs where either value
is not finite (a failed measurement) are dropped before anything is computed.

Point estimates are scipy.stats.spearmanr / kendalltau (tau-b). Confidence intervals come from
scipy.stats.bootstrap over architectures (paired: an architecture's score and accuracy are resampled together),
percentile method; the statistic inside the bootstrap is a vectorised twin of the same coefficient (checked equal
to scipy's in the tests). A resample whose values are all tied has no rank correlation: such resamples are left
out of the percentiles (they only occur for a handful of architectures).
"""
import math
from itertools import combinations

import numpy as np
from scipy import stats

from common.stats import bootstrap_ci as _bootstrap

MIN_PAIRS = 3  # architectures needed for a correlation; fewer gives None
CONFIDENCE = 0.95  # confidence level of the bootstrap intervals
N_RESAMPLES = 2000  # bootstrap resamples
BOOTSTRAP_SEED = 0  # the bootstrap's resampling is seeded, so correlations.json is reproducible
TOP_FRACTION = 0.2  # top-k agreement: the best 20% by accuracy vs the best 20% by the score
_BATCH = 250  # resamples per vectorised call (the Kendall statistic holds a (batch, n, n) array)


# ----------------------------------------------------------------------------- pairs and orientation


def oriented(score, higher_is_better):
    """The score as float array, negated when lower is better (then higher always means "predicts better")."""
    score = np.asarray(score, dtype=float)
    return score if higher_is_better else -score


def finite_pairs(x, y):
    """(x, y) restricted to the positions where both are finite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def finite_or_none(value):
    """A float, or None for NaN (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


# ----------------------------------------------------------------------------- coefficients


def spearman(x, y):
    """scipy's Spearman rho of two 1-d arrays; NaN when either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan  # scipy would warn and return NaN
    return float(stats.spearmanr(x, y).statistic)


def kendall(x, y):
    """scipy's Kendall tau-b of two 1-d arrays; NaN when either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def spearman_rows(x, y):
    """Spearman rho of each row pair of (B, n) arrays: Pearson of average ranks (what spearmanr computes)."""
    rx = stats.rankdata(x, axis=-1)
    ry = stats.rankdata(y, axis=-1)
    rx -= rx.mean(-1, keepdims=True)
    ry -= ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))


def kendall_rows(x, y):
    """Kendall tau-b of each row pair of (B, n) arrays: S / sqrt(untied x pairs * untied y pairs)."""
    i, j = np.triu_indices(x.shape[-1], 1)
    sx = np.sign(x[..., i] - x[..., j])  # (B, pairs)
    sy = np.sign(y[..., i] - y[..., j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(-1) / np.sqrt(np.abs(sx).sum(-1) * np.abs(sy).sum(-1))


COEFFICIENTS = {"spearman": (spearman, spearman_rows), "kendall": (kendall, kendall_rows)}


def bootstrap_ci(x, y, rows, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """[lo, hi] percentile interval of rows(x*, y*) over paired bootstrap resamples of the n pairs.

    rows: a vectorised statistic on (B, n) arrays (spearman_rows, kendall_rows, or any of that shape).
    Resamples where the statistic is undefined (all values tied) are left out; [nan, nan] if all are.
    """
    return _percentile_ci((np.asarray(x, dtype=float), np.asarray(y, dtype=float)), rows, confidence, n_resamples,
                          seed)


def rank_agreement(score, truth, higher_is_better=True, confidence=CONFIDENCE, n_resamples=N_RESAMPLES,
                   seed=BOOTSTRAP_SEED):
    """{'n', 'spearman', 'spearman_ci', 'kendall', 'kendall_ci'} of the oriented score against the truth.

    None for every value when fewer than MIN_PAIRS finite pairs remain or either side is constant.
    """
    x, y = finite_pairs(oriented(score, higher_is_better), truth)
    out = {"n": int(len(x))}
    for name, (point, rows) in COEFFICIENTS.items():
        value = point(x, y) if len(x) >= MIN_PAIRS else math.nan
        ci = bootstrap_ci(x, y, rows, confidence, n_resamples, seed) if math.isfinite(value) else [math.nan] * 2
        out[name], out[f"{name}_ci"] = finite_or_none(value), [finite_or_none(v) for v in ci]
    return out


# ----------------------------------------------------------------------------- top-k, ceiling, percentile


def _k(n, fraction):
    """ceil(fraction * n), at least 1 (0 for no pairs); 0.2 * 15 is 3.0000000000000004 in floating point."""
    return 0 if n == 0 else max(1, math.ceil(fraction * n - 1e-9))


def top_k(score, truth, higher_is_better=True, fraction=TOP_FRACTION):
    """{'k', 'share', 'chance'}: share of the k best by truth that the k best by the oriented score contain.

    k = ceil(fraction * n) over the finite pairs (at least 1). Ties are broken by position (a stable sort), so the
    result is deterministic. chance = k / n, the share a random ranking gets on average.
    """
    x, y = finite_pairs(oriented(score, higher_is_better), truth)
    n = len(x)
    if n == 0 or np.ptp(x) == 0 or np.ptp(y) == 0:  # all tied: no ranking to agree with
        return {"k": _k(n, fraction), "share": None, "chance": _k(n, fraction) / n if n else None}
    k = _k(n, fraction)
    best_score = set(np.argsort(-x, kind="stable")[:k].tolist())
    best_truth = set(np.argsort(-y, kind="stable")[:k].tolist())
    return {"k": k, "share": len(best_score & best_truth) / k, "chance": k / n}


def _mean_pairwise(rows):
    """A vectorised statistic of S paired samples (one per seed, each (B, n)): the mean of `rows` over seed pairs."""

    def statistic(*columns, axis=-1):
        return np.mean([rows(a, b) for a, b in combinations(columns, 2)], axis=0)

    return statistic


def _percentile_ci(samples, rows, confidence, n_resamples, seed):
    """common.stats.bootstrap_ci in batches of _BATCH resamples (the Kendall statistic holds (B, n, n) arrays)."""
    return _bootstrap(samples, rows, confidence, n_resamples, seed, batch=_BATCH)


def seed_agreement(values, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """How well one seed's measurement ranks architectures like another seed's: the noise ceiling of a ranking.

    values: (n architectures, S seeds), S >= 2; rows with a non-finite value are dropped. Returns {'n', 'seeds',
    'spearman', 'spearman_ci', 'kendall', 'kendall_ci', 'spearman_of_mean'}: each coefficient is the mean over the
    S(S-1)/2 seed pairs, its CI from resampling architectures. spearman_of_mean is the expected correlation of a
    perfect predictor with the mean of the S seeds, sqrt(S r / (1 + (S - 1) r)) with r the pairwise rho
    (Spearman-Brown; exact for Pearson under a true-score-plus-noise model, an approximation for ranks).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"seed_agreement needs (architectures, seeds >= 2) values, got shape {values.shape}")
    table = values[np.isfinite(values).all(1)]
    out = {"n": int(len(table)), "seeds": int(values.shape[1])}
    for name, (point, rows) in COEFFICIENTS.items():
        value = math.nan
        if len(table) >= MIN_PAIRS:
            value = float(np.mean([point(table[:, a], table[:, b])
                                   for a, b in combinations(range(table.shape[1]), 2)]))
        ci = [math.nan] * 2
        if math.isfinite(value):
            ci = _percentile_ci(table.T, _mean_pairwise(rows), confidence, n_resamples, seed)
        out[name], out[f"{name}_ci"] = finite_or_none(value), [finite_or_none(v) for v in ci]
    r, s = out["spearman"], values.shape[1]
    out["spearman_of_mean"] = finite_or_none(math.sqrt(s * r / (1 + (s - 1) * r))) if r is not None and r > 0 else None
    return out


def percentile(value, reference):
    """Percentile (0-100) of `value` among the finite `reference` values; ties count half (scipy kind='mean')."""
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if not len(ref) or not math.isfinite(value):
        return None
    return float(stats.percentileofscore(ref, value, kind="mean"))


# ----------------------------------------------------------------------------- reliability of the truth


def icc1(values, confidence=CONFIDENCE):
    """ICC(1) of (n architectures, k seeds) measurements: between-architecture variance over total, one-way ANOVA.

    Returns {'n', 'seeds', 'icc', 'icc_ci', 'f', 'p'}; rows with a non-finite value are dropped. The interval is the
    exact F-based one of Shrout & Fleiss (1979) for the one-way model (scipy.stats.f quantiles); p is the ANOVA's
    test of "no architecture differences" (F = MSB / MSW on n - 1 and n (k - 1) degrees of freedom). None where
    undefined (fewer than MIN_PAIRS rows, no within-architecture variance).
    """
    table = np.asarray(values, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"icc1 needs (architectures, seeds >= 2) values, got shape {table.shape}")
    table = table[np.isfinite(table).all(1)]
    n, k = table.shape
    out = {"n": int(n), "seeds": int(k), "icc": None, "icc_ci": [None, None], "f": None, "p": None}
    if n < MIN_PAIRS:
        return out
    msb = k * table.mean(1).var(ddof=1)  # between architectures
    msw = table.var(1, ddof=1).mean()  # within (seed to seed)
    if msw <= 0:
        return out
    f0 = msb / msw
    df1, df2 = n - 1, n * (k - 1)
    alpha = (1 - confidence) / 2
    f_lo, f_hi = f0 / stats.f.ppf(1 - alpha, df1, df2), f0 * stats.f.ppf(1 - alpha, df2, df1)
    icc = lambda f: (f - 1) / (f + k - 1)  # noqa: E731
    out.update(icc=float(icc(f0)), icc_ci=[float(icc(f_lo)), float(icc(f_hi))], f=float(f0),
               p=float(stats.f.sf(f0, df1, df2)))
    return out


def spearman_brown(icc, k):
    """Reliability of the mean of k measurements whose single-measurement reliability is icc (negative -> 0)."""
    if icc is None:
        return None
    icc = max(float(icc), 0.0)
    return k * icc / (1 + (k - 1) * icc)


def seeds_for(icc, target):
    """Seeds whose mean reaches reliability `target` (Spearman-Brown solved for k); None when icc <= 0 or unknown, or
    when the target is 1 (no finite number of noisy seeds reaches it)."""
    if icc is None or icc <= 0 or (target >= 1 and icc < 1):
        return None
    if icc >= target:
        return 1
    return int(math.ceil(target * (1 - icc) / (icc * (1 - target)) - 1e-9))


# ----------------------------------------------------------------------------- against the size baseline


def partial_spearman(x, y, control):
    """Spearman of x and y with `control` held fixed: rank all three, regress the control's ranks out of x's and
    y's ranks (least squares with intercept), correlate the residuals (Pearson). Non-finite triples dropped;
    None with fewer than MIN_PAIRS + 1 triples or a constant input."""
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, control))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[keep], y[keep], z[keep]
    if len(x) < MIN_PAIRS + 1 or min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0:
        return None
    return finite_or_none(_partial_rows(x[None], y[None], z[None])[0])


def _residual_rows(r, rz):
    """Residuals of each row of r after least squares on the matching row of rz (both centred here)."""
    r = r - r.mean(-1, keepdims=True)
    rz = rz - rz.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (r * rz).sum(-1, keepdims=True) / (rz * rz).sum(-1, keepdims=True)
    return r - beta * rz


def _partial_rows(x, y, z):
    """Partial Spearman of each row triple of (B, n) arrays (the vectorised twin of partial_spearman)."""
    rx, ry, rz = (stats.rankdata(a, axis=-1) for a in (x, y, z))
    ex, ey = _residual_rows(rx, rz), _residual_rows(ry, rz)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ex * ey).sum(-1) / np.sqrt((ex * ex).sum(-1) * (ey * ey).sum(-1))


def partial_agreement(score, truth, control, higher_is_better=True, confidence=CONFIDENCE, n_resamples=N_RESAMPLES,
                      seed=BOOTSTRAP_SEED):
    """{'n', 'partial_spearman', 'partial_spearman_ci'}: the oriented score against the truth, control fixed."""
    x, y, z = (np.asarray(a, dtype=float) for a in (oriented(score, higher_is_better), truth, control))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[keep], y[keep], z[keep]
    value = partial_spearman(x, y, z)
    ci = [math.nan] * 2
    if value is not None:
        ci = _percentile_ci((x, y, z), _partial_rows, confidence, n_resamples, seed)
    return {"n": int(len(x)), "partial_spearman": value, "partial_spearman_ci": [finite_or_none(v) for v in ci]}


def difference_from(score, baseline, truth, higher_is_better=True, baseline_higher_is_better=True,
                    confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """{'n', 'difference', 'difference_ci'}: Spearman(score, truth) - Spearman(baseline, truth) over the same
    architectures, its interval from the paired bootstrap (an architecture's score, baseline and truth resampled
    together): is the score better than the baseline on these architectures?"""
    x, b, y = (np.asarray(a, dtype=float) for a in (oriented(score, higher_is_better),
                                                      oriented(baseline, baseline_higher_is_better), truth))
    keep = np.isfinite(x) & np.isfinite(b) & np.isfinite(y)
    x, b, y = x[keep], b[keep], y[keep]
    out = {"n": int(len(x)), "difference": None, "difference_ci": [None, None]}
    if len(x) < MIN_PAIRS or min(np.ptp(x), np.ptp(b), np.ptp(y)) == 0:
        return out
    value = spearman(x, y) - spearman(b, y)
    ci = _percentile_ci((x, b, y), lambda xs, bs, ys: spearman_rows(xs, ys) - spearman_rows(bs, ys), confidence,
                        n_resamples, seed)
    out.update(difference=finite_or_none(value), difference_ci=[finite_or_none(v) for v in ci])
    return out


def percentile_ci(value, reference, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """[lo, hi]: the interval of percentile(value, reference) when the reference architectures are resampled (how
    much the rank among random architectures depends on which random ones were drawn)."""
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if len(ref) < MIN_PAIRS or not math.isfinite(value):
        return [None, None]

    def rows(r):  # (B, n) resampled references -> percentile of value in each, ties half (kind='mean')
        return 100 * ((r < value).sum(-1) + 0.5 * (r == value).sum(-1)) / r.shape[-1]

    return [finite_or_none(v) for v in _percentile_ci((ref,), rows, confidence, n_resamples, seed)]
