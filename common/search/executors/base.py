"""What every executor shares: the Finished record, submit/poll over a queue of trials, and close() on exit."""
import collections
import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass
class Finished:
    """One trial that will not come back: its result, or why it failed or was lost, and where it ran."""

    key: int  # the trial number the driver gave to submit()
    result: dict | None  # what the trial returned, None when it failed or was lost
    error: str | None  # None, or why ("ValueError: ...", "worker died 3 times (...)")
    where: dict  # {"worker": slot, "node": hostname, "device": "cuda:1" / "cpu", "pid": pid, "attempts": n}


def here(device):
    """Where this process runs: {"node", "device", "pid"}, the middle of a Finished.where."""
    return {"node": socket.gethostname(), "device": str(device), "pid": os.getpid()}


class Trial:
    """A submitted trial's task and why each earlier attempt's worker died."""

    def __init__(self, task):
        self.task = task
        self.deaths = []

    @property
    def attempts(self):
        return len(self.deaths) + 1


class Executor(ABC):
    """Trials in flight. Use as a context manager so close() also runs on Ctrl-C and errors.

    submit(key, task) returns at once (tasks beyond `capacity` wait in a queue); poll(timeout) returns the trials
    finished since the last poll, waiting up to `timeout` seconds (None = until one finishes) when none has.
    Every submitted key comes back from poll exactly once, as a result or an error. Work is handed out only inside
    submit() and poll(), so a driver waits in poll(), not in time.sleep().

    A subclass says how trials run: _dispatch() hands queued trials to idle workers, _wait(timeout, done) waits for
    them and appends to `done` what finished, _stop_workers() ends whatever it started.
    """

    capacity: int  # trials that run at the same time

    def __init__(self, log):
        self.log = log
        self._trials = {}  # key -> Trial, submitted and not yet reported
        self._pending = collections.deque()  # keys waiting for an idle worker, oldest first
        self._closed = False

    @property
    def in_flight(self):
        """Keys submitted and not yet returned by poll (running or queued)."""
        return set(self._trials)

    def submit(self, key, task):
        if self._closed:
            raise RuntimeError("submit() on a closed executor")
        if key in self._trials:
            raise ValueError(f"trial {key} is already in flight")
        self._trials[key] = Trial(task)
        self._pending.append(key)
        self._dispatch()

    def poll(self, timeout=None):
        """Finished trials; blocks up to `timeout` s for at least one. Returns [] at once when nothing is in flight."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = []
        while True:
            self._dispatch()
            if not self._trials:
                return done
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wait(left, done)
            if done or (deadline is not None and time.monotonic() >= deadline):
                return done

    def close(self):
        """Stop every worker; trials still in flight are abandoned (a resumed search reruns them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._trials:
            self.log(f"executor: closing with {len(self._trials)} trials unfinished")
        self._stop_workers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _finish(self, done, key, result, error, where):
        del self._trials[key]
        done.append(Finished(key, result, error, where))

    @abstractmethod
    def _dispatch(self):
        """Hand pending trials to whatever can run them now."""

    @abstractmethod
    def _wait(self, timeout, done):
        """Wait up to `timeout` s (None: no limit) for trials to end; append their Finished to `done`."""

    @abstractmethod
    def _stop_workers(self):
        """Stop whatever runs the trials (close() calls it once)."""
