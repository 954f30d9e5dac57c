"""Supervised training mechanics: device and precision, one epoch, batched prediction, weights-only checkpoints."""
import io
import math
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from common.config import ConfigError
from common.runs import atomic_write_bytes

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run: the device, the autocast dtype (None = fp32) and the memory format."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def inputs(self, x):
        """A batch (N, 3, H, W) on the device, in the model's memory format."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def place(self, model):
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def __str__(self):
        dtype = str(self.dtype).replace("torch.", "") if self.dtype is not None else "off"
        return f"{self.device}, autocast {dtype}, channels_last {'on' if self.channels_last else 'off'}"


def pick_device(name="auto"):
    """'auto' -> cuda, else mps, else cpu; an explicit device that is not there raises ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--DEVICE={name}: not a device; use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--DEVICE={name}: CUDA is not available here; use --DEVICE=auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--DEVICE={name}: MPS is not available here; use --DEVICE=auto or cpu")
    return device


def runtime(device="auto", amp="auto", channels_last="auto"):
    """Runtime from the settings. amp 'auto' = bf16 autocast on CUDA, off elsewhere; channels_last 'auto' = on for
    CUDA and the CPU (DARTS cells trained 1.3-1.7x faster in it on a 2-core CPU), off for MPS."""
    device = pick_device(device)
    if amp not in AMP_CHOICES:
        raise ConfigError(f"--AMP={amp}: choose one of {', '.join(AMP_CHOICES)}")
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ConfigError(f"--CHANNELS_LAST={channels_last}: choose one of {', '.join(CHANNELS_LAST_CHOICES)}")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("--AMP=fp16 needs a GPU; use --AMP=bf16 or off on the CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    last = channels_last == "on" or (channels_last == "auto" and device.type in ("cuda", "cpu"))
    return Runtime(device, dtype, last)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_one_epoch(model, loader, criterion, optimizer, scaler, rt, aux_weight=0.0, grad_clip=None, desc="train"):
    """One pass with a progress bar; the model returns (logits, aux logits or None). Returns the mean main loss.

    Loss = criterion(logits) + aux_weight * criterion(aux); gradients are unscaled (fp16) before clipping.
    """
    model.train()
    total = torch.zeros((), device=rt.device)  # summed on the device: no host sync per step
    seen = 0
    for x, y, *_ in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None):
        x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
            logits, aux = model(x)
            loss = criterion(logits.float(), y)
            full = loss + aux_weight * criterion(aux.float(), y) if aux is not None and aux_weight else loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(full).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
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
