"""A comparison of models: the Markdown tables and notes, the CSVs, accuracy against MACs, and the output folder."""
import csv
import io
import math
from pathlib import Path

from common import figures, runs, stats
from common.config import ConfigError
from common.labeled import repeats
from common.labeled.run_groups import METRICS
from common.stats import finite

OUTPUTS = ("config.json", "comparison.md", "comparison.csv", "models.csv", "paired.csv", "accuracy_vs_macs.png")


# ----------------------------------------------------------------------------- tables


def _fmt(v, scale=1.0, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v / scale:.{digits}f}"


def _bold_best(text, value, best, many):
    return f"**{text}**" if many and value is not None and value == best else text


def models_table(models):
    """One row per model: runs, splits, size, speed, balanced accuracy and macro AUC as mean ± SD over its runs."""
    head = ["model", "runs", "splits", "px", "params (M)", "MACs (M)", "CPU ms", "balanced acc.", "macro AUC"]
    best = {k: max((m[k] for m in models if m[k] is not None), default=None) for k in METRICS}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in models:
        cells = [m["name"].replace("|", "/"), str(m["n"]), str(m["splits"]), _fmt(m["image_size"], digits=0),
                 _fmt(m["params"], 1e6, 2), _fmt(m["macs"], 1e6, 1), _fmt(m["cpu_latency_ms"], digits=1)]
        cells += [_bold_best(repeats.mean_sd_text(m[f"{k}_spread"]), m[k], best[k], len(models) > 1) for k in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paired_table(pairs):
    head = ["model A", "model B", "shared splits", "balanced acc. A − B [95% CI]", "macro AUC A − B [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|"]
    for p in pairs:
        lines.append("| " + " | ".join([p["a"].replace("|", "/"), p["b"].replace("|", "/"), str(p["splits"]),
                                        repeats.difference_text(p["balanced_accuracy"]),
                                        repeats.difference_text(p["auc_macro"])]) + " |")
    return lines


def runs_table(rows):
    """One row per run (best balanced accuracy and AUC in bold), with its seeds and per-class recall."""
    classes = [str(c) for c in rows[0]["classes"]]
    head = ["run", "genotype / arch", "SEED", "SPLIT_SEED", "px", "params (M)", "MACs (M)", "CPU ms", "balanced acc.",
            "macro AUC", *[f"recall {c}" for c in classes]]
    best = {k: max((r[k] for r in rows if r[k] is not None), default=None) for k in METRICS}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [r["name"], r["arch"].replace("|", "/"), str(r["seed"]), str(r["split_seed"]),
                 _fmt(r["image_size"], digits=0), _fmt(r["params"], 1e6, 2), _fmt(r["macs"], 1e6, 1),
                 _fmt(r["cpu_latency_ms"], digits=1)]
        cells += [_bold_best(_fmt(r[k]), r[k], best[k], len(rows) > 1) for k in METRICS]
        cells += [_fmt(r["recall"].get(c), digits=2) for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_report(rows, models, pairs):
    """comparison.md: the models (mean ± SD over runs), their paired differences, every run, and notes."""
    parts = ["## Models (mean ± SD over each model's runs)", "", *models_table(models), ""]
    if pairs:
        parts += ["## Paired differences over shared splits", "", *paired_table(pairs), ""]
    parts += ["## Runs", "", *runs_table(rows), "", *table_notes(rows, models, pairs)]
    return "\n".join(parts) + "\n"


def table_notes(rows, models, pairs):
    first = rows[0]
    sizes = sorted({r["n"] for r in rows if r["n"] is not None})
    n_splits = len({r["split_sha1"] for r in rows})
    notes = [f"Metrics on the {first['headline']} split ({first['layout']}, n = {', '.join(map(str, sizes))}, "
             f"{n_splits} split(s)); model selected by validation balanced accuracy.",
             "A model is one architecture with one set of settings; its runs differ only in SEED and SPLIT_SEED. "
             "SD is the sample SD over its runs (none for a single run)."]
    if pairs:
        notes.append(f"Paired differences: per split both models' means over their runs there, A minus B, averaged over "
                     f"the splits both ran; {stats.CONFIDENCE:.0%} percentile bootstrap interval over those splits "
                     f"(scipy.stats.bootstrap, {stats.N_RESAMPLES} resamples). With few splits (under about 10) the "
                     "interval is too narrow: it cannot see beyond the splits that were drawn.")
    elif len(models) > 1:
        notes.append("No two models share a split, so no paired differences: run them with the same SPLIT_SEED values.")
    notes.append("MACs = FLOPs/2 from torch.utils.flop_counter, one image at the run's px, convolutions and matrix "
                 "products only; params leave out the auxiliary head. CPU ms: batch 1, median over the timed runs "
                 "(per model: the median over its runs).")
    threads = sorted({r["cpu_threads"] for r in rows if r["cpu_threads"] is not None})
    if len(threads) > 1:
        notes.append(f"Warning: CPU latencies were measured with different thread counts ({', '.join(map(str, threads))}); "
                     "they are not comparable.")
    elif threads:
        notes.append(f"CPU latencies with {threads[0]} thread(s), each on the machine that trained the run.")
    no_card = [r["name"] for r in rows if not r["has_card"]]
    if no_card:
        notes.append(f"No model_card.json (size and speed n/a): {', '.join(no_card)}.")
    return notes


def _csv(cols, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def csv_text(rows, models):
    """The runs as CSV with raw numbers (no units scaled), their model's name, one recall column per class."""
    classes = [str(c) for c in rows[0]["classes"]]
    model_of = {id(r): m["name"] for m in models for r in m["runs"]}
    cols = ["name", "model", "arch", "kind", "seed", "split_seed", "image_size", "params", "macs", "cpu_latency_ms",
            "cpu_latency_p90_ms", "cpu_threads", "cuda_throughput_img_s", "accuracy", "balanced_accuracy", "auc_macro",
            "n", "headline", "split_sha1", "folder"]
    return _csv(cols + [f"recall_{c}" for c in classes],
                [[model_of[id(r)] if c == "model" else r[c] for c in cols] + [r["recall"].get(c) for c in classes]
                 for r in rows])


def models_csv(models):
    """One line per model: n, splits, seeds, size, speed, mean and SD of each metric."""
    cols = ["model", "arch", "kind", "runs", "splits", "seeds", "split_seeds", "image_size", "params", "macs",
            "cpu_latency_ms"]
    stats = [f"{k}_{s}" for k in METRICS for s in ("mean", "sd")]
    return _csv(cols + stats, [
        [m["name"], m["arch"], m["kind"], m["n"], m["splits"], " ".join(map(str, m["seeds"])),
         " ".join(map(str, m["split_seeds"])), m["image_size"], m["params"], m["macs"], m["cpu_latency_ms"]]
        + [m[f"{k}_spread"][s] for k in METRICS for s in ("mean", "sd")] for m in models])


def paired_csv(pairs):
    cols = ["model_a", "model_b"] + [f"{k}_{s}" for k in METRICS for s in ("splits", "diff", "ci_low", "ci_high")]
    return _csv(cols, [[p["a"], p["b"]] + [v for k in METRICS for v in (
        p[k]["n"], p[k]["mean"], *(p[k]["ci"] or (None, None)))] for p in pairs])


# ----------------------------------------------------------------------------- figure


def pareto_front(points):
    """(macs, accuracy) points no other point beats with fewer or equal MACs, by increasing MACs."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_accuracy_vs_macs(models, path, title):
    """Balanced accuracy against MACs (log x): per model its mean with an SD error bar (two or more runs) and its
    runs as small dots, searched cells and baselines apart, the Pareto front of the means dashed. Models without
    MACs are left out and counted in the title."""
    import matplotlib
    from matplotlib.figure import Figure

    blue, grey, orange = figures.BLUE, figures.GREY, figures.ORANGE
    shown = [m for m in models if m["macs"] and m["balanced_accuracy"] is not None]
    with matplotlib.rc_context(figures.STYLE):
        fig = Figure(figsize=(5.5, 3.8), dpi=figures.DPI, layout="constrained")  # bare Figure: the Agg canvas, no pyplot
        ax = fig.add_subplot()
        for kind, colour, marker, label in (("genotype", blue, "o", "searched / DARTS cells"),
                                            ("baseline", grey, "s", "torchvision baseline")):
            pts = [m for m in shown if m["kind"] == kind]
            if not pts:
                continue
            x = [m["macs"] / 1e6 for m in pts]
            ax.errorbar(x, [m["balanced_accuracy"] for m in pts],
                        yerr=[m["balanced_accuracy_spread"]["sd"] or 0.0 for m in pts], fmt=marker, ms=6,
                        color=colour, mec="black", mew=0.5, ecolor=colour, elinewidth=1, capsize=3, label=label,
                        zorder=3)
            for m in pts:  # the single runs behind each mean
                ys = finite(r["balanced_accuracy"] for r in m["runs"])
                if len(ys) > 1:
                    ax.scatter([m["macs"] / 1e6] * len(ys), ys, s=8, color=colour, alpha=0.4, lw=0, zorder=2)
        for m in shown:
            ax.annotate(m["name"] + (f" (n={m['n']})" if m["n"] > 1 else ""), (m["macs"] / 1e6, m["balanced_accuracy"]),
                        xytext=(5, 4), textcoords="offset points", fontsize=7)
        front = pareto_front([(m["macs"] / 1e6, m["balanced_accuracy"]) for m in shown])
        if len(front) > 1:
            x, y = zip(*front)
            ax.step(x, y, where="post", ls="--", lw=1, color=orange, label="Pareto front (means)", zorder=1)
        if shown:
            ax.set_xscale("log")
            ax.margins(x=0.15, y=0.12)  # room for the labels at the edges
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no run has a model_card.json with MACs", transform=ax.transAxes, ha="center",
                    va="center", color=grey)
        left_out = len(models) - len(shown)
        ax.set_title(title + (f" ({left_out} model(s) without MACs not shown)" if left_out else ""))
        ax.set_xlabel("MACs per image (millions, log scale)")
        ax.set_ylabel(f"balanced accuracy ({models[0]['runs'][0]['headline']}), mean ± SD")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=figures.DPI)
    runs.atomic_write_bytes(path, buf.getvalue())



# ----------------------------------------------------------------------------- output folder


def open_out_dir(out_dir, inputs):
    """The output folder: new, or one holding only this script's files (never inside a run it reads)."""
    path = Path(out_dir).expanduser() if out_dir else runs.new_run_dir("compare")
    resolved = path.resolve()
    if any(resolved == p or p in resolved.parents for p in inputs):
        raise ConfigError(f"OUT_DIR {path} lies inside a run folder being compared; choose another folder")
    if path.exists():
        others = [p.name for p in path.iterdir() if p.name not in OUTPUTS and not p.name.startswith(".")]
        if others:
            raise ConfigError(f"OUT_DIR {path} holds other files ({', '.join(sorted(others)[:3])}); choose a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path

