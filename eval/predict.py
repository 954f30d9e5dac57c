"""Predict a folder of unlabeled images with a trained model: an ISIC submission CSV, no training.

    cd eval && python predict.py --PREDICT_DIR=/data/ISIC_2019_Test_Input --CHECKPOINT=../runs/eval/<run>/best.pt

The model's architecture, classes, image size and normalisation come from CHECKPOINT (a best.pt of train_isic.py).
Writes <OUT_DIR>/submission.csv (image, one probability column per class) and skipped_files.csv for files that
could not be read. Any constant below can be set as --NAME=value.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

import torch  # noqa: E402

from common.config import ConfigError, check_choice, check_number, check_paths, configure, format_config, run_cli  # noqa: E402
from common.data.images import BadImage  # noqa: E402
from common.data.layouts import DatasetError  # noqa: E402
from common.device import AMP_CHOICES as _AMP_CHOICES  # noqa: E402  (private names: an imported tuple is no setting)
from common.device import CHANNELS_LAST_CHOICES as _CHANNELS_LAST_CHOICES  # noqa: E402
from common.device import runtime  # noqa: E402
from common.labeled.submission import predict_folder  # noqa: E402
from common.machine import usable_cores  # noqa: E402

# -----------------------------------------------------------------------------
PREDICT_DIR = None  # folder of unlabeled images, searched recursively (.jpg .jpeg .png .bmp .tif); required
CHECKPOINT = None  # a best.pt written by train_isic.py; None = the newest eval run's (runs/eval/*/best.pt)
BATCH_SIZE = None  # images per step; None = the BATCH_SIZE the model was trained with
NUM_WORKERS = min(4, usable_cores())  # loader
# processes (the cores this process may use, at most 4); 0 = in the main process
DEVICE = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
AMP = "auto"  # auto (bf16 autocast on CUDA, off elsewhere) | bf16 | fp16 | off
CHANNELS_LAST = "auto"  # auto (on for CUDA and CPU, off for MPS) | on | off: memory format of model and inputs
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core)
OUT_DIR = None  # this run's folder; None = runs/predict/<timestamp>
DEBUG = False  # True: full tracebacks for user errors too
# -----------------------------------------------------------------------------
_USER_ERRORS = (ConfigError, DatasetError, BadImage)


def check_config(cfg):
    """Every setting checked before any folder is made."""
    check_paths(cfg, "PREDICT_DIR", "CHECKPOINT", "OUT_DIR", "DEVICE")
    if cfg["PREDICT_DIR"] is None:
        raise ConfigError("--PREDICT_DIR is needed: the folder of images to predict, e.g. "
                          "python predict.py --PREDICT_DIR=/data/ISIC_2019_Test_Input")
    check_number(cfg, "BATCH_SIZE", 1, integer=True, none_ok=True)
    check_number(cfg, "NUM_WORKERS", 0, integer=True)
    check_number(cfg, "THREADS", 0, integer=True)
    for name, choices in (("AMP", _AMP_CHOICES), ("CHANNELS_LAST", _CHANNELS_LAST_CHOICES)):
        cfg[name] = str(cfg[name]).lower()
        check_choice(cfg, name, choices)
    return cfg


def main(argv=None):
    """Predict PREDICT_DIR with CHECKPOINT's model; returns the run folder."""
    cfg, _ = configure(globals(), argv)
    check_config(cfg)
    print("== predict: an unlabeled folder, no training (the model's settings come from CHECKPOINT) ==")
    print(format_config(cfg))
    rt = runtime(cfg["DEVICE"], cfg["AMP"], cfg["CHANNELS_LAST"])
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    print(f"device: {rt}")
    return predict_folder(cfg, rt)


if __name__ == "__main__":
    run_cli(main, _USER_ERRORS, lambda: DEBUG or "--DEBUG=True" in sys.argv,
            "rerun the same command: the images are predicted again")
