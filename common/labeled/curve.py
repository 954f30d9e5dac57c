"""A label-efficiency curve: its grid of runs (labeled fraction x arm x split seed), and its results -- test balanced
accuracy per fraction and arm (mean ± SD over split seeds) and the pre-training gain per fraction, paired by split
seed, with a bootstrap CI (common/labeled/repeats.py) -- as curve.csv, curve.md and label_curve.png."""
import csv
import io
import math
from dataclasses import dataclass

from common import figures, stats
from common.labeled import repeats
from common.machine import cpu_name, usable_cores
from common.runs import atomic_write_bytes, atomic_write_text

ARMS = ("scratch", "pretrained")  # trained from random weights | from the self-supervised pre-trained backbone
COLUMNS = ("fraction", "arm", "seed", "status", "n_labeled", "n_train", "epochs", "balanced_accuracy", "auc_macro",
           "accuracy", "val_balanced_accuracy", "best_epoch", "seconds", "run", "reason")


@dataclass(frozen=True)
class Cell:
    """One training of the curve: a labeled fraction, an arm, a split seed (also its training seed)."""

    fraction: float
    arm: str
    seed: int

    @property
    def name(self):
        return f"{self.arm}_f{self.fraction:g}_s{self.seed}"


def grid(fractions, seeds, arms=ARMS):
    """The cells in run order: seed by seed (a killed curve has whole seeds done), small fractions first."""
    return [Cell(float(f), arm, int(s)) for s in seeds for f in sorted(fractions) for arm in arms]


def epochs_for(n_labeled, batch_size, epochs, min_steps):
    """Labeled epochs of a run on n_labeled images: EPOCHS, or more where that many would make fewer than min_steps
    SGD steps (a full batch per step, the last partial one dropped as the loader does, one step for a single batch).
    Without the floor, 5 % of the labels would mean 20x fewer steps: the curve would measure under-training."""
    steps = n_labeled // batch_size if n_labeled > batch_size else 1
    return max(epochs, math.ceil(min_steps / steps))


def machine():
    """'<CPU model>, <n> cores': for the notes of curve.md."""
    return f"{cpu_name()}, {usable_cores()} cores"


def row(cell, metrics=None, **extra):
    """A curve.csv row of a cell: from its metrics.json (test metrics, the selected epoch's validation, sizes) and
    what the driver knows (run folder, seconds, status, reason)."""
    out = {"fraction": cell.fraction, "arm": cell.arm, "seed": cell.seed, "status": "ok" if metrics else "fail"}
    if metrics:
        dataset = metrics.get("dataset") or {}
        out.update(balanced_accuracy=metrics.get("balanced_accuracy"), auc_macro=metrics.get("auc_macro"),
                   accuracy=metrics.get("accuracy"), best_epoch=metrics.get("best_epoch"), epochs=metrics.get("epochs"),
                   val_balanced_accuracy=(metrics.get("val_selected") or {}).get("balanced_accuracy"),
                   n_labeled=dataset.get("n_labeled", dataset.get("n_train")), n_train=dataset.get("n_train"))
    return {**out, **extra}


def summarise(rows, metric="balanced_accuracy"):
    """{'fractions': [...], 'arms': {arm: {fraction: spread}}, 'gain': {fraction: paired difference pretrained -
    scratch over the seeds both finished}, 'n_labeled': {fraction: labeled images (mean over seeds)}}."""
    ok = [r for r in rows if r["status"] == "ok"]
    fractions = sorted({r["fraction"] for r in rows})
    arms = {a: {f: stats.spread(r[metric] for r in ok if r["arm"] == a and r["fraction"] == f) for f in fractions}
            for a in ARMS}
    by_seed = {(a, f): {r["seed"]: r[metric] for r in ok if r["arm"] == a and r["fraction"] == f
                        if r[metric] is not None} for a in ARMS for f in fractions}
    gain = {f: repeats.paired_difference(by_seed[("pretrained", f)], by_seed[("scratch", f)]) for f in fractions}
    labeled = {f: stats.spread(r["n_labeled"] for r in ok if r["fraction"] == f)["mean"] for f in fractions}
    return {"fractions": fractions, "arms": arms, "gain": gain, "n_labeled": labeled}


def csv_text(rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows({k: "" if r.get(k) is None else r.get(k) for k in COLUMNS} for r in rows)
    return buf.getvalue()


def markdown(summary, rows, notes=()):
    """curve.md: one row per fraction (labeled images, each arm's mean ± SD and n, the gain with its CI), then notes."""
    lines = ["| labeled fraction | labeled images | from scratch | pre-trained | gain (pre-trained − scratch) [95% CI] "
             "| seeds |", "|---:|---:|---:|---:|---:|---:|"]
    for f in summary["fractions"]:
        s, p, g = summary["arms"]["scratch"][f], summary["arms"]["pretrained"][f], summary["gain"][f]
        n = summary["n_labeled"][f]
        lines.append(f"| {f:g} | {'n/a' if n is None else f'{n:.0f}'} | {repeats.mean_sd_text(s)} | "
                     f"{repeats.mean_sd_text(p)} | {repeats.difference_text(g)} | {s['n']} / {p['n']} |")
    failed = [r for r in rows if r["status"] != "ok"]
    out = ["Test balanced accuracy (mean ± SD over split seeds; chance = 1 / classes).", "", *lines, ""]
    out += [f"- {line}" for line in notes]
    out += [f"- failed: {r['arm']} at fraction {r['fraction']:g}, seed {r['seed']}: {r.get('reason')}" for r in failed]
    return "\n".join(out) + "\n"


def _nan_for_none(values):
    """None -> NaN, so matplotlib leaves a gap where a mean could not be computed."""
    return [math.nan if v is None else v for v in values]


def plot(summary, path, title):
    """Two panels: test balanced accuracy against the labeled fraction (log x) for both arms, mean ± SD; and the
    pre-training gain per fraction with its 95 % bootstrap CI (a zero line: no gain)."""
    import matplotlib
    from matplotlib.figure import Figure

    fs = summary["fractions"]
    with matplotlib.rc_context(figures.STYLE):
        fig = Figure(figsize=(8.5, 3.4), dpi=figures.DPI, layout="constrained")
        left, right = fig.subplots(1, 2)
        for arm, colour, marker, shift in (("scratch", figures.GREY, "s", 0.97), ("pretrained", figures.BLUE, "o", 1.03)):
            s = summary["arms"][arm]
            left.errorbar([f * shift for f in fs], _nan_for_none(s[f]["mean"] for f in fs),
                          yerr=[s[f]["sd"] or 0.0 for f in fs], fmt=f"-{marker}", color=colour, capsize=3, ms=5,
                          label="pre-trained (self-supervised)" if arm == "pretrained" else "from scratch")
        left.set_xscale("log")
        left.set_xticks(fs, [f"{f:g}" for f in fs])
        left.set_xlabel("labeled fraction of the training split (log scale)")
        left.set_ylabel("test balanced accuracy (mean ± SD)")
        left.legend(loc="lower right")
        g = summary["gain"]
        shown = [f for f in fs if g[f]["mean"] is not None]
        lo = [g[f]["mean"] - g[f]["ci"][0] if g[f]["ci"] else 0.0 for f in shown]
        hi = [g[f]["ci"][1] - g[f]["mean"] if g[f]["ci"] else 0.0 for f in shown]
        right.axhline(0, color=figures.GREY, lw=1, ls="--")
        right.errorbar(shown, [g[f]["mean"] for f in shown], yerr=[lo, hi], fmt="o", color=figures.ORANGE, capsize=3)
        right.set_xscale("log")
        right.set_xticks(fs, [f"{f:g}" for f in fs])
        right.set_xlabel("labeled fraction (log scale)")
        right.set_ylabel("gain in balanced accuracy [95% CI]")
        right.set_title("pre-trained − scratch, paired by split", fontsize=9)
        fig.suptitle(title, fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=figures.DPI)
    atomic_write_bytes(path, buf.getvalue())


def write(out_dir, rows, title, notes=()):
    """curve.csv, curve.md and label_curve.png from the rows so far; returns the summary."""
    summary = summarise(rows)
    atomic_write_text(out_dir / "curve.csv", csv_text(rows))
    atomic_write_text(out_dir / "curve.md", markdown(summary, rows, notes))
    plot(summary, out_dir / "label_curve.png", title)
    return summary
