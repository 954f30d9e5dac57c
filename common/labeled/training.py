"""Supervised training mechanics: seeding, one epoch of optimisation steps, batched prediction, a finite-loss check."""
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from common.config import ConfigError


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
