"""Compare finished eval runs: one table of size, speed and accuracy (Markdown and CSV) and accuracy against MACs.

    python eval/compare.py                                   # every finished run under runs/eval
    python eval/compare.py runs/eval/A runs/eval/B           # these run folders (or folders holding run folders)
    python eval/compare.py runs/eval --SORT_BY=macs --OUT_DIR=runs/compare/isic

Any constant below can be set as --NAME=value; folders given as plain arguments replace RUNS. Runs scored on
different datasets or splits (metrics.json's split_sha1, classes, layout) are refused, not mixed into one table.
"""
import csv
import io
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common import (
    figures,  # noqa: E402  (figures.BLUE etc.: upper-case imports would count as settings)
    runs,
)
from common.config import ConfigError, configure, format_config, run_cli  # noqa: E402

# -----------------------------------------------------------------------------
RUNS = ()  # eval run folders, or folders holding them; () = every run under runs/eval; plain arguments replace it
OUT_DIR = None  # folder for comparison.md, comparison.csv, accuracy_vs_macs.png; None = runs/compare/<timestamp>
SORT_BY = "balanced_accuracy"  # balanced_accuracy (highest first) | auc_macro | macs | params | latency | name
DEBUG = False  # True: full tracebacks for user errors too
# -----------------------------------------------------------------------------

_SORT_KEYS = {  # column, and whether larger is better (then it goes first)
    "balanced_accuracy": ("balanced_accuracy", True), "auc_macro": ("auc_macro", True), "macs": ("macs", False),
    "params": ("params", False), "latency": ("cpu_latency_ms", False), "name": ("name", False),
}
_OUTPUTS = ("config.json", "comparison.md", "comparison.csv", "accuracy_vs_macs.png")
_SAME = (("split_sha1", "split (split_sha1)"), ("layout", "dataset layout"), ("classes", "classes"),
         ("headline", "headline split"))
_RUNTIME = {"debug": DEBUG}


# ----------------------------------------------------------------------------- config


def resolve_config(argv=None):
    """(config, folders): --NAME=value settings over the constants block; plain arguments are run folders."""
    argv = sys.argv[1:] if argv is None else list(argv)
    folders = [a for a in argv if not a.startswith("--")]
    namespace = dict(globals())
    cfg, _ = configure(namespace, [a for a in argv if a.startswith("--")])
    if folders:
        cfg["RUNS"] = tuple(folders)
    if cfg["SORT_BY"] not in _SORT_KEYS:
        raise ConfigError(f"--SORT_BY={cfg['SORT_BY']}: choose one of {', '.join(_SORT_KEYS)}")
    return cfg, [Path(p).expanduser() for p in cfg["RUNS"]] or [runs.RUNS_ROOT / "eval"]


# ----------------------------------------------------------------------------- runs


def _is_run(folder):
    return (folder / "config.json").is_file() or (folder / "metrics.json").is_file()


def find_runs(paths, log=print):
    """Run folders with a metrics.json among `paths` (run folders or their parents); others are skipped with a line."""
    found = []
    for path in paths:
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder; give eval run folders or a folder that holds them")
        inside = [path] if _is_run(path) else sorted(p for p in path.iterdir() if p.is_dir() and _is_run(p))
        if not inside:
            raise ConfigError(f"{path} holds no eval run folders (none with config.json or metrics.json)")
        for run in inside:
            if (run / "metrics.json").is_file():
                found.append(run)
            else:
                log(f"skip {run}: no metrics.json (unfinished or failed run)")
    found = list(dict.fromkeys(p.resolve() for p in found))  # a run named twice counts once
    if not found:
        raise ConfigError(f"no finished eval run (with metrics.json) in {', '.join(map(str, paths))}")
    return found


def _read_json(path, need=False):
    if not path.is_file():
        if need:
            raise ConfigError(f"{path} is missing")
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _arch(config, metrics):
    """The model's name: a baseline's ARCH, else the genotype (a named one, or the search run it came from)."""
    arch = config.get("ARCH") or metrics.get("arch")
    if arch:
        return str(arch), "baseline"
    source = str(metrics.get("genotype_source") or config.get("GENOTYPE") or "?")
    path = Path(source)
    if path.suffix == ".json":  # a search run's best_genotype.json: name the run
        source = f"{path.parent.name}/{path.name}"
    return source, "genotype"


def load_run(folder):
    """One run as a flat dict: name, arch, size and speed from model_card.json, headline metrics, dataset identity."""
    config = _read_json(folder / "config.json")
    metrics = _read_json(folder / "metrics.json", need=True)
    card = _read_json(folder / "model_card.json")
    dataset = metrics.get("dataset") or {}
    latency = card.get("cpu_latency_ms") or {}
    arch, kind = _arch(config, metrics)
    return {
        "name": folder.name, "folder": str(folder), "arch": arch, "kind": kind,
        "image_size": card.get("image_size", config.get("IMAGE_SIZE")),
        "params": card.get("params"), "macs": card.get("macs"),
        "cpu_latency_ms": latency.get("median"), "cpu_latency_p90_ms": latency.get("p90"),
        "cpu_threads": latency.get("threads"), "cuda_throughput_img_s": card.get("cuda_throughput_img_s"),
        "accuracy": metrics.get("accuracy"), "balanced_accuracy": metrics.get("balanced_accuracy"),
        "auc_macro": metrics.get("auc_macro"), "n": metrics.get("n"), "recall": metrics.get("recall") or {},
        "headline": metrics.get("headline"), "split_sha1": metrics.get("split_sha1"),
        "layout": dataset.get("layout", metrics.get("layout")), "classes": dataset.get("classes", metrics.get("classes")),
        "has_card": bool(card),
    }


def check_comparable(rows):
    """Refuse runs scored on different data: split, layout, classes or headline split differ (names both runs)."""
    first = rows[0]
    for key, what in _SAME:
        missing = [r["name"] for r in rows if r[key] is None]
        if missing:
            raise ConfigError(f"metrics.json of {', '.join(missing[:3])} has no {key} (an older train_isic.py?); "
                              f"cannot check that the runs share their {what}")
        for r in rows[1:]:
            if r[key] != first[key]:
                a, b = first[key], r[key]
                if key == "split_sha1":
                    a, b = a[:10], b[:10]
                elif key == "classes":
                    a, b = ",".join(map(str, a)), ",".join(map(str, b))
                raise ConfigError(f"runs {first['name']} and {r['name']} differ in {what} ({a} vs {b}); "
                                  "compare only runs of one dataset and split")


def sort_rows(rows, by):
    key, larger_first = _SORT_KEYS[by]
    present = [r for r in rows if r[key] is not None]
    absent = [r for r in rows if r[key] is None]  # unknown values go last, in name order
    return sorted(present, key=lambda r: r[key], reverse=larger_first) + sorted(absent, key=lambda r: r["name"])


def name_rows(rows):
    """Folder names as row names; where two runs share one, their parent folders tell them apart."""
    counts = {}
    for r in rows:
        counts[r["name"]] = counts.get(r["name"], 0) + 1
    for r in rows:
        if counts[r["name"]] > 1:
            r["name"] = f"{Path(r['folder']).parent.name}/{r['name']}"
    return rows


# ----------------------------------------------------------------------------- table


def _fmt(v, scale=1.0, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v / scale:.{digits}f}"


def markdown_table(rows):
    """The comparison as a Markdown table (best balanced accuracy and AUC in bold) with notes on units."""
    classes = [str(c) for c in rows[0]["classes"]]
    head = ["run", "genotype / arch", "px", "params (M)", "MACs (M)", "CPU ms", "balanced acc.", "macro AUC",
            *[f"recall {c}" for c in classes]]
    best = {k: max((r[k] for r in rows if r[k] is not None), default=None) for k in ("balanced_accuracy", "auc_macro")}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [r["name"], r["arch"].replace("|", "/"), _fmt(r["image_size"], digits=0), _fmt(r["params"], 1e6, 2),
                 _fmt(r["macs"], 1e6, 1), _fmt(r["cpu_latency_ms"], digits=1)]
        for k in ("balanced_accuracy", "auc_macro"):
            text = _fmt(r[k])
            cells.append(f"**{text}**" if r[k] is not None and r[k] == best[k] and len(rows) > 1 else text)
        cells += [_fmt(r["recall"].get(c), digits=2) for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(table_notes(rows)) + "\n"


def table_notes(rows):
    first = rows[0]
    notes = [f"Metrics on the {first['headline']} split ({first['layout']}, n = {first['n']}, split_sha1 "
             f"{first['split_sha1'][:10]}); model selected by validation balanced accuracy.",
             "MACs = FLOPs/2 from torch.utils.flop_counter, one image at the run's px, convolutions and matrix "
             "products only; params leave out the auxiliary head. CPU ms: batch 1, median over the timed runs."]
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


def csv_text(rows):
    """The comparison as CSV with raw numbers (no units scaled), one recall column per class."""
    classes = [str(c) for c in rows[0]["classes"]]
    cols = ["name", "arch", "kind", "image_size", "params", "macs", "cpu_latency_ms", "cpu_latency_p90_ms",
            "cpu_threads", "cuda_throughput_img_s", "accuracy", "balanced_accuracy", "auc_macro", "n", "headline",
            "split_sha1", "folder"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols + [f"recall_{c}" for c in classes])
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in cols] +
                        ["" if r["recall"].get(c) is None else r["recall"][c] for c in classes])
    return buf.getvalue()


# ----------------------------------------------------------------------------- figure


def pareto_front(points):
    """(macs, accuracy) points no other point beats with fewer or equal MACs, by increasing MACs."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_accuracy_vs_macs(rows, path, title):
    """Balanced accuracy against MACs (log x), one labelled point per run, searched cells and baselines apart,
    the Pareto front dashed. Runs without MACs are left out and counted in the title."""
    import matplotlib
    from matplotlib.figure import Figure

    blue, grey, orange = figures.BLUE, figures.GREY, figures.ORANGE
    shown = [r for r in rows if r["macs"] and r["balanced_accuracy"] is not None]
    with matplotlib.rc_context(figures.STYLE):
        fig = Figure(figsize=(5.5, 3.8), dpi=figures.DPI, layout="constrained")  # bare Figure: the Agg canvas, no pyplot
        ax = fig.add_subplot()
        for kind, colour, marker, label in (("genotype", blue, "o", "searched / DARTS cells"),
                                            ("baseline", grey, "s", "torchvision baseline")):
            pts = [r for r in shown if r["kind"] == kind]
            if pts:
                ax.scatter([r["macs"] / 1e6 for r in pts], [r["balanced_accuracy"] for r in pts], s=36, color=colour,
                           marker=marker, edgecolor="black", lw=0.5, label=label, zorder=3)
        for r in shown:
            ax.annotate(r["name"], (r["macs"] / 1e6, r["balanced_accuracy"]), xytext=(4, 4),
                        textcoords="offset points", fontsize=7)
        front = pareto_front([(r["macs"] / 1e6, r["balanced_accuracy"]) for r in shown])
        if len(front) > 1:
            x, y = zip(*front)
            ax.step(x, y, where="post", ls="--", lw=1, color=orange, label="Pareto front", zorder=2)  # attainable
        if shown:
            ax.set_xscale("log")
            ax.margins(x=0.15, y=0.12)  # room for the labels at the edges
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no run has a model_card.json with MACs", transform=ax.transAxes, ha="center",
                    va="center", color=grey)
        left_out = len(rows) - len(shown)
        ax.set_title(title + (f" ({left_out} run(s) without MACs not shown)" if left_out else ""))
        ax.set_xlabel("MACs per image (millions, log scale)")
        ax.set_ylabel(f"balanced accuracy ({rows[0]['headline']})")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=figures.DPI)
    runs.atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- main


def open_out_dir(out_dir, inputs):
    """The output folder: new, or one holding only this script's files (never inside a run it reads)."""
    path = Path(out_dir).expanduser() if out_dir else runs.new_run_dir("compare")
    resolved = path.resolve()
    if any(resolved == p or p in resolved.parents for p in inputs):
        raise ConfigError(f"OUT_DIR {path} lies inside a run folder being compared; choose another folder")
    if path.exists():
        others = [p.name for p in path.iterdir() if p.name not in _OUTPUTS and not p.name.startswith(".")]
        if others:
            raise ConfigError(f"OUT_DIR {path} holds other files ({', '.join(sorted(others)[:3])}); choose a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv=None, log=print):
    # ---- config
    cfg, paths = resolve_config(argv)
    _RUNTIME["debug"] = cfg["DEBUG"]
    # ---- runs: read and check everything before writing anything
    folders = find_runs(paths, log)
    rows = name_rows(sort_rows([load_run(f) for f in folders], cfg["SORT_BY"]))
    check_comparable(rows)
    out = open_out_dir(cfg["OUT_DIR"], folders)
    log(f"== compare: {len(rows)} runs -> {out}")
    log(format_config(cfg))
    # ---- save
    runs.atomic_write_json(out / "config.json", {**cfg, "OUT_DIR": str(out), "RUNS": [str(f) for f in folders]})
    table = markdown_table(rows)
    runs.atomic_write_text(out / "comparison.md", table)
    runs.atomic_write_text(out / "comparison.csv", csv_text(rows))
    first = rows[0]
    plot_accuracy_vs_macs(rows, out / "accuracy_vs_macs.png", f"{first['layout']}, {first['headline']} n = {first['n']}")
    # ---- report
    log(table)
    log(f"wrote {out}/: comparison.md, comparison.csv, accuracy_vs_macs.png")
    return out


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2."""
    run_cli(lambda: main(argv), (ConfigError,), lambda: _RUNTIME["debug"], "nothing to resume: rerun the command")


if __name__ == "__main__":
    cli()
