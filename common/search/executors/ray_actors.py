"""Ray: one actor per slot (worker_setup once per actor), on a local Ray started here or an existing cluster.

The executor replaces dead actors itself (max_restarts=0, max_task_retries=0) instead of Ray's restarts/retries, so
that attempts are counted per trial and reported in `where`, the lost-trial error reads as for local workers, and a
crash loop in worker_setup is bounded.
"""
import os
import sys
import time

from common.config import ConfigError
from common.failures import failure_reason
from common.search.executors.workers import Slot, WorkerExecutor, run_one, set_up, worker_threads


class TrialActor:
    """Body of a Ray actor: worker_setup once in the constructor, then one worker_fn call per run()."""

    def __init__(self, worker_setup, worker_fn, setup_args, threads):
        import ray

        gpu_ids = ray.get_gpu_ids()  # Ray sets CUDA_VISIBLE_DEVICES to these, so torch sees them as cuda:0...
        self.worker_fn = worker_fn
        # setup_args: resolved from the object store; a setup error is reported by ready() (a raising constructor
        # would only kill the actor)
        self.state, self.ready_message = set_up(worker_setup, setup_args, "cuda:0" if gpu_ids else "cpu", threads)
        if gpu_ids and self.ready_message[0] == "ready":
            self.ready_message[1]["gpu_ids"] = [str(g) for g in gpu_ids]

    def ready(self):
        return self.ready_message

    def run(self, key, task):
        return run_one(self.worker_fn, key, task, self.state)


class RaySlot(Slot):
    def __init__(self, index):
        super().__init__(index)
        self.actor = None

    @property
    def name(self):
        return f"Ray worker {self.index}"


class RayExecutor(WorkerExecutor):
    """One Ray actor per slot, each reserving `threads` CPUs and 1/trials_per_gpu GPU when the cluster has GPUs.

    threads 0: as for local workers, the cores split between the workers -- this machine's cores for a Ray started
    here, the cluster's CPUs for RAY_ADDRESS (at least 1 each); each actor sets torch to as many threads.

    setup_args goes into the object store once (ray.put); each actor reads it from there (numpy arrays zero-copy
    on the same node), so pass large arrays in setup_args rather than paths that other nodes lack.
    """

    def __init__(self, *, worker_setup, worker_fn, setup_args, settings):
        super().__init__(settings)
        import ray  # only here: the local executor must work without Ray

        self._ray, self._owns_ray, self._refs = ray, False, {}  # _refs: ObjectRef -> (slot, "ready" or "run")
        if settings.device not in ("auto", "cuda", "cpu"):
            raise ConfigError(f"device {settings.device!r} with Ray: use auto, cuda or cpu (Ray assigns the GPUs)")
        if not ray.is_initialized():
            if settings.ray_address is None:  # a private local Ray; workers import what this process imports
                threads = worker_threads(settings.threads, settings.workers)  # this machine's cores split
                env = settings.ray_runtime_env or {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
                ray.init(num_cpus=settings.workers * threads, include_dashboard=False, runtime_env=env)
            else:
                ray.init(address=settings.ray_address, runtime_env=settings.ray_runtime_env)
            self._owns_ray = True
        self._launch(lambda: self._plan(settings, (worker_setup, worker_fn, setup_args)))
        self.log(f"executor: {settings.workers} Ray actors, {self.threads} CPUs and {self._num_gpus:g} GPU each, "
                 f"cluster {ray.cluster_resources().get('CPU', 0):g} CPUs / {self._gpus:g} GPUs")

    def _plan(self, settings, job):
        """The actors' resources from the cluster's; returns the slots."""
        ray, workers = self._ray, settings.workers
        self.threads = worker_threads(settings.threads, workers, cores=ray.cluster_resources().get("CPU", 1))
        self._gpus = ray.cluster_resources().get("GPU", 0) if settings.device != "cpu" else 0
        if settings.device == "cuda" and not self._gpus:
            raise ConfigError("device 'cuda' with Ray: the cluster has no GPUs; use auto or cpu")
        self._num_gpus = 1 / settings.trials_per_gpu if self._gpus else 0
        if self._gpus and workers > self._gpus * settings.trials_per_gpu:
            self.log(f"executor: {workers} workers but room for {int(self._gpus * settings.trials_per_gpu)} at "
                     f"{settings.trials_per_gpu} per GPU; the rest wait for GPUs")
        self._actor = ray.remote(TrialActor).options(num_cpus=self.threads, num_gpus=self._num_gpus, max_restarts=0,
                                                     max_task_retries=0, max_concurrency=1)
        worker_setup, worker_fn, setup_args = job
        self._setup = (worker_setup, worker_fn, ray.put(setup_args), self.threads)
        return [RaySlot(i) for i in range(workers)]

    def _start(self, slot):
        slot.actor = self._actor.remote(*self._setup)
        slot.ready, slot.key = False, None
        self._refs[slot.actor.ready.remote()] = (slot, "ready")

    def _send(self, slot, key, task):
        self._refs[slot.actor.run.remote(key, task)] = (slot, "run")
        return True

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
                    self._replace_actor(slot, f"ready() raised {type(cause).__name__}: {cause}", done)
                else:  # run() itself failed (e.g. the result would not pickle): that trial fails
                    key, slot.key = slot.key, None
                    self._failed(done, key, failure_reason(cause), str(exc), slot.where(self._trials[key].attempts))
                continue
            except ray.exceptions.RayError as exc:  # the actor died: killed, OOM-killed, its node lost (an actor
                # that died idle is noticed only by the next trial sent to it, which then counts one attempt)
                self._replace_actor(slot, type(exc).__name__, done)
                continue
            self._on_message(slot, message, done)

    def _replace_actor(self, slot, reason, done):
        self._ray.kill(slot.actor, no_restart=True)
        self._replace(slot, reason, done)

    def _stop_workers(self):
        """Kill the actors; shut Ray down when this executor started it."""
        for slot in self._slots:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone, or never started
                pass
        self._refs.clear()
        if self._owns_ray:
            self._ray.shutdown()
