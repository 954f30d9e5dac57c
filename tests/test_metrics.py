"""Metrics equal scikit-learn's, are JSON-ready, and the predictions CSV reproduces them through the ISIC scorer."""
import csv
import json

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from common.labeled.metrics import (
    balanced_accuracy_from_csv,
    classification_metrics,
    predictions_table,
    write_predictions_csv,
)

CLASSES = ["MEL", "NV", "BCC", "UNK"]


def _case():
    """UNK never occurs in truth but is predicted once; BCC occurs but is never predicted; row 1 is a tie."""
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    p = np.array(
        [
            [0.7, 0.2, 0.1, 0.0],
            [0.4, 0.4, 0.2, 0.0],  # tie MEL/NV -> MEL (first)
            [0.1, 0.8, 0.1, 0.0],
            [0.2, 0.7, 0.1, 0.0],
            [0.1, 0.6, 0.3, 0.0],
            [0.6, 0.3, 0.1, 0.0],
            [0.1, 0.1, 0.1, 0.7],
            [0.5, 0.3, 0.2, 0.0],
            [0.3, 0.4, 0.3, 0.0],
        ]
    )
    return y, p


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_equal_sklearn_with_missing_and_never_predicted_classes():
    y, p = _case()
    m = classification_metrics(y, p, CLASSES)
    pred = p.argmax(1)
    assert pred[1] == 0  # the tie went to the first class
    assert m["n"] == 9 and m["classes"] == CLASSES
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    # ISIC's definition by hand: mean recall over MEL, NV, BCC (UNK absent)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 4 + 0 / 2) / 3)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert m["support"] == {"MEL": 3, "NV": 4, "BCC": 2, "UNK": 0}

    rec = recall_score(y, pred, labels=range(4), average=None, zero_division=0)
    prec = precision_score(y, pred, labels=range(4), average=None, zero_division=0)
    f1 = f1_score(y, pred, labels=range(4), average=None, zero_division=0)
    for k, c in enumerate(CLASSES[:3]):
        assert m["recall"][c] == pytest.approx(rec[k])
        assert m["f1"][c] == pytest.approx(f1[k])
    assert m["recall"]["UNK"] is None  # absent from truth
    assert m["precision"]["BCC"] is None  # never predicted
    assert m["precision"]["UNK"] == pytest.approx(prec[3]) == 0.0  # predicted once, wrongly

    for k, c in enumerate(CLASSES[:3]):
        assert m["auc"][c] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    assert m["auc"]["UNK"] is None
    assert m["auc_macro"] == pytest.approx(np.mean([m["auc"][c] for c in CLASSES[:3]]))


def test_auc_macro_equals_sklearn_ovr_when_every_class_occurs():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    logits = rng.normal(size=(30, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["auc_macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def test_json_ready_without_nan():
    y, p = _case()
    m = classification_metrics(y, p, CLASSES)
    text = json.dumps(m, allow_nan=False)  # raises on NaN or numpy types
    assert json.loads(text) == m


def test_auc_macro_none_when_no_class_has_both_sides():
    m = classification_metrics([1, 1], [[0.2, 0.8], [0.6, 0.4]], ["a", "b"])
    assert m["auc_macro"] is None and m["auc"] == {"a": None, "b": None}
    assert m["balanced_accuracy"] == 0.5


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([0, 1], [[0.5, 0.5, 0.0]], "shape"),
        ([0, 5], [[0.5, 0.5], [0.5, 0.5]], "class indices"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(y, p, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, np.array(p), ["a", "b"])


def test_predictions_table_and_csv(tmp_path):
    y, p = _case()
    ids = [f"ISIC_{i:07d}" for i in range(len(y))]
    table = predictions_table(ids, p, CLASSES)
    assert table[0] == ["image", *CLASSES]
    assert [r[0] for r in table[1:]] == ids
    path = tmp_path / "sub" / "predictions_val.csv"
    write_predictions_csv(path, ids, p, CLASSES)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == table
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), p, atol=1e-6)
    assert not list(path.parent.glob(".*.tmp"))  # no leftovers of the atomic write


def test_rounding_never_changes_the_argmax():
    # 6 decimals would make these equal and hand the tie to the first column
    p = np.array([[0.33333331, 0.33333338, 0.33333331]])
    row = predictions_table(["x"], p, ["a", "b", "c"])[1]
    assert int(np.argmax([float(v) for v in row[1:]])) == 1


def _write_truth(path, ids, y, classes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *classes])
        for i, t in zip(ids, y):
            w.writerow([i, *("1.0" if k == t else "0.0" for k in range(len(classes)))])


def test_isic_scorer_reproduces_balanced_accuracy_with_unk_column(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)  # UNK (index 3) never true
    logits = rng.normal(size=(40, 4)) + np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ids = [f"ISIC_{i:07d}" for i in range(40)]
    truth = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    # the full truth file holds more images than the validation predictions
    _write_truth(truth, ids + ["ISIC_9999999"], list(y) + [0], CLASSES)
    pred = tmp_path / "predictions_val.csv"
    write_predictions_csv(pred, ids, p, CLASSES)
    m = classification_metrics(y, p, CLASSES)
    assert balanced_accuracy_from_csv(pred, truth) == pytest.approx(m["balanced_accuracy"], abs=1e-12)


def test_isic_scorer_matches_columns_by_name(tmp_path):
    y, p = _case()
    ids = [f"img{i}" for i in range(len(y))]
    truth = tmp_path / "truth.csv"
    order = [2, 0, 3, 1]  # truth columns in another order
    _write_truth(truth, ids, [order.index(t) for t in y], [CLASSES[k] for k in order])
    pred = tmp_path / "pred.csv"
    write_predictions_csv(pred, ids, p, CLASSES)
    assert balanced_accuracy_from_csv(pred, truth) == pytest.approx(classification_metrics(y, p, CLASSES)["balanced_accuracy"])


def test_isic_scorer_refuses_mismatched_files(tmp_path):
    y, p = _case()
    ids = [f"img{i}" for i in range(len(y))]
    truth = tmp_path / "truth.csv"
    _write_truth(truth, ids[:-1], y[:-1], CLASSES)
    pred = tmp_path / "pred.csv"
    write_predictions_csv(pred, ids, p, CLASSES)
    with pytest.raises(ValueError, match="not in"):
        balanced_accuracy_from_csv(pred, truth)
    write_predictions_csv(pred, ids[:-1], p[:-1, :3], CLASSES[:3])
    with pytest.raises(ValueError, match="columns"):
        balanced_accuracy_from_csv(pred, truth)
