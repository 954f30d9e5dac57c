"""One contrastive trainer for the search's trials and for pre-training: batches, bank fill, step, epoch, checkpoint."""
import math
from dataclasses import dataclass

import torch

from common.config import ConfigError
from common.contrastive.loss import BankNCE
from common.device import AMP_CHOICES, Runtime


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the search records the trial as failed, pre-training stops with a hint."""


def check_amp(amp):
    """The AMP settings contrastive training takes (search.py, benchmark.py, benchmark_workers.py ask here): all of
    common.device's. fp16 trains through a GradScaler (ContrastiveTrainer.step); bf16 keeps fp32's range and needs
    none. Whether the device has the dtype (fp16 needs a GPU) is common.device.runtime's to say."""
    if amp not in AMP_CHOICES:
        raise ConfigError(f"--AMP={amp}: choose one of {', '.join(AMP_CHOICES)} (fp16 on a GPU only)")
    return amp


@dataclass(frozen=True, kw_only=True)
class ContrastiveSettings:
    """How a ContrastiveNet trains; the search (common/search/trial.py) and pre-training (common/labeled/pretrain.py)
    each fill one from their own constants."""

    rt: Runtime  # device, autocast dtype (fp16 also gets a gradient scaler) and memory format
    batch_size: int  # source images per step
    lr: float  # SGD
    momentum: float = 0.9
    weight_decay: float = 0.0
    tau: float = 0.07  # NCE temperature
    bank_momentum: float = 0.5  # EMA weight of a bank row's old value
    patch_weight: float = 0.5  # loss = w * NCE(bank, patches) + (1 - w) * NCE(bank, whole image)
    negatives_per_image: int | None = None  # None = 2 * (batch - 1), as in the paper
    proj_dim: int = 256  # bank and head width
    seed: int = 0  # initial weights (global RNG), views, negatives and batch order (the trainer's generator)
    cosine_epochs: int | None = None  # None: a constant lr; n: cosine-annealed to 0 over n epochs (pre-training)
    # False: the same views, negatives, bank and its refresh, but the weights stay at their initial values (the
    # study's nce_init control: what the loss says about an untrained network)
    learn: bool = True
    check_every: int = 20  # steps between checks for a NaN loss (each check waits for the device)


class ContrastiveTrainer:
    """A ContrastiveNet, its memory-bank loss (common/contrastive/loss.py), SGD, a gradient scaler (active for fp16
    only) and one random stream; `fill_bank` once, then `train_epoch` per epoch.

    make_net: a callable(proj_dim) -> ContrastiveNet, e.g. functools.partial(ContrastiveNet.search_candidate, genotype,
    C, layers) or functools.partial(ContrastiveNet.from_classifier, classifier); called right after
    torch.manual_seed(settings.seed), so its initial weights are the seed's.
    images: (N, S, S, 3) uint8 on settings.rt.device (moved once, indexed per batch: no host work per step).
    views: a callable(images, generator) -> (whole (B, 3, s, s), patches (V, B, 3, s, s)), e.g. a ViewMaker
    (common/contrastive/views.py).
    """

    def __init__(self, make_net, images, views, settings):
        s, rt = settings, settings.rt
        self.images, self.views, self.settings, self.rt = images, views, s, rt
        torch.manual_seed(s.seed)
        self.net = rt.place(make_net(s.proj_dim))
        self.criterion = BankNCE(len(images), s.proj_dim, s.tau, s.bank_momentum, s.patch_weight,
                                 s.negatives_per_image).to(rt.device)
        self.generator = torch.Generator(device=rt.device).manual_seed(s.seed)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay)
        self.scheduler = None
        if s.cosine_epochs is not None:
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(s.cosine_epochs, 1))
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)

    @property
    def images_per_epoch(self):
        """Images one epoch trains on: all but the remainder that fills no batch."""
        size = min(self.settings.batch_size, len(self.images))
        return len(self.images) // size * size

    def batches(self):
        """A fresh permutation cut into full batches (the remainder joins no batch, so BatchNorm never sees a tiny one)."""
        n = len(self.images)
        size = min(self.settings.batch_size, n)
        perm = torch.randperm(n, generator=self.generator, device=self.rt.device)
        return [perm[i : i + size] for i in range(0, n - size + 1, size)]

    @torch.no_grad()
    def fill_bank(self):
        """One pass before training puts every image's whole-image representation in the bank.

        The network is in training mode on purpose: a training step normalises each view with its own batch's
        BatchNorm statistics (ContrastiveNet.forward), so filling the same way makes a bank row exactly the vector a
        step would compute for that batch with these weights. Eval mode would use the running statistics, which at
        init are (0, 1) and describe no view. The batches are split evenly (sizes differ by at most one), so no image
        is normalised within a tiny remainder batch. no_grad only skips the autograd graph.
        """
        self.net.train()
        n = len(self.images)
        for idx in torch.arange(n, device=self.rt.device).tensor_split(math.ceil(n / self.settings.batch_size)):
            whole, _ = self.views(self.images[idx], self.generator)  # the patches too: the same draws in any trial
            with self.rt.autocast():
                f = self.net.represent(self.rt.inputs(whole))
            self.criterion.bank.fill(idx, f)

    def step(self, idx):
        """One optimisation step on the images `idx`; returns the loss as a device tensor (no sync)."""
        whole, patches = self.views(self.images[idx], self.generator)
        learn = self.settings.learn
        with torch.set_grad_enabled(learn):
            with self.rt.autocast():
                f_whole, f_patch = self.net(self.rt.inputs(whole), [self.rt.inputs(p) for p in patches])
            # the loss in fp32 whatever the heads emit; it also refreshes the bank rows of idx
            loss = self.criterion(idx, f_whole.float(), f_patch.float(), self.generator)
        if learn:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()  # fp16: scaled up, so small gradients do not flush to zero
            self.scaler.step(self.optimizer)  # fp16: unscaled first, and skipped if they overflowed; else a plain step
            self.scaler.update()
        return loss.detach()

    def train_epoch(self, bar=None):
        """Mean loss of one pass over the images; raises NonFiniteLoss as soon as a check finds it NaN or infinite.

        Waits for the device only every `check_every` steps and at the end. bar: None or a tqdm-like bar (update,
        set_postfix). With a cosine schedule the learning rate steps once per epoch.
        """
        self.net.train()
        total, steps = torch.zeros((), device=self.rt.device), 0
        for idx in self.batches():
            total += self.step(idx)
            steps += 1
            if bar is not None:
                bar.update(len(idx))
            if steps % self.settings.check_every == 0:
                running = _finite(total.item() / steps, f" at step {steps}")
                if bar is not None:
                    bar.set_postfix(loss=f"{running:.3f}")
        if self.scheduler is not None and self.settings.learn:
            self.scheduler.step()
        return _finite(total.item() / max(steps, 1))

    def state(self):
        """What a checkpoint needs to go on exactly (network, bank, optimizer, schedule, scaler, random stream); the
        global RNG is the caller's to keep (common/labeled/checkpoints.py's rng_state)."""
        state = {"net": self.net.state_dict(), "bank": self.criterion.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "generator": self.generator.get_state()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load(self, state):
        self.net.load_state_dict(state["net"])
        self.criterion.load_state_dict(state["bank"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # empty when the scaler is off; absent from checkpoints written before it existed
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])


def _finite(value, where=""):
    if not math.isfinite(value):
        raise NonFiniteLoss(f"loss became {value}{where}")
    return value
