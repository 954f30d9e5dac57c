"""Small publication-style PNG figures: search curve, training curves, confusion matrix (each returned, for tests)."""
import io
import math
from pathlib import Path

import numpy as np

from common.runs import atomic_write_bytes

DPI = 120  # README figures stay small PNGs (tens of KB)
STYLE = {  # applied per figure, never globally
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"


def _figure(figsize):
    # a bare Figure (no pyplot): no backend, no global figure list, freed when it goes out of scope
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _save(fig, path):
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    # a 256-colour palette looks the same for line art and shrinks the file about threefold
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        buf = io.BytesIO()
        im.convert("RGB").quantize(256).save(buf, format="png", optimize=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _num(v):
    """A finite float or NaN (None, strings and inf all become gaps in a line)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def plot_search_curve(trials, path):
    """Loss per successful trial (dots), running best (step line), failed trials (red x along the top) and trials
    stopped early (grey triangles along the top: their loss is an earlier epoch's, not comparable)."""
    import matplotlib

    trials = sorted(trials, key=lambda t: t.get("trial", 0))
    good = [t.get("status") == "ok" and math.isfinite(_num(t.get("loss"))) for t in trials]
    ok = [(t.get("trial", 0), _num(t.get("loss"))) for t, g in zip(trials, good) if g]
    stopped = [t.get("trial", 0) for t in trials if t.get("status") == "stopped"]
    failed = [t.get("trial", 0) for t, g in zip(trials, good)  # 'fail', or 'ok' without a usable loss
              if not g and t.get("status") != "stopped"]
    with matplotlib.rc_context(STYLE):
        fig = _figure((5, 3.2))
        ax = fig.add_subplot()
        if ok:
            x, y = np.array(ok).T
            best = np.minimum.accumulate(y)
            ax.scatter(x, y, s=14, color=BLUE, alpha=0.6, lw=0, label="trial", zorder=3)
            # extend the running best to the last trial so the line spans the whole search
            x_end = max(x[-1], max(failed + stopped, default=x[-1]))
            ax.step(np.append(x, x_end), np.append(best, best[-1]), where="post", color=ORANGE, lw=1.6,
                    label="best so far", zorder=2)
            i = int(np.argmin(y))
            ax.scatter([x[i]], [y[i]], s=60, marker="*", color=ORANGE, edgecolor="black", lw=0.5, zorder=4)
            title = f"{len(trials)} trials, best {y[i]:.4f} (trial {int(x[i])})"
            if y.max() > y.min():
                pad = 0.08 * (y.max() - y.min())
                ax.set_ylim(y.min() - pad, y.max() + 2 * pad)  # headroom for the failure marks
        else:
            title = f"{len(trials)} trials, none successful"
            ax.text(0.5, 0.5, "no successful trial", transform=ax.transAxes, ha="center", va="center", color=GREY)
            ax.set_yticks([])
        if failed:
            # failures have no loss: mark them along the top edge (x in data units, y in axes units)
            ax.scatter(failed, [0.96] * len(failed), transform=ax.get_xaxis_transform(), marker="x", s=22,
                       color=RED, lw=1.2, label=f"failed ({len(failed)})", zorder=4, clip_on=False)
        if stopped:
            ax.scatter(stopped, [0.96] * len(stopped), transform=ax.get_xaxis_transform(), marker="v", s=18,
                       color=GREY, lw=0, label=f"stopped early ({len(stopped)})", zorder=4, clip_on=False)
        if trials:
            ax.legend(loc="best")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("trial")
        ax.set_ylabel("contrastive loss (last epoch)")
        ax.set_title(title)
        _save(fig, path)
    return fig


def plot_training_curves(history, path):
    """Three panels per epoch: train/val loss; balanced accuracy, accuracy and AUC; learning rate."""
    import matplotlib

    history = sorted(history, key=lambda h: h.get("epoch", 0))
    ep = np.array([_num(h.get("epoch")) for h in history])

    def col(key):
        return np.array([_num(h.get(key)) for h in history])

    marker = "o" if len(history) <= 30 else None  # short runs: dots, so a single epoch still shows
    style = dict(marker=marker, ms=3, lw=1.4)
    with matplotlib.rc_context(STYLE):
        fig = _figure((10, 3))
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)

        for key, label, c in (("train_loss", "train", BLUE), ("val_loss", "validation", ORANGE)):
            if np.isfinite(col(key)).any():
                ax_loss.plot(ep, col(key), color=c, label=label, **style)
        ax_loss.set_title("loss")

        for key, label, c in (("val_balanced_accuracy", "balanced accuracy", BLUE), ("val_accuracy", "accuracy", GREY),
                              ("val_auc_macro", "macro AUC", GREEN)):
            if np.isfinite(col(key)).any():
                ax_acc.plot(ep, col(key), color=c, label=label, **style)
        bacc = col("val_balanced_accuracy")
        if np.isfinite(bacc).any():
            i = int(np.nanargmax(bacc))  # the checkpoint kept as best.pt
            ax_acc.scatter([ep[i]], [bacc[i]], marker="*", s=80, color=ORANGE, edgecolor="black", lw=0.5, zorder=4,
                           label=f"best {bacc[i]:.3f} (epoch {int(ep[i])})")
        ax_acc.set_ylim(0, 1.02)
        ax_acc.set_title("validation")

        lr = col("lr")
        if np.isfinite(lr).any():
            ax_lr.plot(ep, lr, color=GREY, **style)
            pos = lr[np.isfinite(lr) & (lr > 0)]
            if len(pos) and pos.max() / pos.min() > 20:
                ax_lr.set_yscale("log")  # cosine schedules span decades
        ax_lr.set_title("learning rate")
        if ax_lr.get_yscale() == "linear":
            ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))

        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlabel("epoch")
            if 0 < len(history) <= 12:
                ax.set_xticks(ep[np.isfinite(ep)])  # few epochs: one tick each (also avoids 0.98, 1.02 for one)
            else:
                ax.xaxis.get_major_locator().set_params(integer=True)
            if not history:
                ax.text(0.5, 0.5, "no epochs yet", transform=ax.transAxes, ha="center", va="center", color=GREY)
            elif ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best")
        _save(fig, path)
    return fig


def plot_confusion_matrix(cm, classes, path, normalize=True, label=None):
    """Rows = true, columns = predicted; colours are row fractions (or counts), cells show counts and %.
    label: what was scored (e.g. 'test, epoch 7'), put before the title."""
    import matplotlib

    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} classes")
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)  # empty rows stay 0
    colour = frac if normalize else cm
    vmax = 1.0 if normalize else max(int(cm.max()), 1)
    side = 1.4 + 0.5 * max(k, 4)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = _figure((side + 0.9, side))
        ax = fig.add_subplot()
        im = ax.imshow(colour, cmap="Blues", vmin=0, vmax=vmax)
        small = 7 if k > 6 else 8
        for i in range(k):
            for j in range(k):
                text = f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%" if rows[i, 0] else "0"
                dark = colour[i, j] > 0.55 * vmax
                ax.text(j, i, text, ha="center", va="center", fontsize=small, linespacing=1.1,
                        color="white" if dark else "#222222", fontweight="bold" if i == j else "normal")
        labels = [str(c) for c in classes]
        long = max((len(s) for s in labels), default=0) > 4
        ax.set_xticks(range(k), labels, rotation=45 if long else 0, ha="right" if long else "center")
        ax.set_yticks(range(k), [f"{c} (n={int(n)})" for c, n in zip(labels, rows[:, 0])])
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        n, hits = int(cm.sum()), int(np.trace(cm))
        present = rows[:, 0] > 0
        bacc = float(np.mean(np.diag(frac)[present])) if present.any() else math.nan
        title = f"n = {n}, accuracy {hits / max(n, 1):.3f}, balanced {bacc:.3f}" if n else "no samples"
        ax.set_title(f"{label}: {title}" if label else title)
        fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
        _save(fig, path)
    return fig


def plot_pareto(rows, path, final=None):
    """The search's trade-off between score and size: loss against the eval network's MACs and parameters, every
    trial that ran to the end (dominated ones grey, the non-dominated front in colour with its staircase), the
    finalists circled and the chosen cell starred; with a final round, a third panel of the finalists' re-measured
    mean ± standard error against MACs (tied ones filled). rows: common.search.pareto.front_rows(); final: the
    final round's summary (common.search.results.final_summary) or None."""
    import matplotlib

    panels = [("macs", "MACs per image (millions)"), ("params", "parameters (millions)")]
    with matplotlib.rc_context(STYLE):
        fig = _figure((11 if final else 7.5, 3.2))
        axes = fig.subplots(1, 3 if final else 2)
        for ax, (size, label) in zip(axes, panels):
            if not rows:
                ax.text(0.5, 0.5, "no trial ran to the end", transform=ax.transAxes, ha="center", va="center",
                        color=GREY)
                continue
            x = np.array([r[size] for r in rows], dtype=float) / 1e6
            y = np.array([r["loss"] for r in rows], dtype=float)
            front = np.array([r[f"front_{size}"] for r in rows])
            ax.scatter(x[~front], y[~front], s=12, color=GREY, alpha=0.45, lw=0, label="dominated")
            order = np.argsort(x[front], kind="stable")
            fx, fy = x[front][order], y[front][order]
            ax.step(fx, fy, where="post", color=BLUE, lw=1.2, alpha=0.7)
            ax.scatter(fx, fy, s=22, color=BLUE, lw=0, label=f"front ({int(front.sum())})", zorder=3)
            fin = np.array([r["finalist"] for r in rows])
            if fin.any():
                ax.scatter(x[fin], y[fin], s=70, facecolor="none", edgecolor=ORANGE, lw=1.3, label="finalist", zorder=4)
            chosen = np.array([r["chosen"] for r in rows])
            if chosen.any():
                ax.scatter(x[chosen], y[chosen], s=160, marker="*", color=ORANGE, edgecolor="black", lw=0.6,
                           label="chosen", zorder=5)
            ax.set_xlabel(label)
            ax.set_ylabel("search loss (lower is better)")
            ax.legend(loc="best")
        if final:
            _final_panel(axes[2], final)
        fig.suptitle(f"{len(rows)} trials: score against the size of the network each cell becomes", fontsize=10)
        _save(fig, path)
    return fig


def _final_panel(ax, final):
    """The finalists' final-round mean ± SE against MACs; tied ones filled, the chosen one starred."""
    done = [f for f in final["finalists"] if f["mean"] is not None and f["macs"] is not None]
    for f in done:
        x, tied = f["macs"] / 1e6, f["tied"]
        ax.errorbar([x], [f["mean"]], yerr=[f["se"] or 0.0], fmt="o", ms=6, color=GREEN if tied else GREY,
                    mfc=GREEN if tied else "white", capsize=3, lw=1.2, zorder=3)
        if f["trial"] == final["chosen"]:
            ax.scatter([x], [f["mean"]], s=180, marker="*", color=ORANGE, edgecolor="black", lw=0.6, zorder=4)
        ax.annotate(f"#{f['trial']}", (x, f["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel(f"{final['score']}: mean ± SE over {len(final['seeds'])} seeds")
    ax.set_title("final round (filled: tied with the best)", fontsize=9)
