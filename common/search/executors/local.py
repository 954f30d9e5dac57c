"""Worker processes on this machine: one spawned process per slot, pinned to a device, with a Pipe each (a worker
dying mid-send breaks only its own pipe, never a shared queue lock); the process sentinel tells the driver at once
when a worker is gone."""
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait

from common.search.executors.base import here
from common.search.executors.workers import Slot, WorkerExecutor, run_one, set_up, worker_threads

STOP_GRACE_S = 5.0  # seconds an idle worker gets to exit after the stop message before it is terminated
KILL_GRACE_S = 2.0  # seconds between SIGTERM and SIGKILL for a worker that is still running


def worker_devices(device, workers):
    """The device of each local worker: 'auto'/'cuda' with N GPUs -> cuda:(i % N); else every worker on one device."""
    from common.device import pick_device  # torch is needed only to build a local executor

    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return [f"cuda:{i % n}" for i in range(workers)]
    return [str(pick_device(device))] * workers


def exit_code_text(code):
    """-9 -> 'exit code -9 (SIGKILL)': a negative multiprocessing exit code is the signal that ended the process."""
    if code is not None and code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def _exit_with_parent():
    """A worker whose driver was killed (kill -9) exits instead of running on as an orphan."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _worker_main(conn, device, threads, worker_setup, worker_fn, setup_args):
    """Worker process: set up once, then run (key, task) messages until None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the driver, which stops us via close()
    _exit_with_parent()
    state, ready = set_up(worker_setup, setup_args, device, threads)
    conn.send(ready)
    if ready[0] != "ready":
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        reply = run_one(worker_fn, *message, state)
        try:
            conn.send(reply)
        except Exception as exc:  # the result would not pickle: the pickling failed before anything was written
            conn.send(("error", reply[1], f"{type(exc).__name__}: result could not be sent: {exc}", ""))


class LocalSlot(Slot):
    """A slot with a fixed device; its process and pipe are replaced when the worker dies."""

    def __init__(self, index, device):
        super().__init__(index)
        self.device = device
        self.process = self.conn = None

    @property
    def name(self):
        return f"worker {self.index} ({self.device}, pid {self.info['pid']})"


class LocalExecutor(WorkerExecutor):
    """Worker processes on this machine ('spawn', so CUDA works), each pinned to one device and `threads` threads."""

    def __init__(self, *, worker_setup, worker_fn, setup_args, settings):
        super().__init__(settings)
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (worker_setup, worker_fn, setup_args)
        self.threads = worker_threads(settings.threads, settings.workers)
        devices = worker_devices(settings.device, settings.workers)
        self._launch(lambda: [LocalSlot(i, d) for i, d in enumerate(devices)])
        self.log(f"executor: {settings.workers} local workers on {', '.join(sorted(set(devices)))}, "
                 f"{self.threads} threads each")

    def _start(self, slot):
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, slot.device, self.threads, *self._args),
                                    name=f"trial-worker-{slot.index}", daemon=True)
        process.start()
        child.close()  # the worker holds the only other end: its death gives us EOF
        slot.process, slot.conn, slot.ready, slot.key = process, parent, False, None
        slot.info = {**here(slot.device), "pid": process.pid}  # this machine; the worker's 'ready' says the same

    def _send(self, slot, key, task):
        try:
            slot.conn.send((key, task))
            return True
        except OSError:
            return False

    def _wait(self, timeout, done):
        live = [s for s in self._slots if s.process is not None]
        ready = wait([s.conn for s in live] + [s.process.sentinel for s in live], timeout)
        for slot in live:
            if slot.conn in ready or slot.process.sentinel in ready:
                self._receive(slot, done)  # also a dead worker's last messages, sent before it died
                if not slot.process.is_alive() or slot.conn.closed:
                    self._replace(slot, self._reap(slot), done)

    def _receive(self, slot, done):
        try:
            while slot.conn.poll():
                self._on_message(slot, slot.conn.recv(), done)
        except (EOFError, OSError):  # the worker is gone (possibly mid-message)
            slot.conn.close()

    def _reap(self, slot):
        """Why the slot's worker ended, once it is reaped (its exit code known) and its pipe closed."""
        slot.process.join(timeout=KILL_GRACE_S)
        if slot.process.is_alive():  # the pipe broke but the process lingers: end it
            slot.process.kill()
            slot.process.join()
        slot.conn.close()
        return exit_code_text(slot.process.exitcode)

    def _stop_workers(self):
        """Idle workers stop by message, running ones by SIGTERM, then SIGKILL; no child is left behind."""
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
