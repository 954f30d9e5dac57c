"""common/child.py: a script as a child process -- its output logged, stopped at its time limit, and on Ctrl-C here
stopped together with the process it started (which ignores SIGINT, as a search's trial workers do)."""
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from common.child import run_script

SCRIPT = """import os, subprocess, sys, time
if sys.argv[1] == "exit":
    print("to stdout"); print("to stderr", file=sys.stderr); sys.exit(3)
# a helper that ignores Ctrl-C (as trial workers do) and says its pid once it does
subprocess.Popen([sys.executable, "-c", "import os, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                  "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); os.replace(sys.argv[1] + '.tmp', sys.argv[1]); "
                  "time.sleep(600)", sys.argv[2]])
time.sleep(600)
"""


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def test_output_is_logged_a_time_limit_stops_it_and_ctrl_c_stops_its_whole_group(tmp_path):
    script = tmp_path / "child_script.py"
    script.write_text(SCRIPT)
    with open(tmp_path / "exit.log", "w") as log:
        run = run_script(script, ["exit"], log)
    assert (run.code, run.timed_out) == (3, False) and run.wall_s > 0
    assert (tmp_path / "exit.log").read_text().split() == ["to", "stdout", "to", "stderr"]

    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `&` in a script: the child must not inherit it
    try:
        with open(tmp_path / "limit.log", "w") as log:
            run = run_script(script, ["hang", str(tmp_path / "limit.pid")], log, limit_s=0.5)
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert run.timed_out and run.code not in (0, -signal.SIGKILL)  # ended by the SIGINT, not the SIGKILL after it

    if not Path("/proc").is_dir():
        pytest.skip("reads /proc to see which processes are alive")
    pid_file = tmp_path / "helper.pid"

    def ctrl_c_once_the_helper_runs():
        while not pid_file.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C sends this process (not the child's session)

    threading.Thread(target=ctrl_c_once_the_helper_runs, daemon=True).start()
    with open(tmp_path / "ctrl_c.log", "w") as log, pytest.raises(KeyboardInterrupt):
        run_script(script, ["hang", str(pid_file)], log)
    helper = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # SIGKILL is sent before run_script returns; its delivery is not instant
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)  # the helper ignored SIGINT and was killed with its group
