"""Train a DARTS genotype with labels on skin-lesion images and report what dermatology papers report.

    cd eval && python train_isic.py                          # demo: built-in lesions, small model, CPU-sized
    python train_isic.py --DATA_DIR=/data/ISIC2019           # real data with the paper's settings (PRESET 'paper')
    python train_isic.py --DATA_DIR=/data/ISIC2019 --ARCH=resnet18   # a torchvision baseline, same data and recipe
    torchrun --nproc_per_node=4 train_isic.py --DATA_DIR=/data/ISIC2019   # 4 GPUs, DistributedDataParallel
    python predict.py --PREDICT_DIR=/data/ISIC2019_Test --CHECKPOINT=../runs/eval/<run>/best.pt   # submission CSV

Any constant below can be set as --NAME=value. Rerunning the same command with --OUT_DIR=<run folder> resumes an
interrupted run from its ckpt.pt; a finished run folder is never written again. The run itself, data -> model ->
epochs -> results, is common/labeled/run.py's train(); each stage's machinery lives in common/labeled/.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common.arch.baselines import BASELINES as _BASELINES  # noqa: E402  (private names: an imported tuple is no setting)
from common.config import (  # noqa: E402
    ConfigError,
    answer_config_request,
    check_choice,
    check_number,
    check_paths,
    check_tuple,
    configure,
    format_config,
    run_cli,
)
from common.data.layouts import LAYOUTS as _LAYOUTS  # noqa: E402
from common.device import AMP_CHOICES as _AMP_CHOICES  # noqa: E402
from common.device import CHANNELS_LAST_CHOICES as _CHANNELS_LAST_CHOICES  # noqa: E402
from common.labeled import few_labels  # noqa: E402
from common.labeled.data import BALANCE_POWERS as _BALANCE_POWERS  # noqa: E402
from common.labeled.run import train  # noqa: E402
from common.labeled.torchrun import USER_ERRORS as _USER_ERRORS  # noqa: E402
from common.labeled.torchrun import RankErrors, process_group  # noqa: E402
from common.machine import usable_cores  # noqa: E402

# -----------------------------------------------------------------------------
# architecture
GENOTYPE = None  # name in common/arch/genotypes.py | best_genotype.json | search run; None = newest search, else CNAS_ISIC_s5
ARCH = None  # None = the DARTS GENOTYPE; else a torchvision model trained from scratch: resnet18 | resnet50 |
# mobilenet_v3_large | efficientnet_b0 | densenet121 (the same data, split, recipe, metrics and outputs as a genotype)
PRETRAINED_WEIGHTS = None  # the start: a pretrained.pt from self-supervised pre-training (PRETRAIN_EPOCHS), or for
# ARCH a torchvision ImageNet .pth you downloaded (never downloaded here; use ImageNet's MEAN=(0.485, 0.456, 0.406),
# STD=(0.229, 0.224, 0.225) with it)
INIT_CHANNELS = 58  # C, channels of the first cells (doubled at each reduction); even; GENOTYPE only
LAYERS = 24  # cells; reduction cells at 1/3 and 2/3 depth; GENOTYPE only
AUXILIARY_WEIGHT = 0.4  # weight of the auxiliary head's loss; 0 = no auxiliary head; ignored with ARCH (it has none)
DROP_PATH_PROB = 0.0  # drop-path probability of the last epoch, ramped linearly from 0 (the paper's script: 0); not ARCH
# few labels
LABEL_FRACTION = 1.0  # share of the training split's labels used, in (0, 1]: per class, seeded by SPLIT_SEED; val/test keep all
PRETRAIN_EPOCHS = 0  # self-supervised pre-training on unlabeled images before the labeled epochs (the search's NCE); 0 = off
PRETRAIN_LR = 0.05  # SGD learning rate of pre-training, cosine-annealed over PRETRAIN_EPOCHS
UNLABELED_DIR = None  # images to pre-train on; None = the training split's (labels unread; never a val/test image)
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
STD = (0.141, 0.152, 0.169)  # per-channel standard deviation, the paper's ISIC 2019 statistics
RESIZED_CACHE = "auto"  # one-time resized JPEG copies: auto (data/resized/...) | a folder | off (decode originals)
NUM_WORKERS = min(4, usable_cores())  # data-loader processes: the cores this process may use, at most 4 (more
# workers than cores only draw a DataLoader warning); 0 = in the main process (a resumed run repeats the exact batches)
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
_CHOICES = {
    "LAYOUT": ("auto", *_LAYOUTS),
    "CLASS_BALANCE": tuple(_BALANCE_POWERS),
    "AMP": _AMP_CHOICES,
    "CHANNELS_LAST": _CHANNELS_LAST_CHOICES,
}
_MOVED = {  # settings that left this script: one line saying where they went
    "PREDICT_DIR": "predicting a folder is its own script now: python predict.py --PREDICT_DIR=<folder> "
                   "--CHECKPOINT=<eval run>/best.pt",
    "CHECKPOINT": "predicting a folder is its own script now: python predict.py --PREDICT_DIR=<folder> "
                  "--CHECKPOINT=<eval run>/best.pt",
}
_ERRORS = RankErrors()  # which torchrun rank says a user error (all ranks run main())


# ----------------------------------------------------------------------------- config


def resolve_config(argv=None):
    """The constants block < preset < --NAME=value, checked. Returns (config dict, names the preset set)."""
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in _MOVED:
            raise ConfigError(f"--{name}: {_MOVED[name]}")
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
    check_paths(cfg, "GENOTYPE", "ARCH", "PRETRAINED_WEIGHTS", "DATA_DIR", "CSV_PATH", "OUT_DIR", "RESIZED_CACHE", "DEVICE")
    for name in ("ALLOW_MISSING", "NESTEROV", "ALLOW_RUNTIME_CHANGE", "EXPORT_ONNX", "DEBUG"):
        if not isinstance(cfg[name], bool):
            raise ConfigError(f"--{name}={cfg[name]!r}: expected True or False")
    for name, low in (("INIT_CHANNELS", 2), ("LAYERS", 3), ("IMAGE_SIZE", 32), ("NUM_WORKERS", 0), ("EPOCHS", 1),
                      ("BATCH_SIZE", 2), ("THREADS", 0), ("SEED", 0), ("SPLIT_SEED", 0), ("N_CAM", 0), ("LATENCY_RUNS", 1)):
        check_number(cfg, name, low, integer=True)  # BATCH_SIZE >= 2: BatchNorm needs two images per batch
    check_architecture(cfg)
    few_labels.check_config(cfg)
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
    """ARCH names a baseline or is None; GENOTYPE only without ARCH. (Whether a PRETRAINED_WEIGHTS file fits is known
    once the model is built, which happens before the run folder exists.)"""
    if cfg["PRETRAINED_WEIGHTS"] is not None and not Path(cfg["PRETRAINED_WEIGHTS"]).expanduser().is_file():
        raise ConfigError(f"--PRETRAINED_WEIGHTS={cfg['PRETRAINED_WEIGHTS']}: file not found (a pretrained.pt, or for ARCH "
                          "a torchvision ImageNet .pth you downloaded; nothing is fetched here)")
    if cfg["ARCH"] is None:
        return
    check_choice(cfg, "ARCH", _BASELINES)
    if cfg["GENOTYPE"] is not None:
        raise ConfigError(f"--GENOTYPE={cfg['GENOTYPE']} and --ARCH={cfg['ARCH']}: set one of them (ARCH trains a "
                          "torchvision model; GENOTYPE a DARTS network)")


def print_banner(cfg, preset_changed):
    if cfg["DATA_DIR"] is None:
        title = f"DEMO: built-in lesion images, {cfg['ARCH'] or 'small model'}"
    else:
        title = f"training on {cfg['DATA_DIR']}"
    print(f"== train_isic: {title} (preset {cfg['PRESET']}) ==")
    if cfg["DATA_DIR"] is None:
        print("   for real data: python train_isic.py --DATA_DIR=/path/to/ISIC_2019 (or HAM10000, an ImageFolder,")
        print("   a DermaMNIST .npz); that selects the paper's settings (PRESET=paper) unless you set PRESET")
    print(format_config(cfg, preset_changed))


# ----------------------------------------------------------------------------- main


def main(argv=None):
    """Train in this process; under torchrun every process runs it, as one DDP job. Returns the run folder."""
    started = time.time()
    # ---- config, before the process group: a typo stops every rank alike, and no folder is made
    cfg, preset_changed = resolve_config(argv)
    _ERRORS.debug = cfg["DEBUG"]
    answer_config_request(cfg)  # (only in a process common.config.script_config started: print cfg, exit)
    # ---- this process's place in the job (a single process without torchrun)
    with process_group(cfg, _ERRORS) as ctx:
        if ctx.is_main:
            print_banner(cfg, preset_changed)
        # ---- data -> model -> epochs -> results (common/labeled/run.py)
        return train(cfg, ctx, started)


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2, no traceback."""
    run_cli(lambda: _ERRORS.call(main, argv), _USER_ERRORS, lambda: _ERRORS.debug,
            "rerun the same command with --OUT_DIR=<the run folder above> to resume")


if __name__ == "__main__":
    cli()
