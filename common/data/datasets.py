"""A labeled dataset as train / validation / test records: its layout read, the missing splits carved, split.csv."""
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from common.data.layouts import LAYOUTS, SPLITS, DatasetError, Record, existing_path, read_layout
from common.data.splits import class_counts, split_records


@dataclass
class LabeledData:
    layout: str
    classes: list[str]
    train: list[Record]
    val: list[Record]  # model selection (the best epoch)
    test: list[Record]  # held out: scored once, by the selected model
    root: Path
    arrays: dict | None = None  # npz: {"train": uint8 (N, H, W, 3), "val": ..., "test": ...}
    missing: list[str] = field(default_factory=list)  # ids of CSV rows whose image file is missing
    carved: tuple[str, ...] = ()  # the splits made here by a seeded split (the others came with the dataset)
    labeled: frozenset | None = None  # ids of the training images that keep their labels (LABEL_FRACTION); None = all


def _check_classes(classes, splits, where):
    """Every split has images and every class seen in val/test has training images."""
    if not splits["train"]:
        raise DatasetError(f"no training images found in {where}; fix DATA_DIR")
    fix = {"val": "raise VAL_FRACTION, add images, or a val/ folder", "test": "raise TEST_FRACTION or add images"}
    tr = class_counts(splits["train"], len(classes))
    for s in ("val", "test"):
        if not splits[s]:
            raise DatasetError(f"no {'validation' if s == 'val' else 'test'} images in {where} "
                               f"({len(splits['train'])} training images): {fix[s]}")
        held = class_counts(splits[s], len(classes))
        for k, c in enumerate(classes):
            if tr[k] == 0 and held[k] > 0:
                raise DatasetError(
                    f"class {c!r} has no training images ({held[k]} in {s}) in {where}; "
                    "add training images of it or remove it from the dataset"
                )


def check_fractions(val_fraction, test_fraction):
    """DatasetError unless both are numbers in (0, 1) that leave images for training."""
    for name, f in (("VAL_FRACTION", val_fraction), ("TEST_FRACTION", test_fraction)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
            raise DatasetError(f"{name}={f!r} must lie strictly between 0 and 1, e.g. 0.2")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(f"VAL_FRACTION + TEST_FRACTION = {val_fraction + test_fraction:g} leaves no training "
                           "images; keep the sum below 1, e.g. 0.2 + 0.2")


def load_labeled(data_dir, layout="auto", val_fraction=0.2, seed=0, allow_missing=False,
                 csv_path=None, test_fraction=0.2) -> LabeledData:
    """Load a labeled dataset: records with class indices, train/val/test splits, class names in order.

    layout: 'auto' (detect_layout) or one of LAYOUTS. csv_path: the ground-truth / metadata CSV when it is not
    found automatically. The dataset's own splits are kept: ImageFolder's val/ and test/, DermaMNIST's val_* and
    test_*. A split the dataset lacks is carved by a seeded split (grouped_split: stratified, grouped by lesion
    where known, `seed`): isic2019 and ham10000 get val_fraction and test_fraction of all images in one split;
    ImageFolder with train/ and test/ only gets val_fraction of train/ as validation (test/ stays the test),
    with train/ and val/ only test_fraction of train/ as test; a .npz without test_* test_fraction of train.
    """
    path = existing_path(data_dir)
    if layout not in ("auto",) + LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose 'auto' or one of {', '.join(LAYOUTS)}")
    check_fractions(val_fraction, test_fraction)
    found = read_layout(path, layout, csv_path, allow_missing)
    if found.pool is not None:  # isic2019, ham10000: validation and test carved in one split
        splits = dict(zip(SPLITS, split_records(found.pool, (val_fraction, test_fraction), seed)))
        carved = ("val", "test")
    else:
        splits, carved = dict(found.splits), ()
    for s, fraction in (("val", val_fraction), ("test", test_fraction)):
        if splits[s] is None:  # an ImageFolder or .npz without this split: carve it from train
            splits["train"], splits[s] = split_records(splits["train"], fraction, seed)
            carved += (s,)
    _check_classes(found.classes, splits, found.path)
    return LabeledData(found.layout, found.classes, splits["train"], splits["val"], splits["test"], found.path,
                       found.arrays, found.missing, carved)

# ------------------------------------------------------------------------------------------- split file


def split_table(data: LabeledData) -> str:
    """split.csv's text: columns image,split,label,class,group; split is train, val or test. With data.labeled (a
    share of the training labels in use) also a column labeled: 1 or 0 for a training image, empty for val and test."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    marks = data.labeled is not None
    w.writerow(["image", "split", "label", "class", "group"] + (["labeled"] if marks else []))
    for split in SPLITS:
        for r in getattr(data, split):
            mark = ([int(r.image_id in data.labeled) if split == "train" else ""] if marks else [])
            w.writerow([r.image_id, split, r.label, data.classes[r.label], r.group or ""] + mark)
    return buf.getvalue()
