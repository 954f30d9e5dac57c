"""Self-supervised pre-training of the evaluation network on unlabeled images, with the search's own objective.

The network that will be trained with labels (a genotype's EvalNetwork or a torchvision ARCH) loses its classifier
and gains the search network's two projection heads (whole image; the two patch views concatenated). It then
learns exactly what a search candidate learns (common/search/contrastive.py, common/data/views.py): per image the
whole image and two patches (a centre crop, a random crop), each view in its own pass so that BatchNorm normalises
it with its own statistics, NCE of the views against a memory bank of every image's whole-image representation
(EMA-updated), τ = 0.07, patch and whole terms weighted 0.5 / 0.5. What changes is the scale: views at the eval
network's IMAGE_SIZE, its pooled feature layer as the features, SGD with a cosine schedule over PRETRAIN_EPOCHS.

A run folder gets pretrain_history.jsonl (one line per epoch), pretrain_ckpt.pt after every epoch (a kill resumes
from the last finished epoch, with the bank, optimizer and random streams as they were) and, at the end,
pretrained.pt: the backbone's weights (every tensor but the classifier's and the auxiliary head's) under 'model',
in the bare network's names, with what they fit. load_pretrained puts them into a fresh classifier; for an ARCH
the file is also a plain torchvision backbone file (build_baseline's PRETRAINED_WEIGHTS reader accepts it).
"""
import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from common import runs
from common.arch.baselines import head_name, unwrap_aux
from common.config import ConfigError
from common.data.views import ViewMaker
from common.labeled.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state, state_dict_nchw
from common.memory import probe_step
from common.search.contrastive import BankNCE

PRETRAINED, CKPT, HISTORY = "pretrained.pt", "pretrain_ckpt.pt", "pretrain_history.jsonl"
FORMAT = "csnas-pretrained-backbone-1"  # marks a pretrained.pt (other .pth files are torchvision weights)
_SKIP = ("aux_head.",)  # modules trained with labels only: never pre-trained, never loaded


@dataclass(frozen=True, kw_only=True)
class PretrainSettings:
    """How the eval network is pre-trained; the loss and view constants are the search's (search/search.py)."""

    epochs: int
    batch_size: int
    image_size: int  # px of the views: the eval network's input size
    mean: tuple
    std: tuple
    lr: float = 0.05  # SGD, cosine-annealed to 0 over the epochs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0  # the heads' initialisation, views, negatives and batch order
    proj_dim: int = 256
    tau: float = 0.07
    bank_momentum: float = 0.5
    patch_weight: float = 0.5
    negatives: int | None = None  # None: 2 * (batch - 1), as in the search
    color_jitter: tuple = (0.2, 0.2, 0.2, 0.02)
    center_crop: float = 0.5
    patch_scale: tuple = (0.15, 0.5)
    grayscale_p: float = 0.2


class ContrastiveNet(nn.Module):
    """A classifier's backbone (classifier replaced by an identity: its pooled features (B, F)) with the search
    network's heads: whole image -> (B, D), the patch views' features concatenated -> (B, D)."""

    def __init__(self, classifier, proj_dim=256, n_patch_views=2):
        super().__init__()
        net = copy.deepcopy(unwrap_aux(classifier))
        self.head = head_name(net)
        parent, _, leaf = self.head.rpartition(".")
        feature_dim = net.get_submodule(self.head).in_features
        setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
        if getattr(net, "aux_head", None) is not None:
            net.aux_head = None  # an EvalNetwork's auxiliary classifier belongs to the labeled training
        self.backbone = net
        self.head_whole = nn.Linear(feature_dim, proj_dim)
        self.head_patch = nn.Linear(n_patch_views * feature_dim, proj_dim)

    def features(self, x):
        out = self.backbone(x)
        return out[0] if isinstance(out, (tuple, list)) else out  # an EvalNetwork returns (features, None)

    def represent(self, whole):
        return self.head_whole(self.features(whole))

    def forward(self, whole, patches):
        """whole (B, 3, S, S), patches V x (B, 3, S, S) -> (whole (B, D), patch (B, D)); one pass per view, as the
        search network does (BatchNorm statistics per view)."""
        f_patch = torch.cat([self.features(p) for p in patches], dim=1)  # (B, V*F)
        return self.represent(whole), self.head_patch(f_patch)


class PretrainTrainer:
    """The contrastive net, bank loss, views, optimizer and random stream of one pre-training; `epoch` runs one pass.

    images: (N, S, S, 3) uint8 on rt.device (moved once, indexed per batch)."""

    def __init__(self, classifier, images, settings, rt):
        s = settings
        self.images, self.settings, self.rt = images, s, rt
        torch.manual_seed(s.seed)  # the heads' initial weights
        self.net = rt.place(ContrastiveNet(classifier, s.proj_dim))
        self.criterion = BankNCE(len(images), s.proj_dim, s.tau, s.bank_momentum, s.patch_weight, s.negatives)
        self.criterion.to(rt.device)
        self.views = ViewMaker(s.image_size, s.color_jitter, s.center_crop, s.patch_scale, s.grayscale_p, s.mean, s.std)
        self.generator = torch.Generator(device=rt.device).manual_seed(s.seed)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(s.epochs, 1))

    def batches(self):
        """A fresh permutation cut into full batches (no tiny last batch for BatchNorm)."""
        n = len(self.images)
        size = min(self.settings.batch_size, n)
        perm = torch.randperm(n, generator=self.generator, device=self.rt.device)
        return [perm[i:i + size] for i in range(0, n - size + 1, size)]

    @torch.no_grad()
    def fill_bank(self):
        """Every image's whole-image representation into the bank, in training mode (as a step computes it)."""
        self.net.train()
        n = len(self.images)
        for idx in torch.arange(n, device=self.rt.device).tensor_split(math.ceil(n / self.settings.batch_size)):
            whole, _ = self.views(self.images[idx], self.generator)
            with self.rt.autocast():
                self.criterion.bank.fill(idx, self.net.represent(self.rt.inputs(whole)))

    def step(self, idx):
        """One SGD step on the images idx; the loss as a device tensor (no sync)."""
        whole, patches = self.views(self.images[idx], self.generator)
        with self.rt.autocast():
            f_whole, f_patch = self.net(self.rt.inputs(whole), [self.rt.inputs(p) for p in patches.unbind(0)])
        loss = self.criterion(idx, f_whole.float(), f_patch.float(), self.generator)  # also refreshes the bank rows
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self, bar=None):
        """Mean loss of one pass over the images; ConfigError when it is not finite."""
        self.net.train()
        total, steps = torch.zeros((), device=self.rt.device), 0
        for idx in self.batches():
            total += self.step(idx)
            steps += 1
            if bar is not None:
                bar.update(len(idx))
                if steps % 10 == 0:
                    bar.set_postfix(nce=f"{total.item() / steps:.3f}")
        self.scheduler.step()
        mean = total.item() / max(steps, 1)
        if not math.isfinite(mean):
            raise ConfigError(f"the pre-training loss is {mean}: it diverged; try a lower PRETRAIN_LR "
                              f"(now {self.settings.lr}) or AMP=off")
        return mean

    def state(self):
        return {"net": self.net.state_dict(), "bank": self.criterion.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(), "rng": rng_state()}

    def load(self, state):
        self.net.load_state_dict(state["net"])
        self.criterion.load_state_dict(state["bank"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])


def pretrain(classifier, images, settings, *, out_dir, rt, meta=None, log=print):
    """Pre-train the backbone of `classifier` (left untouched: a copy is trained) on `images` (N, S, S, 3) uint8 and
    write out_dir/pretrained.pt; resumes from out_dir/pretrain_ckpt.pt after a kill; returns the pretrained.pt path
    at once when it is there. meta: what the weights fit (arch, genotype, sizes), stored beside them."""
    out_dir = Path(out_dir)
    final = out_dir / PRETRAINED
    if final.exists():
        log(f"pre-training: done before, {final}")
        return final
    if len(images) < 2:
        raise ConfigError(f"{len(images)} unlabeled image(s) for pre-training: the memory bank needs at least 2; "
                          "set UNLABELED_DIR to a folder of images or PRETRAIN_EPOCHS=0")
    s = settings
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = PretrainTrainer(classifier, torch.as_tensor(images).to(rt.device), s, rt)
    history, start = [], 1
    if (out_dir / CKPT).exists():
        ckpt = load_checkpoint(out_dir / CKPT, need=("trainer", "epoch", "history"))
        trainer.load(ckpt["trainer"])
        history, start = ckpt["history"], ckpt["epoch"] + 1
        log(f"pre-training: resumed from {out_dir / CKPT} after epoch {ckpt['epoch']}")
    else:
        trainer.fill_bank()
    runs.atomic_write_text(out_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in history))  # as the ckpt says
    per_epoch = len(images) // min(s.batch_size, len(images)) * min(s.batch_size, len(images))
    for epoch in range(start, s.epochs + 1):
        t0, lr = time.time(), trainer.optimizer.param_groups[0]["lr"]
        with tqdm(total=per_epoch, desc=f"pretrain {epoch}/{s.epochs}", unit="img", leave=False, disable=None) as bar:
            loss = trainer.epoch(bar)
        row = {"epoch": epoch, "lr": lr, "nce_loss": loss, "seconds": round(time.time() - t0, 2)}
        history.append(row)
        runs.append_jsonl(out_dir / HISTORY, row)
        save_checkpoint(out_dir / CKPT, {"trainer": trainer.state(), "epoch": epoch, "history": history})
        log(f"pretrain epoch {epoch}/{s.epochs} | nce {loss:.3f} | {row['seconds']:.0f} s", flush=True)
    save_checkpoint(final, {"format": FORMAT, "model": state_dict_nchw(trainer.net.backbone),
                            "meta": {**(meta or {}), "images": len(images)}, "settings": asdict(s), "images": len(images),
                            "history": history})
    (out_dir / CKPT).unlink(missing_ok=True)  # the bank and optimizer state are not needed any more
    log(f"pre-training: wrote {final}")
    return final


def is_pretrained_file(path):
    """True when `path` is a pretrained.pt written here (else, e.g., a torchvision ImageNet .pth)."""
    try:
        ckpt = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours (or not readable): the caller's other reader says why
        return False
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def backbone_keys(classifier):
    """{name: shape} of the tensors pre-training gives `classifier`: all but its classifier's and auxiliary head's."""
    net = unwrap_aux(classifier)
    skip = (head_name(net) + ".", *_SKIP)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith(skip)}


def load_pretrained(classifier, path):
    """Copy the backbone of a pretrained.pt into `classifier` (its classifier and auxiliary head stay as they are);
    every backbone tensor must fit by name and shape, else ConfigError naming what the file was pre-trained for.
    Returns the file's meta."""
    ckpt = load_checkpoint(path, need=("format", "model"))
    if ckpt["format"] != FORMAT:
        raise ConfigError(f"{path} is not a pretrained.pt of this project (format {ckpt['format']!r})")
    source, want = ckpt["model"], backbone_keys(classifier)
    fit = [k for k, shape in want.items() if k in source and tuple(source[k].shape) == shape]
    if len(fit) < len(want):
        meta = ckpt.get("meta") or {}
        shown = {k: v for k, v in meta.items() if k not in ("genotype", "images") and v is not None}
        made_for = ", ".join(f"{k} {v}" for k, v in shown.items()) or "another network"
        missing = next(k for k in want if k not in fit)
        raise ConfigError(f"PRETRAINED_WEIGHTS {path} does not fit this network: {len(fit)} of {len(want)} tensors match "
                          f"by name and shape (first missing: {missing}); it was pre-trained for {made_for}")
    own = unwrap_aux(classifier).state_dict()
    with torch.no_grad():
        for k in fit:
            own[k].copy_(source[k])  # state_dict tensors share storage with the parameters and buffers
    return ckpt.get("meta") or {}


def pretrain_step_memory(classifier, settings, rt, probe_images=16):
    """StepMemory of one pre-training step (three views in their own passes, the bank loss) of a throwaway copy of
    `classifier` on random images: what check_step compares with the device's memory before any run folder."""
    images = torch.randint(0, 256, (probe_images, settings.image_size, settings.image_size, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        trainer = PretrainTrainer(classifier, images.to(rt.device), settings, rt)
        idx = torch.arange(probe_images, device=rt.device)
        return probe_step(lambda b: trainer.step(idx[:b]), rt.device, batch_size=settings.batch_size,
                          params=list(trainer.net.parameters()))
