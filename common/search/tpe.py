"""Ask/tell around hyperopt: suggest one sample at a time from a history we rebuild from trials.jsonl."""
from functools import partial

import numpy as np
from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK, Domain, Trials, hp, rand, tpe

from common.arch import genotypes as G


def search_space(space="paper", steps=G.STEPS):
    """The hyperopt space of a genotype encoding (see common.arch.genotypes): one hp.choice per variable."""
    return {label: hp.choice(label, G.choices(label, space)) for label in G.sample_labels(steps, space)}


def make_suggest(algo, n_startup=20):
    """'tpe' (hyperopt's defaults except the startup count) or 'random' -> a hyperopt suggest function."""
    if algo == "tpe":
        return partial(tpe.suggest, n_startup_jobs=n_startup, verbose=False)
    if algo == "random":
        return rand.suggest
    raise ValueError(f"unknown search algorithm {algo!r}; choose 'tpe' or 'random'")


class TrialHistory:
    """hyperopt's Trials, filled from our own records; we run the trials ourselves instead of fmin.

    Driving hyperopt one suggestion at a time lets each finished trial be persisted before the next one and
    lets a killed search resume with the same history; each suggestion gets its own seed (derived from SEED
    and the trial number) so a resumed search proposes what an uninterrupted one would have.
    """

    def __init__(self, space):
        self.domain = Domain(lambda sample: 0.0, space)  # the objective is never called by hyperopt here
        self.trials = Trials()

    def add(self, trial, sample, loss):
        """Record a finished trial: sample {label: choice index}; loss None marks a failed trial."""
        result = {"status": STATUS_FAIL} if loss is None else {"status": STATUS_OK, "loss": float(loss)}
        misc = {
            "tid": trial,
            "cmd": ("domain_attachment", "FMinIter_Domain"),
            "workdir": None,
            "idxs": {k: [trial] for k in sample},
            "vals": {k: [int(v)] for k, v in sample.items()},
        }
        docs = self.trials.new_trial_docs([trial], [None], [result], [misc])
        docs[0]["state"] = JOB_STATE_DONE
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()

    def suggest(self, suggest_fn, trial, seed):
        """The next sample {label: choice index} proposed for trial number `trial`."""
        doc = suggest_fn([trial], self.domain, self.trials, seed)[0]
        return {k: int(v[0]) for k, v in doc["misc"]["vals"].items()}


OVER_BUDGET_LOSS = 1e9  # what TPE is told of an over-budget proposal: worse than any trained candidate


def told_loss(record):
    """What TPE learns from a finished record.

    ok: its loss. stopped (early stopping): the loss of the epoch it stopped at. Losses fall with epochs, so that is
    higher than the trial would have ended with, and the rule stopped it for being worse than the others at that
    epoch; TPE (which uses only the order of the losses, split at its gamma quantile) thus files it among the bad
    trials, where the rule put it. Telling it as failed instead would waste it (hyperopt ignores failed trials, so TPE
    would keep proposing that region), and a fixed very bad loss would rank it below trials that ran to the end and
    were truly worse. fail: nothing (hyperopt skips it). over_budget: OVER_BUDGET_LOSS, so TPE learns to avoid the
    region.
    """
    if record["status"] in ("ok", "stopped"):
        return record["loss"]
    return OVER_BUDGET_LOSS if record["status"] == "over_budget" else None


class HyperoptStrategy:
    """ALGO 'tpe' or 'random' as ask/tell: ask(trial) -> sample, tell(record) adds a finished trial to the history.

    Each suggestion is seeded from (SEED, trial), so a search rebuilt from trials.jsonl proposes what an
    uninterrupted one would have, given the same finished trials.
    """

    def __init__(self, algo, space, seed, n_startup=20):
        self.history = TrialHistory(search_space(space))
        self.suggest_fn, self.seed = make_suggest(algo, n_startup), seed

    def tell(self, record):
        self.history.add(record["trial"], record["sample"], told_loss(record))

    def ask(self, trial):
        seed = int(np.random.default_rng([self.seed, trial, 1]).integers(2**31 - 1))
        return self.history.suggest(self.suggest_fn, trial, seed)
