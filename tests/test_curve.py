"""The label-efficiency curve's grid and results (common/labeled/curve.py) on hand-written rows: per-arm mean ± SD,
the pre-training gain paired by seed with its bootstrap CI, failed cells reported, the files written."""
import csv

import numpy as np
import pytest
from PIL import Image

from common import stats
from common.labeled import curve, repeats


def rows():
    acc = {("scratch", 0.1): [0.20, 0.25, 0.30], ("pretrained", 0.1): [0.30, 0.31, 0.42],
           ("scratch", 1.0): [0.50, 0.55, 0.52], ("pretrained", 1.0): [0.52, 0.54, 0.55]}
    out = []
    for (arm, f), values in acc.items():
        for seed, v in enumerate(values):
            cell = curve.Cell(f, arm, seed)
            metrics = {"balanced_accuracy": v, "auc_macro": v + 0.3, "accuracy": v, "best_epoch": 3, "epochs": 5,
                       "val_selected": {"balanced_accuracy": v + 0.05},
                       "dataset": {"n_labeled": int(400 * f), "n_train": 400}}
            out.append(curve.row(cell, metrics, run=f"runs/{cell.name}", seconds=1.0))
    out.append(curve.row(curve.Cell(0.1, "pretrained", 3), None, reason="ConfigError: diverged"))
    return out, acc


def test_grid_runs_seed_by_seed_small_fractions_first():
    cells = curve.grid((1.0, 0.1), (2, 5))
    assert [c.name for c in cells[:4]] == ["scratch_f0.1_s2", "pretrained_f0.1_s2", "scratch_f1_s2", "pretrained_f1_s2"]
    assert len(cells) == 8 and cells[-1] == curve.Cell(1.0, "pretrained", 5)


def test_summary_gain_markdown_csv_and_figure(tmp_path):
    data, acc = rows()
    summary = curve.write(tmp_path, data, "demo", notes=["wall time 1 min"])
    s = summary["arms"]["pretrained"][0.1]
    assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(acc[("pretrained", 0.1)]))  # the failed seed 3 left out
    assert s["sd"] == pytest.approx(np.std(acc[("pretrained", 0.1)], ddof=1))
    gain = summary["gain"][0.1]
    diffs = np.subtract(acc[("pretrained", 0.1)], acc[("scratch", 0.1)])
    assert gain["n"] == 3 and gain["mean"] == pytest.approx(diffs.mean())
    assert gain["ci"] == pytest.approx(stats.bootstrap_mean_ci(diffs))
    assert summary["n_labeled"] == {0.1: 40, 1.0: 400}

    md = (tmp_path / "curve.md").read_text()
    assert f"| 0.1 | 40 | 0.250 ± 0.050 | {repeats.mean_sd_text(s)} | {repeats.difference_text(gain)} | 3 / 3 |" in md
    assert "- wall time 1 min" in md and "failed: pretrained at fraction 0.1, seed 3: ConfigError: diverged" in md
    table = list(csv.DictReader(open(tmp_path / "curve.csv")))
    assert len(table) == 13 and table[-1]["status"] == "fail" and table[0]["n_labeled"] == "40"
    with Image.open(tmp_path / "label_curve.png") as im:
        assert im.format == "PNG" and im.size[0] > 600
