"""Checkpoint files and random-number state: write atomically, read safely (weights only), resume a run's epochs.

ckpt.pt holds the state of the last finished epoch (model, optimizer, scheduler, scaler, every RNG, the history);
best.pt the model of the best validation balanced accuracy; history.jsonl one line per finished epoch.
"""
import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from common import runs
from common.config import ConfigError
from common.labeled.torchrun import on_main, say_if

CKPT, BEST, HISTORY = "ckpt.pt", "best.pt", "history.jsonl"
RESUME_STATE = ("epoch", "best", "best_epoch", "history")  # what ckpt.pt holds besides model and optimizer


def rng_state():
    """Every RNG state as tensors, lists and numbers only, so a checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, obj):
    """torch.save to a temporary file, then rename: a kill leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    runs.atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, need=()):
    """A checkpoint dict read with weights_only=True (no pickled code runs); ConfigError when it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found; give the path of a best.pt from an eval run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torn file, not a torch file, or pickled objects refused
        raise ConfigError(f"cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]})") from None
    missing = [k for k in need if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}; use a best.pt or ckpt.pt written by train_isic.py")
    return ckpt


def state_dict_nchw(model):
    """The model's weights in the default memory format, whatever the training device used."""
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def model_record(model, classes, architecture, cfg):
    """What rebuilds and uses the model without this run folder (all plain data: weights_only=True loads it)."""
    return {"model": state_dict_nchw(model), "classes": list(classes), "genotype": architecture.genotype_dict(),
            "genotype_source": architecture.source, "arch": cfg["ARCH"], "config": dict(cfg)}


def read_resume_checkpoint(run_dir):
    """ckpt.pt of an interrupted run (the state of its last finished epoch), or None for a fresh start."""
    if not (run_dir / CKPT).exists():
        return None
    return load_checkpoint(run_dir / CKPT, need=("model", "optimizer", "scheduler", "rng", *RESUME_STATE))


def resume(run_dir, model, optim, ctx):
    """State of the last finished epoch from ckpt.pt (or a fresh start), with history.jsonl made to match it.

    Rank 0 decides: it alone reads ckpt.pt and every rank loads what rank 0 read (sent over the process group), so
    ranks that would see other files (no shared filesystem, a half-synced copy) still resume alike, from the same
    epoch, and none waits for the others at a collective they never reach. A checkpoint rank 0 cannot read stops
    every rank."""
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    ckpt = on_main(ctx, read_resume_checkpoint, run_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt)
        set_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
        say_if(ctx)(f"resumed from {run_dir / CKPT} after epoch {state['epoch']} (best balanced accuracy "
                    f"{state['best']:.3f})")
    if ctx.is_main:  # a kill between appending an epoch's line and writing its checkpoint leaves one line too many
        runs.atomic_write_text(run_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in state["history"]))
    return state


def save_epoch(run_dir, row, state, record, optim):
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
    runs.append_jsonl(run_dir / HISTORY, row)
    if improved:
        save_checkpoint(run_dir / BEST, {**record, "epoch": row["epoch"], "balanced_accuracy": score})
    save_checkpoint(run_dir / CKPT, {**record, **optim.state_dict(), "rng": rng_state(), **state})
