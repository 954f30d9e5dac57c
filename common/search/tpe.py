"""Ask/tell around hyperopt: suggest one sample at a time from a history we rebuild from trials.jsonl."""
from functools import partial

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
