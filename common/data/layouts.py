"""Labeled datasets on disk: which layout a folder holds (ISIC 2019, HAM10000, ImageFolder, DermaMNIST) and its records."""
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data.images import list_images


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


def existing_path(data_dir):
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DatasetError(f"DATA_DIR {path} does not exist; fix the path (or leave DATA_DIR=None for the demo)")
    return path


def detect_layout(data_dir) -> str:
    """Which of LAYOUTS the folder (or .npz file) holds, from what is in it; DatasetError when none."""
    path = existing_path(data_dir)
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



# ------------------------------------------------------------------------------------------- readers


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



# ------------------------------------------------------------------------------------------- any layout


@dataclass
class LayoutRecords:
    """What a dataset's files hold, before any split is carved: either one pool of images or the dataset's own splits."""

    layout: str  # one of LAYOUTS
    path: Path  # the dataset folder, or the .npz file
    classes: list[str]
    pool: list[Record] | None = None  # isic2019 / ham10000: every image, for a seeded split
    splits: dict | None = None  # imagefolder / dermamnist: {split: records, or None where the dataset lacks it}
    arrays: dict | None = None  # npz: {"train": uint8 (N, H, W, 3), "val": ..., "test": ...}
    missing: list[str] = field(default_factory=list)  # ids of CSV rows whose image file is missing


def read_layout(path, layout="auto", csv_path=None, allow_missing=False) -> LayoutRecords:
    """The records of the dataset at path (an existing folder or file) in `layout` ('auto': detect_layout).

    csv_path: the ground-truth / metadata CSV when it is not found automatically; a CSV file as path counts as one.
    """
    if csv_path is not None:
        csv_path = existing_path(csv_path)
        if layout == "auto":
            layout = "ham10000" if _is_ham_header(_csv_header(csv_path)) else "isic2019"
    elif path.is_file() and path.suffix.lower() == ".csv":
        csv_path, path = path, path.parent
    if layout == "auto":
        layout = detect_layout(path)
    root = path if path.is_dir() else path.parent
    if layout in ("isic2019", "ham10000"):
        csv_path = csv_path or _find_csv(root, layout)
        if csv_path is None:
            want = "a *GroundTruth*.csv" if layout == "isic2019" else "HAM10000_metadata.csv"
            raise DatasetError(f"no {want} found in {root}; fix DATA_DIR or set the CSV path")
        load = _load_isic if layout == "isic2019" else _load_ham
        classes, records, missing = load(root, csv_path, allow_missing)
        if not records:
            raise DatasetError(f"none of the images listed in {csv_path} were found; fix DATA_DIR")
        return LayoutRecords(layout, path, classes, pool=records, missing=missing)
    if layout == "imagefolder":
        classes, splits = _load_imagefolder(root)
        if not any(splits.values()):
            raise DatasetError(f"no images in the class folders of {root}/train and its val/ or test/ folder; "
                               "fix DATA_DIR")
        return LayoutRecords(layout, path, classes, splits=splits)
    path, classes, splits, arrays = _load_npz(path)
    return LayoutRecords(layout, path, classes, splits=splits, arrays=arrays)
