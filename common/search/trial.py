"""One search trial, from a TPE sample to its trials.jsonl record: the candidate's score, failures recorded, memory freed.

Scores (SCORE): 'nce' trains the candidate contrastively (the paper's method) once per repeat seed and scores the
mean last-epoch loss; 'nce_init' runs the same epochs, views, negatives and bank with the weights left at
initialisation (no backward pass: a few times cheaper; the proxy study's control); 'naswot' and 'synflow' are
training-free (common/search/zero_cost.py). TPE always minimises the
record's `loss`: for a score where higher is better, loss = -score.
"""
import dataclasses
import gc
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from common.arch import genotypes as G
from common.arch.cell_cost import eval_network_size
from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer, NonFiniteLoss
from common.contrastive.views import ViewMaker
from common.device import Runtime, runtime
from common.failures import run_candidate
from common.memory import available_bytes, probe_step
from common.search import early_stop
from common.search.candidate import candidate, run_trial

SCORES = ("nce", "nce_init", "naswot", "synflow")


@dataclass
class TrialContext:
    """What every trial of one search shares: the images (moved to the device once), the views, settings, runtime."""

    images: torch.Tensor  # (N, S, S, 3) uint8 on rt.device
    views: ViewMaker
    cfg: dict
    rt: Runtime


def make_views(cfg):
    """The search's ViewMaker from its settings."""
    return ViewMaker(cfg["IMAGE_SIZE"], cfg["COLOR_JITTER"], cfg["CENTER_CROP"], cfg["PATCH_SCALE"],
                     cfg["GRAYSCALE_P"], cfg["MEAN"], cfg["STD"])


def trial_context(setup, device, threads):
    """The TrialContext of one process that scores candidates: its runtime, the images moved to its device, views.

    Built once per process: in each executor worker (common/search/executors/), in the driver when trials run inline
    (WORKERS=1), and in each proxy-study part. setup: {'images': uint8 array (N, S, S, 3), 'cfg': the search's
    settings}; threads 0 = torch's default.
    """
    if threads:
        torch.set_num_threads(threads)
    cfg = setup["cfg"]
    rt = runtime(device, cfg["AMP"], cfg["CHANNELS_LAST"])
    if rt.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return TrialContext(torch.as_tensor(np.asarray(setup["images"])).to(rt.device), make_views(cfg), cfg, rt)


PROBE_TASK = {"probe_memory": True}  # a task that measures the step memory in a worker instead of running a trial


def run_task(task, ctx, progress=True):
    """A search task: a trial, a final-round measurement (task['final']: the trial's cell with another seed, score or
    epochs; see final_context) or, with PROBE_TASK, the step's memory measured where the trials run."""
    if task.get("probe_memory"):
        return probe_in_worker(ctx)
    if "final" in task:
        ctx = final_context(ctx, task["final"])
    return evaluate_trial(task, ctx, progress=progress)


def worker_run(task, ctx):
    """run_task in a worker process: no progress bars (several workers share one terminal)."""
    return run_task(task, ctx, progress=False)


def final_context(ctx, final):
    """The context of a final-round measurement: the search's, with final['score'], final['epochs'] and one training
    seed, final['seed'] (the same for every finalist: common random numbers)."""
    cfg = {**ctx.cfg, "SCORE": final["score"], "EPOCHS": final["epochs"], "SEED": final["seed"], "REPEATS": 1}
    return dataclasses.replace(ctx, cfg=cfg)


def probe_in_worker(ctx):
    """{'fixed', 'per_image', 'device', 'available'}: step_memory on this worker's device, and the memory that is free
    there once the probe's model is gone -- not counting blocks cached by another process (as the driver's would be)."""
    mem = step_memory(ctx)  # releases its memory (and on CUDA the allocator's cache) before returning
    return {"fixed": mem.fixed, "per_image": mem.per_image, "device": str(ctx.rt.device),
            "available": available_bytes(ctx.rt.device, cached=False)}


def budget_check(sample, cfg):
    """({'genotype', 'params', 'macs'}, None when within MAX_PARAMS / MAX_MACS, else why not) for a proposed sample."""
    genotype = G.sample_to_genotype(sample, space=cfg["SPACE"])
    params, macs = eval_network_size(genotype, cfg["BUDGET_NETWORK"])
    over = []
    if cfg["MAX_PARAMS"] is not None and params > cfg["MAX_PARAMS"]:
        over.append(f"{params / 1e6:.2f}M parameters > MAX_PARAMS {cfg['MAX_PARAMS'] / 1e6:.2f}M")
    if cfg["MAX_MACS"] is not None and macs > cfg["MAX_MACS"]:
        over.append(f"{macs / 1e6:.0f}M MACs > MAX_MACS {cfg['MAX_MACS'] / 1e6:.0f}M")
    return {"genotype": G.to_dict(genotype), "params": params, "macs": macs}, "; ".join(over) or None


def largest_candidate(steps=G.STEPS):
    """The cell with the largest training footprint in the space: every edge a separable conv (they keep the most
    activations for backward) reading the cell inputs."""
    cell = [("sep_conv_3x3", s) for _ in range(steps) for s in (0, 1)]
    concat = list(range(2 + steps - G.CONCAT_LAST, 2 + steps))
    return G.Genotype(cell, concat, cell, concat)


def step_memory(ctx):
    """Peak memory of one training step of the largest candidate at BATCH_SIZE (common/memory.py's probe)."""
    cfg, rt = ctx.cfg, ctx.rt
    make_net = candidate(largest_candidate(), cfg["INIT_CHANNELS"], cfg["LAYERS"])
    trainer = ContrastiveTrainer(make_net, ctx.images, ctx.views, trainer_settings(cfg, rt))
    idx = torch.arange(len(ctx.images), device=rt.device)
    batch = min(cfg["BATCH_SIZE"], len(ctx.images))
    # a throwaway trainer: the probe steps train it
    mem = probe_step(lambda b: trainer.step(idx[:b]), rt.device, batch_size=batch, params=trainer.net.parameters())
    trainer = None
    release_memory(rt.device)
    return mem


def repeat_seeds(seed, repeats):
    """Training seeds of every candidate (the same for all: common random numbers, so two candidates see the same
    views, negatives and batch order). Repeat 0 uses SEED itself; repeat r > 0 a seed derived from (SEED, r)."""
    return [int(seed)] + [int(np.random.default_rng([seed, r]).integers(2**31 - 1)) for r in range(1, repeats)]


def trainer_settings(cfg, rt):
    """A trial's ContrastiveSettings from the search's settings (seed SEED, learning on, a constant lr)."""
    return ContrastiveSettings(
        rt=rt, batch_size=cfg["BATCH_SIZE"], lr=cfg["LR"], momentum=cfg["MOMENTUM"], weight_decay=cfg["WEIGHT_DECAY"],
        tau=cfg["TAU"], bank_momentum=cfg["BANK_MOMENTUM"], patch_weight=cfg["PATCH_WEIGHT"],
        negatives_per_image=cfg["NEGATIVES"], seed=cfg["SEED"],
    )


def nce_score(genotype, ctx, desc="trial", progress=True, learn=True, **run_kwargs):
    """Train the candidate once per repeat seed; its score is the mean of the repeats' last-epoch losses.

    learn=False: nce_init (the weights stay at initialisation). run_kwargs go to run_trial (on_trainer, stop); a
    trial that `stop` ended early (REPEATS=1 only) returns `stopped`, the reason."""
    cfg = ctx.cfg
    seeds = repeat_seeds(cfg["SEED"], cfg["REPEATS"])
    losses, epoch_losses, speed, stopped = [], [], [], None
    for r, seed in enumerate(seeds):
        label = desc if len(seeds) == 1 else f"{desc} r{r + 1}/{len(seeds)}"
        bar = lambda total, label=label: tqdm(total=total, unit="img", leave=False, desc=label,  # noqa: E731
                                              disable=None if progress else True)
        settings = dataclasses.replace(trainer_settings(cfg, ctx.rt), seed=seed, learn=learn)
        make_net = candidate(genotype, cfg["INIT_CHANNELS"], cfg["LAYERS"])
        result = run_trial(make_net, ctx.images, ctx.views, settings, epochs=cfg["EPOCHS"], progress=bar, **run_kwargs)
        losses.append(result["loss"])
        epoch_losses.append(result["epoch_losses"])
        speed.append(result["images_per_s"])
        stopped = result.get("stopped")
    out = {"loss": float(np.mean(losses)), "epoch_losses": epoch_losses[0] if len(seeds) == 1 else epoch_losses,
           "images_per_s": round(float(np.mean(speed)), 1)}
    if len(seeds) > 1:
        out.update(loss_std=float(np.std(losses, ddof=1)), repeat_losses=losses, repeat_seeds=seeds)
    if stopped:
        out["stopped"] = stopped
    return out


def training_free_score(name, genotype, ctx):
    """naswot / synflow of the candidate at initialisation (seeded with SEED); loss = -score (higher is better)."""
    from common.search.zero_cost import ScoreSettings, score_candidate  # training-free scores load when asked for

    cfg = ctx.cfg
    settings = ScoreSettings(init_channels=cfg["INIT_CHANNELS"], layers=cfg["LAYERS"], seed=cfg["SEED"],
                             batch_size=cfg["BATCH_SIZE"], rt=ctx.rt)
    value = score_candidate(name, genotype, ctx.images, ctx.views, settings=settings)
    if not np.isfinite(value):
        raise NonFiniteLoss(f"{name} score is {value}")
    return {name: float(value), "loss": -float(value)}


def release_memory(device):
    """Give a failed candidate's memory back before the next one (on a GPU, else out-of-memory cascades)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def score_genotype(genotype, ctx, desc="trial", progress=True, **run_kwargs):
    """The candidate's score fields: the NCE training's (loss, epoch losses, speed) or a training-free score's."""
    cfg = ctx.cfg
    if cfg["SCORE"] in ("nce", "nce_init"):
        return nce_score(genotype, ctx, desc, progress, learn=cfg["SCORE"] == "nce", **run_kwargs)
    return training_free_score(cfg["SCORE"], genotype, ctx)


def evaluate_trial(task, ctx, progress=True, **run_kwargs):
    """task {'trial': n, 'sample': {label: choice index}, 'stop': an early-stopping rule's reference (optional)} ->
    the trials.jsonl record (status 'ok', 'stopped' or 'fail').

    With 'stop' (common/search/early_stop.py) the rule is asked after every epoch but the last, here, inline or in a
    worker; a trial it ends is `status: "stopped"` with `epoch` (epochs trained), `loss` (that epoch's) and `reason`.
    Whatever the candidate raises is its failure (common/failures.py: the same inline and in a worker); DEBUG prints
    the traceback."""
    cfg = ctx.cfg
    record = {"trial": task["trial"], "score": cfg["SCORE"], "sample": task["sample"]}
    rule = task.get("stop")
    if rule is not None:
        run_kwargs["stop"] = lambda losses: early_stop.decide(rule, losses)
        record["rule_records"] = rule["records"]  # the finished trials the rule compares with (a trials.jsonl prefix)
    cuda = ctx.rt.device.type == "cuda"
    if cuda:  # this trial's own peak below (an earlier trial's or the memory probe's would count otherwise)
        torch.cuda.reset_peak_memory_stats(ctx.rt.device)
    start = time.perf_counter()

    def score():
        genotype = G.sample_to_genotype(task["sample"], space=cfg["SPACE"])
        record["genotype"] = G.to_dict(genotype)
        return score_genotype(genotype, ctx, f"trial {task['trial']}", progress, **run_kwargs)

    scored, failure = run_candidate(score, debug=cfg["DEBUG"])
    if failure is None:
        stopped = scored.pop("stopped", None)
        record.update(status="stopped" if stopped else "ok", **scored)
        if stopped:
            record.update(epoch=len(scored["epoch_losses"]), reason=stopped)
    else:  # run_candidate has dropped the exception, whose traceback would keep the trainer, model and bank alive
        record.update(status="fail", loss=None, reason=failure)
        release_memory(ctx.rt.device)
    record["seconds"] = round(time.perf_counter() - start, 2)
    if cuda:  # torch's peak allocation in MB, the images on the device included (search/benchmark_workers.py reads it)
        record["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(ctx.rt.device) / 2**20, 1)
    return record
