"""Each figure writes a small valid PNG, for typical runs and for the edge cases real runs produce."""
import gc
import warnings

import numpy as np
import pytest
from PIL import Image

from common.figures import plot_confusion_matrix, plot_search_curve, plot_training_curves


def _check_png(path):
    assert path.is_file() and 0 < path.stat().st_size <= 150_000  # README figures stay small
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG"


def _trials(n, fail_every=7):
    rng = np.random.default_rng(0)
    return [
        {"trial": i, "status": "fail", "loss": None} if i % fail_every == 3 else
        {"trial": i, "status": "ok", "loss": float(6 - 0.01 * i + rng.normal(0, 0.1))}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "trials",
    [
        _trials(40),
        [],
        [{"trial": 0, "status": "fail", "loss": None}],  # no ok trial
        [{"trial": 0, "status": "ok", "loss": 5.1}],  # a single ok trial
        [{"trial": 0, "status": "ok", "loss": float("nan")}, {"trial": 1, "status": "ok", "loss": 4.0}],
    ],
    ids=["typical", "empty", "only-failed", "one-ok", "nan-loss"],
)
def test_search_curve(tmp_path, trials):
    path = tmp_path / "nested" / "search_curve.png"  # parent folders are created
    plot_search_curve(trials, path)
    _check_png(path)


def _history(n):
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "val_loss": 2.2 / e,
            "val_accuracy": 0.5 + 0.04 * e,
            "val_balanced_accuracy": 0.3 + 0.05 * e,
            "val_auc_macro": None if e == 1 else 0.7 + 0.02 * e,
            "lr": 0.01 * (1 + np.cos(np.pi * e / n)) / 2,
        }
        for e in range(1, n + 1)
    ]


@pytest.mark.parametrize("history", [_history(8), _history(1), []], ids=["typical", "one-epoch", "empty"])
def test_training_curves(tmp_path, history):
    path = tmp_path / "curves.png"
    plot_training_curves(history, path)
    _check_png(path)


@pytest.mark.parametrize("k", [4, 9])
def test_confusion_matrix_with_an_empty_class(tmp_path, k):
    rng = np.random.default_rng(k)
    cm = rng.integers(0, 20, (k, k)) + np.diag(rng.integers(20, 200, k))
    cm[-1] = 0  # a class with no samples (UNK in ISIC 2019)
    classes = [f"class{i}" for i in range(k)]
    for normalize in (True, False):
        path = tmp_path / f"cm_{normalize}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no 0/0 on the empty row
            plot_confusion_matrix(cm, classes, path, normalize=normalize)
        _check_png(path)


def test_confusion_matrix_all_zero_and_bad_shape(tmp_path):
    plot_confusion_matrix(np.zeros((3, 3), int), ["a", "b", "c"], tmp_path / "zero.png")
    _check_png(tmp_path / "zero.png")
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix(np.zeros((2, 2), int), ["a", "b", "c"], tmp_path / "bad.png")


def test_figures_are_released(tmp_path, monkeypatch):
    import weakref

    import common.figures as figures

    made, original = [], figures._figure
    monkeypatch.setattr(figures, "_figure", lambda *a: made.append(weakref.ref(f := original(*a))) or f)
    plot_search_curve(_trials(10), tmp_path / "s.png")
    plot_training_curves(_history(3), tmp_path / "t.png")
    plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "c.png")
    gc.collect()
    assert len(made) == 3 and all(ref() is None for ref in made)  # nothing keeps figures alive between calls
