"""One labeled training as a torchrun job: refusals before the process group, rank 0 decides and writes (on_main),
one voice (say_if), and a user error said once, by the rank it concerns (RankErrors)."""
import os
import sys
from contextlib import contextmanager

from common.config import ConfigError
from common.data.images import BadImage
from common.data.layouts import DatasetError
from common.labeled.distributed import DistContext, init_distributed, per_rank_batch
from common.labeled.model_card import OnnxMismatch

# what a user can fix: one line, no traceback (the command line's run_cli and on_main's hand-over catch these)
USER_ERRORS = (ConfigError, DatasetError, BadImage, OnnxMismatch)
# s, how long a torchrun process waits in a collective for the others: rank 0 alone makes the resized copies while
# the rest wait (tens of minutes for ISIC 2019 on a slow disk); a process that dies ends the job at once anyway
GROUP_TIMEOUT_S = 2 * 3600


def launched_world_size():
    """Processes in this torchrun job (WORLD_SIZE; 1 without torchrun), known before any process joins the group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_torchrun(cfg, world):
    """What a torchrun job of `world` processes cannot run, refused before the process group exists (every rank
    raises the same error; rank 0 prints it): a BATCH_SIZE that does not divide among them, and pre-training (it runs
    in one process: the other ranks would wait for it in a collective)."""
    if world > 1:
        per_rank_batch(cfg["BATCH_SIZE"], DistContext(world_size=world))
        if cfg.get("PRETRAIN_EPOCHS"):
            raise ConfigError(f"--PRETRAIN_EPOCHS={cfg['PRETRAIN_EPOCHS']} runs in one process: pre-train first "
                              "(python train_isic.py --PRETRAIN_EPOCHS=... --EPOCHS=1 writes <run>/pretrained.pt), then "
                              "torchrun with --PRETRAINED_WEIGHTS=<run>/pretrained.pt")


@contextmanager
def process_group(cfg, errors=None):
    """This process's DistContext for the block: under torchrun it joins the job's process group (left at the end);
    without torchrun a single process on cfg's DEVICE. errors: the RankErrors told that this rank has joined."""
    world = launched_world_size()
    check_torchrun(cfg, world)
    ctx = init_distributed(cfg["DEVICE"], timeout_s=GROUP_TIMEOUT_S if world > 1 else None)
    if errors is not None:
        errors.joined = ctx.distributed
    try:
        yield ctx
    finally:
        ctx.cleanup()


def on_main(ctx, fn, *args, share=True):
    """fn(*args) run by rank 0 first: it alone writes (the run folder's files, the demo images). share True: its
    result on every rank; False: the other ranks then run fn(*args) themselves (e.g. reading the dataset, too large
    to send). A user error on rank 0 stops every rank: rank 0 raises it (one line), the others exit with status 2
    without repeating it (rather than wait for rank 0 in a collective, and fail there with a traceback)."""
    if not ctx.distributed:
        return fn(*args)
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn(*args)
        except USER_ERRORS as exc:
            error = exc
    # a flag, not the exception: it need not pickle
    shared, failed = ctx.broadcast((result if share else None, error is not None))
    if error is not None:
        raise error
    if failed:
        raise SystemExit(2)
    if ctx.is_main:
        return result
    return shared if share else fn(*args)


def say_if(ctx):
    """print on rank 0 (the one voice of a torchrun job; always in a single process), a no-op elsewhere."""
    return print if ctx.is_main else lambda *args, **kwargs: None


class RankErrors:
    """Who says a user error: rank 0 (and a single process) always; another torchrun rank stays quiet about one raised
    before it joined the process group (a setting: rank 0 raises the same one and prints it) and names itself in any
    later one (it may be its own, e.g. DATA_DIR missing on its node). debug: tracebacks for user errors too."""

    def __init__(self):
        self.rank, self.joined, self.debug = 0, False, False

    def call(self, main, argv=None):
        """main(argv), its user errors said (or not) as above; a rank that does not say one exits with status 2."""
        self.rank = int(os.environ.get("RANK", "0")) if launched_world_size() > 1 else 0
        self.joined = False
        try:
            return main(argv)
        except USER_ERRORS as exc:
            if self.rank == 0 or self.debug:
                raise
            if self.joined:
                print(f"error (rank {self.rank}): {exc}", file=sys.stderr)
            sys.exit(2)
