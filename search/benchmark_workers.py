"""Search throughput: trials per hour with one trial at a time against several in flight, through search.py itself.

    cd search && python benchmark_workers.py                # CPU: WORKERS=1 (all cores) vs WORKERS=2 (cores split)
    cd search && python benchmark_workers.py --PRESET=gpu   # CUDA: 1, 2 and 4 trials per GPU, the paper's network

Each row runs search.py as a process of its own (common/child.py) in a temporary run folder with the same
N_TRIALS random-search proposals (ALGO='random' draws trial n's genotype from (SEED, n) alone, so every row
trains the same candidates) and times the whole process: Python and torch start-up, the cached images, worker
start-up, each proposal's budget check, the training, the result files. ROW_LIMIT_S stops a row's search and
its workers (as a Ctrl-C would, then SIGKILL); its finished trials are in its run folder. WORKERS = n x
devices (n trials per GPU, or n on the CPU), each worker given CORES // WORKERS threads (or THREADS);
WORKERS=1 runs the trials inline in search.py's own process. With ROUNDS > 1 the settings run again in
reversed order every other round, so a change in a shared machine's load reaches every setting alike, and each
setting's row adds up its rounds. On CUDA the rows also show the peak GPU memory of a trial: torch's peak
allocation (the records' `peak_gpu_mem_mb`, which every trial on CUDA writes) and the device memory in use
(NVML, every process's context included) divided by the trials sharing the GPU. The last line printed is one
JSON object.
"""
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.child import run_script  # noqa: E402
from common.config import (  # noqa: E402
    ConfigError,
    check_number,
    check_tuple,
    config_names,
    configure,
    format_config,
    run_cli,
)
from common.contrastive.trainer import check_amp  # noqa: E402
from common.data.images import cache_path_for  # noqa: E402
from common.data.search_images import load_images  # noqa: E402
from common.device import device_preset, pick_device, runtime  # noqa: E402
from common.machine import cpu_name, usable_cores  # noqa: E402
from common.runs import read_jsonl  # noqa: E402

# -----------------------------------------------------------------------------
# what every row runs (search.py's settings of the same names; the PRESET for the device may change them)
N_TRIALS = 8  # finished trials per row: the same random-search proposals in every row
EPOCHS = 1  # per trial
INIT_CHANNELS = 32  # C
LAYERS = 8  # cells; reductions at 1/3 and 2/3 depth
BATCH_SIZE = 256  # source images per step (each gives 3 views)
IMAGE_SIZE = 32  # px, side of the cached images and of every view
N_IMAGES = 25331  # images searched = memory bank rows (ISIC 2019's training set); synthetic unless DATA_DIR
DATA_DIR = None  # a folder of real images (a seeded subset of N_IMAGES of them); None = synthetic noise images
BUDGET_NETWORK = (58, 24, 224, 8)  # search.py's: the eval network (C, cells, px, classes) each proposal is sized as
AMP = "auto"  # 'auto' (bf16 on CUDA, off on CPU) | 'bf16' | 'fp16' (GPU only; loss-scaled) | 'off'
# what is compared
PER_DEVICE = (1, 2, 4)  # trials in flight per device, one row each: WORKERS = n x GPUs on CUDA, n on the CPU
CORES = None  # CPU cores shared out: a row with WORKERS=w gives each worker CORES // w threads (None = all usable)
THREADS = None  # CPU threads of every worker in every row instead (e.g. 1: the same per-trial threads on both sides)
ROUNDS = 1  # times each setting runs, the order reversing every round; a row adds up its rounds
ROW_LIMIT_S = None  # s; a run still going then is stopped and rated on its finished trials (None = no limit)
MEMORY_POLL_S = 0.2  # s between NVML readings of the GPU memory in use (CUDA only)
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' (then every worker on that one GPU)
SEED = 0  # the proposals, the synthetic images and every candidate's training
KEEP_DIR = None  # a folder to keep each row's run folder and search log in; None = a temporary folder, removed
PRESET = "auto"  # 'auto' ('gpu' on a CUDA device, else 'cpu') | 'cpu' | 'gpu'
# -----------------------------------------------------------------------------
PRESETS = {
    "gpu": {},  # the constants above: the paper's network (C=32, 8 cells, 32 px, batch 256), 1 epoch per trial
    # sized for about 3-5 minutes in all on a busy 2-core CPU: a small network (C=8, 5 cells) on 2 batches
    "cpu": dict(N_TRIALS=4, INIT_CHANNELS=8, LAYERS=5, BATCH_SIZE=32, N_IMAGES=64, PER_DEVICE=(1, 2)),
}
_MB = 2**20  # bytes (not a setting)
_SEARCH = Path(__file__).with_name("search.py")


class SearchFailed(RuntimeError):
    """A row's search.py ended with an error (the end of its log is printed first)."""


# ---- configuration -----------------------------------------------------------------------------------------
def resolve_preset(argv):
    """PRESET 'auto' -> 'gpu' when DEVICE resolves to a CUDA device, else 'cpu'; returns argv naming it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return device_preset(argv, {k: globals()[k] for k in config_names(globals())}, "gpu")


def check_settings(cfg):
    for name in ("N_TRIALS", "EPOCHS", "INIT_CHANNELS", "LAYERS", "BATCH_SIZE"):
        check_number(cfg, name, 1, integer=True)
    check_number(cfg, "IMAGE_SIZE", 8, integer=True)
    check_number(cfg, "N_IMAGES", 2, integer=True)
    check_number(cfg, "CORES", 1, integer=True, none_ok=True)
    check_number(cfg, "THREADS", 1, integer=True, none_ok=True)
    check_number(cfg, "ROUNDS", 1, integer=True)
    check_number(cfg, "ROW_LIMIT_S", 0, lo_open=True, none_ok=True)
    check_number(cfg, "MEMORY_POLL_S", 0, lo_open=True)
    check_tuple(cfg, "BUDGET_NETWORK", 4, 1, example=(58, 24, 224, 8))
    check_amp(cfg["AMP"])
    per = cfg["PER_DEVICE"]
    if not per or len(set(per)) < len(per) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                       for n in per):
        raise ConfigError(f"--PER_DEVICE={per!r}: needs different whole numbers >= 1, e.g. (1, 2, 4)")


def device_count(device, name):
    """Devices the local executor spreads workers over: every GPU for DEVICE 'auto'/'cuda', else the one named."""
    return torch.cuda.device_count() if device.type == "cuda" and name in ("auto", "cuda") else 1


# ---- data ----------------------------------------------------------------------------------------------------
def write_synthetic_images(folder, n, size, seed):
    """n seeded noise PNGs of size x size px (a trial's speed does not depend on what the pixels show)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img_{i:06d}.png")
    return folder


def search_argv(cfg, data_dir, run_dir, workers, threads):
    """search.py's command line for one row (PRESET=paper: nothing but these settings and its defaults)."""
    argv = [f"--DATA_DIR={data_dir}", f"--OUT_DIR={run_dir}", f"--N_TRIALS={cfg['N_TRIALS']}", "--ALGO=random",
            "--SCORE=nce", "--REPEATS=1", f"--EPOCHS={cfg['EPOCHS']}", f"--INIT_CHANNELS={cfg['INIT_CHANNELS']}",
            f"--LAYERS={cfg['LAYERS']}", f"--BATCH_SIZE={cfg['BATCH_SIZE']}", f"--IMAGE_SIZE={cfg['IMAGE_SIZE']}",
            f"--BUDGET_NETWORK={tuple(cfg['BUDGET_NETWORK'])}", f"--WORKERS={workers}", "--EXECUTOR=local",
            f"--THREADS={threads}", f"--DEVICE={cfg['DEVICE']}", f"--AMP={cfg['AMP']}", f"--SEED={cfg['SEED']}",
            "--PRESET=paper"]
    if cfg["DATA_DIR"] is not None:
        argv.append(f"--MAX_IMAGES={cfg['N_IMAGES']}")
    return argv


# ---- measuring one row -----------------------------------------------------------------------------------------
class GpuMemoryPoller:
    """The most memory in use on one GPU while the block runs, all processes and contexts included (NVML).

    peak_mb is None where NVML (the nvidia-ml-py package) or the device cannot be read.
    """

    def __init__(self, device, interval):
        self.interval, self.peak_mb, self.start_mb = interval, None, None
        self._stop, self._thread, self._handle = threading.Event(), None, None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            # NVML counts GPUs as the machine does; with CUDA_VISIBLE_DEVICES set the indices may differ
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self._read = lambda: pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / _MB
        except Exception:  # no NVML here: the rows go without this column
            self._handle = None

    def _poll(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._read())

    def __enter__(self):
        if self._handle is not None:
            self.start_mb = self.peak_mb = self._read()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._read())
        return False


def run_once(cfg, data_dir, work, per_device, n_devices, cores, device, round_):
    """One search.py process with WORKERS = per_device x n_devices; returns this run's figures."""
    workers = per_device * n_devices
    threads = cfg["THREADS"] or max(1, cores // workers)
    name = f"workers_{workers}" + (f"_round_{round_ + 1}" if cfg["ROUNDS"] > 1 else "")
    run_dir, log_file = work / name, work / f"{name}.log"
    argv = search_argv(cfg, data_dir, run_dir, workers, threads)
    load_before = os.getloadavg()[0]
    with open(log_file, "w") as log, GpuMemoryPoller(device, cfg["MEMORY_POLL_S"]) as memory:
        child = run_script(_SEARCH, argv, log, limit_s=cfg["ROW_LIMIT_S"])
    cut = f"stopped after {cfg['ROW_LIMIT_S']} s" if child.timed_out else None
    if not child.timed_out and child.code in (130, -signal.SIGINT):  # someone stopped the search itself
        raise KeyboardInterrupt
    if not child.timed_out and child.code != 0:
        print(f"search.py failed with WORKERS={workers}; the end of its log ({log_file}):\n"
              + "".join(log_file.read_text().splitlines(True)[-30:]), file=sys.stderr)
        raise SearchFailed(f"search.py failed with WORKERS={workers} (exit status {child.code}); see {log_file}")
    records = read_jsonl(run_dir / "trials.jsonl") if (run_dir / "trials.jsonl").exists() else []
    ok = [r for r in records if r["status"] == "ok"]
    seconds = [r["seconds"] for r in records if r["status"] in ("ok", "fail")]
    run = {"workers": workers, "per_device": per_device, "threads": threads, "round": round_ + 1, "ok": len(ok),
           "failed": sum(r["status"] == "fail" for r in records), "wall_s": round(child.wall_s, 2),
           "trial_s": round(sum(seconds), 2), "trials_run": len(seconds),
           "load": round((load_before + os.getloadavg()[0]) / 2, 2), "cut": cut,
           "genotypes": {str(r["trial"]): r["genotype"] for r in ok}}
    if device.type == "cuda":
        run["peak_alloc_mb"] = peak_alloc_mb(records)
        if memory.peak_mb is not None:  # above the level before the search started (no trial runs in this process)
            run["gpu_used_mb"] = round((memory.peak_mb - memory.start_mb) / per_device, 1)
    return run


def combine(runs):
    """One setting's row from its rounds: trials and seconds added up, so trials/h is over all of them."""
    first, ok, wall = runs[0], sum(r["ok"] for r in runs), sum(r["wall_s"] for r in runs)
    trial_s, trials_run = sum(r["trial_s"] for r in runs), sum(r["trials_run"] for r in runs)
    row = {"workers": first["workers"], "per_device": first["per_device"], "threads": first["threads"],
           "rounds": len(runs), "ok": ok, "failed": sum(r["failed"] for r in runs), "wall_s": round(wall, 1),
           "trials_per_hour": round(ok * 3600 / wall, 1),
           "mean_trial_s": round(trial_s / trials_run, 1) if trials_run else None,
           "busy": round(trial_s / (wall * first["workers"]), 3),  # share of the workers' time spent in trials
           "load": round(statistics.mean(r["load"] for r in runs), 2),
           "cut": "; ".join(r["cut"] for r in runs if r["cut"]) or None}
    for key in ("peak_alloc_mb", "gpu_used_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if key in first:
            row[key] = max(values) if values else None
    return row


def peak_alloc_mb(records):
    """torch's peak allocation of the row's largest trial: the records' peak_gpu_mem_mb (None when none has one)."""
    marked = [r["peak_gpu_mem_mb"] for r in records if r.get("peak_gpu_mem_mb") is not None]
    return round(max(marked), 1) if marked else None


# ---- report --------------------------------------------------------------------------------------------------
def same_candidates(runs):
    """True when every trial number that finished in two runs trained the same genotype in both."""
    first = {}
    for run in runs:
        for trial, genotype in run["genotypes"].items():
            if first.setdefault(trial, genotype) != genotype:
                return False
    return True


def print_table(result, log=print):
    r = result
    gpu = f" | {r['gpu_name']} x {r['n_devices']}" if r["device"].startswith("cuda") else ""
    log(f"\nmachine: {r['cpu']} | {r['cores']} cores | torch {r['torch']} ({r['torch_threads']} threads by default) | "
        f"device {r['device']}{gpu} | load average {r['load_start']:.1f} at the start, {r['load_end']:.1f} at the end")
    log(f"each row: a search.py process, {r['n_trials']} random-search trials x {r['epochs']} epoch(s), "
        f"C={r['init_channels']}, {r['layers']} cells, batch {r['batch_size']}, {r['n_images']} images of "
        f"{r['image_size']} px, budget network {tuple(r['budget_network'])}; the same candidates in every row: "
        f"{'yes' if r['same_candidates'] else 'NO'}" + (f"; {r['rounds']} rounds, the order reversed every other "
                                                         "one, each row adds up its rounds" if r["rounds"] > 1 else ""))
    log("trials/h = finished trials / the whole search.py process (start-up, budget checks, result files included); "
        "busy = trial time / (wall x workers); ratio = trials/h / the first row's")
    cuda = r["device"].startswith("cuda")
    head = (f"{'workers':>7} {'per dev':>7} {'threads':>7} {'trials':>6} {'wall s':>7} {'trials/h':>9} "
            f"{'trial s':>7} {'busy':>5} {'ratio':>5} {'load':>5}")
    if cuda:
        head += f" {'alloc MB/trial':>14} {'GPU MB/trial':>12}"
    log(head + "\n" + "-" * len(head))
    for row in r["rows"]:
        mark = "*" if row["cut"] else ""
        line = (f"{row['workers']:>7} {row['per_device']:>7} {row['threads']:>7} {row['ok']:>6} {row['wall_s']:>7.1f} "
                f"{row['trials_per_hour']:>8.1f}{mark:1} {_num(row['mean_trial_s'], 7)} {row['busy']:>5.0%} "
                f"{_num(row['ratio'], 5, 2)} {row['load']:>5.1f}")
        if cuda:
            line += f" {_num(row.get('peak_alloc_mb'), 14, 0)} {_num(row.get('gpu_used_mb'), 12, 0)}"
        log(line)
    if any(row["cut"] for row in r["rows"]):
        log(f"* stopped at ROW_LIMIT_S={r['row_limit_s']} s: rated on the trials finished by then (an underestimate)")
    if cuda:
        log("alloc = the largest torch.cuda.max_memory_allocated of a trial (its record's peak_gpu_mem_mb), the "
            "images on the GPU included")
        log("GPU = NVML memory in use above its level before the run, / trials per GPU: the CUDA contexts and caches "
            "of every process of the search included")


def _num(value, width, digits=1):
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), resolve_preset(argv), PRESETS)
    check_settings(cfg)
    device = pick_device(cfg["DEVICE"])
    runtime(str(device), cfg["AMP"])  # fp16 on a device without it: refused here, not in every row's search
    n_devices = device_count(device, cfg["DEVICE"])
    cores = cfg["CORES"] or usable_cores()
    if cfg["DATA_DIR"] is not None and not Path(cfg["DATA_DIR"]).expanduser().is_dir():
        raise ConfigError(f"DATA_DIR {cfg['DATA_DIR']} is not a folder")
    keep = None if cfg["KEEP_DIR"] is None else Path(cfg["KEEP_DIR"]).expanduser().resolve()  # the searches run in search/
    if keep is not None and keep.exists() and any(keep.iterdir()):  # search.py would resume the runs found there
        raise ConfigError(f"KEEP_DIR {keep} is not empty; name a new or empty folder")
    print(f"config:\n{format_config(cfg, from_preset)}")

    with contextlib.ExitStack() as stack:
        if keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="benchmark_workers_")))
        else:
            work = keep
            work.mkdir(parents=True, exist_ok=True)
        # ---- data: decoded into search.py's cache once, so no row pays for it -----------------------------------
        if cfg["DATA_DIR"] is None:
            data_dir = write_synthetic_images(work / "images", cfg["N_IMAGES"], cfg["IMAGE_SIZE"], cfg["SEED"])
            stack.callback(cache_path_for(data_dir, cfg["IMAGE_SIZE"]).unlink, missing_ok=True)
        else:
            data_dir = Path(cfg["DATA_DIR"]).expanduser().resolve()
        load_images({"DATA_DIR": str(data_dir), "MAX_IMAGES": cfg["N_IMAGES"] if cfg["DATA_DIR"] else None,
                     "SEED": cfg["SEED"], "IMAGE_SIZE": cfg["IMAGE_SIZE"], "DECODE_WORKERS": None}, work)

        # ---- measure: every trials-per-device setting once per round, the order reversed every other round ---------
        load_start, runs = os.getloadavg()[0], []
        for round_ in range(cfg["ROUNDS"]):
            for per_device in cfg["PER_DEVICE"][:: 1 if round_ % 2 == 0 else -1]:
                print(f"run: {per_device * n_devices} worker(s), round {round_ + 1}/{cfg['ROUNDS']} ...", flush=True)
                run = run_once(cfg, data_dir, work, per_device, n_devices, cores, device, round_)
                runs.append(run)
                print(f"run: {run['workers']} worker(s), {run['threads']} thread(s) each: {run['ok']} trials in "
                      f"{run['wall_s']:.0f} s = {run['ok'] * 3600 / run['wall_s']:.0f} trials/h"
                      + (f" ({run['cut']})" if run["cut"] else ""), flush=True)
        load_end = os.getloadavg()[0]

    # ---- report: one row per setting, ratios against the first (PER_DEVICE's first entry, 1 by default) ---------
    rows = [combine([r for r in runs if r["per_device"] == n]) for n in cfg["PER_DEVICE"]]
    base = rows[0]["trials_per_hour"]
    for row in rows:
        row["ratio"] = round(row["trials_per_hour"] / base, 3) if base else None
    result = {
        "device": str(device), "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "n_devices": n_devices, "cpu": cpu_name(), "cores": cores, "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "load_start": round(load_start, 2), "load_end": round(load_end, 2),
        "preset": cfg["PRESET"], "n_trials": cfg["N_TRIALS"], "epochs": cfg["EPOCHS"],
        "init_channels": cfg["INIT_CHANNELS"], "layers": cfg["LAYERS"], "batch_size": cfg["BATCH_SIZE"],
        "image_size": cfg["IMAGE_SIZE"], "n_images": cfg["N_IMAGES"], "budget_network": list(cfg["BUDGET_NETWORK"]),
        "amp": cfg["AMP"], "row_limit_s": cfg["ROW_LIMIT_S"], "rounds": cfg["ROUNDS"],
        "same_candidates": same_candidates(runs), "rows": rows,
        "runs": [{k: v for k, v in run.items() if k != "genotypes"} for run in runs],
    }
    print_table(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_cli(main, (ConfigError, SearchFailed))
