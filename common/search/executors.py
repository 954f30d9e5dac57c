"""Run trials in parallel: local worker processes pinned to devices, or Ray actors on a cluster."""
import collections
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait

from common.config import ConfigError
from common.failures import CANDIDATE_ERRORS, DriverError, failure_reason

KINDS = ("local", "ray")
STOP_GRACE_S = 5.0  # seconds an idle worker gets to exit after the stop message before it is terminated
KILL_GRACE_S = 2.0  # seconds between SIGTERM and SIGKILL for a worker that is still running


@dataclass
class Finished:
    """One trial that will not come back: its result, or why it was lost, and where it ran."""

    key: int  # the trial number the driver gave to submit()
    result: dict | None  # what worker_fn returned, None when lost
    error: str | None  # None, or why the trial was lost ("ValueError: ...", "worker died 3 times (...)")
    where: dict  # {"worker": slot, "node": hostname, "device": "cuda:1" / "cpu", "pid": pid, "attempts": n}


def make_executor(kind, *, workers, worker_setup, worker_fn, setup_args, device="auto", threads=0, ray_address=None,
                  trials_per_gpu=1, max_resubmits=2, log=print, ray_runtime_env=None):
    """An Executor that runs `worker_fn(task, state)` for each submitted task on `workers` parallel workers.

    worker_setup(setup_args, device: str, threads: int) -> state runs once per worker (and again in a worker
    started to replace a dead one); both functions must be importable module-level functions (spawn and Ray
    pickle them by reference or by value). A worker that dies mid-trial is replaced and the trial resubmitted,
    at most `max_resubmits` times. kind 'local': processes on this machine; 'ray': actors on `ray_address`
    (None = a local Ray started here and stopped by close()). See LocalExecutor and RayExecutor.
    """
    if kind not in KINDS:
        raise ConfigError(f"executor kind {kind!r}: choose one of {', '.join(KINDS)}")
    if workers < 1:
        raise ConfigError(f"workers={workers}: need at least 1")
    if threads < 0 or trials_per_gpu < 1 or max_resubmits < 0:
        raise ConfigError(f"threads={threads}, trials_per_gpu={trials_per_gpu}, max_resubmits={max_resubmits}: "
                          "need threads >= 0, trials_per_gpu >= 1, max_resubmits >= 0")
    common = dict(workers=workers, worker_setup=worker_setup, worker_fn=worker_fn, setup_args=setup_args,
                  device=device, threads=threads, max_resubmits=max_resubmits, log=log)
    if kind == "local":
        return LocalExecutor(**common)
    return RayExecutor(**common, ray_address=ray_address, trials_per_gpu=trials_per_gpu, runtime_env=ray_runtime_env)


class Executor:
    """Trials in flight on parallel workers. Use as a context manager so close() also runs on Ctrl-C and errors.

    submit(key, task) returns at once (tasks beyond `capacity` wait in a queue); poll(timeout) returns the trials
    finished since the last poll, waiting up to `timeout` seconds (None = until one finishes) when none has.
    Every submitted key comes back from poll exactly once, as a result or an error. Work is handed to workers
    only inside submit() and poll(), so a driver waits in poll(), not in time.sleep().
    """

    capacity: int  # trials that run at the same time

    def __init__(self, max_resubmits, log):
        self.max_resubmits, self.log = max_resubmits, log
        self._trials = {}  # key -> _Trial, submitted and not yet reported
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
        self._trials[key] = _Trial(task)
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- shared bookkeeping for the subclasses --

    def _finish(self, done, key, result, error, where):
        del self._trials[key]
        done.append(Finished(key, result, error, where))

    def _worker_lost(self, done, key, reason, where):
        """The worker running `key` died: resubmit the trial, or report it lost after max_resubmits resubmits."""
        trial = self._trials[key]
        trial.deaths.append(reason)
        if len(trial.deaths) > self.max_resubmits:
            where = {**where, "attempts": len(trial.deaths)}
            self._finish(done, key, None, f"worker died {len(trial.deaths)} times ({', '.join(trial.deaths)})", where)
            self.log(f"trial {key} lost: its worker died {len(trial.deaths)} times ({', '.join(trial.deaths)})")
        else:
            self._pending.appendleft(key)  # first in line: it has waited longest
            self.log(f"worker {where['worker']} ({where['device']}, pid {where['pid']}) died during trial {key} "
                     f"({reason}); resubmitting it (attempt {len(trial.deaths) + 1} of {self.max_resubmits + 1})")

    def _begin_close(self):
        """False when already closed; else marks the executor closed and says what is left unfinished."""
        if self._closed:
            return False
        self._closed = True
        if self._trials:
            self.log(f"executor: closing with {len(self._trials)} trials unfinished")
        return True

    def _idle_death(self, slot, name, reason):
        """A worker died between trials: restart it, unless it keeps dying (then worker_setup is the likely cause)."""
        slot.crashes += 1
        if slot.crashes > self.max_resubmits:
            raise RuntimeError(f"{name} died {slot.crashes} times while not running a trial (last: {reason}); "
                               "is worker_setup crashing?")
        self.log(f"{name} died while idle ({reason}); restarting")

    def _error(self, done, key, message, tb, where):
        """worker_fn raised: the candidate's fault, so the trial is reported failed, not resubmitted."""
        self.log(f"trial {key} raised in worker {where['worker']}: {message}\n{tb.rstrip()}")
        self._finish(done, key, None, message, where)


class _Trial:
    def __init__(self, task):
        self.task = task
        self.deaths = []  # why each earlier attempt's worker died

    @property
    def attempts(self):
        return len(self.deaths) + 1


def _run_one(worker_fn, key, task, state):
    """('ok', key, result) or ('error', key, 'ExcType: msg', traceback) -- an exception never kills the worker
    (common/failures.py's policy: whatever worker_fn raises fails this trial only)."""
    try:
        return ("ok", key, worker_fn(task, state))
    except DriverError:
        raise
    except CANDIDATE_ERRORS as exc:
        return ("error", key, failure_reason(exc), traceback.format_exc())


def _exit_code_text(code):
    """-9 -> '-9 (SIGKILL)': a negative multiprocessing exit code is the signal that ended the process."""
    if code is not None and code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exit code {code}"


# ---------------------------------------------------------------------------------------------------------------
# local: one spawned process per slot, a Pipe each (a worker dying mid-send breaks only its own pipe, never a
# shared queue lock), the process sentinel tells the driver at once when a worker is gone.


def worker_devices(device, workers):
    """The device of each local worker: 'auto'/'cuda' with N GPUs -> cuda:(i % N); else every worker on one device."""
    from common.device import pick_device  # torch is needed only to build a local executor

    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return [f"cuda:{i % n}" for i in range(workers)]
    return [str(pick_device(device))] * workers


def worker_threads(threads, workers, cores=None):
    """CPU threads per worker: `threads`, or 0 = the cores split between the workers (at least 1). cores: this
    process's cores by default; a Ray cluster's CPUs for Ray actors."""
    if threads:
        return threads
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, int(cores) // workers)


def _exit_with_parent():
    """A worker whose driver was killed (kill -9) exits instead of running on as an orphan."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _set_threads(threads, device):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # for torch imported later
    torch = sys.modules.get("torch")  # already imported while unpickling worker_setup / worker_fn, usually
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)  # so stray allocations do not make a context on cuda:0
    if torch is not None:
        torch.set_num_threads(threads)


def _local_worker(conn, device, threads, worker_setup, worker_fn, setup_args):
    """Worker process: set up once, then run (key, task) messages until None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the driver, which stops us via close()
    _exit_with_parent()
    try:
        _set_threads(threads, device)
        state = worker_setup(setup_args, device, threads)
    except Exception:
        conn.send(("setup_error", traceback.format_exc()))
        return
    conn.send(("ready", {"node": socket.gethostname(), "pid": os.getpid()}))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        reply = _run_one(worker_fn, *message, state)
        try:
            conn.send(reply)
        except Exception as exc:  # the result would not pickle: the pickling failed before anything was written
            conn.send(("error", reply[1], f"{type(exc).__name__}: result could not be sent: {exc}", ""))


class _Slot:
    """One worker position: a fixed device, the current process (replaced when it dies) and the trial it runs."""

    def __init__(self, index, device):
        self.index, self.device = index, device
        self.process = self.conn = None
        self.ready = False
        self.key = None  # the trial it runs, None when idle or still setting up
        self.crashes = 0  # deaths with no trial running since the last result (bounds a crash loop in setup)
        self.node = socket.gethostname()

    def where(self, attempts):
        pid = self.process.pid if self.process is not None else None
        return {"worker": self.index, "node": self.node, "device": self.device, "pid": pid, "attempts": attempts}


class LocalExecutor(Executor):
    """Worker processes on this machine ('spawn', so CUDA works), each pinned to one device and `threads` threads."""

    def __init__(self, *, workers, worker_setup, worker_fn, setup_args, device, threads, max_resubmits, log):
        super().__init__(max_resubmits, log)
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (worker_setup, worker_fn, setup_args)
        self.threads = worker_threads(threads, workers)
        self._slots = [_Slot(i, d) for i, d in enumerate(worker_devices(device, workers))]
        self.capacity = workers
        try:
            for slot in self._slots:
                self._start(slot)
        except BaseException:
            self.close()
            raise
        log(f"executor: {workers} local workers on {', '.join(sorted(set(s.device for s in self._slots)))}, "
            f"{self.threads} threads each")

    def _start(self, slot):
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_local_worker, args=(child, slot.device, self.threads, *self._args),
                                    name=f"trial-worker-{slot.index}", daemon=True)
        process.start()
        child.close()  # the worker holds the only other end: its death gives us EOF
        slot.process, slot.conn, slot.ready, slot.key = process, parent, False, None

    def _dispatch(self):
        for slot in self._slots:
            if not self._pending:
                return
            if slot.ready and slot.key is None:
                key = self._pending.popleft()
                try:
                    slot.conn.send((key, self._trials[key].task))
                except OSError:  # died while idle: the sentinel reports it; the trial waits for another worker
                    self._pending.appendleft(key)
                    slot.ready = False
                    continue
                slot.key = key

    def _wait(self, timeout, done):
        live = [s for s in self._slots if s.process is not None]
        ready = wait([s.conn for s in live] + [s.process.sentinel for s in live], timeout)
        for slot in live:
            if slot.conn in ready or slot.process.sentinel in ready:
                self._receive(slot, done)  # also a dead worker's last messages, sent before it died
                if not slot.process.is_alive() or slot.conn.closed:
                    self._replace(slot, done)

    def _receive(self, slot, done):
        try:
            while slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "ready":
                    slot.ready, slot.node = True, message[1]["node"]
                elif message[0] == "setup_error":
                    raise RuntimeError(f"worker_setup failed in worker {slot.index} ({slot.device}):\n{message[1]}")
                else:
                    key, slot.key, slot.crashes = message[1], None, 0
                    where = slot.where(self._trials[key].attempts)
                    if message[0] == "ok":
                        self._finish(done, key, message[2], None, where)
                    else:
                        self._error(done, key, message[2], message[3], where)
        except (EOFError, OSError):  # the worker is gone (possibly mid-message)
            slot.conn.close()

    def _replace(self, slot, done):
        slot.process.join(timeout=KILL_GRACE_S)  # reaped, so its exit code is known
        if slot.process.is_alive():  # the pipe broke but the process lingers: end it
            slot.process.kill()
            slot.process.join()
        reason = _exit_code_text(slot.process.exitcode)
        slot.conn.close()
        if slot.key is not None:
            self._worker_lost(done, slot.key, reason, slot.where(self._trials[slot.key].attempts))
        else:
            self._idle_death(slot, f"worker {slot.index} ({slot.device}, pid {slot.process.pid})", reason)
        self._start(slot)

    def close(self):
        """Stop the workers: idle ones by message, running ones by SIGTERM, then SIGKILL; no child is left behind."""
        if not self._begin_close():
            return
        slots = [s for s in self._slots if s.process is not None]
        for slot in slots:
            if slot.ready and slot.key is None and not slot.conn.closed:
                try:
                    slot.conn.send(None)
                except OSError:
                    pass
            else:
                slot.process.terminate()  # mid-trial or mid-setup: its work is abandoned
        deadline = time.monotonic() + STOP_GRACE_S
        for slot in slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for slot in slots:
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join(timeout=KILL_GRACE_S)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.conn.close()
            slot.process.close()
            slot.process = None


# ---------------------------------------------------------------------------------------------------------------
# ray: one actor per slot (worker_setup once per actor). The executor replaces dead actors itself (max_restarts=0,
# max_task_retries=0) instead of Ray's restarts/retries, so that: attempts are counted per trial and reported in
# `where`, the lost-trial error reads as for local workers, and a crash loop in worker_setup is bounded.


class _TrialActor:
    """Body of a Ray actor: worker_setup once in the constructor, then one worker_fn call per run()."""

    def __init__(self, worker_setup, worker_fn, setup_args, threads):
        import ray

        self.worker_fn, self.setup_error, self.state = worker_fn, None, None
        gpu_ids = ray.get_gpu_ids()  # Ray sets CUDA_VISIBLE_DEVICES to these, so torch sees them as cuda:0...
        self.device = "cuda:0" if gpu_ids else "cpu"
        self.info = {"node": socket.gethostname(), "device": self.device, "pid": os.getpid()}
        if gpu_ids:
            self.info["gpu_ids"] = [str(g) for g in gpu_ids]
        try:
            _set_threads(threads, self.device)
            self.state = worker_setup(setup_args, self.device, threads)  # setup_args: resolved from the object store
        except Exception:
            self.setup_error = traceback.format_exc()  # reported by ready(); a raising constructor would only die

    def ready(self):
        return ("setup_error", self.setup_error) if self.setup_error else ("ready", self.info)

    def run(self, key, task):
        return _run_one(self.worker_fn, key, task, self.state)


class RayExecutor(Executor):
    """One Ray actor per slot, each reserving `threads` CPUs and 1/trials_per_gpu GPU when the cluster has GPUs.

    threads 0: as for local workers, the cores split between the workers -- this machine's cores for a Ray started
    here, the cluster's CPUs for RAY_ADDRESS (at least 1 each); each actor sets torch to as many threads.

    setup_args goes into the object store once (ray.put); each actor reads it from there (numpy arrays zero-copy
    on the same node), so pass large arrays in setup_args rather than paths that other nodes lack.
    """

    def __init__(self, *, workers, worker_setup, worker_fn, setup_args, device, threads, max_resubmits, log,
                 ray_address, trials_per_gpu, runtime_env):
        super().__init__(max_resubmits, log)
        import ray  # only here: the local executor must work without Ray

        self._ray, self._owns_ray, self._slots, self._refs = ray, False, [], {}
        if device not in ("auto", "cuda", "cpu"):
            raise ConfigError(f"device {device!r} with Ray: use auto, cuda or cpu (Ray assigns the GPUs)")
        if not ray.is_initialized():
            if ray_address is None:  # a private local Ray; workers import what this process imports
                threads = worker_threads(threads, workers)  # this machine's cores split between the actors
                env = runtime_env or {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
                ray.init(num_cpus=workers * threads, include_dashboard=False, runtime_env=env)
            else:
                ray.init(address=ray_address, runtime_env=runtime_env)
            self._owns_ray = True
        try:
            threads = worker_threads(threads, workers, cores=ray.cluster_resources().get("CPU", 1))
            self.threads = threads
            gpus = ray.cluster_resources().get("GPU", 0) if device != "cpu" else 0
            if device == "cuda" and not gpus:
                raise ConfigError("device 'cuda' with Ray: the cluster has no GPUs; use auto or cpu")
            num_gpus = 1 / trials_per_gpu if gpus else 0
            if gpus and workers > gpus * trials_per_gpu:
                log(f"executor: {workers} workers but room for {int(gpus * trials_per_gpu)} at {trials_per_gpu} per GPU; "
                    "the rest wait for GPUs")
            self._actor = ray.remote(_TrialActor).options(num_cpus=threads, num_gpus=num_gpus, max_restarts=0,
                                                          max_task_retries=0, max_concurrency=1)
            self._setup = (worker_setup, worker_fn, ray.put(setup_args), threads)
            self.capacity = workers
            for i in range(workers):
                self._slots.append(_Slot(i, None))  # the actor reports its device
                self._start(self._slots[-1])
        except BaseException:
            self.close()
            raise
        log(f"executor: {workers} Ray actors, {threads} CPUs and {num_gpus:g} GPU each, "
            f"cluster {ray.cluster_resources().get('CPU', 0):g} CPUs / {gpus:g} GPUs")

    def _start(self, slot):
        slot.process = self._actor.remote(*self._setup)  # an actor handle in the place of a process
        slot.ready, slot.key, slot.pid = False, None, None
        self._refs[slot.process.ready.remote()] = (slot, "ready")

    def _dispatch(self):
        for slot in self._slots:
            if not self._pending:
                return
            if slot.ready and slot.key is None:
                slot.key = self._pending.popleft()
                self._refs[slot.process.run.remote(slot.key, self._trials[slot.key].task)] = (slot, "run")

    def _wait(self, timeout, done):
        ray = self._ray
        refs = list(self._refs)
        if not refs:  # cannot happen while a slot lives; never busy-loop if it does
            time.sleep(0.1 if timeout is None else min(timeout, 0.1))
            return
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            slot, kind = self._refs.pop(ref)
            try:
                message = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None) or exc
                if kind == "ready":  # the actor cannot even answer: as a worker that died before its first trial
                    self._replace(slot, f"ready() raised {type(cause).__name__}: {cause}", done)
                    continue
                key, slot.key = slot.key, None  # run() itself failed (e.g. the result would not pickle)
                self._error(done, key, failure_reason(cause), str(exc), self._where(slot, key))
                continue
            except ray.exceptions.RayError as exc:  # the actor died: killed, OOM-killed, its node lost (an actor
                # that died idle is noticed only by the next trial sent to it, which then counts one attempt)
                self._replace(slot, type(exc).__name__, done)
                continue
            if message[0] == "ready":
                slot.ready, slot.info = True, message[1]
            elif message[0] == "setup_error":
                raise RuntimeError(f"worker_setup failed in Ray worker {slot.index}:\n{message[1]}")
            else:
                key, slot.key, slot.crashes = message[1], None, 0
                where = self._where(slot, key)
                if message[0] == "ok":
                    self._finish(done, key, message[2], None, where)
                else:
                    self._error(done, key, message[2], message[3], where)

    def _where(self, slot, key):
        info = getattr(slot, "info", None) or {"node": None, "device": None, "pid": None}
        return {"worker": slot.index, **info, "attempts": self._trials[key].attempts}

    def _replace(self, slot, reason, done):
        if slot.key is not None:
            self._worker_lost(done, slot.key, reason, self._where(slot, slot.key))
        else:
            self._idle_death(slot, f"Ray worker {slot.index}", reason)
        self._ray.kill(slot.process, no_restart=True)
        self._start(slot)

    def close(self):
        """Kill the actors; shut Ray down when this executor started it."""
        if not self._begin_close():
            return
        for slot in self._slots:
            try:
                self._ray.kill(slot.process, no_restart=True)
            except Exception:  # already gone
                pass
        self._refs.clear()
        if self._owns_ray:
            self._ray.shutdown()
