"""The Pareto front of a search: score against the size of the eval network each cell becomes (MACs, parameters).

Trial a dominates trial b when a is no worse on every objective and better on at least one; the front is the set of
trials no other trial dominates. Both objectives are minimised: the search's loss (for a higher-is-better score,
its negation, as TPE sees it) and the size. Only trials that ran to the end count: a stopped trial's loss is an
earlier epoch's, and over-budget or failed proposals have none.
"""
import csv
import io

import numpy as np

from common.runs import atomic_write_text

SIZES = ("macs", "params")  # the size objectives, each paired with the loss
COLUMNS = ("trial", "loss", "macs", "params", "front_macs", "front_params", "finalist", "tied", "chosen")


def non_dominated(points):
    """(n,) bool: which rows of `points` (n, k), every column minimised, no other row dominates."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or not len(p):
        return np.zeros(len(p), dtype=bool)
    keep = np.ones(len(p), dtype=bool)
    order = np.lexsort(p.T[::-1])  # by the first column, then the next: a dominator sorts before what it dominates
    for i in order:
        if not keep[i]:
            continue
        dominated = np.all(p >= p[i], axis=1) & np.any(p > p[i], axis=1)
        keep &= ~dominated
    return keep


def front_rows(records, final=None):
    """One row per trial that ran to the end: its loss and sizes, whether it is on each front, and its part in the
    final round (final: {'finalists': [trial], 'tied': [trial], 'chosen': trial} or None)."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("loss") is not None
          and r.get("macs") is not None and r.get("params") is not None]
    final = final or {}
    finalists, tied = set(final.get("finalists", ())), set(final.get("tied", ()))
    rows = [{"trial": r["trial"], "loss": float(r["loss"]), "macs": int(r["macs"]), "params": int(r["params"]),
             "finalist": r["trial"] in finalists, "tied": r["trial"] in tied, "chosen": r["trial"] == final.get("chosen")}
            for r in ok]
    for size in SIZES:
        mask = non_dominated([[row["loss"], row[size]] for row in rows])
        for row, on in zip(rows, mask):
            row[f"front_{size}"] = bool(on)
    return rows


def write_csv(path, rows):
    """pareto.csv: COLUMNS, one trial per line, by trial number."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r["trial"]):
        w.writerow([int(row[c]) if isinstance(row[c], bool) else row[c] for c in COLUMNS])
    atomic_write_text(path, buf.getvalue())
