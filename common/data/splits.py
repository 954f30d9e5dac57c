"""Seeded splits (stratified by class, grouped by lesion) and class balance: counts, loss weights, the sampler."""
import numpy as np
import torch

from common.data.layouts import DatasetError


def grouped_split(labels, groups, fractions, seed):
    """[rest idx, part idx, ...]: held-out parts of `fractions` (one float or a sequence) of the images, stratified
    by class, no group on two sides; deterministic by seed.

    groups: one id per image (a lesion), or None for every image its own group. A group is placed whole and
    counts towards the most common label among its images. Per class, the class's groups are shuffled with
    the seed and then taken largest first; each goes to the held-out part furthest below its target
    (n_class * fraction) when that brings the part closer to its target, else to the rest. So each part holds
    its fraction of every class to within half a group (round(n * fraction), halves up, for single images).
    Small classes then get at least one group in the rest, and one in each part while the rest keeps one.
    (Written here rather than taken from sklearn: StratifiedGroupKFold only offers 1/k fractions.)
    """
    fractions = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    if groups is None:
        gid = np.arange(len(labels))
    else:
        uniq, gid = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if len(uniq) < 2:
            raise DatasetError("cannot split: all images belong to one lesion group; add images of other lesions")
    n_groups, n_labels = int(gid.max(initial=-1)) + 1, int(labels.max(initial=-1)) + 1
    size = np.bincount(gid, minlength=n_groups)
    per_label = np.bincount(gid * n_labels + labels, minlength=n_groups * n_labels).reshape(n_groups, n_labels)
    group_label = per_label.argmax(1)  # (G,) ties: the lower label
    side = np.zeros(n_groups, np.int64)  # 0 = rest, p = held-out part p (1-based)
    rng = np.random.default_rng(seed)
    for c in np.unique(group_label):
        gs = np.flatnonzero(group_label == c)
        gs = gs[rng.permutation(len(gs))]
        gs = gs[np.argsort(-size[gs], kind="stable")]  # largest first, shuffled among equal sizes
        target, count = size[gs].sum() * fractions, np.zeros(len(fractions))
        for g in gs:
            p = int(np.argmax(target - count))
            if count[p] + size[g] / 2 <= target[p]:
                side[g], count[p] = p + 1, count[p] + size[g]
        _cover_small_class(side, gs, size, len(fractions))
    for c in range(n_labels):  # a group of mixed labels may still leave a class without training images
        img_side = side[gid]
        if not ((img_side == 0) & (labels == c)).any():
            side[np.unique(gid[labels == c])] = 0
    img_side = side[gid]
    return [np.flatnonzero(img_side == p) for p in range(len(fractions) + 1)]


def _cover_small_class(side, gs, size, n_parts):
    """For one class's groups gs: one group in the rest, then one in each part while the rest keeps one."""
    def smallest(on):
        members = gs[side[gs] == on]
        return members[np.argmin(size[members])]

    if not (side[gs] == 0).any():
        side[smallest(max(range(1, n_parts + 1), key=lambda p: (side[gs] == p).sum()))] = 0
    for p in range(1, n_parts + 1):
        if not (side[gs] == p).any() and (side[gs] == 0).sum() >= 2:
            side[smallest(0)] = p


def split_records(records, fractions, seed):
    """[rest, part, ...] record lists; grouped by lesion where any record has a group."""
    labels = [r.label for r in records]
    groups = None
    if any(r.group is not None for r in records):
        groups = [r.group if r.group is not None else f"image:{r.image_id}" for r in records]
    return [[records[i] for i in idx] for idx in grouped_split(labels, groups, fractions, seed)]


def class_counts(records, n_classes) -> np.ndarray:
    """(K,) int: images per class."""
    return np.bincount(np.array([r.label for r in records], dtype=np.int64), minlength=n_classes)[:n_classes]


def class_weights(records, n_classes, power=1.0) -> torch.Tensor:
    """(K,) weights count**-power (1 = inverse frequency, 0.5 = its square root) normalised to mean 1 over the
    classes present; 0 for absent classes."""
    counts = class_counts(records, n_classes).astype(np.float64)
    w = np.zeros(n_classes)
    present = counts > 0
    w[present] = counts[present] ** -float(power)
    if present.any():
        w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


class BalancedSampler(torch.utils.data.WeightedRandomSampler):
    """Draws with replacement by per-image weights. set_epoch(e) reseeds with seed + e, so a resumed run draws
    the same order for an epoch as an uninterrupted one."""

    def __init__(self, weights, num_samples, seed):
        self.seed = seed
        super().__init__(weights, num_samples, replacement=True, generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch):
        self.generator.manual_seed(self.seed + epoch)


def balanced_sampler(records, n_classes, seed, power=1.0) -> torch.utils.data.WeightedRandomSampler:
    """len(records) draws per epoch; class c is drawn with probability proportional to count_c**(1 - power):
    power 1 = every class equally often, 0.5 = in proportion to the square root of its count."""
    counts = class_counts(records, n_classes).astype(np.float64)
    per_image = counts[[r.label for r in records]] ** -float(power)  # each class's images share the class's mass
    return BalancedSampler(torch.as_tensor(per_image, dtype=torch.double), len(records), seed)
