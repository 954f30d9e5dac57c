"""eval/train_isic.py under torchrun (2 gloo processes on the CPU): every image scored once, rank 0 alone writes, a
killed job resumes to the uninterrupted result; the per-rank loaders and the refusals before the process group."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train_isic
from common.arch.genotypes import from_dict
from common.device import runtime
from common.labeled.data import load_data, make_loaders
from common.labeled.distributed import DistContext, ShardSampler
from common.labeled.model import build_model
from common.labeled.torchrun import on_main
from conftest import ROOT

WORLD = 2
EPOCHS = 6  # short epochs (about 0.3 s here): the kill lands within the first few, the resumed run has some left
ARGS = ["--DEVICE=cpu", "--IMAGE_SIZE=32", "--INIT_CHANNELS=8", "--LAYERS=3", f"--EPOCHS={EPOCHS}", "--BATCH_SIZE=8",
        "--NUM_WORKERS=0", "--N_CAM=1", "--LATENCY_RUNS=3", "--VAL_FRACTION=0.25", "--RESIZED_CACHE=off", "--LR=0.05",
        "--DROP_PATH_PROB=0.2", "--GENOTYPE=CNAS_ISIC_s5"]  # s5: a node feeds nothing, so DDP must find unused params
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_S = 300  # one torchrun job, generous for a busy 2-core machine


@pytest.fixture(scope="module")
def script():
    return train_isic


def torchrun_command(isic, out):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
            str(ROOT / "eval" / "train_isic.py"), f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *ARGS]


def torchrun_env():
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    return {**env, "OMP_NUM_THREADS": "1"}


def torchrun(isic, out):
    """The job to its end; returns its output (both ranks, stdout and stderr)."""
    t0 = time.time()
    proc = subprocess.run(torchrun_command(isic, out), cwd=ROOT, env=torchrun_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    print(f"torchrun job: {time.time() - t0:.1f} s")
    return log


def descendants(pid):
    """Every process below pid (torchrun starts its workers in sessions of their own: killing its group misses them)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def killed_after_first_checkpoint(isic, out, log_path):
    """Start the job, SIGKILL it (launcher and workers) as soon as a ckpt.pt is on disk; returns that ckpt's epoch."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(torchrun_command(isic, out), cwd=ROOT, env=torchrun_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + TIMEOUT_S
        while not (out / "ckpt.pt").exists():
            assert proc.poll() is None, log_path.read_text()
            assert time.time() < deadline, "no ckpt.pt in time"
            time.sleep(0.02)
        for pid in [*descendants(proc.pid), proc.pid]:  # the workers first: they would outlive the launcher
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)["epoch"]


@pytest.fixture(scope="module")
def uninterrupted(isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, torchrun(isic, out)


@pytest.fixture(scope="module")
def resumed(isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_killed") / "run"
    killed_at = killed_after_first_checkpoint(isic, out, out.parent / "killed.log")
    return out, killed_at, (out.parent / "killed.log").read_text(), torchrun(isic, out)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def history(run):
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def epoch_lines(log, epoch):
    return sum(line.startswith(f"epoch {epoch}/{EPOCHS} |") for line in log.splitlines())


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo torchrun job on Linux")
def test_ddp_run_scores_every_image_once_and_rank_0_alone_writes(uninterrupted):
    run, log = uninterrupted
    assert [p.name for p in run.parent.iterdir()] == ["run"]  # one run folder: rank 1 made none of its own
    assert "torchrun: 2 processes" in log and "4 images per process per step" in log
    assert [epoch_lines(log, e) for e in range(1, EPOCHS + 1)] == [1] * EPOCHS  # printed by rank 0 only
    assert log.count("results: the model of epoch") == 1
    assert [h["epoch"] for h in history(run)] == list(range(1, EPOCHS + 1))

    metrics = json.loads((run / "metrics.json").read_text())
    split = read_csv(run / "split.csv")[1:]
    ids = {s: sorted(r[0] for r in split if r[1] == s) for s in ("val", "test")}
    # every validation image exactly once (the shards were 5 + 4 images, no padded repeats), in every epoch's metrics
    assert metrics["val_selected"]["n"] == metrics["val_last"]["n"] == len(ids["val"]) == metrics["dataset"]["n_val"] == 9
    assert metrics["test"]["n"] == metrics["n"] == len(ids["test"])
    for name in ("val", "test"):
        assert sorted(r[0] for r in read_csv(run / f"predictions_{name}.csv")[1:]) == ids[name], name
    best = next(h for h in history(run) if h["epoch"] == metrics["best_epoch"])
    assert metrics["val_selected"]["balanced_accuracy"] == pytest.approx(best["val_balanced_accuracy"])
    assert json.loads((run / "finished.json").read_text())["processes"] == WORLD

    # checkpoints hold the bare model's weights: they load strictly, without DDP's 'module.' prefix
    ckpt = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    model = build_model(from_dict(ckpt["genotype"]), len(ckpt["classes"]), ckpt["config"])
    model.load_state_dict(ckpt["model"])
    assert (run / "model_card.json").is_file() and len(list((run / "cam").glob("*.png"))) == 1


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo torchrun job on Linux, /proc")
def test_killed_ddp_job_resumes_to_the_uninterrupted_result(uninterrupted, resumed):
    full, _ = uninterrupted
    run, killed_at, killed_log, log = resumed
    assert 1 <= killed_at < EPOCHS, killed_log
    assert f"resumed from {run / 'ckpt.pt'} after epoch {killed_at}" in log
    assert [epoch_lines(log, e) for e in range(1, EPOCHS + 1)] == [0] * killed_at + [1] * (EPOCHS - killed_at)
    assert [h["epoch"] for h in history(run)] == list(range(1, EPOCHS + 1))  # each epoch once

    # the same batches, crops, drop-path masks and averaged gradients as the job that was never killed
    strip = lambda rows: [{k: v for k, v in h.items() if k != "seconds"} for h in rows]  # noqa: E731
    assert strip(history(run)) == strip(history(full))
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, full))
    for key in ("best_epoch", "split_sha1", "test", "val_selected", "val_last"):
        assert a[key] == b[key], key
    for name in ("predictions_val.csv", "predictions_test.csv"):
        assert (run / name).read_text() == (full / name).read_text(), name


# ----------------------------------------------------------------------------- in process


def rank_ctx(rank):
    return DistContext(rank=rank, world_size=WORLD)  # no process group: make_loaders runs no collective


@pytest.mark.parametrize("balance", ["loss", "both"])
def test_loaders_give_each_rank_its_share(script, isic, tmp_path, balance):
    cfg, _ = script.resolve_config([f"--DATA_DIR={isic}", *ARGS, f"--CLASS_BALANCE={balance}"])
    data = load_data(cfg)
    splits = {s: getattr(data, s) for s in ("train", "val", "test")}
    rt = runtime("cpu", "off", "off")
    made = [make_loaders(cfg, data, splits, tmp_path, rt, rank_ctx(r)) for r in range(WORLD)]
    trains = [list(loaders.sampler) for loaders in made]
    n_train = len(splits["train"])
    for loaders in made:
        assert loaders.train.batch_size == loaders.val.batch_size == 4  # BATCH_SIZE 8 over 2 processes
        assert len(loaders.train) == len(loaders.sampler) // 4  # as many steps on each rank (drop_last)
        assert isinstance(loaders.val.sampler, ShardSampler)
        assert isinstance(loaders.test.sampler, torch.utils.data.SequentialSampler)  # read whole by rank 0, at the end
    assert len(trains[0]) == len(trains[1]) == -(-n_train // WORLD)
    if balance == "loss":  # a shuffled permutation split in two (one image repeated to even them out)
        assert set(trains[0] + trains[1]) == set(range(n_train))
    else:  # one weighted draw with replacement per epoch, dealt out
        assert trains[0] != trains[1] and all(0 <= i < n_train for i in trains[0] + trains[1])
    val = [list(loaders.val.sampler) for loaders in made]
    assert sorted(val[0] + val[1]) == list(range(len(splits["val"])))  # each image once over the ranks
    whole = made[0].for_results(rank_ctx(0)).val
    assert list(whole.sampler) == list(range(len(splits["val"]))) and whole.batch_size == 4


def _rank_error(script, capsys, monkeypatch, rank, args):
    monkeypatch.setenv("WORLD_SIZE", str(WORLD))
    monkeypatch.setenv("RANK", str(rank))
    with pytest.raises(SystemExit) as exc:
        script.cli(args)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip()


def test_torchrun_refusals_are_one_line_from_rank_0(script, isic, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *ARGS, "--BATCH_SIZE=7"]
    err = _rank_error(script, capsys, monkeypatch, 0, args)
    assert err == "error: --BATCH_SIZE=7 is the global batch and must divide among 2 processes; use 6 or 8"
    assert _rank_error(script, capsys, monkeypatch, 1, args) == ""  # the same error, not said twice
    err = _rank_error(script, capsys, monkeypatch, 0, [f"--PREDICT_DIR={tmp_path}", f"--OUT_DIR={out}"])
    assert err.startswith("error: --PREDICT_DIR: predicting a folder is its own script now") and len(err.splitlines()) == 1
    assert not out.exists()  # refused before any folder


class OtherRank:
    """Rank 1 of a 2-process job, whose broadcast hands over what rank 0 sent."""

    is_main, distributed = False, True

    def __init__(self, sent):
        self.sent = sent

    def broadcast(self, obj):
        return self.sent


def test_on_main_hands_rank_0s_result_or_its_failure_to_the_others():
    calls = []

    def work(x):
        calls.append(x)
        return x * 2

    assert on_main(OtherRank(("run folder", False)), work, 1) == "run folder" and calls == []  # rank 0's
    assert on_main(OtherRank((None, False)), work, 3, share=False) == 6 and calls == [3]  # after rank 0
    with pytest.raises(SystemExit) as exc:  # rank 0 failed (and says why): no second attempt, no second message
        on_main(OtherRank((None, True)), work, 5, share=False)
    assert exc.value.code == 2 and calls == [3]
