"""WORKERS=1 on the local machine: each trial runs in the driver's own process, when polled."""
from common.failures import run_candidate
from common.search.executors.base import Executor, here


class InlineExecutor(Executor):
    """No worker process to start: poll() runs the oldest submitted trial as run_fn(task) and returns it.

    Whatever run_fn raises fails that trial only (common/failures.py), as in a worker process: the same policy
    whether trials run inline or in parallel. debug: print the traceback.
    """

    capacity = 1

    def __init__(self, run_fn, device, debug=False, log=print):
        super().__init__(log)
        self.run_fn, self.device, self.debug = run_fn, str(device), debug

    def _dispatch(self):
        pass  # nothing runs until polled

    def _wait(self, timeout, done):
        key = self._pending.popleft()
        result, error = run_candidate(self.run_fn, self._trials[key].task, debug=self.debug)
        self._finish(done, key, result, error, {"worker": 0, **here(self.device), "attempts": 1})

    def _stop_workers(self):
        self._pending.clear()
