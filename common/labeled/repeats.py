"""Repeated runs of one model over seeds and splits: mean ± SD, and paired differences with a bootstrap CI.

One test split of a few hundred images moves balanced accuracy by several points by luck alone, so a model is
judged over several splits (SPLIT_SEED) and training seeds (SEED). Two models are compared over the splits they
share: per split, each model's mean over its runs there; the difference of the two, averaged over the splits,
with a percentile bootstrap interval over splits (common/stats.py). Pairing removes the split's luck, which
both models share, from the comparison.
"""
import numpy as np

from common.stats import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES, bootstrap_mean_ci, finite


def per_split(pairs):
    """[(split, value), ...] -> {split: mean of the finite values on that split}; splits with none are left out."""
    out = {}
    for split, value in pairs:
        out.setdefault(split, []).append(value)
    return {s: float(np.mean(finite(v))) for s, v in out.items() if finite(v)}


def paired_difference(a, b, confidence=CONFIDENCE, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED):
    """a, b: {split: value} of two models -> {'n' (shared splits), 'mean' (of a - b), 'ci' ([lo, hi] or None),
    'splits' (the shared ones, sorted)}. mean is None when they share no split."""
    shared = sorted(set(a) & set(b), key=str)
    diffs = [a[s] - b[s] for s in shared]
    return {"n": len(diffs), "mean": float(np.mean(diffs)) if diffs else None,
            "ci": bootstrap_mean_ci(diffs, confidence, n_resamples, seed), "splits": shared}


def mean_sd_text(s, digits=3):
    """'0.512 ± 0.034' (n >= 2), '0.512' (n = 1) or 'n/a' from a spread() dict."""
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['sd']:.{digits}f}" if s["sd"] is not None else "")


def difference_text(d, digits=3):
    """'+0.041 [-0.012, +0.090]' (with a CI), '+0.041' (one shared split) or 'n/a' from a paired_difference() dict."""
    if d["mean"] is None:
        return "n/a"
    text = f"{d['mean']:+.{digits}f}"
    return text + (f" [{d['ci'][0]:+.{digits}f}, {d['ci'][1]:+.{digits}f}]" if d["ci"] is not None else "")
