"""The search's ask/tell loop: keep up to `capacity` trials in flight, record each as it finishes, resume after a kill.

trials.jsonl (one line per finished trial, in completion order) is the source of truth. pending.json lists the
trials in flight with their samples and how many finished records were known when each was asked (the early-stopping
rule's reference is computed from those), so a killed driver's resumed run reruns exactly those (same numbers, same
samples, same rule) and no trial number is used twice. Only this process writes either file.
"""
import json
import math

from common.runs import append_jsonl, atomic_write_json, read_jsonl
from common.search.early_stop import epochs_trained, full_trial_epochs

PENDING = "pending.json"
FINISHED_STATUSES = ("ok", "stopped")  # trials that count towards N_TRIALS (stopped: ended early by EARLY_STOP)


class SearchStopped(RuntimeError):
    """The search cannot go on (too many failures, nothing fits the budget); the message says why."""


class SearchLoop:
    """Ask the search algorithm for samples, run them on an executor, persist every result before the next ask.

    strategy: ask(trial) -> sample, tell(record) (common/search/strategy.py); every finished record is told, in
    trials.jsonl order, also when the loop is rebuilt from that file.
    budget(sample) -> (extra record fields such as params/macs, None if within budget else a reason);
    it is asked before a sample is submitted, so an over-budget proposal costs no training.
    The search ends when N_TRIALS trials are ok or stopped, or when EPOCH_BUDGET (None = no limit) leaves no room: a
    trial starts only while the epochs trained so far plus the full length of every trial in flight, its own
    included, stay within EPOCH_BUDGET, so a search never trains more than that.
    """

    def __init__(self, run_dir, strategy, cfg, budget=None, log=print):
        self.run_dir, self.cfg, self.log = run_dir, cfg, log
        self.strategy, self.budget = strategy, budget
        self.trials_file, self.pending_file = run_dir / "trials.jsonl", run_dir / PENDING
        self.records = read_jsonl(self.trials_file, repair=True)  # this process appends to it
        for r in self.records:
            strategy.tell(r)
        done = {r["trial"] for r in self.records}
        saved = json.loads(self.pending_file.read_text()) if self.pending_file.exists() else {}
        # trial in flight -> {'sample', 'records': finished records known when it was asked}
        self.pending = {int(k): v for k, v in saved.items() if int(k) not in done}
        self.next_trial = max([0, *done, *self.pending]) + 1
        self.extra = {}  # trial in flight -> record fields known before it runs (params, macs)
        self.over_budget_in_a_row = 0
        self.smallest = None  # the smallest over-budget proposal seen, for the message when nothing fits

    # ---- counts
    def count(self, status):
        return sum(r["status"] == status for r in self.records)

    def ok(self):
        return [r for r in self.records if r["status"] == "ok"]

    def finished(self):
        """Trials that count towards N_TRIALS: ok and stopped ones."""
        return sum(r["status"] in FINISHED_STATUSES for r in self.records)

    def epochs_spent(self):
        return sum(epochs_trained(r, self.cfg) for r in self.records)

    def room(self, in_flight):
        """True when one more trial may start beside `in_flight` others (N_TRIALS and EPOCH_BUDGET)."""
        if self.finished() + in_flight >= self.cfg["N_TRIALS"]:
            return False
        limit = self.cfg.get("EPOCH_BUDGET")
        return limit is None or self.epochs_spent() + (in_flight + 1) * full_trial_epochs(self.cfg) <= limit

    # ---- ask
    def ask(self):
        """(trial, sample) of the next proposal within budget; over-budget ones are recorded and told to the
        strategy."""
        while True:
            trial = self.next_trial
            self.next_trial += 1
            sample = self.strategy.ask(trial)
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
        self.strategy.tell(record)

    def _save_pending(self):
        atomic_write_json(self.pending_file, {str(k): v for k, v in sorted(self.pending.items())})

    def run(self, executor, make_task, on_record):
        """Run on `executor` (common/search/executors; the caller closes it) until N_TRIALS trials are ok or stopped, or
        EPOCH_BUDGET is spent. make_task(trial, sample, known) -> the task dict, where `known` are the finished records known when
        the trial was asked (the same list again when it is rerun after a kill); on_record(record) after each."""
        cfg = self.cfg
        for trial, entry in sorted(self.pending.items()):  # a killed run's trials in flight, rerun first
            self.extra[trial] = self.budget(entry["sample"])[0] if self.budget else {}
            executor.submit(trial, make_task(trial, entry["sample"], self.records[: entry["records"]]))
        while True:
            if self.count("fail") >= cfg["MAX_FAILURES"]:
                last = [r for r in self.records if r["status"] == "fail"][-1].get("reason", "?")
                raise SearchStopped(f"stopped after {self.count('fail')} failed trials (last: {last}); "
                                    f"see {self.trials_file}")
            while len(executor.in_flight) < executor.capacity and self.room(len(executor.in_flight)):
                trial, sample, extra = self.ask()
                self.pending[trial] = {"sample": sample, "records": len(self.records)}
                self.extra[trial] = extra
                self._save_pending()
                executor.submit(trial, make_task(trial, sample, list(self.records)))
            if not executor.in_flight:
                break  # nothing runs and nothing may start: N_TRIALS reached or EPOCH_BUDGET spent
            for done in executor.poll(timeout=1.0):
                entry = self.pending.get(done.key) or {}
                record = done.result if done.result is not None else {
                    "trial": done.key, "status": "fail", "loss": None, "sample": entry.get("sample"),
                    "reason": done.error, "seconds": 0.0}
                record.update(self.extra.pop(done.key, {}), worker=done.where)
                self._record(record)
                self.pending.pop(done.key, None)
                self._save_pending()
                on_record(record)
        self.pending_file.unlink(missing_ok=True)
        return self.records


def eta_minutes(records, cfg, capacity):
    """Remaining wall time, `capacity` trials at a time: the mean seconds of the finished trials times the trials left
    to N_TRIALS, or with EPOCH_BUDGET, when sooner, the seconds per epoch trained times the epochs left."""
    done = [r for r in records if r["status"] in FINISHED_STATUSES]
    if not done:
        return math.nan
    seconds = sum(r["seconds"] for r in done)
    left = (cfg["N_TRIALS"] - len(done)) * seconds / len(done)
    epochs = sum(epochs_trained(r, cfg) for r in done)
    if cfg.get("EPOCH_BUDGET") is not None and epochs:
        left = min(left, max(0, cfg["EPOCH_BUDGET"] - sum(epochs_trained(r, cfg) for r in records)) * seconds / epochs)
    return left / max(1, capacity) / 60

