"""One search trial's training run: the candidate trained contrastively (common/contrastive/trainer.py) for its
per-epoch losses (the nce score), with a progress bar, early stopping between epochs, and nothing kept once it ends."""
import time
import traceback
from functools import partial

from common.contrastive.net import ContrastiveNet
from common.contrastive.trainer import ContrastiveTrainer


def candidate(genotype, init_channels, layers):
    """The search candidate as ContrastiveTrainer's make_net: a callable(proj_dim) -> ContrastiveNet."""
    return partial(ContrastiveNet.search_candidate, genotype, init_channels, layers)


def _clear_locals(exc):
    """Empty the locals of the finished frames in the tracebacks of exc and of the exceptions it chains to."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)  # skips frames still running (this one, its callers)
        exc = exc.__cause__ or exc.__context__


def run_trial(make_net, images, views, settings, *, epochs, progress=None, on_trainer=None, stop=None):
    """Train one candidate for up to `epochs`; returns {'loss': last epoch's mean, 'epoch_losses', 'images_per_s',
    'stopped': None, or why it stopped before `epochs`}.

    make_net, images, views, settings: a ContrastiveTrainer's (make_net e.g. `candidate(genotype, C, layers)`;
    settings a ContrastiveSettings). A NaN loss raises NonFiniteLoss, which the search records as a failed trial.
    progress: None or a callable(total_images) -> a tqdm-like bar (update/set_postfix/close).
    on_trainer: None or a callable(trainer) run once the ContrastiveTrainer is built, before fill_bank (to watch or
    wrap it; keep only a weakref to it if the trainer should be freed when run_trial ends).
    stop: None or a callable(epoch_losses so far) -> None (go on) or a reason to stop now, asked after every epoch
    but the last (common/search/early_stop.py).
    Nothing here holds the trainer once run_trial returns or raises, not even the exception's traceback: its
    frames' locals are cleared, so the network, optimizer state and bank can be freed before the next trial.
    """
    trainer = bar = None
    try:
        trainer = ContrastiveTrainer(make_net, images, views, settings)
        if on_trainer is not None:
            on_trainer(trainer)
        trainer.fill_bank()
        epoch_losses, seen, start, stopped = [], 0, time.perf_counter(), None
        per_epoch = trainer.images_per_epoch
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
