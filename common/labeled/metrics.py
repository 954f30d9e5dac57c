"""Classification metrics (scikit-learn), the ISIC-style predictions CSV, and an independent ISIC scorer."""
import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from common.runs import atomic_write_text


def _plain(x):
    """A JSON-ready float: numpy scalars -> float, NaN/inf -> None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _check_inputs(y_true, probs, classes):
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probs must have shape (N, {k}) for {k} classes, got {probs.shape}")
    if y_true.ndim != 1 or len(y_true) != len(probs):
        raise ValueError(f"y_true must have shape ({len(probs)},) to match probs, got {y_true.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples to score (empty validation split?)")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contain NaN or inf (did training diverge? try a lower learning rate)")
    if not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= k:
        raise ValueError(f"y_true must be integer class indices in 0..{k - 1}, got values {np.unique(y_true)[:10]}")
    return y_true.astype(np.int64), probs


def classification_metrics(y_true, probs, classes):
    """Metrics of one set of predictions; y_true (N,) class indices, probs (N, K). JSON-ready (NaN -> None).

    The predicted class is argmax(probs); ties go to the first class in `classes` order.
    """
    y_true, probs = _check_inputs(y_true, probs, classes)
    classes = [str(c) for c in classes]
    labels = list(range(len(classes)))
    y_pred = probs.argmax(1)  # (N,)

    with warnings.catch_warnings():
        # sklearn warns when y_pred holds classes absent from y_true; the metric is still ISIC's (mean over y_true classes)
        warnings.simplefilter("ignore")
        bacc = balanced_accuracy_score(y_true, y_pred)
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=np.nan
        )

    auc = {}
    for c in labels:
        positive = y_true == c
        # AUC needs both positives and negatives; otherwise it is undefined for this class
        auc[classes[c]] = _plain(roc_auc_score(positive, probs[:, c])) if 0 < positive.sum() < len(y_true) else None
    defined = [v for v in auc.values() if v is not None]

    return {
        "n": int(len(y_true)),
        "accuracy": _plain((y_pred == y_true).mean()),
        "balanced_accuracy": _plain(bacc),
        "auc_macro": _plain(np.mean(defined)) if defined else None,
        "auc": auc,
        "recall": {classes[c]: _plain(recall[c]) for c in labels},
        "precision": {classes[c]: _plain(precision[c]) for c in labels},
        "f1": {classes[c]: _plain(f1[c]) for c in labels},
        "support": {classes[c]: int(support[c]) for c in labels},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),  # rows = true
        "classes": classes,
    }


def _format_row(p):
    """Six decimals, unless rounding would change the row's argmax; then the exact shortest repr."""
    short = [f"{v:.6f}" for v in p]
    if int(np.argmax([float(s) for s in short])) != int(np.argmax(p)):
        return [repr(float(v)) for v in p]  # keeps the scorer's argmax equal to the metrics' argmax
    return short


def predictions_table(image_ids, probs, classes):
    """Header ['image', *classes] and one row per image with its class probabilities as text."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs must have shape (N, {len(classes)}) for {len(classes)} classes, got {probs.shape}")
    if len(image_ids) != len(probs):
        raise ValueError(f"{len(image_ids)} image ids but {len(probs)} rows of probabilities")
    return [["image", *map(str, classes)]] + [[str(i), *_format_row(p)] for i, p in zip(image_ids, probs)]


def write_predictions_csv(path, image_ids, probs, classes):
    """ISIC-style CSV: `image`, then one probability column per class in class order (written atomically)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(predictions_table(image_ids, probs, classes))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


def _read_table(path, what):
    """A CSV with an `image` column -> (category columns, {image: [floats]})."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} CSV {path} not found")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or not rows[0] or rows[0][0].strip() != "image":
        raise ValueError(f"{what} CSV {path}: the first column must be `image` (ISIC layout)")
    header = [h.strip() for h in rows[0][1:]]
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header) + 1:
            raise ValueError(f"{what} CSV {path} line {line}: {len(row)} fields, expected {len(header) + 1}")
        try:
            table[row[0].strip()] = [float(v) for v in row[1:]]
        except ValueError:
            raise ValueError(f"{what} CSV {path} line {line}: non-numeric value in {row[1:]}") from None
    return header, table


def balanced_accuracy_from_csv(pred_csv, truth_csv):
    """Balanced multiclass accuracy as the ISIC challenge scores it, from the two CSV files alone.

    truth_csv: one-hot ground truth (`image`, one column per category, e.g. ISIC_2019_Training_GroundTruth.csv);
    pred_csv: `image`, one probability column per category. Only the images in pred_csv are scored (a
    validation split of the full ground-truth file); each must be in truth_csv. Predicted category = argmax
    over the prediction columns (first on ties); the score is the mean recall over the truth categories that
    have at least one positive among the scored images.
    """
    truth_cats, truth = _read_table(truth_csv, "ground-truth")
    pred_cats, pred = _read_table(pred_csv, "predictions")
    if sorted(pred_cats) != sorted(truth_cats):
        raise ValueError(f"prediction columns {pred_cats} differ from ground-truth categories {truth_cats}")
    if not pred:
        raise ValueError(f"predictions CSV {pred_csv} has no rows")
    missing = [img for img in pred if img not in truth]
    if missing:
        raise ValueError(f"{len(missing)} predicted images are not in {truth_csv} (e.g. {missing[0]})")

    hits, totals = {}, {}
    for img, scores in pred.items():
        onehot = truth[img]
        if max(onehot) <= 0:
            raise ValueError(f"ground-truth CSV {truth_csv}: image {img} has no positive category")
        true_cat = truth_cats[onehot.index(max(onehot))]
        pred_cat = pred_cats[scores.index(max(scores))]  # list.index -> first maximum
        totals[true_cat] = totals.get(true_cat, 0) + 1
        hits[true_cat] = hits.get(true_cat, 0) + (pred_cat == true_cat)
    return sum(hits[c] / totals[c] for c in totals) / len(totals)
