"""search/benchmark_workers.py on a tiny network: a WORKERS=1 row and a WORKERS=2 row through search.py, and a ratio."""
import json
import os
from pathlib import Path

import pytest

import benchmark_workers
from common.config import ConfigError
from common.data.images import cache_path_for
from common.runs import read_jsonl

TINY = ["--DEVICE=cpu", "--PRESET=cpu", "--N_TRIALS=2", "--EPOCHS=1", "--INIT_CHANNELS=4", "--LAYERS=3",
        "--BATCH_SIZE=8", "--IMAGE_SIZE=16", "--N_IMAGES=24", "--BUDGET_NETWORK=(8,3,32,4)", "--PER_DEVICE=(1,2)",
        "--CORES=1"]  # one thread per worker in both rows: a second one only waits for a core on a busy machine


@pytest.mark.slow
def test_one_worker_against_two_prints_both_rows_and_the_ratio(tmp_path, capsys):
    result = benchmark_workers.main([*TINY, f"--KEEP_DIR={tmp_path}"])
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(result))  # the last line is the result, for programs

    one, two = result["rows"]
    assert (one["workers"], two["workers"]) == (1, 2) and one["threads"] == two["threads"] == 1
    assert one["ok"] == two["ok"] == 2 and one["failed"] == two["failed"] == 0 and not one["cut"] and not two["cut"]
    for row in (one, two):
        # wall_s is printed to 0.1 s: trials/h must lie between what the rounded wall's ends give
        low, high = 2 * 3600 / (row["wall_s"] + 0.05), 2 * 3600 / max(row["wall_s"] - 0.05, 1e-9)
        assert 0.99 * low - 0.1 <= row["trials_per_hour"] <= 1.01 * high + 0.1
        assert 0 < row["busy"] <= 1 and row["mean_trial_s"] > 0
    assert one["ratio"] == 1.0 and abs(two["ratio"] - two["trials_per_hour"] / one["trials_per_hour"]) < 0.01
    assert result["same_candidates"]  # random search gave both rows the same two genotypes
    assert result["device"] == "cpu" and result["cores"] == 1 and result["cpu"]
    assert [(run["workers"], run["round"]) for run in result["runs"]] == [(1, 1), (2, 1)]

    # the table: a header, a row per setting with its ratio, and the machine line with the load average
    table = out[out.index(next(line for line in out if line.lstrip().startswith("workers"))):]
    lines = [line.split() for line in table[2:4]]
    assert [(cells[0], cells[2], cells[3]) for cells in lines] == [("1", "1", "2"), ("2", "1", "2")]
    assert [cells[8] for cells in lines] == ["1.00", f"{two['ratio']:.2f}"]  # the ratio column
    assert any(line.startswith("machine:") and "load average" in line for line in out)

    # each row really ran search.py (its run folder, its log), in a process of its own, and the synthetic images' cache
    # was removed afterwards
    for workers in (1, 2):
        trials = [json.loads(line) for line in (tmp_path / f"workers_{workers}" / "trials.jsonl").read_text().splitlines()]
        assert sorted(t["trial"] for t in trials) == [1, 2]
        assert all(t["worker"]["pid"] != os.getpid() for t in trials)  # no trial ran in the benchmark's process
        assert "config (" in (tmp_path / f"workers_{workers}.log").read_text()  # search.py's output went to its log
    assert not cache_path_for(tmp_path / "images", 16).exists()


def test_rows_add_up_their_rounds():
    runs = [dict(workers=2, per_device=2, threads=1, round=r, ok=ok, failed=0, wall_s=wall, trial_s=trial_s,
                 trials_run=ok, load=load, cut=cut)
            for r, ok, wall, trial_s, load, cut in ((1, 4, 40.0, 60.0, 2.0, None), (2, 2, 20.0, 30.0, 4.0, "stopped"))]
    row = benchmark_workers.combine(runs)
    assert (row["ok"], row["wall_s"], row["rounds"]) == (6, 60.0, 2)
    assert row["trials_per_hour"] == 360.0 and row["mean_trial_s"] == 15.0  # 6 trials in 60 s; 90 s over 6 trials
    assert row["busy"] == 0.75 and row["load"] == 3.0 and row["cut"] == "stopped"  # 90 s / (60 s x 2 workers)
    # a trial's GPU memory comes from its record (written on CUDA only)
    assert benchmark_workers.peak_alloc_mb([{"peak_gpu_mem_mb": 10.0}, {}, {"peak_gpu_mem_mb": 12.04}]) == 12.0
    assert benchmark_workers.peak_alloc_mb([{}]) is None


@pytest.mark.slow
def test_a_row_past_its_time_limit_is_stopped_with_its_processes_and_marked(tmp_path, capsys):
    result = benchmark_workers.main([*TINY, "--PER_DEVICE=(1,)", "--ROW_LIMIT_S=0.5", f"--KEEP_DIR={tmp_path}"])
    row, run_dir = result["rows"][0], tmp_path / "workers_1"
    assert row["cut"] == "stopped after 0.5 s"
    trials = read_jsonl(run_dir / "trials.jsonl") if (run_dir / "trials.jsonl").exists() else []
    assert row["ok"] == sum(t["status"] == "ok" for t in trials)  # rated on the trials its folder holds
    assert "stopped at ROW_LIMIT_S=0.5 s" in capsys.readouterr().out
    if Path("/proc").is_dir():  # nothing of the stopped search is left running
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_names(p, run_dir)]


def _cmdline_names(proc, folder):
    try:
        return str(folder).encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_settings_are_checked_before_anything_runs(tmp_path):
    (tmp_path / "old_run").mkdir()
    for bad in ("--PER_DEVICE=(1,1)", "--PER_DEVICE=(0,2)", "--ROUNDS=0", f"--KEEP_DIR={tmp_path}", "--AMP=fp16"):
        with pytest.raises(ConfigError):
            benchmark_workers.main([*TINY, bad])
