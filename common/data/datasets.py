"""Labeled datasets: detect the layout on disk, load records, make seeded splits, count classes."""
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.data.images import list_images
from common.runs import atomic_write_text


class DatasetError(ValueError):
    """The data on disk cannot be used as given; the message names the file or value and the fix."""


LAYOUTS = ("isic2019", "ham10000", "imagefolder", "dermamnist")
LAYOUT_HELP = (
    "isic2019 (a *GroundTruth*.csv with columns image,<class>,... and the *_Input image folder beside it), "
    "ham10000 (HAM10000_metadata.csv + HAM10000_images_part_1/2), "
    "imagefolder (train/<class>/* with val/<class>/* and/or test/<class>/*), "
    "dermamnist (a MedMNIST .npz with train_/val_(/test_) images and labels)"
)
HAM_ORDER = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")  # HAM10000's own class order
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")  # MedMNIST's label order 0..6
NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels")  # required; test_* is used when present
SPLITS = ("train", "val", "test")  # val chooses the epoch; test is scored once, by the chosen model


@dataclass(frozen=True)
class Record:
    image_id: str  # ISIC image name / HAM image_id / path relative to root (ImageFolder) / f"{split}_{i}" (npz)
    label: int
    path: Path | None = None  # image file, or None for in-memory (npz) images
    index: int | None = None  # row in arrays[split] for npz
    group: str | None = None  # lesion_id (HAM10000, ISIC metadata): grouped splitting


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


# ------------------------------------------------------------------------------------------- detection


def _csv_header(path):
    """The first row of a CSV, stripped; [] when it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except OSError:
        return []


def _is_ham_header(header):
    return {"lesion_id", "image_id", "dx"} <= set(header)


def _is_isic_csv(path):
    return "groundtruth" in path.name.lower() or [c.lower() for c in _csv_header(path)[:1]] == ["image"]


def _visible(paths):
    return sorted(p for p in paths if not p.name.startswith("."))


def _label_csvs(root):
    """CSVs in root, else one level down (a zip unpacked into its own folder)."""
    found = _visible(root.glob("*.csv"))
    return found or _visible(root.glob("*/*.csv"))


def _find_csv(root, kind):
    """The ground-truth (kind 'isic2019') or metadata (kind 'ham10000') CSV under root, or None."""
    csvs = _label_csvs(root)
    if kind == "ham10000":
        named = [p for p in csvs if p.name.lower().startswith("ham10000_metadata")]
        return (named or [p for p in csvs if _is_ham_header(_csv_header(p))] or [None])[0]
    named = [p for p in csvs if "groundtruth" in p.name.lower()]
    return (named or [p for p in csvs if _is_isic_csv(p) and not _is_ham_header(_csv_header(p))] or [None])[0]


def _split_dirs(root):
    """{'train': dir, 'val': dir or None, 'test': dir or None} of an ImageFolder layout (train/ with class folders
    and at least one of val/, test/), or None."""
    dirs = {s: root / s if (root / s).is_dir() else None for s in SPLITS}
    if dirs["train"] is None or (dirs["val"] is None and dirs["test"] is None):
        return None
    return dirs if any(d.is_dir() for d in _visible(dirs["train"].iterdir())) else None


def _find_npz(path):
    if path.is_file():
        return path
    found = _visible(path.glob("*.npz"))
    if len(found) > 1:
        raise DatasetError(
            f"{path} holds several .npz files ({', '.join(p.name for p in found[:4])}); "
            "set DATA_DIR to the one to use"
        )
    return found[0] if found else None


def _check_exists(data_dir):
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DatasetError(f"DATA_DIR {path} does not exist; fix the path (or leave DATA_DIR=None for the demo)")
    return path


def detect_layout(data_dir) -> str:
    """Which of LAYOUTS the folder (or .npz file) holds, from what is in it; DatasetError when none."""
    path = _check_exists(data_dir)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "dermamnist"
        if path.suffix.lower() == ".csv":
            return "ham10000" if _is_ham_header(_csv_header(path)) else "isic2019"
        raise DatasetError(f"DATA_DIR {path} is a file; point it at a dataset folder or a .npz ({LAYOUT_HELP})")
    if _find_csv(path, "isic2019") is not None:
        return "isic2019"
    if _find_csv(path, "ham10000") is not None:
        return "ham10000"
    if _split_dirs(path) is not None:
        return "imagefolder"
    if _find_npz(path) is not None:
        return "dermamnist"
    if path.name.lower().endswith("_input") and _find_csv(path.parent, "isic2019") is not None:
        raise DatasetError(f"{path} holds the ISIC images but not the ground-truth CSV; "
                           f"set DATA_DIR to {path.parent}")
    if not list_images(path):
        hint = "; it holds no images at all"
    else:
        hint = "; it holds images but no labels (unlabeled folders are for the search, not for training)"
    raise DatasetError(f"no labeled dataset found in {path}{hint}. Expected one of: {LAYOUT_HELP}")


# ------------------------------------------------------------------------------------------- splitting


def grouped_split(labels, groups, fractions, seed):
    """[rest idx, part idx, ...]: held-out parts of `fractions` (one float or a sequence) of the images, stratified
    by class, no group on two sides; deterministic by seed.

    groups: one id per image (a lesion), or None for every image its own group. A group is placed whole and
    counts towards the most common label among its images. Per class, the class's groups are shuffled with
    the seed and then taken largest first; each goes to the held-out part furthest below its target
    (n_class * fraction) when that brings the part closer to its target, else to the rest. So each part holds
    its fraction of every class to within half a group (round(n * fraction), halves up, for single images).
    Small classes then get at least one group in the rest, and one in each part while the rest keeps one.
    (Written here rather than taken from sklearn: StratifiedGroupKFold only offers 1/k fractions.)
    """
    fractions = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    if groups is None:
        gid = np.arange(len(labels))
    else:
        uniq, gid = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if len(uniq) < 2:
            raise DatasetError("cannot split: all images belong to one lesion group; add images of other lesions")
    n_groups, n_labels = int(gid.max(initial=-1)) + 1, int(labels.max(initial=-1)) + 1
    size = np.bincount(gid, minlength=n_groups)
    per_label = np.bincount(gid * n_labels + labels, minlength=n_groups * n_labels).reshape(n_groups, n_labels)
    group_label = per_label.argmax(1)  # (G,) ties: the lower label
    side = np.zeros(n_groups, np.int64)  # 0 = rest, p = held-out part p (1-based)
    rng = np.random.default_rng(seed)
    for c in np.unique(group_label):
        gs = np.flatnonzero(group_label == c)
        gs = gs[rng.permutation(len(gs))]
        gs = gs[np.argsort(-size[gs], kind="stable")]  # largest first, shuffled among equal sizes
        target, count = size[gs].sum() * fractions, np.zeros(len(fractions))
        for g in gs:
            p = int(np.argmax(target - count))
            if count[p] + size[g] / 2 <= target[p]:
                side[g], count[p] = p + 1, count[p] + size[g]
        _cover_small_class(side, gs, size, len(fractions))
    for c in range(n_labels):  # a group of mixed labels may still leave a class without training images
        img_side = side[gid]
        if not ((img_side == 0) & (labels == c)).any():
            side[np.unique(gid[labels == c])] = 0
    img_side = side[gid]
    return [np.flatnonzero(img_side == p) for p in range(len(fractions) + 1)]


def _cover_small_class(side, gs, size, n_parts):
    """For one class's groups gs: one group in the rest, then one in each part while the rest keeps one."""
    def smallest(on):
        members = gs[side[gs] == on]
        return members[np.argmin(size[members])]

    if not (side[gs] == 0).any():
        side[smallest(max(range(1, n_parts + 1), key=lambda p: (side[gs] == p).sum()))] = 0
    for p in range(1, n_parts + 1):
        if not (side[gs] == p).any() and (side[gs] == 0).sum() >= 2:
            side[smallest(0)] = p


def stratified_split(labels, fractions, seed):
    """grouped_split with every image its own group."""
    return grouped_split(labels, None, fractions, seed)


def _split_records(records, fractions, seed):
    """[rest, part, ...] record lists; grouped by lesion where any record has a group."""
    labels = [r.label for r in records]
    groups = None
    if any(r.group is not None for r in records):
        groups = [r.group if r.group is not None else f"image:{r.image_id}" for r in records]
    return [[records[i] for i in idx] for idx in grouped_split(labels, groups, fractions, seed)]


# ------------------------------------------------------------------------------------------- layouts


def _index_images(folder):
    """{file stem: path} of every image under folder (recursive; the first in sorted order wins)."""
    index = {}
    for p in list_images(folder):
        index.setdefault(p.stem, p)
    return index


def _read_rows(csv_path):
    """(header, rows) of a CSV; rows are lists of stripped strings."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc}") from None
    rows = [r for r in rows if any(r)]  # blank lines
    if not rows:
        raise DatasetError(f"{csv_path} is empty; expected a header row and one row per image")
    return rows[0], rows[1:]


def _match_images(ids, image_index, csv_path, folder, allow_missing):
    """Paths for ids; a missing image stops unless allow_missing. Returns (paths or None, missing ids)."""
    if not image_index:
        raise DatasetError(f"no image files under {folder} (for the rows of {csv_path.name}); fix DATA_DIR")
    paths = [image_index.get(i) for i in ids]
    missing = [i for i, p in zip(ids, paths) if p is None]
    if missing and not allow_missing:
        raise DatasetError(
            f"{len(missing)} of {len(ids)} images listed in {csv_path} are missing under {folder} "
            f"(e.g. {', '.join(missing[:3])}); fix DATA_DIR or set ALLOW_MISSING=True"
        )
    return paths, missing


def _isic_image_folder(csv_path, root):
    """The *_Input folder beside the ground-truth CSV (the one named like the CSV first), else root."""
    beside = [d for d in _visible(csv_path.parent.iterdir()) if d.is_dir() and d.name.lower().endswith("_input")]
    want = csv_path.stem.lower().replace("groundtruth", "input")
    named = [d for d in beside if d.name.lower() == want]
    if named or len(beside) == 1:
        return (named or beside)[0]
    return root


def _isic_groups(csv_path):
    """{image: lesion_id} from an ISIC *Metadata*.csv beside the ground truth, if one has lesion_id."""
    for meta in _visible(csv_path.parent.glob("*.csv")):
        if "metadata" not in meta.name.lower():
            continue
        header = [c.lower() for c in _csv_header(meta)]
        if "image" in header and "lesion_id" in header:
            _, rows = _read_rows(meta)
            i, g = header.index("image"), header.index("lesion_id")
            return {r[i]: r[g] for r in rows if len(r) > max(i, g) and r[g]}
    return {}


def _load_isic(root, csv_path, allow_missing):
    header, rows = _read_rows(csv_path)
    lower = [c.lower() for c in header]
    if "image" not in lower:
        raise DatasetError(
            f"{csv_path} has no 'image' column (its columns: {', '.join(header[:12])}); expected the ISIC "
            "ground-truth header image,<class 1>,<class 2>,... (e.g. image,MEL,NV,BCC,...): rename the column"
        )
    col = lower.index("image")
    class_cols = [k for k in range(len(header)) if k != col]
    classes = [header[k] for k in class_cols]
    if len(classes) < 2:
        raise DatasetError(f"{csv_path} has {len(classes)} class column(s); a ground-truth CSV has image then one "
                           "0/1 column per class (at least 2)")
    ids, labels, seen = [], [], set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        if len(row) != len(header):
            raise DatasetError(f"{csv_path} line {n} has {len(row)} fields, the header {len(header)}; fix the row")
        values = []
        for k in class_cols:
            try:
                values.append(float(row[k]))
            except ValueError:
                raise DatasetError(
                    f"{csv_path} line {n}: column {header[k]} holds {row[k]!r}, not 0/1; the class columns of a "
                    "ground-truth CSV are one-hot floats (1.0 for the image's class, else 0.0)"
                ) from None
        ones = [j for j, v in enumerate(values) if v == 1.0]
        if len(ones) != 1 or any(v not in (0.0, 1.0) for v in values):
            raise DatasetError(
                f"{csv_path} line {n} ({row[col]}): expected exactly one 1.0 among {','.join(classes)}, got "
                f"{','.join(row[k] for k in class_cols)}; fix or remove the row"
            )
        if row[col] in seen:
            raise DatasetError(f"{csv_path} line {n}: image {row[col]} is listed twice; remove the duplicate row")
        seen.add(row[col])
        ids.append(row[col])
        labels.append(ones[0])
    folder = _isic_image_folder(csv_path, root)
    paths, missing = _match_images(ids, _index_images(folder), csv_path, folder, allow_missing)
    lesions = _isic_groups(csv_path)
    records = [Record(i, y, p, group=lesions.get(i)) for i, y, p in zip(ids, labels, paths) if p is not None]
    return classes, records, missing


def _load_ham(root, csv_path, allow_missing):
    header, rows = _read_rows(csv_path)
    need = ("lesion_id", "image_id", "dx")
    if not set(need) <= set(header):
        raise DatasetError(
            f"{csv_path} lacks column(s) {', '.join(c for c in need if c not in header)} (its columns: "
            f"{', '.join(header[:12])}); expected HAM10000's header lesion_id,image_id,dx,..."
        )
    li, ii, di = (header.index(c) for c in need)
    seen = set()
    for n, row in enumerate(rows, start=2):
        if len(row) <= max(li, ii, di) or not row[ii] or not row[di]:
            raise DatasetError(f"{csv_path} line {n}: image_id or dx is empty; fix or remove the row")
        if row[ii] in seen:
            raise DatasetError(f"{csv_path} line {n}: image {row[ii]} is listed twice; remove the duplicate row")
        seen.add(row[ii])
    present = {row[di] for row in rows}
    classes = [c for c in HAM_ORDER if c in present] + sorted(present - set(HAM_ORDER))
    ids = [row[ii] for row in rows]
    paths, missing = _match_images(ids, _index_images(root), csv_path, root, allow_missing)
    records = [
        Record(row[ii], classes.index(row[di]), p, group=row[li] or f"image:{row[ii]}")
        for row, p in zip(rows, paths)
        if p is not None
    ]
    return classes, records, missing


def _load_imagefolder(root):
    """(classes, {split: records, or None for a split folder that is not there})."""
    dirs = _split_dirs(root)
    if dirs is None:
        raise DatasetError(f"{root} is not an ImageFolder layout; "
                           "expected train/<class>/* with val/<class>/* and/or test/<class>/*")
    train_dir = dirs["train"]
    classes = sorted(d.name for d in _visible(train_dir.iterdir()) if d.is_dir())
    for held in (d for d in (dirs["val"], dirs["test"]) if d is not None):
        extra = sorted(d.name for d in _visible(held.iterdir()) if d.is_dir() and d.name not in classes)
        if extra:
            raise DatasetError(
                f"{held} has class folder(s) {', '.join(extra)} that {train_dir} lacks; add them to train/ "
                "(an empty folder is not enough: the class needs training images) or remove them"
            )

    def records(split_dir):
        out = []
        for k, c in enumerate(classes):
            for p in list_images(split_dir / c) if (split_dir / c).is_dir() else []:
                out.append(Record(p.relative_to(root).as_posix(), k, p))
        return out

    return classes, {s: records(d) if d is not None else None for s, d in dirs.items()}


def _labels_1d(a, key, npz):
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or (a.size and a.min() < 0):
        raise DatasetError(f"{npz}: {key} must hold one non-negative integer label per image, shape (N,) or (N, 1); "
                           f"got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _images_rgb(a, key, npz):
    a = np.asarray(a)
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[3] == 3)):
        raise DatasetError(f"{npz}: {key} must have shape (N, H, W) or (N, H, W, 3); got {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 255:
            raise DatasetError(f"{npz}: {key} must be uint8 pixels 0..255; got {a.dtype}")
        a = a.astype(np.uint8)
    if a.ndim == 3:  # gray -> 3 equal channels, as the networks expect RGB
        a = np.repeat(a[..., None], 3, axis=3)
    return np.ascontiguousarray(a)  # (N, H, W, 3)


def _load_npz(path):
    npz = _find_npz(path)
    if npz is None:
        raise DatasetError(f"no .npz file in {path}; expected a MedMNIST file such as dermamnist.npz")
    try:
        with np.load(npz, allow_pickle=False) as z:  # never unpickle a downloaded file
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DatasetError(f"{npz} lacks key(s) {', '.join(missing)} (it has {', '.join(z.files)}); "
                                   f"expected MedMNIST's {', '.join(NPZ_KEYS)}")
            present = [s for s in SPLITS if f"{s}_images" in z.files and f"{s}_labels" in z.files]
            arrays = {s: _images_rgb(z[f"{s}_images"], f"{s}_images", npz) for s in present}
            labels = {s: _labels_1d(z[f"{s}_labels"], f"{s}_labels", npz) for s in present}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {npz} as a .npz file ({exc}); re-download it") from None
    for s in arrays:
        if len(arrays[s]) != len(labels[s]):
            raise DatasetError(f"{npz}: {len(arrays[s])} {s}_images but {len(labels[s])} {s}_labels; re-download it")
    n_classes = int(max((labels[s].max() for s in labels if labels[s].size), default=-1)) + 1
    if n_classes == len(DERMAMNIST_CLASSES):
        classes = list(DERMAMNIST_CLASSES)
    else:
        classes = [f"class_{k}" for k in range(n_classes)]
    recs = {s: [Record(f"{s}_{i}", int(y), None, index=i) for i, y in enumerate(labels[s])] for s in labels}
    return npz, classes, {s: recs.get(s) for s in SPLITS}, arrays


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
    path = _check_exists(data_dir)
    if layout not in ("auto",) + LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose 'auto' or one of {', '.join(LAYOUTS)}")
    check_fractions(val_fraction, test_fraction)
    if csv_path is not None:
        csv_path = _check_exists(csv_path)
        if layout == "auto":
            layout = "ham10000" if _is_ham_header(_csv_header(csv_path)) else "isic2019"
    elif path.is_file() and path.suffix.lower() == ".csv":
        csv_path, path = path, path.parent
    if layout == "auto":
        layout = detect_layout(path)
    root = path if path.is_dir() else path.parent
    arrays, missing, carved = None, [], ()
    if layout in ("isic2019", "ham10000"):
        csv_path = csv_path or _find_csv(root, layout)
        if csv_path is None:
            want = "a *GroundTruth*.csv" if layout == "isic2019" else "HAM10000_metadata.csv"
            raise DatasetError(f"no {want} found in {root}; fix DATA_DIR or set the CSV path")
        load = _load_isic if layout == "isic2019" else _load_ham
        classes, records, missing = load(root, csv_path, allow_missing)
        if not records:
            raise DatasetError(f"none of the images listed in {csv_path} were found; fix DATA_DIR")
        splits = dict(zip(SPLITS, _split_records(records, (val_fraction, test_fraction), seed)))
        carved = ("val", "test")
    elif layout == "imagefolder":
        classes, splits = _load_imagefolder(root)
        if not any(splits.values()):
            raise DatasetError(f"no images in the class folders of {root}/train and its val/ or test/ folder; "
                               "fix DATA_DIR")
    else:
        path, classes, splits, arrays = _load_npz(path)
    for s, fraction in (("val", val_fraction), ("test", test_fraction)):
        if splits[s] is None:  # an ImageFolder or .npz without this split: carve it from train
            splits["train"], splits[s] = _split_records(splits["train"], fraction, seed)
            carved += (s,)
    _check_classes(classes, splits, path)
    return LabeledData(layout, classes, splits["train"], splits["val"], splits["test"], path, arrays, missing, carved)


# ------------------------------------------------------------------------------------------- split file, balance


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


def write_split(data: LabeledData, path):
    """split.csv (split_table), written atomically: which image went where."""
    atomic_write_text(path, split_table(data))
    return Path(path)


def class_counts(records, n_classes) -> np.ndarray:
    """(K,) int: images per class."""
    return np.bincount(np.array([r.label for r in records], dtype=np.int64), minlength=n_classes)[:n_classes]


def class_weights(records, n_classes, power=1.0) -> torch.Tensor:
    """(K,) weights count**-power (1 = inverse frequency, 0.5 = its square root) normalised to mean 1 over the
    classes present; 0 for absent classes."""
    counts = class_counts(records, n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = counts[present] ** -float(power)
    if present.any():
        w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


class BalancedSampler(torch.utils.data.WeightedRandomSampler):
    """Draws with replacement by per-image weights. set_epoch(e) reseeds with seed + e, so a resumed run draws
    the same order for an epoch as an uninterrupted one."""

    def __init__(self, weights, num_samples, seed):
        self.seed = seed
        super().__init__(weights, num_samples, replacement=True, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch):
        self.generator.manual_seed(self.seed + epoch)


def balanced_sampler(records, n_classes, seed, power=1.0) -> torch.utils.data.WeightedRandomSampler:
    """len(records) draws per epoch; class c is drawn with probability proportional to count_c**(1 - power):
    power 1 = every class equally often, 0.5 = in proportion to the square root of its count."""
    counts = class_counts(records, n_classes).astype(np.float64)
    per_image = counts[[r.label for r in records]] ** -float(power)  # each class's images share the class's mass
    return BalancedSampler(torch.as_tensor(per_image, dtype=torch.double), len(records), seed)
