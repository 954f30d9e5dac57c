"""The few-labels setting: a seeded, class-stratified share of the training split keeps its labels, the rest does not.

Per class c with n_c training images, round(fraction * n_c) images (halves up) keep their labels, drawn by a
permutation seeded with (seed, c). A smaller fraction's labeled images are therefore a subset of a larger one's
(same seed), so a label-efficiency curve compares nested label sets rather than fresh draws. Images, not lesions,
are drawn: another photo of a labeled lesion may stay unlabeled (it still serves self-supervised pre-training).
"""
import math

import numpy as np

from common.config import ConfigError


def labels_kept(n, fraction):
    """round(fraction * n), halves up, at most n: how many of a class's n training images keep their label."""
    return min(n, int(np.floor(fraction * n + 0.5)))


def min_fraction(n):
    """The smallest fraction that keeps one label of a class with n training images (fraction * n >= 0.5)."""
    return 0.5 / n


def label_subset(records, classes, fraction, seed):
    """(labeled, unlabeled) lists of `records` (each in its input order) for LABEL_FRACTION `fraction` in (0, 1].

    records: the training split's records (.label = class index); classes: the class names, for the message.
    A class that has training images but would keep none raises ConfigError naming the fraction, the class(es)
    and the smallest fraction that keeps one of each; a class with no training images at all (ISIC's UNK) is left
    alone. Deterministic by (seed, class); fraction 1 keeps every label.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"--LABEL_FRACTION={fraction!r}: must be a number in (0, 1], e.g. 0.1")
    labels = np.array([r.label for r in records], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    empty = [c for c in range(len(classes)) if counts[c] and not labels_kept(counts[c], fraction)]
    if empty:
        named = ", ".join(f"{classes[c]} ({counts[c]} training images)" for c in empty[:3])
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        need = math.ceil(max(min_fraction(counts[c]) for c in empty) * 1e4) / 1e4  # rounded up: it must work
        raise ConfigError(f"--LABEL_FRACTION={fraction:g} leaves no labeled training image of class {named}{more}; "
                          f"use LABEL_FRACTION >= {need:g} (one label per class) or add labeled images")
    keep = np.zeros(len(records), dtype=bool)
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([int(seed), int(c)]).permutation(len(members))
        keep[members[order[:labels_kept(len(members), fraction)]]] = True
    return [r for r, k in zip(records, keep) if k], [r for r, k in zip(records, keep) if not k]
