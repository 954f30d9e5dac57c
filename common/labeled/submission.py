"""Predict a folder of unlabeled images with a trained model (a best.pt): an ISIC submission CSV, no training."""
from pathlib import Path

import torch
from tqdm import tqdm

from common import runs
from common.arch.genotypes import from_dict
from common.config import ConfigError
from common.data.images import list_images
from common.data.layouts import DatasetError, Record
from common.data.loaders import ImageDataset, eval_transform
from common.labeled.checkpoints import BEST, load_checkpoint
from common.labeled.data import SKIP_LOG, record_skipped
from common.labeled.metrics import write_predictions_csv
from common.labeled.model import build_model
from common.labeled.training import predict

SUBMISSION = "submission.csv"


def find_checkpoint(path):
    """The best.pt to predict with: `path`, or None = the newest eval run's."""
    if path is not None:
        return Path(path).expanduser()
    newest = runs.newest_run("eval", BEST)
    if newest is None:
        raise ConfigError("no trained model found under runs/eval: set --CHECKPOINT=<eval run folder>/best.pt")
    return newest / BEST


def image_ids(folder):
    """(files, ids): the images under `folder` and their ISIC ids (file stems; paths relative to the folder when two
    subfolders hold the same name)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"PREDICT_DIR {folder} is not a folder; point it at a folder of images")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"no images under PREDICT_DIR {folder} (looked for .jpg, .jpeg, .png, .bmp, .tif)")
    ids = [p.stem for p in paths]  # ISIC names the image by its file stem
    if len(set(ids)) < len(ids):  # the same name in two subfolders: keep them apart
        ids = [p.relative_to(folder).with_suffix("").as_posix() for p in paths]
    return paths, ids


def predict_folder(cfg, rt):
    """submission.csv (image, one probability column per class, in the checkpoint's class order) for every image
    under PREDICT_DIR, from CHECKPOINT's model with the preprocessing it was trained with; in a run folder of its
    own (OUT_DIR, else runs/predict/<timestamp>). Returns the run folder."""
    ckpt_path = find_checkpoint(cfg["CHECKPOINT"])
    ckpt = load_checkpoint(ckpt_path, need=("model", "classes", "genotype", "config"))
    paths, ids = image_ids(cfg["PREDICT_DIR"])

    run_dir, _ = runs.open_run_dir(cfg["OUT_DIR"] or runs.new_run_dir("predict"), cfg,
                                   ignore=("OUT_DIR", "DEVICE", "AMP", "CHANNELS_LAST", "NUM_WORKERS", "THREADS", "DEBUG"))
    trained, classes = ckpt["config"], ckpt["classes"]
    genotype = from_dict(ckpt["genotype"]) if ckpt["genotype"] is not None else None  # None: a torchvision ARCH
    print(f"model: {ckpt_path} ({'genotype ' if genotype is not None else ''}{ckpt.get('genotype_source')}, "
          f"classes {', '.join(classes)})")
    model = build_model(genotype, len(classes), trained)  # no weights file: the checkpoint holds every weight
    model.load_state_dict(ckpt["model"])
    rt.place(model)
    dataset = ImageDataset([Record(i, 0, p) for i, p in zip(ids, paths)],
                           eval_transform(trained["IMAGE_SIZE"], trained["MEAN"], trained["STD"]),
                           min_side=trained["IMAGE_SIZE"], skip_log=run_dir / SKIP_LOG)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg["BATCH_SIZE"] or trained["BATCH_SIZE"],
                                         num_workers=cfg["NUM_WORKERS"], pin_memory=rt.device.type == "cuda")
    logits, _, index = predict(model, tqdm(loader, desc="predict", unit="batch", disable=None), rt)
    probs = torch.softmax(logits.double(), dim=1).numpy()  # (N, K)
    out = run_dir / SUBMISSION
    write_predictions_csv(out, [ids[j] for j in index.tolist()], probs, classes)
    record_skipped(run_dir, dataset.skipped, len(paths))
    runs.mark_finished(run_dir, {"images": len(index), "checkpoint": str(ckpt_path)})
    print(f"wrote {out} ({len(index)} images, columns image,{','.join(classes)})")
    return run_dir
