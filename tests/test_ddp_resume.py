"""train_isic.py's training under torchrun decides together: rank 0's ckpt.pt is what every rank resumes from (even when another
rank sees a different file or none), and a batch that cannot fit on one rank stops all of them (2 gloo processes)."""
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # end to end: two gloo ranks

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
# the epochs of the ckpt.pt each rank finds in its own run folder, per scenario (None: no ckpt.pt there)
SCENARIOS = {"rank 1 behind": (3, 1), "rank 1 has none": (2, None), "only rank 1 has one": (None, 2)}
NET = {"ARCH": None, "INIT_CHANNELS": 8, "LAYERS": 3, "AUXILIARY_WEIGHT": 0.4}
OPT = {"LR": 0.05, "MOMENTUM": 0.9, "WEIGHT_DECAY": 3e-5, "NESTEROV": False, "EPOCHS": 5}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run _worker on 2 processes with torchrun's environment set by hand; returns each rank's results."""
    from conftest import run_ranks  # only under pytest: the ranks import this file as a script

    out = tmp_path_factory.mktemp("ddp_resume")
    return run_ranks([sys.executable, str(Path(__file__).resolve()), str(out)], out, WORLD)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_rank_resumes_from_rank_0s_checkpoint(ranks, scenario):
    rank0_epoch = SCENARIOS[scenario][0]
    a, b = ranks[0][scenario], ranks[1][scenario]
    assert a["epoch"] == b["epoch"] == (rank0_epoch or 0)  # rank 0 decided whether and from which epoch
    assert a["history"] == b["history"] and len(a["history"]) == (rank0_epoch or 0)
    assert a["lr"] == b["lr"] and a["momentum"] == b["momentum"]
    if rank0_epoch:  # the weights and optimizer state of rank 0's file, on both ranks
        assert a["matches_rank0_file"] and b["matches_rank0_file"] and a["momentum"]
    else:  # a fresh start on both, whatever rank 1 found (DDP then gives every rank rank 0's fresh weights)
        assert not a["momentum"] and not b["momentum"] and a["lr"] == OPT["LR"]


def test_a_batch_that_fits_on_no_rank_but_one_stops_all_with_one_line(ranks):
    a, b = ranks[0]["memory"], ranks[1]["memory"]
    assert a == "SystemExit 2"  # rank 0 could fit: it stops quietly
    assert b.startswith("ConfigError BATCH_SIZE=8: ") and "\n" not in b  # the rank that cannot fit says why


# ----------------------------------------------------------------------------- worker (one rank)


def _write_ckpt(run_dir, epoch, seed):
    """A ckpt.pt as train_isic writes it after `epoch` epochs, with weights of their own (seeded)."""
    from common.arch.genotypes import CNAS_ISIC_s4
    from common.device import runtime
    from common.labeled.checkpoints import CKPT, rng_state, save_checkpoint
    from common.labeled.epochs import make_optimisation
    from common.labeled.model import build_model

    torch.manual_seed(seed)
    model = build_model(CNAS_ISIC_s4, 3, NET)
    optim = make_optimisation(OPT, model, torch.nn.CrossEntropyLoss(), runtime("cpu", "off", "off"))
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    optim.optimizer.step()
    for _ in range(epoch):
        optim.scheduler.step()
    history = [{"epoch": e, "val_balanced_accuracy": 0.1 * e} for e in range(1, epoch + 1)]
    save_checkpoint(run_dir / CKPT, {"model": model.state_dict(), **optim.state_dict(), "rng": rng_state(),
                                     "epoch": epoch, "best": 0.1 * epoch, "best_epoch": epoch, "history": history})
    return model.state_dict()


def _worker(out_dir):
    import common.memory
    from common.arch.genotypes import CNAS_ISIC_s4
    from common.config import ConfigError
    from common.device import runtime
    from common.labeled.checkpoints import resume
    from common.labeled.distributed import DistContext, init_distributed
    from common.labeled.epochs import make_optimisation
    from common.labeled.model import build_model, check_training_memory

    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    rt = runtime("cpu", "off", "off")
    res = {}
    for i, (scenario, epochs) in enumerate(SCENARIOS.items()):
        run_dir = Path(out_dir) / f"s{i}-rank{ctx.rank}"  # each rank its own folder: no shared filesystem
        run_dir.mkdir()
        epoch = epochs[ctx.rank]
        written = _write_ckpt(run_dir, epoch, seed=100 * i + ctx.rank) if epoch is not None else None
        rank0_file = ctx.broadcast(written)  # what rank 0's file holds, for the check
        torch.manual_seed(7 + ctx.rank)  # each rank its own fresh init
        model = build_model(CNAS_ISIC_s4, 3, NET)
        optim = make_optimisation(OPT, model, torch.nn.CrossEntropyLoss(), rt)
        state = resume(run_dir, model, optim, ctx)
        momentum = [v["momentum_buffer"].sum().item() for v in optim.optimizer.state_dict()["state"].values()]
        res[scenario] = {
            "epoch": state["epoch"], "history": state["history"], "lr": optim.optimizer.param_groups[0]["lr"],
            "momentum": momentum,
            "matches_rank0_file": rank0_file is not None and all(
                torch.equal(v, rank0_file[k]) for k, v in model.state_dict().items())}
    # memory: rank 1's device is too small, rank 0's has room
    room = None if ctx.rank == 0 else 1_000_000
    common.memory.available_bytes = lambda device, cached=True: room
    cfg = {"IMAGE_SIZE": 32, "BATCH_SIZE": 8, "AUXILIARY_WEIGHT": 0.4, "ARCH": None}
    try:
        check_training_memory(cfg, build_model(CNAS_ISIC_s4, 3, NET), 3, rt, ctx)
        res["memory"] = "passed"
    except SystemExit as exc:
        res["memory"] = f"SystemExit {exc.code}"
    except ConfigError as exc:
        res["memory"] = f"ConfigError {exc}"
    assert isinstance(ctx, DistContext)
    torch.save(res, Path(out_dir) / f"rank{ctx.rank}.pt")
    ctx.cleanup()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(sys.argv[1])
