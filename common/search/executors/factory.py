"""make_executor(kind, settings, ...): the local or Ray executor, from one keyword-only settings object."""
from collections.abc import Callable
from dataclasses import dataclass

from common.config import ConfigError
from common.search.executors.local import LocalExecutor
from common.search.executors.ray_actors import RayExecutor

KINDS = {"local": LocalExecutor, "ray": RayExecutor}


@dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    """How many workers run trials, and where. Checked when made (one ConfigError line naming the bad value)."""

    workers: int
    device: str = "auto"  # local: 'auto'/'cuda' spreads the workers over every GPU; Ray: auto, cuda or cpu
    threads: int = 0  # CPU threads per worker; 0 = the cores (a Ray cluster's CPUs) split between the workers
    max_resubmits: int = 2  # a trial whose worker died is run again at most this many times, then reported lost
    ray_address: str | None = None  # Ray only: None = a local Ray started here and stopped by close()
    trials_per_gpu: int = 1  # Ray only: each actor reserves 1/trials_per_gpu of a GPU
    ray_runtime_env: dict | None = None  # Ray only: None = this process's sys.path as the workers' PYTHONPATH
    log: Callable[[str], None] = print

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers}: need at least 1")
        if self.threads < 0 or self.trials_per_gpu < 1 or self.max_resubmits < 0:
            raise ConfigError(f"threads={self.threads}, trials_per_gpu={self.trials_per_gpu}, "
                              f"max_resubmits={self.max_resubmits}: need threads >= 0, trials_per_gpu >= 1, "
                              "max_resubmits >= 0")


def make_executor(kind, settings, *, worker_setup, worker_fn, setup_args):
    """An executor that runs `worker_fn(task, state)` for each submitted task on `settings.workers` parallel workers.

    worker_setup(setup_args, device: str, threads: int) -> state runs once per worker (and again in a worker
    started to replace a dead one); both functions must be importable module-level functions (spawn and Ray
    pickle them by reference or by value). A worker that dies mid-trial is replaced and the trial resubmitted,
    at most `settings.max_resubmits` times. kind 'local': processes on this machine; 'ray': actors on
    `settings.ray_address`. See LocalExecutor and RayExecutor.
    """
    if kind not in KINDS:
        raise ConfigError(f"executor kind {kind!r}: choose one of {', '.join(KINDS)}")
    return KINDS[kind](worker_setup=worker_setup, worker_fn=worker_fn, setup_args=setup_args, settings=settings)
