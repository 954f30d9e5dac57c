"""The built-in demo lesions: ISIC 2019 layout, class counts, determinism, caching, recovery, and class-typical looks."""
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

import common.data.demo.dataset as demo
from common.config import ConfigError
from common.data.demo.classes import DEMO_CLASSES, draw_lesion
from common.data.demo.dataset import DEMO_MIN_PER_CLASS, demo_class_counts, ensure_demo_dataset

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
    assert rows[0] == ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]  # ISIC 2019's header
    assert rows[0][1:-1] == list(DEMO_CLASSES)
    body = rows[1:]
    assert len(body) == 24
    labels = []
    for name, *onehot, unk in body:
        assert re.fullmatch(r"ISIC_demo_\d{7}", name)  # no extension, as in ISIC's CSV
        assert set(onehot) <= {"1.0", "0.0"} and sum(float(v) for v in onehot) == 1.0
        assert unk == "0.0"  # as in ISIC 2019's training CSV: UNK is never the label
        labels.append(DEMO_CLASSES[[float(v) for v in onehot].index(1.0)])
        with Image.open(root / "ISIC_2019_Training_Input" / f"{name}.jpg") as im:
            assert im.format == "JPEG" and im.size == (64, 48) and im.mode == "RGB"
            im.load()
    assert set(labels) == set(DEMO_CLASSES)
    assert len(list((root / "ISIC_2019_Training_Input").iterdir())) == 24
    manifest = json.loads((root / "demo_manifest.json").read_text())
    assert (manifest["n_images"], manifest["seed"], manifest["width"], manifest["height"]) == (24, 0, 64, 48)
    assert manifest["counts"] == {c: labels.count(c) for c in DEMO_CLASSES}


def test_class_counts_are_imbalanced_like_isic_with_a_floor():
    counts = demo_class_counts(720)
    assert counts == {"MEL": 116, "NV": 331, "BCC": 85, "AK": 30, "BKL": 68, "DF": 30, "VASC": 30, "SCC": 30}
    # the big four keep ISIC 2019's ratios (4522/12875/3323/2624) to within rounding
    isic = np.array([4522, 12875, 3323, 2624])
    big = np.array([counts[c] for c in ("MEL", "NV", "BCC", "BKL")])
    assert np.allclose(big / big.sum(), isic / isic.sum(), atol=0.002)
    for n in (600, 800, 2000):
        c = demo_class_counts(n)
        assert sum(c.values()) == n and min(c.values()) == DEMO_MIN_PER_CLASS
        assert max(c, key=c.get) == "NV" and c["MEL"] > c["BCC"] > c["BKL"] > DEMO_MIN_PER_CLASS
    c = demo_class_counts(3000)  # big enough that AK's ISIC share clears the floor: ISIC order returns
    assert c["AK"] > c["SCC"] > c["VASC"] == c["DF"] == DEMO_MIN_PER_CLASS
    for n in (8, 9, 15, 24, 100):  # small sets: every class present, the total exact
        c = demo_class_counts(n)
        assert sum(c.values()) == n and min(c.values()) >= n // len(DEMO_CLASSES) >= 1
    assert sum(demo_class_counts(3).values()) == 3 and demo_class_counts(0) == dict.fromkeys(DEMO_CLASSES, 0)


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
        draw_lesion(np.random.default_rng(0), "UNK", 32, 32)


def test_second_call_reuses_the_cached_set(tmp_path):
    root, _ = _make(tmp_path / "demo")
    before = _mtimes(root)
    again, lines = _make(tmp_path / "demo")
    assert again == root and lines == [] and _mtimes(root) == before
    # a different request replaces the set
    _, lines = _make(tmp_path / "demo", n_images=10)
    assert lines and len(_rows(root)) == 11 and len(list((root / "ISIC_2019_Training_Input").iterdir())) == 10


def test_a_new_drawing_version_renews_the_cache(tmp_path, monkeypatch):
    root, _ = _make(tmp_path / "demo", n_images=8)
    old = (root / "ISIC_2019_Training_Input" / "ISIC_demo_0000000.jpg").read_bytes()
    monkeypatch.setattr(demo, "DEMO_VERSION", demo.DEMO_VERSION + 1)  # as after a change to the drawing
    real_draw = demo.draw_lesion
    monkeypatch.setattr(demo, "draw_lesion", lambda rng, *a: 255 - real_draw(rng, *a))  # ... that changes pixels
    _, lines = _make(root, n_images=8)
    assert lines  # regenerated, not reused
    assert json.loads((root / "demo_manifest.json").read_text())["version"] == demo.DEMO_VERSION
    assert (root / "ISIC_2019_Training_Input" / "ISIC_demo_0000000.jpg").read_bytes() != old
    _, lines = _make(root, n_images=8)
    assert lines == []  # and the renewed set is reused from then on


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


def _cue_stats(cls, seed, n=16, w=96, h=72):
    """Mean over n images of class cls: how much darker the centre is than the skin (median luminance), the
    share of whitish pixels (well above the skin's light end), the share of bluish pixels (B > G), and centre
    minus ring luminance."""
    out = []
    for i in range(n):
        x = draw_lesion(np.random.default_rng([seed, i]), cls, w, h).astype(np.float32)
        centre = x[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]  # mostly lesion: it sits near the middle
        ring = np.concatenate([x[h // 6 : h // 3, w // 4 : 3 * w // 4], x[2 * h // 3 : 5 * h // 6, w // 4 : 3 * w // 4]])
        wide = x[h // 6 : 5 * h // 6, w // 6 : 5 * w // 6]
        dark = np.median(x.mean(2)) - centre.mean()  # most of the frame is skin
        white = (wide.min(2) > np.percentile(x.min(2), 90) + 15).mean()
        blue = (wide[..., 2] > wide[..., 1] + 4).mean()
        out.append([dark, white, blue, centre.mean() - ring.mean()])
    return dict(zip(("dark", "white", "blue", "centre_vs_ring"), np.mean(out, 0)))


@pytest.mark.parametrize("seed", [1, 2])
def test_classes_differ_in_what_dermoscopy_looks_for(seed):
    st = {c: _cue_stats(c, seed) for c in DEMO_CLASSES}
    # naevi, melanomas and keratoses carry pigment; BCC, AK and SCC are mostly pink, translucent or scaly
    assert min(st[c]["dark"] for c in ("MEL", "NV", "BKL")) > max(st[c]["dark"] for c in ("BCC", "AK", "SCC")) + 8
    # melanomas are darker than naevi on average (more and darker pigment, black and blue-grey zones)
    assert st["MEL"]["dark"] > st["NV"]["dark"] + 8
    # AK's scale and SCC's keratin are white-yellow; a naevus has next to no white
    assert min(st["AK"]["white"], st["SCC"]["white"]) > 4 * max(st["NV"]["white"], 0.005)
    # a vascular lesion's purple lacunae put blue above green; brown lesions almost never do
    assert st["VASC"]["blue"] > 0.03 and st["VASC"]["blue"] > 5 * max(st["NV"]["blue"], st["BKL"]["blue"], 0.002)
    # a dermatofibroma's white scar-like centre: its centre is light against its ring, a naevus's dark
    assert st["DF"]["centre_vs_ring"] > st["NV"]["centre_vs_ring"] + 10


def test_a_balanced_set_has_every_class_equally_and_is_its_own_dataset(tmp_path):
    """The proxy study's labeled set: n // 8 of every class; an imbalanced set in the same folder is replaced."""
    import csv as _csv

    from common.data.demo.dataset import balanced_class_counts

    assert balanced_class_counts(18) == {c: 3 if i < 2 else 2 for i, c in enumerate(DEMO_CLASSES)}
    root = ensure_demo_dataset(tmp_path / "d", n_images=16, width=32, height=24, log=lambda *_: None, balanced=True)
    with open(root / "ISIC_2019_Training_GroundTruth.csv") as f:
        rows = list(_csv.DictReader(f))
    assert [sum(float(r[c]) for r in rows) for c in DEMO_CLASSES] == [2.0] * 8
    assert json.loads((root / "demo_manifest.json").read_text())["balanced"] is True
    drawn = []
    ensure_demo_dataset(root, n_images=16, width=32, height=24, log=drawn.append, balanced=True)
    assert drawn == []  # the same balanced set: kept
    ensure_demo_dataset(root, n_images=16, width=32, height=24, log=drawn.append)  # the ISIC-like set: drawn anew
    assert drawn and "balanced" not in json.loads((root / "demo_manifest.json").read_text())


# One lesion per class (seed [0, i], 96x72 px): the next number its random stream gives after the drawing (how many
# draws of which kind it took), and the RGB means of its four quadrants (top left, top right, bottom left, bottom
# right). Means, not a hash of the pixels: numpy's vectorised exp and arctan2 differ in the last bits between CPUs
# (AVX-512 or not), which can move a few pixels by one; that moves a quadrant's mean by about 0.003, while the
# smallest change of the drawing tried (VESSEL_RED's red +8) moved one by 0.023.
PINNED = {
    "MEL": (1703143152, (146.13, 103.62, 88.10, 159.88, 115.69, 99.94, 134.51, 93.39, 78.66, 149.43, 105.96, 90.95)),
    "NV": (2008368321, (229.26, 158.96, 145.97, 218.89, 151.08, 138.60, 223.39, 153.98, 140.91, 224.15, 154.79, 141.78)),
    "BCC": (1158724363, (207.28, 152.30, 136.16, 216.11, 159.03, 142.27, 211.17, 161.16, 143.95, 216.25, 160.60, 143.48)),
    "AK": (87738758, (210.83, 166.45, 126.40, 218.65, 163.82, 124.48, 206.71, 158.99, 121.33, 209.28, 161.33, 123.25)),
    "BKL": (1829284612, (160.64, 127.12, 101.21, 157.57, 129.81, 103.12, 163.18, 118.16, 93.68, 143.92, 115.45, 90.46)),
    "DF": (468787568, (141.06, 102.14, 83.44, 149.41, 114.77, 94.00, 146.07, 107.84, 85.61, 154.86, 116.91, 93.21)),
    "VASC": (2123630139, (161.57, 104.64, 94.03, 163.43, 102.20, 91.98, 164.78, 106.24, 97.19, 163.55, 101.14, 92.95)),
    "SCC": (1661450269, (143.62, 89.68, 74.27, 161.29, 100.87, 82.94, 151.78, 94.89, 78.56, 167.27, 103.06, 85.00)),
}
PINNED_TOLERANCE = 0.02  # of a quadrant's mean (0-255): room for last-bit differences, not for a changed drawing


def test_the_drawing_is_pinned():
    """A change to the drawing fails here. If it is meant: bump DEMO_VERSION (cached demo folders are then drawn
    anew) and paste the new values from the failure message into PINNED."""
    got, changed = {}, []
    for i, cls in enumerate(DEMO_CLASSES):
        rng = np.random.default_rng([0, i])
        quadrants = draw_lesion(rng, cls, 96, 72).reshape(2, 36, 2, 48, 3).mean((1, 3)).ravel()  # (12,)
        got[cls] = (int(rng.integers(2**31)), tuple(round(float(v), 2) for v in quadrants))
        next_draw, means = PINNED[cls]
        if got[cls][0] != next_draw or np.abs(quadrants - np.array(means)).max() > PINNED_TOLERANCE:
            changed.append(cls)
    assert not changed, f"the demo lesions of {changed} changed; new values: {got}"
