"""Supervised training mechanics: seeding, one epoch, batched prediction, weights-only checkpoints."""
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from common.config import ConfigError
from common.runs import atomic_write_bytes


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True, kw_only=True)
class TrainStep:
    """What one optimisation step does besides the forward pass: loss = criterion(logits) + aux_weight *
    criterion(aux logits); gradients unscaled (fp16) and clipped to grad_clip (0 or None: no clipping); the optimizer
    steps through the scaler."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    aux_weight: float = 0.0
    grad_clip: float | None = None


def train_one_epoch(model, loader, step, rt, desc="train", progress=True):
    """One pass with a progress bar; the model returns (logits, aux logits or None); `step` a TrainStep. Returns the
    mean main loss. progress False: no bar (a torchrun rank other than 0: one bar per job); True: a bar when stderr is
    a terminal.
    """
    model.train()
    total = torch.zeros((), device=rt.device)  # summed on the device: no host sync per step
    seen = 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None if progress else True)
    for x, y, *_ in bar:
        x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
            logits, aux = model(x)
            loss = step.criterion(logits.float(), y)
            full = loss + step.aux_weight * step.criterion(aux.float(), y) if aux is not None and step.aux_weight else loss
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(full).backward()
        if step.grad_clip:
            step.scaler.unscale_(step.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)
        step.scaler.step(step.optimizer)
        step.scaler.update()
        total += loss.detach() * len(y)
        seen += len(y)
    return (total / max(seen, 1)).item()


@torch.no_grad()
def predict(model, loader, rt):
    """(logits (N, K) float32 CPU, labels (N,), dataset indices (N,)) over loader items (x, label, index).

    A dataset that replaces an undecodable file with the next good one returns that index twice; each index
    is kept once, in first-seen order, so every row belongs to exactly one real image.
    """
    model.eval()
    logits, labels, index = [], [], []
    for x, y, i in loader:
        with rt.autocast():
            out = model(rt.inputs(x))
        out = out[0] if isinstance(out, (tuple, list)) else out
        logits.append(out.float().cpu())
        labels.append(torch.as_tensor(y))
        index.append(torch.as_tensor(i))
    if not logits:
        raise ValueError("nothing to predict: the loader is empty")
    logits, labels, index = torch.cat(logits), torch.cat(labels), torch.cat(index)
    _, first = np.unique(index.numpy(), return_index=True)
    keep = torch.from_numpy(np.sort(first))
    return logits[keep], labels[keep], index[keep]


def finite_or_raise(value, what, hint):
    if not math.isfinite(value):
        raise ConfigError(f"{what} is {value}: training diverged; {hint}")
    return value


# ----------------------------------------------------------------------------- checkpoints


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
    atomic_write_bytes(path, buf.getvalue())


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
