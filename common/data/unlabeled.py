"""The images self-supervised pre-training reads: a training split's images (labels unread) or a folder of images,
never a validation or test image; decoded once into a uint8 array."""
from pathlib import Path

import numpy as np
from PIL import Image

from common.data.images import build_cache, cache_path_for, list_images
from common.data.layouts import Record


def _keys(path_or_id):
    """Names that identify an image across folders: its file stem, and its resolved path when it is a file."""
    p = Path(str(path_or_id))
    keys = {("stem", p.stem)}
    if p.is_file():
        keys.add(("path", str(p.resolve())))
    return keys


def held_out_keys(records):
    """The identities of held-out (validation, test) records: the stems of their ids and files, and their paths."""
    keys = set()
    for r in records:
        keys |= _keys(r.image_id)
        if r.path is not None:
            keys |= _keys(r.path)
    return keys


def folder_images(folder, held_out):
    """(paths, excluded paths) of the images under `folder` (recursive); an image that is a held-out one, by file
    stem (ISIC and HAM10000 name images by their id) or by path, is excluded: it must not be seen in pre-training."""
    paths = list_images(folder)
    excluded = [p for p in paths if _keys(p) & held_out]
    drop = set(excluded)
    return [p for p in paths if p not in drop], excluded


def _resize_row(array, size):
    """One (H, W, 3) uint8 image squashed to (size, size, 3), as load_resized does for files."""
    im = Image.fromarray(np.ascontiguousarray(array))
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def decode_records(records, arrays, size, cache=True, progress=True):
    """(images (N, size, size, 3) uint8, [(path, reason)] skipped) of the records' images, labels unread.

    Files are decoded once (all cores) and kept in a cache file under data/cache named by the list of files, so a
    resumed or repeated pre-training on the same images decodes nothing; npz rows (records without a path) are
    resized from `arrays` (LabeledData.arrays: {split: (N, H, W, 3)}, the split read from the id as "<split>_<i>").
    """
    files = [r.path for r in records if r.path is not None]
    rows = [r for r in records if r.path is None]
    parts, skipped = [], []
    if files:
        cache_file = cache_path_for(Path(files[0]).parent, size, subset=files) if cache else None
        images, _, skipped = build_cache(files, size, cache_file, progress=progress)
        parts.append(images)
    if rows:
        parts.append(np.stack([_resize_row(arrays[r.image_id.rsplit("_", 1)[0]][r.index], size) for r in rows]))
    return (np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros((0, size, size, 3), np.uint8),
            skipped)


def decode_folder(paths, size, cache=True, progress=True):
    """(images (N, size, size, 3) uint8, skipped) of image files, cached like decode_records."""
    return decode_records([Record(p.stem, -1, p) for p in paths], None, size, cache, progress)
