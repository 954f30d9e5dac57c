"""How many labels does the network need, and do unlabeled images help? A label-efficiency curve with error bars.

    cd eval && python label_curve.py                         # demo: drawn lesions, sized for one CPU core
    python label_curve.py --DATA_DIR=/data/ISIC2019           # 'paper' preset: one GPU
    python label_curve.py --DATA_DIR=/data/ISIC2019 --TRAIN_ARGS="('--ARCH=resnet18',)"   # any train_isic.py setting

For every split seed in SEEDS (each draws its own validation and test split, its own labeled subsets, and seeds the
training) and every LABEL_FRACTIONS share of the training labels, the network is trained twice through train_isic.py's
own training (common/labeled/run.py, with the settings train_isic.py resolves): from scratch, and from its backbone
pre-trained without labels on the split's training images (PRETRAIN_EPOCHS of the search's contrastive objective,
once per split and shared by its fractions, since the unlabeled images are the same for all of them). The run folder
gets curve.csv (a row per training), curve.md (test balanced accuracy per fraction and arm, mean ± SD over the split
seeds, and the pre-training gain paired by seed with a 95 % bootstrap CI) and label_curve.png, rewritten after every
training; each training keeps its own train_isic run folder under runs/, each pre-training under pretrain/. Rerunning
the same command after a kill keeps every finished training and resumes the unfinished one. Any constant below can be
set as --NAME=value.
"""
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common.config import ConfigError, check_number, check_script_args, configure, format_config, run_cli, script_config  # noqa: E402
from common.data.demo.dataset import DEFAULT_DEMO_DIR, ensure_demo_dataset  # noqa: E402
from common.data.demo.dataset import DEFAULT_N_IMAGES as _DEMO_N  # noqa: E402  (private: an imported int is no setting)
from common.data.label_subset import label_subset  # noqa: E402
from common.device import pick_device  # noqa: E402
from common.failures import failure_reason  # noqa: E402
from common.labeled import curve  # noqa: E402
from common.labeled.data import load_data  # noqa: E402
from common.labeled.model import choose_genotype  # noqa: E402
from common.labeled.pretrain import HISTORY as _PRETRAIN_HISTORY  # noqa: E402
from common.labeled.run import pretrain_only, train  # noqa: E402
from common.labeled.torchrun import USER_ERRORS as _USER_ERRORS  # noqa: E402
from common.runs import FINISHED as _FINISHED  # noqa: E402
from common.runs import REPO_ROOT, append_jsonl, mark_finished, new_run_dir, open_run_dir, read_jsonl  # noqa: E402

# -----------------------------------------------------------------------------
DATA_DIR = None  # labeled dataset, any layout train_isic.py reads; None = drawn demo lesions (DEMO_IMAGES of them)
DEMO_IMAGES = 720  # without DATA_DIR: lesions drawn (ISIC 2019's imbalance, at least 30 a class); more = more labels
# at small fractions and a steadier test split, slower runs
LABEL_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)  # shares of each training split's labels (per class, nested)
SEEDS = (0, 1, 2)  # split seeds: each its own val/test split and labeled subsets; also each run's training SEED
PRETRAIN_EPOCHS = 50  # self-supervised pre-training per split seed, shared by its fractions (the pre-trained arm)
PRETRAIN_LR = 0.05  # its SGD learning rate, cosine-annealed
EPOCHS = 30  # labeled epochs of a run (more where MIN_STEPS asks)
MIN_STEPS = 0  # a run with few labels trains for at least this many SGD steps (more epochs); 0 = EPOCHS for all
TRAIN_ARGS = ()  # further train_isic.py settings for every run, '--NAME=value' strings, e.g. ('--ARCH=resnet18',)
OUT_DIR = None  # this curve's folder; None = runs/label_curve/<timestamp>; an unfinished curve there is resumed
PRESET = "auto"  # auto ('demo' without DATA_DIR, else 'paper') | demo | paper; also train_isic.py's preset
DEBUG = False  # full tracebacks for user errors and failed trainings
# -----------------------------------------------------------------------------

PRESETS = {
    # one GPU, train_isic.py's paper network (C=58, 24 cells, 224 px, batch 160): not measured (no GPU at hand); by
    # its FLOPs, hours per split seed
    "paper": dict(LABEL_FRACTIONS=(0.05, 0.1, 0.25, 0.5, 1.0), SEEDS=(0, 1, 2), PRETRAIN_EPOCHS=50, EPOCHS=30,
                  MIN_STEPS=2000),
    # one CPU core (train_isic.py's demo network: C=16, 5 cells, 96 px, batch 32, one thread), measured 61 min beside other jobs.
    # Sized from runs timed on the 2-core development VM with one torch thread beside other jobs (load ~3): a labeled
    # epoch took ~0.3 s + 6.5 ms per labeled image (3.0-3.9 s with all 432 labels: validation and test stay at 144
    # each), a pre-training epoch of the 432 training images 8-10 s. Per split seed: 2 x (90 + 90 + 30 + 30 + 30
    # epochs at 23 / 44 / 111 / 217 / 432 labels) ~ 9.6 min + 20 pre-training epochs ~ 3 min; 3 seeds ~ 38 min
    "demo": dict(LABEL_FRACTIONS=(0.05, 0.1, 0.25, 0.5, 1.0), SEEDS=(0, 1, 2), PRETRAIN_EPOCHS=20, EPOCHS=30,
                 MIN_STEPS=90, DEMO_IMAGES=720),
}
# train_isic.py settings the curve sets itself, per run
_SET_BY_CURVE = ("LABEL_FRACTION", "SPLIT_SEED", "SEED", "OUT_DIR", "PRETRAIN_EPOCHS", "PRETRAIN_LR",
                 "PRETRAINED_WEIGHTS", "EPOCHS", "DATA_DIR", "PRESET", "DEBUG")
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEBUG")
_TRAIN_SCRIPT = REPO_ROOT / "eval" / "train_isic.py"  # asked for its settings (common.config.script_config), never imported
_FAILURES = "failures.jsonl"
_RUNTIME = {"debug": DEBUG}


# ----------------------------------------------------------------------------- config


def check_settings(cfg):
    """Every curve setting checked before anything is written (train_isic.py checks its own in train_settings)."""
    for name in ("LABEL_FRACTIONS", "SEEDS", "TRAIN_ARGS"):
        if not isinstance(cfg[name], (tuple, list)) or (name != "TRAIN_ARGS" and not cfg[name]):
            raise ConfigError(f"--{name}={cfg[name]!r}: needs a tuple, e.g. {globals()[name]!r}")
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in cfg["LABEL_FRACTIONS"]):
        raise ConfigError(f"--LABEL_FRACTIONS={cfg['LABEL_FRACTIONS']!r}: every share must lie in (0, 1], e.g. (0.1, 1.0)")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in cfg["SEEDS"]) or \
            len(set(cfg["SEEDS"])) < len(cfg["SEEDS"]):
        raise ConfigError(f"--SEEDS={cfg['SEEDS']!r}: distinct integers >= 0, e.g. (0, 1, 2)")
    cfg["LABEL_FRACTIONS"] = tuple(sorted({float(f) for f in cfg["LABEL_FRACTIONS"]}))
    cfg["SEEDS"], cfg["TRAIN_ARGS"] = tuple(cfg["SEEDS"]), tuple(cfg["TRAIN_ARGS"])
    for name, low in (("DEMO_IMAGES", 16), ("PRETRAIN_EPOCHS", 1), ("EPOCHS", 1), ("MIN_STEPS", 0)):
        check_number(cfg, name, low, integer=True)
    check_number(cfg, "PRETRAIN_LR", 0, lo_open=True)
    check_script_args(cfg, "TRAIN_ARGS", "curve", _SET_BY_CURVE)
    return cfg


def train_settings(cfg):
    """train_isic.py's resolved settings for every run of the curve (its constants, the preset of the same name, the
    curve's data, TRAIN_ARGS; refused there, refused here), the genotype pinned once: a search run that finishes while
    the curve runs must not change the network half-way."""
    if cfg["DATA_DIR"] is None:
        n = cfg["DEMO_IMAGES"]
        root = DEFAULT_DEMO_DIR if n == _DEMO_N else DEFAULT_DEMO_DIR.with_name(f"demo_lesions_{n}")
        data_dir = str(ensure_demo_dataset(root, n_images=n))
    else:
        data_dir = str(Path(cfg["DATA_DIR"]).expanduser().resolve())
    argv = [f"--PRESET={cfg['PRESET']}", f"--DATA_DIR={data_dir}", f"--EPOCHS={cfg['EPOCHS']}", "--N_CAM=0",
            "--LATENCY_RUNS=1", *cfg["TRAIN_ARGS"]]  # Grad-CAM pictures and 30 latency runs are no part of a curve
    tcfg = script_config(_TRAIN_SCRIPT, argv)
    if tcfg["ARCH"] is None:
        _, source = choose_genotype(tcfg["GENOTYPE"])
        tcfg["GENOTYPE"] = str(Path(source).resolve()) if Path(source).suffix == ".json" else source
    return tcfg


def plan_epochs(cfg, tcfg):
    """{(fraction, seed): (labeled images, epochs)}; a fraction that leaves a class of some split without labels
    stops here with one line, before the curve's folder exists."""
    plan = {}
    for seed in cfg["SEEDS"]:
        data = load_data({**tcfg, "SPLIT_SEED": seed})
        for f in cfg["LABEL_FRACTIONS"]:
            try:
                n = len(label_subset(data.train, data.classes, f, seed)[0])
            except ConfigError as exc:
                raise ConfigError(f"SPLIT_SEED {seed}: {exc}") from None
            plan[f, seed] = (n, curve.epochs_for(n, tcfg["BATCH_SIZE"], cfg["EPOCHS"], cfg["MIN_STEPS"]))
    return plan


# ----------------------------------------------------------------------------- the runs


@contextlib.contextmanager
def logged(path):
    """The block's printed lines go to `path` (appended); progress bars stay on the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f, contextlib.redirect_stdout(f):
        yield


def pretrained_for(seed, tcfg, cfg, run_dir):
    """pretrained.pt of split `seed` (pre-trained now, resumed, or read): pretrain/s<seed>/."""
    out = run_dir / "pretrain" / f"s{seed}"
    pcfg = {**tcfg, "SPLIT_SEED": seed, "SEED": seed, "LABEL_FRACTION": 1.0, "PRETRAIN_EPOCHS": cfg["PRETRAIN_EPOCHS"],
            "PRETRAIN_LR": cfg["PRETRAIN_LR"], "OUT_DIR": str(out)}
    with logged(out.parent / f"{out.name}.log"):
        return pretrain_only(pcfg)


def run_cell(cell, tcfg, epochs, weights, run_dir):
    """One training of the curve: (its curve.csv row). A user error (settings, data) stops the curve; anything else the
    training raises is its failure, recorded, and the curve goes on."""
    out = run_dir / "runs" / cell.name
    ccfg = {**tcfg, "LABEL_FRACTION": cell.fraction, "SPLIT_SEED": cell.seed, "SEED": cell.seed, "EPOCHS": epochs,
            "PRETRAIN_EPOCHS": 0, "PRETRAINED_WEIGHTS": str(weights) if weights else None, "OUT_DIR": str(out)}
    start = time.time()
    try:
        if not (out / _FINISHED).exists():
            with logged(out.parent / f"{out.name}.log"):
                train(ccfg)
    except _USER_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - the training's failure: recorded, the curve goes on
        if _RUNTIME["debug"]:
            raise
        failure = {"cell": cell.name, "reason": failure_reason(exc)}
        append_jsonl(run_dir / _FAILURES, failure)
        return curve.row(cell, None, run=str(out), seconds=round(time.time() - start, 1), reason=failure["reason"])
    metrics = json.loads((out / "metrics.json").read_text())
    return curve.row(cell, metrics, run=str(out), seconds=metrics.get("wall_seconds"))


def progress_line(k, total, cell, row, eta_min):
    """'run 3/18 pretrained fraction 0.1   seed 0 | test bal-acc 0.312 | 41 s | ETA 22 min'."""
    bacc = row.get("balanced_accuracy")
    result = f"test bal-acc {bacc:.3f}" if bacc is not None else f"FAILED: {row.get('reason')}"
    eta = f" | ETA {eta_min:.0f} min" if eta_min is not None else ""
    return (f"run {k}/{total} {cell.arm:<10} fraction {cell.fraction:<5g} seed {cell.seed} | {result} | "
            f"{row.get('seconds') or 0:.0f} s{eta}")


# ----------------------------------------------------------------------------- main


def main(argv=None):
    started = time.time()
    # ---- config: the curve's, then train_isic.py's own for every run, and the plan (a bad one stops before a folder)
    cfg, preset_changed = configure(dict(globals()), argv, PRESETS)
    _RUNTIME["debug"] = cfg["DEBUG"]
    check_settings(cfg)
    tcfg = train_settings(cfg)
    plan = plan_epochs(cfg, tcfg)
    cells = curve.grid(cfg["LABEL_FRACTIONS"], cfg["SEEDS"])
    run_dir, resumed = open_run_dir(cfg["OUT_DIR"] or new_run_dir("label_curve"), cfg, ignore=_RESUME_MAY_CHANGE)
    print(f"== label_curve: {len(cells)} trainings ({len(cfg['LABEL_FRACTIONS'])} fractions x 2 arms x "
          f"{len(cfg['SEEDS'])} split seeds) + {len(cfg['SEEDS'])} pre-trainings -> {run_dir}"
          + (" (resuming)" if resumed else f"  (to resume: --OUT_DIR={run_dir})"))
    print(format_config(cfg, preset_changed))
    network = tcfg["ARCH"] or f"{tcfg['GENOTYPE']}, C={tcfg['INIT_CHANNELS']}, {tcfg['LAYERS']} cells"
    print(f"training: {network}, {tcfg['IMAGE_SIZE']} px, batch {tcfg['BATCH_SIZE']}, LR {tcfg['LR']}, on "
          f"{tcfg['DATA_DIR']} (train_isic.py preset {tcfg['PRESET']}); epochs per fraction: "
          + ", ".join(f"{f:g}: {plan[f, cfg['SEEDS'][0]][1]}" for f in cfg["LABEL_FRACTIONS"]))

    # ---- runs, split seed by split seed: its pre-training, then its fractions (outputs rewritten after each run)
    rows, trained_here, spent = [], 0, 0.0  # spent: seconds of the trainings (and pre-trainings) run by this command
    title = f"{Path(tcfg['DATA_DIR']).name}: {network}"
    for cell in cells:
        t0 = time.time()
        fresh = not (run_dir / "runs" / cell.name / _FINISHED).exists()
        weights = pretrained_for(cell.seed, tcfg, cfg, run_dir) if cell.arm == "pretrained" else None
        n_labeled, epochs = plan[cell.fraction, cell.seed]
        row = run_cell(cell, tcfg, epochs, weights, run_dir)
        rows.append({**row, "epochs": epochs, "n_labeled": row.get("n_labeled") or n_labeled})
        if fresh:
            trained_here, spent = trained_here + 1, spent + time.time() - t0
        left = len(cells) - len(rows)
        eta = spent / trained_here * left / 60 if trained_here and left else None  # rough: fractions differ in cost
        print(progress_line(len(rows), len(cells), cell, row, eta), flush=True)
        curve.write(run_dir, rows, title, notes(cfg, tcfg, rows, run_dir, started))

    # ---- save and report
    mark_finished(run_dir, {"trainings": len(rows), "failed": sum(r["status"] != "ok" for r in rows)})
    print((run_dir / "curve.md").read_text())
    print(f"wrote {run_dir}/: curve.csv, curve.md, label_curve.png, runs/ ({len(rows)} train_isic runs), pretrain/")
    return run_dir


def notes(cfg, tcfg, rows, run_dir, started):
    """The lines under curve.md's table: what was trained, on what, how long it took."""
    cell_seconds = sum(r.get("seconds") or 0 for r in rows)
    pretrain_seconds = sum(h["seconds"] for s in cfg["SEEDS"]
                           for h in read_jsonl(run_dir / "pretrain" / f"s{s}" / _PRETRAIN_HISTORY))
    return [f"{len(rows)} trainings through train_isic.py's own training (test split scored once, by the epoch "
            f"chosen on validation); split seeds {', '.join(map(str, cfg['SEEDS']))}; labeled subsets nested per class",
            f"pre-trained arm: {cfg['PRETRAIN_EPOCHS']} epoch(s) of the search's contrastive objective (NCE against a "
            f"memory bank, 3 views) on each split's training images, labels unread, LR {cfg['PRETRAIN_LR']}",
            f"labeled epochs: {cfg['EPOCHS']}, at least {cfg['MIN_STEPS']} SGD steps at batch {tcfg['BATCH_SIZE']}",
            f"machine: {curve.machine()}, device {pick_device(tcfg['DEVICE'])}, {tcfg['THREADS'] or 'all'} torch thread(s); "
            f"{cell_seconds / 60:.1f} min of labeled training and {pretrain_seconds / 60:.1f} min of pre-training "
            f"(this command so far: {(time.time() - started) / 60:.1f} min wall)"]


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2."""
    run_cli(lambda: main(argv), _USER_ERRORS, lambda: _RUNTIME["debug"],
            "rerun the same command with --OUT_DIR=<the curve folder above> to resume")


if __name__ == "__main__":
    cli()
