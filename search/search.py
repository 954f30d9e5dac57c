"""Label-free architecture search: TPE (or random search, or regularized evolution) over DARTS cells, scored by a
contrastive NCE loss; optionally with early stopping of poor trials.

    cd search && python search.py                      # demo: built-in synthetic lesions, small preset
    cd search && python search.py --DATA_DIR=/data/ISIC_2019_Training_Input   # paper settings

Any constant below can be overridden as --NAME=value. Results go to OUT_DIR (see README.md).
"""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.arch import genotypes as G  # noqa: E402
from common.config import (  # noqa: E402
    ConfigError,
    answer_config_request,
    check_choice,
    check_number,
    check_tuple,
    configure,
    format_config,
    run_cli,
)
from common.contrastive.trainer import check_amp  # noqa: E402
from common.data.search_images import check_data_dir, load_images  # noqa: E402
from common.device import check_resumed_runtime, runtime  # noqa: E402
from common.memory import StepMemory, check_fits, memory_line  # noqa: E402
from common.runs import mark_finished, new_run_dir, start_run_dir  # noqa: E402
from common.search import results  # noqa: E402
from common.search.early_stop import RULES as _RULES  # noqa: E402
from common.search.early_stop import StopSettings, full_trial_epochs  # noqa: E402
from common.search.early_stop import reference as stop_reference  # noqa: E402
from common.search.executors import KINDS as _EXECUTORS  # noqa: E402  (private names: upper-case ones are settings)
from common.search.executors import ExecutorSettings, InlineExecutor, make_executor  # noqa: E402
from common.search.final_round import TRAINED_SCORES as _TRAINED  # noqa: E402
from common.search.final_round import decide, make_plan  # noqa: E402
from common.search.loop import SearchLoop, SearchStopped, eta_minutes  # noqa: E402
from common.search.selection import SELECTS as _SELECTS  # noqa: E402
from common.search.strategy import ALGOS as _ALGOS  # noqa: E402
from common.search.strategy import make_strategy  # noqa: E402
from common.search.trial import PROBE_TASK as _PROBE_TASK  # noqa: E402
from common.search.trial import SCORES as _SCORES  # noqa: E402
from common.search.trial import budget_check, repeat_seeds, run_task, step_memory, trial_context, worker_run  # noqa: E402

# -----------------------------------------------------------------------------
# data
DATA_DIR = None  # folder of images, searched recursively (labels never read); None = built-in demo lesions
IMAGE_SIZE = 32  # px, side of the cached images and of every view
MAX_IMAGES = None  # use a seeded random subset of this many images (None = all)
# search
N_TRIALS = 120  # finished trials to run (ok, or stopped early by EARLY_STOP)
EPOCH_BUDGET = None  # or stop once the trials have trained this many epochs in all (never more); None = N_TRIALS only
ALGO = "tpe"  # 'tpe' | 'random' (the baseline) | 'evolution' (regularized evolution, Real et al. 2019)
SPACE = "paper"  # 'paper' (one op per candidate edge, the CSNAS encoding) | 'explicit' (per node: 2 inputs, 2 ops)
SCORE = "nce"  # 'nce' (contrastive training, the paper's method) | 'nce_init' (its loss without training) |
# 'naswot' | 'synflow' (training-free, seconds)
TPE_STARTUP = 20  # random trials before TPE models the history (hyperopt's default)
POPULATION = 20  # ALGO='evolution': members kept (the last trials told); proposals are random until it is full
SAMPLE_SIZE = 5  # ALGO='evolution': members drawn per proposal; the best of them is mutated (one op or one input)
# early stopping of poor nce trials, decided after each epoch (common/search/early_stop.py)
EARLY_STOP = "none"  # 'none' | 'median' (median stopping rule) | 'halving' (asynchronous successive halving)
GRACE_EPOCHS = 1  # epochs every trial trains before it can be stopped; halving's first rung
REDUCTION_FACTOR = 3  # halving: rungs at GRACE_EPOCHS x REDUCTION_FACTOR^k epochs, each keeping the best 1/this
MIN_REFERENCE = 3  # a rule decides only against at least this many finished trials at that epoch
MAX_FAILURES = 10  # stop with a message after this many failed trials (NaN loss, out of memory, ...)
# final round: the best distinct cells measured again with shared seeds; the smallest cell tied with the best is chosen
FINAL_TOP = 5  # finalists re-measured after the search; 0 = off (hand over the lowest single loss, as the paper did)
FINAL_REPEATS = 3  # further seeds per finalist, the same for each (paired differences); at least 2 (a standard error)
FINAL_SCORE = "auto"  # 'auto' (SCORE when it trains, else 'nce': a training-free screen, then nce decides) | a SCORE
FINAL_EPOCHS = None  # epochs of a final-round measurement; None = EPOCHS
SELECT = "smallest"  # among the finalists tied with the best: 'smallest' (fewest MACs at BUDGET_NETWORK) |
# 'fastest' (lowest batch-1 latency of the eval network, measured here) | 'best' (lowest final-round mean)
# budget: the size of the eval network the genotype becomes (train_isic.py's paper settings, see BUDGET_NETWORK)
MAX_PARAMS = None  # parameters; a proposal above it is recorded as over_budget, not trained (None = no limit)
MAX_MACS = None  # multiply-accumulates per image (FLOPs / 2) at BUDGET_NETWORK's image size (None = no limit)
BUDGET_NETWORK = (58, 24, 224, 8)  # eval network measured for the budget: C, cells, image px, classes
MAX_OVER_BUDGET = 500  # stop when this many proposals in a row are over budget (the budget is too small)
# candidate network and its contrastive training
INIT_CHANNELS = 32  # C; 8 cells of C=32 give 512-d features
LAYERS = 8  # cells; reductions at 1/3 and 2/3 depth
EPOCHS = 10  # per trial; the score is the mean loss of the last epoch
REPEATS = 1  # training seeds per candidate; TPE gets the mean loss, trials.jsonl also each loss and their std
BATCH_SIZE = 256  # images per step (each gives 3 views)
LR = 1e-3  # SGD learning rate
MOMENTUM = 0.9  # SGD momentum
WEIGHT_DECAY = 0.0  # SGD weight decay
TAU = 0.07  # NCE temperature
BANK_MOMENTUM = 0.5  # memory bank EMA weight of the old entry
PATCH_WEIGHT = 0.5  # loss = w * NCE(bank, patches) + (1 - w) * NCE(bank, whole image)
NEGATIVES = None  # negatives per image; None = 2 * (BATCH_SIZE - 1), as in the paper
# views
COLOR_JITTER = (0.2, 0.2, 0.2, 0.02)  # brightness, contrast, saturation, hue (fraction of the wheel)
CENTER_CROP = 0.5  # side of the centre patch, as a fraction of the image side
PATCH_SCALE = (0.15, 0.5)  # area range of the random patch, as a fraction of the image
GRAYSCALE_P = 0.2  # probability the random patch is turned gray
MEAN = (0.763, 0.545, 0.570)  # normalisation (the paper's ISIC statistics)
STD = (0.141, 0.152, 0.169)  # its per-channel standard deviation (the paper's ISIC statistics)
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
AMP = "auto"  # 'auto' (bf16 on CUDA, off on CPU) | 'bf16' | 'fp16' (GPU only; loss-scaled) | 'off'
CHANNELS_LAST = "auto"  # 'auto' (on for CUDA and CPU, off for MPS) | 'on' | 'off': NHWC; depthwise convs need it on CPU
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core); 1 can be faster on a busy machine
DECODE_WORKERS = None  # processes that decode images for the cache (None = all cores)
# parallel trials
WORKERS = 1  # trials in flight at once; 1 = one after another in this process
EXECUTOR = "local"  # 'local' (worker processes here, GPUs round-robin, CPU cores split) | 'ray' (a Ray cluster)
RAY_ADDRESS = None  # EXECUTOR='ray': the cluster's address ('auto', 'ray://host:10001'); None = start Ray here
TRIALS_PER_GPU = 1  # EXECUTOR='ray': trials sharing one GPU (each asks for 1/TRIALS_PER_GPU of a GPU)
ALLOW_RUNTIME_CHANGE = False  # resume a run on another device type / precision / memory format than it started on
SEED = 0  # one seed for the suggestions, the subset, and every candidate's training (common random numbers)
OUT_DIR = None  # this run's folder; None = runs/search/<timestamp>; an unfinished run there is resumed
PRESET = "auto"  # 'auto' ('demo' without DATA_DIR, else 'paper') | 'demo' | 'paper'
DEBUG = False  # show tracebacks for user errors and failed trials
# -----------------------------------------------------------------------------
PRESETS = {
    "paper": {},  # the constants above are the paper's settings
    # sized so that the search demo finishes in under 10 minutes on a 2-core laptop CPU: 320 of the 720 demo lesions
    "demo": dict(N_TRIALS=10, TPE_STARTUP=5, POPULATION=5, SAMPLE_SIZE=2, EPOCHS=2, INIT_CHANNELS=16, LAYERS=5,
                 BATCH_SIZE=64, MAX_IMAGES=320, FINAL_TOP=3, FINAL_REPEATS=2),
}
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEVICE", "DECODE_WORKERS", "THREADS", "DEBUG", "MAX_FAILURES", "MAX_OVER_BUDGET",
                      "ALLOW_RUNTIME_CHANGE", "WORKERS", "EXECUTOR", "RAY_ADDRESS", "TRIALS_PER_GPU")


def check_settings(cfg):
    """Every setting checked before anything is written: a typo leaves no run folder behind."""
    check_choice(cfg, "ALGO", _ALGOS)
    check_choice(cfg, "EARLY_STOP", _RULES)
    check_choice(cfg, "SPACE", G.SPACES)
    check_choice(cfg, "SCORE", _SCORES)
    check_final_round(cfg)
    check_choice(cfg, "EXECUTOR", _EXECUTORS)
    for name in ("N_TRIALS", "EPOCHS", "BATCH_SIZE", "INIT_CHANNELS", "LAYERS", "MAX_FAILURES", "REPEATS",
                 "MAX_OVER_BUDGET", "WORKERS", "TRIALS_PER_GPU"):
        check_number(cfg, name, 1, integer=True)  # 0 would end in a traceback (no trial, no epoch, no batch)
    check_number(cfg, "IMAGE_SIZE", 8, integer=True)
    check_number(cfg, "TPE_STARTUP", 0, integer=True)
    check_search_strategy(cfg)
    check_number(cfg, "THREADS", 0, integer=True)
    check_number(cfg, "MAX_IMAGES", 2, integer=True, none_ok=True)
    check_number(cfg, "DECODE_WORKERS", 1, integer=True, none_ok=True)
    check_number(cfg, "NEGATIVES", 1, integer=True, none_ok=True)
    check_number(cfg, "MAX_PARAMS", 1, none_ok=True)
    check_number(cfg, "MAX_MACS", 1, none_ok=True)
    check_tuple(cfg, "BUDGET_NETWORK", 4, 1, example=(58, 24, 224, 8))
    check_number(cfg, "LR", 0, lo_open=True)
    check_number(cfg, "MOMENTUM", 0, 1, hi_open=True)
    check_number(cfg, "WEIGHT_DECAY", 0)
    check_number(cfg, "TAU", 0, lo_open=True)
    check_number(cfg, "BANK_MOMENTUM", 0, 1)
    check_number(cfg, "PATCH_WEIGHT", 0, 1)
    check_number(cfg, "CENTER_CROP", 0, 1, lo_open=True)
    check_number(cfg, "GRAYSCALE_P", 0, 1)
    check_number(cfg, "SEED", 0, integer=True)
    check_tuple(cfg, "COLOR_JITTER", 4, 0, example=(0.2, 0.2, 0.2, 0.02))
    if cfg["COLOR_JITTER"][3] > 0.5:
        raise ConfigError(f"--COLOR_JITTER={cfg['COLOR_JITTER']!r}: the hue shift (4th value) is at most 0.5 of the wheel")
    check_tuple(cfg, "PATCH_SCALE", 2, 0.01, 1, increasing=True, example=(0.15, 0.5))
    check_tuple(cfg, "MEAN", 3, 0, 1, example=(0.763, 0.545, 0.570))
    check_tuple(cfg, "STD", 3, 1e-6, example=(0.141, 0.152, 0.169))
    check_amp(cfg["AMP"])
    if cfg["DATA_DIR"] is not None:
        check_data_dir(Path(cfg["DATA_DIR"]).expanduser())


def check_final_round(cfg):
    """FINAL_TOP, FINAL_REPEATS, FINAL_SCORE, FINAL_EPOCHS and SELECT."""
    check_number(cfg, "FINAL_TOP", 0, integer=True)
    check_number(cfg, "FINAL_REPEATS", 2, integer=True)  # one seed has no standard error: the tie rule needs two
    check_choice(cfg, "FINAL_SCORE", ("auto", *_SCORES))
    check_number(cfg, "FINAL_EPOCHS", 1, integer=True, none_ok=True)
    check_choice(cfg, "SELECT", _SELECTS)


def check_search_strategy(cfg):
    """Evolution's population, early stopping and the epoch budget: settings that only work together."""
    check_number(cfg, "POPULATION", 2, integer=True)
    check_number(cfg, "SAMPLE_SIZE", 1, cfg["POPULATION"], integer=True)
    for name in ("GRACE_EPOCHS", "MIN_REFERENCE"):
        check_number(cfg, name, 1, integer=True)
    check_number(cfg, "REDUCTION_FACTOR", 2, integer=True)
    if cfg["EARLY_STOP"] != "none":
        if cfg["SCORE"] != "nce" or cfg["REPEATS"] != 1:
            raise ConfigError(f"--EARLY_STOP={cfg['EARLY_STOP']} stops nce trials between epochs: it needs "
                              f"SCORE='nce' and REPEATS=1 (got {cfg['SCORE']!r}, {cfg['REPEATS']})")
        if cfg["GRACE_EPOCHS"] >= cfg["EPOCHS"]:
            raise ConfigError(f"--GRACE_EPOCHS={cfg['GRACE_EPOCHS']}: must be below EPOCHS={cfg['EPOCHS']}, or "
                              f"EARLY_STOP={cfg['EARLY_STOP']!r} never stops a trial")
    check_number(cfg, "EPOCH_BUDGET", 1, integer=True, none_ok=True)
    if cfg["EPOCH_BUDGET"] is not None:
        if cfg["SCORE"] not in ("nce", "nce_init"):
            raise ConfigError(f"--EPOCH_BUDGET counts training epochs; SCORE={cfg['SCORE']!r} trains none "
                              "(use N_TRIALS)")
        if cfg["EPOCH_BUDGET"] < full_trial_epochs(cfg):
            raise ConfigError(f"--EPOCH_BUDGET={cfg['EPOCH_BUDGET']}: less than one trial (EPOCHS x REPEATS = "
                              f"{full_trial_epochs(cfg)})")


def progress_line(record, loop, capacity):
    """One line per finished trial: `trial 12/120 | loss 3.412 | best 3.398 | 41 s | ETA 9.5 min`."""
    cfg, n_done = loop.cfg, loop.finished()
    if record["status"] in ("ok", "stopped"):
        best = min((r["loss"] for r in loop.ok()), default=math.nan)  # stopped trials are never the best
        spread = f" ± {record['loss_std']:.4f}" if "loss_std" in record else ""
        eta = eta_minutes(loop.records, cfg, capacity)
        stopped = (f" stopped after epoch {record['epoch']}/{cfg['EPOCHS']} ({record['reason'].split(':')[0]})"
                   if record["status"] == "stopped" else "")
        budget = f" | epochs {loop.epochs_spent()}/{cfg['EPOCH_BUDGET']}" if cfg["EPOCH_BUDGET"] is not None else ""
        return (f"trial {n_done}/{cfg['N_TRIALS']} (#{record['trial']}){stopped} | loss {record['loss']:.4f}{spread} | "
                f"best {best:.4f} | {record['seconds']:.0f} s{budget} | ETA {eta:.1f} min")
    return (f"trial #{record['trial']} failed ({loop.count('fail')}/{cfg['MAX_FAILURES']} allowed): "
            f"{record.get('reason')}")


def trials_per_device(cfg, device):
    """How many trials share one device's memory at a time."""
    if cfg["EXECUTOR"] == "ray":
        return cfg["TRIALS_PER_GPU"] if device.type == "cuda" else 1  # other nodes' memory is not ours to check
    if device.type == "cuda":
        return math.ceil(cfg["WORKERS"] / torch.cuda.device_count())
    return cfg["WORKERS"]


def check_trial_memory(mem, cfg, n_images, available=None, where=""):
    """Print the step memory beside the device; stop with one line naming BATCH_SIZE when it cannot fit.

    mem: a StepMemory measured on the device the trials run on; available: the memory free there (None = this
    process's device, measured now)."""
    sharing = trials_per_device(cfg, mem.device)
    need = mem.bytes_at(min(cfg["BATCH_SIZE"], n_images)) * sharing
    print(memory_line(need, mem.device, available) + (f" ({sharing} trials at a time)" if sharing > 1 else "") + where)
    check_fits(need, mem.device, batch_size=cfg["BATCH_SIZE"], per_image=mem.per_image * sharing, available=available)


def probe_in_first_worker(executor):
    """(StepMemory, available bytes, where) measured by the first worker, before any trial: where the trials run (its
    GPU, its Ray node), counting only the memory that is free there."""
    executor.submit(0, _PROBE_TASK)  # key 0: trial numbers start at 1
    while True:
        for done in executor.poll(timeout=1.0):
            if done.result is None:
                raise RuntimeError(f"the memory probe failed in worker {done.where.get('worker')}: {done.error}")
            r = done.result
            w = done.where
            where = f", measured in worker {w.get('worker')} (pid {w.get('pid')} on {w.get('node')})"
            return StepMemory(r["fixed"], r["per_image"], torch.device(r["device"])), r["available"], where


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), argv, PRESETS)
    check_settings(cfg)
    answer_config_request(cfg)  # (only in a process common.config.script_config started: print cfg, exit)
    rt = runtime(cfg["DEVICE"], cfg["AMP"], cfg["CHANNELS_LAST"])  # refuses unknown choices and absent devices
    run_dir, resumed, undo_start = start_run_dir(cfg["OUT_DIR"] or new_run_dir("search"), cfg, ignore=_RESUME_MAY_CHANGE)
    check_resumed_runtime(run_dir, rt, cfg["ALLOW_RUNTIME_CHANGE"])
    if cfg["DATA_DIR"] is None:
        print("DEMO: no DATA_DIR given, so this searches the built-in synthetic lesions with the small 'demo' preset.\n"
              "      For real images: python search.py --DATA_DIR=/path/to/ISIC_2019_Training_Input  (paper settings)")
    print(f"config ({'resuming ' if resumed else ''}{run_dir}):\n{format_config(cfg, from_preset)}")
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    if rt.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32 px shapes: let cuDNN pick its fastest kernels
    elif cfg["PRESET"] == "paper" and cfg["SCORE"] == "nce":
        print("note: the paper's search network trains at a few images/s on a CPU; use a GPU, or try the small "
              "network first: --PRESET=demo (or --INIT_CHANNELS=16 --LAYERS=5 --BATCH_SIZE=64 --MAX_IMAGES=1000)")

    # ---- data --------------------------------------------------------------------------------------------
    images = load_images(cfg, run_dir)  # (N, S, S, 3) uint8; each worker moves it to its device once
    setup = {"images": images, "cfg": cfg}

    # ---- resume: trials.jsonl is the source of truth, the algorithm's history (TPE's trials, evolution's
    # population) is rebuilt from it -------------------------------------------------------------------------
    loop = SearchLoop(run_dir, make_strategy(cfg), cfg, budget=lambda sample: budget_check(sample, cfg))
    if loop.records or loop.pending:
        print(f"resumed: {loop.count('ok')} finished, {loop.count('stopped')} stopped and {loop.count('fail')} failed "
              f"trials kept, {len(loop.pending)} unfinished to rerun ({run_dir / 'trials.jsonl'})")
    print(f"device {rt} | {len(images)} images | {cfg['ALGO']} over the {cfg['SPACE']} space, score {cfg['SCORE']} | "
          f"{cfg['N_TRIALS']} trials" + (f" x {cfg['EPOCHS']} epochs x {cfg['REPEATS']} seed(s)"
                                         if cfg["SCORE"] in ("nce", "nce_init") else "")
          + (f" | at most {cfg['EPOCH_BUDGET']} epochs" if cfg["EPOCH_BUDGET"] is not None else "")
          + (f" | early stopping: {cfg['EARLY_STOP']}" if cfg["EARLY_STOP"] != "none" else "")
          + (f" | {cfg['WORKERS']} at a time ({cfg['EXECUTOR']})" if cfg["WORKERS"] > 1 or cfg["EXECUTOR"] != "local" else ""))

    # ---- executor: trials in this process, or in workers that hold their own copies of the images ------------
    if cfg["WORKERS"] == 1 and cfg["EXECUTOR"] == "local":
        ctx = trial_context(setup, cfg["DEVICE"], 0)
        executor = InlineExecutor(lambda task: run_task(task, ctx), rt.device, debug=cfg["DEBUG"])
    else:
        ctx = None
        settings = ExecutorSettings(workers=cfg["WORKERS"], device=cfg["DEVICE"], threads=cfg["THREADS"],
                                    ray_address=cfg["RAY_ADDRESS"], trials_per_gpu=cfg["TRIALS_PER_GPU"])
        executor = make_executor(cfg["EXECUTOR"], settings, worker_setup=trial_context, worker_fn=worker_run,
                                 setup_args=setup)

    # ---- memory: one probe of the largest candidate where the trials run, before the first trial --------------
    plan = make_plan(cfg, repeat_seeds)  # the final round's finalists, seeds and score (None: FINAL_TOP=0)
    if cfg["SCORE"] in _TRAINED or (plan and plan.score in _TRAINED):  # nce_init keeps no activations for backward
        try:
            if ctx is not None:
                check_trial_memory(step_memory(ctx), cfg, len(images))
            else:
                mem, available, where = probe_in_first_worker(executor)
                check_trial_memory(mem, cfg, len(images), available, where)
        except BaseException as exc:
            executor.close()  # no worker (or Ray) left behind
            if isinstance(exc, ConfigError) and not resumed:  # nothing has run: remove what this start wrote (never
                undo_start()  # what was in OUT_DIR before), so that the corrected BATCH_SIZE can use the same OUT_DIR
            raise

    # ---- search loop -------------------------------------------------------------------------------------
    refresh = results.Refresh(run_dir)

    def on_record(record):
        print(progress_line(record, loop, executor.capacity), flush=True)
        refresh(loop.records)  # search_curve.png, pareto.*, best_genotype.json (every few seconds at most)

    stop_settings = StopSettings.from_config(cfg)

    def make_task(trial, sample, known):
        """The trial's task; with EARLY_STOP the rule's thresholds from the finished records known when it was asked."""
        task = {"trial": trial, "sample": sample}
        if cfg["EARLY_STOP"] != "none":
            task["stop"] = stop_reference(known, stop_settings)
        return task

    with executor:
        loop.run(executor, make_task, on_record)
        best = results.best_by_loss(loop.records)
        if best is None:
            raise SearchStopped(f"no trial ran to the end within EPOCH_BUDGET={cfg['EPOCH_BUDGET']}; see {loop.trials_file}")

        # ---- final round: the best distinct cells measured again with shared seeds; ties by the one-SE rule ------
        final = None
        if plan is not None:
            final = decide(run_dir, plan, loop.records, executor,
                           {"select": cfg["SELECT"], "budget_network": cfg["BUDGET_NETWORK"], "device": rt.device})

    # ---- save --------------------------------------------------------------------------------------------
    chosen, literal = results.write_final(run_dir, loop.records, final)
    if final is not None:
        print("\n".join(results.final_table(final, best["trial"])))
    mark_finished(run_dir, {"ok_trials": loop.count("ok"), "stopped_trials": loop.count("stopped"),
                            "failed_trials": loop.count("fail"), "over_budget": loop.count("over_budget"),
                            "epochs_trained": loop.epochs_spent(), "best_loss": best["loss"],
                            "chosen_trial": chosen["trial"]})
    what = "chosen" if final is not None else "best"
    print(f"{what}: trial {chosen['trial']} (search loss {chosen['loss']:.4f}); paste into common/arch/genotypes.py:\n"
          f"{literal}")
    print(f"run folder: {run_dir}\nnext: cd ../eval && python train_isic.py   (trains the newest search's best genotype)")
    return run_dir


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2, no traceback."""
    argv = sys.argv[1:] if argv is None else argv
    run_cli(lambda: main(argv), (ConfigError, SearchStopped), lambda: DEBUG or "--DEBUG=True" in argv,
            "finished trials are kept; rerun the same command with --OUT_DIR=<the run folder above> to resume")


if __name__ == "__main__":
    cli()
