"""Loader-only images/s of eval training (decode + augment): full-size files vs a resized copy, draft decoding on/off.

Run: cd eval && python benchmark_loader.py [--NAME=value ...]. Prints a table and, last, one JSON line.
With DATA_DIR=None the demo lesions are drawn small and upscaled once to an ISIC-like size (FULL_WIDTH x
FULL_HEIGHT JPEGs), so decoding costs what real dermoscopy files cost. The optional model row times
forward+backward+step of the evaluation network on in-memory tensors of the same batch, for comparison.
"""
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ----------------------------------------------------------------------------------------------------------
DATA_DIR = None  # labeled dataset (any layout of common/data/layouts.py); None = demo lesions at ISIC size
BENCH_DIR = None  # folder for the upscaled demo and the resized copies; None = data/bench_loader
N_IMAGES = 160  # images measured (the first N of the training split)
DEMO_WIDTH, DEMO_HEIGHT = 256, 192  # px, the demo lesions as drawn
FULL_WIDTH, FULL_HEIGHT = 1024, 768  # px, the demo upscaled to the size of typical ISIC 2019 files
IMAGE_SIZE = 224  # px, training crop
CROP_SCALE_MIN = 0.4  # RandomResizedCrop's smallest area share
RESIZE_SHORT_SIDE = 0  # px, short side of the resized copy; 0 = IMAGE_SIZE / sqrt(CROP_SCALE_MIN)
BATCH_SIZE = 32  # images per loader batch
NUM_WORKERS = 2  # DataLoader worker processes
MIN_SECONDS = 1.5  # s, each loader row repeats passes over the images until it has been timed this long
ROUNDS = 2  # the rows are measured this many times, interleaved; the best is kept (less noise from other load)
MODEL_ROW = True  # also time the evaluation network alone (model-only images/s)
GENOTYPE = "CNAS_ISIC_s5"  # genotype of the model row
INIT_CHANNELS = 16  # channels of the model row (the paper: 58)
LAYERS = 8  # cells of the model row (the paper: 24)
MODEL_BATCH = 8  # images per step of the model row (small: a 224 px step takes seconds on a CPU)
MODEL_STEPS = 1  # timed steps of the model row (after one warm-up step)
DEVICE = "auto"  # auto | cpu | cuda | mps
SEED = 0  # seeds the demo images, the split, the loader's shuffle and the model row's weights
# ----------------------------------------------------------------------------------------------------------

MEAN, STD = (0.763, 0.545, 0.570), (0.141, 0.152, 0.169)  # the paper's ISIC normalisation


def full_size_demo(bench_dir, n_images, seed):
    """The demo lesions upscaled to FULL_WIDTH x FULL_HEIGHT JPEGs in the ISIC layout (made once, reused)."""
    from PIL import Image

    from common.data.demo.dataset import GROUND_TRUTH, IMAGE_DIR, ensure_demo_dataset

    small = ensure_demo_dataset(bench_dir / "demo", n_images=n_images, seed=seed, width=DEMO_WIDTH,
                                height=DEMO_HEIGHT, log=print)
    full = bench_dir / f"full_{FULL_WIDTH}x{FULL_HEIGHT}_{n_images}_{seed}"
    if (full / GROUND_TRUTH).exists():  # written last, so its presence means the set is complete
        return full
    tmp = full.with_name(full.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / IMAGE_DIR).mkdir(parents=True)
    for src in sorted((small / IMAGE_DIR).glob("*.jpg")):
        with Image.open(src) as im:
            im.convert("RGB").resize((FULL_WIDTH, FULL_HEIGHT), Image.Resampling.BICUBIC).save(
                tmp / IMAGE_DIR / src.name, quality=92)
    shutil.copy(small / GROUND_TRUTH, tmp / GROUND_TRUTH)
    shutil.rmtree(full, ignore_errors=True)
    tmp.rename(full)
    return full


def loader_img_s(records, arrays, min_side, batch_size, workers, pin):
    """Images/s of DataLoader passes (train transform), timed from the first batch (worker start excluded)
    until MIN_SECONDS have passed; workers persist across passes, as in a training run."""
    import torch

    from common.data.loaders import ImageDataset, train_transform

    ds = ImageDataset(records, train_transform(IMAGE_SIZE, MEAN, STD, scale=(CROP_SCALE_MIN, 1.0)), arrays=arrays,
                      min_side=min_side)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=pin, drop_last=True, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(SEED))

    def batches():  # endless passes
        while True:
            yield from loader

    it = batches()
    next(it)
    n, start = 0, time.perf_counter()
    for x, _, _ in it:
        n += x.shape[0]
        seconds = time.perf_counter() - start
        if seconds >= MIN_SECONDS:
            it.close()
            return n / seconds, ds.skipped


def model_img_s(n_classes, device):
    """Forward + backward + SGD step of the evaluation network on random in-memory batches, images/s."""
    import torch

    from common.arch.genotypes import resolve
    from common.arch.networks import EvalNetwork

    genotype, _ = resolve(GENOTYPE)
    torch.manual_seed(SEED)
    model = EvalNetwork(genotype, n_classes, C=INIT_CHANNELS, layers=LAYERS, auxiliary=True).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(MODEL_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    y = torch.randint(n_classes, (MODEL_BATCH,), device=device)

    def step():
        logits, aux = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + 0.4 * torch.nn.functional.cross_entropy(aux, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, cudnn autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(MODEL_STEPS):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return MODEL_STEPS * MODEL_BATCH / (time.perf_counter() - start)


def main(argv=None):
    from common.config import ConfigError, configure, format_config
    from common.data.datasets import load_labeled
    from common.data.layouts import DatasetError
    from common.data.loaders import prepare_resized
    from common.device import pick_device
    from common.runs import REPO_ROOT

    try:
        config, _ = configure(globals(), argv)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    globals().update(config)  # this benchmark's functions read their settings as module constants
    print(format_config(config))
    t0 = time.perf_counter()
    import torch

    device = pick_device(DEVICE)
    pin = device.type == "cuda"  # pinned host memory only helps copies to a CUDA device
    bench_dir = Path(BENCH_DIR).expanduser() if BENCH_DIR else REPO_ROOT / "data" / "bench_loader"
    short_side = RESIZE_SHORT_SIDE or math.ceil(IMAGE_SIZE / math.sqrt(CROP_SCALE_MIN))

    # --- data
    try:
        root = Path(DATA_DIR).expanduser() if DATA_DIR else full_size_demo(bench_dir, N_IMAGES, SEED)
        data = load_labeled(root, seed=SEED, allow_missing=True)
    except DatasetError as exc:
        sys.exit(f"error: {exc}")
    records = (data.train + data.val + data.test)[:N_IMAGES]  # the loader's speed does not depend on the split
    n = len(records)
    batch = min(BATCH_SIZE, max(1, n // 2))
    print(f"data: {root} ({data.layout}), {n} images, batch {batch}, {NUM_WORKERS} workers, "
          f"pin_memory={pin}, device {device}, torch threads {torch.get_num_threads()}")

    # --- one-time resized copy (not applicable to in-memory npz rows)
    prep_img_s, skipped = None, []
    files = data.arrays is None
    if files:
        copy_dir = bench_dir / "resized" / f"{short_side}px"
        shutil.rmtree(copy_dir, ignore_errors=True)  # time a cold preparation
        start = time.perf_counter()
        resized, skipped = prepare_resized(records, short_side, copy_dir, workers=NUM_WORKERS or None, progress=False)
        prep_img_s = n / (time.perf_counter() - start)
        cases = [("full-size files", "off", records, None), ("full-size files", "on", records, short_side),
                 (f"resized copy ({short_side}px)", "off", resized, None),
                 (f"resized copy ({short_side}px)", "on", resized, short_side)]
    else:
        cases = [("in-memory npz", "n/a", records, None)]

    # --- loader passes
    best = [0.0] * len(cases)
    for _ in range(ROUNDS):
        for k, (_source, _draft, recs, min_side) in enumerate(cases):
            img_s, bad = loader_img_s(recs, data.arrays, min_side, batch, NUM_WORKERS, pin)
            skipped += [s for s in bad if s not in skipped]
            best[k] = max(best[k], img_s)
    rows = [(source, draft, v) for (source, draft, _, _), v in zip(cases, best)]
    model = model_img_s(len(data.classes), device) if MODEL_ROW else None

    # --- report
    print(f"\nloader only: decode + train augmentation at {IMAGE_SIZE}px (RandomResizedCrop scale "
          f"({CROP_SCALE_MIN}, 1), flips, 90° rotations, colour jitter); images/s counted per image delivered, "
          f"best of {ROUNDS} rounds")
    print(f"  {'source':<28} {'draft decoding':<15} {'images/s':>9}")
    for source, draft, img_s in rows:
        print(f"  {source:<28} {draft:<15} {img_s:>9.1f}")
    if prep_img_s is not None:
        print(f"  one-time resized copy: {prep_img_s:.1f} images/s ({NUM_WORKERS or 'all'} workers)")
    if model is not None:
        print(f"model only: EvalNetwork({GENOTYPE}, C={INIT_CHANNELS}, layers={LAYERS}) forward+backward+step "
              f"on in-memory batches of {MODEL_BATCH}: {model:.1f} images/s on {device}")
    if skipped:
        print(f"skipped {len(skipped)} undecodable file(s), e.g. {skipped[0][0]} ({skipped[0][1]})")
    key = {"off": "", "on": "_draft", "n/a": ""}
    summary = {
        "device": str(device),
        "image_size": IMAGE_SIZE,
        "workers": NUM_WORKERS,
        "batch": batch,
        "n_images": n,
        **{("full" if s.startswith("full") else "resized" if s.startswith("resized") else "npz") + key[d] + "_img_s":
           round(v, 1) for s, d, v in rows},
        "prepare_img_s": None if prep_img_s is None else round(prep_img_s, 1),
        "model_img_s": None if model is None else round(model, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
