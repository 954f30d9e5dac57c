"""The epoch loop: loss and optimizer, one epoch (train, then validate) and its one-line summary; resuming and each
epoch's checkpoints are common/labeled/checkpoints.py."""
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from common.data.splits import class_weights
from common.labeled.data import BALANCE_POWERS
from common.labeled.distributed import gather_predictions, rank_seed, sync_buffers, unwrap_ddp
from common.labeled.metrics import classification_metrics
from common.labeled.training import TrainStep, finite_or_raise, predict, seed_everything, train_one_epoch

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
    if hasattr(unwrap_ddp(model), "drop_path_prob"):  # a DARTS network; torchvision models have no drop path
        unwrap_ddp(model).drop_path_prob = drop
    lr = optim.optimizer.param_groups[0]["lr"]
    step = TrainStep(criterion=optim.criterion, optimizer=optim.optimizer, scaler=optim.scaler,
                     aux_weight=plan.aux_weight, grad_clip=plan.grad_clip)
    train_loss = train_one_epoch(model, loaders.train, step, rt, desc=f"epoch {epoch}/{plan.epochs}",
                                 progress=ctx.is_main)
    train_loss = ctx.mean(train_loss)  # every rank trains on as many images: the mean of means is the epoch's mean
    finite_or_raise(train_loss, f"the training loss of epoch {epoch}", f"try a lower LR (now {plan.lr}) or AMP=off")
    optim.scheduler.step()
    sync_buffers(model, ctx)  # every rank validates the model rank 0 saves (its BatchNorm statistics)
    val = evaluate(unwrap_ddp(model), loaders.val, optim.criterion, loaders.classes, rt, ctx)  # bare: no DDP collectives
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
