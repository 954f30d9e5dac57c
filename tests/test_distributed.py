"""Data-parallel helpers: samplers and the no-op context in process; collectives and DDP on 2 gloo ranks."""
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from common.arch.genotypes import CNAS_ISIC_s4, CNAS_ISIC_s5
from common.arch.networks import EvalNetwork
from common.config import ConfigError
from common.data.splits import BalancedSampler
from common.labeled.distributed import (
    DistContext,
    DistributedWeightedSampler,
    ShardSampler,
    gather_predictions,
    init_distributed,
    per_rank_batch,
    rank_seed,
    sync_buffers,
    train_sampler,
    unused_parameters,
    unwrap_ddp,
    wrap_ddp,
)

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
N_EVAL = 7  # items of the sharded 'validation set': uneven over 2 ranks


def tiny_net(seed=0, drop_path_prob=0.0):
    torch.manual_seed(seed)
    return EvalNetwork(CNAS_ISIC_s5, num_classes=3, C=8, layers=3, auxiliary=True, drop_path_prob=drop_path_prob)


# ----------------------------------------------------------------------------- in process


def test_shard_sampler_covers_every_item_once_with_uneven_sizes():
    for n, world in ((7, 2), (10, 3), (2, 4), (0, 2)):
        shards = [list(ShardSampler(n, r, world)) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert [len(ShardSampler(n, r, world)) for r in range(world)] == [len(s) for s in shards]
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_plain_train_sampler_partitions_the_epoch_and_follows_set_epoch():
    data = list(range(10))
    samplers = [train_sampler(data, 5, DistContext(rank=r, world_size=WORLD)) for r in range(WORLD)]
    for s in samplers:
        s.set_epoch(3)
    shards = [list(s) for s in samplers]
    assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == data
    assert shards == [list(s) for s in samplers]  # same epoch, same order
    samplers[0].set_epoch(4)
    assert list(samplers[0]) != shards[0]
    odd = [list(train_sampler(list(range(11)), 5, DistContext(rank=r, world_size=WORLD))) for r in range(WORLD)]
    assert len(odd[0]) == len(odd[1]) == 6 and set(odd[0] + odd[1]) == set(range(11))  # one repeat pads it


def test_weighted_sampler_slices_one_global_draw():
    weights = torch.tensor([1.0, 1.0, 8.0, 0.0, 2.0], dtype=torch.double)
    samplers = [DistributedWeightedSampler(weights, 9, seed=7, rank=r, world_size=WORLD) for r in range(WORLD)]
    for s in samplers:
        s.set_epoch(2)
    draw = samplers[0].global_draw()
    assert torch.equal(draw, samplers[1].global_draw()) and len(draw) == 10  # 9 rounded up to 2 x 5
    shards = [list(s) for s in samplers]
    assert [len(s) for s in samplers] == [5, 5] and shards == [draw[0::2].tolist(), draw[1::2].tolist()]
    # global batch 4 = 2 per rank: step k of both ranks together is what one process batches at step k
    assert sorted(shards[0][:2] + shards[1][:2]) == sorted(draw[:4].tolist())
    assert 3 not in draw.tolist()  # weight 0 is never drawn
    samplers[0].set_epoch(3)
    assert list(samplers[0]) != shards[0]


def test_weighted_sampler_on_one_rank_is_the_balanced_sampler():
    weights = torch.rand(20, dtype=torch.double) + 0.1
    single = BalancedSampler(weights, 20, seed=3)
    single.set_epoch(4)
    ours = train_sampler(range(20), 3, DistContext(rank=0, world_size=WORLD), balanced=single)
    assert isinstance(ours, DistributedWeightedSampler)
    one = DistributedWeightedSampler.from_sampler(single, DistContext())
    one.set_epoch(4)
    assert list(one) == list(single)
    assert train_sampler(range(20), 3, DistContext(), balanced=single) is single  # single process: unchanged
    assert train_sampler(range(20), 3, DistContext()) is None


def test_per_rank_batch_splits_the_global_batch():
    assert per_rank_batch(160, DistContext()) == 160
    assert per_rank_batch(160, DistContext(world_size=8)) == 20
    with pytest.raises(ConfigError, match="159 or 162"):
        per_rank_batch(160, DistContext(world_size=3))
    with pytest.raises(ConfigError, match="at least 2"):
        per_rank_batch(4, DistContext(world_size=4))


def test_rank_seed_keeps_rank_zero():
    assert rank_seed(5, DistContext()) == 5 and rank_seed(5, DistContext(rank=1, world_size=2)) != 5


def test_no_torchrun_is_a_single_process_no_op(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed, ctx.device) == (0, 1, True, False, torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1
    monkeypatch.setenv("RANK", "0")
    assert not init_distributed("cpu").distributed and not dist.is_initialized()
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, ctx) is model and unwrap_ddp(model) is model
    logits, labels, index = torch.randn(3, 2), torch.tensor([1, 0, 1]), torch.tensor([2, 0, 1])
    assert all(a is b for a, b in zip(gather_predictions(logits, labels, index, ctx), (logits, labels, index)))
    assert ctx.broadcast({"a": 1}) == {"a": 1} and ctx.mean(2) == 2.0
    ctx.barrier()
    sync_buffers(model, ctx)
    ctx.cleanup()
    assert train_sampler(range(4), 0, ctx) is None and str(ctx) == "single process"


@pytest.mark.parametrize("device", ["cuda:1", "mps"])
def test_fixed_device_is_refused_under_torchrun(monkeypatch, device):
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="under torchrun"):
        init_distributed(device)
    assert not dist.is_initialized()


def test_unused_parameters_finds_the_dead_reduction_node():
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sample = torch.randn(2, 3, 32, 32)
    rng = torch.get_rng_state()
    unused = unused_parameters(model, sample)
    # CNAS_ISIC_s5's reduction node 0 (state 2: dil_conv_5x5 of state 0, max pool of state 1) feeds nothing
    reduce_cells = [i for i, c in enumerate(model.cells) if c.reduction]
    assert reduce_cells == [1, 2]
    assert unused and {n.split(".ops.")[0] + ".ops." + n.split(".ops.")[1].split(".")[0] for n in unused} == {
        "cells.1.ops.0", "cells.2.ops.0"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    assert torch.equal(rng, torch.get_rng_state())  # and the global RNG stream too
    full = EvalNetwork(CNAS_ISIC_s4, num_classes=3, C=8, layers=3, auxiliary=True)
    assert unused_parameters(full, torch.randn(2, 3, 32, 32)) == []
    # a loss that ignores the auxiliary head (AUXILIARY_WEIGHT 0 with a head built) leaves the head unused
    no_aux = unused_parameters(full, torch.randn(2, 3, 32, 32), loss_fn=lambda out: out[0].sum())
    assert no_aux and all(n.startswith("aux_head.") for n in no_aux)


# ----------------------------------------------------------------------------- 2 gloo ranks


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run _worker on 2 processes with torchrun's environment set by hand; returns each rank's results."""
    from conftest import run_ranks  # only under pytest: the ranks import this file as a module

    out = tmp_path_factory.mktemp("ddp")
    return run_ranks([sys.executable, "-m", "tests.test_distributed", str(out)], out, WORLD)


@pytest.mark.slow
def test_ranks_join_one_gloo_group(ranks):
    assert [(r["rank"], r["world"], r["local_rank"], r["backend"], r["device"]) for r in ranks] == [
        (0, 2, 0, "gloo", "cpu"), (1, 2, 1, "gloo", "cpu")]
    assert [r["main"] for r in ranks] == [True, False]


@pytest.mark.slow
def test_gather_returns_every_row_once_in_index_order(ranks):
    assert [r["shard_len"] for r in ranks] == [4, 3]  # 7 items: uneven shards
    for r in ranks:
        logits, labels, index = r["gathered"]
        assert index.tolist() == list(range(N_EVAL))
        assert torch.equal(logits, torch.arange(N_EVAL).float()[:, None].expand(N_EVAL, 3) * torch.tensor([1, -1, 2]))
        assert labels.tolist() == [i % 3 for i in range(N_EVAL)]
    # index 0 also sent by rank 1 (a substituted image): one row, rank 0's
    logits, _, index = ranks[0]["gathered_dup"]
    assert index.tolist() == list(range(N_EVAL)) and logits[0, 0] == 0.0


@pytest.mark.slow
def test_broadcast_and_mean(ranks):
    assert [r["broadcast"] for r in ranks] == [{"run_dir": "runs/eval/from-rank-0"}] * 2
    assert [r["mean"] for r in ranks] == [1.5, 1.5]


@pytest.mark.slow
def test_ddp_step_gives_identical_models_on_both_ranks(ranks):
    a, b = ranks[0], ranks[1]
    assert a["unused"] and a["unused"] == b["unused"]
    assert a["losses"] != b["losses"]  # each rank trained on its own images
    assert a["state"].keys() == b["state"].keys() and not any(k.startswith("module.") for k in a["state"])
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k  # weights, and BN statistics after sync_buffers
    changed = [k for k, v in a["state"].items() if v.is_floating_point() and not torch.equal(v, a["init"][k])]
    assert any(".ops." in k for k in changed) and any(k.startswith("aux_head.") for k in changed)
    assert a["eval_equal"] and b["eval_equal"]


@pytest.mark.slow
def test_ddp_without_find_unused_fails_on_this_genotype(ranks):
    assert all("finished reduction" in r["without_detection"] for r in ranks)


# ----------------------------------------------------------------------------- worker (one rank)


def _worker(out_dir):
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    res = {"rank": ctx.rank, "world": ctx.world_size, "local_rank": ctx.local_rank, "main": ctx.is_main,
           "device": str(ctx.device), "backend": dist.get_backend()}

    # validation shards, in a scrambled order: rows carry their index in the logits
    shard = torch.tensor(list(ShardSampler(N_EVAL, ctx.rank, ctx.world_size)))
    res["shard_len"] = len(shard)
    shard = shard.flip(0)
    logits = shard.float()[:, None] * torch.tensor([1.0, -1.0, 2.0])
    res["gathered"] = gather_predictions(logits, shard % 3, shard, ctx)
    dup = torch.cat([shard, torch.tensor([0])]) if ctx.rank == 1 else shard
    dup_logits = dup.float()[:, None].repeat(1, 3) + (100.0 if ctx.rank == 1 else 0.0)
    res["gathered_dup"] = gather_predictions(dup_logits, dup % 3, dup, ctx)

    res["broadcast"] = ctx.broadcast({"run_dir": f"runs/eval/from-rank-{ctx.rank}"})
    res["mean"] = ctx.mean(ctx.rank + 1)

    # DDP: different init per rank (DDP must broadcast rank 0's), aux head and drop path on, 2 steps
    model = tiny_net(seed=10 + ctx.rank, drop_path_prob=0.2).to(memory_format=torch.channels_last)
    unused = unused_parameters(model, torch.randn(2, 3, 32, 32))
    res["unused"] = unused
    ddp = wrap_ddp(model, ctx, find_unused_parameters=bool(unused))
    res["init"] = {k: v.clone() for k, v in unwrap_ddp(ddp).state_dict().items()}
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    torch.manual_seed(rank_seed(100, ctx))  # each rank its own images and drop-path masks
    res["losses"] = []
    for _ in range(2):  # DDP checks the previous step's reduction at the start of the next one
        x, y = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.randint(3, (4,))
        ddp.train()
        logits, aux = ddp(x)
        loss = criterion(logits, y) + 0.4 * criterion(aux, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(ddp.parameters(), 5.0)
        opt.step()
        res["losses"].append(loss.item())
    sync_buffers(ddp, ctx)
    res["state"] = {k: v.clone().contiguous() for k, v in unwrap_ddp(ddp).state_dict().items()}
    # every rank now evaluates the same model: the same image gives the same logits on both
    unwrap_ddp(ddp).eval()
    with torch.no_grad():
        out = unwrap_ddp(ddp)(torch.ones(1, 3, 32, 32))[0]
    everyone = [torch.zeros_like(out) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, out)
    res["eval_equal"] = all(torch.equal(everyone[0], o) for o in everyone)

    # the same genotype without find_unused_parameters: the second step refuses (last: it leaves DDP unusable)
    bare = wrap_ddp(tiny_net(seed=1), ctx, find_unused_parameters=False)
    res["without_detection"] = ""
    try:
        for _ in range(2):
            sum(o.sum() for o in bare(torch.randn(4, 3, 32, 32))).backward()  # aux head used: only the dead node
    except RuntimeError as exc:
        res["without_detection"] = str(exc)
    torch.save(res, Path(out_dir) / f"rank{ctx.rank}.pt")
    ctx.cleanup()


if __name__ == "__main__":
    _worker(sys.argv[1])
