"""A proxy study's measurements: which genotypes, each one's label-free scores and labeled accuracy, part by part.

Every finished part (one score of one genotype, one seed's nce or labeled training) is one line of parts.jsonl,
appended before the next part starts: a study killed at any point resumes without redoing a finished part, and a
labeled training killed half-way resumes inside its own train_isic run folder (from its ckpt.pt). A failed part
(NaN, out of memory) is recorded as failed and kept on resume, as the search keeps its failed trials; delete its
line from parts.jsonl to try it again.

Parts (key: genotype id, part, seed index):
  size      params and macs of the study's labeled-training network (EvalNetwork, no auxiliary head)
  naswot    common.search.trial.training_free_score: exactly what search.py --SCORE=naswot scores
  synflow   the same for synflow
  nce       common.search.trial.nce_score with the search's settings: exactly the search's trial score, with
            its loss after every epoch; seed index i sets the search's SEED to SEED + i
  nce_init  the control: the same loss, views, negatives, bank (and its refresh) and seed as nce seed 0, with the
            weights left at their initialisation (no learning): what nce says before any training
  nce_long  optional: nce with other search settings (NCE_LONG_ARGS, e.g. more epochs): a second variant
  train     common.labeled.run.train, train_isic.py's own training, on the genotype with labels and the settings
            train_isic.py resolved for the study; seed index i trains with SEED = study SEED + i; the split
            (SPLIT_SEED) stays fixed. The record keeps every epoch's validation balanced accuracy, macro AUC and
            loss, from which the truth candidates are computed
"""
import collections
import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common.arch import genotypes as G
from common.arch.cell_cost import eval_network_size as candidate_size
from common.failures import run_candidate
from common.labeled import run as labeled_run
from common.runs import FINISHED, append_jsonl, atomic_write_json, read_jsonl
from common.search.trial import nce_score, release_memory, training_free_score

PARTS_FILE = "parts.jsonl"
GENOTYPES_FILE = "genotypes.json"
TRAIN_DIR = "train"  # labeled-training run folders: train/<id>-s<seed index>/, their logs beside them
EPOCH_METRICS = ("balanced_accuracy", "auc_macro", "loss")  # history.jsonl's val_<name>, kept for every epoch


class StudyStopped(RuntimeError):
    """Too many parts failed: the settings are wrong, not one genotype."""


# ----------------------------------------------------------------------------- which genotypes


def random_genotypes(k, space, seed):
    """K genotypes drawn uniformly from the search's encoding (what ALGO='random' proposes): one choice index per
    variable. Genotype i comes from np.random.default_rng([seed, i]), so a larger K keeps the first ones."""
    out = []
    for i in range(k):
        rng = np.random.default_rng([seed, i])
        sample = {label: int(rng.integers(len(G.choices(label, space)))) for label in G.sample_labels(space=space)}
        out.append({"id": f"random-{i:02d}", "source": "random", "trial": None, "sample": sample,
                    "genotype": G.to_dict(G.sample_to_genotype(sample, space=space))})
    return out


def search_top(search_run, top):
    """The best `top` distinct genotypes of a search run folder (lowest `loss` of its ok trials, ties by trial)."""
    trials_file = Path(search_run) / "trials.jsonl"
    ok = [r for r in read_jsonl(trials_file)
          if r.get("status") == "ok" and isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    out, seen = [], set()
    for r in sorted(ok, key=lambda r: (r["loss"], r["trial"])):
        key = json.dumps(G.to_dict(G.canonical(G.from_dict(r["genotype"]))))  # TPE may propose one genotype twice
        if key not in seen:
            seen.add(key)
            out.append({"id": f"search-{len(out) + 1:02d}", "source": "search", "trial": r["trial"],
                        "search_loss": r["loss"], "genotype": r["genotype"]})
        if len(out) == top:
            break
    return out


def study_genotypes(run_dir, make):
    """The study's genotypes: genotypes.json of a resumed study (a search run that went on meanwhile changes
    nothing), else make() written there; each also as genotypes/<id>.json, a GENOTYPE train_isic.py reads."""
    path = Path(run_dir) / GENOTYPES_FILE
    if path.exists():
        return json.loads(path.read_text())
    entries = make()
    for e in entries:
        genotype_file(run_dir, e["id"]).parent.mkdir(exist_ok=True)
        atomic_write_json(genotype_file(run_dir, e["id"]), {"genotype": e["genotype"], "source": f"proxy study {e['id']}"})
    atomic_write_json(path, entries)
    return entries


def genotype_file(run_dir, gid):
    return Path(run_dir) / "genotypes" / f"{gid}.json"


# ----------------------------------------------------------------------------- persistence


class PartLog:
    """parts.jsonl: {(id, part, seed index): record}; add() persists a record before returning."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / PARTS_FILE
        self.records = {(r["id"], r["part"], r["seed_index"]): r for r in read_jsonl(self.path, repair=True)}

    def get(self, gid, part, seed_index=None):
        return self.records.get((gid, part, seed_index))

    def add(self, record):
        append_jsonl(self.path, record)
        self.records[(record["id"], record["part"], record["seed_index"])] = record
        return record

    def failures(self):
        return sum(r["status"] == "fail" for r in self.records.values())


# ----------------------------------------------------------------------------- the parts


@dataclasses.dataclass
class Measurer:
    """What every part of the study needs.

    ctx: the search's TrialContext (its images on the device, views, settings with SEED = the search's, runtime);
    train_cfg: train_isic.py's resolved settings for the study's labeled training (each part sets GENOTYPE, OUT_DIR
    and SEED); size_network: (C, cells, image px, classes) of the labeled-training network. Everything but ctx and
    log is picklable: a worker process builds its own Measurer from the same values (measure_many).
    """

    run_dir: Path
    ctx: object
    train_cfg: dict
    size_network: tuple
    n_seeds: int
    max_failures: int
    debug: bool = False
    log: object = print
    nce_seeds: int = 1
    long_cfg: dict = None  # the search settings of nce_long; None = no nce_long part

    def plan(self, only=None):
        """The parts of one genotype, in order: [(part, seed index)]; only: a tuple of part names to keep."""
        steps = [("size", None), ("naswot", None), ("synflow", None), *(("nce", i) for i in range(self.nce_seeds)),
                 ("nce_init", 0), *((("nce_long", 0),) if self.long_cfg else ()),
                 *(("train", i) for i in range(self.n_seeds))]
        return [s for s in steps if only is None or s[0] in only]

    def run_part(self, entry, part, seed_index):
        """One part -> its parts.jsonl record (status 'ok' or 'fail' with a reason): any exception of a part is that
        part's failure (common/failures.py, the search's own policy); KeyboardInterrupt stops the study."""
        genotype = G.from_dict(entry["genotype"])
        record = {"id": entry["id"], "part": part, "seed_index": seed_index}
        start, cpu = time.perf_counter(), time.process_time()
        result, failure = run_candidate(self._run, entry, genotype, part, seed_index, debug=self.debug)
        if failure is None:
            record.update(status="ok", **result)
        else:
            record.update(status="fail", reason=failure)
            release_memory(self.ctx.rt.device)
        record.setdefault("seconds", round(time.perf_counter() - start, 2))
        # CPU time of this process: on a shared machine the wall time says more about the neighbours than the part
        record.setdefault("cpu_seconds", round(time.process_time() - cpu, 2))
        return record

    def _run(self, entry, genotype, part, seed_index):
        if part == "size":
            params, macs = candidate_size(genotype, self.size_network)
            return {"params": params, "macs": macs}
        if part in ("naswot", "synflow"):
            return {part: training_free_score(part, genotype, self.ctx)[part], "seed": self.ctx.cfg["SEED"]}
        if part in ("nce", "nce_init", "nce_long"):
            seed = self.ctx.cfg["SEED"] + seed_index
            cfg = {**self.ctx.cfg, **(self.long_cfg if part == "nce_long" else {}), "SEED": seed}
            ctx = dataclasses.replace(self.ctx, cfg=cfg)
            scored = nce_score(genotype, ctx, f"{entry['id']} {part} s{seed_index}", learn=part != "nce_init")
            return {part: scored["loss"], "epoch_losses": scored["epoch_losses"], "seed": seed}
        return self._train(entry, seed_index)

    def _train(self, entry, seed_index):
        """Labeled training through train_isic's own run (common.labeled.run.train); a finished run folder is only
        read (the study was killed between its end and this record), an unfinished one resumes from its checkpoint."""
        # absolute paths: a run resumes only with the same GENOTYPE, whatever the working directory
        out = (Path(self.run_dir) / TRAIN_DIR / f"{entry['id']}-s{seed_index}").resolve()
        cfg = {**self.train_cfg, "GENOTYPE": str(genotype_file(self.run_dir, entry["id"]).resolve()), "OUT_DIR": str(out),
               "SEED": self.train_cfg["SEED"] + seed_index}
        timing = {}
        if (out / FINISHED).exists():
            timing = {"seconds": json.loads((out / "metrics.json").read_text())["wall_seconds"], "cpu_seconds": None}
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            threads = torch.get_num_threads()  # the training may set its own THREADS; the next nce runs as before
            try:
                with open(out.parent / f"{out.name}.log", "a") as f, contextlib.redirect_stdout(f):
                    labeled_run.train(cfg)
            finally:
                torch.set_num_threads(threads)
        metrics = json.loads((out / "metrics.json").read_text())
        history = read_jsonl(out / "history.jsonl")  # per epoch: the truth candidates average the last few
        return {"bacc": metrics["val_last"]["balanced_accuracy"], "test_bacc": metrics["test"]["balanced_accuracy"],
                "val_selected_bacc": metrics["val_selected"]["balanced_accuracy"], "best_epoch": metrics["best_epoch"],
                "epochs": metrics["epochs"], "run": str(out.relative_to(Path(self.run_dir).resolve())),
                **{f"epoch_{key}": [h[f"val_{key}"] for h in history] for key in EPOCH_METRICS}, **timing}


def part_line(record):
    """'  random-03 nce s1: 7.8123 | 31 s' (or the failure)."""
    where = f"  {record['id']} {record['part']}" + ("" if record["seed_index"] is None else f" s{record['seed_index']}")
    if record["status"] != "ok":
        return f"{where}: FAILED ({record['reason']})"
    part = record["part"]
    if part == "size":
        text = f"{record['params'] / 1e6:.3f}M parameters, {record['macs'] / 1e6:.1f}M MACs"
    elif part in ("nce", "nce_init", "nce_long"):
        text = _num(record[part], ".5g") + f" (by epoch: {' '.join(format(v, '.4f') for v in record['epoch_losses'])})"
    elif part == "train":
        bacc, test = record["bacc"], record["test_bacc"]
        text = (f"val balanced accuracy (last epoch) {_num(bacc, '.3f')}, test {_num(test, '.3f')}")
    else:
        text = _num(record[part], ".5g")
    cpu = f" (CPU {record['cpu_seconds']:.0f} s)" if record.get("cpu_seconds") is not None else ""
    return f"{where}: {text} | {record['seconds']:.0f} s{cpu}"


def _num(value, spec):
    return "n/a" if value is None else format(value, spec)


# ----------------------------------------------------------------------------- many parts, in parallel or not


_WORKER = {}  # the Measurer of this worker process


def _worker_init(recipe):
    """Once per worker process: die with the study (a killed study leaves no orphan training), then build a Measurer
    like the study's own, on this process's device and threads."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    from common.search.trial import trial_context

    ctx = trial_context({"images": recipe.pop("images"), "cfg": recipe.pop("scfg")}, recipe.pop("device"),
                       recipe.pop("threads"))
    _WORKER["measurer"] = Measurer(ctx=ctx, log=lambda line: None, **recipe)


def _worker_part(task):
    return _WORKER["measurer"].run_part(*task)


def measure_many(measurer, entries, parts, only=None, workers=1, recipe=None, on_genotype=None):
    """Every missing part of `entries` (those named in `only`), in genotype order; records appended to `parts` as they
    arrive (in task order). workers > 1: that many spawned processes, each built from `recipe` (the keyword arguments
    of Measurer, with 'images', 'scfg', 'device', 'threads' for its TrialContext). on_genotype(entry) runs when the
    last missing part of an entry is recorded. Stops (StudyStopped) when more than max_failures parts failed."""
    tasks = [(e, p, i) for e in entries for p, i in measurer.plan(only) if parts.get(e["id"], p, i) is None]
    if not tasks:
        return
    left = collections.Counter(e["id"] for e, _, _ in tasks)
    pool = None
    if workers > 1 and len(tasks) > 1:
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), multiprocessing.get_context("spawn"),
                                                      initializer=_worker_init, initargs=(recipe,))
        results = pool.map(_worker_part, tasks)
    else:
        results = (measurer.run_part(*t) for t in tasks)
    try:
        for (entry, _, _), record in zip(tasks, results):
            parts.add(record)
            measurer.log(part_line(record))
            if record["status"] == "fail" and parts.failures() > measurer.max_failures:
                raise StudyStopped(f"{parts.failures()} parts failed (MAX_FAILURES {measurer.max_failures}); the last: "
                                   f"{record['reason']}. See {parts.path} and the logs under "
                                   f"{Path(measurer.run_dir) / TRAIN_DIR}")
            left[entry["id"]] -= 1
            if not left[entry["id"]] and on_genotype:
                on_genotype(entry)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
