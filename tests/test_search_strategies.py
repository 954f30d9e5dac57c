"""search.py with regularized evolution and early stopping, two trials in flight, killed and resumed: no trial lost or
repeated, and every proposal and every stop is what the finished records known at its ask imply."""
import json
import re
import signal
import sys

import pytest
from test_search_parallel import _kill_when_in_flight, _lines, _run

import search
from common.config import ConfigError
from common.data.images import cache_path_for
from common.search.early_stop import StopSettings, decide, epochs_trained, reference
from common.search.strategy import make_strategy
from conftest import write_images
from test_search import TINY, _trials


@pytest.fixture
def data(tmp_path):
    folder = write_images(tmp_path / "images")
    yield folder
    cache_path_for(folder, 16).unlink(missing_ok=True)  # the subprocesses cache under REPO_ROOT/data/cache


def _cmd(data, out, *args):
    return [sys.executable, "search.py", *TINY, f"--DATA_DIR={data}", f"--OUT_DIR={out}", "--N_TRIALS=6",
            "--EPOCHS=3", "--WORKERS=2", "--MIN_REFERENCE=1", *args]


def _replay(run):
    """Each record's sample and its stop (or not) recomputed from the records known when it was asked."""
    cfg = json.loads((run / "config.json").read_text())
    records = _trials(run)
    stop = StopSettings.from_config(cfg)
    for r in records:
        known = records[: r["rule_records"]]
        strategy = make_strategy(cfg)
        for k in known:
            strategy.tell(k)
        assert strategy.ask(r["trial"]) == r["sample"], f"trial {r['trial']} is not what its history proposes"
        ref = reference(known, stop)
        decisions = [decide(ref, r["epoch_losses"][:t]) for t in range(1, len(r["epoch_losses"]) + 1)]
        assert not any(decisions[:-1]) and bool(decisions[-1]) == (r["status"] == "stopped")
        assert len(r["epoch_losses"]) == (r["epoch"] if r["status"] == "stopped" else cfg["EPOCHS"])
    return records


@pytest.mark.slow
@pytest.mark.parametrize("algo, rule", [("evolution", "median"), ("tpe", "halving")])
def test_a_killed_search_with_early_stopping_resumes_without_losing_or_repeating_a_trial(data, tmp_path, algo, rule):
    run = tmp_path / "run"
    args = [f"--ALGO={algo}", f"--EARLY_STOP={rule}", "--SPACE=explicit", "--POPULATION=2", "--SAMPLE_SIZE=1",
            "--TPE_STARTUP=2", "--REDUCTION_FACTOR=2"]
    cmd = _cmd(data, run, *args)
    before, in_flight, proc = _kill_when_in_flight(cmd, run, recorded=2)
    assert proc.returncode == -signal.SIGKILL and not (run / "finished.json").exists()

    out = _run(cmd).stdout  # the same command again
    records = _replay(run)
    assert _lines(run / "trials.jsonl")[: len(before)] == before  # finished trials kept as they were
    numbers = [r["trial"] for r in records]
    assert sorted(numbers) == list(range(1, max(numbers) + 1))  # none lost, none twice
    assert sum(r["status"] in ("ok", "stopped") for r in records) == 6
    rerun = {str(r["trial"]): {"sample": r["sample"], "records": r["rule_records"]} for r in records
             if str(r["trial"]) in in_flight}
    assert rerun == in_flight  # rerun with their own numbers, samples and early-stopping reference
    cfg = json.loads((run / "config.json").read_text())
    best = json.loads((run / "best_genotype.json").read_text())
    ok = [r for r in records if r["status"] == "ok"]
    assert best["trial"] == min(ok, key=lambda r: r["loss"])["trial"]  # a trial that ran to the end
    finished = json.loads((run / "finished.json").read_text())
    assert finished["stopped_trials"] == sum(r["status"] == "stopped" for r in records)
    assert finished["epochs_trained"] == sum(epochs_trained(r, cfg) for r in records) <= 6 * 3
    assert f"early stopping: {rule}" in out and "resumed:" in out


@pytest.mark.parametrize("args, message", [
    (["--ALGO=evolution", "--POPULATION=3", "--SAMPLE_SIZE=4"], "--SAMPLE_SIZE=4: must be an integer >= 1 and <= 3"),
    (["--EARLY_STOP=median", "--REPEATS=2"], "needs SCORE='nce' and REPEATS=1"),
    (["--EARLY_STOP=halving", "--GRACE_EPOCHS=3"], "must be below EPOCHS=3"),
    (["--EPOCH_BUDGET=2"], "less than one trial"),
])
def test_settings_that_cannot_work_together_stop_before_a_run_folder(data, tmp_path, args, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        search.main(_cmd(data, tmp_path / "run", *args)[2:])
    assert not (tmp_path / "run").exists()
