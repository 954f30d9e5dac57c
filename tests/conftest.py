"""Test setup: the repository root on sys.path (pyproject's pythonpath adds search/ and eval/, so a test imports a
script as a module: `import train_isic`), and what several test files share: unlabeled search images, a tiny ISIC
2019 folder (the `isic` fixture), a labeled training killed after an epoch, gloo ranks."""
import contextlib
import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---- unlabeled images for the search ------------------------------------------------------------------------

def write_images(folder, n=24, seed=0):
    """n random-content 40x30 images, half PNG and half JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:02d}.{'png' if i % 2 else 'jpg'}")
    return folder


# ---- a tiny ISIC 2019 layout -------------------------------------------------------------------------------------

ISIC_CLASSES = ["MEL", "NV", "BCC", "UNK"]  # UNK as in ISIC 2019: a column that is never 1 in training
ISIC_COLOURS = {"MEL": (70, 40, 30), "NV": (170, 110, 80), "BCC": (210, 150, 160)}  # learnable in an epoch or two


def write_isic(root, n=36, seed=0, image_column="image"):
    """An ISIC 2019 layout: <root>/ISIC_2019_Training_Input/*.jpg (48x64, three colour-coded classes in turn) and the
    one-hot ground-truth CSV, whose path is returned."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ISIC_2019_Training_Input"
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        cls = list(ISIC_COLOURS)[i % len(ISIC_COLOURS)]
        pixels = np.clip(np.array(ISIC_COLOURS[cls]) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
        name = f"ISIC_{i:07d}"
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=90)
        rows.append([name] + ["1.0" if c == cls else "0.0" for c in ISIC_CLASSES])
    truth = Path(root) / "ISIC_2019_Training_GroundTruth.csv"
    with open(truth, "w", newline="") as f:
        csv.writer(f).writerows([[image_column, *ISIC_CLASSES], *rows])
    return truth


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    """A tiny ISIC 2019 folder per test module (a module may override it with its own size)."""
    root = tmp_path_factory.mktemp("isic")
    write_isic(root)
    return root


# ---- a labeled training killed after an epoch ----------------------------------------------------------------------


@contextlib.contextmanager
def killed_after_epoch(epoch=1):
    """Inside the block, a labeled training (train_isic, the proxy study's) stops with KeyboardInterrupt, as a kill
    would, right after epoch `epoch`'s ckpt.pt is on disk."""
    from common.labeled import checkpoints

    real_save = checkpoints.save_checkpoint

    def save_then_stop(path, obj):
        real_save(path, obj)
        if Path(path).name == checkpoints.CKPT and obj.get("epoch") == epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoints, "save_checkpoint", save_then_stop)
        yield


# ---- gloo ranks ----------------------------------------------------------------------------------------------------

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(command, out, world=2, timeout=240):
    """Run `command` (argv) as `world` gloo processes with torchrun's environment set by hand, in the repository
    root; each writes out/rank<r>.pt, returned in rank order. Fails with every rank's output if one fails."""
    import torch

    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world),
               LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    t0 = time.time()
    procs = [subprocess.Popen(command, cwd=ROOT, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    print(f"{world} gloo ranks: {time.time() - t0:.1f} s")
    return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Test tensors are tiny: a second thread only waits for a core on a busy 2-core machine (up to 100x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
