"""The classifier: which architecture (a DARTS genotype or a torchvision ARCH), the network, a memory probe of its
training step before the first epoch, and the lines that describe it."""
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from common import runs
from common.arch.baselines import WithAux, build_baseline
from common.arch.cost import count_params
from common.arch.genotypes import Genotype, from_dict, resolve, to_dict
from common.arch.networks import EvalNetwork
from common.config import ConfigError
from common.labeled.distributed import per_rank_batch
from common.labeled.pretrain import is_pretrained_file
from common.labeled.step_memory import LabeledStep, probe_classifier
from common.labeled.torchrun import say_if
from common.memory import FitCheck, StepMemory, check_step

GENOTYPE_FILE = "genotype.json"
DEFAULT_GENOTYPE = "CNAS_ISIC_s5"  # without GENOTYPE and without any search run
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet weights
PROBE_SIZE = 64  # px, the 2 images that find parameters without gradient before DDP wraps the model


@dataclass(frozen=True)
class Architecture:
    """What is trained: a genotype (None for a torchvision ARCH), where it came from, and the ARCH (None: DARTS)."""

    genotype: Genotype | None
    source: str
    arch: str | None = None

    def genotype_dict(self):
        return to_dict(self.genotype) if self.genotype is not None else None


def choose_genotype(spec):
    """(Genotype, source): GENOTYPE, or the newest search run's best_genotype.json, else CNAS_ISIC_s5."""
    if spec is None:
        newest = runs.newest_run("search", "best_genotype.json")
        spec = str(newest / "best_genotype.json") if newest is not None else DEFAULT_GENOTYPE
    try:
        return resolve(spec)
    except ValueError as exc:  # unknown name, unreadable JSON: the user's value
        raise ConfigError(str(exc)) from None


def choose_architecture(cfg):
    """A baseline ARCH has no genotype; a run folder being resumed keeps the genotype it began with (even if a newer
    search run exists by now); else GENOTYPE resolved. Reads, never writes: it runs before the run folder exists, so
    that the model can be built (and a weights file refused) first."""
    if cfg["ARCH"] is not None:
        weights = cfg["PRETRAINED_WEIGHTS"]
        kind = "pre-trained" if weights and is_pretrained_file(weights) else "ImageNet"
        source = f"torchvision {cfg['ARCH']}" + (f", {kind} backbone {Path(weights).name}" if weights else "")
        return Architecture(None, source, cfg["ARCH"])
    saved = Path(cfg["OUT_DIR"]).expanduser() / GENOTYPE_FILE if cfg["OUT_DIR"] is not None else None
    kept = json.loads(saved.read_text()) if saved is not None and saved.is_file() else {}
    if kept.get("genotype") is not None and not (saved.parent / runs.FINISHED).exists():
        return Architecture(from_dict(kept["genotype"]), kept["source"])  # (other settings: refused by open_run_dir)
    return Architecture(*choose_genotype(cfg["GENOTYPE"]))


def write_architecture(run_dir, architecture, resumed):
    """genotype.json, written once: the architecture a resumed run keeps."""
    saved = run_dir / GENOTYPE_FILE
    if not (resumed and saved.exists()):
        runs.atomic_write_json(saved, {"genotype": architecture.genotype_dict(), "source": architecture.source,
                                       "arch": architecture.arch})


def build_model(genotype, n_classes, cfg, weights=None):
    """The classifier, whose forward returns (logits, auxiliary logits or None): a DARTS EvalNetwork from `genotype`,
    or with cfg ARCH a torchvision model (no auxiliary head). weights: a torchvision ImageNet .pth for the ARCH
    backbone (ConfigError when it does not fit); None when a checkpoint brings every weight."""
    arch = cfg.get("ARCH")  # .get: checkpoints written before ARCH existed
    if arch is not None:
        return WithAux(build_baseline(arch, n_classes, weights))
    return EvalNetwork(genotype, n_classes, C=cfg["INIT_CHANNELS"], layers=cfg["LAYERS"],
                       auxiliary=cfg["AUXILIARY_WEIGHT"] > 0)


def probe_images():
    """2 fixed images of PROBE_SIZE px for unused_parameters (drawn from their own generator: the global RNG
    streams stay as seeded)."""
    return torch.rand(2, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))


def check_training_memory(cfg, model, n_classes, rt, ctx):
    """Probe one labeled training step (a throwaway copy of `model`, random images) on this process's device before
    the first epoch, and stop with one line naming BATCH_SIZE (or IMAGE_SIZE / INIT_CHANNELS when even the smallest
    batch cannot fit) instead of being killed mid-epoch. Under torchrun every rank checks its own device, the ranks on
    one machine sharing its memory when they train on the CPU, and all stop when one cannot fit (that one says why);
    the suggested BATCH_SIZE is the global batch. Returns the bytes one process's step needs."""
    world = ctx.world_size
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if ctx.distributed and rt.device.type == "cpu" else 1
    error, need = None, None
    try:
        step = LabeledStep(image_size=cfg["IMAGE_SIZE"], n_classes=n_classes, autocast=rt.autocast,
                           channels_last=rt.channels_last,
                           aux_weight=cfg["AUXILIARY_WEIGHT"] if cfg["ARCH"] is None else 0.0)
        mem = probe_classifier(lambda: copy.deepcopy(model), step, batch_size=per_rank_batch(cfg["BATCH_SIZE"], ctx),
                               device=rt.device)
        # the `local` processes on this machine, each at BATCH_SIZE / world images, as a line in the global batch
        shared = StepMemory(mem.fixed * local, mem.per_image * local / world, mem.device)
        note = f" ({local} processes on this machine)" if local > 1 else ""
        hint = "lower IMAGE_SIZE" + (" or INIT_CHANNELS" if cfg["ARCH"] is None else " or pick a smaller ARCH")
        need = check_step(shared, rt.device, cfg["BATCH_SIZE"], FitCheck(network_hint=hint, log=say_if(ctx), note=note))
    except Exception as exc:  # noqa: BLE001 - re-raised below, once every rank knows (none waits in a collective)
        error = exc
    if ctx.distributed and ctx.mean(float(error is not None)) > 0 and error is None:
        raise SystemExit(2)  # another rank cannot fit (or its probe failed): it says why
    if error is not None:
        raise error
    return need


def describe_model(model, cfg):
    n = f"{count_params(model) / 1e6:.2f}M parameters"
    if cfg["ARCH"] is not None:
        start = f"backbone from {cfg['PRETRAINED_WEIGHTS']}" if cfg["PRETRAINED_WEIGHTS"] else "from scratch"
        return f"model: {cfg['ARCH']} (torchvision, {start}), {n}, {cfg['IMAGE_SIZE']} px"
    aux = " (+ the auxiliary head, training only)" if model.aux_head is not None else ""
    return f"model: {n}{aux}, C={cfg['INIT_CHANNELS']}, {cfg['LAYERS']} cells, {cfg['IMAGE_SIZE']} px"


def architecture_notes(cfg):
    """Lines on settings an ARCH run does not use, or uses unusually."""
    notes = []
    if cfg["ARCH"] is not None:
        notes.append(f"note: {cfg['ARCH']} has no auxiliary head or drop path and its own width and depth: "
                     "AUXILIARY_WEIGHT, DROP_PATH_PROB, INIT_CHANNELS and LAYERS are ignored")
        imagenet = cfg["PRETRAINED_WEIGHTS"] and not is_pretrained_file(cfg["PRETRAINED_WEIGHTS"])
        if imagenet and (tuple(cfg["MEAN"]), tuple(cfg["STD"])) != (IMAGENET_MEAN, IMAGENET_STD):
            notes.append(f"note: ImageNet weights expect --MEAN={IMAGENET_MEAN} --STD={IMAGENET_STD}; this run "
                         f"normalises with MEAN={tuple(cfg['MEAN'])}, STD={tuple(cfg['STD'])}")
    return notes

