"""Parallel trial executors: each trial reported once, setup once per worker, dead workers replaced, no orphans."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common.config import ConfigError
from common.search.executors import ExecutorSettings, Finished, make_executor, worker_devices, worker_threads

LIMIT_S = 60  # a test that waits longer than this for its trials has hung


# -- the toy worker: module-level so that spawn (by reference) and Ray (by value) can pickle it --

def toy_setup(setup_args, device, threads):
    """Loads the value once per worker (from the .npy path, or the array itself under Ray) and counts the call."""
    array = np.load(setup_args["npy"]) if "npy" in setup_args else setup_args["array"]
    with open(setup_args["count_file"], "a") as f:
        f.write(f"{os.getpid()} {device} {threads}\n")
    return {"value": float(array[0])}


def toy_fn(task, state):
    if "pid_file" in task:  # tells the test which process to kill
        with open(task["pid_file"], "w") as f:
            f.write(str(os.getpid()))
    if "die_once" in task and not os.path.exists(task["die_once"]):
        with open(task["die_once"], "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if task.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    if task.get("raise"):
        raise ValueError("bad candidate")
    time.sleep(task.get("sleep", 0.05))
    return {"key": task["key"], "x": state["value"] * task["x"], "pid": os.getpid()}


def failing_setup(setup_args, device, threads):
    raise OSError("no such image cache")


@pytest.fixture
def setup_args(tmp_path):
    np.save(tmp_path / "value.npy", np.array([3.0]))
    return {"npy": str(tmp_path / "value.npy"), "count_file": str(tmp_path / "setups.txt")}


def setups(setup_args):
    """One line per worker_setup call: pid, device, threads."""
    path = setup_args["count_file"]
    return [line.split() for line in open(path)] if os.path.exists(path) else []


def local(setup_args, workers, logs=None, **kwargs):
    log = logs.append if logs is not None else (lambda message: None)
    return make_executor("local", ExecutorSettings(workers=workers, device="cpu", log=log, **kwargs),
                         worker_setup=toy_setup, worker_fn=toy_fn, setup_args=setup_args)


def collect(ex, n, done=None, until=None):
    """Poll until n trials finished (or until() is true); a key reported twice fails the test.

    Like the search driver, the test keeps calling poll(): workers get their tasks only inside submit() and poll().
    """
    done, start = {} if done is None else done, time.monotonic()
    while not (until() if until else len(done) >= n):
        assert time.monotonic() - start < LIMIT_S, f"only {sorted(done)} finished in {LIMIT_S} s"
        for f in ex.poll(timeout=0.05 if until else 1.0):
            assert isinstance(f, Finished) and f.key not in done, f"trial {f.key} reported twice"
            done[f.key] = f
    if not until:
        assert ex.poll(timeout=0) == [] and ex.in_flight == set()  # nothing more comes back
    return done


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pid_in(path):
    """The pid a task wrote to `path`, None before it has."""
    text = open(path).read() if os.path.exists(path) else ""
    return int(text) if text else None


def test_local_runs_each_task_once_with_setup_once_per_worker(setup_args):
    with local(setup_args, workers=2) as ex:
        assert ex.capacity == 2 and ex.poll(timeout=0) == []  # nothing in flight: no wait
        for key in range(4):
            ex.submit(key, {"key": key, "x": key + 1})
        assert ex.in_flight == {0, 1, 2, 3}
        with pytest.raises(ValueError, match="already in flight"):
            ex.submit(0, {"key": 0, "x": 1})
        done = collect(ex, 4)
    assert {k: f.result["x"] for k, f in done.items()} == {0: 3.0, 1: 6.0, 2: 9.0, 3: 12.0}
    assert all(f.error is None and f.where["attempts"] == 1 and f.where["device"] == "cpu" for f in done.values())
    assert {f.where["node"] for f in done.values()} == {socket.gethostname()}
    lines = setups(setup_args)
    # each worker set up once; every task ran in one of them (which one takes which task depends on which is ready
    # first: a worker still starting may get none of four quick tasks)
    assert len(lines) == 2 and len({line[0] for line in lines}) == 2
    assert {str(f.where["pid"]) for f in done.values()} <= {line[0] for line in lines}
    assert {f.where["worker"] for f in done.values()} <= {0, 1} and os.getpid() not in {f.result["pid"] for f in done.values()}
    assert [line[1:] for line in lines] == [["cpu", str(worker_threads(0, 2))]] * 2


def test_a_killed_worker_is_replaced_and_its_trial_resubmitted(setup_args, tmp_path):
    logs = []
    with local(setup_args, workers=1, logs=logs) as ex:  # one worker: the trial can only go to the replacement
        ex.submit(0, {"key": 0, "x": 1, "sleep": 1.5, "pid_file": str(tmp_path / "pid0")})
        ex.submit(1, {"key": 1, "x": 2})
        done = collect(ex, 2, until=lambda: pid_in(tmp_path / "pid0"))
        killed = pid_in(tmp_path / "pid0")
        os.kill(killed, signal.SIGKILL)  # what the OOM killer does
        done = collect(ex, 2, done)
    assert done[0].error is None and done[0].result["x"] == 3.0 and done[0].where["attempts"] == 2
    assert done[0].where["pid"] != killed and done[1].where["attempts"] == 1
    assert [int(line[0]) for line in setups(setup_args)] == [killed, done[0].where["pid"]]  # setup ran again
    assert any("died during trial 0" in line and "SIGKILL" in line for line in logs)


def test_a_trial_whose_worker_always_dies_is_lost_after_max_resubmits(setup_args):
    with local(setup_args, workers=1, max_resubmits=1) as ex:
        ex.submit(7, {"key": 7, "x": 1, "die": True})
        lost = collect(ex, 1)[7]
        ex.submit(8, {"key": 8, "x": 1})  # the executor still works on a fresh worker
        after = collect(ex, 1)[8]
    assert lost.result is None and lost.where["attempts"] == 2
    assert lost.error == "worker died 2 times (exit code -9 (SIGKILL), exit code -9 (SIGKILL))"
    assert after.error is None and after.result["x"] == 3.0 and len(setups(setup_args)) == 3


def test_an_exception_in_worker_fn_fails_the_trial_and_keeps_the_worker(setup_args):
    logs = []
    with local(setup_args, workers=1, logs=logs) as ex:
        ex.submit(0, {"key": 0, "x": 1, "raise": True})
        failed = collect(ex, 1)[0]
        ex.submit(1, {"key": 1, "x": 1})
        ok = collect(ex, 1)[1]
    assert failed.result is None and failed.error == "ValueError: bad candidate" and failed.where["attempts"] == 1
    assert ok.error is None and ok.where["pid"] == failed.where["pid"] and len(setups(setup_args)) == 1
    assert any("Traceback" in line and "bad candidate" in line for line in logs)  # the traceback reaches the log


def test_a_failing_worker_setup_stops_the_driver(setup_args):
    with pytest.raises(RuntimeError, match="(?s)worker_setup failed in worker 0.*OSError: no such image cache"):
        with make_executor("local", ExecutorSettings(workers=1, device="cpu", log=lambda m: None),
                           worker_setup=failing_setup, worker_fn=toy_fn, setup_args=setup_args) as ex:
            ex.submit(0, {"key": 0, "x": 1})
            collect(ex, 1)


def test_close_and_ctrl_c_leave_no_child_processes(setup_args, tmp_path):
    import multiprocessing

    with pytest.raises(KeyboardInterrupt):
        with local(setup_args, workers=2) as ex:
            ex.submit(0, {"key": 0, "x": 1, "sleep": 60, "pid_file": str(tmp_path / "busy")})
            ex.submit(1, {"key": 1, "x": 1})
            done = {}
            collect(ex, 2, done, until=lambda: 1 in done and pid_in(tmp_path / "busy"))
            busy = pid_in(tmp_path / "busy")  # trial 1 finished, trial 0 keeps its worker busy
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the driver waits
    idle = done[1].where["pid"]
    assert not alive(busy) and not alive(idle)  # the busy one terminated, the idle one stopped
    assert multiprocessing.active_children() == []


CTRL_C_DRIVER = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from common.search.executors import ExecutorSettings, make_executor
from test_executors import toy_fn, toy_setup
if __name__ == "__main__":
    with make_executor("local", ExecutorSettings(workers=2, device="cpu", log=lambda m: None),
                       worker_setup=toy_setup, worker_fn=toy_fn, setup_args={args!r}) as ex:
        for key in range(2):
            ex.submit(key, {{"key": key, "x": 1, "sleep": 60}})
        while True:
            ex.poll()
"""


def test_ctrl_c_in_a_terminal_stops_driver_and_workers_quickly(setup_args, tmp_path):
    tests = os.path.dirname(os.path.abspath(__file__))
    (tmp_path / "driver.py").write_text(CTRL_C_DRIVER.format(root=os.path.dirname(tests), tests=tests, args=setup_args))
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        start = time.monotonic()
        while len(setups(setup_args)) < 2:  # both workers set up and busy with a 60 s trial
            assert time.monotonic() - start < LIMIT_S and driver.poll() is None, driver.stdout.read()
            time.sleep(0.1)
        time.sleep(0.3)
        start = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        out, _ = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode != 0 and "KeyboardInterrupt" in out and time.monotonic() - start < 15
    assert not any(alive(int(line[0])) for line in setups(setup_args))


def test_inline_runs_each_trial_when_polled_and_a_raise_fails_only_that_trial():
    from common.failures import DriverError
    from common.search.executors import InlineExecutor

    ran = []

    def run(task):
        ran.append(task["key"])
        if task.get("driver"):
            raise DriverError("time limit")  # the driver's own error: never a candidate's failure
        return toy_fn(task, {"value": 3.0})

    with InlineExecutor(run, "cpu", log=lambda m: None) as ex:
        ex.submit(0, {"key": 0, "x": 1, "sleep": 0})
        ex.submit(1, {"key": 1, "x": 1, "raise": True})
        assert ran == [] and ex.in_flight == {0, 1}  # nothing runs before the driver polls
        done = collect(ex, 2)
        ex.submit(2, {"key": 2, "driver": True})
        with pytest.raises(DriverError):
            ex.poll()
    assert done[0].result["x"] == 3.0 and done[0].where == {"worker": 0, "node": socket.gethostname(),
                                                            "device": "cpu", "pid": os.getpid(), "attempts": 1}
    assert done[1].result is None and done[1].error == "ValueError: bad candidate"
    with pytest.raises(RuntimeError, match="closed"):
        ex.submit(3, {"key": 3})


def test_devices_threads_and_kinds():
    assert worker_devices("cpu", 3) == ["cpu", "cpu", "cpu"]
    assert worker_threads(3, 8) == 3 and worker_threads(0, 10**6) == 1
    with pytest.raises(ConfigError, match="choose one of local, ray"):
        make_executor("threads", ExecutorSettings(workers=1), worker_setup=toy_setup, worker_fn=toy_fn, setup_args={})
    with pytest.raises(ConfigError, match="workers=0: need at least 1"):
        ExecutorSettings(workers=0)
    code = "import sys, common.search.executors; assert 'ray' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.slow
def test_ray_runs_tasks_in_actors_and_resubmits_a_killed_one(setup_args, tmp_path):
    pytest.importorskip("ray")
    args = {"array": np.load(setup_args["npy"]), "count_file": setup_args["count_file"]}  # via the object store
    logs = []
    with make_executor("ray", ExecutorSettings(workers=2, device="auto", log=logs.append),
                       worker_setup=toy_setup, worker_fn=toy_fn, setup_args=args) as ex:
        assert ex.capacity == 2
        for key in range(4):
            task = {"key": key, "x": key + 1}
            if key == 2:
                task["die_once"] = str(tmp_path / "died")
            ex.submit(key, task)
        done = collect(ex, 4)
    assert {k: f.result["x"] for k, f in done.items()} == {0: 3.0, 1: 6.0, 2: 9.0, 3: 12.0}
    assert [done[k].where["attempts"] for k in range(4)] == [1, 1, 2, 1]
    assert all(f.where["node"] == socket.gethostname() and f.where["device"] == "cpu" for f in done.values())
    died = pid_in(tmp_path / "died")
    assert done[2].where["pid"] != died and os.getpid() not in {f.where["pid"] for f in done.values()}
    assert str(died) in {line[0] for line in setups(setup_args)}  # worker_setup ran in the actor that died
    assert any("resubmitting" in line for line in logs)


# -- the Ray executor against a fake `ray` module: its bookkeeping without a cluster (actors run synchronously) --


class _FakeRay:
    """Just enough of Ray's API for RayExecutor: actors are objects in this process, remote calls run at once."""

    class exceptions:  # noqa: N801  (ray.exceptions)
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            def __init__(self, cause):
                super().__init__(f"task raised {cause!r}")
                self.cause = cause

    def __init__(self, cpus=None, initialized=False, fail_ready=0):
        self.cpus, self.initialized, self.fail_ready = cpus, initialized, fail_ready
        self.init_kwargs, self.options, self.killed = None, [], 0

    # cluster
    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.initialized, self.init_kwargs = True, kwargs
        if self.cpus is None:
            self.cpus = kwargs.get("num_cpus", 1)

    def shutdown(self):
        self.initialized = False

    def cluster_resources(self):
        return {"CPU": self.cpus}

    def get_gpu_ids(self):
        return []

    # objects and tasks
    def put(self, value):
        return value

    def remote(self, cls):
        fake = self

        class Remote:
            def options(self, **kwargs):
                fake.options.append(kwargs)
                return self

            def remote(self, *args):
                return _FakeActor(fake, cls(*args))

        return Remote()

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs[:num_returns]), list(refs[num_returns:])

    def get(self, ref):
        if ref.method == "ready" and self.fail_ready:
            self.fail_ready -= 1
            raise self.exceptions.RayTaskError(RuntimeError("ready() broke"))
        return ref.value

    def kill(self, actor, no_restart=True):
        self.killed += 1


class _FakeRef:
    def __init__(self, method, value):
        self.method, self.value = method, value


class _FakeActor:
    def __init__(self, ray, instance):
        self._instance = instance

    def __getattr__(self, name):
        method = getattr(self._instance, name)

        class Method:
            def remote(self, *args):
                return _FakeRef(name, method(*args))

        return Method()


@pytest.fixture
def fake_ray(monkeypatch):
    """Install a fake `ray` module; returns a factory: fake_ray(cpus=..., initialized=..., fail_ready=...)."""
    import common.search.executors.workers as W

    threads_set = []
    monkeypatch.setattr(W, "set_threads", lambda threads, device: threads_set.append(threads))  # not this process's

    def install(**kwargs):
        fake = _FakeRay(**kwargs)
        fake.threads_set = threads_set
        monkeypatch.setitem(sys.modules, "ray", fake)
        return fake

    return install


def ray_executor(setup_args, workers, logs, **kwargs):
    args = {"array": np.load(setup_args["npy"]), "count_file": setup_args["count_file"]}
    return make_executor("ray", ExecutorSettings(workers=workers, device="cpu", log=logs.append, **kwargs),
                         worker_setup=toy_setup, worker_fn=toy_fn, setup_args=args)


def test_ray_splits_the_cores_between_trials_like_the_local_executor(fake_ray, setup_args):
    logs = []
    local = fake_ray()  # a private Ray started here: this machine's cores split, as for local workers
    with ray_executor(setup_args, 2, logs) as ex:
        assert ex.threads == worker_threads(0, 2)
    assert local.init_kwargs["num_cpus"] == 2 * worker_threads(0, 2)
    assert {o["num_cpus"] for o in local.options} == {worker_threads(0, 2)}
    assert set(local.threads_set) == {worker_threads(0, 2)}  # each actor sets torch to as many threads
    assert [line[2] for line in setups(setup_args)] == [str(worker_threads(0, 2))] * 2

    cluster = fake_ray(cpus=48, initialized=True)  # RAY_ADDRESS: the cluster's CPUs split
    with ray_executor(setup_args, 4, logs) as ex:
        assert ex.threads == 12 and {o["num_cpus"] for o in cluster.options} == {12}
    small = fake_ray(cpus=3, initialized=True)  # fewer CPUs than workers: still one each
    with ray_executor(setup_args, 4, logs) as ex:
        assert ex.threads == 1
    fixed = fake_ray(cpus=48, initialized=True)  # THREADS set: as given
    with ray_executor(setup_args, 4, logs, threads=3) as ex:
        assert ex.threads == 3 and {o["num_cpus"] for o in fixed.options} == {3}
    assert small.options and any("12 CPUs and 0 GPU each" in line for line in logs)


def test_a_failed_ray_ready_is_handled_like_a_dead_worker(fake_ray, setup_args):
    logs = []
    fake = fake_ray(fail_ready=1)  # the first actor's ready() raises (RayTaskError): it is replaced
    with ray_executor(setup_args, 1, logs) as ex:
        ex.submit(0, {"key": 0, "x": 2})
        done = collect(ex, 1)
    assert done[0].error is None and done[0].result["x"] == 6.0 and done[0].where["attempts"] == 1
    assert fake.killed >= 1 and any("Ray worker 0 died while idle (ready() raised RuntimeError" in m for m in logs)

    fake_ray(fail_ready=10)  # an actor that never gets ready: stops after max_resubmits, no KeyError
    with pytest.raises(RuntimeError, match="died 3 times while not running a trial"):
        with ray_executor(setup_args, 1, logs, max_resubmits=2) as ex:
            ex.submit(0, {"key": 0, "x": 2})
            collect(ex, 1)
