"""search.py with several trials in flight: local worker processes and Ray, a killed driver, a killed worker."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.data.images import cache_path_for
from conftest import ROOT, write_images
from test_search import TINY, _trials

pytestmark = pytest.mark.slow  # end to end: search.py processes with worker processes or Ray


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(data, out, *args):
    return [sys.executable, "search.py", *TINY, f"--DATA_DIR={data}", f"--OUT_DIR={out}", "--N_TRIALS=4", *args]


@pytest.fixture
def data(tmp_path):
    folder = write_images(tmp_path / "images")
    yield folder
    cache_path_for(folder, 16).unlink(missing_ok=True)  # the subprocesses cache under REPO_ROOT/data/cache


def _run(cmd, timeout=300):
    proc = subprocess.run(cmd, cwd=ROOT / "search", env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _wait_for(check, proc, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the search ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1] if path.exists() else []


def _pending(run):
    try:
        return json.loads((run / "pending.json").read_text())
    except (OSError, ValueError):
        return {}


def _kill_when_in_flight(cmd, run, recorded):
    """Start search.py (cmd) and kill -9 it once `recorded` trials are in trials.jsonl and two more are in flight;
    returns the finished records' lines and pending.json's trials at that moment, and the killed process."""
    proc = subprocess.Popen(cmd, cwd=ROOT / "search", env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_lines(run / "trials.jsonl")) >= recorded and len(_pending(run)) == 2, proc,
                  "2 trials in flight")
        before, in_flight = _lines(run / "trials.jsonl"), _pending(run)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return before, in_flight, proc


def _check_finished_run(run, n=4):
    trials = _trials(run)
    ok = [t for t in trials if t["status"] == "ok"]
    assert len(ok) == n and len({t["trial"] for t in trials}) == len(trials)  # no trial number twice
    for name in ("config.json", "best_genotype.json", "search_curve.png", "normal_cell.gv", "finished.json"):
        assert (run / name).exists(), name
    assert not (run / "pending.json").exists()
    return trials


def test_two_local_workers_run_four_trials(data, tmp_path):
    run = tmp_path / "run"
    out = _run(_cmd(data, run, "--WORKERS=2")).stdout
    trials = _check_finished_run(run)
    assert "2 at a time (local)" in out
    assert {t["worker"]["device"] for t in trials} == {"cpu"}
    # worker processes ran them (which one got how many depends on start-up times)
    assert {t["worker"]["worker"] for t in trials} <= {0, 1} and len({t["worker"]["pid"] for t in trials}) <= 2
    assert all(t["worker"]["node"] and t["worker"]["attempts"] == 1 for t in trials)


def test_ray_executor_runs_four_trials(data, tmp_path):
    pytest.importorskip("ray")
    run = tmp_path / "run"
    _run(_cmd(data, run, "--WORKERS=2", "--EXECUTOR=ray"), timeout=600)
    trials = _check_finished_run(run)
    assert all(t["worker"]["pid"] != os.getpid() for t in trials)


def test_killed_driver_resumes_and_reruns_only_the_unfinished(data, tmp_path):
    run = tmp_path / "run"
    cmd = _cmd(data, run, "--WORKERS=2", "--EPOCHS=2")
    before, in_flight, proc = _kill_when_in_flight(cmd, run, recorded=1)
    assert proc.returncode == -signal.SIGKILL and not (run / "finished.json").exists()

    _run(cmd)  # the same command again
    trials = _check_finished_run(run)
    assert _lines(run / "trials.jsonl")[: len(before)] == before  # finished trials kept as they were
    rerun = {str(t["trial"]): t["sample"] for t in trials if str(t["trial"]) in in_flight}
    assert rerun == {k: v["sample"] for k, v in in_flight.items()}  # rerun with their own numbers and samples


def _workers_of(pid):
    """The spawn worker processes whose parent is `pid` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_killed_workers_have_their_trials_rerun(data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(data, run, "--WORKERS=2", "--EPOCHS=3"), cwd=ROOT / "search", env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # once a trial is done, the workers are busy with the next ones: kill them (both, in case one was just
        # between trials, whose death costs no trial)
        _wait_for(lambda: len(_lines(run / "trials.jsonl")) >= 1 and len(_pending(run)) == 2, proc, "a busy worker")
        for pid in _workers_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "died during trial" in out and "resubmitting" in out
    trials = _check_finished_run(run)
    assert [t["worker"]["attempts"] for t in trials].count(2) >= 1 and {t["status"] for t in trials} == {"ok"}


# every process of the search (driver and spawned workers) imports this at start-up (PYTHONPATH): the first
# candidate trained anywhere raises KeyError, as a bug in one candidate's op would
KEYERROR_ONCE = """
import os
import common.search.trial as st

_real = st.run_trial


def _run_trial(*args, **kwargs):
    try:
        os.close(os.open({marker!r}, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return _real(*args, **kwargs)
    raise KeyError("sep_conv_9x9")


st.run_trial = _run_trial
"""


def test_a_candidate_raising_keyerror_is_a_failed_trial_in_a_worker_too(data, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KEYERROR_ONCE.format(marker=str(tmp_path / "raised")))
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}
    run = tmp_path / "run"
    cmd = [sys.executable, "search.py", *TINY, f"--DATA_DIR={data}", f"--OUT_DIR={run}", "--N_TRIALS=2", "--WORKERS=2"]
    proc = subprocess.run(cmd, cwd=ROOT / "search", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "raised").exists()
    trials = _trials(run)
    failed = [t for t in trials if t["status"] == "fail"]
    assert len(failed) == 1 and sum(t["status"] == "ok" for t in trials) == 2  # the search went on
    assert failed[0]["reason"] == "KeyError: 'sep_conv_9x9'" and failed[0]["loss"] is None and "genotype" in failed[0]
    assert failed[0]["worker"]["worker"] in (0, 1) and failed[0]["worker"]["attempts"] == 1  # ran in a worker, once
    assert (run / "finished.json").exists()
    # the step memory was measured in a worker, before any trial
    assert "step memory: about" in proc.stdout and "measured in worker" in proc.stdout
