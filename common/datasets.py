"""Labeled datasets: detect the layout on disk, load records, make seeded splits, count classes."""
import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.images import list_images
from common.runs import atomic_write_text


class DatasetError(ValueError):
    """The data on disk cannot be used as given; the message names the file or value and the fix."""


LAYOUTS = ("isic2019", "ham10000", "imagefolder", "dermamnist")
LAYOUT_HELP = (
    "isic2019 (a *GroundTruth*.csv with columns image,<class>,... and the *_Input image folder beside it), "
    "ham10000 (HAM10000_metadata.csv + HAM10000_images_part_1/2), "
    "imagefolder (train/<class>/* and test/<class>/* or val/<class>/*), "
    "dermamnist (a MedMNIST .npz with train_/val_ images and labels)"
)
HAM_ORDER = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")  # HAM10000's own class order
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")  # MedMNIST's label order 0..6
NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels")  # test_* is left for final testing


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
    val: list[Record]
    root: Path
    arrays: dict | None = None  # npz: {"train": uint8 (N, H, W, 3), "val": ...}
    missing: list[str] = field(default_factory=list)  # ids of CSV rows whose image file is missing


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
    """(train dir, validation dir) of an ImageFolder layout, or None. val/ wins over test/ when both exist,
    so a held-out test/ stays untouched by model selection."""
    train = root / "train"
    held = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if train.is_dir() and held is not None and any(d.is_dir() for d in _visible(train.iterdir())):
        return train, held
    return None


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


def stratified_split(labels, val_fraction, seed):
    """(train idx, val idx), each class split on its own with a seeded shuffle.

    Per class of n images, round(n * val_fraction) go to validation, clamped so a class with >= 2 images
    has at least one image on each side and a single image stays in training. (A hand-written rule rather
    than sklearn's, which refuses classes of one image and small validation sets.)
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = len(idx)
        k = min(max(int(round(n * val_fraction)), 1 if n >= 2 else 0), n - 1)
        val.extend(idx[:k].tolist())
    is_val = np.zeros(len(labels), bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def grouped_split(labels, groups, val_fraction, seed):
    """(train idx, val idx) with no group on both sides, stratified where the groups allow.

    sklearn's StratifiedGroupKFold with round(1 / val_fraction) folds (seeded shuffle); the first fold is the
    validation split. Afterwards a class left with no training image gets its groups moved back to training.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DatasetError("cannot split: all images belong to one lesion group; add images of other lesions")
    n_splits = min(max(2, int(round(1 / val_fraction))), n_groups)
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only k members": expected for rare classes
        warnings.simplefilter("ignore", UserWarning)
        _, val = next(sgkf.split(np.zeros(len(labels)), labels, groups))
    is_val = np.zeros(len(labels), bool)
    is_val[val] = True
    for c in np.unique(labels):
        if not (~is_val & (labels == c)).any():
            is_val[np.isin(groups, groups[is_val & (labels == c)])] = False
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _split_records(records, val_fraction, seed):
    labels = [r.label for r in records]
    if any(r.group is not None for r in records):
        groups = [r.group if r.group is not None else f"image:{r.image_id}" for r in records]
        tr, va = grouped_split(labels, groups, val_fraction, seed)
    else:
        tr, va = stratified_split(labels, val_fraction, seed)
    return [records[i] for i in tr], [records[i] for i in va]


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
    dirs = _split_dirs(root)
    if dirs is None:
        raise DatasetError(f"{root} is not an ImageFolder layout; "
                           "expected train/<class>/* and test/<class>/* (or val/<class>/*)")
    train_dir, val_dir = dirs
    classes = sorted(d.name for d in _visible(train_dir.iterdir()) if d.is_dir())
    extra = sorted(d.name for d in _visible(val_dir.iterdir()) if d.is_dir() and d.name not in classes)
    if extra:
        raise DatasetError(
            f"{val_dir} has class folder(s) {', '.join(extra)} that {train_dir} lacks; add them to train/ "
            "(an empty folder is not enough: the class needs training images) or remove them"
        )

    def records(split_dir):
        out = []
        for k, c in enumerate(classes):
            for p in list_images(split_dir / c) if (split_dir / c).is_dir() else []:
                out.append(Record(p.relative_to(root).as_posix(), k, p))
        return out

    return classes, records(train_dir), records(val_dir)


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
            arrays = {s: _images_rgb(z[f"{s}_images"], f"{s}_images", npz) for s in ("train", "val")}
            labels = {s: _labels_1d(z[f"{s}_labels"], f"{s}_labels", npz) for s in ("train", "val")}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {npz} as a .npz file ({exc}); re-download it") from None
    for s in ("train", "val"):
        if len(arrays[s]) != len(labels[s]):
            raise DatasetError(f"{npz}: {len(arrays[s])} {s}_images but {len(labels[s])} {s}_labels; re-download it")
    n_classes = int(max((labels[s].max() for s in labels if labels[s].size), default=-1)) + 1
    if n_classes == len(DERMAMNIST_CLASSES):
        classes = list(DERMAMNIST_CLASSES)
    else:
        classes = [f"class_{k}" for k in range(n_classes)]
    recs = {s: [Record(f"{s}_{i}", int(y), None, index=i) for i, y in enumerate(labels[s])] for s in labels}
    return npz, classes, recs["train"], recs["val"], arrays


def _check_classes(classes, train, val, where):
    tr = class_counts(train, len(classes))
    va = class_counts(val, len(classes))
    if not train:
        raise DatasetError(f"no training images found in {where}; fix DATA_DIR")
    if not val:
        raise DatasetError(f"no validation images in {where} ({len(train)} training images): add images, "
                           "or a validation folder/split")
    for k, c in enumerate(classes):
        if tr[k] == 0 and va[k] > 0:
            raise DatasetError(
                f"class {c!r} has no training images ({va[k]} in validation) in {where}; "
                "add training images of it or remove it from the dataset"
            )


def load_labeled(data_dir, layout="auto", val_fraction=0.2, seed=0, allow_missing=False,
                 csv_path=None) -> LabeledData:
    """Load a labeled dataset: records with class indices, a train/validation split, class names in order.

    layout: 'auto' (detect_layout) or one of LAYOUTS. csv_path: the ground-truth / metadata CSV when it is not
    found automatically. Layouts without a validation split (isic2019, ham10000) get a seeded, stratified
    one of val_fraction (grouped by lesion_id where known); imagefolder and dermamnist keep their own.
    DermaMNIST's test_* arrays are not loaded: they stay for a final test, never for model selection.
    """
    path = _check_exists(data_dir)
    if layout not in ("auto",) + LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose 'auto' or one of {', '.join(LAYOUTS)}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise DatasetError(f"VAL_FRACTION={val_fraction} must lie strictly between 0 and 1, e.g. 0.2")
    if csv_path is not None:
        csv_path = _check_exists(csv_path)
        if layout == "auto":
            layout = "ham10000" if _is_ham_header(_csv_header(csv_path)) else "isic2019"
    elif path.is_file() and path.suffix.lower() == ".csv":
        csv_path, path = path, path.parent
    if layout == "auto":
        layout = detect_layout(path)
    root = path if path.is_dir() else path.parent
    arrays, missing = None, []
    if layout in ("isic2019", "ham10000"):
        csv_path = csv_path or _find_csv(root, layout)
        if csv_path is None:
            want = "a *GroundTruth*.csv" if layout == "isic2019" else "HAM10000_metadata.csv"
            raise DatasetError(f"no {want} found in {root}; fix DATA_DIR or set the CSV path")
        load = _load_isic if layout == "isic2019" else _load_ham
        classes, records, missing = load(root, csv_path, allow_missing)
        if not records:
            raise DatasetError(f"none of the images listed in {csv_path} were found; fix DATA_DIR")
        train, val = _split_records(records, val_fraction, seed)
    elif layout == "imagefolder":
        classes, train, val = _load_imagefolder(root)
        if not train and not val:
            raise DatasetError(f"no images in the class folders of {root}/train and its validation folder; "
                               "fix DATA_DIR")
    else:
        path, classes, train, val, arrays = _load_npz(path)
    _check_classes(classes, train, val, path)
    return LabeledData(layout, classes, train, val, path, arrays, missing)


# ------------------------------------------------------------------------------------------- split file, balance


def write_split(data: LabeledData, path):
    """split.csv with columns image,split,label,class,group: which image went where, written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "split", "label", "class", "group"])
    for split, records in (("train", data.train), ("val", data.val)):
        w.writerows([r.image_id, split, r.label, data.classes[r.label], r.group or ""] for r in records)
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def class_counts(records, n_classes) -> np.ndarray:
    """(K,) int: images per class."""
    return np.bincount(np.array([r.label for r in records], dtype=np.int64), minlength=n_classes)[:n_classes]


def class_weights(records, n_classes) -> torch.Tensor:
    """(K,) inverse-frequency weights normalised to mean 1 over the classes present; 0 for absent classes."""
    counts = class_counts(records, n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = 1.0 / counts[present]
    if present.any():
        w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


class BalancedSampler(torch.utils.data.WeightedRandomSampler):
    """Every class equally likely per draw (with replacement). set_epoch(e) reseeds with seed + e, so a
    resumed run draws the same order for an epoch as an uninterrupted one."""

    def __init__(self, weights, num_samples, seed):
        self.seed = seed
        super().__init__(weights, num_samples, replacement=True, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch):
        self.generator.manual_seed(self.seed + epoch)


def balanced_sampler(records, n_classes, seed) -> torch.utils.data.WeightedRandomSampler:
    counts = class_counts(records, n_classes)
    per_image = 1.0 / counts[[r.label for r in records]]  # each class's images share the class's mass
    return BalancedSampler(torch.as_tensor(per_image, dtype=torch.double), len(records), seed)
