"""One labeled training, data -> model -> epochs -> results: what train_isic.py's main() runs, and the proxy study
for each genotype and seed. Each stage's machinery lives in its own module of common/labeled."""
import time
from pathlib import Path

import torch

from common import runs
from common.config import ConfigError
from common.device import check_resumed_runtime, pick_device, runtime
from common.labeled import few_labels, model_card
from common.labeled.checkpoints import CKPT, model_record, resume, save_epoch
from common.labeled.data import load_data, make_loaders, n_images, prepare_splits, record_skipped
from common.labeled.distributed import DistContext, per_rank_batch, rank_seed, unused_parameters, unwrap_ddp, wrap_ddp
from common.labeled.epochs import EpochPlan, epoch_line, make_loss, make_optimisation, run_epoch
from common.labeled.model import (
    architecture_notes,
    build_model,
    check_training_memory,
    choose_architecture,
    describe_model,
    probe_images,
    write_architecture,
)
from common.labeled.pretrain import PRETRAINED
from common.labeled.results import RunInfo, report, save_results
from common.labeled.torchrun import on_main, say_if
from common.labeled.training import seed_everything

# settings that may differ when a run resumes: where it runs and what acts only after training (the last three);
# DEVICE, AMP and CHANNELS_LAST are compared as resolved (runtime.json), not as 'auto'
NO_RESUME_CHECK = ("OUT_DIR", "DEVICE", "AMP", "CHANNELS_LAST", "ALLOW_RUNTIME_CHANGE", "NUM_WORKERS", "THREADS",
                   "DEBUG", "N_CAM", "LATENCY_RUNS", "EXPORT_ONNX")


def train(cfg, ctx=None, started=None):
    """Train cfg's model on cfg's data and write its run folder; returns the folder. cfg: the resolved and checked
    settings of train_isic.py. ctx: this process's place in a torchrun job (torchrun.process_group); None = a
    single process on cfg's DEVICE. started: time.time() when the command began (for the wall time reported)."""
    started = time.time() if started is None else started
    ctx = ctx if ctx is not None else DistContext(device=pick_device(cfg["DEVICE"]))
    say = say_if(ctx)
    rt = start_runtime(cfg, ctx)
    for line in architecture_notes(cfg):
        say(line)
    architecture = on_main(ctx, choose_architecture, cfg)  # rank 0's: a search run may finish meanwhile

    # ---- data and model, both before the run folder exists: a wrong DATA_DIR or weights file leaves no folder
    data = on_main(ctx, load_data, cfg, share=False)  # rank 0 first: it may write the demo images
    data = few_labels.choose_labels(cfg, data)  # LABEL_FRACTION: a class left without labels stops here
    seed_everything(rank_seed(cfg["SEED"], ctx))  # model init (DDP gives every rank rank 0's weights)
    model = build_model(architecture.genotype, len(data.classes), cfg, few_labels.imagenet_weights(cfg))
    few_labels.load_weights(cfg, model, say)  # a pretrained.pt as PRETRAINED_WEIGHTS
    check_training_memory(cfg, model, len(data.classes), rt, ctx)  # a batch that cannot fit stops here, before the run folder
    few_labels.check_pretrain_memory(cfg, model, rt, say)  # and so does a pre-training step

    # ---- run folder and splits: written by rank 0 alone; the others get what it decided
    run_dir, resumed = on_main(ctx, open_run, cfg, architecture, rt)
    splits, skipped, split_sha1 = on_main(ctx, lambda: prepare_splits(
        cfg, data, run_dir, trained=resumed and (run_dir / CKPT).exists(), processes=ctx.world_size))
    splits = few_labels.labeled_splits(splits, data, say)  # train: its labeled images; unlabeled: all of them
    few_labels.pretrain_start(cfg, data, splits, model, run_dir, rt, architecture, say)  # PRETRAIN_EPOCHS > 0
    loaders = make_loaders(cfg, data, splits, run_dir, rt, ctx)
    unused = unused_parameters(model, probe_images()) if ctx.distributed else []  # DDP must know them beforehand
    model = rt.place(model)
    say(describe_model(model, cfg))

    # ---- loss and optimizer, on the bare model (DDP shares its parameters)
    criterion = make_loss(cfg, splits["train"], len(data.classes), say).to(rt.device)
    optim = make_optimisation(cfg, model, criterion, rt)

    # ---- resume: rank 0 reads ckpt.pt, every rank loads what it read; DDP starts all from rank 0's weights
    state = resume(run_dir, model, optim, ctx)
    model = wrap_ddp(model, ctx, find_unused_parameters=bool(unused))

    # ---- epochs: every rank keeps the same state (history, best epoch); rank 0 writes it
    plan = EpochPlan.from_config(cfg)
    for epoch in range(state["epoch"] + 1, cfg["EPOCHS"] + 1):
        row = run_epoch(epoch, model, loaders, optim, plan, rt, ctx)
        record = model_record(unwrap_ddp(model), data.classes, architecture, cfg) if ctx.is_main else None
        save_epoch(run_dir, row, state, record, optim)
        say(epoch_line(row, cfg["EPOCHS"], state["best_epoch"]), flush=True)
    ctx.barrier()
    if not ctx.is_main:
        return run_dir  # rank 0 scores, draws and writes the results alone (no collectives from here on)

    # ---- results: the selected model on val and, once, on test; the last epoch on val; figures, model card
    info = RunInfo(cfg=cfg, data=data, architecture=architecture, split_sha1=split_sha1, started=started)
    metrics, cams, card = save_results(run_dir, unwrap_ddp(model), loaders.for_results(ctx), criterion, state, info, rt)
    finish(run_dir, data, skipped, loaders, metrics, ctx)
    report(run_dir, metrics, cams, card, started)
    if card["onnx"] is not None and not card["onnx"]["ok"]:  # the run is finished: only the export failed
        raise model_card.OnnxMismatch(f"{card['onnx']['error']}; the run itself finished: {run_dir}")
    return run_dir


def pretrain_only(cfg):
    """Self-supervised pre-training alone, in one process: cfg's OUT_DIR gets config.json, split.csv and pretrained.pt
    (PRETRAIN_EPOCHS of it on the training split's images, or UNLABELED_DIR's) and no labeled epoch runs. A label
    curve shares one such file among all the labeled fractions of a split: their pre-training would be the same, since
    it reads every training image whatever the fraction. Returns pretrained.pt; a finished folder is only read."""
    if not cfg["PRETRAIN_EPOCHS"]:
        raise ConfigError("pre-training alone needs PRETRAIN_EPOCHS > 0")
    out = Path(cfg["OUT_DIR"]).expanduser()
    if (out / runs.FINISHED).exists():
        return out / PRETRAINED
    ctx = DistContext(device=pick_device(cfg["DEVICE"]))
    rt = start_runtime(cfg, ctx)
    architecture = choose_architecture(cfg)
    data = load_data(cfg)
    seed_everything(cfg["SEED"])  # the same initial weights as train() builds for this SEED
    model = build_model(architecture.genotype, len(data.classes), cfg, few_labels.imagenet_weights(cfg))
    few_labels.load_weights(cfg, model)
    few_labels.check_pretrain_memory(cfg, model, rt)
    run_dir, _ = open_run(cfg, architecture, rt)
    splits, _, _ = prepare_splits(cfg, data, run_dir, trained=False)
    path = few_labels.pretrain_start(cfg, data, few_labels.labeled_splits(splits, data), model, run_dir, rt,
                                     architecture)
    runs.mark_finished(run_dir, {"pretrained": str(path)})
    return path


def start_runtime(cfg, ctx):
    """The Runtime on this process's device (autocast, memory format), threads and cuDNN set, and what it means said
    once: the device, the torchrun job, a CPU too slow for the paper's settings."""
    say = say_if(ctx)
    rt = runtime(str(ctx.device), cfg["AMP"], cfg["CHANNELS_LAST"])
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    if rt.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels
    say(f"device: {rt}")
    if ctx.distributed:
        over = "NCCL, a GPU each" if ctx.device.type == "cuda" else "gloo on the CPU"
        say(f"torchrun: {ctx.world_size} processes, DistributedDataParallel ({over}); BATCH_SIZE {cfg['BATCH_SIZE']} "
            f"is the global batch, {per_rank_batch(cfg['BATCH_SIZE'], ctx)} images per process per step")
    if rt.device.type == "cpu" and cfg["PRESET"] == "paper":
        smaller = "--IMAGE_SIZE=64" + (" --INIT_CHANNELS=12 --LAYERS=5" if cfg["ARCH"] is None else "")
        say(f"note: the paper's settings train at a few images/s on a CPU; use a GPU, or smaller ones such as {smaller}")
    return rt


def open_run(cfg, architecture, rt):
    """(run folder, resumed). A resumed run must run as it started (device type, autocast, channels_last:
    runtime.json) unless ALLOW_RUNTIME_CHANGE; genotype.json records the architecture once."""
    run_dir, resumed = runs.open_run_dir(cfg["OUT_DIR"] or runs.new_run_dir("eval"), cfg, ignore=NO_RESUME_CHECK)
    check_resumed_runtime(run_dir, rt, cfg["ALLOW_RUNTIME_CHANGE"])
    write_architecture(run_dir, architecture, resumed)
    print(f"run folder: {run_dir}" + (" (resuming)" if resumed else f"  (to resume: --OUT_DIR={run_dir})"))
    print(f"{'genotype' if architecture.genotype is not None else 'architecture'}: {architecture.source}")
    return run_dir, resumed


def finish(run_dir, data, skipped, loaders, metrics, ctx):
    """skipped_files.csv again when the loaders met files that failed late, then finished.json: the run is done."""
    late = list(dict.fromkeys(skipped + loaders.train.dataset.skipped))
    if len(late) > len(skipped):
        record_skipped(run_dir, late, n_images(data))
    runs.mark_finished(run_dir, {"headline": "test", "balanced_accuracy": metrics["balanced_accuracy"],
                                 "best_epoch": metrics["best_epoch"], "processes": ctx.world_size})
