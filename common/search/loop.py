"""The search's ask/tell loop: keep up to `capacity` trials in flight, record each as it finishes, resume after a kill.

trials.jsonl (one line per finished trial, in completion order) is the source of truth. pending.json lists the
trials in flight with their samples, so a killed driver's resumed run reruns exactly those (same numbers, same
samples) and no trial number is used twice. Only this process writes either file.
"""
import json
import math

import numpy as np

from common.runs import append_jsonl, atomic_write_json, read_jsonl
from common.search.tpe import TrialHistory

PENDING = "pending.json"
OVER_BUDGET_LOSS = 1e9  # what TPE is told of an over-budget proposal: worse than any trained candidate


class SearchStopped(RuntimeError):
    """The search cannot go on (too many failures, nothing fits the budget); the message says why."""


class SearchLoop:
    """Ask TPE (or random search) for samples, run them on an executor, persist every result before the next ask.

    budget(sample) -> (extra record fields such as params/macs, None if within budget else a reason);
    it is asked before a sample is submitted, so an over-budget proposal costs no training.
    """

    def __init__(self, run_dir, space, suggest, cfg, budget=None, log=print):
        self.run_dir, self.cfg, self.log = run_dir, cfg, log
        self.suggest_fn, self.budget = suggest, budget
        self.trials_file, self.pending_file = run_dir / "trials.jsonl", run_dir / PENDING
        self.records = read_jsonl(self.trials_file)
        self.history = TrialHistory(space)
        for r in self.records:
            self.history.add(r["trial"], r["sample"], _history_loss(r))
        done = {r["trial"] for r in self.records}
        saved = json.loads(self.pending_file.read_text()) if self.pending_file.exists() else {}
        self.pending = {int(k): v for k, v in saved.items() if int(k) not in done}  # trial -> sample, in flight
        self.next_trial = max([0, *done, *self.pending]) + 1
        self.extra = {}  # trial in flight -> record fields known before it runs (params, macs)
        self.over_budget_in_a_row = 0
        self.smallest = None  # the smallest over-budget proposal seen, for the message when nothing fits

    # ---- counts
    def count(self, status):
        return sum(r["status"] == status for r in self.records)

    def ok(self):
        return [r for r in self.records if r["status"] == "ok"]

    # ---- ask
    def _suggest(self, trial):
        seed = int(np.random.default_rng([self.cfg["SEED"], trial, 1]).integers(2**31 - 1))
        return self.history.suggest(self.suggest_fn, trial, seed)

    def ask(self):
        """(trial, sample) of the next proposal within budget; over-budget ones are recorded and told to TPE."""
        while True:
            trial = self.next_trial
            self.next_trial += 1
            sample = self._suggest(trial)
            extra, reason = self.budget(sample) if self.budget else ({}, None)
            if reason is None:
                self.over_budget_in_a_row = 0
                return trial, sample, extra
            self.over_budget_in_a_row += 1
            size = (extra.get("params", math.inf), extra.get("macs", math.inf))
            self.smallest = size if self.smallest is None or size < self.smallest else self.smallest
            self._record({"trial": trial, "status": "over_budget", "loss": None, "sample": sample,
                          "reason": reason, "seconds": 0.0, **extra})
            self.log(f"proposal #{trial} over budget, not trained: {reason}")
            if self.over_budget_in_a_row >= self.cfg["MAX_OVER_BUDGET"]:
                p, m = self.smallest
                raise SearchStopped(
                    f"{self.over_budget_in_a_row} proposals in a row were over budget; the smallest had {p / 1e6:.2f}M "
                    f"parameters and {m / 1e6:.0f}M MACs: raise MAX_PARAMS / MAX_MACS")

    # ---- tell
    def _record(self, record):
        append_jsonl(self.trials_file, record)  # persisted before anything else happens
        self.records.append(record)
        self.history.add(record["trial"], record["sample"], _history_loss(record))

    def _save_pending(self):
        atomic_write_json(self.pending_file, {str(k): v for k, v in sorted(self.pending.items())})

    def run(self, executor, make_task, on_record):
        """Run until N_TRIALS trials are ok on `executor` (common/search/executors). make_task(trial, sample) -> the
        task dict; on_record(record) after each."""
        cfg = self.cfg
        with executor:
            for trial, sample in sorted(self.pending.items()):  # a killed run's trials in flight, rerun first
                self.extra[trial] = self.budget(sample)[0] if self.budget else {}
                executor.submit(trial, make_task(trial, sample))
            while self.count("ok") < cfg["N_TRIALS"]:
                if self.count("fail") >= cfg["MAX_FAILURES"]:
                    last = [r for r in self.records if r["status"] == "fail"][-1].get("reason", "?")
                    raise SearchStopped(f"stopped after {self.count('fail')} failed trials (last: {last}); "
                                        f"see {self.trials_file}")
                while (len(executor.in_flight) < executor.capacity
                       and self.count("ok") + len(executor.in_flight) < cfg["N_TRIALS"]):
                    trial, sample, extra = self.ask()
                    self.pending[trial], self.extra[trial] = sample, extra
                    self._save_pending()
                    executor.submit(trial, make_task(trial, sample))
                for done in executor.poll(timeout=1.0):
                    record = done.result if done.result is not None else {
                        "trial": done.key, "status": "fail", "loss": None, "sample": self.pending.get(done.key),
                        "reason": done.error, "seconds": 0.0}
                    record.update(self.extra.pop(done.key, {}), worker=done.where)
                    self._record(record)
                    self.pending.pop(done.key, None)
                    self._save_pending()
                    on_record(record)
        self.pending_file.unlink(missing_ok=True)
        return self.records


def _history_loss(record):
    """What TPE learns from a record: its loss, nothing for a failure, a very bad loss when over budget."""
    if record["status"] == "ok":
        return record["loss"]
    return OVER_BUDGET_LOSS if record["status"] == "over_budget" else None


def eta_minutes(records, n_trials, capacity):
    """Remaining wall time from the mean seconds of the ok trials, `capacity` at a time."""
    seconds = [r["seconds"] for r in records if r["status"] == "ok"]
    left = n_trials - len(seconds)
    return left * (sum(seconds) / len(seconds)) / max(1, capacity) / 60 if seconds else math.nan

