"""Is the search any good? Label-free scores of many genotypes against the accuracy they reach with labels.

    cd search && python proxy_study.py                             # demo: built-in lesions, ~30 min on 2 CPU cores
    python proxy_study.py --SEARCH_RUN=../runs/search/<run>        # + that search's best genotypes, and their rank
    python proxy_study.py --LABELED_DIR=/data/ISIC2019 --SEARCH_RUN=../runs/search/<run>   # 'paper' preset: one GPU

K genotypes drawn at random from the search's encoding (plus, with SEARCH_RUN, its best TOP) each get the
label-free scores the search can use (nce exactly as the search computes it, naswot, synflow) and the trivial
baselines (params, macs), then a short labeled training through eval/train_isic.py's own code path, SEEDS times.
The run folder gets study.csv, correlations.json, report.md and figures; rerunning the same command resumes.
Any constant below can be overridden as --NAME=value.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common import genotypes as G  # noqa: E402
from common import study_figures, study_report  # noqa: E402
from common.config import ConfigError, check_choice, check_number, configure, format_config, run_cli  # noqa: E402
from common.datasets import DatasetError  # noqa: E402
from common.images import BadImage  # noqa: E402
from common.runs import REPO_ROOT, atomic_write_json, atomic_write_text, mark_finished, new_run_dir, open_run_dir  # noqa: E402
from common.search_trial import worker_setup  # noqa: E402
from common.study_measure import Measurer, PartLog, StudyStopped, random_genotypes, search_top, study_genotypes  # noqa: E402

# -----------------------------------------------------------------------------
# genotypes
K = 40  # random genotypes, drawn uniformly from the search's encoding (what ALGO='random' proposes)
SPACE = "auto"  # encoding they are drawn from: 'auto' (the search settings' SPACE) | 'paper' | 'explicit'
SAMPLE_SEED = 0  # seed of the random genotypes (genotype i: np.random.default_rng([SAMPLE_SEED, i]))
SEARCH_RUN = None  # a search run folder: its best TOP distinct genotypes join the study; None = random ones only
TOP = 5  # genotypes taken from SEARCH_RUN (lowest loss first)
# label-free scores: nce, naswot and synflow exactly as search.py computes them, with the search's settings
SEARCH_PRESET = "auto"  # 'auto' (SEARCH_RUN's config.json, else search.py's own choice for its DATA_DIR) | 'demo' | 'paper'
SEARCH_ARGS = ()  # search.py settings on top, '--NAME=value' strings; without a DATA_DIR there, the images of
# SEARCH_RUN's DATA_DIR, else of LABELED_DIR (labels never read), else the demo's are scored
# labeled truth: eval/train_isic.py on each genotype, a short fixed budget
LABELED_DIR = None  # labeled dataset, any layout train_isic.py reads; None = the built-in demo lesions
EPOCHS = 15  # labeled training epochs per genotype and seed
INIT_CHANNELS = 16  # C of the labeled-training network
LAYERS = 8  # its cells
IMAGE_SIZE = 128  # px, its input side
BATCH_SIZE = 96  # images per step
TRAIN_ARGS = ()  # further train_isic.py settings, '--NAME=value' strings, e.g. ('--LR=0.05', '--CLASS_BALANCE=sampler')
SEEDS = 2  # seeds per genotype: labeled training seed i is SEED + i, nce seed i the search's SEED + i
SEED = 0  # first labeled-training seed (train_isic's SPLIT_SEED stays fixed: every seed sees the same split)
# judging
CORRELATE = "random"  # genotypes the correlations use: 'random' (the population a search draws from) | 'all'
TOP_FRACTION = 0.2  # top-k agreement: the best 20% by accuracy vs the best 20% by the score
CONFIDENCE = 0.95  # bootstrap confidence level
N_RESAMPLES = 2000  # bootstrap resamples over genotypes
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps': scores and labeled training
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core)
MAX_FAILURES = 10  # stop after this many failed parts (NaN, out of memory): then the settings are wrong
OUT_DIR = None  # this study's folder; None = runs/study/<timestamp>; an unfinished study there is resumed
PRESET = "auto"  # 'auto' ('demo' without LABELED_DIR, else 'paper') | 'demo' | 'paper'
DEBUG = False  # show tracebacks for user errors and failed parts
# -----------------------------------------------------------------------------
PRESETS = {
    # one GPU, overnight: 45 genotypes x 2 seeds of nce (the search's paper settings) and 15-epoch training
    "paper": {},
    # 2 CPU cores, about 30 minutes (38 min measured with K=10 on a machine shared with other jobs): per genotype and
    # seed, nce with search.py's demo settings (70-110 CPU-seconds on one thread) and a small labeled network at 64 px
    # (~27 CPU-seconds); SEARCH_RUN's TOP genotypes cost as much as a random one
    "demo": dict(K=10, TOP=2, EPOCHS=8, INIT_CHANNELS=8, LAYERS=5, IMAGE_SIZE=64, BATCH_SIZE=32),
}
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEVICE", "THREADS", "DEBUG", "MAX_FAILURES")
_SET_BY_STUDY = ("GENOTYPE", "OUT_DIR", "SEED", "DATA_DIR", "EPOCHS", "INIT_CHANNELS", "LAYERS", "IMAGE_SIZE",
                 "BATCH_SIZE", "DEVICE", "N_CAM", "PREDICT_DIR")


def _load_script(relpath):
    """search.py / train_isic.py as modules (they only define constants and functions when imported)."""
    path = REPO_ROOT / relpath
    spec = importlib.util.spec_from_file_location(f"_study_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_args(cfg, name, refused=()):
    args = cfg[name]
    if not isinstance(args, (tuple, list)) or not all(isinstance(a, str) and a.startswith("--") and "=" in a
                                                      for a in args):
        raise ConfigError(f"--{name}={args!r}: needs a tuple of '--NAME=value' strings, e.g. ('--LR=0.05',)")
    clash = [a for a in args if a[2:].split("=", 1)[0] in refused]
    if clash:
        raise ConfigError(f"--{name}: {', '.join(clash)} is set by the study itself (use its own constant)")


def check_settings(cfg):
    """Every study setting checked before anything is written (search and train settings: search_settings,
    train_settings)."""
    for name in ("K", "SEEDS", "TOP", "EPOCHS", "INIT_CHANNELS", "LAYERS", "BATCH_SIZE"):
        check_number(cfg, name, 1, integer=True)
    check_number(cfg, "K", 3, integer=True)  # a rank correlation needs three genotypes
    for name in ("SAMPLE_SEED", "SEED", "THREADS", "MAX_FAILURES"):
        check_number(cfg, name, 0, integer=True)
    check_number(cfg, "IMAGE_SIZE", 32, integer=True)
    check_number(cfg, "N_RESAMPLES", 100, integer=True)
    check_number(cfg, "TOP_FRACTION", 0, 1, lo_open=True)
    check_number(cfg, "CONFIDENCE", 0, 1, lo_open=True, hi_open=True)
    check_choice(cfg, "SPACE", ("auto", *G.SPACES))
    check_choice(cfg, "SEARCH_PRESET", ("auto", "demo", "paper"))
    check_choice(cfg, "CORRELATE", study_report.ROW_CHOICES)
    _check_args(cfg, "SEARCH_ARGS", ("OUT_DIR",))
    _check_args(cfg, "TRAIN_ARGS", _SET_BY_STUDY)
    if cfg["SEARCH_RUN"] is not None:
        run = Path(cfg["SEARCH_RUN"]).expanduser()
        if not ((run / "config.json").is_file() and (run / "trials.jsonl").is_file()):
            raise ConfigError(f"SEARCH_RUN {run} is not a search run folder (no config.json and trials.jsonl)")
    if cfg["LABELED_DIR"] is not None and not Path(cfg["LABELED_DIR"]).expanduser().exists():
        raise ConfigError(f"LABELED_DIR {cfg['LABELED_DIR']} does not exist")


def search_settings(cfg, search):
    """search.py's resolved settings for the label-free scores: SEARCH_RUN's own config.json (as it ran), else
    search.py's constants and preset; SEARCH_ARGS on top; DEVICE and THREADS the study's. Checked by search.py."""
    args = list(cfg["SEARCH_ARGS"])
    if cfg["SEARCH_RUN"] is not None and cfg["SEARCH_PRESET"] == "auto":
        saved = json.loads((Path(cfg["SEARCH_RUN"]).expanduser() / "config.json").read_text())
        scfg, _ = configure({**{k: v for k, v in vars(search).items() if k.isupper()}, **saved}, args)
    else:
        has_data = any(a.startswith("--DATA_DIR=") for a in args)
        if not has_data and cfg["LABELED_DIR"] is not None:
            if not Path(cfg["LABELED_DIR"]).expanduser().is_dir():
                raise ConfigError(f"LABELED_DIR {cfg['LABELED_DIR']} is no folder of images for the label-free scores; "
                                  "give one: --SEARCH_ARGS=\"('--DATA_DIR=/path/to/images',)\"")
            args.insert(0, f"--DATA_DIR={cfg['LABELED_DIR']}")
        if cfg["SEARCH_PRESET"] != "auto":
            args.insert(0, f"--PRESET={cfg['SEARCH_PRESET']}")
        scfg, _ = configure(vars(search), args, search.PRESETS)
    scfg.update(DEVICE=cfg["DEVICE"], THREADS=cfg["THREADS"], DEBUG=cfg["DEBUG"], OUT_DIR=None)
    for name in ("COLOR_JITTER", "PATCH_SCALE", "MEAN", "STD", "BUDGET_NETWORK"):  # tuples, as the search uses them
        scfg[name] = tuple(scfg[name])
    search.check_settings(scfg)
    return scfg


def keep_search_settings(run_dir, scfg):
    """search_settings.json: written once; a resumed study must score with the same settings (else its nce column
    would mix two scores)."""
    path, free = run_dir / "search_settings.json", ("DEVICE", "THREADS", "DEBUG", "OUT_DIR")
    if path.exists():
        old, new = json.loads(path.read_text()), json.loads(json.dumps(scfg))
        differ = sorted(k for k in set(old) | set(new) if k not in free and old.get(k) != new.get(k))
        if differ:
            raise ConfigError(f"{path} was scored with other search settings ({', '.join(differ[:4])} differ: "
                              "search.py or SEARCH_RUN changed); use a new OUT_DIR")
    else:
        atomic_write_json(path, scfg)


def train_argv(cfg, genotype, out_dir, seed_index):
    """train_isic.py's argv for one genotype (a name or a best_genotype.json) and seed index."""
    argv = [f"--GENOTYPE={genotype}", f"--OUT_DIR={out_dir}", f"--SEED={cfg['SEED'] + seed_index}", "--N_CAM=0",
            "--LATENCY_RUNS=1",  # the model card's CPU latency is no part of the study: one timed run, not 30
            *(f"--{k}={cfg[k]}" for k in ("EPOCHS", "INIT_CHANNELS", "LAYERS", "IMAGE_SIZE", "BATCH_SIZE", "DEVICE"))]
    if cfg["LABELED_DIR"] is not None:
        argv.append(f"--DATA_DIR={cfg['LABELED_DIR']}")
    return argv + list(cfg["TRAIN_ARGS"])


def study_settings(cfg, scfg, train_cfg, n_images, classes, genotypes):
    """The settings section of report.md."""
    n_search = sum(g["source"] == "search" for g in genotypes)
    return {
        "genotypes": f"{cfg['K']} drawn uniformly from the '{scfg['SPACE']}' encoding (SAMPLE_SEED {cfg['SAMPLE_SEED']})"
                     + (f", plus the best {n_search} of search run {cfg['SEARCH_RUN']}" if n_search else ""),
        "label-free scores": (f"on {n_images} unlabeled images at {scfg['IMAGE_SIZE']} px; nce = the search's trial "
                              f"score (C={scfg['INIT_CHANNELS']}, {scfg['LAYERS']} cells, {scfg['EPOCHS']} epochs, "
                              f"batch {scfg['BATCH_SIZE']}, REPEATS {scfg['REPEATS']}, seed {scfg['SEED']} + i); naswot "
                              f"and synflow on one batch of {scfg['BATCH_SIZE']} at initialisation (seed {scfg['SEED']})"),
        "size baselines": (f"params and macs of the labeled-training network (C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} "
                           f"cells, {cfg['IMAGE_SIZE']} px, {len(classes)} classes, no auxiliary head)"),
        "labeled training": (f"eval/train_isic.py on {train_cfg['DATA_DIR'] or 'the built-in demo lesions'}: "
                             f"{cfg['EPOCHS']} epochs, C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells, "
                             f"{cfg['IMAGE_SIZE']} px, batch {cfg['BATCH_SIZE']}, LR {train_cfg['LR']}, class balance "
                             f"{train_cfg['CLASS_BALANCE']}, split seed {train_cfg['SPLIT_SEED']}"),
        "truth": (f"validation balanced accuracy of the last epoch, mean of {cfg['SEEDS']} seed(s) "
                  f"({cfg['SEED']}..{cfg['SEED'] + cfg['SEEDS'] - 1}); test balanced accuracy kept in study.csv"),
        "classes": ", ".join(classes),
    }


def write_figures(run_dir, rows, corr, n_seeds):
    """scatter_<score>.png per score and correlations.png; returns the file names."""
    picked = rows if corr["about"]["rows"] == "all" else [r for r in rows if r["source"] == "random"]
    shown = picked + [r for r in rows if r["source"] == "search" and r not in picked]
    names = corr["about"]["scores"]
    files = []
    for name in names:
        files.append(f"scatter_{name}.png")
        seeds = np.stack([study_report.column(shown, f"bacc_s{i}") for i in range(n_seeds)], 1)
        study_figures.plot_score_scatter(run_dir / files[-1], name, study_report.column(shown, name),
                                         study_report.column(shown, "bacc"), [r["source"] for r in shown], corr[name],
                                         study_report.HIGHER_IS_BETTER[name], seeds if n_seeds > 1 else None)
    files.append("correlations.png")
    study_figures.plot_correlation_bars(run_dir / files[-1], names, corr, corr.get("ceiling"))
    return files


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), argv, PRESETS)
    check_settings(cfg)
    search, train = _load_script("search/search.py"), _load_script("eval/train_isic.py")
    scfg = search_settings(cfg, search)
    if cfg["SPACE"] == "auto":
        cfg["SPACE"] = scfg["SPACE"]
    train_cfg, _ = train.resolve_config(train_argv(cfg, "DARTS_V2", "unused", 0))  # refuses a bad TRAIN_ARGS now
    classes = list(train.load_data(train_cfg).classes)  # a wrong LABELED_DIR stops here, before a run folder exists
    run_dir, resumed = open_run_dir(cfg["OUT_DIR"] or new_run_dir("study"), cfg, ignore=_RESUME_MAY_CHANGE)
    keep_search_settings(run_dir, scfg)
    if cfg["LABELED_DIR"] is None:
        print("DEMO: no LABELED_DIR given, so this studies the built-in synthetic lesions with the small 'demo' preset.\n"
              "      For real data: python proxy_study.py --LABELED_DIR=/path/to/ISIC2019 --SEARCH_RUN=<search run>")
    print(f"config ({'resuming ' if resumed else ''}{run_dir}):\n{format_config(cfg, from_preset)}")

    # ---- genotypes, images -------------------------------------------------------------------------------
    genotypes = study_genotypes(run_dir, lambda: random_genotypes(cfg["K"], cfg["SPACE"], cfg["SAMPLE_SEED"]) + (
        search_top(Path(cfg["SEARCH_RUN"]).expanduser(), cfg["TOP"]) if cfg["SEARCH_RUN"] else []))
    images = search.load_images(scfg, run_dir)
    ctx = worker_setup({"images": images, "cfg": scfg}, cfg["DEVICE"], cfg["THREADS"])
    parts = PartLog(run_dir)
    measurer = Measurer(run_dir, ctx, train.main, lambda g, out, i: train_argv(cfg, g, out, i),
                        (cfg["INIT_CHANNELS"], cfg["LAYERS"], cfg["IMAGE_SIZE"], len(classes)), cfg["SEEDS"],
                        cfg["MAX_FAILURES"], cfg["DEBUG"])
    if ctx.rt.device.type == "cpu" and cfg["PRESET"] == "paper":
        print("note: the paper preset is sized for one GPU (hours); on a CPU try --PRESET=demo first")
    n_done = sum(all(parts.get(g["id"], p, i) for p, i in measurer.plan()) for g in genotypes)
    print(f"device {ctx.rt} | {len(genotypes)} genotypes ({n_done} finished) x {cfg['SEEDS']} seed(s) | "
          f"nce: {scfg['EPOCHS']} epochs of C={scfg['INIT_CHANNELS']}, {scfg['LAYERS']} cells on {len(images)} images | "
          f"labels: {cfg['EPOCHS']} epochs of C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells at {cfg['IMAGE_SIZE']} px")

    # ---- measure, genotype by genotype (study.csv and correlations.json after each) -----------------------
    stats = dict(use=cfg["CORRELATE"], top_fraction=cfg["TOP_FRACTION"], confidence=cfg["CONFIDENCE"],
                 n_resamples=cfg["N_RESAMPLES"])
    spent, measured = 0.0, 0
    for n, entry in enumerate(genotypes, 1):
        start = time.perf_counter()
        ran = not all(parts.get(entry["id"], p, i) for p, i in measurer.plan())
        measurer.measure(entry, parts)
        rows = study_report.study_rows(genotypes, parts, cfg["SEEDS"])
        corr = study_report.correlations(rows, cfg["SEEDS"], **stats)
        study_report.write_outputs(run_dir, rows, corr)
        if ran:
            spent, measured = spent + time.perf_counter() - start, measured + 1
            eta = spent / measured * (len(genotypes) - n) / 60
            print(study_report.genotype_line(n, len(genotypes), rows[n - 1], time.perf_counter() - start, eta),
                  flush=True)

    # ---- report ------------------------------------------------------------------------------------------
    figures = write_figures(run_dir, rows, corr, cfg["SEEDS"])
    settings = study_settings(cfg, scfg, train_cfg, len(images), classes, genotypes)
    timings = study_report.timing_summary(parts)
    atomic_write_text(run_dir / study_report.REPORT_FILE, study_report.report_markdown(corr, settings, timings, figures))
    mark_finished(run_dir, {"genotypes": len(genotypes), "failed_parts": parts.failures()})
    print(f"\n{study_report.format_table(corr)}\n")
    print(f"wrote {run_dir}/: study.csv, correlations.json, report.md, {', '.join(figures)}")
    return run_dir


if __name__ == "__main__":
    run_cli(main, (ConfigError, DatasetError, BadImage, StudyStopped), lambda: DEBUG or "--DEBUG=True" in sys.argv,
            "finished parts are kept; rerun the same command with --OUT_DIR=<the run folder above> to resume")
