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
import warnings
from itertools import combinations

import numpy as np
from scipy import stats

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
    """[lo, hi] of rows(*samples) over paired bootstrap resamples; undefined (all-tied) resamples left out."""
    with warnings.catch_warnings():  # scipy warns when all-tied resamples make its own interval NaN; ours drops them
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(tuple(samples), lambda *a, axis=-1: rows(*a), paired=True, vectorized=True,
                              n_resamples=n_resamples, batch=_BATCH, method="percentile", confidence_level=confidence,
                              rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return [math.nan, math.nan]
    alpha = (1 - confidence) / 2
    return [float(np.percentile(dist, 100 * alpha)), float(np.percentile(dist, 100 * (1 - alpha)))]


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
