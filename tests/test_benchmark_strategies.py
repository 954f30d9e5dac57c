"""benchmark_strategies.py on a tiny preset: killed in the middle of a search (which dies with it), resumed, and its
table, CSV and figure agree with the searches' own trials."""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from test_search_parallel import _env, _lines, _wait_for

from common.data.images import cache_path_for
from common.runs import read_jsonl
from conftest import ROOT, write_images

pytestmark = pytest.mark.slow  # end to end: a benchmark_strategies.py process and the search.py processes it starts

SEARCH_ARGS = ("--EPOCHS=2", "--INIT_CHANNELS=4", "--LAYERS=3", "--BATCH_SIZE=8", "--IMAGE_SIZE=16",
               "--DECODE_WORKERS=1", "--BUDGET_NETWORK=(8,3,32,4)", "--TPE_STARTUP=1", "--MIN_REFERENCE=1")


def _cmd(data, out):
    return [sys.executable, "benchmark_strategies.py", f"--DATA_DIR={data}", f"--OUT_DIR={out}", "--SEARCH_PRESET=paper",
            f"--SEARCH_ARGS={SEARCH_ARGS!r}", "--STRATEGIES=('random', 'tpe+median')", "--SEEDS=(4,)",
            "--EPOCH_BUDGET=5", "--THREADS=1", "--DEVICE=cpu"]


def _processes_writing(folder):
    """Live processes whose command line names `folder` (a search left running would)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_a_killed_benchmark_resumes_and_reports_every_search(tmp_path):
    data = write_images(tmp_path / "images")
    out = tmp_path / "bench"
    second = (out / "searches" / "tpe-median-s4").resolve()
    try:
        proc = subprocess.Popen(_cmd(data, out), cwd=ROOT / "search", env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:  # kill -9 once the second search has finished a trial
            _wait_for(lambda: len(_lines(second / "trials.jsonl")) >= 1, proc, "a trial of the second search", 300)
            before = _lines(second / "trials.jsonl")
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 20
        while _processes_writing(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_writing(second)  # the search died with the benchmark: no orphan writes its folder

        done = subprocess.run(_cmd(data, out), cwd=ROOT / "search", env=_env(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        cache_path_for(data, 16).unlink(missing_ok=True)  # the searches cache under REPO_ROOT/data/cache

    assert _lines(second / "trials.jsonl")[: len(before)] == before  # the killed search was resumed, not redone
    with open(out / "strategies.csv", newline="") as f:
        rows = {r["strategy"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["random", "tpe+median"]
    for name, folder in (("random", "random-s4"), ("tpe+median", "tpe-median-s4")):
        trials = read_jsonl(out / "searches" / folder / "trials.jsonl")
        assert (out / "searches" / folder / "finished.json").exists()
        config = json.loads((out / "searches" / folder / "config.json").read_text())
        assert config["SEED"] == 4 and config["EPOCH_BUDGET"] == 5 and config["ALGO"] == name.split("+")[0]
        epochs = sum(t.get("epoch", 2) for t in trials if t["status"] in ("ok", "stopped"))
        assert epochs <= 5 and float(rows[name]["epochs"]) == epochs  # equal compute: never above the budget
        ok = [t["loss"] for t in trials if t["status"] == "ok"]
        assert float(rows[name]["best_nce"]) == round(min(ok), 4)  # the best trial that ran to the end
        assert float(rows[name]["trials_stopped"]) == sum(t["status"] == "stopped" for t in trials)
    assert rows["random"]["wall_partial"] == "False" and rows["tpe+median"]["wall_partial"] == "True"
    table = (out / "strategies.md").read_text()
    assert "| tpe+median | 1 |" in table and "†" in table and "machine:" in table
    with Image.open(out / "strategies.png") as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert (out / "finished.json").exists()
