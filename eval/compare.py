"""Compare finished eval runs: size, speed and accuracy per model over its repeated runs, paired differences between
models over the splits they share, and accuracy against MACs (Markdown, CSV, PNG).

    python eval/compare.py                                   # every finished run under runs/eval
    python eval/compare.py runs/eval/A runs/eval/B           # these run folders (or folders holding run folders)
    python eval/compare.py runs/eval --SORT_BY=macs --OUT_DIR=runs/compare/isic

Any constant below can be set as --NAME=value; folders given as plain arguments replace RUNS. Runs of one model (the
same architecture and settings) that differ only in SEED or SPLIT_SEED are one row of the model table: mean ± SD
over the runs. Two models are compared over the splits both ran on (the same split.csv): per split the difference
of their means, averaged, with a 95 % bootstrap interval over the splits. Runs scored on different data (dataset
folder, classes, layout) are refused, not mixed into one table.
"""
import csv
import io
import json
import math
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common import figures, runs, stats  # noqa: E402  (figures.BLUE etc.: upper-case imports would count as settings)
from common.config import ConfigError, configure, format_config, run_cli  # noqa: E402
from common.labeled import repeats  # noqa: E402

# -----------------------------------------------------------------------------
RUNS = ()  # eval run folders, or folders holding them; () = every run under runs/eval; plain arguments replace it
OUT_DIR = None  # folder for the outputs below; None = runs/compare/<timestamp>
SORT_BY = "balanced_accuracy"  # balanced_accuracy (highest mean first) | auc_macro | macs | params | latency | name
DEBUG = False  # True: full tracebacks for user errors too
# -----------------------------------------------------------------------------

_SORT_KEYS = {  # column, and whether larger is better (then it goes first)
    "balanced_accuracy": ("balanced_accuracy", True), "auc_macro": ("auc_macro", True), "macs": ("macs", False),
    "params": ("params", False), "latency": ("cpu_latency_ms", False), "name": ("name", False),
}
_METRICS = ("balanced_accuracy", "auc_macro")  # summarised per model and paired between models
_OUTPUTS = ("config.json", "comparison.md", "comparison.csv", "models.csv", "paired.csv", "accuracy_vs_macs.png")
_SAME = (("root", "dataset folder"), ("layout", "dataset layout"), ("classes", "classes"), ("headline", "headline split"))
# settings that say how or where a run ran, not which model it trained (a model's runs may differ in them)
_NOT_MODEL = ("SEED", "SPLIT_SEED", "OUT_DIR", "GENOTYPE", "DATA_DIR", "CSV_PATH", "LAYOUT", "ALLOW_MISSING",
              "RESIZED_CACHE", "NUM_WORKERS", "DEVICE", "ALLOW_RUNTIME_CHANGE", "AMP", "CHANNELS_LAST", "THREADS",
              "N_CAM", "LATENCY_RUNS", "EXPORT_ONNX", "PREDICT_DIR", "CHECKPOINT", "PRESET", "DEBUG")
_BY_NAME = ("PRETRAINED_WEIGHTS", "UNLABELED_DIR")  # paths that differ per run (one pretrained.pt per split): by name
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


def model_settings(config):
    """The settings that make a run's model what it is (architecture settings, recipe, labels, pre-training), without
    its seeds and without how or where it ran. Per-run paths count by file or folder name."""
    out = {k: v for k, v in config.items() if k not in _NOT_MODEL}
    for k in _BY_NAME:
        if out.get(k) is not None:
            out[k] = Path(str(out[k])).name
    return out


def load_run(folder):
    """One run as a flat dict: name, arch, size and speed from model_card.json, headline metrics, dataset identity,
    seeds, and the key of the model it trained."""
    config = _read_json(folder / "config.json")
    metrics = _read_json(folder / "metrics.json", need=True)
    card = _read_json(folder / "model_card.json")
    dataset = metrics.get("dataset") or {}
    latency = card.get("cpu_latency_ms") or {}
    arch, kind = _arch(config, metrics)
    settings = model_settings(config)
    identity = {"arch": metrics.get("arch"), "genotype": metrics.get("genotype"), "name": arch, **settings}
    return {
        "name": folder.name, "folder": str(folder), "arch": arch, "kind": kind,
        "image_size": card.get("image_size", config.get("IMAGE_SIZE")),
        "params": card.get("params"), "macs": card.get("macs"),
        "cpu_latency_ms": latency.get("median"), "cpu_latency_p90_ms": latency.get("p90"),
        "cpu_threads": latency.get("threads"), "cuda_throughput_img_s": card.get("cuda_throughput_img_s"),
        "accuracy": metrics.get("accuracy"), "balanced_accuracy": metrics.get("balanced_accuracy"),
        "auc_macro": metrics.get("auc_macro"), "n": metrics.get("n"), "recall": metrics.get("recall") or {},
        "headline": metrics.get("headline"), "split_sha1": metrics.get("split_sha1"),
        "root": dataset.get("root"),
        "layout": dataset.get("layout", metrics.get("layout")), "classes": dataset.get("classes", metrics.get("classes")),
        "seed": config.get("SEED"), "split_seed": config.get("SPLIT_SEED"),
        "settings": settings, "model_key": json.dumps(identity, sort_keys=True, default=str),
        "has_card": bool(card),
    }


def check_comparable(rows):
    """Refuse runs scored on different data: dataset folder, layout, classes or headline split differ (names both)."""
    first = rows[0]
    for key, what in _SAME:
        missing = [r["name"] for r in rows if r[key] is None]
        if missing:
            raise ConfigError(f"metrics.json of {', '.join(missing[:3])} has no {key} (an older train_isic.py?); "
                              f"cannot check that the runs share their {what}")
        for r in rows[1:]:
            if r[key] != first[key]:
                a, b = first[key], r[key]
                if key == "classes":
                    a, b = ",".join(map(str, a)), ",".join(map(str, b))
                raise ConfigError(f"runs {first['name']} and {r['name']} differ in {what} ({a} vs {b}); "
                                  "compare only runs of one dataset")


def check_splits(rows):
    """Runs of one model with the same SPLIT_SEED must have the same split: if not, the data changed between them."""
    seen = {}
    for r in rows:
        other = seen.setdefault((r["model_key"], r["split_seed"]), r)
        if other["split_sha1"] != r["split_sha1"]:
            raise ConfigError(f"runs {other['name']} and {r['name']} train one model with SPLIT_SEED {r['split_seed']} "
                              f"but on different splits (split_sha1 {str(other['split_sha1'])[:10]} vs "
                              f"{str(r['split_sha1'])[:10]}): the data changed between them; compare runs of one dataset")


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


# ----------------------------------------------------------------------------- models (groups of runs)


def _median(values):
    v = sorted(repeats.finite(values))
    return None if not v else (v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)


def group_runs(rows):
    """One dict per model (runs with one model_key): its runs, n, splits, size and speed (median over its runs),
    and per metric its spread (mean, SD) and its per-split means (for pairing). Named by the architecture, plus the
    settings that tell apart models of one architecture."""
    groups = {}
    for r in rows:
        groups.setdefault(r["model_key"], []).append(r)
    models = []
    for runs_ in groups.values():
        first = runs_[0]
        m = {"name": first["arch"], "arch": first["arch"], "kind": first["kind"], "runs": runs_, "n": len(runs_),
             "splits": len({r["split_sha1"] for r in runs_}), "settings": first["settings"],
             "seeds": sorted({r["seed"] for r in runs_}, key=str),
             "split_seeds": sorted({r["split_seed"] for r in runs_}, key=str)}
        for k in ("image_size", "params", "macs", "cpu_latency_ms"):
            m[k] = _median([r[k] for r in runs_])
        for k in _METRICS:
            m[f"{k}_spread"] = stats.spread([r[k] for r in runs_])
            m[k] = m[f"{k}_spread"]["mean"]
            m[f"{k}_by_split"] = repeats.per_split((r["split_sha1"], r[k]) for r in runs_)
        models.append(m)
    return name_models(models)


def name_models(models):
    """Models of one architecture named apart by the settings in which they differ (at most three shown)."""
    by_arch = {}
    for m in models:
        by_arch.setdefault(m["arch"], []).append(m)
    for same in by_arch.values():
        if len(same) < 2:
            continue
        keys = sorted({k for m in same for k in m["settings"]})
        differ = [k for k in keys if len({json.dumps(m["settings"].get(k), default=str) for m in same}) > 1]
        for m in same:
            m["name"] = f"{m['arch']} (" + ", ".join(f"{k}={m['settings'].get(k)}" for k in differ[:3]) + ")"
    return models


def pair_models(models):
    """Paired differences (first minus second, in table order) of every two models that share a split."""
    pairs = []
    for a, b in combinations(models, 2):
        diff = {k: repeats.paired_difference(a[f"{k}_by_split"], b[f"{k}_by_split"]) for k in _METRICS}
        if diff["balanced_accuracy"]["n"] or diff["auc_macro"]["n"]:
            pairs.append({"a": a["name"], "b": b["name"], "splits": max(d["n"] for d in diff.values()), **diff})
    return pairs


# ----------------------------------------------------------------------------- tables


def _fmt(v, scale=1.0, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v / scale:.{digits}f}"


def _bold_best(text, value, best, many):
    return f"**{text}**" if many and value is not None and value == best else text


def models_table(models):
    """One row per model: runs, splits, size, speed, balanced accuracy and macro AUC as mean ± SD over its runs."""
    head = ["model", "runs", "splits", "px", "params (M)", "MACs (M)", "CPU ms", "balanced acc.", "macro AUC"]
    best = {k: max((m[k] for m in models if m[k] is not None), default=None) for k in _METRICS}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in models:
        cells = [m["name"].replace("|", "/"), str(m["n"]), str(m["splits"]), _fmt(m["image_size"], digits=0),
                 _fmt(m["params"], 1e6, 2), _fmt(m["macs"], 1e6, 1), _fmt(m["cpu_latency_ms"], digits=1)]
        cells += [_bold_best(repeats.mean_sd_text(m[f"{k}_spread"]), m[k], best[k], len(models) > 1) for k in _METRICS]
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
    best = {k: max((r[k] for r in rows if r[k] is not None), default=None) for k in _METRICS}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [r["name"], r["arch"].replace("|", "/"), str(r["seed"]), str(r["split_seed"]),
                 _fmt(r["image_size"], digits=0), _fmt(r["params"], 1e6, 2), _fmt(r["macs"], 1e6, 1),
                 _fmt(r["cpu_latency_ms"], digits=1)]
        cells += [_bold_best(_fmt(r[k]), r[k], best[k], len(rows) > 1) for k in _METRICS]
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
                     f"the splits both ran; {repeats.CONFIDENCE:.0%} percentile bootstrap interval over those splits "
                     f"(scipy.stats.bootstrap, {repeats.N_RESAMPLES} resamples). With few splits (under about 10) the "
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
    stats = [f"{k}_{s}" for k in _METRICS for s in ("mean", "sd")]
    return _csv(cols + stats, [
        [m["name"], m["arch"], m["kind"], m["n"], m["splits"], " ".join(map(str, m["seeds"])),
         " ".join(map(str, m["split_seeds"])), m["image_size"], m["params"], m["macs"], m["cpu_latency_ms"]]
        + [m[f"{k}_spread"][s] for k in _METRICS for s in ("mean", "sd")] for m in models])


def paired_csv(pairs):
    cols = ["model_a", "model_b"] + [f"{k}_{s}" for k in _METRICS for s in ("splits", "diff", "ci_low", "ci_high")]
    return _csv(cols, [[p["a"], p["b"]] + [v for k in _METRICS for v in (
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
                ys = repeats.finite(r["balanced_accuracy"] for r in m["runs"])
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
    check_splits(rows)
    models = sort_rows(group_runs(rows), cfg["SORT_BY"])
    pairs = pair_models(models)
    out = open_out_dir(cfg["OUT_DIR"], folders)
    log(f"== compare: {len(rows)} runs of {len(models)} model(s) -> {out}")
    log(format_config(cfg))
    # ---- save
    runs.atomic_write_json(out / "config.json", {**cfg, "OUT_DIR": str(out), "RUNS": [str(f) for f in folders]})
    report = markdown_report(rows, models, pairs)
    runs.atomic_write_text(out / "comparison.md", report)
    runs.atomic_write_text(out / "comparison.csv", csv_text(rows, models))
    runs.atomic_write_text(out / "models.csv", models_csv(models))
    runs.atomic_write_text(out / "paired.csv", paired_csv(pairs))
    first = rows[0]
    plot_accuracy_vs_macs(models, out / "accuracy_vs_macs.png", f"{first['layout']}, {first['headline']} split")
    # ---- report
    log(report)
    log(f"wrote {out}/: {', '.join(_OUTPUTS[1:])}")
    return out


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2."""
    run_cli(lambda: main(argv), (ConfigError,), lambda: _RUNTIME["debug"], "nothing to resume: rerun the command")


if __name__ == "__main__":
    cli()
