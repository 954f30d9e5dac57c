"""Labeled layouts, splits, class balance, the torch Dataset and the resized copy, on tiny fixtures."""
import csv
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.datasets import load_labeled, split_table
from common.data.layouts import DERMAMNIST_CLASSES, DatasetError, Record, detect_layout
from common.data.loaders import ImageDataset, eval_transform, prepare_resized, train_transform
from common.data.splits import balanced_sampler, class_counts, class_weights, grouped_split

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _img(path, color=(200, 120, 90), size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _isic(root, per_class=(6, 4, 3), header=("image", "MEL", "NV", "BCC", "UNK"), nested=True, skip_files=()):
    """An ISIC 2019 layout; UNK (last column) never 1. Images in a nested same-name folder, as in the zip."""
    folder = root / "ISIC_2019_Training_Input"
    if nested:
        folder = folder / "ISIC_2019_Training_Input"
    rows, n = [], 0
    for k, count in enumerate(per_class):
        for _ in range(count):
            name = f"ISIC_{n:07d}"
            onehot = ["0.0"] * (len(header) - 1)
            onehot[k] = "1.0"
            rows.append([name] + onehot)
            if name not in skip_files:
                _img(folder / f"{name}.{'JPG' if n % 2 else 'jpg'}", (40 * k, 90, 90))  # extension case varies
            n += 1
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "ISIC_2019_Training_GroundTruth.csv", "w", newline="") as f:
        csv.writer(f).writerows([list(header)] + rows)
    return root


def _ham(root):
    """HAM10000: lesion HAM_0 has 4 images; dx classes with several lesions each."""
    rows, n = [], 0
    single = ["nv"] * 6 + ["mel"] * 5 + ["bkl"] * 5
    lesions = [("HAM_0", "nv", 4)] + [(f"HAM_{i}", dx, 1) for i, dx in enumerate(single, 1)]
    for lesion, dx, count in lesions:
        for _ in range(count):
            image_id = f"ISIC_{n:07d}"
            part = "HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2"
            _img(root / part / f"{image_id}.jpg", (n * 7 % 255, 80, 80))
            rows.append([lesion, image_id, dx, "histo", "50.0", "male", "back"])
            n += 1
    with open(root / "HAM10000_metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]] + rows)
    return root


def _imagefolder(root, train=(("benign", 3), ("malignant", 2)), test=(("benign", 2), ("malignant", 1)),
                 held=("test",)):
    """train/ and each folder named in `held` (test/, val/) with the class counts of `test`."""
    for split, spec in (("train", train),) + tuple((h, test) for h in held):
        for cls, count in spec:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _img(root / split / cls / f"{i}.png")
    return root


def _ids(records):
    return {r.image_id for r in records}


def _assert_disjoint(data):
    """No image in two splits, none lost; with lesion groups, no lesion in two splits."""
    ids = [_ids(data.train), _ids(data.val), _ids(data.test)]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(data.train) + len(data.val) + len(data.test)  # ids unique within a split too
    groups = [{r.group for r in getattr(data, s) if r.group is not None} for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def _npz(path, gray, n_train=14, n_val=7, size=8, n_classes=7):
    shape = (size, size) if gray else (size, size, 3)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n,) + shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------------------- layouts


def test_isic_layout_keeps_unk_and_splits_stratified(tmp_path):
    root = _isic(tmp_path / "isic")
    assert detect_layout(root) == "isic2019"
    data = load_labeled(root, val_fraction=0.34, seed=1, test_fraction=0.2)
    assert data.layout == "isic2019" and data.carved == ("val", "test")
    assert data.classes == ["MEL", "NV", "BCC", "UNK"]  # CSV order, UNK kept although never 1
    assert len(data.train) + len(data.val) + len(data.test) == 13 and not data.missing
    assert all(r.path.exists() and r.path.stem == r.image_id for r in data.train + data.val + data.test)
    _assert_disjoint(data)
    tr, va, te = (class_counts(getattr(data, s), 4) for s in ("train", "val", "test"))
    assert list(tr + va + te) == [6, 4, 3, 0]
    assert list(va[:3]) == [2, 1, 1]  # round(n * 0.34) per class
    assert list(te[:3]) == [1, 1, 1]  # round(n * 0.2) per class
    again = load_labeled(root, val_fraction=0.34, seed=1, test_fraction=0.2)
    assert [r.image_id for r in again.val] == [r.image_id for r in data.val]  # same seed, same split
    assert [r.image_id for r in again.test] == [r.image_id for r in data.test]
    other = [_ids(load_labeled(root, val_fraction=0.34, seed=s).test) for s in range(2, 6)]
    assert any(o != _ids(data.test) for o in other)  # the seed matters


def test_isic_demo_header_and_explicit_csv(tmp_path):
    root = _isic(tmp_path / "demo", per_class=(3, 3, 2, 2), header=("image", "MEL", "NV", "BCC", "BKL"), nested=False)
    data = load_labeled(root / "ISIC_2019_Training_GroundTruth.csv")
    assert data.classes == ["MEL", "NV", "BCC", "BKL"]
    data = load_labeled(root, layout="isic2019", csv_path=root / "ISIC_2019_Training_GroundTruth.csv")
    assert len(data.train) + len(data.val) + len(data.test) == 10


def test_isic_metadata_lesion_ids_group_the_split(tmp_path):
    root = _isic(tmp_path / "isic", per_class=(8, 8, 8), header=("image", "MEL", "NV", "BCC"))
    rows = [["image", "age_approx", "lesion_id"]] + [[f"ISIC_{i:07d}", "40", f"L{i // 2}"] for i in range(24)]
    with open(root / "ISIC_2019_Training_Metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    data = load_labeled(root, seed=0)
    _assert_disjoint(data)
    assert all(r.group is not None for r in data.train + data.val + data.test)
    assert detect_layout(root) == "isic2019"


def test_ham10000_split_grouped_by_lesion(tmp_path):
    root = _ham(tmp_path / "ham")
    assert detect_layout(root) == "ham10000"
    for seed in range(4):
        data = load_labeled(root, val_fraction=0.25, seed=seed, test_fraction=0.2)
        assert data.classes == ["nv", "mel", "bkl"]  # HAM10000's own order, filtered to those present
        _assert_disjoint(data)
        for split in (data.train, data.val, data.test):
            assert all(class_counts(split, 3) >= 1)  # every class on every side
        lesion0 = [s for s in ("train", "val", "test") if any(r.group == "HAM_0" for r in getattr(data, s))]
        assert len(lesion0) == 1  # its 4 images on one side
    same = load_labeled(root, val_fraction=0.25, seed=3, test_fraction=0.2)
    assert [r.image_id for r in same.test] == [r.image_id for r in data.test]


def test_imagefolder_train_and_test_carves_validation_from_train(tmp_path):
    root = _imagefolder(tmp_path / "if", train=(("benign", 10), ("malignant", 5)))
    assert detect_layout(root) == "imagefolder"
    data = load_labeled(root, val_fraction=0.2)
    assert data.classes == ["benign", "malignant"] and data.carved == ("val",)
    assert all(r.image_id.startswith("test/") for r in data.test)  # test/ stays the test split, whole
    assert class_counts(data.test, 2).tolist() == [2, 1]
    assert all(r.image_id.startswith("train/") for r in data.train + data.val)
    assert class_counts(data.val, 2).tolist() == [2, 1]  # round(n * 0.2) of train/ per class
    assert class_counts(data.train, 2).tolist() == [8, 4]
    _assert_disjoint(data)


def test_imagefolder_train_and_val_carves_test_from_train(tmp_path):
    root = _imagefolder(tmp_path / "if", train=(("benign", 10), ("malignant", 5)), held=("val",))
    data = load_labeled(root, test_fraction=0.4)
    assert data.carved == ("test",)
    assert all(r.image_id.startswith("val/") for r in data.val) and len(data.val) == 3
    assert all(r.image_id.startswith("train/") for r in data.test)
    assert class_counts(data.test, 2).tolist() == [4, 2]
    _assert_disjoint(data)


def test_imagefolder_with_val_and_test_keeps_both(tmp_path):
    root = _imagefolder(tmp_path / "if", held=("val", "test"))
    data = load_labeled(root)
    assert data.carved == ()
    assert [len(data.train), len(data.val), len(data.test)] == [5, 3, 3]
    assert data.val[0].image_id == "val/benign/0.png" and data.test[0].image_id == "test/benign/0.png"
    _assert_disjoint(data)


@pytest.mark.parametrize("gray", [True, False])
def test_dermamnist_npz(tmp_path, gray):
    path = _npz(tmp_path / "dermamnist.npz", gray)
    assert detect_layout(path) == "dermamnist" and detect_layout(tmp_path) == "dermamnist"
    data = load_labeled(tmp_path)
    assert data.classes == list(DERMAMNIST_CLASSES)
    assert data.arrays["train"].shape == (14, 8, 8, 3) and data.arrays["val"].dtype == np.uint8
    assert (len(data.train), len(data.val), len(data.test)) == (14, 7, 3) and data.carved == ()  # MedMNIST's own
    _assert_disjoint(data)
    r = data.val[3]
    assert (r.image_id, r.label, r.index, r.path) == ("val_3", 3, 3, None)
    ds = ImageDataset(data.val, eval_transform(16, MEAN, STD), arrays=data.arrays)
    x, y, i = ds[3]
    assert x.shape == (3, 16, 16) and (y, i) == (3, 3)
    assert [r.image_id for r in data.test] == ["test_0", "test_1", "test_2"]
    x, y, i = ImageDataset(data.test, eval_transform(16, MEAN, STD), arrays=data.arrays)[2]
    assert torch.equal(x, eval_transform(16, MEAN, STD)(Image.fromarray(data.arrays["test"][2]))) and y == 2


def test_npz_without_test_arrays_carves_test_from_train(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", train_images=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
             train_labels=np.arange(20) % 2, val_images=np.zeros((4, 8, 8, 3), np.uint8), val_labels=np.arange(4) % 2)
    data = load_labeled(tmp_path / "d.npz", test_fraction=0.2)
    assert data.carved == ("test",) and class_counts(data.test, 2).tolist() == [2, 2]
    assert all(r.image_id.startswith("train_") for r in data.test) and len(data.train) == 16
    _assert_disjoint(data)


def test_npz_with_other_class_count_and_missing_keys(tmp_path):
    data = load_labeled(_npz(tmp_path / "a.npz", False, n_classes=3))
    assert data.classes == ["class_0", "class_1", "class_2"]
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "x.npz", train_images=np.zeros((2, 4, 4), np.uint8),
             train_labels=np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match="val_images, val_labels"):
        load_labeled(tmp_path / "bad")


# ----------------------------------------------------------------------------------------- split fractions


def _lesions(seed=0, per_class=(90, 40, 12), max_size=5):
    """labels and lesion ids: per class that many lesions of 1..max_size images each."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for c, n in enumerate(per_class):
        for k in range(n):
            size = int(rng.integers(1, max_size + 1))
            labels += [c] * size
            groups += [f"L{c}_{k}"] * size
    return np.array(labels), np.array(groups)


@pytest.mark.parametrize("fractions", [0.2, 0.3, 0.4, (0.2, 0.2), (0.3, 0.15)])
def test_grouped_split_honours_fractions(fractions):
    labels, groups = _lesions()
    parts = grouped_split(labels, groups, fractions, seed=7)
    fractions = np.atleast_1d(fractions)
    assert len(parts) == len(fractions) + 1
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))  # every image once
    sides = [set(groups[p]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(sides) for b in sides[i + 1:])  # a lesion on one side
    largest = np.bincount(np.unique(groups, return_inverse=True)[1]).max()
    for p, f in zip(parts[1:], fractions):
        assert abs(len(p) - f * len(labels)) <= largest  # the whole: within one group's size
        for c in range(3):  # and every class
            n_c = (labels == c).sum()
            assert abs((labels[p] == c).sum() - f * n_c) <= largest, (f, c)
    again = grouped_split(labels, groups, tuple(fractions), seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))  # deterministic
    other = grouped_split(labels, groups, tuple(fractions), seed=8)
    assert not np.array_equal(parts[1], other[1])


def test_split_of_single_images_rounds_per_class():
    labels = np.repeat([0, 1, 2], [50, 11, 2])
    tr, va, te = grouped_split(labels, None, (0.3, 0.2), seed=0)
    counts = [np.bincount(labels[i], minlength=3).tolist() for i in (tr, va, te)]
    assert counts[1][:2] == [15, 3] and counts[2][:2] == [10, 2]  # round(n * f), halves up
    assert counts[0][2] == 1 and counts[1][2] == 1 and counts[2][2] == 0  # 2 images: training keeps one


def test_fractions_are_checked(tmp_path):
    root = _isic(tmp_path / "isic")
    for kwargs, msg in (({"val_fraction": 0.0}, "VAL_FRACTION"), ({"test_fraction": 1.0}, "TEST_FRACTION"),
                        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leaves no training")):
        with pytest.raises(DatasetError, match=msg):
            load_labeled(root, **kwargs)


# ----------------------------------------------------------------------------------------- bad datasets


def test_missing_data_dir(tmp_path):
    with pytest.raises(DatasetError, match=r"DATA_DIR .*nope does not exist"):
        load_labeled(tmp_path / "nope")


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no images"):
        load_labeled(tmp_path / "empty")


def test_isic_without_any_image_files(tmp_path):
    root = _isic(tmp_path / "isic", per_class=(2, 2), header=("image", "MEL", "NV"),
                 skip_files={f"ISIC_{i:07d}" for i in range(4)})
    with pytest.raises(DatasetError, match="no image files under"):
        load_labeled(root)


def test_isic_renamed_image_column(tmp_path):
    root = _isic(tmp_path / "isic", header=("img", "MEL", "NV", "BCC"))
    with pytest.raises(DatasetError) as e:
        load_labeled(root)
    msg = str(e.value)
    assert "ISIC_2019_Training_GroundTruth.csv" in msg and "'image'" in msg and "img, MEL, NV, BCC" in msg


def test_isic_row_not_one_hot(tmp_path):
    root = _isic(tmp_path / "isic")
    lines = (root / "ISIC_2019_Training_GroundTruth.csv").read_text().splitlines()
    lines[3] = "ISIC_0000002,1.0,1.0,0.0,0.0"
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 4 \(ISIC_0000002\): expected exactly one 1.0"):
        load_labeled(root)


def test_isic_non_numeric_class_column(tmp_path):
    root = _isic(tmp_path / "isic", header=("image", "MEL", "NV", "BCC"))
    text = (root / "ISIC_2019_Training_GroundTruth.csv").read_text().replace("ISIC_0000001,1.0", "ISIC_0000001,yes")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text(text)
    with pytest.raises(DatasetError, match="column MEL holds 'yes'"):
        load_labeled(root)


def test_isic_missing_images_stop_unless_allowed(tmp_path):
    gone = {"ISIC_0000001", "ISIC_0000007"}
    root = _isic(tmp_path / "isic", skip_files=gone)
    with pytest.raises(DatasetError) as e:
        load_labeled(root)
    msg = str(e.value)
    assert "2 of 13 images listed in" in msg and "ISIC_0000001" in msg and "ALLOW_MISSING=True" in msg
    data = load_labeled(root, allow_missing=True)
    assert sorted(data.missing) == sorted(gone)
    assert len(data.train) + len(data.val) + len(data.test) == 11
    assert not gone & _ids(data.train + data.val + data.test)


def test_class_without_training_images(tmp_path):
    root = _imagefolder(tmp_path / "if", train=(("benign", 3), ("malignant", 0)),
                        test=(("benign", 1), ("malignant", 2)))
    with pytest.raises(DatasetError, match=r"class 'malignant' has no training images \(2 in test\)"):
        load_labeled(root)
    for held in (("test",), ("val",), ("val", "test")):
        root = _imagefolder(tmp_path / f"odd_{'_'.join(held)}", test=(("benign", 1), ("odd", 1)), held=held)
        with pytest.raises(DatasetError, match="odd"):
            load_labeled(root)


def test_unlabeled_folder_is_refused(tmp_path):
    _img(tmp_path / "flat" / "a.jpg")
    with pytest.raises(DatasetError, match="no labels"):
        detect_layout(tmp_path / "flat")


# ----------------------------------------------------------------------------------------- split file, balance


def test_split_table_lists_every_image_once_with_its_split(tmp_path):
    data = load_labeled(_ham(tmp_path / "ham"), seed=0)
    rows = list(csv.DictReader(io.StringIO(split_table(data))))
    assert list(rows[0]) == ["image", "split", "label", "class", "group"]
    assert len(rows) == len(data.train) + len(data.val) + len(data.test)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    by_id = {r["image"]: r for r in rows}
    for split, records in (("train", data.train), ("val", data.val), ("test", data.test)):
        for rec in records:
            row = by_id[rec.image_id]
            assert (row["split"], int(row["label"]), row["class"], row["group"]) == (
                split, rec.label, data.classes[rec.label], rec.group)


def test_class_weights_from_counts():
    records = [Record(str(i), y) for i, y in enumerate([0] * 6 + [1] * 2 + [3] * 4)]  # class 2 absent
    assert class_counts(records, 4).tolist() == [6, 2, 0, 4]
    w = class_weights(records, 4)
    expected = np.array([1 / 6, 1 / 2, 0, 1 / 4])
    expected[[0, 1, 3]] /= expected[[0, 1, 3]].mean()
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float32))
    assert w[2] == 0 and abs(float(w[[0, 1, 3]].mean()) - 1) < 1e-6


def test_both_splits_the_correction_between_sampler_and_loss():
    """CLASS_BALANCE='both': draws and loss weights each take the square root of 1/count, so a class's total
    weight (its images x draw weight x loss weight) is the same for every class, as with either alone."""
    counts = [4522, 12875, 3323, 867, 2624, 239, 253, 628]  # ISIC 2019
    records = [Record(str(i), y) for i, y in enumerate(np.repeat(np.arange(8), counts))]
    w = class_weights(records, 8, power=0.5).numpy()
    assert w[5] / w[1] == pytest.approx((12875 / 239) ** 0.5, rel=1e-5)  # DF vs NV: 7.3x, not 54x
    sampler = balanced_sampler(records, 8, seed=0, power=0.5)
    per_class_draw = np.bincount([r.label for r in records], weights=sampler.weights.numpy(), minlength=8)
    assert np.allclose(per_class_draw / per_class_draw.sum(), np.sqrt(counts) / np.sqrt(counts).sum())
    total = per_class_draw * w  # share of draws x loss weight
    assert np.allclose(total, total[0])
    full = class_weights(records, 8).numpy()  # 'loss' alone: DF weighs 54x NV
    assert full[5] / full[1] == pytest.approx(12875 / 239, rel=1e-5)


def test_balanced_sampler_draws_classes_equally():
    records = [Record(str(i), y) for i, y in enumerate([0] * 3 + [1] * 12 + [2] * 45)]
    sampler = balanced_sampler(records, 3, seed=0)
    assert len(sampler) == 60
    draws = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        draws += [records[i].label for i in sampler]
    shares = np.bincount(draws, minlength=3) / len(draws)
    assert np.all(np.abs(shares - 1 / 3) < 0.08), shares
    again = balanced_sampler(records, 3, seed=0)
    again.set_epoch(5)
    sampler.set_epoch(5)
    assert list(again) == list(sampler)  # seeded per epoch


# ----------------------------------------------------------------------------------------- torch dataset


def test_image_dataset_files_and_bad_file(tmp_path):
    data = load_labeled(_isic(tmp_path / "isic", nested=False))
    records = data.train[:3]
    ds = ImageDataset(records, train_transform(24, MEAN, STD), min_side=24, skip_log=tmp_path / "skips.tsv")
    x, y, i = ds[1]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and (y, i) == (records[1].label, 1)
    records[1].path.write_bytes(b"not an image")  # broken after loading: must not crash training
    x, y, i = ds[1]
    assert i == 2 and y == records[2].label and x.shape == (3, 24, 24)
    assert [p for p, _ in ds.skipped] == [records[1].path]
    ds = ImageDataset(records, eval_transform(24, MEAN, STD), skip_log=tmp_path / "worker_skips.tsv")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    xb, yb, ib = next(iter(loader))
    assert xb.shape == (3, 3, 24, 24)
    assert [p for p, _ in loader.dataset.skipped] == [records[1].path]  # seen from a worker process


def test_transforms_shapes():
    im = Image.new("RGB", (60, 40), (10, 200, 30))
    assert train_transform(32, MEAN, STD)(im).shape == (3, 32, 32)
    x = eval_transform(32, MEAN, STD)(im)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x[1], torch.full((32, 32), (200 / 255 - 0.5) / 0.25), atol=1e-5)


def test_prepare_resized_reuses_copies_and_skips_corrupt(tmp_path):
    root = _isic(tmp_path / "isic", per_class=(3, 3), header=("image", "MEL", "NV"), nested=False)
    data = load_labeled(root)
    records = data.train + data.val
    for r in records:
        _img(r.path, size=(80, 60))
    bad = records[2].path
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cache = tmp_path / "cache"
    out, skipped = prepare_resized(records, 30, cache, workers=2, progress=False)
    assert [p for p, _ in skipped] == [bad] and len(out) == len(records) - 1
    assert all(Image.open(r.path).size == (40, 30) for r in out)  # short side 30, aspect kept
    assert [r.image_id for r in out] == [r.image_id for r in records if r.path != bad]
    before = {r.path: os.stat(r.path).st_mtime_ns for r in out}
    out2, skipped2 = prepare_resized(records, 30, cache, workers=1, progress=False)
    assert [r.path for r in out2] == [r.path for r in out] and skipped2 == skipped
    assert {r.path: os.stat(r.path).st_mtime_ns for r in out2} == before  # reused, not rewritten
    _img(records[0].path, size=(90, 60))  # a changed source is redone
    out3, _ = prepare_resized(records, 30, cache, workers=1, progress=False)
    assert Image.open(out3[0].path).size == (45, 30)
    x, y, i = ImageDataset(out3, eval_transform(24, MEAN, STD))[0]
    assert x.shape == (3, 24, 24) and y == records[0].label


def test_transforms_uint8_output_for_device_side_normalisation():
    im = Image.new("RGB", (60, 40), (10, 200, 30))
    x = train_transform(32, MEAN, STD, normalize=False)(im)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert eval_transform(32, MEAN, STD, normalize=False)(im)[1].eq(200).all()


def test_benchmark_loader_smoke(tmp_path, capsys):
    import benchmark_loader

    root = _isic(tmp_path / "isic", per_class=(3, 3), header=("image", "MEL", "NV"), nested=False)
    summary = benchmark_loader.main([f"--DATA_DIR={root}", f"--BENCH_DIR={tmp_path / 'bench'}", "--MODEL_ROW=False",
                                     "--NUM_WORKERS=0", "--MIN_SECONDS=0.01", "--ROUNDS=1", "--IMAGE_SIZE=16",
                                     "--BATCH_SIZE=2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == summary
    assert summary["n_images"] == 6 and summary["model_img_s"] is None
    assert all(summary[k] > 0 for k in ("full_img_s", "full_draft_img_s", "resized_img_s", "resized_draft_img_s"))
