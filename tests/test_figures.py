"""Each figure draws its data: what the plotting functions put on their axes is read back and compared with the input,
and the written PNG is checked for the colours of that data (a blank or one-colour picture fails), for typical runs
and for the edge cases real runs produce. Also the proxy study's, the label curve's and the strategies' figures, by the
ink of their data colours."""
import gc
import math
import warnings

import numpy as np
import pytest
from PIL import Image

from common import figures
from common.figures import plot_confusion_matrix, plot_search_curve, plot_training_curves


def _check_png(path):
    assert path.is_file() and 0 < path.stat().st_size <= 150_000  # README figures stay small
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG"


def ink(path, colour, tol=60, ax=None):
    """Pixels of the PNG within `tol` (RGB distance) of colour ('#rrggbb' or an RGB(A) tuple of 0..1 floats); with ax,
    only those inside that axes' box (the figure was saved at its own dpi, so display units are the PNG's pixels)."""
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    if ax is not None:
        box = ax.get_window_extent()
        height = pixels.shape[0]
        pixels = pixels[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]
    rgb = ([int(colour[i:i + 2], 16) for i in (1, 3, 5)] if isinstance(colour, str)
           else [255 * c for c in colour[:3]])
    return int((np.linalg.norm(pixels - np.array(rgb), axis=-1) < tol).sum())


def _by_label(ax, prefix):
    """The one collection (scatter) on ax whose legend label starts with prefix."""
    found = [c for c in ax.collections if c.get_label().startswith(prefix)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


# ---- search curve -----------------------------------------------------------------------------------------------

def _trials(n, fail_every=7, stop_every=None):
    rng = np.random.default_rng(0)
    return [
        {"trial": i, "status": "fail", "loss": None} if i % fail_every == 3 else
        {"trial": i, "status": "stopped", "loss": 9.0} if stop_every and i % stop_every == 5 else
        {"trial": i, "status": "ok", "loss": float(6 - 0.01 * i + rng.normal(0, 0.1))}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "trials",
    [
        _trials(40),
        _trials(30, stop_every=6),
        [],
        [{"trial": 0, "status": "fail", "loss": None}],  # no ok trial
        [{"trial": 0, "status": "ok", "loss": 5.1}],  # a single ok trial
        [{"trial": 0, "status": "ok", "loss": float("nan")}, {"trial": 1, "status": "ok", "loss": 4.0}],
    ],
    ids=["typical", "stopped", "empty", "only-failed", "one-ok", "nan-loss"],
)
def test_search_curve(tmp_path, trials):
    """Every usable trial is a dot at (trial, loss), the step line is the running best, failed (or loss-less) and
    stopped trials are marks at their trial numbers, and the title names the best."""
    path = tmp_path / "nested" / "search_curve.png"  # parent folders are created
    fig = plot_search_curve(trials, path)
    _check_png(path)
    ok = [(t["trial"], t["loss"]) for t in trials if t["status"] == "ok" and math.isfinite(t["loss"])]
    failed = [t["trial"] for t in trials if t["status"] != "stopped" and (t["trial"], t["loss"]) not in ok]
    stopped = [t["trial"] for t in trials if t["status"] == "stopped"]
    ax = fig.axes[0]
    if ok:
        np.testing.assert_allclose(_by_label(ax, "trial").get_offsets(), ok)
        (best_line,) = [line for line in ax.lines if line.get_label() == "best so far"]
        losses = np.array(ok)[:, 1]
        np.testing.assert_allclose(best_line.get_ydata()[:len(ok)], np.minimum.accumulate(losses))
        assert f"best {losses.min():.4f}" in ax.get_title()
        assert ink(path, figures.ORANGE) > 60  # the running best and its star
    else:
        assert not ax.lines and "none successful" in ax.get_title()
        assert ink(path, figures.ORANGE) == 0
    if failed:
        np.testing.assert_array_equal(_by_label(ax, "failed").get_offsets()[:, 0], failed)
        assert ink(path, figures.RED) > 20
    if stopped:
        np.testing.assert_array_equal(_by_label(ax, "stopped").get_offsets()[:, 0], stopped)
    assert f"{len(trials)} trials" in ax.get_title()


# ---- training curves --------------------------------------------------------------------------------------------

def _history(n):
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "val_loss": 2.2 / e,
            "val_accuracy": 0.5 + 0.04 * e,
            "val_balanced_accuracy": 0.3 + 0.05 * e - 0.02 * (e == n and n > 2),  # the best is not the last
            "val_auc_macro": None if e == 1 else 0.7 + 0.02 * e,
            "lr": 0.01 * (1 + np.cos(np.pi * e / n)) / 2,
        }
        for e in range(1, n + 1)
    ]


def _column(history, key):
    return np.array([np.nan if h[key] is None else h[key] for h in history], dtype=float)


@pytest.mark.parametrize("history", [_history(8), _history(1), []], ids=["typical", "one-epoch", "empty"])
def test_training_curves(tmp_path, history):
    """Each panel's lines are the history's columns, epoch by epoch; the star marks the best balanced accuracy."""
    path = tmp_path / "curves.png"
    fig = plot_training_curves(history, path)
    _check_png(path)
    ax_loss, ax_acc, ax_lr = fig.axes[:3]
    if not history:
        assert not any(ax.lines for ax in fig.axes)
        assert all("no epochs yet" in [t.get_text() for t in ax.texts] for ax in (ax_loss, ax_acc, ax_lr))
        assert ink(path, figures.BLUE) == ink(path, figures.ORANGE) == 0
        return
    epochs = [h["epoch"] for h in history]
    panels = {ax_loss: {"train": "train_loss", "validation": "val_loss"},
              ax_acc: {"balanced accuracy": "val_balanced_accuracy", "accuracy": "val_accuracy"}}
    if len(history) > 1:
        panels[ax_acc]["macro AUC"] = "val_auc_macro"  # epoch 1 has none: a one-epoch run draws no AUC line
    for ax, lines in panels.items():
        drawn = {line.get_label(): line for line in ax.lines}
        assert set(drawn) == set(lines)
        for label, key in lines.items():
            np.testing.assert_array_equal(drawn[label].get_xdata(), epochs)
            np.testing.assert_allclose(drawn[label].get_ydata(), _column(history, key))
    np.testing.assert_allclose(ax_lr.lines[0].get_ydata(), _column(history, "lr"))
    bacc = _column(history, "val_balanced_accuracy")
    star = _by_label(ax_acc, "best").get_offsets()[0]
    assert tuple(star) == pytest.approx((epochs[int(np.argmax(bacc))], bacc.max()))
    assert ink(path, figures.BLUE) > 100 and ink(path, figures.ORANGE) > 50  # the train and validation lines


# ---- confusion matrix -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [4, 9])
def test_confusion_matrix_with_an_empty_class(tmp_path, k):
    """Colours are the row fractions (or counts), each cell says its count and %, an empty row is all 0."""
    rng = np.random.default_rng(k)
    cm = rng.integers(0, 20, (k, k)) + np.diag(rng.integers(20, 200, k))
    cm[-1] = 0  # a class with no samples (UNK in ISIC 2019)
    classes = [f"class{i}" for i in range(k)]
    rows = cm.sum(1, keepdims=True)
    frac = cm / np.maximum(rows, 1)
    for normalize in (True, False):
        path = tmp_path / f"cm_{normalize}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no 0/0 on the empty row
            fig = plot_confusion_matrix(cm, classes, path, normalize=normalize)
        _check_png(path)
        ax = fig.axes[0]
        colour = ax.images[0].get_array()
        np.testing.assert_allclose(colour, frac if normalize else cm)
        texts = [t.get_text() for t in ax.texts]
        assert texts == [f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%" if rows[i, 0] else "0" for i in range(k) for j in range(k)]
        assert [t.get_text() for t in ax.get_yticklabels()] == [f"{c} (n={n})" for c, n in zip(classes, rows[:, 0])]
        bacc = np.mean(np.diag(frac)[:-1])
        assert f"accuracy {np.trace(cm) / cm.sum():.3f}, balanced {bacc:.3f}" in ax.get_title()
        darkest = ax.images[0].cmap(ax.images[0].norm(colour.max()))  # the fullest cell's colour is in the matrix
        assert ink(path, darkest, tol=25, ax=ax) > 200


def test_confusion_matrix_all_zero_and_bad_shape(tmp_path):
    fig = plot_confusion_matrix(np.zeros((3, 3), int), ["a", "b", "c"], tmp_path / "zero.png")
    _check_png(tmp_path / "zero.png")
    ax = fig.axes[0]
    assert not ax.images[0].get_array().any() and ax.get_title() == "no samples"
    assert ink(tmp_path / "zero.png", ax.images[0].cmap(1.0), tol=60, ax=ax) == 0  # no cell is dark
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion_matrix(np.zeros((2, 2), int), ["a", "b", "c"], tmp_path / "bad.png")


def test_figures_are_released(tmp_path, monkeypatch):
    import weakref

    made, original = [], figures._figure
    monkeypatch.setattr(figures, "_figure", lambda *a: made.append(weakref.ref(f := original(*a))) or f)
    plot_search_curve(_trials(10), tmp_path / "s.png")
    plot_training_curves(_history(3), tmp_path / "t.png")
    plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "c.png")
    gc.collect()
    assert len(made) == 3 and all(ref() is None for ref in made)  # nothing keeps figures alive between calls


# ---- the proxy study's, the label curve's and the strategies' figures (by the ink of their data) ------------------

def test_study_scatter_draws_its_points(tmp_path):
    from common.study.figures import ScorePoints, plot_score_scatter

    rng = np.random.default_rng(0)
    entry = {"spearman": 0.3, "spearman_ci": [0.0, 0.5], "n": 12}
    drawn, lost = tmp_path / "drawn.png", tmp_path / "lost.png"
    plot_score_scatter(drawn, "nce", ScorePoints(score=rng.normal(size=12), truth=rng.uniform(0.2, 0.5, 12),
                                                 sources=["random"] * 12), entry, False)
    plot_score_scatter(lost, "nce", ScorePoints(score=rng.normal(size=12), truth=[np.nan] * 12,
                                                sources=["random"] * 12), entry, False)
    assert ink(drawn, figures.BLUE) > 200 and ink(lost, figures.BLUE) == 0  # 12 dots of about 50 px each


def test_study_bars_are_as_tall_as_their_rho(tmp_path):
    from common.study.figures import plot_correlation_bars

    entries = {"a": {"spearman": 0.8, "spearman_ci": [0.7, 0.9]}, "b": {"spearman": 0.4, "spearman_ci": [0.3, 0.5]},
               "c": {"spearman": -0.4, "spearman_ci": [-0.5, -0.3]}}
    plot_correlation_bars(tmp_path / "bars.png", list(entries), entries)
    positive, negative = ink(tmp_path / "bars.png", figures.BLUE), ink(tmp_path / "bars.png", figures.RED)
    assert negative > 500 and positive / negative == pytest.approx(3.0, rel=0.15)  # (0.8 + 0.4) / 0.4


def test_label_curve_draws_both_arms_and_the_gain(tmp_path):
    from common.labeled import curve

    def rows(acc):
        return [curve.row(curve.Cell(f, arm, s), None if v is None else {"balanced_accuracy": v,
                                                                            "dataset": {"n_labeled": int(400 * f)}})
                for (arm, f), values in acc.items() for s, v in enumerate(values)]

    acc = {("scratch", 0.1): [0.20, 0.25, 0.30], ("pretrained", 0.1): [0.30, 0.31, 0.42],
           ("scratch", 1.0): [0.50, 0.55, 0.52], ("pretrained", 1.0): [0.52, 0.54, 0.55]}
    curve.plot(curve.summarise(rows(acc)), tmp_path / "drawn.png", "demo")
    curve.plot(curve.summarise(rows({k: [None] for k in acc})), tmp_path / "lost.png", "demo")  # every run failed
    assert ink(tmp_path / "drawn.png", figures.ORANGE) > 200 and ink(tmp_path / "lost.png", figures.ORANGE) == 0
    # the pre-trained arm's line and markers, against its legend entry alone
    assert ink(tmp_path / "drawn.png", figures.BLUE) > 4 * ink(tmp_path / "lost.png", figures.BLUE)


def test_strategies_figure_draws_each_strategy(tmp_path):
    from common.search.strategy_report import COLORS, plot_best_so_far

    searches = [{"strategy": "tpe", "curve": [(6, 3.0), (12, 2.9), (48, 2.8)]},
                {"strategy": "tpe", "curve": [(6, 3.1), (48, 2.7)]},
                {"strategy": "evolution", "curve": [(6, 3.2), (18, 2.6)]}]
    strategies = ["random", "tpe", "evolution"]  # COLORS in this order: grey, blue, green
    plot_best_so_far(searches, strategies, 48, tmp_path / "drawn.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no line, so no legend entry
        plot_best_so_far([], strategies, 48, tmp_path / "lost.png")
    for colour in COLORS[1:3]:
        assert ink(tmp_path / "drawn.png", colour) > 500 and ink(tmp_path / "lost.png", colour) == 0
