"""Early stopping of poor nce trials: the median stopping rule and asynchronous successive halving.

EARLY_STOP='median' (Golovin et al., Google Vizier, KDD 2017): after epoch t, a trial stops when its best loss so far
is worse (higher) than the median, over the finished trials that ran to the end, of their running mean losses over
epochs 1..t. (At the first epoch compared the running mean is that epoch's loss, so the rule is then "worse than the
median of the finished trials' losses at that epoch".)

EARLY_STOP='halving' (asynchronous successive halving, Li et al., MLSys 2020): rungs at GRACE_EPOCHS,
GRACE_EPOCHS * REDUCTION_FACTOR, ... epochs (below EPOCHS). At a rung a trial goes on only when its loss at that epoch
is within the best 1/REDUCTION_FACTOR of the losses every finished trial had there (stopped ones included: they
reached the rung); otherwise it stops.

Neither rule decides before GRACE_EPOCHS epochs, at the last epoch (the trial is done anyway), or against fewer than
MIN_REFERENCE finished trials at that epoch (the first trials always run to the end).

Where and on what the decision is made. The decision is taken inside the trial, after each epoch, inline or in a
worker process, so it cannot ask the driver what has finished meanwhile. It is a pure function of two things:
  * the reference: thresholds per epoch computed by the driver, when the trial is asked for, from the finished
    records known then (the first `records` lines of trials.jsonl, in completion order) and sent with the task;
  * the trial's own loss curve.
A trial therefore does not see the trials that finish while it runs (a live scheduler such as Ray Tune's would).
What that buys: the same trial, rerun after a kill (its `records` count is kept in pending.json and in its record as
`rule_records`), is compared with exactly the same thresholds, so a resumed search stops what an uninterrupted one
would; inline and worker trials behave alike; and completion order of other trials does not change a decision.
"""
from dataclasses import dataclass

import numpy as np

RULES = ("none", "median", "halving")


@dataclass(frozen=True, kw_only=True)
class StopSettings:
    """An early-stopping rule's settings (search.py's constants of the same names)."""

    rule: str  # one of RULES
    epochs: int  # EPOCHS: a trial's full length
    grace_epochs: int = 1  # GRACE_EPOCHS: epochs every trial trains before it can be stopped; halving's first rung
    reduction_factor: int = 3  # REDUCTION_FACTOR: halving keeps the best 1/this share of each rung
    min_reference: int = 3  # MIN_REFERENCE: finished trials a decision needs at that epoch

    @classmethod
    def from_config(cls, cfg):
        return cls(rule=cfg["EARLY_STOP"], epochs=cfg["EPOCHS"], grace_epochs=cfg["GRACE_EPOCHS"],
                   reduction_factor=cfg["REDUCTION_FACTOR"], min_reference=cfg["MIN_REFERENCE"])


def rung_epochs(epochs, grace_epochs, reduction_factor):
    """Halving's rungs: grace, grace * eta, grace * eta^2, ... epochs, each below `epochs` (the end is no rung)."""
    rungs, r = [], grace_epochs
    while r < epochs:
        rungs.append(r)
        r *= reduction_factor
    return rungs


def _curve(record):
    """A finished record's per-epoch losses (ok or stopped nce trials), else None."""
    losses = record.get("epoch_losses")
    if record.get("status") not in ("ok", "stopped") or not losses or not all(isinstance(x, (int, float)) for x in losses):
        return None
    return [float(x) for x in losses]


def reference(records, settings):
    """The rule's thresholds from the finished `records` (in trials.jsonl order), or None for EARLY_STOP='none'.

    A JSON-able dict: {'rule', 'records': how many records it was computed from, 'thresholds': [one per epoch
    1..EPOCHS, None where the rule does not decide], 'counts': the finished trials behind each threshold}.
    A threshold is the loss a trial must not exceed at that epoch: its best loss so far (median) or its loss then
    (halving).
    """
    s = settings
    if s.rule == "none":
        return None
    finished = [(r["status"], c) for r, c in zip(records, map(_curve, records)) if c is not None]
    thresholds, counts = [None] * s.epochs, [0] * s.epochs
    if s.rule == "median":
        complete = [c for status, c in finished if status == "ok" and len(c) == s.epochs]
        for t in range(s.grace_epochs, s.epochs):  # epoch t (1-based), decided after it; never at the last
            means = [float(np.mean(c[:t])) for c in complete]
            counts[t - 1] = len(means)
            if len(means) >= s.min_reference:
                thresholds[t - 1] = float(np.median(means))
    elif s.rule == "halving":
        for t in rung_epochs(s.epochs, s.grace_epochs, s.reduction_factor):
            at_rung = [c[t - 1] for _, c in finished if len(c) >= t]
            counts[t - 1] = len(at_rung)
            if len(at_rung) >= s.min_reference:
                # the loss of the best 1/eta: the 1/eta quantile of the rung's losses (lower is better)
                thresholds[t - 1] = float(np.quantile(at_rung, 1 / s.reduction_factor))
    else:
        raise ValueError(f"unknown early-stopping rule {s.rule!r}; choose from {', '.join(RULES)}")
    return {"rule": s.rule, "records": len(records), "thresholds": thresholds, "counts": counts,
            "reduction_factor": s.reduction_factor}


def decide(ref, epoch_losses):
    """None (go on), or why the trial stops now, after epoch len(epoch_losses). ref: a `reference`; a pure function."""
    t = len(epoch_losses)
    if ref is None or t > len(ref["thresholds"]):
        return None
    threshold = ref["thresholds"][t - 1]
    if threshold is None:
        return None
    n = ref["counts"][t - 1]
    if ref["rule"] == "median":
        best = min(epoch_losses)
        if best > threshold:
            return (f"median rule: best loss {best:.4f} after epoch {t} > {threshold:.4f}, the median running mean "
                    f"of {n} finished trials")
        return None
    loss = epoch_losses[-1]
    if loss > threshold:
        return (f"halving: loss {loss:.4f} at the epoch-{t} rung is not in the best 1/{ref['reduction_factor']} of "
                f"{n} finished trials there (cut-off {threshold:.4f})")
    return None


def full_trial_epochs(cfg):
    """Epochs one trial trains when nothing stops it: EPOCHS x REPEATS (nce, nce_init), none for training-free scores."""
    return cfg["EPOCHS"] * cfg["REPEATS"] if cfg["SCORE"] in ("nce", "nce_init") else 0


def epochs_trained(record, cfg):
    """Epochs a record's trial cost: a stopped one its `epoch`, any other nce / nce_init trial EPOCHS x REPEATS (a
    failed one may have stopped sooner; how far it got is not recorded), an over-budget proposal or a training-free
    score none."""
    if record.get("status") == "stopped":
        return int(record["epoch"])
    return 0 if record.get("status") == "over_budget" else full_trial_epochs(cfg)
