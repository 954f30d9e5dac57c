"""Data-parallel training under torchrun: process group, samplers, gathering."""
import copy
import math
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common.config import ConfigError
from common.device import pick_device

RANK_SEED_STRIDE = 1_000_003  # seed offset between ranks (prime, far above any epoch count): rank 0 keeps the seed


# ----------------------------------------------------------------------------- process group


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job; world_size 1 (no torchrun) makes every collective a no-op."""

    rank: int = 0  # global rank, 0 .. world_size - 1
    local_rank: int = 0  # rank on this machine: the GPU index
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self):
        """Rank 0: the one process that prints, writes files and decides (run folder, best epoch)."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj, src=0):
        """rank src's picklable object, on every rank (e.g. the run folder rank 0 made)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def mean(self, value):
        """A float averaged over ranks (e.g. the train loss; every rank sees as many images per epoch)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.item() / self.world_size

    def cleanup(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def _comm_device(self):
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def __str__(self):
        if not self.distributed:
            return "single process"
        return f"rank {self.rank}/{self.world_size} (local rank {self.local_rank}, {self.device}, {dist.get_backend()})"


def _env_int(name):
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"WORLD_SIZE is set but {name} is not; launch with torchrun --nproc_per_node=N ...")
    return int(value)


def init_distributed(device_setting="auto", timeout_s=None):
    """DistContext from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); joins the process group.

    No torchrun (or WORLD_SIZE 1): nothing is initialised and the device is pick_device(device_setting), as before.
    Under torchrun each process takes cuda:LOCAL_RANK with NCCL ('auto' or 'cuda'), or the CPU with gloo ('cpu');
    a fixed 'cuda:K' is refused (every rank would take the same GPU: choose GPUs with CUDA_VISIBLE_DEVICES), and so
    is 'mps' (no multi-process backend). timeout_s: how long a collective waits for a stalled rank (torch's default
    when None).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=pick_device(device_setting))
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if device_setting == "auto":
        device_setting = "cuda" if torch.cuda.is_available() else "cpu"
    if device_setting == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--DEVICE=cuda: CUDA is not available here; use --DEVICE=cpu (gloo) under torchrun")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs visible; "
                              "set --nproc_per_node to at most the number of GPUs")
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)  # NCCL and object collectives use the current device
    elif device_setting == "cpu":
        device, backend = torch.device("cpu"), "gloo"
    else:
        raise ConfigError(f"--DEVICE={device_setting} under torchrun: use auto, cuda (each rank takes cuda:LOCAL_RANK; "
                          "pick GPUs with CUDA_VISIBLE_DEVICES) or cpu")
    if not dist.is_initialized():
        kwargs = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
        if backend == "nccl":
            kwargs["device_id"] = device  # binds the group to this GPU: barriers need no guess
        dist.init_process_group(backend, rank=rank, world_size=world, **kwargs)
    return DistContext(rank, local_rank, world, device)


def rank_seed(seed, ctx):
    """A per-rank seed for augmentation, drop path and loader workers: rank 0 (and a single process) keep `seed`,
    other ranks draw other random crops instead of repeating rank 0's on their images."""
    return seed + RANK_SEED_STRIDE * ctx.rank


def per_rank_batch(global_batch, ctx):
    """BATCH_SIZE is the global batch (one optimizer step sees as many images as in a single-GPU run, so LR and
    results compare); each rank loads global_batch / world_size. Refused when that is not a whole number >= 2."""
    world = ctx.world_size
    if global_batch % world:
        lo, hi = (global_batch // world) * world, -(-global_batch // world) * world
        raise ConfigError(f"--BATCH_SIZE={global_batch} is the global batch and must divide among {world} processes; "
                          f"use {lo or hi} or {hi}")
    if global_batch // world < 2:
        raise ConfigError(f"--BATCH_SIZE={global_batch} leaves {global_batch // world} image per process; BatchNorm "
                          f"needs at least 2: use --BATCH_SIZE={2 * world} or more")
    return global_batch // world


# ----------------------------------------------------------------------------- samplers


class DistributedWeightedSampler(torch.utils.data.Sampler):
    """This rank's share of one weighted draw with replacement: every rank draws the same global sequence (seed +
    epoch) and keeps positions rank, rank + W, ... Step k of all ranks together then holds the images a single
    process would batch at step k of that sequence. The draw has ceil(num_samples / W) * W items so that every rank
    gets as many (extra draws are just more random draws, no repeats). With one rank it is BalancedSampler."""

    def __init__(self, weights, num_samples, seed, rank=0, world_size=1):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.per_rank = math.ceil(num_samples / self.world_size)
        self.epoch = 0

    @classmethod
    def from_sampler(cls, sampler, ctx):
        """From common.data.splits.BalancedSampler (its weights, num_samples and seed)."""
        return cls(sampler.weights, sampler.num_samples, sampler.seed, ctx.rank, ctx.world_size)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def global_draw(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)  # as BalancedSampler.set_epoch reseeds
        return torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True, generator=g)

    def __iter__(self):
        return iter(self.global_draw()[self.rank::self.world_size].tolist())

    def __len__(self):
        return self.per_rank


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + W, rank + 2W, ... of range(n): across ranks every item exactly once, no padding (ranks
    differ by at most one item: fine for no_grad inference, which has no collective per batch)."""

    def __init__(self, n, rank=0, world_size=1):
        self.n, self.rank, self.world_size = int(n), int(rank), int(world_size)

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self):
        return len(range(self.rank, self.n, self.world_size))


def train_sampler(dataset, seed, ctx, balanced=None):
    """The training sampler for this rank. Single process: `balanced` unchanged (None = the loader shuffles).
    Distributed: DistributedWeightedSampler from `balanced`, else torch's DistributedSampler (seeded, shuffled; pads
    with a few repeats so that every rank gets as many). Either way call set_epoch(epoch) before each epoch."""
    if not ctx.distributed:
        return balanced
    if balanced is not None:
        return DistributedWeightedSampler.from_sampler(balanced, ctx)
    return torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                               seed=seed)


def eval_sampler(dataset, ctx):
    """This rank's share of a val/test set (None in a single process: the loader reads in order)."""
    return ShardSampler(len(dataset), ctx.rank, ctx.world_size) if ctx.distributed else None


# ----------------------------------------------------------------------------- gathering


def _all_gather_rows(t, ctx):
    """(n_r, ...) on each rank -> [(n_0, ...), (n_1, ...), ...] on every rank (padded to the longest, then cut)."""
    dev = ctx._comm_device()
    t = t.to(dev)
    n = torch.tensor([t.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return [p[: int(s.item())].cpu() for p, s in zip(parts, sizes)]


def gather_predictions(logits, labels, index, ctx):
    """Every rank's (logits (n_r, K), labels (n_r,), dataset indices (n_r,)) -> all rows on every rank, sorted by
    index, each index once (a substituted unreadable image may show up on two ranks: the first is kept). Every rank
    gets the result, so that all compute the same metrics; only rank 0 should write them. Single process: returned
    unchanged."""
    if not ctx.distributed:
        return logits, labels, index
    logits = torch.cat(_all_gather_rows(logits.float(), ctx))
    meta = torch.cat(_all_gather_rows(torch.stack([labels.long(), index.long()], dim=1), ctx))  # (N, 2)
    labels, index = meta[:, 0], meta[:, 1]
    order = torch.sort(index, stable=True).indices  # equal indices keep rank order
    index = index[order]
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    keep = order[first]
    return logits[keep], labels[keep], index[first]


# ----------------------------------------------------------------------------- model


def unused_parameters(model, sample_input, loss_fn=None):
    """Names of the trainable parameters that get no gradient from one training step: e.g. the ops of a DARTS node
    whose output is neither in the concat nor an input of a later node. Runs on a CPU copy (the model, its RNG
    streams and its BatchNorm statistics are untouched); loss_fn(output) -> scalar, by default the sum of every
    tensor the model returns (EvalNetwork: logits and, in training, the auxiliary logits). A small sample input
    (2 images of 32 px) suffices: which ops are reached does not depend on the size."""
    probe = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().train()
    if hasattr(probe, "drop_path_prob"):
        probe.drop_path_prob = 0.0  # drop path zeroes values, never cuts the graph: no need to draw masks
    probe.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[]):
        out = probe(sample_input.to("cpu", torch.float32))
        if loss_fn is None:
            outs = out if isinstance(out, (tuple, list)) else (out,)
            loss = sum(o.float().sum() for o in outs if isinstance(o, torch.Tensor))
        else:
            loss = loss_fn(out)
        loss.backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def wrap_ddp(model, ctx, find_unused_parameters=False):
    """DistributedDataParallel over a model already on ctx.device (single process: the model itself). Rank 0's
    weights and buffers are broadcast to all ranks here; gradients are averaged in backward. Pass
    find_unused_parameters=bool(unused_parameters(...)): without it DDP stops at the second step when some
    parameter gets no gradient; with it every step pays a graph traversal, so only when needed."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                   find_unused_parameters=find_unused_parameters)


def unwrap_ddp(model):
    """The module inside DDP (its attributes such as drop_path_prob, last_cell(), and state_dict keys without the
    'module.' prefix: checkpoints load into a bare model)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def sync_buffers(model, ctx):
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP broadcasts them at the start of each training
    forward, so after the last step every rank has updated them with its own batch; call this before validating so
    that all ranks evaluate the model rank 0 saves."""
    if not ctx.distributed:
        return
    for buf in unwrap_ddp(model).buffers():
        dist.broadcast(buf.data, src=0)
