"""Figures of a proxy study: each score against labeled accuracy, and every score's rank correlation with its CI."""
import math
from dataclasses import dataclass

import numpy as np

from common import figures  # its house style and PNG writer (figures.STYLE, _figure, _save), shared by every figure

_SOURCE_STYLE = {"random": dict(color=figures.BLUE, marker="o", label="random genotypes"),
                 "search": dict(color=figures.ORANGE, marker="*", s=90, edgecolor="black", lw=0.5,
                                label="search's best")}


def _fmt(value, digits=2):
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def correlation_label(entry):
    """'rho +0.42 [-0.10, +0.80]' from a correlations.json entry (spearman, spearman_ci)."""
    lo, hi = entry.get("spearman_ci") or (None, None)
    return f"rho {_fmt(entry.get('spearman'))} [{_fmt(lo)}, {_fmt(hi)}]"


@dataclass(frozen=True, kw_only=True)
class ScorePoints:
    """A scatter's points, one per genotype: the score (x), the truth (y) and the genotype's source (its colour).

    truth_by_seed: (n, S) per-seed truths, drawn as a thin vertical bar from the lowest to the highest seed, so the
    labels' own noise shows next to the score's spread; None draws no bars.
    """

    score: object  # (n,) array-like
    truth: object  # (n,) array-like
    sources: object  # (n,) "random" / "search"
    truth_by_seed: object = None


def plot_score_scatter(path, name, points, entry, higher_is_better, truth_label="validation balanced accuracy"):
    """One score (x) against labeled accuracy (y): ScorePoints `points`, coloured by source.

    entry: the score's correlations.json entry (title). A positive score spanning more than two decades is drawn on a
    log axis (synflow, parameters, MACs).
    """
    import matplotlib

    score, truth, sources, truth_by_seed = points.score, points.truth, points.sources, points.truth_by_seed
    x, y = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    with matplotlib.rc_context(figures.STYLE):
        fig = figures._figure((4.2, 3.4))
        ax = fig.add_subplot()
        if truth_by_seed is not None:
            seeds = np.asarray(truth_by_seed, dtype=float)
            lo, hi = np.nanmin(seeds, axis=1), np.nanmax(seeds, axis=1)
            for i in np.flatnonzero(ok & np.isfinite(lo)):
                ax.plot([x[i], x[i]], [lo[i], hi[i]], color=figures.GREY, lw=0.8, alpha=0.7, zorder=1)
        for source, style in _SOURCE_STYLE.items():
            pick = ok & (np.asarray(sources) == source)
            if pick.any():
                ax.scatter(x[pick], y[pick], zorder=3, **{"s": 22, "alpha": 0.85, **style})
        pos = x[ok][x[ok] > 0]
        if len(pos) == ok.sum() and len(pos) > 1 and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        if not ok.any():
            ax.text(0.5, 0.5, "no genotype with both values", transform=ax.transAxes, ha="center", color=figures.GREY)
        ax.set_xlabel(f"{name} ({'higher' if higher_is_better else 'lower'} predicts better)")
        ax.set_ylabel(truth_label)
        ax.set_title(f"{name}: {correlation_label(entry)}, n {entry.get('n', int(ok.sum()))}")
        if ok.any() and len(set(np.asarray(sources)[ok])) > 1:
            ax.legend(loc="best")
        figures._save(fig, path)


def plot_correlation_bars(path, names, entries, ceiling=None, title="rank correlation with labeled accuracy"):
    """Spearman rho per score with its 95% bootstrap interval; the labels' seed-to-seed ceiling as dashed lines.

    entries: {name: correlations.json entry}; ceiling: its 'ceiling' entry (spearman, spearman_of_mean) or None.
    """
    import matplotlib

    rho = np.array([entries[n].get("spearman") if entries[n].get("spearman") is not None else np.nan for n in names])
    cis = np.array([[v if v is not None else np.nan for v in (entries[n].get("spearman_ci") or (None, None))]
                    for n in names]).reshape(len(names), 2)
    with matplotlib.rc_context(figures.STYLE):
        fig = figures._figure((1.2 + 0.8 * len(names), 3.2))
        ax = fig.add_subplot()
        pos = np.arange(len(names))
        heights = np.nan_to_num(rho)
        ax.bar(pos, heights, color=[figures.BLUE if h >= 0 else figures.RED for h in heights], width=0.6, zorder=2)
        err = np.abs(np.stack([rho - cis[:, 0], cis[:, 1] - rho]))
        ax.errorbar(pos, rho, yerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=1, capsize=3, zorder=3)
        for p, value in zip(pos, rho):
            if not np.isfinite(value):
                ax.text(p, 0.02, "n/a", ha="center", va="bottom", color=figures.GREY)
        ax.axhline(0, color="black", lw=0.8)
        if ceiling and ceiling.get("spearman") is not None:
            ax.axhline(ceiling["spearman"], color=figures.GREY, ls="--", lw=1,
                       label=f"seed vs seed {ceiling['spearman']:+.2f}")
            if ceiling.get("spearman_of_mean") is not None:
                ax.axhline(ceiling["spearman_of_mean"], color=figures.GREEN, ls=":", lw=1.2,
                           label=f"ceiling for the seed mean {ceiling['spearman_of_mean']:+.2f}")
            ax.legend(loc="lower right")
        ax.set_xticks(pos, names)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("Spearman rho (95% CI)")
        ax.set_title(title)
        figures._save(fig, path)
