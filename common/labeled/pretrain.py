"""Self-supervised pre-training of the evaluation network on unlabeled images, with the search's own objective.

The network that will be trained with labels (a genotype's EvalNetwork or a torchvision ARCH) loses its classifier
and gains the search candidate's two projection heads (common/contrastive/net.py, ContrastiveNet.from_classifier),
and then trains with the search's own trainer (common/contrastive/trainer.py): per image the whole image and two
patches (a centre crop, a random crop; common/contrastive/views.py), each view in its own pass so that BatchNorm
normalises it with its own statistics, NCE of the views against a memory bank of every image's whole-image
representation (EMA-updated), τ = 0.07, patch and whole terms weighted 0.5 / 0.5. What changes is the scale: views
at the eval network's IMAGE_SIZE, its pooled feature layer as the features, SGD with a cosine schedule over
PRETRAIN_EPOCHS.

A run folder gets pretrain_history.jsonl (one line per epoch), pretrain_ckpt.pt after every epoch (a kill resumes
from the last finished epoch, with the bank, optimizer and random streams as they were) and, at the end,
pretrained.pt: the backbone's weights (every tensor but the classifier's and the auxiliary head's) under 'model',
in the bare network's names, with what they fit. load_pretrained puts them into a fresh classifier; for an ARCH
the file is also a plain torchvision backbone file (build_baseline's PRETRAINED_WEIGHTS reader accepts it).
"""
import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from common import runs
from common.arch.baselines import head_name, unwrap_aux
from common.config import ConfigError
from common.contrastive.net import ContrastiveNet
from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer, NonFiniteLoss
from common.contrastive.views import ViewMaker
from common.labeled.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state, state_dict_nchw
from common.memory import probe_step

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


def pretrain_trainer(classifier, images, settings, rt):
    """The ContrastiveTrainer of one pre-training: a copy of `classifier` with the heads, the views at image_size,
    SGD annealed over the epochs. images: (N, S, S, 3) uint8 on rt.device."""
    s = settings
    views = ViewMaker(s.image_size, s.color_jitter, s.center_crop, s.patch_scale, s.grayscale_p, s.mean, s.std)
    train = ContrastiveSettings(
        rt=rt, batch_size=s.batch_size, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, tau=s.tau,
        bank_momentum=s.bank_momentum, patch_weight=s.patch_weight, negatives_per_image=s.negatives,
        proj_dim=s.proj_dim, seed=s.seed, cosine_epochs=s.epochs,
    )
    return ContrastiveTrainer(partial(ContrastiveNet.from_classifier, classifier), images, views, train)


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
    trainer = pretrain_trainer(classifier, torch.as_tensor(images).to(rt.device), s, rt)
    history, start = [], 1
    if (out_dir / CKPT).exists():
        ckpt = load_checkpoint(out_dir / CKPT, need=("trainer", "epoch", "history"))
        trainer.load(ckpt["trainer"])
        set_rng_state(ckpt["trainer"]["rng"])
        history, start = ckpt["history"], ckpt["epoch"] + 1
        log(f"pre-training: resumed from {out_dir / CKPT} after epoch {ckpt['epoch']}")
    else:
        trainer.fill_bank()
    runs.atomic_write_text(out_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in history))  # as the ckpt says
    for epoch in range(start, s.epochs + 1):
        t0, lr = time.time(), trainer.optimizer.param_groups[0]["lr"]
        with tqdm(total=trainer.images_per_epoch, desc=f"pretrain {epoch}/{s.epochs}", unit="img", leave=False,
                  disable=None) as bar:
            try:
                loss = trainer.train_epoch(bar)
            except NonFiniteLoss as exc:
                raise ConfigError(f"pre-training diverged in epoch {epoch} ({exc}); try a lower PRETRAIN_LR "
                                  f"(now {s.lr}) or AMP=off") from None
        row = {"epoch": epoch, "lr": lr, "nce_loss": loss, "seconds": round(time.time() - t0, 2)}
        history.append(row)
        runs.append_jsonl(out_dir / HISTORY, row)
        state = {**trainer.state(), "rng": rng_state()}  # and the global RNG: a resumed run draws as an unbroken one
        save_checkpoint(out_dir / CKPT, {"trainer": state, "epoch": epoch, "history": history})
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
        trainer = pretrain_trainer(classifier, images.to(rt.device), settings, rt)
        idx = torch.arange(probe_images, device=rt.device)
        return probe_step(lambda b: trainer.step(idx[:b]), rt.device, batch_size=settings.batch_size,
                          params=list(trainer.net.parameters()))
