"""The search's final round end to end on tiny folders: finalists re-measured with shared seeds, the tied set and the
chosen cell in best_genotype.json, pareto.csv against trials.jsonl, resume after a kill, FINAL_TOP=0 as before."""
import csv
import json
from pathlib import Path

import pytest

import search
from common.config import ConfigError
from common.search import final_round, pareto
from test_search import _search, _trials

FINAL = ["--N_TRIALS=4", "--FINAL_TOP=3", "--FINAL_REPEATS=2"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from conftest import write_images

    return write_images(tmp_path_factory.mktemp("data") / "images")


@pytest.fixture(scope="module")
def final_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("final") / "run"
    _, run_dir = _search(out, images, *FINAL)
    return run_dir


def _final(run_dir):
    return [json.loads(line) for line in (run_dir / "final.jsonl").read_text().splitlines()]


def test_the_finalists_are_the_best_distinct_cells_measured_with_the_same_further_seeds(final_run):
    trials, final = _trials(final_run), _final(final_run)
    finalists = final_round.pick_finalists(trials, 3)
    by_loss = sorted((t for t in trials if t["status"] == "ok"), key=lambda t: (t["loss"], t["trial"]))
    assert finalists[0]["trial"] == by_loss[0]["trial"]
    assert len({json.dumps(f["genotype"], sort_keys=True) for f in finalists}) == len(finalists)
    seeds = {r["seed"] for r in final}
    assert len(seeds) == 2 and 3 not in seeds  # FINAL_REPEATS further seeds, never the search's SEED (3)
    assert sorted((r["trial"], r["seed"]) for r in final) == sorted(
        (f["trial"], s) for f in finalists for s in seeds)  # every finalist on every seed, once
    assert {r["score"] for r in final} == {"nce"} and {r["epochs"] for r in final} == {1}


def test_best_genotype_json_carries_the_selection(final_run):
    best = json.loads((final_run / "best_genotype.json").read_text())
    sel = best["selection"]
    assert sel["select"] == "smallest" and "one-standard-error rule" in sel["tie_rule"]
    rows = {f["trial"]: f for f in sel["finalists"]}
    assert set(sel["tied"]) == {t for t, f in rows.items() if f["tied"]} and sel["best_final"] in sel["tied"]
    for f in rows.values():  # the rule, recomputed from the numbers it printed
        if f["complete"] and not f["best"]:
            assert f["tied"] == (f["diff"] <= f["diff_se"])
    chosen = rows[sel["chosen"]]
    assert chosen["tied"] and chosen["macs"] == min(rows[t]["macs"] for t in sel["tied"])
    assert best["trial"] == sel["chosen"] and best["genotype"] == next(
        t["genotype"] for t in _trials(final_run) if t["trial"] == sel["chosen"])
    assert sel["best_by_search"]["trial"] == min((t for t in _trials(final_run) if t["status"] == "ok"),
                                                  key=lambda t: (t["loss"], t["trial"]))["trial"]


def test_pareto_csv_is_the_non_dominated_set_of_trials_jsonl(final_run):
    """Recomputed here by brute force from trials.jsonl: a trial is on a front when no other finished trial is as
    good on both objectives and better on one."""
    ok = [t for t in _trials(final_run) if t["status"] == "ok"]
    with open(final_run / "pareto.csv", newline="") as f:
        rows = {int(r["trial"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(t["trial"] for t in ok)
    for size in pareto.SIZES:
        for t in ok:
            dominated = any(o["loss"] <= t["loss"] and o[size] <= t[size] and (o["loss"] < t["loss"] or o[size] < t[size])
                            for o in ok)
            assert rows[t["trial"]][f"front_{size}"] == str(int(not dominated))
    chosen = json.loads((final_run / "best_genotype.json").read_text())["selection"]["chosen"]
    assert [t for t, r in rows.items() if r["chosen"] == "1"] == [chosen]
    assert (final_run / "pareto.png").stat().st_size > 5000


def test_a_search_killed_in_its_final_round_resumes_without_redoing_a_measurement(images, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_append = final_round.append_jsonl
    calls = []

    def append_then_stop(path, record):
        real_append(path, record)
        if len(_final(out)) == 2:  # killed after two of the six measurements
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(final_round, "append_jsonl", append_then_stop)
        with pytest.raises(KeyboardInterrupt):
            _search(out, images, *FINAL)
    assert not (out / "finished.json").exists() and len(_final(out)) == 2

    real_run_task = search.run_task
    monkeypatch.setattr(search, "run_task", lambda task, ctx: calls.append(task) or real_run_task(task, ctx))
    _search(out, images, *FINAL)
    final = _final(out)
    assert len(final) == 6 and len({(r["trial"], r["seed"]) for r in final}) == 6
    assert [t for t in calls if "final" not in t] == []  # no trial ran again
    assert len(calls) == 4  # only the four measurements that were missing
    assert "2 measured before" in capsys.readouterr().out


def test_final_top_0_hands_over_the_lowest_loss_as_before(images, tmp_path):
    _, run_dir = _search(tmp_path / "run", images, "--N_TRIALS=4", "--FINAL_TOP=0")
    best = json.loads((run_dir / "best_genotype.json").read_text())
    winner = min((t for t in _trials(run_dir) if t["status"] == "ok"), key=lambda t: (t["loss"], t["trial"]))
    assert set(best) == {"genotype", "trial", "loss", "score", "params", "macs", "literal"}  # the old file
    assert best["genotype"] == winner["genotype"] and best["trial"] == winner["trial"]
    assert not (run_dir / "final.jsonl").exists()


def test_a_training_free_screen_then_nce_decides(images, tmp_path, capsys):
    """SCORE=synflow screens, FINAL_SCORE='auto' means nce for the final round; nce's step memory is probed first."""
    _, run_dir = _search(tmp_path / "run", images, "--SCORE=synflow", "--N_TRIALS=6", "--FINAL_TOP=2",
                         "--FINAL_REPEATS=2", "--SELECT=fastest")
    assert {t["score"] for t in _trials(run_dir)} == {"synflow"}
    final = _final(run_dir)
    assert {r["score"] for r in final} == {"nce"} and all(len(r["epoch_losses"]) == 1 for r in final)
    out = capsys.readouterr().out
    assert "step memory: about" in out and "final round: 2 finalists x 2 seeds of nce" in out
    sel = json.loads((run_dir / "best_genotype.json").read_text())["selection"]
    assert sel["select"] == "fastest" and sel["latency_method"].startswith("CPU, batch 1")
    assert all(f["latency_ms"] > 0 for f in sel["finalists"] if f["tied"])


@pytest.mark.parametrize("arg, named", [("--FINAL_REPEATS=1", "FINAL_REPEATS"), ("--SELECT=cheapest", "SELECT"),
                                        ("--FINAL_SCORE=accuracy", "FINAL_SCORE"), ("--FINAL_TOP=-1", "FINAL_TOP")])
def test_bad_final_round_settings_stop_before_a_run_folder(images, tmp_path, arg, named):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=f"^--{named}="):
        _search(out, images, arg)
    assert not Path(out).exists()
