"""The built-in demo lesions: ISIC 2019 layout, determinism, caching, recovery, and class-typical looks."""
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

import common.demo_lesions as demo
from common.config import ConfigError
from common.demo_lesions import DEMO_CLASSES, demo_class_counts, draw_lesion, ensure_demo_dataset

SMALL = dict(n_images=24, width=64, height=48)


def _make(root, **kw):
    lines = []
    out = ensure_demo_dataset(root, log=lines.append, **{**SMALL, **kw})
    return out, lines


def _rows(root):
    with open(root / "ISIC_2019_Training_GroundTruth.csv", newline="") as f:
        return list(csv.reader(f))


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_layout_is_isic_2019(tmp_path):
    root, lines = _make(tmp_path / "demo")
    assert root == (tmp_path / "demo").resolve()
    assert len(lines) >= 1  # it said it was generating
    rows = _rows(root)
    assert rows[0] == ["image", *DEMO_CLASSES] == ["image", "MEL", "NV", "BCC", "BKL"]
    body = rows[1:]
    assert len(body) == 24
    labels = []
    for name, *onehot in body:
        assert re.fullmatch(r"ISIC_demo_\d{7}", name)  # no extension, as in ISIC's CSV
        assert set(onehot) <= {"1.0", "0.0"} and sum(float(v) for v in onehot) == 1.0
        labels.append(DEMO_CLASSES[[float(v) for v in onehot].index(1.0)])
        with Image.open(root / "ISIC_2019_Training_Input" / f"{name}.jpg") as im:
            assert im.format == "JPEG" and im.size == (64, 48) and im.mode == "RGB"
            im.load()
    assert set(labels) == set(DEMO_CLASSES)
    assert len(list((root / "ISIC_2019_Training_Input").iterdir())) == 24
    manifest = json.loads((root / "demo_manifest.json").read_text())
    assert (manifest["n_images"], manifest["seed"], manifest["width"], manifest["height"]) == (24, 0, 64, 48)
    assert manifest["counts"] == {c: labels.count(c) for c in DEMO_CLASSES}


def test_class_counts_are_imbalanced_like_isic():
    counts = demo_class_counts(600)
    assert sum(counts.values()) == 600
    assert max(counts, key=counts.get) == "NV" and counts["NV"] > 0.5 * 600
    assert counts["MEL"] > counts["BCC"] > counts["BKL"]
    for n in (4, 5, 7, 24):  # every class present once the set is big enough, and the total is exact
        c = demo_class_counts(n)
        assert sum(c.values()) == n and min(c.values()) >= 1
    assert sum(demo_class_counts(2).values()) == 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, _ = _make(tmp_path / "a", seed=3)
    b, _ = _make(tmp_path / "b", seed=3)
    c, _ = _make(tmp_path / "c", seed=4)
    csv_a = (a / "ISIC_2019_Training_GroundTruth.csv").read_bytes()
    assert csv_a == (b / "ISIC_2019_Training_GroundTruth.csv").read_bytes()
    for jpg in (a / "ISIC_2019_Training_Input").iterdir():
        assert jpg.read_bytes() == (b / "ISIC_2019_Training_Input" / jpg.name).read_bytes()
    first = "ISIC_demo_0000000.jpg"
    other_pixels = (c / "ISIC_2019_Training_Input" / first).read_bytes() != (
        a / "ISIC_2019_Training_Input" / first
    ).read_bytes()
    assert other_pixels or csv_a != (c / "ISIC_2019_Training_GroundTruth.csv").read_bytes()


def test_draw_lesion_is_deterministic_and_shaped():
    for cls in DEMO_CLASSES:
        x = draw_lesion(np.random.default_rng(11), cls, 37, 23)
        assert x.shape == (23, 37, 3) and x.dtype == np.uint8
        assert np.array_equal(x, draw_lesion(np.random.default_rng(11), cls, 37, 23))
        assert not np.array_equal(x, draw_lesion(np.random.default_rng(12), cls, 37, 23))
    with pytest.raises(ValueError, match="unknown demo class"):
        draw_lesion(np.random.default_rng(0), "DF", 32, 32)


def test_second_call_reuses_the_cached_set(tmp_path):
    root, _ = _make(tmp_path / "demo")
    before = _mtimes(root)
    again, lines = _make(tmp_path / "demo")
    assert again == root and lines == [] and _mtimes(root) == before
    # a different request replaces the set
    _, lines = _make(tmp_path / "demo", n_images=10)
    assert lines and len(_rows(root)) == 11 and len(list((root / "ISIC_2019_Training_Input").iterdir())) == 10


def test_recovers_from_an_interrupted_generation(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    real_draw, calls = demo.draw_lesion, []

    def dying_draw(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half way
        return real_draw(*args)

    monkeypatch.setattr(demo, "draw_lesion", dying_draw)
    with pytest.raises(KeyboardInterrupt):
        _make(root)
    assert not root.exists()  # nothing half-written where the dataset should be
    assert list(tmp_path.iterdir()) == []  # and its temporary folder is gone
    monkeypatch.setattr(demo, "draw_lesion", real_draw)

    # a kill -9 leaves a temporary sibling, and an old partial root without manifest
    stale = tmp_path / ".demo.999999999-tmpxyz"
    (stale / "ISIC_2019_Training_Input").mkdir(parents=True)
    (root / "ISIC_2019_Training_Input").mkdir(parents=True)
    (root / "ISIC_2019_Training_Input" / "ISIC_demo_0000000.jpg").write_bytes(b"partial")
    _, lines = _make(root)
    assert lines and not stale.exists()
    assert (root / "demo_manifest.json").exists() and len(_rows(root)) == 25
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    # a manifest that matches but a missing image also counts as incomplete
    (root / "ISIC_2019_Training_Input" / "ISIC_demo_0000003.jpg").unlink()
    _, lines = _make(root)
    assert lines and (root / "ISIC_2019_Training_Input" / "ISIC_demo_0000003.jpg").exists()


def test_refuses_to_replace_a_foreign_folder_and_bad_sizes(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a demo-lesion folder"):
        _make(root)
    assert (root / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="n_images"):
        _make(tmp_path / "x", n_images=0)
    with pytest.raises(ConfigError, match="width"):
        _make(tmp_path / "x", width=4)


def _centre_stats(cls, seed, n=16, w=96, h=72):
    """Per class: how much darker the centre is than the skin (median), and its share of bluish pixels."""
    dark, blue = [], []
    for i in range(n):
        x = draw_lesion(np.random.default_rng([seed, i]), cls, w, h).astype(np.float32)
        centre = x[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]  # mostly lesion: it sits near the middle
        dark.append(np.median(x.mean(2)) - centre.mean())  # most of the frame is skin
        wide = x[h // 6 : 5 * h // 6, w // 6 : 5 * w // 6]
        blue.append((wide[..., 2] > wide[..., 1] + 4).mean())
    return float(np.mean(dark)), float(np.mean(blue))


@pytest.mark.parametrize("seed", [1, 2])
def test_classes_differ_in_what_dermoscopy_looks_for(seed):
    mel, nv, bcc = (_centre_stats(c, seed) for c in ("MEL", "NV", "BCC"))
    # melanoma shows blue-grey/black zones (blue above green); a naevus is brown (blue below green)
    assert mel[1] > 0.01 and mel[1] > 4 * nv[1]
    # basal cell carcinoma carries little pigment: a naevus darkens the skin far more
    assert nv[0] > 10 and nv[0] > bcc[0] + 10
