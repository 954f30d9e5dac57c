"""A labeled training step as the memory probe replays it: a throwaway classifier, random images and labels, SGD."""
import gc
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from common.memory import FitCheck, check_step, probe_step

CLASSIFIER_HINT = "lower IMAGE_SIZE or INIT_CHANNELS"  # what check_classifier_memory names when no batch fits


@dataclass(frozen=True, kw_only=True)
class LabeledStep:
    """One supervised SGD step of a labeled training run, as the probe replays it: random images of `image_size` px
    and labels of `n_classes`, the run's autocast and memory format, the auxiliary head's loss weight, and SGD."""

    image_size: int
    n_classes: int
    autocast: Callable = nullcontext  # a context manager factory, as the run's (common/device.py)
    channels_last: bool = False
    aux_weight: float = 0.0  # 0: the auxiliary logits, if any, add no loss
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0


def classifier_step(build_model, spec, device):
    """(step_fn, parameters) of one supervised SGD step (LabeledStep `spec`) of a fresh model from build_model()
    on random images: what the probe measures for a labeled training run. The model may return logits or (logits,
    auxiliary logits or None). The model is a throwaway, built here and trained by the probe steps; the global RNG
    stream is left as it was (the step draws from a generator of its own)."""
    device = torch.device(device)
    image_size, n_classes, autocast, aux_weight = spec.image_size, spec.n_classes, spec.autocast, spec.aux_weight
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):
        model = build_model().to(device).train()
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    criterion = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def step(b):
        x = torch.rand(b, 3, image_size, image_size, generator=gen).to(device, memory_format=fmt)
        y = torch.randint(0, n_classes, (b,), generator=gen).to(device)
        with autocast():
            out = model(x)
            logits, aux = out if isinstance(out, (tuple, list)) else (out, None)
            loss = criterion(logits.float(), y)
            if aux is not None and aux_weight:
                loss = loss + aux_weight * criterion(aux.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, list(model.parameters())


def probe_classifier(build_model, spec, *, batch_size, device):
    """StepMemory of one labeled training step (LabeledStep `spec`) of build_model() at `batch_size` images
    (classifier_step, probe_step). The probe's model is freed, and the global RNG streams (CPU and the device's) are
    as they were, when it returns."""
    device = torch.device(device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        step, params = classifier_step(build_model, spec, device)
        try:
            return probe_step(step, device, batch_size=batch_size, params=params)
        finally:
            step = params = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


def check_classifier_memory(build_model, spec, *, batch_size, device, check=None):
    """From the settings: probe a labeled training step (LabeledStep `spec`) of build_model() and stop with one
    line naming check.setting (or, when even the smallest batch cannot fit, check.network_hint: by default IMAGE_SIZE
    / INIT_CHANNELS, a DARTS network's levers) before the first epoch. Returns the StepMemory."""
    mem = probe_classifier(build_model, spec, batch_size=batch_size, device=device)
    check = check or FitCheck()
    if check.network_hint is None:
        check = replace(check, network_hint=CLASSIFIER_HINT)
    check_step(mem, device, batch_size, check)
    return mem
