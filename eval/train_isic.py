"""Train a DARTS genotype with labels on skin-lesion images and report what dermatology papers report.

    cd eval && python train_isic.py                          # demo: built-in lesions, small model, CPU-sized
    python train_isic.py --DATA_DIR=/data/ISIC2019           # real data with the paper's settings (PRESET 'paper')
    python train_isic.py --DATA_DIR=/data/ISIC2019 --ARCH=resnet18   # a torchvision baseline, same data and recipe
    python train_isic.py --PREDICT_DIR=/data/ISIC2019_Test --CHECKPOINT=../runs/eval/<run>/best.pt
                                                             # ISIC submission CSV for unlabeled images, no training
    torchrun --nproc_per_node=4 train_isic.py --DATA_DIR=/data/ISIC2019   # 4 GPUs, DistributedDataParallel

Any constant below can be set as --NAME=value. Rerunning the same command with --OUT_DIR=<run folder>
resumes an interrupted run from its ckpt.pt; a finished run folder is never written again.
"""
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common import runs
from common.arch import baselines  # noqa: E402  (modules: their upper-case names are not settings here)
from common.arch.baselines import WithAux, build_baseline, cam_layer  # noqa: E402
from common.arch.genotypes import from_dict, resolve, to_dict  # noqa: E402
from common.arch.networks import EvalNetwork  # noqa: E402
from common.config import (  # noqa: E402
    ConfigError,
    check_choice,
    check_number,
    check_tuple,
    configure,
    format_config,
    run_cli,
)
from common.data.datasets import LAYOUTS as _LAYOUTS  # noqa: E402  (private names: an imported tuple is no setting)
from common.data.datasets import SPLITS as _SPLITS  # noqa: E402
from common.data.datasets import (  # noqa: E402
    DatasetError,
    Record,
    balanced_sampler,
    class_counts,
    class_weights,
    load_labeled,
    split_table,
)
from common.data.demo_lesions import ensure_demo_dataset  # noqa: E402
from common.data.images import BadImage, list_images, skipped_summary, write_skipped  # noqa: E402
from common.data.loaders import ImageDataset, eval_transform, prepare_resized, train_transform  # noqa: E402
from common.device import AMP_CHOICES as _AMP_CHOICES  # noqa: E402
from common.device import CHANNELS_LAST_CHOICES as _CHANNELS_LAST_CHOICES  # noqa: E402
from common.device import check_resumed_runtime, runtime  # noqa: E402
from common.figures import plot_confusion_matrix, plot_training_curves  # noqa: E402
from common.labeled import model_card
from common.labeled.cam import GradCAM, pick_cam_samples, save_cam_figure  # noqa: E402
from common.labeled.distributed import (  # noqa: E402
    DistContext,
    eval_sampler,
    gather_predictions,
    init_distributed,
    per_rank_batch,
    rank_seed,
    sync_buffers,
    train_sampler,
    unused_parameters,
    unwrap,
    wrap_ddp,
)
from common.labeled.metrics import classification_metrics, write_predictions_csv  # noqa: E402
from common.labeled.training import (  # noqa: E402
    finite_or_raise,
    load_checkpoint,
    predict,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    state_dict_nchw,
    train_one_epoch,
)
from common.memory import StepMemory, check_step, probe_classifier  # noqa: E402

# -----------------------------------------------------------------------------
# architecture
GENOTYPE = None  # name in common/arch/genotypes.py | best_genotype.json | search run; None = newest search, else CNAS_ISIC_s5
ARCH = None  # None = the DARTS GENOTYPE; else a torchvision model trained from scratch: resnet18 | resnet50 |
# mobilenet_v3_large | efficientnet_b0 | densenet121 (the same data, split, recipe, metrics and outputs as a genotype)
PRETRAINED_WEIGHTS = None  # a torchvision ImageNet .pth you downloaded, for ARCH (never downloaded here); use
# ImageNet's MEAN=(0.485, 0.456, 0.406), STD=(0.229, 0.224, 0.225) with it
INIT_CHANNELS = 58  # C, channels of the first cells (doubled at each reduction); even; GENOTYPE only
LAYERS = 24  # cells; reduction cells at 1/3 and 2/3 depth; GENOTYPE only
AUXILIARY_WEIGHT = 0.4  # weight of the auxiliary head's loss; 0 = no auxiliary head; ignored with ARCH (it has none)
DROP_PATH_PROB = 0.0  # drop-path probability of the last epoch, ramped linearly from 0 (the paper's script: 0); not ARCH
# data
DATA_DIR = None  # labeled dataset folder or DermaMNIST .npz; None = built-in demo lesions (data/demo_lesions)
LAYOUT = "auto"  # auto | isic2019 | ham10000 | imagefolder | dermamnist
CSV_PATH = None  # ground-truth / metadata CSV when it is not found in DATA_DIR; None = look for it
VAL_FRACTION = 0.2  # share of images for validation (picks the best epoch) where the dataset has no val split
TEST_FRACTION = 0.2  # share of images held out as the test split (scored once) where the dataset has none
SPLIT_SEED = 0  # seed of those splits (stratified, by lesion where known); apart from SEED: seeds share test images
ALLOW_MISSING = False  # True: train even when CSV rows name image files that are not there (they are listed)
IMAGE_SIZE = 224  # px, side of the square network input
CROP_SCALE = (0.4, 1.0)  # area range of the random resized crop in training
MEAN = (0.763, 0.545, 0.570)  # per-channel normalisation, the paper's ISIC 2019 statistics
STD = (0.141, 0.152, 0.169)
RESIZED_CACHE = "auto"  # one-time resized JPEG copies: auto (data/resized/...) | a folder | off (decode originals)
# data-loader processes: by default the cores this process may use, at most 4 (more workers than cores only draw a
# DataLoader warning); 0 = in the main process (a resumed run then repeats the exact batches)
NUM_WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
CLASS_BALANCE = "loss"  # loss (CE weights 1/count) | sampler (classes drawn equally) | both (draws and weights by
# 1/sqrt(count): balanced overall, not compounded) | none; counts of the train split
# optimisation
EPOCHS = 100  # passes over the training split (the paper: 3000; see PRESETS)
BATCH_SIZE = 160  # images per step; under torchrun the global batch, BATCH_SIZE / processes on each (must divide)
LR = 1e-2  # initial learning rate, cosine-annealed to 0 over EPOCHS (the paper: x0.999 every 3 epochs)
MOMENTUM = 0.9  # SGD momentum
NESTEROV = False  # Nesterov momentum
WEIGHT_DECAY = 3e-5  # L2 on all parameters
LABEL_SMOOTHING = 0.1  # cross-entropy label smoothing (DARTS's ImageNet value; the paper's script set 0.2, used none)
GRAD_CLIP = 5.0  # max global gradient norm; 0 = no clipping
# system
DEVICE = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
ALLOW_RUNTIME_CHANGE = False  # True: resume on another device type / autocast / channels_last than the run began with
AMP = "auto"  # auto (bf16 autocast on CUDA, off elsewhere) | bf16 | fp16 (with a gradient scaler) | off
CHANNELS_LAST = "auto"  # auto (on for CUDA and CPU, off for MPS) | on | off: memory format of model and inputs
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core); 1 is faster on a busy shared machine
SEED = 0  # model init, split, sampler and augmentation
# output
OUT_DIR = None  # this run's folder; None = runs/eval/<timestamp>; an unfinished run folder is resumed
N_CAM = 8  # validation images explained with Grad-CAM (correct and wrong ones), PNGs under cam/
LATENCY_RUNS = 30  # timed CPU runs at batch 1 for the model card (after 5 warm-up runs)
EXPORT_ONNX = False  # True: write model.onnx (dynamic batch) and check it with onnxruntime on a validation batch
# (max |prob diff| <= 1e-4); a mismatch keeps it as model_rejected.onnx and ends the finished run with an error
PREDICT_DIR = None  # folder of unlabeled images: predict them with CHECKPOINT into submission.csv, no training
CHECKPOINT = None  # the best.pt used with PREDICT_DIR; None = the newest eval run's best.pt
PRESET = "auto"  # auto (demo without DATA_DIR, else paper) | demo | paper: a set from PRESETS, applied over this block
DEBUG = False  # True: full tracebacks for user errors too
# -----------------------------------------------------------------------------

PRESETS = {
    # The paper's evaluation script, except EPOCHS: it ran 3000 at a nearly constant learning rate (x0.999 every
    # 3 epochs, 0.37x at the end), each of ~20k training images seen 3000 times: days of GPU time. 100 epochs
    # (12.6k steps at batch 160) with the cosine schedule anneal fully in hours; the best epoch by balanced
    # accuracy is kept, and curves.png shows whether a longer run (--EPOCHS) would still gain.
    "paper": dict(INIT_CHANNELS=58, LAYERS=24, BATCH_SIZE=160, LR=1e-2, WEIGHT_DECAY=3e-5, IMAGE_SIZE=224, EPOCHS=100),
    # The demo (drawn lesions, 60% for training): a small model at 96 px that ends far above chance (1 / classes)
    # within a few minutes on a 2-core CPU. One thread: a second one gains ~1.5x on an idle 2-core machine
    # but ran up to 10x slower on a busy one (other processes on the cores); --THREADS=0 uses torch's default.
    "demo": dict(INIT_CHANNELS=16, LAYERS=5, BATCH_SIZE=32, LR=0.05, WEIGHT_DECAY=3e-4, IMAGE_SIZE=96, EPOCHS=30,
                 NUM_WORKERS=0, THREADS=1),
}
_CKPT, _BEST, _HISTORY, _GENOTYPE_FILE = "ckpt.pt", "best.pt", "history.jsonl", "genotype.json"
_CARD, _ONNX, _ONNX_REJECTED = "model_card.json", "model.onnx", "model_rejected.onnx"
_ONNX_CHECK_IMAGES = 16  # validation images run through both PyTorch and onnxruntime
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet weights
_PROBE_SIZE = 64  # px, the 2 images that find parameters without gradient before DDP wraps the model
# s, how long a torchrun process waits in a collective for the others: rank 0 alone makes the resized copies while
# the rest wait (tens of minutes for ISIC 2019 on a slow disk); a process that dies ends the job at once anyway
_GROUP_TIMEOUT_S = 2 * 3600
# may differ on resume; DEVICE, AMP and CHANNELS_LAST are compared as resolved (runtime.json), not as 'auto'
_NO_RESUME_CHECK = ("OUT_DIR", "DEVICE", "AMP", "CHANNELS_LAST", "ALLOW_RUNTIME_CHANGE", "NUM_WORKERS", "THREADS",
                    "DEBUG", "N_CAM", "LATENCY_RUNS", "EXPORT_ONNX")  # the last three act only after training
# CLASS_BALANCE -> exponents p (weight count**-p) of the (sampler, loss weights); None = not used. A class's total
# weight is count x draw weight x loss weight: the same for every class in all but 'none' ('both' splits the 1/count)
_BALANCE_POWERS = {"loss": (None, 1.0), "sampler": (1.0, None), "both": (0.5, 0.5), "none": (None, None)}
_CHOICES = {
    "LAYOUT": ("auto", *_LAYOUTS),
    "CLASS_BALANCE": tuple(_BALANCE_POWERS),
    "AMP": _AMP_CHOICES,
    "CHANNELS_LAST": _CHANNELS_LAST_CHOICES,
}
# for the error handler below main(): the resolved DEBUG, this process's torchrun rank (0 without torchrun) and
# whether it has joined the process group
_RUNTIME = {"debug": DEBUG, "rank": 0, "joined": False}
_USER_ERRORS = (ConfigError, DatasetError, BadImage, model_card.OnnxMismatch)


# ----------------------------------------------------------------------------- config


def resolve_config(argv=None):
    """The constants block < preset < --NAME=value, checked. Returns (config dict, names the preset set)."""
    namespace = dict(globals())  # a copy: calling main() twice in one process starts from the same defaults
    cfg, preset_changed = configure(namespace, argv, presets=PRESETS)
    for name, choices in _CHOICES.items():
        value = str(cfg[name]).lower()
        if "off" in choices:  # --AMP=False, --CHANNELS_LAST=True and the like
            value = {"true": "on", "1": "on", "false": "off", "0": "off", "none": "off"}.get(value, value)
        cfg[name] = value
        check_choice(cfg, name, choices)
    check_config(cfg)
    return cfg, preset_changed


def check_config(cfg):
    """Every setting's type and range, so that a typo stops here, before any run folder or file is written
    (a folder made with the typo would refuse the corrected command). Tuples come back as tuples."""
    for name in ("GENOTYPE", "ARCH", "PRETRAINED_WEIGHTS", "DATA_DIR", "CSV_PATH", "OUT_DIR", "PREDICT_DIR", "CHECKPOINT",
                 "RESIZED_CACHE", "DEVICE"):
        if isinstance(cfg[name], int) and not isinstance(cfg[name], bool):
            cfg[name] = str(cfg[name])  # --DATA_DIR=2019: a folder named by digits
        if cfg[name] is not None and not isinstance(cfg[name], str):
            raise ConfigError(f"--{name}={cfg[name]!r}: expected a path or a name")
    for name in ("ALLOW_MISSING", "NESTEROV", "ALLOW_RUNTIME_CHANGE", "EXPORT_ONNX", "DEBUG"):
        if not isinstance(cfg[name], bool):
            raise ConfigError(f"--{name}={cfg[name]!r}: expected True or False")
    for name, low in (("INIT_CHANNELS", 2), ("LAYERS", 3), ("IMAGE_SIZE", 32), ("NUM_WORKERS", 0), ("EPOCHS", 1),
                      ("BATCH_SIZE", 2), ("THREADS", 0), ("SEED", 0), ("SPLIT_SEED", 0), ("N_CAM", 0), ("LATENCY_RUNS", 1)):
        check_number(cfg, name, low, integer=True)  # BATCH_SIZE >= 2: BatchNorm needs two images per batch
    check_architecture(cfg)
    if cfg["INIT_CHANNELS"] % 2:
        raise ConfigError(f"--INIT_CHANNELS={cfg['INIT_CHANNELS']}: must be even (reduction cells halve it), e.g. 16")
    for name, lo, hi in (("DROP_PATH_PROB", 0, 1), ("MOMENTUM", 0, 1), ("LABEL_SMOOTHING", 0, 1)):
        check_number(cfg, name, lo, hi, hi_open=True)
    for name in ("VAL_FRACTION", "TEST_FRACTION"):
        check_number(cfg, name, 0, 1, lo_open=True, hi_open=True)
    if cfg["VAL_FRACTION"] + cfg["TEST_FRACTION"] >= 1:
        raise ConfigError(f"--VAL_FRACTION={cfg['VAL_FRACTION']} + --TEST_FRACTION={cfg['TEST_FRACTION']} leave no "
                          "training images; keep the sum below 1, e.g. 0.2 + 0.2")
    check_number(cfg, "LR", 0, lo_open=True)
    for name in ("AUXILIARY_WEIGHT", "WEIGHT_DECAY", "GRAD_CLIP"):
        check_number(cfg, name, 0)
    cfg["CROP_SCALE"] = check_tuple(cfg, "CROP_SCALE", 2, 0, 1, increasing=True, example=CROP_SCALE)
    cfg["MEAN"] = check_tuple(cfg, "MEAN", 3, 0, 1, example=MEAN)
    cfg["STD"] = check_tuple(cfg, "STD", 3, 0, example=STD)
    for name, example in (("CROP_SCALE", CROP_SCALE), ("STD", STD)):
        if min(cfg[name]) <= 0:
            raise ConfigError(f"--{name}={cfg[name]!r}: every value must be above 0, e.g. {example!r}")
    return cfg


def check_architecture(cfg):
    """ARCH names a baseline or is None; GENOTYPE and PRETRAINED_WEIGHTS only where they apply. (Whether the weights
    file fits ARCH is known once the model is built, which main() does before the run folder exists.)"""
    if cfg["ARCH"] is None:
        if cfg["PRETRAINED_WEIGHTS"] is not None:
            raise ConfigError(f"--PRETRAINED_WEIGHTS={cfg['PRETRAINED_WEIGHTS']}: ImageNet weights are for a torchvision "
                              f"ARCH ({', '.join(baselines.BASELINES)}); a DARTS genotype trains from scratch")
        return
    check_choice(cfg, "ARCH", baselines.BASELINES)
    if cfg["GENOTYPE"] is not None:
        raise ConfigError(f"--GENOTYPE={cfg['GENOTYPE']} and --ARCH={cfg['ARCH']}: set one of them (ARCH trains a "
                          "torchvision model; GENOTYPE a DARTS network)")


def print_banner(cfg, preset_changed):
    if cfg["PREDICT_DIR"] is not None:
        title = "predict an unlabeled folder (no training; the model's settings come from CHECKPOINT)"
    elif cfg["DATA_DIR"] is None:
        title = f"DEMO: built-in lesion images, {cfg['ARCH'] or 'small model'}"
    else:
        title = f"training on {cfg['DATA_DIR']}"
    print(f"== train_isic: {title} (preset {cfg['PRESET']}) ==")
    if cfg["DATA_DIR"] is None and cfg["PREDICT_DIR"] is None:
        print("   for real data: python train_isic.py --DATA_DIR=/path/to/ISIC_2019 (or HAM10000, an ImageFolder,")
        print("   a DermaMNIST .npz); that selects the paper's settings (PRESET=paper) unless you set PRESET")
    print(format_config(cfg, preset_changed))


def choose_genotype(spec):
    """(Genotype, source): GENOTYPE, or the newest search run's best_genotype.json, else CNAS_ISIC_s5."""
    if spec is None:
        newest = runs.newest_run("search", "best_genotype.json")
        spec = str(newest / "best_genotype.json") if newest is not None else "CNAS_ISIC_s5"
    try:
        return resolve(spec)
    except ValueError as exc:  # unknown name, unreadable JSON: the user's value
        raise ConfigError(str(exc)) from None


def choose_architecture(cfg):
    """(genotype or None, source): a baseline ARCH has no genotype; a run folder being resumed keeps the genotype it
    began with (even if a newer search run exists by now); else GENOTYPE resolved. Reads, never writes: it runs
    before the run folder exists, so that the model can be built (and a weights file refused) first."""
    if cfg["ARCH"] is not None:
        weights = cfg["PRETRAINED_WEIGHTS"]
        return None, f"torchvision {cfg['ARCH']}" + (f", ImageNet backbone {Path(weights).name}" if weights else "")
    saved = Path(cfg["OUT_DIR"]).expanduser() / _GENOTYPE_FILE if cfg["OUT_DIR"] is not None else None
    kept = json.loads(saved.read_text()) if saved is not None and saved.is_file() else {}
    if kept.get("genotype") is not None and not (saved.parent / runs.FINISHED).exists():
        return from_dict(kept["genotype"]), kept["source"]  # (a folder of other settings is refused by open_run)
    return choose_genotype(cfg["GENOTYPE"])


def genotype_dict(genotype):
    return to_dict(genotype) if genotype is not None else None  # None: a torchvision ARCH


def open_run(cfg, genotype, source, rt):
    """(run folder, resumed). A resumed run must run as it started (device type, autocast, channels_last:
    runtime.json) unless ALLOW_RUNTIME_CHANGE; genotype.json records the architecture once."""
    run_dir, resumed = runs.open_run_dir(cfg["OUT_DIR"] or runs.new_run_dir("eval"), cfg, ignore=_NO_RESUME_CHECK)
    check_resumed_runtime(run_dir, rt, cfg["ALLOW_RUNTIME_CHANGE"])
    saved = run_dir / _GENOTYPE_FILE
    if not (resumed and saved.exists()):
        runs.atomic_write_json(saved, {"genotype": genotype_dict(genotype), "source": source, "arch": cfg["ARCH"]})
    print(f"run folder: {run_dir}" + (" (resuming)" if resumed else f"  (to resume: --OUT_DIR={run_dir})"))
    print(f"{'genotype' if genotype is not None else 'architecture'}: {source}")
    return run_dir, resumed


# ----------------------------------------------------------------------------- data


def load_data(cfg):
    """The labeled dataset (the demo lesions when DATA_DIR is None); fails fast on a wrong path or table."""
    data_dir = cfg["DATA_DIR"]
    if data_dir is None:
        data_dir = ensure_demo_dataset()
    return load_labeled(data_dir, cfg["LAYOUT"], cfg["VAL_FRACTION"], cfg["SPLIT_SEED"], cfg["ALLOW_MISSING"],
                        cfg["CSV_PATH"], cfg["TEST_FRACTION"])


def train_min_side(cfg):
    """Short side at which a random crop of the smallest area still has full resolution."""
    return int(math.ceil(cfg["IMAGE_SIZE"] / math.sqrt(cfg["CROP_SCALE"][0])))


def resized_cache_dir(cfg, root):
    """Where the one-time resized copies live, or None (RESIZED_CACHE=off)."""
    setting = str(cfg["RESIZED_CACHE"])
    if setting.lower() in ("off", "none", "false", ""):
        return None
    if setting.lower() == "auto":
        resolved = Path(root).expanduser().resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
        return runs.REPO_ROOT / "data" / "resized" / f"{resolved.name}-{digest}"
    return Path(setting).expanduser()


def prepare_splits(cfg, data, run_dir, resumed, processes=1):
    """split.csv (once an epoch is trained, a resumed run's must be the one it began with) and skipped_files.csv
    written. Returns ({split: records whose images decode}, skipped files, sha1 of split.csv's bytes). processes:
    of a torchrun job, each validating its share of the val images (at least one)."""
    table = split_table(data)
    split_file = run_dir / "split.csv"
    if resumed and (run_dir / _CKPT).exists() and split_file.exists() and split_file.read_text() != table:
        raise DatasetError(f"{split_file} differs from the split of the data now in {data.root} (images added, removed "
                           "or relabelled?); resume with the data the run started on, or start a new OUT_DIR")
    runs.atomic_write_text(split_file, table)
    skipped = [(image_id, "listed in the CSV, no image file") for image_id in data.missing]
    splits = {s: getattr(data, s) for s in _SPLITS}
    n_total = sum(map(len, splits.values())) + len(data.missing)
    cache = resized_cache_dir(cfg, data.root)
    if cache is not None and any(r.path is not None for records in splits.values() for r in records):
        side, bar = train_min_side(cfg), sys.stderr.isatty()
        print(f"data: resized copies (short side {side} px) in {cache}")
        for s in _SPLITS:
            splits[s], bad = prepare_resized(splits[s], side, cache, progress=bar)
            skipped += bad
    record_skipped(run_dir, skipped, n_total)
    if not splits["train"]:
        raise DatasetError(f"none of the training images in {data.root} could be decoded; see skipped_files.csv")
    for s, fix in (("val", "VAL_FRACTION"), ("test", "TEST_FRACTION")):
        if not splits[s]:
            raise DatasetError(f"no {s} images left in {data.root}; see skipped_files.csv or raise {fix}")
    if len(splits["val"]) < processes:
        raise DatasetError(f"{len(splits['val'])} validation images for {processes} torchrun processes: each needs one; "
                           "raise VAL_FRACTION or run fewer processes")
    print(f"data: {data.layout} at {data.root}: " + " / ".join(f"{len(splits[s])} {s}" for s in _SPLITS)
          + f" images, {len(data.classes)} classes")
    for s in _SPLITS:
        print(f"  {s + ' per class:':<16} {describe_classes(data.classes, splits[s])}")
    print("  " + describe_sources(cfg, data))
    return splits, skipped, hashlib.sha1(table.encode()).hexdigest()


def describe_sources(cfg, data):
    """Where val and test came from: the dataset's own splits, or a seeded split of all images or of train."""
    own = [s for s in ("val", "test") if s not in data.carved]
    fraction = {"val": cfg["VAL_FRACTION"], "test": cfg["TEST_FRACTION"]}
    of = "all images" if len(data.carved) == 2 else "the dataset's train split"
    grouped = ", by lesion" if any(r.group is not None for r in data.train) else ""
    parts = [f"{' and '.join(own)}: the dataset's own"] if own else []
    if data.carved:
        parts.append(", ".join(f"{s} {fraction[s]:.0%}" for s in data.carved)
                     + f" of {of}: seeded split (stratified{grouped}, SPLIT_SEED {cfg['SPLIT_SEED']})")
    return "; ".join(parts) + "; val picks the best epoch, test scores it once"


def describe_classes(classes, records):
    return ", ".join(f"{c} {n}" for c, n in zip(classes, class_counts(records, len(classes))))


def make_loaders(cfg, data, splits, run_dir, rt, ctx):
    """({split: loader}, train sampler or None, shuffle generator); class balance from the train split's counts.
    Under torchrun each process loads per_rank_batch(BATCH_SIZE) images a step: its share of each epoch's draw and
    of the validation images (gathered for the metrics); test is read at the end by rank 0 alone, whole."""
    skip_log = run_dir / ".skipped_images.tsv"  # loader workers (of every rank) append here; for skipped_files.csv
    size, mean, std = cfg["IMAGE_SIZE"], cfg["MEAN"], cfg["STD"]
    train_ds = ImageDataset(splits["train"], train_transform(size, mean, std, scale=cfg["CROP_SCALE"]), data.arrays,
                            min_side=train_min_side(cfg), skip_log=skip_log)
    power, _ = _BALANCE_POWERS[cfg["CLASS_BALANCE"]]
    balanced = balanced_sampler(splits["train"], len(data.classes), cfg["SEED"], power) if power is not None else None
    sampler = train_sampler(train_ds, cfg["SEED"], ctx, balanced)  # a single process: `balanced` itself
    # reseeded per epoch: a resumed run sees the same batches (the order; under torchrun the workers' seeds only)
    generator = torch.Generator().manual_seed(rank_seed(cfg["SEED"], ctx))
    batch = per_rank_batch(cfg["BATCH_SIZE"], ctx)
    per_epoch = len(sampler) if sampler is not None else len(train_ds)  # the same on every rank: as many steps
    workers = cfg["NUM_WORKERS"]
    common = dict(num_workers=workers, pin_memory=rt.device.type == "cuda", persistent_workers=workers > 0)
    loaders = {"train": torch.utils.data.DataLoader(
        train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler, generator=generator,
        drop_last=per_epoch > batch, **common)}  # no size-1 last batch for BatchNorm
    for s in ("val", "test"):
        ds = ImageDataset(splits[s], eval_transform(size, mean, std), data.arrays, min_side=size, skip_log=skip_log)
        # test is read once, at the end: no worker processes kept alive for it through training
        loaders[s] = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False,
                                                 sampler=eval_sampler(ds, ctx) if s == "val" else None,
                                                 **{**common, "persistent_workers": workers > 0 and s == "val"})
    return loaders, sampler, generator


def final_loaders(loaders, ctx):
    """The loaders for rank 0's final scoring, which it runs alone: validation whole and in order (under torchrun
    the epochs' val loader reads this rank's share only); in a single process the loaders themselves."""
    if not ctx.distributed:
        return loaders
    val = loaders["val"]
    whole = torch.utils.data.DataLoader(val.dataset, batch_size=val.batch_size, shuffle=False,
                                        num_workers=val.num_workers, pin_memory=val.pin_memory)
    return {**loaders, "val": whole}


def record_skipped(run_dir, skipped, n_total):
    if skipped:
        write_skipped(run_dir, skipped)
        print(skipped_summary(skipped, n_total))


# ----------------------------------------------------------------------------- model, loss, optimizer


def build_model(genotype, n_classes, cfg, weights=None):
    """The classifier, whose forward returns (logits, auxiliary logits or None): a DARTS EvalNetwork from `genotype`,
    or with cfg ARCH a torchvision model (no auxiliary head). weights: a torchvision ImageNet .pth for the ARCH
    backbone (ConfigError when it does not fit); None when a checkpoint brings every weight."""
    arch = cfg.get("ARCH")  # .get: checkpoints written before ARCH existed
    if arch is not None:
        return WithAux(build_baseline(arch, n_classes, weights))
    return EvalNetwork(genotype, n_classes, C=cfg["INIT_CHANNELS"], layers=cfg["LAYERS"],
                       auxiliary=cfg["AUXILIARY_WEIGHT"] > 0)


def probe_images():
    """2 fixed images of _PROBE_SIZE px for unused_parameters (drawn from their own generator: the global RNG
    streams stay as seeded)."""
    return torch.rand(2, 3, _PROBE_SIZE, _PROBE_SIZE, generator=torch.Generator().manual_seed(0))


def check_memory(cfg, model, n_classes, rt, ctx):
    """Probe one labeled training step (a throwaway copy of `model`, random images) on this process's device before
    the first epoch, and stop with one line naming BATCH_SIZE (or IMAGE_SIZE / INIT_CHANNELS when even the smallest
    batch cannot fit) instead of being killed mid-epoch. Under torchrun every rank checks its own device, the ranks on
    one machine sharing its memory when they train on the CPU, and all stop when one cannot fit (that one says why);
    the suggested BATCH_SIZE is the global batch. Returns the bytes one process's step needs."""
    world = ctx.world_size
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if ctx.distributed and rt.device.type == "cpu" else 1
    error, need = None, None
    try:
        mem = probe_classifier(lambda: copy.deepcopy(model), image_size=cfg["IMAGE_SIZE"], n_classes=n_classes,
                               batch_size=per_rank_batch(cfg["BATCH_SIZE"], ctx), device=rt.device,
                               autocast=rt.autocast, channels_last=rt.channels_last,
                               aux_weight=cfg["AUXILIARY_WEIGHT"] if cfg["ARCH"] is None else 0.0)
        # the `local` processes on this machine, each at BATCH_SIZE / world images, as a line in the global batch
        shared = StepMemory(mem.fixed * local, mem.per_image * local / world, mem.device)
        note = f" ({local} processes on this machine)" if local > 1 else ""
        hint = "lower IMAGE_SIZE" + (" or INIT_CHANNELS" if cfg["ARCH"] is None else " or pick a smaller ARCH")
        need = check_step(shared, rt.device, cfg["BATCH_SIZE"], network_hint=hint, log=say_if(ctx), note=note)
    except Exception as exc:  # noqa: BLE001 - re-raised below, once every rank knows (none waits in a collective)
        error = exc
    if ctx.distributed and ctx.mean(float(error is not None)) > 0 and error is None:
        raise SystemExit(2)  # another rank cannot fit (or its probe failed): it says why
    if error is not None:
        raise error
    return need


def describe_model(model, cfg):
    n = f"{model_card.count_params(model) / 1e6:.2f}M parameters"
    if cfg["ARCH"] is not None:
        start = f"backbone from {cfg['PRETRAINED_WEIGHTS']}" if cfg["PRETRAINED_WEIGHTS"] else "from scratch"
        return f"model: {cfg['ARCH']} (torchvision, {start}), {n}, {cfg['IMAGE_SIZE']} px"
    aux = " (+ the auxiliary head, training only)" if model.aux_head is not None else ""
    return f"model: {n}{aux}, C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells, {cfg['IMAGE_SIZE']} px"


def architecture_notes(cfg):
    """Lines on settings an ARCH run does not use, or uses unusually."""
    notes = []
    if cfg["ARCH"] is not None:
        notes.append(f"note: {cfg['ARCH']} has no auxiliary head or drop path and its own width and depth: "
                     "AUXILIARY_WEIGHT, DROP_PATH_PROB, INIT_CHANNELS and LAYERS are ignored")
        if cfg["PRETRAINED_WEIGHTS"] and (tuple(cfg["MEAN"]), tuple(cfg["STD"])) != (_IMAGENET_MEAN, _IMAGENET_STD):
            notes.append(f"note: ImageNet weights expect --MEAN={_IMAGENET_MEAN} --STD={_IMAGENET_STD}; this run "
                         f"normalises with MEAN={tuple(cfg['MEAN'])}, STD={tuple(cfg['STD'])}")
    return notes


def make_loss(cfg, train, n_classes, say=print):
    """Cross-entropy with label smoothing, class-weighted from the training split's counts when CLASS_BALANCE asks."""
    _, power = _BALANCE_POWERS[cfg["CLASS_BALANCE"]]
    weights = class_weights(train, n_classes, power) if power is not None else None  # (K,)
    if weights is not None:
        say("loss weights: " + ", ".join(f"{w:.2f}" for w in weights.tolist()))
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg["LABEL_SMOOTHING"])


def make_optimizer(cfg, model, rt):
    """SGD with momentum, a cosine schedule stepped per epoch, and a gradient scaler (active only for fp16)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["LR"], momentum=cfg["MOMENTUM"],
                                weight_decay=cfg["WEIGHT_DECAY"], nesterov=cfg["NESTEROV"] and cfg["MOMENTUM"] > 0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["EPOCHS"])
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)
    return optimizer, scheduler, scaler


# ----------------------------------------------------------------------------- epochs, checkpoints


def evaluate(model, loader, criterion, classes, rt, ctx=None):
    """(loss, metrics, probs (N, K), labels (N,), dataset indices (N,)) on a val or test loader. With a torchrun
    ctx the loader reads this rank's share; the rows of all ranks are gathered (each image once, in dataset order)
    and every rank computes the same metrics, so that all agree on the best epoch."""
    logits, labels, index = predict(model, loader, rt)
    if ctx is not None:
        logits, labels, index = gather_predictions(logits, labels, index, ctx)
    loss = criterion(logits.to(rt.device), labels.to(rt.device)).item()
    finite_or_raise(loss, "the evaluation loss", "try a lower LR or AMP=off")
    probs = torch.softmax(logits.double(), dim=1).numpy()  # (N, K); the same numbers go to CSV and metrics
    return loss, classification_metrics(labels.numpy(), probs, classes), probs, labels.numpy(), index.numpy()


def run_epoch(epoch, cfg, model, loaders, criterion, optimizer, scheduler, scaler, sampler, generator, classes, rt,
              ctx):
    """Train one epoch and validate; returns its history row (per-epoch metrics; the same on every rank but for
    seconds)."""
    t0 = time.time()
    # augmentation and drop path of this epoch, wherever the run resumed; each rank its own crops and masks
    seed = rank_seed(cfg["SEED"] + epoch, ctx)
    seed_everything(seed)
    generator.manual_seed(seed)  # this epoch's shuffled order (single process), loader workers' seeds
    if sampler is not None:
        sampler.set_epoch(epoch)
    drop = cfg["DROP_PATH_PROB"] * (epoch - 1) / cfg["EPOCHS"] if cfg["ARCH"] is None else 0.0  # DARTS's linear ramp
    if cfg["ARCH"] is None:  # torchvision models have no drop path
        unwrap(model).drop_path_prob = drop
    lr = optimizer.param_groups[0]["lr"]
    train_loss = train_one_epoch(model, loaders[0], criterion, optimizer, scaler, rt, cfg["AUXILIARY_WEIGHT"],
                                 cfg["GRAD_CLIP"], desc=f"epoch {epoch}/{cfg['EPOCHS']}", progress=ctx.is_main)
    train_loss = ctx.mean(train_loss)  # every rank trains on as many images: the mean of means is the epoch's mean
    finite_or_raise(train_loss, f"the training loss of epoch {epoch}", f"try a lower LR (now {cfg['LR']}) or AMP=off")
    scheduler.step()
    sync_buffers(model, ctx)  # every rank validates the model rank 0 saves (its BatchNorm statistics)
    val_loss, m, *_ = evaluate(unwrap(model), loaders[1], criterion, classes, rt, ctx)  # bare: no DDP collectives
    return {"epoch": epoch, "lr": lr, "drop_path_prob": drop, "train_loss": train_loss,
            "val_loss": val_loss, "val_accuracy": m["accuracy"], "val_balanced_accuracy": m["balanced_accuracy"],
            "val_auc_macro": m["auc_macro"], "val_recall": m["recall"], "val_precision": m["precision"],
            "seconds": round(time.time() - t0, 2)}


def model_record(model, classes, genotype, source, cfg):
    """What rebuilds and uses the model without this run folder (all plain data: weights_only=True loads it)."""
    return {"model": state_dict_nchw(model), "classes": list(classes), "genotype": genotype_dict(genotype),
            "genotype_source": source, "arch": cfg["ARCH"], "config": dict(cfg)}


_RESUME_STATE = ("epoch", "best", "best_epoch", "history")  # what ckpt.pt holds besides model and optimizer


def read_resume_checkpoint(run_dir):
    """ckpt.pt of an interrupted run (the state of its last finished epoch), or None for a fresh start."""
    if not (run_dir / _CKPT).exists():
        return None
    return load_checkpoint(run_dir / _CKPT, need=("model", "optimizer", "scheduler", "rng", *_RESUME_STATE))


def resume(run_dir, model, optimizer, scheduler, scaler, ctx):
    """State of the last finished epoch from ckpt.pt (or a fresh start), with history.jsonl made to match it.

    Rank 0 decides: it alone reads ckpt.pt and every rank loads what rank 0 read (sent over the process group), so
    ranks that would see other files (no shared filesystem, a half-synced copy) still resume alike, from the same
    epoch, and none waits for the others at a collective they never reach. A checkpoint rank 0 cannot read stops
    every rank."""
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    ckpt = on_main(ctx, read_resume_checkpoint, run_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
        say_if(ctx)(f"resumed from {run_dir / _CKPT} after epoch {state['epoch']} (best balanced accuracy "
                    f"{state['best']:.3f})")
    if ctx.is_main:  # a kill between appending an epoch's line and writing its checkpoint leaves one line too many
        runs.atomic_write_text(run_dir / _HISTORY, "".join(json.dumps(h) + "\n" for h in state["history"]))
    return state


def save_epoch(run_dir, row, state, record, optimizer, scheduler, scaler):
    """history.jsonl line, best.pt when balanced accuracy improved, then ckpt.pt (atomic) for resuming. record None
    (a torchrun rank other than 0): the state is updated alike, rank 0 writes the files."""
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    score = row["val_balanced_accuracy"] if row["val_balanced_accuracy"] is not None else 0.0
    improved = score > state["best"]
    if improved:
        state["best"], state["best_epoch"] = score, row["epoch"]
    if record is None:
        return
    runs.append_jsonl(run_dir / _HISTORY, row)
    if improved:
        save_checkpoint(run_dir / _BEST, {**record, "epoch": row["epoch"], "balanced_accuracy": score})
    save_checkpoint(run_dir / _CKPT, {**record, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                      "scaler": scaler.state_dict(), "rng": rng_state(), **state})


def epoch_line(row, epochs, best_epoch):
    auc = f"{row['val_auc_macro']:.3f}" if row["val_auc_macro"] is not None else "n/a"
    bacc = row["val_balanced_accuracy"] or 0.0
    return (f"epoch {row['epoch']}/{epochs} | train {row['train_loss']:.3f} | val {row['val_loss']:.3f} | "
            f"bal-acc {bacc:.3f} | auc {auc} | {row['seconds']:.0f} s" + (" *" if best_epoch == row["epoch"] else ""))


# ----------------------------------------------------------------------------- results


def unnormalise(x, mean, std):
    """(3, H, W) normalised tensor -> (H, W, 3) uint8: the image the network saw."""
    img = x.float() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def save_cams(model, dataset, labels, probs, index, classes, cfg, rt, out_dir):
    """Grad-CAM figures of a seeded mix of correct and wrong validation predictions; returns the files."""
    preds = probs.argmax(1)
    files = []
    for pos in pick_cam_samples(labels, preds, cfg["N_CAM"], cfg["SEED"]):
        x, y, j = dataset[int(index[pos])]
        cam, _ = GradCAM(model, cam_layer(model))(x.unsqueeze(0).to(rt.device), int(preds[pos]))
        true_name, pred_name = classes[y], classes[int(preds[pos])]
        path = out_dir / f"{len(files):02d}_{Path(str(dataset.records[j].image_id)).stem}_{true_name}_as_{pred_name}.png"
        save_cam_figure(path, unnormalise(x, cfg["MEAN"], cfg["STD"]), cam, true_name, pred_name,
                        float(probs[pos, preds[pos]]))
        files.append(path)
    return files


_HEADLINE = ("accuracy", "balanced_accuracy", "auc_macro", "recall", "n")  # metrics.json's top level: test's


def score(model, loader, criterion, classes, rt, epoch, csv_path=None):
    """(metrics section: the full metric dict plus loss and epoch, probs, labels, indices); writes the predictions
    CSV (image, one probability column per class) when csv_path is given."""
    loss, metrics, probs, labels, index = evaluate(model, loader, criterion, classes, rt)
    if csv_path is not None:
        records = loader.dataset.records
        write_predictions_csv(csv_path, [records[j].image_id for j in index], probs, classes)
    return {**metrics, "loss": loss, "epoch": epoch}, probs, labels, index


def save_results(run_dir, model, loaders, criterion, data, state, genotype, source, split_sha1, cfg, rt, t0):
    """The three numbers, kept apart: the last epoch on val, the selected (best.pt) model on val, and the selected
    model once on test, the headline. Predictions CSVs, metrics.json and figures come from the same probabilities;
    model_card.json describes the selected model. Returns (metrics, CAM files, model card)."""
    classes = data.classes
    # the weights in memory are the last epoch's: just trained, or loaded from ckpt.pt by a resumed run
    val_last, *_ = score(model, loaders["val"], criterion, classes, rt, state["epoch"])
    best = load_checkpoint(run_dir / _BEST, need=("model", "epoch"))
    model.load_state_dict(best["model"])
    val_sel, probs, labels, index = score(model, loaders["val"], criterion, classes, rt, best["epoch"],
                                         run_dir / "predictions_val.csv")
    test, *_ = score(model, loaders["test"], criterion, classes, rt, best["epoch"], run_dir / "predictions_test.csv")
    metrics = {
        **{k: test[k] for k in _HEADLINE},
        "headline": "test",
        "selected_by": "validation balanced_accuracy",
        "best_epoch": best["epoch"], "epochs": cfg["EPOCHS"],
        "test": test, "val_selected": val_sel, "val_last": val_last,
        "split_sha1": split_sha1,
        "dataset": {"layout": data.layout, "root": str(data.root), "classes": list(classes),
                    "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                    "carved": list(data.carved)},
        "genotype": genotype_dict(genotype), "genotype_source": source, "arch": cfg["ARCH"],
        "train_seconds": round(sum(h["seconds"] for h in state["history"]), 1),
        "wall_seconds": round(time.time() - t0, 1),
    }
    runs.atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion_matrix(test["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                          label=f"test, epoch {best['epoch']}")
    plot_confusion_matrix(val_sel["confusion_matrix"], classes, run_dir / "confusion_matrix_val.png",
                          label=f"validation, epoch {best['epoch']}")
    plot_training_curves(state["history"], run_dir / "curves.png")
    cams = save_cams(model, loaders["val"].dataset, labels, probs, index, classes, cfg, rt, run_dir / "cam")
    card = write_model_card(run_dir, model, loaders["val"], source, cfg, rt)
    return metrics, cams, card


def write_model_card(run_dir, model, val_loader, source, cfg, rt):
    """model_card.json: parameters (without an auxiliary head), MACs at IMAGE_SIZE, CPU latency at batch 1 (LATENCY_RUNS
    after 5 warm-up runs, this process's threads), CUDA inference throughput at the loaders' batch (BATCH_SIZE; under
    torchrun one process's share; fp32; on CUDA only), and under 'onnx' the checked export (None unless EXPORT_ONNX).
    An ONNX mismatch is recorded, not raised, so that every other result is written and the run finished; main()
    raises it last."""
    val_dataset = val_loader.dataset
    card = model_card.model_card(model, cfg["IMAGE_SIZE"], val_loader.batch_size, rt.device,
                                 latency_runs=cfg["LATENCY_RUNS"])
    card = {"model": source, "arch": cfg["ARCH"], **card, "onnx": None}
    if cfg["EXPORT_ONNX"]:
        n = min(_ONNX_CHECK_IMAGES, len(val_dataset))
        images = torch.stack([val_dataset[i][0] for i in range(n)]).float()  # (n, 3, S, S), normalised as in training
        card["onnx"] = export_checked_onnx(model, run_dir / _ONNX, images, cfg["IMAGE_SIZE"])
    runs.atomic_write_json(run_dir / _CARD, card)
    return card


def export_checked_onnx(model, path, images, image_size):
    """`path` written by model_card.export_onnx (dynamic batch axis, checked on 2 random images), then checked on real
    validation `images` (B, 3, S, S). Returns {path, ok, max_abs_diff (validation images), max_abs_diff_random,
    images, opset}; on a mismatch the file is renamed model_rejected.onnx (no model.onnx that looks usable) and the
    result has ok False and the error."""
    atol, diff, random_diff = model_card.ONNX_ATOL, None, None
    try:
        random_diff = model_card.export_onnx(model, path, image_size)["max_abs_diff"]
        diff = onnx_prob_diff(path, model, images)
        if not diff <= atol:  # also catches NaN
            raise model_card.OnnxMismatch(f"max |softmax difference| {diff:.2e} > {atol:.0e} on {len(images)} "
                                          "validation images")
    except model_card.OnnxMismatch as exc:
        rejected = path.with_name(_ONNX_REJECTED)
        if path.exists():
            os.replace(path, rejected)
        why = str(exc).replace(f"ONNX model {path} ", "")  # export_onnx names the path it wrote
        return {"path": str(rejected), "ok": False, "max_abs_diff": diff, "max_abs_diff_random": random_diff,
                "images": len(images), "opset": model_card.ONNX_OPSET,
                "error": f"the ONNX export differs from PyTorch ({why}); kept as {rejected} for inspection"}
    return {"path": str(path), "ok": True, "max_abs_diff": diff, "max_abs_diff_random": random_diff,
            "images": len(images), "opset": model_card.ONNX_OPSET}


def onnx_prob_diff(path, model, images):
    """max |softmax probability difference| between onnxruntime (CPU) running `path` and the PyTorch model (a float32
    CPU copy in eval mode) on `images` (B, 3, S, S)."""
    import onnxruntime as ort

    net = model_card.LogitsOnly(copy.deepcopy(model).to("cpu", torch.float32)).eval()
    with torch.no_grad():
        expected = torch.softmax(net(images).double(), dim=1)  # (B, K)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": images.numpy()})
    got = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    return float((got - expected).abs().max())


def result_line(title, m):
    auc = f"{m['auc_macro']:.3f}" if m["auc_macro"] is not None else "n/a"
    bacc = f"{m['balanced_accuracy']:.3f}" if m["balanced_accuracy"] is not None else "n/a"
    return f"  {title:<34} balanced accuracy {bacc} | accuracy {m['accuracy']:.3f} | macro AUC {auc} | n {m['n']}"


def card_line(card):
    """The model card in one line: size, MACs, CPU latency, CUDA throughput, ONNX check."""
    lat = card["cpu_latency_ms"]
    parts = [f"{card['params'] / 1e6:.2f}M params", f"{card['macs'] / 1e6:.1f}M MACs at {card['image_size']} px",
             f"CPU {lat['median']:.1f} ms/image (p90 {lat['p90']:.1f}, {lat['runs']} runs, {lat['threads']} thread"
             + ("s" if lat["threads"] != 1 else "") + ")"]
    if card["cuda_throughput_img_s"] is not None:
        parts.append(f"CUDA {card['cuda_throughput_img_s']:.0f} img/s at batch {card['cuda_batch_size']}")
    onnx = card["onnx"]
    if onnx is not None:
        parts.append(f"ONNX ok (max diff {onnx['max_abs_diff']:.0e})" if onnx["ok"] else "ONNX MISMATCH")
    return "model card: " + " | ".join(parts)


def report(run_dir, metrics, cams, card, t0):
    best, last = metrics["best_epoch"], metrics["val_last"]["epoch"]
    print(f"results: the model of epoch {best} (best validation balanced accuracy of {last} epochs)")
    print(result_line("TEST (held out, scored once)", metrics["test"]))
    print(result_line(f"validation, epoch {best} (chose it)", metrics["val_selected"]))
    print(result_line(f"validation, last epoch {last}", metrics["val_last"]))
    print("test recall per class: " + ", ".join(f"{c} {v:.2f}" for c, v in metrics["recall"].items() if v is not None))
    print(card_line(card))
    onnx = f"{Path(card['onnx']['path']).name}, " if card["onnx"] is not None else ""
    print(f"wrote {run_dir}/: metrics.json, {_CARD}, {onnx}predictions_test.csv, predictions_val.csv, confusion_matrix.png "
          f"(test), confusion_matrix_val.png, curves.png, {_HISTORY}, split.csv, {_BEST}, {_CKPT}, cam/ ({len(cams)} PNGs) "
          f"in {time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------- predict mode


def predict_folder(cfg, rt):
    """PREDICT_DIR mode: an ISIC submission CSV (image, one probability column per class) from a best.pt."""
    ckpt_path = cfg["CHECKPOINT"]
    if ckpt_path is None:
        newest = runs.newest_run("eval", _BEST)
        if newest is None:
            raise ConfigError("PREDICT_DIR needs a trained model: set --CHECKPOINT=<eval run folder>/best.pt")
        ckpt_path = newest / _BEST
    ckpt = load_checkpoint(ckpt_path, need=("model", "classes", "genotype", "config"))
    folder = Path(cfg["PREDICT_DIR"]).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"PREDICT_DIR {folder} is not a folder; point it at a folder of images")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"no images under PREDICT_DIR {folder} (looked for .jpg, .jpeg, .png, .bmp, .tif)")
    ids = [p.stem for p in paths]  # ISIC names the image by its file stem
    if len(set(ids)) < len(ids):  # the same name in two subfolders: keep them apart
        ids = [p.relative_to(folder).with_suffix("").as_posix() for p in paths]

    run_dir, _ = runs.open_run_dir(cfg["OUT_DIR"] or runs.new_run_dir("predict"), cfg, ignore=_NO_RESUME_CHECK)
    trained, classes = ckpt["config"], ckpt["classes"]
    genotype = from_dict(ckpt["genotype"]) if ckpt["genotype"] is not None else None  # None: a torchvision ARCH
    print(f"model: {ckpt_path} ({'genotype ' if genotype is not None else ''}{ckpt.get('genotype_source')}, "
          f"classes {', '.join(classes)})")
    model = build_model(genotype, len(classes), trained)  # no weights file: the checkpoint holds every weight
    model.load_state_dict(ckpt["model"])
    rt.place(model)
    dataset = ImageDataset([Record(i, 0, p) for i, p in zip(ids, paths)],
                           eval_transform(trained["IMAGE_SIZE"], trained["MEAN"], trained["STD"]),
                           min_side=trained["IMAGE_SIZE"], skip_log=run_dir / ".skipped_images.tsv")
    loader = torch.utils.data.DataLoader(dataset, batch_size=trained["BATCH_SIZE"], num_workers=cfg["NUM_WORKERS"],
                                         pin_memory=rt.device.type == "cuda")
    logits, _, index = predict(model, tqdm(loader, desc="predict", unit="batch", disable=None), rt)
    probs = torch.softmax(logits.double(), dim=1).numpy()  # (N, K)
    out = run_dir / "submission.csv"
    write_predictions_csv(out, [ids[j] for j in index.tolist()], probs, classes)
    record_skipped(run_dir, dataset.skipped, len(paths))
    runs.mark_finished(run_dir, {"images": len(index), "checkpoint": str(ckpt_path)})
    print(f"wrote {out} ({len(index)} images, columns image,{','.join(classes)})")
    return run_dir


# ----------------------------------------------------------------------------- torchrun


def launched_world_size():
    """Processes in this torchrun job (WORLD_SIZE; 1 without torchrun), known before any process joins the group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_torchrun(cfg, world):
    """What a torchrun job of `world` processes cannot run, refused before the process group exists (every rank
    raises the same error; rank 0 prints it): PREDICT_DIR, and a BATCH_SIZE that does not divide among them."""
    if world <= 1:
        return
    if cfg["PREDICT_DIR"] is not None:
        raise ConfigError("--PREDICT_DIR runs in one process: python train_isic.py --PREDICT_DIR=..., not torchrun")
    per_rank_batch(cfg["BATCH_SIZE"], DistContext(world_size=world))


def on_main(ctx, fn, *args, share=True):
    """fn(*args) run by rank 0 first: it alone writes (the run folder's files, the demo images). share True: its
    result on every rank; False: the other ranks then run fn(*args) themselves (e.g. reading the dataset, too large
    to send). A user error on rank 0 stops every rank: rank 0 raises it (one line), the others exit with status 2
    without repeating it (rather than wait for rank 0 in a collective, and fail there with a traceback)."""
    if not ctx.distributed:
        return fn(*args)
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn(*args)
        except _USER_ERRORS as exc:
            error = exc
    # a flag, not the exception: it need not pickle
    shared, failed = ctx.broadcast((result if share else None, error is not None))
    if error is not None:
        raise error
    if failed:
        raise SystemExit(2)
    if ctx.is_main:
        return result
    return shared if share else fn(*args)


def say_if(ctx):
    """print on rank 0 (the one voice of a torchrun job; always in a single process), a no-op elsewhere."""
    return print if ctx.is_main else lambda *args, **kwargs: None


# ----------------------------------------------------------------------------- main


def main(argv=None):
    """Train (or with PREDICT_DIR predict) in this process; under torchrun every process runs it, as one DDP job.
    Returns the run folder."""
    t0 = time.time()
    world = launched_world_size()
    _RUNTIME.update(rank=int(os.environ.get("RANK", "0")) if world > 1 else 0, joined=False)
    # ---- config, before the process group: a typo stops every rank alike, and no folder is made
    cfg, preset_changed = resolve_config(argv)
    _RUNTIME["debug"] = cfg["DEBUG"]
    check_torchrun(cfg, world)
    ctx = init_distributed(cfg["DEVICE"], timeout_s=_GROUP_TIMEOUT_S if world > 1 else None)
    _RUNTIME["joined"] = ctx.distributed
    try:
        return run(cfg, preset_changed, ctx, t0)
    finally:
        ctx.cleanup()


def run(cfg, preset_changed, ctx, t0):
    """main() once the process (group) is set up: ctx says which rank this is (a single process is rank 0 of 1)."""
    say = say_if(ctx)
    if ctx.is_main:
        print_banner(cfg, preset_changed)
    rt = runtime(str(ctx.device), cfg["AMP"], cfg["CHANNELS_LAST"])
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    if rt.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels
    say(f"device: {rt}")
    if ctx.distributed:
        over = "NCCL, a GPU each" if ctx.device.type == "cuda" else "gloo on the CPU"
        say(f"torchrun: {ctx.world_size} processes, DistributedDataParallel ({over}); BATCH_SIZE {cfg['BATCH_SIZE']} "
            f"is the global batch, {per_rank_batch(cfg['BATCH_SIZE'], ctx)} images per process per step")
    if rt.device.type == "cpu" and cfg["PRESET"] == "paper":
        smaller = "--IMAGE_SIZE=64" + (" --INIT_CHANNELS=12 --LAYERS=5" if cfg["ARCH"] is None else "")
        say(f"note: the paper's settings train at a few images/s on a CPU; use a GPU, or smaller ones such as {smaller}")
    if cfg["PREDICT_DIR"] is not None:
        return predict_folder(cfg, rt)  # (refused under torchrun by check_torchrun)
    for line in architecture_notes(cfg):
        say(line)
    genotype, source = on_main(ctx, choose_architecture, cfg)  # rank 0's: a search run may finish meanwhile

    # ---- data and model, both before the run folder exists: a wrong DATA_DIR or weights file leaves no folder
    data = on_main(ctx, load_data, cfg, share=False)  # rank 0 first: it may write the demo images
    seed_everything(rank_seed(cfg["SEED"], ctx))  # model init (DDP gives every rank rank 0's weights)
    model = build_model(genotype, len(data.classes), cfg, cfg["PRETRAINED_WEIGHTS"])
    check_memory(cfg, model, len(data.classes), rt, ctx)  # a batch that cannot fit stops here, before the run folder
    # files are written by rank 0 alone; the others get what it decided (the run folder, the decodable images)
    run_dir, resumed = on_main(ctx, open_run, cfg, genotype, source, rt)
    splits, skipped, split_sha1 = on_main(ctx, prepare_splits, cfg, data, run_dir, resumed, ctx.world_size)
    loaders, sampler, generator = make_loaders(cfg, data, splits, run_dir, rt, ctx)
    unused = unused_parameters(model, probe_images()) if ctx.distributed else []  # DDP must know them beforehand
    model = rt.place(model)
    say(describe_model(model, cfg))

    # ---- loss
    criterion = make_loss(cfg, splits["train"], len(data.classes), say).to(rt.device)

    # ---- optimizer, on the bare model (DDP shares its parameters)
    optimizer, scheduler, scaler = make_optimizer(cfg, model, rt)

    # ---- resume: rank 0 reads ckpt.pt, every rank loads what it read; DDP starts all from rank 0's weights
    state = resume(run_dir, model, optimizer, scheduler, scaler, ctx)
    model = wrap_ddp(model, ctx, find_unused_parameters=bool(unused))

    # ---- loop: every rank keeps the same state (history, best epoch); rank 0 writes it
    for epoch in range(state["epoch"] + 1, cfg["EPOCHS"] + 1):
        row = run_epoch(epoch, cfg, model, (loaders["train"], loaders["val"]), criterion, optimizer, scheduler, scaler,
                        sampler, generator, data.classes, rt, ctx)
        record = model_record(unwrap(model), data.classes, genotype, source, cfg) if ctx.is_main else None
        save_epoch(run_dir, row, state, record, optimizer, scheduler, scaler)
        say(epoch_line(row, cfg["EPOCHS"], state["best_epoch"]), flush=True)
    ctx.barrier()
    if not ctx.is_main:
        return run_dir  # rank 0 scores, draws and writes the results alone (no collectives from here on)
    model = unwrap(model)

    # ---- save: the selected model on val and, once, on test; the last epoch on val; figures
    metrics, cams, card = save_results(run_dir, model, final_loaders(loaders, ctx), criterion, data, state, genotype,
                                       source, split_sha1, cfg, rt, t0)
    late = list(dict.fromkeys(skipped + loaders["train"].dataset.skipped))  # files that failed in the loaders too
    if len(late) > len(skipped):
        record_skipped(run_dir, late, len(data.train) + len(data.val) + len(data.test) + len(data.missing))
    runs.mark_finished(run_dir, {"headline": "test", "balanced_accuracy": metrics["balanced_accuracy"],
                                 "best_epoch": metrics["best_epoch"], "processes": ctx.world_size})

    # ---- report
    report(run_dir, metrics, cams, card, t0)
    if card["onnx"] is not None and not card["onnx"]["ok"]:  # the run is finished: only the export failed
        raise model_card.OnnxMismatch(f"{card['onnx']['error']}; the run itself finished: {run_dir}")
    return run_dir


def main_for_rank(argv=None):
    """main(), where a torchrun rank other than 0 stays quiet about a user error raised before it joined the process
    group (a setting: rank 0 raises the same one and prints it) and names itself in any later one (it may be its
    own, e.g. DATA_DIR missing on its node)."""
    try:
        return main(argv)
    except _USER_ERRORS as exc:
        rank = _RUNTIME["rank"]
        if rank == 0 or _RUNTIME["debug"]:
            raise
        if _RUNTIME["joined"]:
            print(f"error (rank {rank}): {exc}", file=sys.stderr)
        sys.exit(2)


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2, no traceback."""
    run_cli(lambda: main_for_rank(argv), _USER_ERRORS, lambda: _RUNTIME["debug"],
            "rerun the same command with --OUT_DIR=<the run folder above> to resume")


if __name__ == "__main__":
    cli()
