"""Executors: run the search's trials inline (WORKERS=1), in local worker processes, or in Ray actors.

base        Finished (one trial back), Executor: submit/poll over a queue, close() on exit
inline      InlineExecutor: each trial in the driver's process, when polled
workers     the worker message protocol, a worker's set-up, resubmission after a dead worker, thread split
local       LocalExecutor: spawned processes pinned to devices, a pipe each
ray_actors  RayExecutor: one Ray actor per slot
factory     ExecutorSettings and make_executor(kind, settings, ...)

Every kind applies common/failures.py: what a trial raises fails that trial only. Nothing here imports torch or Ray
until an executor that needs it is made.
"""
from common.search.executors.base import Finished
from common.search.executors.factory import KINDS, ExecutorSettings, make_executor
from common.search.executors.inline import InlineExecutor
from common.search.executors.local import worker_devices
from common.search.executors.workers import worker_threads

__all__ = ["KINDS", "ExecutorSettings", "Finished", "InlineExecutor", "make_executor", "worker_devices", "worker_threads"]
