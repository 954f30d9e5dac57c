"""The final round's tie rule on hand-made numbers, SELECT's three rules, and the Pareto front against brute force."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from common.search import pareto, selection

SEEDS = (11, 12, 13)


def _finalist(trial, macs, params=1000, latency_ms=None):
    return {"trial": trial, "macs": macs, "params": params, "latency_ms": latency_ms}


def test_the_tie_rule_is_one_standard_error_of_the_paired_difference():
    """Best: trial 1. Trial 2 is worse by 0.01 on average, with paired differences spread wide (SE 0.0153): tied.
    Trial 3 is worse by 0.02 on every seed (SE 0): not tied, though its mean ± SE overlaps the best's."""
    losses = {1: dict(zip(SEEDS, (3.00, 3.10, 3.20))),
              2: dict(zip(SEEDS, (3.04, 3.08, 3.21))),  # d = +0.04, -0.02, +0.01
              3: dict(zip(SEEDS, (3.02, 3.12, 3.22)))}  # d = +0.02 each
    rows = selection.summarize([_finalist(1, 900), _finalist(2, 500), _finalist(3, 100)], losses)
    by = {r["trial"]: r for r in rows}
    assert by[1]["best"] and by[1]["tied"] and by[1]["diff"] == 0
    d2 = [0.04, -0.02, 0.01]
    assert by[2]["diff"] == pytest.approx(np.mean(d2))
    assert by[2]["diff_se"] == pytest.approx(np.std(d2, ddof=1) / math.sqrt(3))
    assert by[2]["tied"] and by[2]["diff"] <= by[2]["diff_se"]
    assert by[3]["diff"] == pytest.approx(0.02) and by[3]["diff_se"] == pytest.approx(0, abs=1e-12)
    assert not by[3]["tied"]
    # the unpaired view would have called trial 3 a tie: its mean ± SE overlaps the best's
    assert by[3]["mean"] - by[3]["se"] < by[1]["mean"] + by[1]["se"]
    # each finalist's own mean ± SE and its 95 % t-interval (t(0.975, 2) = 4.30 at n = 3)
    assert by[1]["mean"] == pytest.approx(3.1) and by[1]["se"] == pytest.approx(0.1 / math.sqrt(3))
    half = scipy_stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert by[1]["ci"] == pytest.approx([3.1 - half, 3.1 + half])


def test_a_difference_just_beyond_one_standard_error_is_not_a_tie():
    d = [0.05, 0.0, 0.1]  # mean 0.05, SE 0.0289: mean > SE
    losses = {1: dict(zip(SEEDS, (1.0, 1.0, 1.0))), 2: {s: 1.0 + x for s, x in zip(SEEDS, d)}}
    rows = selection.summarize([_finalist(1, 10), _finalist(2, 5)], losses)
    assert [r["tied"] for r in rows] == [True, False]


def test_a_finalist_missing_a_seed_is_reported_but_never_tied():
    losses = {1: dict(zip(SEEDS, (1.0, 1.1, 1.2))), 2: {11: 0.5, 12: 0.6}}  # seed 13 failed for trial 2
    rows = selection.summarize([_finalist(1, 10), _finalist(2, 5)], losses)
    assert rows[0]["best"] and rows[0]["tied"]
    assert not rows[1]["complete"] and not rows[1]["tied"] and rows[1]["n"] == 2 and rows[1]["diff"] is None
    assert selection.select(rows, "smallest")[0]["trial"] == 1


def test_select_smallest_fastest_and_best_pick_among_the_tied():
    losses = {1: dict(zip(SEEDS, (3.00, 3.10, 3.20))),   # best
              2: dict(zip(SEEDS, (3.04, 3.08, 3.21))),   # tied, fewest MACs among the tied
              3: dict(zip(SEEDS, (3.03, 3.09, 3.19))),   # tied (d = +.03, -.01, -.01), fastest
              4: dict(zip(SEEDS, (3.50, 3.60, 3.70)))}   # not tied: smallest and fastest of all, never chosen
    finalists = [_finalist(1, 900, latency_ms=9.0), _finalist(2, 300, latency_ms=5.0),
                 _finalist(3, 400, latency_ms=2.0), _finalist(4, 10, latency_ms=0.5)]
    rows = selection.summarize(finalists, losses)
    assert [r["trial"] for r in rows if r["tied"]] == [1, 2, 3]
    smallest, why = selection.select(rows, "smallest")
    assert smallest["trial"] == 2 and "fewest MACs of the 3 finalists tied with the best (trial 1)" in why
    assert selection.select(rows, "fastest")[0]["trial"] == 3
    assert selection.select(rows, "best")[0]["trial"] == 1
    with pytest.raises(ValueError, match="unknown SELECT"):
        selection.select(rows, "cheapest")


def test_equal_sizes_fall_back_to_params_then_the_mean():
    losses = {1: dict(zip(SEEDS, (1.0, 1.1, 1.2))), 2: dict(zip(SEEDS, (1.0, 1.1, 1.2)))}
    rows = selection.summarize([_finalist(1, 10, params=7), _finalist(2, 10, params=5)], losses)
    assert all(r["tied"] for r in rows)
    assert selection.select(rows, "smallest")[0]["trial"] == 2


# ----------------------------------------------------------------------------- Pareto front


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_agrees_with_the_definition(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(40, 2)).astype(float)  # many ties and duplicates
    mask = pareto.non_dominated(points)
    brute = [not any(_dominates(q, p) for q in points) for p in points]
    assert mask.tolist() == brute
    three = rng.normal(size=(30, 3))
    assert pareto.non_dominated(three).tolist() == [not any(_dominates(q, p) for q in three) for p in three]


def test_front_rows_leave_out_what_did_not_run_to_the_end_and_mark_the_final_round():
    records = [{"trial": 1, "status": "ok", "loss": 3.0, "macs": 100, "params": 10},
               {"trial": 2, "status": "ok", "loss": 2.0, "macs": 200, "params": 30},
               {"trial": 3, "status": "ok", "loss": 2.5, "macs": 300, "params": 5},  # dominated on MACs only
               {"trial": 4, "status": "stopped", "loss": 1.0, "macs": 50, "params": 1},
               {"trial": 5, "status": "fail", "loss": None, "macs": 50, "params": 1},
               {"trial": 6, "status": "over_budget", "loss": None, "macs": 9, "params": 1}]
    rows = pareto.front_rows(records, {"finalists": [1, 2], "tied": [1, 2], "chosen": 1})
    by = {r["trial"]: r for r in rows}
    assert sorted(by) == [1, 2, 3]
    assert [by[t]["front_macs"] for t in (1, 2, 3)] == [True, True, False]
    assert [by[t]["front_params"] for t in (1, 2, 3)] == [False, True, True]
    assert by[1]["chosen"] and by[2]["finalist"] and not by[3]["finalist"]
    for a, b in itertools.permutations(rows, 2):  # nothing on a front is dominated on that front's objectives
        if b["front_macs"]:
            assert not _dominates((a["loss"], a["macs"]), (b["loss"], b["macs"]))
