"""Train one candidate network contrastively on cached images and return its per-epoch losses (the nce score)."""
import math
import time
import traceback
from dataclasses import dataclass

import torch

from common.arch.networks import SearchNetwork
from common.device import autocast_for
from common.search.contrastive import BankNCE


class NonFiniteLoss(RuntimeError):
    """The candidate's loss became NaN or infinite; the trial is recorded as failed."""


def _batches(n, batch_size, generator, device):
    """A fresh permutation cut into full batches (the remainder joins no batch, so BN never sees tiny ones)."""
    perm = torch.randperm(n, generator=generator, device=device)
    size = min(batch_size, n)
    return [perm[i : i + size] for i in range(0, n - size + 1, size)]


@dataclass(frozen=True, kw_only=True)
class TrainerSettings:
    """How a candidate trains (search.py's constants of the same names; common.search.trial.trainer_settings)."""

    init_channels: int  # C of the SearchNetwork
    layers: int  # its cells
    batch_size: int  # source images per step
    device: torch.device
    lr: float  # SGD
    momentum: float
    weight_decay: float
    tau: float  # NCE temperature
    bank_momentum: float  # EMA weight of a bank row's old value
    patch_weight: float  # loss = w * NCE(bank, patches) + (1 - w) * NCE(bank, whole image)
    negatives_per_image: int | None = None  # None = 2 * (batch - 1)
    proj_dim: int = 256  # bank and head width
    amp: str = "auto"  # common.device.autocast_for's choices
    channels_last: bool | None = None  # None: on except on MPS (as the device 'auto' setting)
    seed: int = 0  # views, negatives, batch order and initial weights: the same for every candidate
    # False: the same views, negatives, bank and its refresh, but the weights stay at their initial values (the
    # study's nce_init control: what the loss says about an untrained network)
    learn: bool = True


class CandidateTrainer:
    """Holds a candidate network, its bank loss and optimizer; `train_epoch` runs one pass over the images.

    images: (N, S, S, 3) uint8 already on `settings.device` (moved once, indexed per batch: no host work per step).
    """

    def __init__(self, genotype, images, views, settings):
        s, device = settings, settings.device
        self.images, self.views, self.batch_size, self.device = images, views, s.batch_size, device
        self.learn, self.amp = s.learn, s.amp
        self.channels_last = device.type != "mps" if s.channels_last is None else s.channels_last
        torch.manual_seed(s.seed)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(s.seed)
        self.model = SearchNetwork(genotype, C=s.init_channels, layers=s.layers, proj_dim=s.proj_dim).to(device)
        if self.channels_last:
            self.model.use_channels_last()
        self.criterion = BankNCE(len(images), s.proj_dim, s.tau, s.bank_momentum, s.patch_weight,
                                 s.negatives_per_image).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay)

    @torch.no_grad()
    def fill_bank(self):
        """One pass before training puts every image's whole-image representation in the bank.

        The model stays in training mode on purpose: a training step normalises each view with its own batch's
        BatchNorm statistics (SearchNetwork.forward), so filling the same way makes a bank row exactly the vector
        a step would compute for that batch with these weights. Eval mode would use the running statistics, which
        at init are (0, 1) and describe no view. The batches are split evenly (sizes differ by at most one), so no
        image is normalised within a tiny remainder batch. no_grad only skips the autograd graph.
        """
        n = len(self.images)
        for idx in torch.arange(n, device=self.device).tensor_split(math.ceil(n / self.batch_size)):
            whole, _ = self.views(self.images[idx], self.generator)  # the patches too: the same draws in any trial
            with autocast_for(self.device, self.amp):
                f = self.model.represent(whole)
            self.criterion.bank.fill(idx, f)

    def step(self, idx):
        """One optimisation step on the images `idx`; returns the loss as a device tensor (no sync)."""
        whole, patches = self.views(self.images[idx], self.generator)
        with torch.set_grad_enabled(self.learn):
            with autocast_for(self.device, self.amp):
                f_whole, f_patch = self.model(whole, patches)
            loss = self.criterion(idx, f_whole, f_patch, self.generator)  # also refreshes the bank rows of idx
        if not self.learn:
            return loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, bar=None, check_every=20):
        """Mean loss of one epoch; raises NonFiniteLoss. Syncs with the device only every `check_every` steps."""
        total, steps = torch.zeros((), device=self.device), 0
        for idx in _batches(len(self.images), self.batch_size, self.generator, self.device):
            total += self.step(idx)
            steps += 1
            if bar is not None:
                bar.update(len(idx))
            if steps % check_every == 0:
                running = total.item() / steps
                if not math.isfinite(running):
                    raise NonFiniteLoss(f"loss became {running} at step {steps}")
                if bar is not None:
                    bar.set_postfix(loss=f"{running:.3f}")
        mean = total.item() / max(steps, 1)
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"loss became {mean}")
        return mean


def _clear_locals(exc):
    """Empty the locals of the finished frames in the tracebacks of exc and of the exceptions it chains to."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)  # skips frames still running (this one, its callers)
        exc = exc.__cause__ or exc.__context__


def run_trial(genotype, images, views, settings, *, epochs, progress=None, on_trainer=None, stop=None):
    """Train one candidate for up to `epochs`; returns {'loss': last epoch's mean, 'epoch_losses', 'images_per_s',
    'stopped': None, or why it stopped before `epochs`}.

    settings: a TrainerSettings. progress: None or a callable(total_images) -> a tqdm-like bar (update/set_postfix/close).
    on_trainer: None or a callable(trainer) run once the CandidateTrainer is built, before fill_bank (to watch or
    wrap it; keep only a weakref to it if the trainer should be freed when run_trial ends).
    stop: None or a callable(epoch_losses so far) -> None (go on) or a reason to stop now, asked after every epoch
    but the last (common/search/early_stop.py).
    Nothing here holds the trainer once run_trial returns or raises, not even the exception's traceback: its
    frames' locals are cleared, so the network, optimizer state and bank can be freed before the next trial.
    """
    trainer = bar = None
    try:
        trainer = CandidateTrainer(genotype, images, views, settings)
        if on_trainer is not None:
            on_trainer(trainer)
        trainer.fill_bank()
        epoch_losses, seen, start, stopped = [], 0, time.perf_counter(), None
        per_epoch = (len(images) // min(trainer.batch_size, len(images))) * min(trainer.batch_size, len(images))
        bar = progress(epochs * per_epoch) if progress else None
        for epoch in range(epochs):
            epoch_losses.append(trainer.train_epoch(bar))
            seen += per_epoch
            if stop is not None and epoch + 1 < epochs:
                stopped = stop(list(epoch_losses))
                if stopped:
                    break
        seconds = time.perf_counter() - start
        return {"loss": epoch_losses[-1], "epoch_losses": epoch_losses, "images_per_s": seen / seconds,
                "stopped": stopped}
    except BaseException as exc:
        _clear_locals(exc)  # the frames below this one (train_epoch, step, ...) hold `self`, the trainer
        raise
    finally:
        del trainer  # this frame stays in the traceback too
        if bar is not None:
            bar.close()
