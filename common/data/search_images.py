"""The search's images: a folder of unlabeled images (or the demo lesions), an optional seeded subset, decoded once
into a uint8 cache at the search's image size."""
from pathlib import Path

import numpy as np

from common.config import ConfigError
from common.data import images as image_files  # cache_path_for looked up at call time: tests keep caches apart
from common.data.demo.dataset import ensure_demo_dataset


def check_data_dir(folder):
    """Refuse a missing or image-less DATA_DIR before a run folder is made for it (a typo leaves nothing behind)."""
    if not folder.is_dir():
        raise ConfigError(f"DATA_DIR {folder} is not a folder; point it at a folder of images (searched recursively)")
    if not image_files.list_images(folder):
        raise ConfigError(f"no images (jpg/jpeg/png/bmp/tif) found under {folder}")


def load_images(cfg, run_dir, log=print):
    """Decode the search images once (cached on disk at IMAGE_SIZE); returns a uint8 array (N, S, S, 3).

    cfg: DATA_DIR (None = the demo lesions), MAX_IMAGES (a seeded subset of that many, by SEED), IMAGE_SIZE,
    DECODE_WORKERS. Files that cannot be read are listed in run_dir's skipped_files.csv."""
    if cfg["DATA_DIR"] is None:
        folder = ensure_demo_dataset(log=log) / "ISIC_2019_Training_Input"
    else:
        folder = Path(cfg["DATA_DIR"]).expanduser()
        check_data_dir(folder)
    paths, subset = image_files.list_images(folder), None
    if cfg["MAX_IMAGES"] and len(paths) > cfg["MAX_IMAGES"]:
        pick = np.random.default_rng(cfg["SEED"]).choice(len(paths), cfg["MAX_IMAGES"], replace=False)
        paths = subset = [paths[i] for i in sorted(pick)]
    log(f"images: {len(paths)} files under {folder}")
    cache = image_files.cache_path_for(folder, cfg["IMAGE_SIZE"], subset)
    images, kept, skipped = image_files.build_cache(paths, cfg["IMAGE_SIZE"], cache, cfg["DECODE_WORKERS"])
    if skipped:
        image_files.write_skipped(run_dir, skipped)
        log(image_files.skipped_summary(skipped, len(paths)))
    if len(kept) < 2:
        raise ConfigError(f"only {len(kept)} readable image(s) under {folder}; the search needs at least 2")
    return images
