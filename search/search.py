"""Label-free architecture search: TPE (or random search) over DARTS cells, scored by a contrastive NCE loss.

    cd search && python search.py                      # demo: built-in synthetic lesions, small preset
    cd search && python search.py --DATA_DIR=/data/ISIC_2019_Training_Input   # paper settings

Any constant below can be overridden as --NAME=value. Results go to OUT_DIR (see README.md).
"""
import gc
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hyperopt import hp  # noqa: E402  (only hp: upper-case imports would count as settings)
from tqdm import tqdm  # noqa: E402

from common import genotypes as G  # noqa: E402
from common.cell_diagram import write_cell_diagrams  # noqa: E402
from common.config import ConfigError, configure, format_config, run_cli  # noqa: E402
from common.demo_lesions import ensure_demo_dataset  # noqa: E402
from common.figures import plot_search_curve  # noqa: E402
from common.images import build_cache, cache_path_for, list_images, skipped_summary, write_skipped  # noqa: E402
from common.runs import append_jsonl, atomic_write_json, mark_finished, new_run_dir, open_run_dir, read_jsonl  # noqa: E402
from common.tpe import TrialHistory, make_suggest  # noqa: E402
from common.device import runtime  # noqa: E402
from common.trial import NonFiniteLoss, run_trial  # noqa: E402
from common.views import ViewMaker  # noqa: E402

# -----------------------------------------------------------------------------
# data
DATA_DIR = None  # folder of images, searched recursively (labels never read); None = built-in demo lesions
IMAGE_SIZE = 32  # px, side of the cached images and of every view
MAX_IMAGES = None  # use a seeded random subset of this many images (None = all)
# search
N_TRIALS = 120  # finished (ok) trials to run
ALGO = "tpe"  # 'tpe' | 'random' (the baseline)
TPE_STARTUP = 20  # random trials before TPE models the history (hyperopt's default)
MAX_FAILURES = 10  # stop with a message after this many failed trials (NaN loss, out of memory, ...)
# candidate network and its contrastive training
INIT_CHANNELS = 32  # C; 8 cells of C=32 give 512-d features
LAYERS = 8  # cells; reductions at 1/3 and 2/3 depth
EPOCHS = 10  # per trial; the score is the mean loss of the last epoch
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
STD = (0.141, 0.152, 0.169)
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
AMP = "auto"  # 'auto' (bf16 on CUDA, off on CPU) | 'bf16' | 'off'
CHANNELS_LAST = "auto"  # 'auto' (on for CUDA and CPU, off for MPS) | 'on' | 'off': NHWC; depthwise convs need it on CPU
THREADS = 0  # CPU threads for torch; 0 = torch's default (one per core); 1 can be faster on a busy machine
DECODE_WORKERS = None  # processes that decode images for the cache (None = all cores)
SEED = 0  # one seed for the suggestions, the subset and every trial's training
OUT_DIR = None  # this run's folder; None = runs/search/<timestamp>; an unfinished run there is resumed
PRESET = "auto"  # 'auto' ('demo' without DATA_DIR, else 'paper') | 'demo' | 'paper'
DEBUG = False  # show tracebacks for user errors and failed trials
# -----------------------------------------------------------------------------
PRESETS = {
    "paper": {},  # the constants above are the paper's settings
    # sized so that the whole demo finishes in under 10 minutes on a 2-core laptop CPU
    "demo": dict(N_TRIALS=10, TPE_STARTUP=5, EPOCHS=2, INIT_CHANNELS=16, LAYERS=5, BATCH_SIZE=64),
}
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEVICE", "DECODE_WORKERS", "THREADS", "DEBUG", "MAX_FAILURES")


def search_space(steps=G.STEPS):
    """One categorical choice of op per candidate edge, for the normal and the reduction cell."""
    return {label: hp.choice(label, G.PRIMITIVES) for label in G.sample_labels(steps)}


def check_data_dir(folder):
    """Refuse a missing or image-less DATA_DIR before a run folder is made for it (a typo leaves nothing behind)."""
    if not folder.is_dir():
        raise ConfigError(f"DATA_DIR {folder} is not a folder; point it at a folder of images (searched recursively)")
    if not list_images(folder):
        raise ConfigError(f"no images (jpg/jpeg/png/bmp/tif) found under {folder}")


def load_images(cfg, run_dir, log=print):
    """Decode the search images once (cached on disk at IMAGE_SIZE); returns a uint8 tensor (N, S, S, 3)."""
    if cfg["DATA_DIR"] is None:
        folder = ensure_demo_dataset(log=log) / "ISIC_2019_Training_Input"
    else:
        folder = Path(cfg["DATA_DIR"]).expanduser()
        check_data_dir(folder)
    paths = list_images(folder)
    if cfg["MAX_IMAGES"] and len(paths) > cfg["MAX_IMAGES"]:
        pick = np.random.default_rng(cfg["SEED"]).choice(len(paths), cfg["MAX_IMAGES"], replace=False)
        paths = [paths[i] for i in sorted(pick)]
    log(f"images: {len(paths)} files under {folder}")
    images, kept, skipped = build_cache(paths, cfg["IMAGE_SIZE"], cache_path_for(folder, cfg["IMAGE_SIZE"]), cfg["DECODE_WORKERS"])
    if skipped:
        write_skipped(run_dir, skipped)
        log(skipped_summary(skipped, len(paths)))
    if len(kept) < 2:
        raise ConfigError(f"only {len(kept)} readable image(s) under {folder}; the search needs at least 2")
    return torch.from_numpy(images)


def trainer_settings(cfg, rt):
    return dict(
        init_channels=cfg["INIT_CHANNELS"], layers=cfg["LAYERS"], lr=cfg["LR"], momentum=cfg["MOMENTUM"],
        weight_decay=cfg["WEIGHT_DECAY"], tau=cfg["TAU"], bank_momentum=cfg["BANK_MOMENTUM"],
        patch_weight=cfg["PATCH_WEIGHT"], batch_size=cfg["BATCH_SIZE"], device=rt.device, amp=cfg["AMP"],
        channels_last=rt.channels_last, negatives_per_image=cfg["NEGATIVES"],
    )


def evaluate(sample, trial, images, views, cfg, rt):
    """Train the candidate a sample encodes; returns the trials.jsonl record (status 'ok' or 'fail')."""
    genotype = G.sample_to_genotype(sample)
    record = {"trial": trial, "genotype": G.to_dict(genotype), "sample": sample}
    start = time.perf_counter()
    bar = lambda total: tqdm(total=total, unit="img", leave=False, desc=f"trial {trial}", disable=None)  # noqa: E731
    try:
        seed = int(np.random.default_rng([cfg["SEED"], trial]).integers(2**31 - 1))
        result = run_trial(genotype, images, views, epochs=cfg["EPOCHS"], progress=bar, seed=seed, **trainer_settings(cfg, rt))
        record.update(status="ok", loss=result["loss"], epoch_losses=result["epoch_losses"],
                      images_per_s=round(result["images_per_s"], 1))
    except (NonFiniteLoss, RuntimeError, ValueError) as exc:  # NaN, out of memory, a shape error: record, go on
        record.update(status="fail", loss=None, reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        if cfg["DEBUG"]:
            traceback.print_exc()
        del exc
        gc.collect()
        if rt.device.type == "cuda":
            torch.cuda.empty_cache()
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def write_results(run_dir, records, log=print, final=False):
    """best_genotype.json and search_curve.png after every trial; cell diagrams at the end."""
    plot_search_curve(records, run_dir / "search_curve.png")
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["loss"])
    genotype = G.from_dict(best["genotype"])
    literal = G.to_literal(genotype, "CSNAS_SEARCHED")
    atomic_write_json(run_dir / "best_genotype.json",
                      {"genotype": best["genotype"], "trial": best["trial"], "loss": best["loss"], "literal": literal})
    if final:
        write_cell_diagrams(genotype, run_dir, log)
    return best, literal


class SearchStopped(RuntimeError):
    """Too many candidates failed: the setup itself is probably broken."""


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), argv, PRESETS)
    if cfg["ALGO"] not in ("tpe", "random"):
        raise ConfigError(f"ALGO must be 'tpe' or 'random', not {cfg['ALGO']!r}")
    for name in ("N_TRIALS", "EPOCHS", "BATCH_SIZE", "IMAGE_SIZE", "INIT_CHANNELS", "LAYERS", "MAX_FAILURES"):
        if cfg[name] < 1:  # 0 would end in a traceback (no trial, no epoch, no batch)
            raise ConfigError(f"--{name}={cfg[name]}: must be at least 1")
    rt = runtime(cfg["DEVICE"], cfg["AMP"], cfg["CHANNELS_LAST"])  # refuses unknown choices and absent devices
    if cfg["AMP"] == "fp16":  # a trial has no gradient scaler; bf16 keeps fp32's range and needs none
        raise ConfigError("--AMP=fp16 is not supported by the search; use --AMP=bf16 (or auto, or off)")
    if cfg["DATA_DIR"] is not None:
        check_data_dir(Path(cfg["DATA_DIR"]).expanduser())
    run_dir, resumed = open_run_dir(cfg["OUT_DIR"] or new_run_dir("search"), cfg, ignore=_RESUME_MAY_CHANGE)
    if cfg["DATA_DIR"] is None:
        print("DEMO: no DATA_DIR given, so this searches the built-in synthetic lesions with the small 'demo' preset.\n"
              "      For real images: python search.py --DATA_DIR=/path/to/ISIC_2019_Training_Input  (paper settings)")
    print(f"config ({'resuming ' if resumed else ''}{run_dir}):\n{format_config(cfg, from_preset)}")
    device = rt.device
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32 px shapes: let cuDNN pick its fastest kernels
    elif cfg["PRESET"] == "paper":
        print("note: the paper's search network trains at a few images/s on a CPU; use a GPU, or try the small "
              "network first: --PRESET=demo (or --INIT_CHANNELS=16 --LAYERS=5 --BATCH_SIZE=64 --MAX_IMAGES=1000)")

    # ---- data --------------------------------------------------------------------------------------------
    images = load_images(cfg, run_dir).to(device)  # (N, S, S, 3) uint8, on the device once
    views = ViewMaker(cfg["IMAGE_SIZE"], cfg["COLOR_JITTER"], cfg["CENTER_CROP"], cfg["PATCH_SCALE"],
                      cfg["GRAYSCALE_P"], cfg["MEAN"], cfg["STD"])

    # ---- resume: trials.jsonl is the source of truth, the TPE history is rebuilt from it ------------------
    trials_file = run_dir / "trials.jsonl"
    records = read_jsonl(trials_file)
    history = TrialHistory(search_space())
    for r in records:
        history.add(r["trial"], r["sample"], r["loss"] if r["status"] == "ok" else None)
    suggest = make_suggest(cfg["ALGO"], cfg["TPE_STARTUP"])
    n_ok = sum(r["status"] == "ok" for r in records)
    n_fail = len(records) - n_ok
    if records:
        print(f"resumed: {n_ok} finished and {n_fail} failed trials kept from {trials_file}")
    print(f"device {device} | {len(images)} images | {cfg['ALGO']} | {cfg['N_TRIALS']} trials x {cfg['EPOCHS']} epochs")

    # ---- search loop -------------------------------------------------------------------------------------
    best = min((r["loss"] for r in records if r["status"] == "ok"), default=math.inf)
    seconds = [r["seconds"] for r in records if r["status"] == "ok"]
    while n_ok < cfg["N_TRIALS"]:
        if n_fail >= cfg["MAX_FAILURES"]:
            last = records[-1].get("reason", "?")
            raise SearchStopped(f"stopped after {n_fail} failed trials (last: {last}); see {trials_file}")
        trial = len(records) + 1
        sample = history.suggest(suggest, trial, seed=int(np.random.default_rng([cfg["SEED"], trial, 1]).integers(2**31 - 1)))
        record = evaluate(sample, trial, images, views, cfg, rt)
        append_jsonl(trials_file, record)  # persisted before the next trial starts
        records.append(record)
        history.add(trial, sample, record["loss"])
        if record["status"] == "ok":
            n_ok += 1
            best = min(best, record["loss"])
            seconds.append(record["seconds"])
            eta = (cfg["N_TRIALS"] - n_ok) * sum(seconds) / len(seconds)
            print(f"trial {n_ok}/{cfg['N_TRIALS']} | loss {record['loss']:.4f} | best {best:.4f} | "
                  f"{record['seconds']:.0f} s | ETA {eta / 60:.1f} min")
        else:
            n_fail += 1
            print(f"trial {trial} failed ({n_fail}/{cfg['MAX_FAILURES']} allowed): {record['reason']}")
        write_results(run_dir, records)

    # ---- save --------------------------------------------------------------------------------------------
    best_record, literal = write_results(run_dir, records, final=True)
    mark_finished(run_dir, {"ok_trials": n_ok, "failed_trials": n_fail, "best_loss": best_record["loss"]})
    print(f"best: trial {best_record['trial']} with loss {best_record['loss']:.4f}; paste into common/genotypes.py:\n{literal}")
    print(f"run folder: {run_dir}\nnext: cd ../eval && python train_isic.py   (trains the newest search's best genotype)")
    return run_dir


if __name__ == "__main__":
    run_cli(main, (ConfigError, SearchStopped), lambda: DEBUG or "--DEBUG=True" in sys.argv,
            "finished trials are kept; rerun the same command with --OUT_DIR=<the run folder above> to resume")
