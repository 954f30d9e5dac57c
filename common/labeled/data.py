"""The labeled data pipeline: the dataset (the demo lesions when DATA_DIR is None), its train/val/test split written
and checked, one-time resized copies, and the loaders (class balance, each torchrun rank's share)."""
import dataclasses
import hashlib
import math
import sys
from pathlib import Path

import torch

from common import runs
from common.data.datasets import load_labeled, split_table
from common.data.demo.dataset import ensure_demo_dataset
from common.data.images import skipped_summary, write_skipped
from common.data.layouts import SPLITS, DatasetError
from common.data.loaders import ImageDataset, eval_transform, prepare_resized, train_transform
from common.data.splits import balanced_sampler, class_counts
from common.labeled.distributed import eval_sampler, per_rank_batch, rank_seed, train_sampler

SPLIT_FILE = "split.csv"
SKIP_LOG = ".skipped_images.tsv"  # loader workers (of every rank) append here; for skipped_files.csv
# CLASS_BALANCE -> exponents p (weight count**-p) of the (sampler, loss weights); None = not used. A class's total
# weight is count x draw weight x loss weight: the same for every class in all but 'none' ('both' splits the 1/count)
BALANCE_POWERS = {"loss": (None, 1.0), "sampler": (1.0, None), "both": (0.5, 0.5), "none": (None, None)}


def load_data(cfg):
    """The labeled dataset (the demo lesions when DATA_DIR is None); fails fast on a wrong path or table."""
    data_dir = cfg["DATA_DIR"]
    if data_dir is None:
        data_dir = ensure_demo_dataset()
    return load_labeled(data_dir, cfg["LAYOUT"], cfg["VAL_FRACTION"], cfg["SPLIT_SEED"], cfg["ALLOW_MISSING"],
                        cfg["CSV_PATH"], cfg["TEST_FRACTION"])


def train_min_side(cfg):
    """Short side at which a random crop of the smallest area still has full resolution."""
    return int(math.ceil(cfg["IMAGE_SIZE"] / math.sqrt(cfg["CROP_SCALE"][0])))


def resized_cache_dir(cfg, root):
    """Where the one-time resized copies live, or None (RESIZED_CACHE=off)."""
    setting = str(cfg["RESIZED_CACHE"])
    if setting.lower() in ("off", "none", "false", ""):
        return None
    if setting.lower() == "auto":
        resolved = Path(root).expanduser().resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
        return runs.REPO_ROOT / "data" / "resized" / f"{resolved.name}-{digest}"
    return Path(setting).expanduser()


def prepare_splits(cfg, data, run_dir, *, trained, processes=1):
    """split.csv (once an epoch is `trained`, a resumed run's must be the one it began with) and skipped_files.csv
    written. Returns ({split: records whose images decode}, skipped files, sha1 of split.csv's bytes). processes:
    of a torchrun job, each validating its share of the val images (at least one)."""
    table = split_table(data)
    split_file = run_dir / SPLIT_FILE
    if trained and split_file.exists() and split_file.read_text() != table:
        raise DatasetError(f"{split_file} differs from the split of the data now in {data.root} (images added, removed "
                           "or relabelled?); resume with the data the run started on, or start a new OUT_DIR")
    runs.atomic_write_text(split_file, table)
    skipped = [(image_id, "listed in the CSV, no image file") for image_id in data.missing]
    splits = {s: getattr(data, s) for s in SPLITS}
    cache = resized_cache_dir(cfg, data.root)
    if cache is not None and any(r.path is not None for records in splits.values() for r in records):
        side, bar = train_min_side(cfg), sys.stderr.isatty()
        print(f"data: resized copies (short side {side} px) in {cache}")
        for s in SPLITS:
            splits[s], bad = prepare_resized(splits[s], side, cache, progress=bar)
            skipped += bad
    record_skipped(run_dir, skipped, n_images(data))
    if not splits["train"]:
        raise DatasetError(f"none of the training images in {data.root} could be decoded; see skipped_files.csv")
    for s, fix in (("val", "VAL_FRACTION"), ("test", "TEST_FRACTION")):
        if not splits[s]:
            raise DatasetError(f"no {s} images left in {data.root}; see skipped_files.csv or raise {fix}")
    if len(splits["val"]) < processes:
        raise DatasetError(f"{len(splits['val'])} validation images for {processes} torchrun processes: each needs one; "
                           "raise VAL_FRACTION or run fewer processes")
    print(f"data: {data.layout} at {data.root}: " + " / ".join(f"{len(splits[s])} {s}" for s in SPLITS)
          + f" images, {len(data.classes)} classes")
    for s in SPLITS:
        print(f"  {s + ' per class:':<16} {describe_classes(data.classes, splits[s])}")
    print("  " + describe_sources(cfg, data))
    return splits, skipped, hashlib.sha1(table.encode()).hexdigest()


def n_images(data):
    """Every image the dataset names, missing files included (the denominator of the skipped summary)."""
    return len(data.train) + len(data.val) + len(data.test) + len(data.missing)


def describe_sources(cfg, data):
    """Where val and test came from: the dataset's own splits, or a seeded split of all images or of train."""
    own = [s for s in ("val", "test") if s not in data.carved]
    fraction = {"val": cfg["VAL_FRACTION"], "test": cfg["TEST_FRACTION"]}
    of = "all images" if len(data.carved) == 2 else "the dataset's train split"
    grouped = ", by lesion" if any(r.group is not None for r in data.train) else ""
    parts = [f"{' and '.join(own)}: the dataset's own"] if own else []
    if data.carved:
        parts.append(", ".join(f"{s} {fraction[s]:.0%}" for s in data.carved)
                     + f" of {of}: seeded split (stratified{grouped}, SPLIT_SEED {cfg['SPLIT_SEED']})")
    return "; ".join(parts) + "; val picks the best epoch, test scores it once"


def describe_classes(classes, records):
    return ", ".join(f"{c} {n}" for c, n in zip(classes, class_counts(records, len(classes))))


def record_skipped(run_dir, skipped, n_total):
    if skipped:
        write_skipped(run_dir, skipped)
        print(skipped_summary(skipped, n_total))


@dataclasses.dataclass(frozen=True)
class Loaders:
    """The splits' loaders and the classes their labels index; the train `sampler` (None: a plain shuffle) and
    `generator` are reseeded at every epoch."""

    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    test: torch.utils.data.DataLoader
    sampler: torch.utils.data.Sampler | None
    generator: torch.Generator
    classes: tuple

    def for_results(self, ctx):
        """The loaders for rank 0's final scoring, which it runs alone: validation whole and in order (under torchrun
        the epochs' val loader reads this rank's share only); in a single process the loaders themselves."""
        if not ctx.distributed:
            return self
        val = self.val
        whole = torch.utils.data.DataLoader(val.dataset, batch_size=val.batch_size, shuffle=False,
                                            num_workers=val.num_workers, pin_memory=val.pin_memory)
        return dataclasses.replace(self, val=whole)


def make_loaders(cfg, data, splits, run_dir, rt, ctx):
    """Loaders of the splits; class balance from the train split's counts. Under torchrun each process loads
    per_rank_batch(BATCH_SIZE) images a step: its share of each epoch's draw and of the validation images (gathered
    for the metrics); test is read at the end by rank 0 alone, whole."""
    skip_log = run_dir / SKIP_LOG
    size, mean, std = cfg["IMAGE_SIZE"], cfg["MEAN"], cfg["STD"]
    train_ds = ImageDataset(splits["train"], train_transform(size, mean, std, scale=cfg["CROP_SCALE"]), data.arrays,
                            min_side=train_min_side(cfg), skip_log=skip_log)
    power, _ = BALANCE_POWERS[cfg["CLASS_BALANCE"]]
    balanced = balanced_sampler(splits["train"], len(data.classes), cfg["SEED"], power) if power is not None else None
    sampler = train_sampler(train_ds, cfg["SEED"], ctx, balanced)  # a single process: `balanced` itself
    # reseeded per epoch: a resumed run sees the same batches (the order; under torchrun the workers' seeds only)
    generator = torch.Generator().manual_seed(rank_seed(cfg["SEED"], ctx))
    batch = per_rank_batch(cfg["BATCH_SIZE"], ctx)
    per_epoch = len(sampler) if sampler is not None else len(train_ds)  # the same on every rank: as many steps
    workers = cfg["NUM_WORKERS"]
    common = dict(num_workers=workers, pin_memory=rt.device.type == "cuda", persistent_workers=workers > 0)
    train = torch.utils.data.DataLoader(train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                                        generator=generator, drop_last=per_epoch > batch, **common)  # no size-1 batch
    evals = {}
    for s in ("val", "test"):
        ds = ImageDataset(splits[s], eval_transform(size, mean, std), data.arrays, min_side=size, skip_log=skip_log)
        # test is read once, at the end: no worker processes kept alive for it through training
        evals[s] = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False,
                                               sampler=eval_sampler(ds, ctx) if s == "val" else None,
                                               **{**common, "persistent_workers": workers > 0 and s == "val"})
    return Loaders(train, evals["val"], evals["test"], sampler, generator, tuple(data.classes))
