"""Refresh the README's figures in images/ from a demo search and a demo training run.

    python images/refresh.py                                   # runs both demos (about 20 min on 2 CPU cores)
    python images/refresh.py --SEARCH_RUN=runs/search/X --EVAL_RUN=runs/eval/Y   # reuse finished runs
"""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from common.config import configure  # noqa: E402
from common.data.demo.classes import DEMO_CLASSES  # noqa: E402
from common.data.demo.dataset import ensure_demo_dataset  # noqa: E402
from common.runs import REPO_ROOT, new_run_dir  # noqa: E402

# -----------------------------------------------------------------------------
SEARCH_RUN = None  # a finished search run folder; None = run the demo search now
EVAL_RUN = None  # a finished eval run folder; None = run the demo training now (on SEARCH_RUN's best cell)
N_CAM = 4  # Grad-CAM pictures copied into images/
PER_CLASS = 3  # demo lesions per class in images/demo_lesions.png
THUMB = 128  # px, width of a lesion thumbnail
# -----------------------------------------------------------------------------
IMAGES = REPO_ROOT / "images"


def run_demo(script, args):
    """Run a demo script in its folder with this Python; stop on failure."""
    cmd = [sys.executable, script.name, *args]
    print("$ (cd", script.parent.name, "&&", " ".join(cmd[1:]) + ")")
    subprocess.run(cmd, cwd=script.parent, check=True)


def lesion_sheet(path, per_class, thumb):
    """A grid of demo lesions, one row per class, labelled."""
    root = ensure_demo_dataset()
    rows = {c: [] for c in DEMO_CLASSES}
    with open(root / "ISIC_2019_Training_GroundTruth.csv") as f:
        for row in csv.DictReader(f):
            cls = next(c for c in DEMO_CLASSES if float(row[c]) == 1.0)
            if len(rows[cls]) < per_class:
                rows[cls].append(root / "ISIC_2019_Training_Input" / f"{row['image']}.jpg")
    h = thumb * 3 // 4
    label_w = 48
    sheet = Image.new("RGB", (label_w + per_class * (thumb + 4), len(rows) * (h + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (cls, files) in enumerate(rows.items()):
        draw.text((6, r * (h + 4) + h // 2 - 6), cls, fill="black")
        for c, file in enumerate(files):
            im = Image.open(file).convert("RGB").resize((thumb, h), Image.LANCZOS)
            sheet.paste(im, (label_w + c * (thumb + 4), r * (h + 4)))
    sheet.quantize(256).save(path, optimize=True)  # a palette PNG: a third of the size, no visible loss at this scale


def main(argv=None):
    cfg, _ = configure(globals(), argv)
    search_run = Path(cfg["SEARCH_RUN"]) if cfg["SEARCH_RUN"] else new_run_dir("search")
    if not cfg["SEARCH_RUN"]:
        run_demo(REPO_ROOT / "search" / "search.py", [f"--OUT_DIR={search_run}"])
    eval_run = Path(cfg["EVAL_RUN"]) if cfg["EVAL_RUN"] else new_run_dir("eval")
    if not cfg["EVAL_RUN"]:
        run_demo(REPO_ROOT / "eval" / "train_isic.py", [f"--GENOTYPE={search_run}", f"--OUT_DIR={eval_run}"])

    for name in ("search_curve.png", "normal_cell.png", "reduce_cell.png"):
        shutil.copyfile(search_run / name, IMAGES / name)
    for name in ("confusion_matrix.png", "curves.png"):
        shutil.copyfile(eval_run / name, IMAGES / name)
    for old in IMAGES.glob("cam_*.png"):
        old.unlink()
    cams = sorted((eval_run / "cam").glob("*.png"))
    for i in np.linspace(0, len(cams) - 1, min(cfg["N_CAM"], len(cams))).astype(int) if cams else []:
        shutil.copyfile(cams[i], IMAGES / f"cam_{cams[i].name}")
    lesion_sheet(IMAGES / "demo_lesions.png", cfg["PER_CLASS"], cfg["THUMB"])
    print(f"images/ refreshed from {search_run} and {eval_run}")


if __name__ == "__main__":
    main()
