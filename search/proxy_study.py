"""Is the search any good? Label-free scores of many genotypes against the accuracy they reach with labels.

    cd search && python proxy_study.py --SEARCH_RUN=../runs/search/<run>   # demo: drawn lesions, 2 CPU cores
    python proxy_study.py --LABELED_DIR=/data/ISIC2019 --SEARCH_RUN=../runs/search/<run>   # 'paper' preset: one GPU

First a pilot: PILOT_K genotypes are trained with labels SEEDS times, and the truth's reliability (how well the
seed mean of a genotype's validation metric agrees with itself, ICC(1) and Spearman-Brown) is measured; below
MIN_RELIABILITY the study stops with one line naming the levers, since no score can be judged against a truth that
does not rank architectures. Then K genotypes drawn at random from the search's encoding (plus, with SEARCH_RUN, its
best TOP) each get the label-free scores the search can use (nce exactly as the search computes it, with its loss
after every epoch, and nce_init, the same loss without learning; naswot, synflow), the size baselines (params,
macs) and the labeled training through train_isic.py's own run (common/labeled/run.py, with the settings
train_isic.py resolves). A decision rule fixed in advance gives
each score a verdict. The run folder gets study.csv, correlations.json, report.md and figures; rerunning the same
command resumes. Any constant below can be overridden as --NAME=value.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.arch import genotypes as G  # noqa: E402
from common.arch.networks import EvalNetwork  # noqa: E402
from common.config import (  # noqa: E402
    ConfigError,
    as_argv,
    check_choice,
    check_number,
    check_script_args,
    configure,
    format_config,
    run_cli,
    script_config,
)
from common.data.demo.dataset import ensure_demo_dataset  # noqa: E402
from common.data.images import BadImage  # noqa: E402
from common.data.layouts import DatasetError  # noqa: E402
from common.data.search_images import load_images  # noqa: E402
from common.labeled.data import load_data  # noqa: E402
from common.labeled.step_memory import LabeledStep, check_classifier_memory  # noqa: E402
from common.memory import FitCheck, check_step  # noqa: E402
from common.runs import REPO_ROOT, atomic_write_json, atomic_write_text, mark_finished, new_run_dir, open_run_dir  # noqa: E402
from common.search.trial import largest_candidate, step_memory, trial_context  # noqa: E402
from common.study import analysis as study_analysis  # noqa: E402
from common.study import columns as study_columns  # noqa: E402
from common.study import figures as study_figures  # noqa: E402
from common.study import report as study_report
from common.study.measure import (  # noqa: E402
    Measurer,
    PartLog,
    StudyStopped,
    measure_many,
    random_genotypes,
    search_top,
    study_genotypes,
)

# -----------------------------------------------------------------------------
# genotypes
K = 40  # random genotypes, drawn uniformly from the search's encoding (what ALGO='random' proposes)
PILOT_K = 8  # the first PILOT_K of them are the pilot: their labeled training measures the truth's reliability first
SPACE = "auto"  # encoding they are drawn from: 'auto' (the search settings' SPACE) | 'paper' | 'explicit'
SAMPLE_SEED = 0  # seed of the random genotypes (genotype i: np.random.default_rng([SAMPLE_SEED, i]))
SEARCH_RUN = None  # a search run folder: its best TOP distinct genotypes join the study; None = random ones only
TOP = 5  # genotypes taken from SEARCH_RUN (lowest loss first)
# label-free scores: nce, naswot and synflow exactly as search.py computes them, with the search's settings
SEARCH_PRESET = "auto"  # 'auto' (SEARCH_RUN's config.json, else search.py's own choice for its DATA_DIR) | 'demo' | 'paper'
SEARCH_ARGS = ()  # search.py settings on top, '--NAME=value' strings; without a DATA_DIR there, the images of
# SEARCH_RUN's DATA_DIR, else of LABELED_DIR (labels never read), else the demo's are scored
NCE_SEEDS = 1  # nce seeds per genotype (seed i: the search's SEED + i); 2+ adds nce_mean and nce's own agreement
NCE_LONG_ARGS = ()  # a second nce variant, nce_long: search.py settings on top of the above, e.g. ('--EPOCHS=10',);
# () = none
# labeled truth: eval/train_isic.py on each genotype, a short fixed budget
LABELED_DIR = None  # labeled dataset, any layout train_isic.py reads; None = the study's own demo lesions (below)
DEMO_IMAGES = 2000  # without LABELED_DIR: class-balanced drawn lesions (not the search demo's), data/study_lesions
DEMO_SEED = 1  # their seed (the search demo's lesions use 0)
VAL_FRACTION = None  # train_isic.py's VAL_FRACTION (None = its own): a large validation split makes a steadier truth
TEST_FRACTION = None  # train_isic.py's TEST_FRACTION (None = its own)
EPOCHS = 15  # labeled training epochs per genotype and seed
INIT_CHANNELS = 16  # C of the labeled-training network
LAYERS = 8  # its cells
IMAGE_SIZE = 128  # px, its input side
BATCH_SIZE = 96  # images per step
TRAIN_ARGS = ()  # further train_isic.py settings, '--NAME=value' strings, e.g. ('--LR=0.05', '--CLASS_BALANCE=sampler')
SEEDS = 2  # seeds per genotype: labeled training seed i is SEED + i, nce seed i the search's SEED + i
SEED = 0  # first labeled-training seed (train_isic's SPLIT_SEED stays fixed: every seed sees the same split)
TRUTH = "auto"  # what ranks the genotypes: 'auto' (the candidate most reliable in the pilot) | 'bacc' | 'auc' |
# 'val_loss' (validation balanced accuracy, macro AUC, loss); all three are kept in study.csv
TRUTH_EPOCHS = 3  # the truth of one training: the mean of its last TRUTH_EPOCHS epochs (smoother than the last alone)
MIN_RELIABILITY = 0.8  # the pilot stops the study when the truth's reliability is below this; 0 = run anyway
# judging
CORRELATE = "random"  # genotypes the correlations use: 'random' (the population a search draws from) | 'all'
TOP_FRACTION = 0.2  # top-k agreement: the best 20% by accuracy vs the best 20% by the score
CONFIDENCE = 0.95  # bootstrap confidence level
N_RESAMPLES = 2000  # bootstrap resamples over genotypes
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps': scores and labeled training
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core)
WORKERS = 1  # parts measured at once, each in its own process (2 on a 2-core CPU, THREADS=1: ~2x the throughput)
MAX_FAILURES = 10  # stop after this many failed parts (NaN, out of memory): then the settings are wrong
OUT_DIR = None  # this study's folder; None = runs/study/<timestamp>; an unfinished study there is resumed
PRESET = "auto"  # 'auto' ('demo' without LABELED_DIR, else 'paper') | 'demo' | 'paper'
DEBUG = False  # show tracebacks for user errors and failed parts
# -----------------------------------------------------------------------------
PRESETS = {
    # one GPU: 40 random + 5 searched genotypes; nce with the search's paper settings, 15-epoch labeled training
    "paper": {},
    # 2 CPU cores, about 80 minutes (measured: the pilot, 8 genotypes x 2 seeds of labeled training, 12 min; the rest
    # 68 min): 40 random genotypes and the demo search's best 2. Per genotype, nce with search.py's demo settings and
    # nce_init, and a small labeled network at 64 px on the study's own lesions (2000, class-balanced: 1000 to train, 100 of every
    # class to validate), two parts at a time in two processes of one thread each
    "demo": dict(K=40, TOP=2, EPOCHS=10, INIT_CHANNELS=8, LAYERS=5, IMAGE_SIZE=64, BATCH_SIZE=32, VAL_FRACTION=0.4,
                 TEST_FRACTION=0.1, WORKERS=2, THREADS=1),
}
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEVICE", "THREADS", "DEBUG", "MAX_FAILURES", "WORKERS", "MIN_RELIABILITY")
_PILOT_FILE = "pilot.json"
_SET_BY_STUDY = ("GENOTYPE", "OUT_DIR", "SEED", "DATA_DIR", "EPOCHS", "INIT_CHANNELS", "LAYERS", "IMAGE_SIZE",
                 "BATCH_SIZE", "DEVICE", "N_CAM", "VAL_FRACTION", "TEST_FRACTION")
# the scripts whose settings the study uses, asked of them (common.config.script_config): never imported
_SEARCH_SCRIPT, _TRAIN_SCRIPT = REPO_ROOT / "search" / "search.py", REPO_ROOT / "eval" / "train_isic.py"


def check_settings(cfg):
    """Every study setting checked before anything is written (search and train settings: search_settings,
    train_settings)."""
    for name in ("K", "SEEDS", "TOP", "EPOCHS", "INIT_CHANNELS", "LAYERS", "BATCH_SIZE", "NCE_SEEDS", "TRUTH_EPOCHS",
                 "WORKERS"):
        check_number(cfg, name, 1, integer=True)
    check_number(cfg, "K", 3, integer=True)  # a rank correlation needs three genotypes
    check_number(cfg, "PILOT_K", 3, integer=True)  # so does the pilot's reliability
    check_number(cfg, "MIN_RELIABILITY", 0, 1, hi_open=True)
    check_number(cfg, "DEMO_IMAGES", 8 * 5, integer=True)  # a few images of every class in each split
    check_number(cfg, "DEMO_SEED", 0, integer=True)
    for name in ("VAL_FRACTION", "TEST_FRACTION"):
        check_number(cfg, name, 0, 1, lo_open=True, hi_open=True, none_ok=True)
    check_choice(cfg, "TRUTH", ("auto", *study_columns.TRUTHS))
    check_script_args(cfg, "NCE_LONG_ARGS", "study", ("OUT_DIR", "DATA_DIR", "MAX_IMAGES", "IMAGE_SIZE", "SEED"))
    for name in ("SAMPLE_SEED", "SEED", "THREADS", "MAX_FAILURES"):
        check_number(cfg, name, 0, integer=True)
    check_number(cfg, "IMAGE_SIZE", 32, integer=True)
    check_number(cfg, "N_RESAMPLES", 100, integer=True)
    check_number(cfg, "TOP_FRACTION", 0, 1, lo_open=True)
    check_number(cfg, "CONFIDENCE", 0, 1, lo_open=True, hi_open=True)
    check_choice(cfg, "SPACE", ("auto", *G.SPACES))
    check_choice(cfg, "SEARCH_PRESET", ("auto", "demo", "paper"))
    check_choice(cfg, "CORRELATE", study_analysis.ROW_CHOICES)
    check_script_args(cfg, "SEARCH_ARGS", "study", ("OUT_DIR",))
    check_script_args(cfg, "TRAIN_ARGS", "study", _SET_BY_STUDY)
    if cfg["SEARCH_RUN"] is not None:
        run = Path(cfg["SEARCH_RUN"]).expanduser()
        if not ((run / "config.json").is_file() and (run / "trials.jsonl").is_file()):
            raise ConfigError(f"SEARCH_RUN {run} is not a search run folder (no config.json and trials.jsonl)")
    if cfg["LABELED_DIR"] is not None and not Path(cfg["LABELED_DIR"]).expanduser().exists():
        raise ConfigError(f"LABELED_DIR {cfg['LABELED_DIR']} does not exist")


def search_settings(cfg):
    """search.py's resolved settings for the label-free scores, resolved and checked by search.py itself: SEARCH_RUN's
    own config.json (as it ran; a setting added since takes its default), else search.py's constants with the preset
    SEARCH_PRESET names (auto: the study's own PRESET); SEARCH_ARGS on top; DEVICE, THREADS and DEBUG the study's."""
    args = list(cfg["SEARCH_ARGS"])
    preset = cfg["PRESET"] if cfg["SEARCH_PRESET"] == "auto" else cfg["SEARCH_PRESET"]
    if cfg["SEARCH_RUN"] is not None and cfg["SEARCH_PRESET"] == "auto":
        saved = json.loads((Path(cfg["SEARCH_RUN"]).expanduser() / "config.json").read_text())
        known = script_config(_SEARCH_SCRIPT, ["--PRESET=paper"])  # the settings search.py has now
        args = as_argv({k: v for k, v in saved.items() if k in known}) + args
    else:
        has_data = any(a.startswith("--DATA_DIR=") for a in args)
        if not has_data and cfg["LABELED_DIR"] is not None:
            if not Path(cfg["LABELED_DIR"]).expanduser().is_dir():
                raise ConfigError(f"LABELED_DIR {cfg['LABELED_DIR']} is no folder of images for the label-free scores; "
                                  "give one: --SEARCH_ARGS=\"('--DATA_DIR=/path/to/images',)\"")
            args.insert(0, f"--DATA_DIR={cfg['LABELED_DIR']}")
        args.insert(0, f"--PRESET={preset}")  # the study's own preset, unless SEARCH_PRESET names another
    args += [f"--DEVICE={cfg['DEVICE']}", f"--THREADS={cfg['THREADS']}", f"--DEBUG={cfg['DEBUG']}"]
    scfg = script_config(_SEARCH_SCRIPT, args)
    scfg["OUT_DIR"] = None
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


def long_settings(cfg, scfg):
    """nce_long's settings: NCE_LONG_ARGS over the nce settings, checked by search.py; {} when it is not measured.
    Returns only what differs from nce's settings (what the Measurer lays over them)."""
    if not cfg["NCE_LONG_ARGS"]:
        return {}
    long_cfg = script_config(_SEARCH_SCRIPT, as_argv(scfg) + list(cfg["NCE_LONG_ARGS"]))
    return {k: v for k, v in long_cfg.items() if v != scfg.get(k)}


def labeled_data(cfg):
    """The labeled dataset's folder and what train_isic.py is told of it: LABELED_DIR as given (its own preset), or
    the study's own demo lesions (class-balanced, DEMO_IMAGES, DEMO_SEED; drawn once) with the demo preset."""
    if cfg["LABELED_DIR"] is not None:
        return {"DATA_DIR": cfg["LABELED_DIR"], "PRESET": None}
    root = ensure_demo_dataset(REPO_ROOT / "data" / "study_lesions", n_images=cfg["DEMO_IMAGES"], seed=cfg["DEMO_SEED"],
                               balanced=True)
    return {"DATA_DIR": str(root), "PRESET": "demo"}


def train_settings(cfg, data):
    """train_isic.py's resolved settings for the study's labeled training, resolved and checked by train_isic.py
    itself (its constants, the preset `data` names, the study's budget, TRAIN_ARGS; refused there, refused here).
    Each part sets GENOTYPE, OUT_DIR and SEED (+ its seed index) on top (Measurer)."""
    argv = ["--GENOTYPE=DARTS_V2",  # a stand-in the parts replace: train_isic refuses an ARCH in TRAIN_ARGS now
            f"--SEED={cfg['SEED']}", "--N_CAM=0",
            "--LATENCY_RUNS=1",  # the model card's CPU latency is no part of the study: one timed run, not 30
            *(f"--{k}={cfg[k]}" for k in ("EPOCHS", "INIT_CHANNELS", "LAYERS", "IMAGE_SIZE", "BATCH_SIZE", "DEVICE"))]
    given = {"PRESET": data["PRESET"], "DATA_DIR": data["DATA_DIR"], "VAL_FRACTION": cfg["VAL_FRACTION"],
             "TEST_FRACTION": cfg["TEST_FRACTION"]}
    argv += [f"--{k}={v}" for k, v in given.items() if v is not None]
    return script_config(_TRAIN_SCRIPT, argv + list(cfg["TRAIN_ARGS"]))


def study_settings(cfg, scfg, long_cfg, train_cfg, n_images, classes, genotypes):
    """The settings section of report.md: what each column was measured with."""
    n_search = sum(g["source"] == "search" for g in genotypes)
    nce = (f"C={scfg['INIT_CHANNELS']}, {scfg['LAYERS']} cells, {scfg['EPOCHS']} epochs, batch {scfg['BATCH_SIZE']}, "
           f"LR {scfg['LR']}, REPEATS {scfg['REPEATS']}")
    out = {
        "genotypes": f"{cfg['K']} drawn uniformly from the '{scfg['SPACE']}' encoding (SAMPLE_SEED {cfg['SAMPLE_SEED']})"
                     + (f", plus the best {n_search} of search run {cfg['SEARCH_RUN']}" if n_search else "")
                     + f"; the first {min(cfg['PILOT_K'], cfg['K'])} are the pilot",
        "label-free scores": (f"on {n_images} unlabeled images at {scfg['IMAGE_SIZE']} px; nce = the search's trial "
                              f"score ({nce}, seed {scfg['SEED']} + i, {cfg['NCE_SEEDS']} seed(s)); nce_e<k> = its "
                              f"loss after epoch k; nce_init = the same loss, views, bank and seed with no learning; "
                              f"naswot and synflow on one batch of {scfg['BATCH_SIZE']} at initialisation "
                              f"(seed {scfg['SEED']})"),
        "size baselines": (f"params and macs of the labeled-training network (C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} "
                           f"cells, {cfg['IMAGE_SIZE']} px, {len(classes)} classes, no auxiliary head)"),
        "labeled training": (f"train_isic.py's training on {train_cfg['DATA_DIR']}: {cfg['EPOCHS']} epochs, "
                             f"C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells, {cfg['IMAGE_SIZE']} px, batch "
                             f"{cfg['BATCH_SIZE']}, LR {train_cfg['LR']}, class balance {train_cfg['CLASS_BALANCE']}, "
                             f"validation/test fractions {train_cfg['VAL_FRACTION']}/{train_cfg['TEST_FRACTION']}, "
                             f"split seed {train_cfg['SPLIT_SEED']}, seeds {cfg['SEED']}..{cfg['SEED'] + cfg['SEEDS'] - 1}"),
        "truth candidates": (f"bacc, auc, val_loss: the validation split's balanced accuracy, macro AUC and loss, each "
                             f"the mean of the last {cfg['TRUTH_EPOCHS']} epochs, then of the seeds; TRUTH "
                             f"{cfg['TRUTH']!r}; test balanced accuracy (last epoch) kept in study.csv"),
        "classes": ", ".join(classes),
    }
    if long_cfg:
        out["nce_long"] = "nce with " + ", ".join(f"{k}={v}" for k, v in long_cfg.items())
    return out


def write_figures(run_dir, rows, corr, n_seeds):
    """scatter_<score>.png per score and correlations.png; returns the file names."""
    picked = rows if corr["about"]["rows"] == "all" else [r for r in rows if r["source"] == "random"]
    shown = picked + [r for r in rows if r["source"] == "search" and r not in picked]
    names = corr["about"]["scores"]
    truth = corr["about"]["truth_name"]
    label = study_columns.TRUTHS[truth][2] + ("" if study_columns.TRUTHS[truth][1] else ", negated")
    files = []
    for name in names:
        files.append(f"scatter_{name}.png")
        seeds = np.stack([study_columns.column(shown, f"truth_s{i}") for i in range(n_seeds)], 1)
        points = study_figures.ScorePoints(score=study_columns.column(shown, name),
                                           truth=study_columns.column(shown, "truth"),
                                           sources=[r["source"] for r in shown],
                                           truth_by_seed=seeds if n_seeds > 1 else None)
        study_figures.plot_score_scatter(run_dir / files[-1], name, points, corr[name],
                                         study_analysis.HIGHER_IS_BETTER[name], truth_label=label)
    files.append("correlations.png")
    study_figures.plot_correlation_bars(run_dir / files[-1], names, corr, corr.get("ceiling"),
                                        title=f"rank correlation with the truth ({truth})")
    return files


def check_study_memory(cfg, scfg, train_cfg, n_classes, threads):
    """Before the run folder and any part: one step of the largest candidate (every edge a separable conv), for nce
    with the search settings (on a full batch of blank images) and for the labeled training with the study's, WORKERS
    of them at a time on this device; stops with one line naming the setting to lower (a study killed by the kernel
    loses its work and says nothing)."""
    blank = np.zeros((scfg["BATCH_SIZE"], scfg["IMAGE_SIZE"], scfg["IMAGE_SIZE"], 3), np.uint8)
    ctx = trial_context({"images": blank, "cfg": scfg}, cfg["DEVICE"], threads)
    device, sharing, batch = ctx.rt.device, cfg["WORKERS"], scfg["BATCH_SIZE"]
    try:
        check_step(step_memory(ctx), device, batch, FitCheck(sharing=sharing, log=lambda line: print(f"nce {line}")))
    except ConfigError as exc:
        raise ConfigError(f"nce with the search settings: {exc} (through --SEARCH_ARGS=\"('--BATCH_SIZE=...',)\", or "
                          "--SEARCH_PRESET=demo)") from None
    aux = train_cfg["AUXILIARY_WEIGHT"]
    network = lambda: EvalNetwork(largest_candidate(), n_classes, C=cfg["INIT_CHANNELS"], layers=cfg["LAYERS"],  # noqa: E731
                                  auxiliary=aux > 0)
    try:
        step = LabeledStep(image_size=cfg["IMAGE_SIZE"], n_classes=n_classes, autocast=ctx.rt.autocast,
                           channels_last=ctx.rt.channels_last, aux_weight=aux)
        check_classifier_memory(network, step, batch_size=cfg["BATCH_SIZE"], device=device,
                                check=FitCheck(sharing=sharing, log=lambda line: print(f"labeled {line}")))
    except ConfigError as exc:
        raise ConfigError(f"labeled training: {exc}") from None


def run_pilot(cfg, run_dir, genotypes, parts, measure, stats):
    """The pilot: labeled training of the first PILOT_K random genotypes, then the truth's reliability.

    Its verdict is written once (pilot.json) and kept on resume. Returns the pilot record; raises StudyStopped with
    one line naming the levers when the truth used is below MIN_RELIABILITY.
    """
    path = run_dir / _PILOT_FILE
    if path.exists():
        pilot = json.loads(path.read_text())
    else:
        pilot_set = [g for g in genotypes if g["source"] == "random"][: cfg["PILOT_K"]]
        print(f"pilot: {len(pilot_set)} genotypes x {cfg['SEEDS']} seed(s) of labeled training, to measure how well "
              "the truth agrees with itself", flush=True)
        measure(pilot_set, only=("train",))
        rows = study_columns.study_rows(pilot_set, parts, cfg["SEEDS"], truth_epochs=cfg["TRUTH_EPOCHS"])
        rel = study_analysis.reliability(rows, cfg["SEEDS"], "random", **stats)
        truth = study_analysis.choose_truth(cfg["TRUTH"], rel)
        used = rel.get(truth, {})
        pilot = {"genotypes": len(pilot_set), "seeds": cfg["SEEDS"], "truth": truth,
                 "reliability": used.get("reliability"), "reliability_ci": used.get("reliability_ci", [None, None]),
                 "candidates": rel}
        atomic_write_json(path, pilot)
    corr = {"about": {"truth": f"{pilot['truth']} ({study_columns.TRUTHS[pilot['truth']][2]})",
                      "truth_name": pilot["truth"], "reliable": study_analysis.RELIABLE,
                      "decidable": (pilot["reliability"] or 0) >= study_analysis.RELIABLE},
            "reliability": pilot["candidates"]}
    print("\n".join(f"pilot | {line}" for line in study_report.reliability_lines(corr)), flush=True)
    reached = pilot["reliability"] is not None and pilot["reliability"] >= cfg["MIN_RELIABILITY"]
    if not reached and cfg["MIN_RELIABILITY"] > 0:
        need = (pilot["candidates"].get(pilot["truth"]) or {}).get("seeds_needed")
        raise StudyStopped(
            f"the truth ({pilot['truth']}) has reliability {study_report._f(pilot['reliability'], '.2f')} < "
            f"MIN_RELIABILITY {cfg['MIN_RELIABILITY']} in the pilot: no score can be judged against it. Levers: more "
            f"seeds (--SEEDS={need or 'many more'}{'' if need else ': its ICC is <= 0'}), more validation images "
            "(--VAL_FRACTION or a larger LABELED_DIR), more epochs (--EPOCHS), a smoother truth (--TRUTH_EPOCHS, "
            "--TRUTH); or --MIN_RELIABILITY=0 to run anyway (every verdict is then 'not decidable')")
    pilot.update(forced=(pilot["reliability"] or 0) < study_analysis.RELIABLE, min_reliability=cfg["MIN_RELIABILITY"])
    return pilot


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), argv, PRESETS, data_key="LABELED_DIR")
    check_settings(cfg)
    scfg = search_settings(cfg)
    long_cfg = long_settings(cfg, scfg)
    if cfg["SPACE"] == "auto":
        cfg["SPACE"] = scfg["SPACE"]
    data = labeled_data(cfg)
    train_cfg = train_settings(cfg, data)  # refuses a bad TRAIN_ARGS now
    classes = list(load_data(train_cfg).classes)  # a wrong LABELED_DIR stops here, before a run folder exists
    threads = cfg["THREADS"] or (1 if cfg["WORKERS"] > 1 else 0)  # parallel parts share the cores: one thread each
    check_study_memory(cfg, scfg, train_cfg, len(classes), threads)  # so does a batch that cannot fit
    run_dir, resumed = open_run_dir(cfg["OUT_DIR"] or new_run_dir("study"), cfg, ignore=_RESUME_MAY_CHANGE)
    keep_search_settings(run_dir, {**scfg, "NCE_LONG": long_cfg})
    if cfg["LABELED_DIR"] is None:
        print(f"DEMO: no LABELED_DIR given, so this studies drawn lesions ({data['DATA_DIR']}) with the 'demo' preset.\n"
              "      For real data: python proxy_study.py --LABELED_DIR=/path/to/ISIC2019 --SEARCH_RUN=<search run>")
    print(f"config ({'resuming ' if resumed else ''}{run_dir}):\n{format_config(cfg, from_preset)}")

    # ---- genotypes, images, the measurer -----------------------------------------------------------------
    genotypes = study_genotypes(run_dir, lambda: random_genotypes(cfg["K"], cfg["SPACE"], cfg["SAMPLE_SEED"]) + (
        search_top(Path(cfg["SEARCH_RUN"]).expanduser(), cfg["TOP"]) if cfg["SEARCH_RUN"] else []))
    images = load_images(scfg, run_dir)
    ctx = trial_context({"images": images, "cfg": scfg}, cfg["DEVICE"], threads)
    parts = PartLog(run_dir)
    recipe = dict(run_dir=run_dir, train_cfg=train_cfg,
                  size_network=(cfg["INIT_CHANNELS"], cfg["LAYERS"], cfg["IMAGE_SIZE"], len(classes)),
                  n_seeds=cfg["SEEDS"], max_failures=cfg["MAX_FAILURES"], debug=cfg["DEBUG"],
                  nce_seeds=cfg["NCE_SEEDS"], long_cfg=long_cfg or None)
    measurer = Measurer(ctx=ctx, **recipe)
    worker_recipe = {**recipe, "images": images, "scfg": scfg, "device": cfg["DEVICE"], "threads": threads}

    def measure(entries, only=None, on_genotype=None):
        measure_many(measurer, entries, parts, only, cfg["WORKERS"], worker_recipe, on_genotype)

    if ctx.rt.device.type == "cpu" and cfg["PRESET"] == "paper":
        print("note: the paper preset is sized for one GPU (hours); on a CPU try --PRESET=demo first")
    print(f"device {ctx.rt} | {len(genotypes)} genotypes x {cfg['SEEDS']} seed(s), {cfg['WORKERS']} worker(s) | "
          f"nce: {scfg['EPOCHS']} epochs of C={scfg['INIT_CHANNELS']}, {scfg['LAYERS']} cells on {len(images)} images | "
          f"labels: {cfg['EPOCHS']} epochs of C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells at {cfg['IMAGE_SIZE']} px")
    stats = dict(confidence=cfg["CONFIDENCE"], n_resamples=cfg["N_RESAMPLES"])

    # ---- pilot: can the truth rank architectures at all? -------------------------------------------------
    pilot = run_pilot(cfg, run_dir, genotypes, parts, measure, stats)
    truth = pilot["truth"]

    # ---- measure, genotype by genotype (study.csv and correlations.json after each) -----------------------
    options = dict(nce_seeds=cfg["NCE_SEEDS"], truth=truth, truth_epochs=cfg["TRUTH_EPOCHS"])
    judge = study_analysis.CorrelationSettings(use=cfg["CORRELATE"], top_fraction=cfg["TOP_FRACTION"],
                                               nce_seeds=cfg["NCE_SEEDS"], has_long=bool(long_cfg), truth=truth,
                                               truth_epochs=cfg["TRUTH_EPOCHS"], **stats)
    clock = {"start": time.perf_counter(), "measured": 0}

    def genotype_done(entry):
        rows = study_columns.study_rows(genotypes, parts, cfg["SEEDS"], **options)
        study_report.write_outputs(run_dir, rows, study_analysis.correlations(rows, cfg["SEEDS"], judge, pilot))
        n = next(i for i, g in enumerate(genotypes, 1) if g["id"] == entry["id"])
        clock["measured"] += 1
        spent = time.perf_counter() - clock["start"]
        eta = spent / clock["measured"] * (len(genotypes) - n) / 60
        print(study_report.genotype_line(n, len(genotypes), rows[n - 1], spent / clock["measured"], eta), flush=True)

    measure(genotypes, on_genotype=genotype_done)

    # ---- report ------------------------------------------------------------------------------------------
    rows = study_columns.study_rows(genotypes, parts, cfg["SEEDS"], **options)
    corr = study_analysis.correlations(rows, cfg["SEEDS"], judge, pilot)
    study_report.write_outputs(run_dir, rows, corr)
    figures = write_figures(run_dir, rows, corr, cfg["SEEDS"])
    about = study_settings(cfg, scfg, long_cfg, train_cfg, len(images), classes, genotypes)
    timings = study_report.timing_summary(parts)
    atomic_write_text(run_dir / study_report.REPORT_FILE, study_report.report_markdown(corr, about, timings, figures))
    mark_finished(run_dir, {"genotypes": len(genotypes), "failed_parts": parts.failures()})
    print(f"\n{study_report.format_table(corr)}\n")
    print(f"wrote {run_dir}/: study.csv, correlations.json, report.md, {', '.join(figures)}")
    return run_dir


if __name__ == "__main__":
    run_cli(main, (ConfigError, DatasetError, BadImage, StudyStopped), lambda: DEBUG or "--DEBUG=True" in sys.argv,
            "finished parts are kept; rerun the same command with --OUT_DIR=<the run folder above> to resume")
