"""The demo dataset on disk: the drawn lesions written once in ISIC 2019's layout, with its class counts and cache."""
import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common.config import ConfigError
from common.data.demo.classes import DEMO_CLASSES, draw_lesion
from common.runs import REPO_ROOT

CSV_COLUMNS = ("image", *DEMO_CLASSES, "UNK")  # ISIC 2019's header; UNK ("none of the others") is never 1
# Class shares follow ISIC 2019's training counts, so the demo is imbalanced the way real data is ...
DEMO_CLASS_COUNTS_ISIC = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253,
                          "SCC": 628}
# ... except that no class gets fewer images than this, so stratified train / validation / test splits each
# hold a few of every class (ISIC's DF would get 7 of 720 images).
DEMO_MIN_PER_CLASS = 30  # images
DEFAULT_N_IMAGES = 720  # images; the demo search's budget grows linearly with it
DEFAULT_DEMO_DIR = REPO_ROOT / "data" / "demo_lesions"
DEMO_VERSION = 3  # bump when the drawing changes, so cached demo folders are regenerated
JPEG_QUALITY = 92
IMAGE_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
MANIFEST = "demo_manifest.json"


def demo_class_counts(n_images):
    """Images per class for n_images: ISIC 2019's proportions (largest remainder), each class raised to at least
    DEMO_MIN_PER_CLASS (or n_images // 8 when that is less), the big classes paying for it in proportion."""
    k = len(DEMO_CLASSES)
    share = np.array([DEMO_CLASS_COUNTS_ISIC[c] for c in DEMO_CLASSES], np.float64)
    share /= share.sum()
    low = min(DEMO_MIN_PER_CLASS, n_images // k)
    fixed = np.zeros(k, bool)  # classes held at the floor
    exact = share * n_images
    while not fixed.all():
        free = n_images - low * fixed.sum()
        exact = np.where(fixed, low, share * free / share[~fixed].sum())
        below = ~fixed & (exact < low)
        if not below.any():
            break
        fixed |= below
    if fixed.all():  # every class at the floor: the few left over go by ISIC share
        exact = low + share * (n_images - low * k)
    counts = np.floor(exact + 1e-9).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in range(n_images - counts.sum()):
        counts[order[i % k]] += 1
    return dict(zip(DEMO_CLASSES, counts.tolist()))


def balanced_class_counts(n_images):
    """Images per class for a class-balanced set: n_images // 8 each, the remainder to the first classes."""
    k = len(DEMO_CLASSES)
    return {c: n_images // k + (i < n_images % k) for i, c in enumerate(DEMO_CLASSES)}


def _spec(n_images, seed, width, height, balanced=False):
    spec = {"version": DEMO_VERSION, "n_images": n_images, "seed": seed, "width": width, "height": height,
            "classes": list(DEMO_CLASSES), "min_per_class": DEMO_MIN_PER_CLASS, "jpeg_quality": JPEG_QUALITY}
    if balanced:  # only then in the manifest: the demo's existing folders stay valid
        spec["balanced"] = True
    return spec


def _counts(spec):
    return (balanced_class_counts if spec.get("balanced") else demo_class_counts)(spec["n_images"])


def _is_complete(root, spec):
    """True when root holds a finished demo dataset generated with exactly this spec."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    balanced = manifest.get("balanced", False) == spec.get("balanced", False)
    if not balanced or any(manifest.get(k) != v for k, v in spec.items()):
        return False
    img_dir = Path(root) / IMAGE_DIR
    if not ((Path(root) / GROUND_TRUTH).is_file() and img_dir.is_dir()):
        return False
    return len(os.listdir(img_dir)) == spec["n_images"]  # cheap, and catches deleted images


def _looks_like_demo(root):
    """A folder we may replace: empty, or holding only what ensure_demo_dataset writes."""
    return set(os.listdir(root)) <= {IMAGE_DIR, GROUND_TRUTH, MANIFEST}


def _write_dataset(folder, spec):
    seed, w, h = spec["seed"], spec["width"], spec["height"]
    counts = _counts(spec)
    labels = np.repeat(np.arange(len(DEMO_CLASSES)), [counts[c] for c in DEMO_CLASSES])
    labels = np.random.default_rng(seed).permutation(labels)  # classes interleaved, as in ISIC's file order
    (folder / IMAGE_DIR).mkdir()
    rows = []
    for i, label in enumerate(labels):
        name = f"ISIC_demo_{i:07d}"
        pixels = draw_lesion(np.random.default_rng([seed, i]), DEMO_CLASSES[label], w, h)  # per-image stream
        Image.fromarray(pixels).save(folder / IMAGE_DIR / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)
        rows.append([name] + ["1.0" if k == label else "0.0" for k in range(len(DEMO_CLASSES))] + ["0.0"])  # UNK
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    (folder / GROUND_TRUTH).write_text(buf.getvalue())
    (folder / MANIFEST).write_text(json.dumps({**spec, "counts": counts}, indent=2) + "\n")  # written last


def _remove_stale_temps(root):
    """Delete temporary siblings left by killed generations (their process is gone, or, off POSIX, over an hour)."""
    prefix = f".{root.name}."
    for tmp in root.parent.glob(f"{prefix}*-tmp*"):
        try:
            pid = int(tmp.name[len(prefix) :].split("-tmp")[0])  # named by _temp_dir: .<root>.<pid>-tmp...
        except ValueError:
            pid = None
        alive = pid is not None and os.name == "posix" and _pid_alive(pid)
        if not alive and (os.name == "posix" or time.time() - tmp.stat().st_mtime > 3600):
            shutil.rmtree(tmp, ignore_errors=True)


def _temp_dir(root, tag):
    """A fresh hidden sibling of root, named after this process so stale ones can be told apart."""
    path = Path(tempfile.mkdtemp(prefix=f".{root.name}.{os.getpid()}-tmp{tag}-", dir=root.parent))
    path.chmod(0o755)  # mkdtemp makes it private; the dataset it becomes should not be
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0 only checks existence (POSIX)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def ensure_demo_dataset(root=DEFAULT_DEMO_DIR, n_images=DEFAULT_N_IMAGES, seed=0, width=192, height=144,
                        log=print, balanced=False) -> Path:
    """Write the demo lesions under root in the ISIC 2019 layout unless an identical set is already there.

    Layout: root/ISIC_2019_Training_Input/ISIC_demo_<7 digits>.jpg, root/ISIC_2019_Training_GroundTruth.csv
    (`image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`, one-hot 1.0/0.0, UNK always 0.0) and root/demo_manifest.json
    (what was generated). balanced=True draws n_images // 8 of every class (the proxy study's labeled set)
    instead of ISIC 2019's imbalance. The set is drawn in a temporary sibling folder and renamed into place, so a killed
    run never leaves a partial set that looks complete. Returns root.
    """
    root = Path(root).expanduser().resolve()
    for name, value, low in (
        ("n_images", n_images, 1),
        ("width", width, 16),
        ("height", height, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"demo lesions: {name}={value!r} must be an integer >= {low}")
    spec = _spec(int(n_images), int(seed), int(width), int(height), bool(balanced))
    if _is_complete(root, spec):
        return root
    if root.exists() and not (root.is_dir() and _looks_like_demo(root)):
        raise ConfigError(f"{root} exists and is not a demo-lesion folder; move it away or pass another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    log(f"demo: drawing {n_images} lesion images ({width}x{height}, seed {seed}) into {root} ...")
    start = time.time()
    tmp = _temp_dir(root, "new")
    try:
        _write_dataset(tmp, spec)
        if _is_complete(root, spec):  # another process finished the same set meanwhile
            shutil.rmtree(tmp)
            return root
        if root.exists():  # an older or partial set: move it aside, then swap the new one in
            old = _temp_dir(root, "old")
            os.replace(root, old / "x")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, spec):  # lost a race to a concurrent generation of the same set
            return root
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"demo: wrote {n_images} images in {time.time() - start:.1f} s ({_counts(spec)})")
    return root
