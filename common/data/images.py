"""Image files: find them, decode each once to RGB (skipping bad files with a reason), and cache them as uint8."""
import csv
import hashlib
import io
import math
import multiprocessing
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from common.machine import usable_cores
from common.runs import REPO_ROOT, atomic_write_bytes, atomic_write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Our own pixel limit, checked on the header before any pixel is decoded. PIL's global limit
# (Image.MAX_IMAGE_PIXELS, same default) is left untouched; its warning and error also count as a bomb,
# so the effective limit is the lower of the two.
MAX_PIXELS = 178_956_970
# Formats we let PIL open, whatever the extension says (a .jpg that is really a PNG still loads; JPEG also
# opens multi-picture MPO camera files); anything else (EPS would start Ghostscript, ...) is "not an image".
FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "GIF", "WEBP")
SKIPPED_CSV = "skipped_files.csv"
CACHE_VERSION = 1  # bump when decoding or resizing changes, so old caches are rebuilt
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white (their RGB is undefined)


class BadImage(Exception):
    """A file that cannot be used as an image; str(exc) is a short reason for skipped_files.csv."""


def list_images(root):
    """Image files under root, recursively and sorted; hidden files/folders and other extensions are ignored.

    Hidden means a name starting with '.' below root (root itself may live in a hidden folder); this also
    drops macOS '._x.jpg' resource forks. Symlinked folders are followed once.
    """
    root = Path(root)
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink cycle or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def _reason(exc):
    """A short human reason for a decode failure."""
    msg = str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        pixels = re.search(r"\((\d+) pixels\)", msg)
        return f"decompression bomb ({pixels.group(1) if pixels else '?'} pixels)"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if "truncated" in msg.lower() or isinstance(exc, EOFError):
        return "truncated file"
    return f"corrupt image ({type(exc).__name__}: {msg[:80]})" if msg else f"corrupt image ({type(exc).__name__})"


def _to_uint8_gray(im):
    """16-bit and float single-channel images -> 'L', scaled by range (not clipped)."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        a = a.astype(np.float32) / 257.0  # 65535 -> 255
    elif im.mode == "I":  # 32-bit int; from 16-bit sources (older PIL's 16-bit PNG) values lie in 0..65535
        a = a.astype(np.float64)
        lo, hi = a.min(), a.max()
        a = a / 257.0 if lo >= 0 and hi <= 65535 else (a - lo) / max(hi - lo, 1e-12) * 255.0
    else:  # "F": 0..1 or 0..255 taken as they are, anything else stretched min..max
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = a.min(), a.max()
        if lo >= 0 and hi <= 1:
            a = a * 255.0
        elif lo < 0 or hi > 255:
            a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _to_rgb(im):
    """Any PIL mode -> 'RGB'."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return _to_uint8_gray(im).convert("RGB")
    if im.mode == "P" or im.mode in ("LA", "La", "RGBa", "PA"):
        im = im.convert("RGBA")  # P with transparency must go via RGBA (PIL warns otherwise)
    if im.mode == "RGBA":
        out = Image.new("RGB", im.size, BACKGROUND)
        out.paste(im, mask=im.getchannel("A"))
        return out
    try:
        return im.convert("RGB")  # L, 1, CMYK, YCbCr, ...
    except ValueError as exc:
        raise BadImage(f"unsupported image mode {im.mode}") from exc


def _exif_rotate(im):
    """Rotate per the EXIF orientation tag; a broken EXIF block leaves the (good) pixels as they are."""
    try:
        return ImageOps.exif_transpose(im)  # always a new image, detached from the file
    except Exception:  # noqa: BLE001 - EXIF is metadata; its damage must not cost the image
        return im.copy()


def open_rgb(path, min_side=None):
    """Fully decoded RGB image of `path`, rotated per EXIF; raises BadImage with a short reason.

    min_side: lets the JPEG decoder reduce by 2/4/8 (DCT scaling: fast and antialiased) while both sides
    stay >= min_side. Transparent images are composited on white; 16-bit images are scaled to 8 bit.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage("zero-byte file")
        with warnings.catch_warnings():  # PIL's own bomb warning becomes an error here, globals untouched
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as im:
                pixels = im.size[0] * im.size[1]
                if pixels > MAX_PIXELS:
                    raise BadImage(f"decompression bomb ({pixels} pixels)")
                if min_side:
                    im.draft("RGB", (min_side, min_side))  # no-op for non-JPEG formats
                im.load()
                return _to_rgb(_exif_rotate(im))
    except BadImage:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError, struct.error)
        raise BadImage(_reason(exc)) from exc


def load_resized(path, size):
    """(size, size, 3) uint8 of the whole image squashed to a square.

    Aspect is not kept on purpose: a crop could cut the lesion, padding would waste pixels; dermoscopy
    images are close to 4:3, so the distortion is mild and the same for training and evaluation.
    """
    im = open_rgb(path, min_side=size)
    # LANCZOS over the full support antialiases; reducing_gap first box-reduces big non-JPEG images (fast)
    im = im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def _decode_row(job):
    """Pool worker: (index, path, size) -> (index, array or None, reason or None)."""
    i, path, size = job
    try:
        return i, load_resized(path, size), None
    except BadImage as exc:
        return i, None, str(exc)


def _stats(paths):
    """(sizes, mtimes in ns) per path; -1 for a file that cannot be stat'ed."""
    sizes, mtimes = np.full(len(paths), -1, np.int64), np.full(len(paths), -1, np.int64)
    for k, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        sizes[k], mtimes[k] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def _read_cache(cache_file, size, names, sizes, mtimes):
    """(images, kept index, skipped reasons by index) from a matching cache, else None."""
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            if (int(z["version"]) != CACHE_VERSION or int(z["size"]) != size or z["paths"].shape != (len(names),)
                    or z["paths"].tolist() != names
                    or not np.array_equal(z["file_sizes"], sizes) or not np.array_equal(z["mtimes"], mtimes)):
                return None
            kept, skipped_idx, reasons = z["kept"], z["skipped"], z["reasons"].tolist()
            images = z["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing, torn or foreign file: rebuild
    if images.shape != (len(kept), size, size, 3) or images.dtype != np.uint8:
        return None
    return images, kept.tolist(), dict(zip(skipped_idx.tolist(), reasons))


def _save_cache(cache_file, size, names, sizes, mtimes, images, kept, skipped):
    """Write the .npz via a temporary file and os.replace, so a kill leaves the old cache or the new one."""
    cache_file = Path(cache_file)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, version=np.int64(CACHE_VERSION), size=np.int64(size), paths=np.array(names, dtype=str),
             file_sizes=sizes, mtimes=mtimes, images=images, kept=np.array(kept, dtype=np.int64),
             skipped=np.array([i for i, _ in skipped], dtype=np.int64),
             reasons=np.array([r for _, r in skipped], dtype=str))
    atomic_write_bytes(cache_file, buf.getvalue())


def parallel_map(fn, jobs, workers=None, desc=None, ordered=True):
    """Yield fn(job) for each job, in a process pool when workers > 1 (None = all cores), with a bar when desc.

    The pool is torn down however the caller stops (a kill, an exception, breaking out of the loop).
    """
    workers = max(1, min(usable_cores() if workers is None else workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc=desc, unit="img") if desc and jobs else None
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        if pool is None:
            results = map(fn, jobs)
        else:
            chunk = max(1, min(64, math.ceil(len(jobs) / (workers * 8))))
            results = (pool.imap if ordered else pool.imap_unordered)(fn, jobs, chunksize=chunk)
        for result in results:
            yield result
            if bar is not None:
                bar.update()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()


def build_cache(paths, size, cache_file=None, workers=None, progress=True):
    """Decode every path once at size x size.

    Returns (images (N_kept, size, size, 3) uint8, kept paths in input order, [(path, reason)] skipped).
    With cache_file, a cache made from the same paths, sizes and mtimes at the same size is reused;
    otherwise the result is saved there (atomically; read back with allow_pickle=False).
    """
    paths = [Path(p) for p in paths]
    names = [os.path.abspath(p) for p in paths]
    sizes, mtimes = _stats(names)  # taken before decoding: a file changed meanwhile invalidates next time
    if cache_file is not None:
        hit = _read_cache(cache_file, size, names, sizes, mtimes)
        if hit is not None:
            images, kept, reasons = hit
            return images, [paths[i] for i in kept], [(paths[i], r) for i, r in sorted(reasons.items())]

    images = np.empty((len(paths), size, size, 3), np.uint8)  # (N, S, S, 3), shrunk to N_kept at the end
    kept, skipped = [], []
    jobs = [(i, name, size) for i, name in enumerate(names)]
    desc = f"decoding images at {size}px" if progress else None
    for i, arr, reason in parallel_map(_decode_row, jobs, workers, desc):  # in input order
        if arr is None:
            skipped.append((i, reason))
        else:
            images[len(kept)] = arr  # kept rows packed at the front, in input order
            kept.append(i)
    if len(kept) < len(paths):
        images.resize((len(kept), size, size, 3), refcheck=False)  # in place: no second full-size copy
    if cache_file is not None:
        try:
            _save_cache(cache_file, size, names, sizes, mtimes, images, kept, skipped)
        except OSError as exc:  # a read-only or full disk must not cost the decoding just done
            warnings.warn(f"could not write the image cache {cache_file} ({exc}); continuing without it", stacklevel=2)
    return images, [paths[i] for i in kept], [(paths[i], r) for i, r in skipped]


def write_skipped(run_dir, skipped):
    """run_dir/skipped_files.csv (path,reason), written atomically; None (and nothing written) when none skipped."""
    if not skipped:
        return None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "reason"])
    w.writerows([str(p), r] for p, r in skipped)
    out = Path(run_dir) / SKIPPED_CSV
    atomic_write_text(out, buf.getvalue())
    return out


def skipped_summary(skipped, n_total, show=3):
    """One line naming the count and the first few skipped files, or None when none were skipped."""
    if not skipped:
        return None
    names = ", ".join(f"{Path(p).name} ({r})" for p, r in skipped[:show])
    more = ", ..." if len(skipped) > show else ""
    return f"skipped {len(skipped)} of {n_total} files (see {SKIPPED_CSV}): {names}{more}"


def cache_path_for(root, size, subset=None):
    """REPO_ROOT/data/cache/<folder slug>-<sha1 of the resolved path, 10 hex>-<size>px.npz.

    subset: the chosen paths when only some of the folder's images are used (MAX_IMAGES); the subset gets a cache
    file of its own (named by a digest of its paths), so runs on a subset and on the whole folder don't take
    turns rebuilding one file.
    """
    resolved = Path(root).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.name).strip("-.") or "images"
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    tag = ""
    if subset is not None:
        names = "\n".join(sorted(os.path.abspath(p) for p in subset))
        tag = f"-{len(subset)}of-{hashlib.sha1(names.encode()).hexdigest()[:8]}"
    return REPO_ROOT / "data" / "cache" / f"{slug}-{digest}{tag}-{size}px.npz"
