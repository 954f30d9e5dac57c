"""Finished eval runs read and checked, grouped into models (runs that differ only in their seeds) and paired."""
import json
from itertools import combinations
from pathlib import Path

from common.config import ConfigError
from common.labeled import repeats
from common.stats import finite, spread

SORT_KEYS = {  # column, and whether larger is better (then it goes first)
    "balanced_accuracy": ("balanced_accuracy", True), "auc_macro": ("auc_macro", True), "macs": ("macs", False),
    "params": ("params", False), "latency": ("cpu_latency_ms", False), "name": ("name", False),
}
METRICS = ("balanced_accuracy", "auc_macro")  # summarised per model and paired between models
_SAME = (("root", "dataset folder"), ("layout", "dataset layout"), ("classes", "classes"), ("headline", "headline split"))
# settings that say how or where a run ran, not which model it trained (a model's runs may differ in them)
_NOT_MODEL = ("SEED", "SPLIT_SEED", "OUT_DIR", "GENOTYPE", "DATA_DIR", "CSV_PATH", "LAYOUT", "ALLOW_MISSING",
              "RESIZED_CACHE", "NUM_WORKERS", "DEVICE", "ALLOW_RUNTIME_CHANGE", "AMP", "CHANNELS_LAST", "THREADS",
              "N_CAM", "LATENCY_RUNS", "EXPORT_ONNX", "PREDICT_DIR", "CHECKPOINT", "PRESET", "DEBUG")
_BY_NAME = ("PRETRAINED_WEIGHTS", "UNLABELED_DIR")  # paths that differ per run (one pretrained.pt per split): by name


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
    key, larger_first = SORT_KEYS[by]
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
    v = sorted(finite(values))
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
        for k in METRICS:
            m[f"{k}_spread"] = spread([r[k] for r in runs_])
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
        diff = {k: repeats.paired_difference(a[f"{k}_by_split"], b[f"{k}_by_split"]) for k in METRICS}
        if diff["balanced_accuracy"]["n"] or diff["auc_macro"]["n"]:
            pairs.append({"a": a["name"], "b": b["name"], "splits": max(d["n"] for d in diff.values()), **diff})
    return pairs

