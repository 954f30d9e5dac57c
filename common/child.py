"""A script run as a child process: its output to a log, an optional time limit, never left running behind us.

The child starts a session of its own, so it and every process it starts (a search's trial workers) form one process
group, stopped as one. A terminal's Ctrl-C then reaches only this process, which passes it on: on Ctrl-C, an error
here or the time limit, the group gets SIGINT -- what the script would get from a Ctrl-C of its own, so it closes its
workers and keeps its finished work -- and SIGKILL after STOP_GRACE_S. On Linux the child also dies when this
process dies, even by kill -9 (PR_SET_PDEATHSIG).
"""
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 10.0  # s a stopped child gets to exit after SIGINT before its whole group gets SIGKILL


@dataclass(frozen=True)
class ChildRun:
    """How a child process ended."""

    code: int  # exit status; negative: the signal that ended it (subprocess's convention)
    wall_s: float  # s from its start until it (and its stop, when stopped) ended
    timed_out: bool  # stopped because limit_s ran out


def run_script(script, argv, log, *, env=None, limit_s=None):
    """`python script *argv` in the script's folder, stdout and stderr to the open file `log`; env: variables added
    to this process's. Returns a ChildRun once the child has ended; what its exit status means is the caller's call.
    A KeyboardInterrupt (or any error) while waiting stops the child's process group before it propagates."""
    script = Path(script).resolve()  # it runs in its own folder
    setup = _child_setup()  # looked up here: the forked child (before exec) should do as little as possible
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *argv], cwd=script.parent, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            start_new_session=True, preexec_fn=setup)
    timed_out = False
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.returncode is None:
            stop_group(proc)
        else:  # the child is gone; whatever it started and left behind goes too
            _signal_group(proc.pid, signal.SIGKILL)
    return ChildRun(proc.returncode, time.perf_counter() - start, timed_out)


def stop_group(proc, grace_s=STOP_GRACE_S):
    """SIGINT to proc's process group (proc leads it), SIGKILL to the group after grace_s or a second Ctrl-C."""
    try:
        _signal_group(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # no process left in the group
        pass


def _child_setup():
    """A preexec_fn: SIGINT back to its default in the child (started with `&` from a script, this process ignores
    SIGINT, and so would the child: it could not be stopped gently), and on Linux SIGKILL for the child when this
    process dies (PR_SET_PDEATHSIG). None where libc cannot be called."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        reset, prctl = libc.signal, getattr(libc, "prctl", None) if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        return None
    reset.argtypes, reset.restype = (ctypes.c_int, ctypes.c_void_p), ctypes.c_void_p  # signal(int, handler)

    def setup():
        reset(signal.SIGINT, 0)  # SIG_DFL: the script's Python then turns SIGINT into KeyboardInterrupt
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return setup
