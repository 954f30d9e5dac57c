"""Search strategies compared at equal compute: each search's summary from its trials.jsonl, a table per strategy
(CSV and markdown) and the figure of the best nce so far against the epochs spent (search/benchmark_strategies.py).

A strategy is a search algorithm with an early-stopping rule, written 'tpe' or 'tpe+median' (ALGO[+EARLY_STOP]).
"""
import csv
import io

import numpy as np

from common import figures  # its house style and PNG writer (figures.STYLE, _figure, _save), shared by every figure
from common.runs import atomic_write_text
from common.search.early_stop import RULES, epochs_trained
from common.search.strategy import ALGOS
from common.stats import spread

COLORS = (figures.GREY, figures.BLUE, figures.GREEN, figures.ORANGE, figures.RED, "#9467bd", "#8c564b")


def parse_strategy(name):
    """'tpe+median' -> ('tpe', 'median'); 'evolution' -> ('evolution', 'none'). ValueError naming the choices."""
    algo, _, rule = str(name).partition("+")
    rule = rule or "none"
    if algo not in ALGOS or rule not in RULES:
        raise ValueError(f"strategy {name!r}: write ALGO or ALGO+EARLY_STOP with ALGO one of {', '.join(ALGOS)} and "
                         f"EARLY_STOP one of {', '.join(r for r in RULES if r != 'none')}, e.g. 'tpe+median'")
    return algo, rule


def summarize_search(records, cfg):
    """One finished search (its trials.jsonl records, in completion order, and its config) -> the figures compared.

    curve: [(epochs spent, best loss of a trial that ran to the end so far, or None)] after each record.
    """
    spent, best, curve = 0, None, []
    for r in records:
        spent += epochs_trained(r, cfg)
        if r["status"] == "ok" and (best is None or r["loss"] < best["loss"]):
            best = r
        curve.append((spent, None if best is None else best["loss"]))
    count = {s: sum(r["status"] == s for r in records) for s in ("ok", "stopped", "fail", "over_budget")}
    return {"epochs": spent, "trials_ok": count["ok"], "trials_stopped": count["stopped"], "trials_failed": count["fail"],
            "over_budget": count["over_budget"], "train_s": round(sum(r.get("seconds", 0.0) for r in records), 1),
            "best_nce": None if best is None else best["loss"], "best_trial": None if best is None else best["trial"],
            "best_genotype": None if best is None else best["genotype"], "curve": curve}


def best_so_far(curve, grid):
    """The curve as a step function on an epoch grid: at e, the best loss among records finished within e epochs
    (NaN before the first trial that ran to the end)."""
    out = np.full(len(grid), np.nan)
    for spent, best in curve:
        if best is not None:
            out[np.asarray(grid) >= spent] = best
    return out


def _mean_sd(values):
    """(mean, SD) of the finite values, as repeated runs are summarised everywhere (common.stats.spread)."""
    s = spread(values)
    return s["mean"], s["sd"]


def strategy_rows(searches, strategies):
    """One row per strategy from searches [{'strategy', 'seed', 'wall_s', 'wall_partial', **summarize_search}],
    in `strategies` order. delta_nce: the paired difference from the first strategy's search with the same seed
    (same images, training seed and proposal seed: common random numbers), mean and SD over seeds."""
    base = {s["seed"]: s["best_nce"] for s in searches if s["strategy"] == strategies[0]}
    rows = []
    for name in strategies:
        mine = sorted((s for s in searches if s["strategy"] == name), key=lambda s: s["seed"])
        if not mine:
            continue
        nce, nce_sd = _mean_sd([s["best_nce"] for s in mine])
        wall, wall_sd = _mean_sd([s["wall_s"] for s in mine])
        diffs = [s["best_nce"] - base[s["seed"]] for s in mine
                 if s["best_nce"] is not None and base.get(s["seed"]) is not None]
        delta, delta_sd = _mean_sd(diffs) if name != strategies[0] else (None, None)
        rows.append({
            "strategy": name, "seeds": len(mine), "epochs": round(float(np.mean([s["epochs"] for s in mine])), 1),
            "trials_ok": round(float(np.mean([s["trials_ok"] for s in mine])), 1),
            "trials_stopped": round(float(np.mean([s["trials_stopped"] for s in mine])), 1),
            "trials_failed": sum(s["trials_failed"] for s in mine),
            "wall_min": _round(wall, 60), "wall_min_sd": _round(wall_sd, 60),
            "wall_partial": any(s["wall_partial"] for s in mine),
            "train_min": round(float(np.mean([s["train_s"] for s in mine])) / 60, 2),
            "best_nce": _round(nce), "best_nce_sd": _round(nce_sd), "delta_nce": _round(delta),
            "delta_nce_sd": _round(delta_sd), "best_nce_by_seed": " ".join(_fmt(s["best_nce"]) for s in mine),
        })
    return rows


def _round(value, divide=1.0, digits=4):
    return None if value is None else round(value / divide, digits)


def _fmt(value, digits=4, sign=False):
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _pm(mean, sd, digits=4, sign=False):
    return _fmt(mean, digits, sign) + ("" if sd is None else f" ± {sd:.{digits}f}")


def write_table(rows, csv_path, md_path, header_lines=()):
    """strategies.csv (every column) and strategies.md (the table a README shows, after `header_lines`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["strategy"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    lines = [*header_lines, "",
             "| strategy | seeds | epochs trained | trials (stopped) | wall min | best nce (mean ± SD) | Δ nce vs "
             f"{rows[0]['strategy'] if rows else 'first'} (paired) | best nce per seed |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        trials = f"{r['trials_ok'] + r['trials_stopped']:g}" + (f" ({r['trials_stopped']:g})" if r["trials_stopped"] else "")
        wall = _pm(r["wall_min"], r["wall_min_sd"], 1) + (" †" if r["wall_partial"] else "")
        lines.append(f"| {r['strategy']} | {r['seeds']} | {r['epochs']:g} | {trials} | {wall} | "
                     f"{_pm(r['best_nce'], r['best_nce_sd'])} | {_pm(r['delta_nce'], r['delta_nce_sd'], sign=True)} | "
                     f"{r['best_nce_by_seed']} |")
    if any(r["wall_partial"] for r in rows):
        lines.append("\n† a search was resumed after a kill: the time of the killed attempt is not counted")
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return "\n".join(lines)


def plot_best_so_far(searches, strategies, budget, path):
    """Best nce so far (of trials that ran to the end) against epochs spent: per strategy the mean over seeds (line)
    ± SD (band), drawn where every seed has a finished trial."""
    import matplotlib

    grid = np.arange(0, budget + 1)
    with matplotlib.rc_context(figures.STYLE):
        fig = figures._figure((5.6, 3.6))
        ax = fig.add_subplot()
        for i, name in enumerate(strategies):
            curves = np.array([best_so_far(s["curve"], grid) for s in searches if s["strategy"] == name])
            if not len(curves):
                continue
            seen = ~np.isnan(curves).any(axis=0)
            if not seen.any():
                continue
            mean = curves[:, seen].mean(axis=0)
            color = COLORS[i % len(COLORS)]
            ax.step(grid[seen], mean, where="post", color=color, lw=1.6, label=f"{name} (n={len(curves)})")
            if len(curves) > 1:
                sd = curves[:, seen].std(axis=0, ddof=1)
                ax.fill_between(grid[seen], mean - sd, mean + sd, step="post", color=color, alpha=0.15, lw=0)
        ax.set_xlim(0, budget)
        ax.set_xlabel("training epochs spent")
        ax.set_ylabel("best nce so far (lower is better)")
        ax.set_title("search strategies at equal compute (mean ± SD over seeds)")
        ax.legend(loc="best")
        figures._save(fig, path)
