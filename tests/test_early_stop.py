"""Early stopping on hand-written loss curves: the median rule's thresholds and decisions, halving's rungs and cut-offs,
what a stopped trial costs and tells."""
import pytest

from common.search.early_stop import StopSettings, decide, epochs_trained, reference, rung_epochs
from common.search.tpe import told_loss


def _ok(curve):
    return {"status": "ok", "loss": curve[-1], "epoch_losses": curve}


def _stopped(curve):
    return {"status": "stopped", "loss": curve[-1], "epoch": len(curve), "epoch_losses": curve}


MEDIAN = StopSettings(rule="median", epochs=4, grace_epochs=1, min_reference=3)
FINISHED = [_ok([5.0, 4.0, 3.0, 2.0]), _ok([6.0, 5.0, 4.0, 3.0]), _stopped([4.5]), _ok([4.0, 3.0, 2.0, 1.0]),
            {"status": "fail", "loss": None}, {"status": "over_budget", "loss": None}]


def test_median_thresholds_are_the_median_running_means_of_the_trials_that_ran_to_the_end():
    ref = reference(FINISHED, MEDIAN)
    # running means after epoch 1: 5, 6, 4 -> 5; after 2: 4.5, 5.5, 3.5 -> 4.5; after 3: 4, 5, 3 -> 4; none at the end
    assert ref["thresholds"] == [5.0, 4.5, 4.0, None] and ref["counts"] == [3, 3, 3, 0]
    assert ref["records"] == len(FINISHED) and ref["rule"] == "median"


@pytest.mark.parametrize("curve, stops", [
    ([5.5], True),  # worse than the median 5 after epoch 1
    ([5.0], False),  # equal is not worse
    ([4.9, 4.6], True),  # after epoch 2 the best so far, 4.6, is above 4.5
    ([4.9, 4.4, 4.1], True),  # 4.1 > 4.0 after epoch 3
    ([4.9, 4.4, 3.9], False),
    ([4.4, 4.6, 4.2], True),  # the best so far counts: 4.2 > 4.0 (earlier epochs passed on their best, 4.4)
    ([4.0, 3.0, 2.0, 9.0], False),  # never at the last epoch: the trial is done
])
def test_median_rule_on_hand_written_curves(curve, stops):
    reason = decide(reference(FINISHED, MEDIAN), curve)
    assert bool(reason) == stops
    if stops:
        assert reason.startswith("median rule") and f"epoch {len(curve)}" in reason and "3 finished trials" in reason


def test_median_rule_waits_for_grace_epochs_and_enough_finished_trials():
    late = StopSettings(rule="median", epochs=4, grace_epochs=2, min_reference=3)
    assert reference(FINISHED, late)["thresholds"] == [None, 4.5, 4.0, None]
    assert decide(reference(FINISHED, late), [9.0]) is None  # inside the grace epochs
    few = reference(FINISHED[:3], MEDIAN)  # two trials ran to the end: fewer than min_reference
    assert few["thresholds"] == [None] * 4 and decide(few, [99.0]) is None
    assert reference(FINISHED, StopSettings(rule="none", epochs=4)) is None and decide(None, [99.0]) is None


def test_halving_rungs_grow_by_the_reduction_factor():
    assert rung_epochs(10, 1, 3) == [1, 3, 9]
    assert rung_epochs(9, 1, 3) == [1, 3]  # the last epoch is no rung
    assert rung_epochs(10, 2, 3) == [2, 6]
    assert rung_epochs(16, 1, 2) == [1, 2, 4, 8]
    assert rung_epochs(2, 1, 3) == [1] and rung_epochs(2, 2, 3) == []


def test_halving_keeps_the_best_share_at_each_rung():
    s = StopSettings(rule="halving", epochs=9, grace_epochs=1, reduction_factor=3, min_reference=3)
    records = [_ok([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]), _ok([2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0]),
               _stopped([3.0, 2.8, 2.6]), _stopped([4.0]), _stopped([5.0]), _stopped([6.0, 5.0, 5.5])]
    ref = reference(records, s)
    # rung 1: all six reached it; the 1/3 quantile of 1..6 is 2 + (5/3 - 1) = 2.667. Rung 3: four reached it
    # (0.8, 1.6, 2.6, 5.5); the 1/3 quantile at position 1 = 1.6. No decision between rungs or at the end.
    assert ref["thresholds"][0] == pytest.approx(2 + 2 / 3) and ref["thresholds"][2] == pytest.approx(1.6)
    assert [t is None for t in ref["thresholds"]] == [False, True, False] + [True] * 6
    assert ref["counts"][0] == 6 and ref["counts"][2] == 4
    assert decide(ref, [2.6]) is None  # in the best third at rung 1
    assert "halving" in decide(ref, [2.7]) and "best 1/3 of 6" in decide(ref, [2.7])
    assert decide(ref, [2.6, 9.0]) is None  # epoch 2 is no rung
    assert decide(ref, [2.6, 2.0, 1.6]) is None and decide(ref, [2.6, 2.0, 1.7]) is not None
    assert decide(reference(records[:2], s), [99.0]) is None  # two results at the rung: fewer than min_reference


def test_a_stopped_trial_costs_its_epochs_and_tells_its_last_loss():
    cfg = {"EPOCHS": 4, "REPEATS": 1, "SCORE": "nce"}
    assert [epochs_trained(r, cfg) for r in FINISHED] == [4, 4, 1, 4, 4, 0]
    assert epochs_trained(_ok([1.0]), {**cfg, "SCORE": "synflow"}) == 0
    assert [told_loss(r) for r in FINISHED[:3]] == [2.0, 3.0, 4.5]  # ok: its loss; stopped: the loss it stopped at
    assert told_loss(FINISHED[4]) is None and told_loss(FINISHED[5]) == 1e9
