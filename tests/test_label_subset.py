"""The seeded, class-stratified label subset: per-class shares, nesting across fractions, seeds, the no-label error."""
import math

import pytest

from common.config import ConfigError
from common.data.label_subset import label_subset, labels_kept, min_fraction
from common.data.layouts import Record

CLASSES = ["MEL", "NV", "BCC", "UNK"]  # UNK has no training image, as in ISIC 2019


def records(counts=(40, 100, 9)):
    out = []
    for c, n in enumerate(counts):
        out += [Record(f"{CLASSES[c]}_{i:03d}", c) for i in range(n)]
    return out[::2] + out[1::2]  # classes interleaved: order is not by class


def per_class(recs):
    return [sum(r.label == c for r in recs) for c in range(len(CLASSES))]


def test_each_class_keeps_its_rounded_share_and_the_rest_is_unlabeled():
    recs = records()
    labeled, unlabeled = label_subset(recs, CLASSES, 0.1, seed=0)
    assert per_class(labeled) == [4, 10, 1, 0]  # 9 x 0.1 = 0.9 rounds to 1
    assert sorted(labeled + unlabeled, key=lambda r: r.image_id) == sorted(recs, key=lambda r: r.image_id)
    assert not {r.image_id for r in labeled} & {r.image_id for r in unlabeled}
    order = {r.image_id: i for i, r in enumerate(recs)}
    assert [order[r.image_id] for r in labeled] == sorted(order[r.image_id] for r in labeled)  # input order kept
    assert label_subset(recs, CLASSES, 1.0, seed=3) == (recs, [])
    assert labels_kept(9, 0.5) == 5 and labels_kept(10, 0.25) == 3 and labels_kept(3, 1.0) == 3


def test_seeded_and_nested_across_fractions():
    recs = records()
    a, _ = label_subset(recs, CLASSES, 0.25, seed=1)
    assert label_subset(recs, CLASSES, 0.25, seed=1)[0] == a  # deterministic
    assert label_subset(recs, CLASSES, 0.25, seed=2)[0] != a  # another seed draws other images
    small, _ = label_subset(recs, CLASSES, 0.1, seed=1)
    big, _ = label_subset(recs, CLASSES, 0.5, seed=1)
    ids = lambda rs: {r.image_id for r in rs}  # noqa: E731
    assert ids(small) < ids(a) < ids(big)  # a smaller fraction's labels are among a larger one's


def test_a_fraction_that_leaves_a_class_without_labels_names_it():
    with pytest.raises(ConfigError) as err:
        label_subset(records(), CLASSES, 0.05, seed=0)  # BCC: 9 x 0.05 = 0.45 rounds to 0
    msg = str(err.value)
    assert "--LABEL_FRACTION=0.05" in msg and "class BCC (9 training images)" in msg and "\n" not in msg
    assert "LABEL_FRACTION >= 0.0556 " in msg and "MEL" not in msg and "UNK" not in msg
    label_subset(records(), CLASSES, 0.0556, seed=0)  # the suggested fraction works
    for n in (7, 9, 13, 143):  # rounded up, never below what one label needs
        assert labels_kept(n, math.ceil(min_fraction(n) * 1e4) / 1e4) == 1
    for bad in (0, 1.5, -0.1, True, "x"):
        with pytest.raises(ConfigError, match="LABEL_FRACTION"):
            label_subset(records(), CLASSES, bad, seed=0)
