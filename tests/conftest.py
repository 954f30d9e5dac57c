"""Test setup: the repository root on sys.path, and a loader for the scripts in search/ and eval/."""
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_script(relpath):
    """Import a script (e.g. 'search/search.py') as a module without running its main()."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
