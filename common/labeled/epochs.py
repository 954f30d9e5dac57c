"""The epoch loop: loss and optimizer, one epoch (train, then validate), resume from ckpt.pt, and each epoch's
history line and checkpoints (best.pt when validation balanced accuracy improved, ckpt.pt always)."""
import json
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from common import runs
from common.data.splits import class_weights
from common.labeled.data import BALANCE_POWERS
from common.labeled.distributed import gather_predictions, rank_seed, sync_buffers, unwrap
from common.labeled.metrics import classification_metrics
from common.labeled.torchrun import on_main, say_if
from common.labeled.training import (
    TrainStep,
    finite_or_raise,
    load_checkpoint,
    predict,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    state_dict_nchw,
    train_one_epoch,
)

CKPT, BEST, HISTORY = "ckpt.pt", "best.pt", "history.jsonl"
RESUME_STATE = ("epoch", "best", "best_epoch", "history")  # what ckpt.pt holds besides model and optimizer


# ----------------------------------------------------------------------------- loss, optimizer


def make_loss(cfg, train, n_classes, say=print):
    """Cross-entropy with label smoothing, class-weighted from the training split's counts when CLASS_BALANCE asks."""
    _, power = BALANCE_POWERS[cfg["CLASS_BALANCE"]]
    weights = class_weights(train, n_classes, power) if power is not None else None  # (K,)
    if weights is not None:
        say("loss weights: " + ", ".join(f"{w:.2f}" for w in weights.tolist()))
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg["LABEL_SMOOTHING"])


@dataclass(frozen=True, kw_only=True)
class Optimisation:
    """How the weights learn: the loss, SGD with a cosine schedule stepped per epoch, and a gradient scaler (active
    only for fp16). Its state is what ckpt.pt keeps besides the model."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, ckpt):
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])


def make_optimisation(cfg, model, criterion, rt):
    """SGD with momentum over `model`'s parameters (the bare model: DDP shares them), annealed to 0 over EPOCHS."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["LR"], momentum=cfg["MOMENTUM"],
                                weight_decay=cfg["WEIGHT_DECAY"], nesterov=cfg["NESTEROV"] and cfg["MOMENTUM"] > 0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["EPOCHS"])
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)
    return Optimisation(criterion=criterion, optimizer=optimizer, scheduler=scheduler, scaler=scaler)


# ----------------------------------------------------------------------------- one epoch


@dataclass(frozen=True, kw_only=True)
class EpochPlan:
    """What every epoch takes from the settings."""

    epochs: int  # EPOCHS
    seed: int  # SEED: epoch e draws its crops, drop-path masks and order from SEED + e
    lr: float  # LR, named in the hint when a loss diverges
    aux_weight: float  # AUXILIARY_WEIGHT
    grad_clip: float  # GRAD_CLIP (0: none)
    drop_path_prob: float  # DROP_PATH_PROB of the last epoch, ramped linearly from 0; 0 for a torchvision ARCH

    @classmethod
    def from_config(cls, cfg):
        darts = cfg["ARCH"] is None  # torchvision models have no drop path
        return cls(epochs=cfg["EPOCHS"], seed=cfg["SEED"], lr=cfg["LR"], aux_weight=cfg["AUXILIARY_WEIGHT"],
                   grad_clip=cfg["GRAD_CLIP"], drop_path_prob=cfg["DROP_PATH_PROB"] if darts else 0.0)


@dataclass(frozen=True)
class Scored:
    """A model's predictions on a val or test loader: loss, metrics, probs (N, K), labels (N,), dataset indices (N,)."""

    loss: float
    metrics: dict
    probs: np.ndarray
    labels: np.ndarray
    index: np.ndarray


def evaluate(model, loader, criterion, classes, rt, ctx=None):
    """The model scored on a val or test loader. With a torchrun ctx the loader reads this rank's share; the rows of
    all ranks are gathered (each image once, in dataset order) and every rank computes the same metrics, so that all
    agree on the best epoch."""
    logits, labels, index = predict(model, loader, rt)
    if ctx is not None:
        logits, labels, index = gather_predictions(logits, labels, index, ctx)
    loss = criterion(logits.to(rt.device), labels.to(rt.device)).item()
    finite_or_raise(loss, "the evaluation loss", "try a lower LR or AMP=off")
    probs = torch.softmax(logits.double(), dim=1).numpy()  # (N, K); the same numbers go to CSV and metrics
    return Scored(loss, classification_metrics(labels.numpy(), probs, classes), probs, labels.numpy(), index.numpy())


def run_epoch(epoch, model, loaders, optim, plan, rt, ctx):
    """Train one epoch and validate; returns its history row (per-epoch metrics; the same on every rank but for
    seconds)."""
    t0 = time.time()
    # augmentation and drop path of this epoch, wherever the run resumed; each rank its own crops and masks
    seed = rank_seed(plan.seed + epoch, ctx)
    seed_everything(seed)
    loaders.generator.manual_seed(seed)  # this epoch's shuffled order (single process), loader workers' seeds
    if loaders.sampler is not None:
        loaders.sampler.set_epoch(epoch)
    drop = plan.drop_path_prob * (epoch - 1) / plan.epochs  # DARTS's linear ramp
    if hasattr(unwrap(model), "drop_path_prob"):  # a DARTS network; torchvision models have no drop path
        unwrap(model).drop_path_prob = drop
    lr = optim.optimizer.param_groups[0]["lr"]
    step = TrainStep(criterion=optim.criterion, optimizer=optim.optimizer, scaler=optim.scaler,
                     aux_weight=plan.aux_weight, grad_clip=plan.grad_clip)
    train_loss = train_one_epoch(model, loaders.train, step, rt, desc=f"epoch {epoch}/{plan.epochs}",
                                 progress=ctx.is_main)
    train_loss = ctx.mean(train_loss)  # every rank trains on as many images: the mean of means is the epoch's mean
    finite_or_raise(train_loss, f"the training loss of epoch {epoch}", f"try a lower LR (now {plan.lr}) or AMP=off")
    optim.scheduler.step()
    sync_buffers(model, ctx)  # every rank validates the model rank 0 saves (its BatchNorm statistics)
    val = evaluate(unwrap(model), loaders.val, optim.criterion, loaders.classes, rt, ctx)  # bare: no DDP collectives
    m = val.metrics
    return {"epoch": epoch, "lr": lr, "drop_path_prob": drop, "train_loss": train_loss,
            "val_loss": val.loss, "val_accuracy": m["accuracy"], "val_balanced_accuracy": m["balanced_accuracy"],
            "val_auc_macro": m["auc_macro"], "val_recall": m["recall"], "val_precision": m["precision"],
            "seconds": round(time.time() - t0, 2)}


def epoch_line(row, epochs, best_epoch):
    auc = f"{row['val_auc_macro']:.3f}" if row["val_auc_macro"] is not None else "n/a"
    bacc = row["val_balanced_accuracy"] or 0.0
    return (f"epoch {row['epoch']}/{epochs} | train {row['train_loss']:.3f} | val {row['val_loss']:.3f} | "
            f"bal-acc {bacc:.3f} | auc {auc} | {row['seconds']:.0f} s" + (" *" if best_epoch == row["epoch"] else ""))


# ----------------------------------------------------------------------------- resume, checkpoints


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
