"""Pixels for training: a torch Dataset over records, one-time resized copies on disk, and the transforms."""
import hashlib
import io
import json
import os
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from common.data.images import BadImage, open_rgb, parallel_map
from common.data.layouts import DatasetError
from common.runs import atomic_write_bytes, atomic_write_text

# ------------------------------------------------------------------------------------------- torch dataset


class ImageDataset(torch.utils.data.Dataset):
    """(transform(PIL RGB image), label, index) per record; files decoded by open_rgb, npz rows from arrays.

    A file that fails to decode (BadImage, or an OSError such as a file removed mid-run) must not end a
    long run: the next good record is returned instead (with its own label and index, so the caller sees
    the substitution as index != i), and (path, reason) is remembered. Since DataLoader workers are separate
    processes, skips are also appended to a small log file (skip_log; a temporary file by default) that
    `skipped` reads back, de-duplicated, in the main process. Find bad files before training with
    prepare_resized so that validation predictions are never substituted.

    arrays: the LabeledData.arrays dict (the split is read from the record's image_id, f"{split}_{i}") or
    one (N, H, W, 3) uint8 array. min_side: JPEG draft decoding keeps both sides >= min_side.
    """

    def __init__(self, records, transform, arrays=None, min_side=None, skip_log=None):
        self.records = list(records)
        self.transform = transform
        self.arrays = arrays
        self.min_side = min_side
        if skip_log is None:
            skip_log = Path(tempfile.gettempdir()) / f"csnas-skipped-{uuid.uuid4().hex}.tsv"  # made on a first skip
        self.skip_log = Path(skip_log)
        self._skipped = []  # this process's skips
        self._bad = set()  # indices known bad in this process: not decoded again

    def __len__(self):
        return len(self.records)

    def _pil(self, r):
        if r.path is None:
            a = self.arrays
            if isinstance(a, dict):
                a = a[r.image_id.rsplit("_", 1)[0]]
            return Image.fromarray(a[r.index])
        return open_rgb(r.path, self.min_side)

    def _skip(self, r, reason):
        self._skipped.append((r.path, reason))
        try:
            with open(self.skip_log, "a") as f:  # one short line per write: appends do not interleave
                f.write(f"{r.path}\t{reason}\n")
        except OSError:
            pass  # the in-process list still has it

    @property
    def skipped(self):
        """[(path, reason)] of files skipped so far, in this process and in loader workers."""
        out = list(self._skipped)
        if self.skip_log.exists():
            for line in self.skip_log.read_text().splitlines():
                p, _, reason = line.partition("\t")
                out.append((Path(p), reason))
        return list(dict.fromkeys(out))

    def __getitem__(self, i):
        n = len(self.records)
        for j in (i + k for k in range(n)):
            j %= n
            if j in self._bad:
                continue
            r = self.records[j]
            try:
                img = self._pil(r)
            except (BadImage, OSError) as exc:
                self._bad.add(j)
                self._skip(r, str(exc) if isinstance(exc, BadImage) else f"unreadable ({type(exc).__name__})")
                continue
            return self.transform(img), r.label, j
        raise DatasetError(f"none of the {n} images of this dataset can be decoded; see {self.skip_log}")


# ------------------------------------------------------------------------------------------- resized copy


INDEX_FILE = "index.json"


def _cache_key(src, short_side):
    return hashlib.sha1(f"{os.path.abspath(src)}|{short_side}".encode()).hexdigest()


def _stat(src):
    st = os.stat(src)
    return st.st_size, st.st_mtime_ns


def _resize_one(job):
    """Pool worker: (src, dest, short_side) -> (src, reason or None, remember). Writes dest via temp + rename.

    remember is False when the source is fine but the copy could not be written (disk full, permissions):
    such a failure is reported now and retried next time, not remembered as a bad file.
    """
    src, dest, short_side = job
    try:
        im = open_rgb(src, min_side=short_side)
    except BadImage as exc:
        return src, str(exc), True
    w, h = im.size
    if min(w, h) > short_side:  # only shrink: enlarging a small image adds no detail
        s = short_side / min(w, h)
        size = (max(short_side, round(w * s)), max(short_side, round(h * s)))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, buf.getvalue())
    except OSError as exc:
        return src, f"cannot write the resized copy ({exc})", False
    return src, None, True


def prepare_resized(records, short_side, cache_dir, workers=None, progress=True):
    """One-time resized JPEG copies (short side = short_side, aspect kept, quality 95) for fast training.

    Each file is decoded once (draft decoding), in parallel. Copies live at cache_dir/<aa>/<sha1>.jpg (sha1 of
    the source path and short_side); cache_dir/index.json records each source's size and mtime, so a later
    call reuses copies (and remembered failures) whose source is unchanged. Returns (records pointing at the
    copies, [(source path, reason)] of files that could not be decoded: their records are dropped).
    Records without a path (npz rows) pass through unchanged. Images smaller than short_side are not enlarged.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    index_file = cache_dir / INDEX_FILE
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}  # none yet, or torn: rebuild what is needed
    dest = {}  # source path -> copy path
    stats = {}  # source path -> (size, mtime_ns) or None when it cannot be stat'ed
    todo = []
    for r in records:
        if r.path is None or str(r.path) in dest:
            continue
        src, key = str(r.path), _cache_key(r.path, short_side)
        dest[src] = cache_dir / key[:2] / f"{key}.jpg"
        try:
            stats[src] = _stat(src)
        except OSError:
            stats[src] = None
            continue
        entry = index.get(key, {})
        fresh = [entry.get("size"), entry.get("mtime_ns")] == list(stats[src])
        if not fresh or (entry.get("bad") is None and not dest[src].exists()):
            index.pop(key, None)
            todo.append((src, str(dest[src]), short_side))

    failed = {}  # failures not to remember: source path -> reason
    desc = f"resized copies at {short_side}px" if progress else None
    results = parallel_map(_resize_one, todo, workers, desc, ordered=False)
    for n, (src, reason, remember) in enumerate(results, 1):
        if remember:
            size, mtime = stats[src]
            index[_cache_key(src, short_side)] = {"src": os.path.abspath(src), "size": size, "mtime_ns": mtime,
                                                  "bad": reason}
        else:
            failed[src] = reason
        if n % 2000 == 0:  # a kill loses at most this much work
            atomic_write_text(cache_dir / INDEX_FILE, json.dumps(index))
    if todo:
        atomic_write_text(index_file, json.dumps(index))

    out, skipped = [], []
    for r in records:
        if r.path is None:
            out.append(r)
            continue
        src = str(r.path)
        entry = index.get(_cache_key(src, short_side), {})
        if stats[src] is None:
            skipped.append((r.path, "file not found"))
        elif src in failed or entry.get("bad"):
            skipped.append((r.path, failed.get(src) or entry["bad"]))
        else:
            out.append(replace(r, path=dest[src]))
    return out, skipped


# ------------------------------------------------------------------------------------------- transforms


class RandomRot90(torch.nn.Module):
    """Rotate a (…, H, W) tensor by a random multiple of 90°: lossless, and lesions have no 'up'."""

    def forward(self, x):
        k = int(torch.randint(4, (1,)))
        return torch.rot90(x, k, dims=(-2, -1)) if k else x


def train_transform(image_size, mean, std, scale=(0.4, 1.0), rot90=True, jitter=(0.2, 0.2, 0.1, 0.0),
                    normalize=True):
    """Training augmentation of a PIL image -> float tensor (3, image_size, image_size), normalised.

    RandomResizedCrop(scale), horizontal and vertical flips, 90° rotations (with the flips, all 8 symmetries
    of the square: lesions have no 'up'), mild colour jitter (brightness, contrast, saturation, hue; None
    turns it off). Hue defaults to 0: colour is diagnostic in dermoscopy (blue-white veil, red vessels), and
    PIL's hue shift alone costs about as much as everything else per image. With draft decoding, a min_side
    of about image_size / sqrt(scale[0]) keeps the smallest crops at full resolution.
    normalize=False returns uint8 (3, S, S), 4x less to copy; then convert and normalise on the device.
    """
    steps = [
        v2.RandomResizedCrop(image_size, scale=tuple(scale), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
    ]
    if jitter and any(jitter):
        steps.append(v2.ColorJitter(*jitter))
    steps.append(v2.ToImage())
    if rot90:
        steps.append(RandomRot90())
    return v2.Compose(steps + _to_float(mean, std, normalize))


def eval_transform(image_size, mean, std, crop_fraction=1.0, normalize=True):
    """Resize the short side to image_size / crop_fraction, centre crop image_size, normalise
    (normalize=False: uint8 (3, S, S), as in train_transform)."""
    steps = [
        v2.Resize(int(round(image_size / crop_fraction)), antialias=True),
        v2.CenterCrop(image_size),
        v2.ToImage(),
    ]
    return v2.Compose(steps + _to_float(mean, std, normalize))


def _to_float(mean, std, normalize):
    if not normalize:
        return []
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
