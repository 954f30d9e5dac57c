"""Picking under noise: each finalist's re-measured scores, its paired difference from the best, the tied set (the
one-standard-error rule, fixed before the numbers) and the finalist handed over (SELECT). Pure functions on numbers.

The finalists are measured with the same seeds (common random numbers), so finalist i is judged by its paired
differences d_i(s) = loss_i(s) - loss_best(s) over the shared seeds s: the seed's luck, which both share, cancels.
Finalist i is tied with the best when mean(d_i) <= SE(d_i) = sd(d_i) / sqrt(n). Tied means the final round could
not tell it from the best at this budget, not that the two are equal.
"""
from common import stats

SELECTS = ("smallest", "fastest", "best")
RULE = ("tied with the best when the mean of its paired differences from the best over the shared seeds is at most "
        "one standard error of that mean (the one-standard-error rule, Breiman et al. 1984, with the standard error "
        "of the paired difference; scikit-learn's refit example uses the standard deviation instead)")
_TIEBREAK = {  # among the tied: what SELECT minimises, in order (a cell's trial number last: the earlier one)
    "smallest": ("macs", "params", "mean", "trial"),
    "fastest": ("latency_ms", "macs", "mean", "trial"),
    "best": ("mean", "trial"),
}


def summarize(finalists, losses):
    """One row per finalist, in the given order: its numbers over the seeds and whether it is tied with the best.

    finalists: [{'trial', 'params', 'macs', ...}] (the other keys are kept); losses: {trial: {seed: loss}} of the
    final round, a failed measurement left out. A finalist missing a seed the others have is `complete: False`,
    reported with what it has and never tied (it cannot be paired). Rows get: n, mean, se, ci (95 % t-interval of
    the mean), diff (mean of d_i), diff_se, diff_ci (95 % t-interval of the mean difference), best, tied, complete.
    """
    seeds = sorted({s for by_seed in losses.values() for s in by_seed})
    rows = []
    for f in finalists:
        mine = losses.get(f["trial"], {})
        values = [mine[s] for s in seeds if s in mine]
        rows.append({**f, "seeds": [s for s in seeds if s in mine], "losses": values,
                     "complete": bool(seeds) and all(s in mine for s in seeds),
                     "n": len(values), "mean": stats.spread(values)["mean"], "se": stats.standard_error(values),
                     "ci": stats.t_interval(values), "diff": None, "diff_se": None, "diff_ci": None,
                     "best": False, "tied": False})
    complete = [r for r in rows if r["complete"]]
    if not complete:
        return rows
    best = min(complete, key=lambda r: (r["mean"], r["trial"]))
    best["best"] = True
    for r in complete:
        d = [a - b for a, b in zip(r["losses"], best["losses"])]  # both in seed order: paired by seed
        r["diff"], r["diff_se"], r["diff_ci"] = stats.spread(d)["mean"], stats.standard_error(d), stats.t_interval(d)
        r["tied"] = r is best or (r["diff_se"] is not None and r["diff"] <= r["diff_se"])
    return rows


def select(rows, rule="smallest"):
    """(the chosen row, why) among the tied rows: the fewest MACs ('smallest'), the lowest latency ('fastest') or the
    lowest mean ('best', which is the best row itself). rows: summarize()'s; None when no finalist is complete."""
    if rule not in _TIEBREAK:
        raise ValueError(f"unknown SELECT {rule!r}; choose from {', '.join(SELECTS)}")
    tied = [r for r in rows if r["tied"]]
    if not tied:
        return None, "no finalist was measured with every seed"
    keys = _TIEBREAK[rule]
    chosen = min(tied, key=lambda r: tuple(r[k] if r.get(k) is not None else float("inf") for k in keys))
    best = next(r for r in rows if r["best"])
    if rule == "best" or len(tied) == 1:
        why = ("the lowest mean" if rule == "best" else "the only finalist tied with the best (the best itself)")
    else:
        what = {"smallest": "the fewest MACs", "fastest": "the lowest latency"}[rule]
        why = f"{what} of the {len(tied)} finalists tied with the best (trial {best['trial']})"
    return chosen, why
