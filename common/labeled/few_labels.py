"""Training with few labels: which training images keep their labels (LABEL_FRACTION), self-supervised pre-training
of the network on unlabeled images before the labeled epochs (PRETRAIN_EPOCHS, UNLABELED_DIR), and a pretrained.pt
given as the start (PRETRAINED_WEIGHTS). Validation and test are never touched: they keep every label and are never
pre-trained on."""
import dataclasses
import sys
from pathlib import Path

from common.config import ConfigError, check_number, check_paths
from common.data.images import skipped_summary
from common.data.label_subset import label_subset
from common.data.splits import class_counts
from common.data.unlabeled import decode_folder, decode_records, folder_images, held_out_keys
from common.labeled import pretrain as P
from common.memory import FitCheck, check_step


def check_config(cfg):
    """LABEL_FRACTION, PRETRAIN_EPOCHS, PRETRAIN_LR and UNLABELED_DIR, checked before any folder is made."""
    check_number(cfg, "LABEL_FRACTION", 0, 1, lo_open=True)
    check_number(cfg, "PRETRAIN_EPOCHS", 0, integer=True)
    check_number(cfg, "PRETRAIN_LR", 0, lo_open=True)
    check_paths(cfg, "UNLABELED_DIR")
    if cfg["UNLABELED_DIR"] is not None:
        if not cfg["PRETRAIN_EPOCHS"]:
            raise ConfigError(f"--UNLABELED_DIR={cfg['UNLABELED_DIR']}: only pre-training reads it; set PRETRAIN_EPOCHS "
                              "(e.g. --PRETRAIN_EPOCHS=20), or leave UNLABELED_DIR unset")
        if not Path(cfg["UNLABELED_DIR"]).expanduser().is_dir():
            raise ConfigError(f"--UNLABELED_DIR={cfg['UNLABELED_DIR']}: not a folder; point it at a folder of images")
    return cfg


def choose_labels(cfg, data):
    """`data` with .labeled = the ids of the training images that keep their labels (None: all of them), drawn by
    label_subset seeded with SPLIT_SEED (so every SEED of one split trains on the same labels). A fraction that
    leaves a class with training images but no label stops here, with one line, before any run folder exists."""
    if cfg["LABEL_FRACTION"] >= 1:
        return data
    labeled, _ = label_subset(data.train, data.classes, cfg["LABEL_FRACTION"], cfg["SPLIT_SEED"])
    return dataclasses.replace(data, labeled=frozenset(r.image_id for r in labeled))


def labeled_splits(splits, data, say=print):
    """The splits the labeled epochs read: train restricted to its labeled images (class balance then counts them
    alone); the whole train split stays in 'unlabeled' for pre-training, whose images it is by default."""
    out = {**splits, "unlabeled": splits["train"]}
    if data.labeled is not None:
        out["train"] = [r for r in splits["train"] if r.image_id in data.labeled]
        counts = ", ".join(f"{c} {n}" for c, n in zip(data.classes, class_counts(out["train"], len(data.classes))))
        say(f"labels: {len(out['train'])} of {len(splits['train'])} training images keep their labels (split.csv "
            f"column 'labeled'): {counts}")
    return out


# ----------------------------------------------------------------------------- a pretrained start


def imagenet_weights(cfg):
    """PRETRAINED_WEIGHTS when it is a torchvision weights file for ARCH (build_baseline reads it), else None."""
    path = cfg.get("PRETRAINED_WEIGHTS")
    return path if path is not None and not P.is_pretrained_file(path) else None


def load_weights(cfg, model, say=print):
    """Put a pretrained.pt (PRETRAINED_WEIGHTS) into `model`; a genotype takes no other kind of file."""
    path = cfg.get("PRETRAINED_WEIGHTS")
    if path is None:
        return
    if P.is_pretrained_file(path):
        meta = P.load_pretrained(model, path)
        say(f"start: the backbone pre-trained in {Path(path).expanduser()} ({meta.get('images', '?')} unlabeled images)")
    elif cfg["ARCH"] is None:
        raise ConfigError(f"--PRETRAINED_WEIGHTS={path} is not a pretrained.pt of this project (self-supervised "
                          "pre-training writes one); a DARTS genotype takes no other weights (ImageNet files are for ARCH)")


def settings(cfg):
    """Pre-training's settings from the run's: its batch, views at IMAGE_SIZE, MEAN/STD, SEED, PRETRAIN_LR."""
    return P.PretrainSettings(epochs=cfg["PRETRAIN_EPOCHS"], batch_size=cfg["BATCH_SIZE"], image_size=cfg["IMAGE_SIZE"],
                              mean=tuple(cfg["MEAN"]), std=tuple(cfg["STD"]), lr=cfg["PRETRAIN_LR"], seed=cfg["SEED"])


def check_pretrain_memory(cfg, model, rt, say=print):
    """Probe one pre-training step (three views per image, each in its own pass) before any run folder; stops with
    one line naming BATCH_SIZE when it cannot fit."""
    if not cfg["PRETRAIN_EPOCHS"]:
        return None
    mem = P.pretrain_step_memory(model, settings(cfg), rt)
    hint = "lower IMAGE_SIZE" + (" or INIT_CHANNELS" if cfg["ARCH"] is None else " or pick a smaller ARCH")
    return check_step(mem, rt.device, cfg["BATCH_SIZE"], FitCheck(network_hint=hint, log=say, note=" (pre-training)"))


def unlabeled_images(cfg, data, splits, say=print):
    """uint8 (N, S, S, 3) images for pre-training: UNLABELED_DIR's images without any validation or test image, or
    (by default) the whole training split's, labels unread."""
    size = cfg["IMAGE_SIZE"]
    if cfg["UNLABELED_DIR"] is None:
        images, skipped = decode_records(splits["unlabeled"], data.arrays, size, progress=sys.stderr.isatty())
        say(f"pre-training on the {len(images)} training images (labels unread)")
    else:
        folder = Path(cfg["UNLABELED_DIR"]).expanduser()
        paths, excluded = folder_images(folder, held_out_keys([*data.val, *data.test]))
        images, skipped = decode_folder(paths, size, progress=sys.stderr.isatty())
        say(f"pre-training on {len(images)} images of {folder}"
            + (f" ({len(excluded)} validation/test images there left out)" if excluded else ""))
    if skipped:
        say(skipped_summary(skipped, len(images) + len(skipped)))
    return images


def pretrain_start(cfg, data, splits, model, run_dir, rt, architecture, say=print):
    """PRETRAIN_EPOCHS > 0: pre-train a copy of `model` into run_dir/pretrained.pt (resuming a killed pre-training,
    skipped once the file is there) and load its backbone into `model`. Returns the file, or None when off."""
    if not cfg["PRETRAIN_EPOCHS"]:
        return None
    path = run_dir / P.PRETRAINED
    if not path.exists():
        meta = {"arch": cfg["ARCH"], "genotype": architecture.genotype_dict(), "source": architecture.source,
                "init_channels": cfg["INIT_CHANNELS"] if cfg["ARCH"] is None else None,
                "layers": cfg["LAYERS"] if cfg["ARCH"] is None else None, "image_size": cfg["IMAGE_SIZE"]}
        P.pretrain(model, unlabeled_images(cfg, data, splits, say), settings(cfg), out_dir=run_dir, rt=rt, meta=meta,
                   log=say)
    P.load_pretrained(model, path)
    say(f"start: the backbone pre-trained in {path}")
    return path
