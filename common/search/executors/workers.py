"""Executors whose trials run in workers (local processes, Ray actors): the message protocol, a worker's set-up,
and the driver's bookkeeping -- hand out trials, read replies, replace a dead worker and resubmit its trial.

The protocol, worker -> driver (the local pipe and Ray's return values carry the same tuples):
    ("ready", {"node", "device", "pid", ...})   set up, waiting for trials
    ("setup_error", traceback text)             worker_setup raised: the driver stops (every worker would fail)
    ("ok", key, result)                         worker_fn returned
    ("error", key, "ExcType: message", traceback text)   worker_fn raised: that trial failed, the worker goes on
"""
import os
import sys
import traceback
from abc import abstractmethod

from common.failures import CANDIDATE_ERRORS, failure_reason, is_candidate_failure
from common.machine import usable_cores
from common.search.executors.base import Executor, here


def worker_threads(threads, workers, cores=None):
    """CPU threads per worker: `threads`, or 0 = the cores split between the workers (at least 1). cores: this
    process's cores by default; a Ray cluster's CPUs for Ray actors."""
    if threads:
        return threads
    if cores is None:
        cores = usable_cores()
    return max(1, int(cores) // workers)


def set_threads(threads, device):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # for torch imported later
    torch = sys.modules.get("torch")  # already imported while unpickling worker_setup / worker_fn, usually
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # so stray allocations do not make a context on cuda:0
    if torch is not None:
        torch.set_num_threads(threads)


def set_up(worker_setup, setup_args, device, threads):
    """(worker_setup's state, the 'ready' message) in a new worker, or (None, the 'setup_error' message)."""
    try:
        set_threads(threads, device)
        return worker_setup(setup_args, device, threads), ("ready", here(device))
    except Exception:
        return None, ("setup_error", traceback.format_exc())


def run_one(worker_fn, key, task, state):
    """The 'ok' or 'error' message of one trial: an exception never kills the worker (common/failures.py's policy:
    whatever worker_fn raises fails this trial only, except the driver's own DriverError)."""
    try:
        return ("ok", key, worker_fn(task, state))
    except CANDIDATE_ERRORS as exc:
        if not is_candidate_failure(exc):
            raise
        return ("error", key, failure_reason(exc), traceback.format_exc())


class Slot:
    """One worker position: the trial its current worker runs (None when idle or setting up) and where it runs."""

    def __init__(self, index):
        self.index = index
        self.ready = False
        self.key = None
        self.crashes = 0  # deaths with no trial running since the last result (bounds a crash loop in setup)
        self.info = {"node": None, "device": None, "pid": None}  # the worker's 'ready' message fills it

    @property
    def name(self):
        return f"worker {self.index}"

    def where(self, attempts):
        return {"worker": self.index, **self.info, "attempts": attempts}


class WorkerExecutor(Executor):
    """`workers` slots, each with one worker at a time: a worker that dies mid-trial is replaced and the trial
    resubmitted, at most `max_resubmits` times. A subclass starts a worker (_start), sends it a trial (_send) and
    feeds the messages it gets to _on_message."""

    def __init__(self, settings):
        super().__init__(settings.log)
        self.max_resubmits, self.capacity = settings.max_resubmits, settings.workers
        self._slots = []

    def _launch(self, make_slots):
        """self._slots = make_slots(), a worker started in each; on any failure (Ctrl-C too) close what started."""
        try:
            self._slots = make_slots()
            for slot in self._slots:
                self._start(slot)
        except BaseException:
            self.close()
            raise

    def _dispatch(self):
        for slot in self._slots:
            if not self._pending:
                return
            if slot.ready and slot.key is None:
                key = self._pending.popleft()
                if self._send(slot, key, self._trials[key].task):
                    slot.key = key
                else:  # died while idle: its death is noticed in _wait; the trial waits for another worker
                    self._pending.appendleft(key)
                    slot.ready = False

    def _on_message(self, slot, message, done):
        if message[0] == "ready":
            slot.ready = True
            slot.info.update(message[1])
        elif message[0] == "setup_error":
            raise RuntimeError(f"worker_setup failed in {slot.name}:\n{message[1]}")
        else:
            key, slot.key, slot.crashes = message[1], None, 0
            where = slot.where(self._trials[key].attempts)
            if message[0] == "ok":
                self._finish(done, key, message[2], None, where)
            else:
                self._failed(done, key, message[2], message[3], where)

    def _failed(self, done, key, reason, tb, where):
        """worker_fn raised: the candidate's fault, so the trial is reported failed, not resubmitted."""
        self.log(f"trial {key} raised in worker {where['worker']}: {reason}\n{tb.rstrip()}")
        self._finish(done, key, None, reason, where)

    def _replace(self, slot, reason, done):
        """The slot's worker is gone (`reason`): resubmit its trial or count an idle death, then start another."""
        if slot.key is not None:
            self._lost(done, slot.key, reason, slot.where(self._trials[slot.key].attempts))
        else:  # died between trials: restart it, unless it keeps dying (then worker_setup is the likely cause)
            slot.crashes += 1
            if slot.crashes > self.max_resubmits:
                raise RuntimeError(f"{slot.name} died {slot.crashes} times while not running a trial (last: {reason}); "
                                   "is worker_setup crashing?")
            self.log(f"{slot.name} died while idle ({reason}); restarting")
        self._start(slot)

    def _lost(self, done, key, reason, where):
        trial = self._trials[key]
        trial.deaths.append(reason)
        deaths = f"{len(trial.deaths)} times ({', '.join(trial.deaths)})"
        if len(trial.deaths) > self.max_resubmits:
            self._finish(done, key, None, f"worker died {deaths}", {**where, "attempts": len(trial.deaths)})
            self.log(f"trial {key} lost: its worker died {deaths}")
        else:
            self._pending.appendleft(key)  # first in line: it has waited longest
            self.log(f"worker {where['worker']} ({where['device']}, pid {where['pid']}) died during trial {key} "
                     f"({reason}); resubmitting it (attempt {len(trial.deaths) + 1} of {self.max_resubmits + 1})")

    @abstractmethod
    def _start(self, slot):
        """Start the slot's worker (a process, or a Ray actor)."""

    @abstractmethod
    def _send(self, slot, key, task):
        """Hand the trial to the slot's worker; False when it cannot take it (it died)."""
