"""Summaries of repeated measurements: mean ± SD, standard errors and t-intervals, seeded bootstrap intervals.

One module for every stage that summarises runs over seeds or splits (the labeled repeats, the strategies report,
the proxy study): the same definitions everywhere, one default for the bootstrap. Values that are None or not
finite (a metric that could not be computed) are dropped first.

For a mean of n paired values the interval is Student's t: mean ± t(1 - α/2, n - 1) · sd / √n. A percentile
bootstrap needs many values: over n = 3 it returns the range [min, max] of the three, whose coverage is about 75 %,
not 95 %. Rank statistics (the proxy study's correlations) have no such formula and are bootstrapped over their
architectures.
"""
import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # level of every interval
N_RESAMPLES = 9999  # bootstrap resamples (scipy's default)
BOOTSTRAP_SEED = 0  # the resampling is seeded: the same values give the same interval


def finite(values):
    """The values that are finite numbers, as floats (None and NaN dropped)."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def spread(values):
    """{'n', 'mean', 'sd'} of the finite values: sample SD (ddof 1), None with fewer than 2; mean None with none."""
    v = finite(values)
    return {"n": len(v), "mean": float(np.mean(v)) if v else None,
            "sd": float(np.std(v, ddof=1)) if len(v) >= 2 else None}


def standard_error(values):
    """sd / √n of the mean of the finite values; None with fewer than 2."""
    s = spread(values)
    return s["sd"] / math.sqrt(s["n"]) if s["sd"] is not None else None


def t_interval(values, confidence=CONFIDENCE):
    """[lo, hi]: Student's t interval of the mean of the finite values; None with fewer than 2 (no spread to scale)."""
    s = spread(values)
    if s["sd"] is None:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, s["n"] - 1) * s["sd"] / math.sqrt(s["n"])
    return [s["mean"] - half, s["mean"] + half]


def bootstrap_ci(samples, statistic, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED, batch=None):
    """[lo, hi] percentile interval of `statistic` over paired bootstrap resamples of `samples`.

    samples: a tuple of equal-length 1-d arrays resampled together (index i of each is one unit: one architecture,
    one split). statistic(*resampled) takes (B, n) arrays and returns (B,) values. Resamples where the statistic is
    undefined (NaN: e.g. all values tied for a rank correlation) are left out; [nan, nan] if all are.
    batch: resamples per call (bounds the memory of a statistic that holds (B, n, n) arrays).
    """
    with warnings.catch_warnings():  # scipy warns when undefined resamples make its own interval NaN; ours drops them
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(tuple(np.asarray(s, dtype=float) for s in samples), lambda *a, axis=-1: statistic(*a),
                              paired=True, vectorized=True, n_resamples=n_resamples, batch=batch, method="percentile",
                              confidence_level=confidence, rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return [math.nan, math.nan]
    alpha = (1 - confidence) / 2
    return [float(np.percentile(dist, 100 * alpha)), float(np.percentile(dist, 100 * (1 - alpha)))]


def bootstrap_mean_ci(values, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """[lo, hi] percentile bootstrap interval of the mean of the finite values; None with fewer than 2."""
    v = np.asarray(finite(values))
    if len(v) < 2:
        return None
    if np.ptp(v) == 0:  # every resample has the same mean
        return [float(v[0]), float(v[0])]
    return bootstrap_ci((v,), lambda r: r.mean(-1), confidence, n_resamples, seed)
