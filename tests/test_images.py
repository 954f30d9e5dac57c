"""Tests for common/data/images.py: every image kind loads or is skipped with a reason; the uint8 cache is reused."""
import csv
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from common.data import images
from common.data.images import (
    BadImage,
    build_cache,
    cache_path_for,
    list_images,
    load_resized,
    open_rgb,
    skipped_summary,
    write_skipped,
)


def _noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _two_halves(w, h):
    """Left half red, right half blue: shows which way an image was rotated."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(a, "RGB")


def _png_claiming(w, h):
    """A real 1x1 PNG whose header (with a valid CRC) claims w x h pixels: a cheap decompression bomb."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", w, h)  # IHDR data starts at 16: width, height
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # CRC over type + 13 data bytes
    return bytes(b)


GOOD = ["gray_L.png", "gray_alpha_LA.png", "rgba.png", "palette_P.png", "palette_transp.png", "cmyk.jpg",
        "deep16.png", "exif_rot6.jpg", "exif_rot8.jpg", "tiny_1x1.png", "tiny_3x2.jpg", "pic.bmp", "pic.tif",
        "UPPER.JPG", "sub/nested.jpeg", "mode1.png", "float_F.tif"]
BAD = {"zero.jpg": "zero-byte file", "truncated.jpg": "truncated file", "text.png": "not an image",
       "bomb.png": "decompression bomb", "bomb_warn.png": "decompression bomb"}


@pytest.fixture
def folder(tmp_path):
    """A folder holding every good and bad kind, plus files that must be ignored."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1)), "L").save(root / "gray_L.png")
    Image.new("LA", (20, 10), (128, 200)).save(root / "gray_alpha_LA.png")
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0], rgba[:, :10, 3], rgba[:, 10:, 3] = 255, 255, 0  # left opaque red, right fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    _noise(20, 10).convert("P").save(root / "palette_P.png")
    p = Image.new("P", (20, 10), 0)
    p.putpalette([0, 255, 0] + [0, 0, 0] * 255)  # index 0 green, index 1 black
    p.paste(1, (10, 0, 20, 10))
    p.save(root / "palette_transp.png", transparency=1)  # right half transparent
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(root / "cmyk.jpg")  # pure red in CMYK
    deep = np.full((10, 20), 60000, np.uint16)
    deep[:, 10:] = 1000
    Image.fromarray(deep).save(root / "deep16.png")  # mode I;16
    for name, orientation in (("exif_rot6.jpg", 6), ("exif_rot8.jpg", 8)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        _two_halves(40, 20).save(root / name, exif=exif, quality=95)
    Image.new("RGB", (1, 1), (10, 20, 30)).save(root / "tiny_1x1.png")
    _noise(3, 2).save(root / "tiny_3x2.jpg")
    _noise(20, 10).save(root / "pic.bmp")
    _noise(20, 10).save(root / "pic.tif")
    _noise(20, 10).save(root / "UPPER.JPG")
    _noise(20, 10).save(root / "sub" / "nested.jpeg")
    Image.new("1", (20, 10), 1).save(root / "mode1.png")
    Image.fromarray(np.full((10, 20), 0.5, np.float32), "F").save(root / "float_F.tif")
    (root / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    _noise(128, 128).save(buf, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.png").write_text("this is not a picture\n")
    (root / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))  # > 2x PIL's limit: its error
    (root / "bomb_warn.png").write_bytes(_png_claiming(15_000, 15_000))  # between 1x and 2x: its warning
    _noise(8, 8).save(root / ".thumbs" / "x.jpg")
    _noise(8, 8).save(root / ".x.jpg")
    (root / "notes.txt").write_text("notes")
    (root / "x.csv").write_text("a,b\n")
    return root


def test_list_images_finds_images_only(folder):
    found = list_images(folder)
    assert [p.relative_to(folder).as_posix() for p in found] == sorted(GOOD + list(BAD))
    assert found == sorted(found)


def test_list_images_root_inside_hidden_folder(tmp_path):
    root = tmp_path / ".cache" / "data"
    root.mkdir(parents=True)
    _noise(4, 4).save(root / "a.jpg")
    assert list_images(root) == [root / "a.jpg"]


@pytest.mark.parametrize("name", GOOD)
def test_good_files_load(folder, name):
    im = open_rgb(folder / name)
    assert im.mode == "RGB"
    arr = load_resized(folder / name, 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize("name,reason", sorted(BAD.items()))
def test_bad_files_raise_badimage_with_reason(folder, name, reason):
    with pytest.raises(BadImage) as err:
        open_rgb(folder / name)
    assert str(err.value).startswith(reason)


def test_bomb_reason_names_pixels(folder):
    with pytest.raises(BadImage, match=r"decompression bomb \(10000000000 pixels\)"):
        open_rgb(folder / "bomb.png")


def test_our_pixel_limit_applies(folder, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(BadImage, match=r"decompression bomb \(200 pixels\)"):
        open_rgb(folder / "pic.bmp")
    assert open_rgb(folder / "tiny_3x2.jpg").size == (3, 2)


def test_pil_global_limit_untouched(folder):
    before = Image.MAX_IMAGE_PIXELS
    build_cache(list_images(folder), 8, workers=0, progress=False)
    assert Image.MAX_IMAGE_PIXELS == before
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_transparency_composited_on_white(folder):
    a = np.asarray(open_rgb(folder / "rgba.png"))
    assert tuple(a[5, 2]) == (255, 0, 0) and tuple(a[5, 17]) == (255, 255, 255)
    p = np.asarray(open_rgb(folder / "palette_transp.png"))
    assert tuple(p[5, 2]) == (0, 255, 0) and tuple(p[5, 17]) == (255, 255, 255)


def test_cmyk_and_gray_colours(folder):
    r, g, b = np.asarray(open_rgb(folder / "cmyk.jpg"))[5, 10].astype(int)
    assert r > 200 and g < 60 and b < 60
    gray = np.asarray(open_rgb(folder / "gray_L.png"))
    assert (gray[..., 0] == gray[..., 1]).all() and gray[0, 63, 0] == 63


def test_16bit_png_scaled_not_clipped(folder):
    a = np.asarray(open_rgb(folder / "deep16.png"))
    assert abs(int(a[5, 2, 0]) - round(60000 / 257)) <= 1  # bright stays bright (clipping would give 255)
    assert abs(int(a[5, 17, 0]) - round(1000 / 257)) <= 1  # dark stays dark (a cast would wrap around)


def test_float_image_scaled(folder):
    assert abs(int(np.asarray(open_rgb(folder / "float_F.tif"))[0, 0, 0]) - 128) <= 1


@pytest.mark.parametrize("name,top,bottom", [("exif_rot6.jpg", "red", "blue"), ("exif_rot8.jpg", "blue", "red")])
def test_exif_orientation_applied(folder, name, top, bottom):
    im = open_rgb(folder / name)
    assert im.size == (20, 40)  # stored 40 wide, 20 high
    a = np.asarray(im).astype(int)
    colour = {"red": 0, "blue": 2}
    assert a[5, 10, colour[top]] > 200 and a[34, 10, colour[bottom]] > 200


def test_jpeg_draft_keeps_short_side(tmp_path):
    path = tmp_path / "big.jpg"
    _noise(1024, 768).save(path, quality=80)
    assert open_rgb(path).size == (1024, 768)
    assert open_rgb(path, min_side=32).size == (128, 96)  # reduced by 8
    assert open_rgb(path, min_side=224).size == (512, 384)  # by 2: by 4 would give 192 < 224
    assert open_rgb(path, min_side=500).size == (1024, 768)
    assert load_resized(path, 224).shape == (224, 224, 3)


def test_build_cache_skips_exactly_the_bad_files(folder):
    paths = list_images(folder)
    arr, kept, skipped = build_cache(paths, 16, workers=0, progress=False)
    assert arr.shape == (len(GOOD), 16, 16, 3) and arr.dtype == np.uint8
    assert kept == [p for p in paths if p.relative_to(folder).as_posix() in GOOD]  # input order
    assert {p.name: r.split(" (")[0] for p, r in skipped} == BAD
    assert np.array_equal(arr[kept.index(folder / "pic.bmp")], load_resized(folder / "pic.bmp", 16))


def test_build_cache_pool_matches_in_process(folder):
    paths = list_images(folder)
    a0, k0, s0 = build_cache(paths, 8, workers=0, progress=False)
    a2, k2, s2 = build_cache(paths, 8, workers=2, progress=False)
    assert np.array_equal(a0, a2) and k0 == k2 and s0 == s2


def test_build_cache_reused_then_invalidated(folder, tmp_path, monkeypatch):
    paths = list_images(folder)
    cache = tmp_path / "cache" / "imgs-16px.npz"
    first = build_cache(paths, 16, cache_file=cache, workers=0, progress=False)
    assert cache.exists() and not list(cache.parent.glob("*.tmp"))

    calls = []
    real = images._decode_row
    monkeypatch.setattr(images, "_decode_row", lambda job: calls.append(job) or real(job))
    again = build_cache(paths, 16, cache_file=cache, workers=0, progress=False)
    assert calls == []  # nothing decoded
    assert np.array_equal(first[0], again[0]) and first[1] == again[1] and first[2] == again[2]

    build_cache(paths, 32, cache_file=cache, workers=0, progress=False)  # other size: rebuilt
    assert len(calls) == len(paths)
    calls.clear()
    build_cache(paths[:-1], 32, cache_file=cache, workers=0, progress=False)  # other paths: rebuilt
    assert len(calls) == len(paths) - 1
    calls.clear()
    build_cache(paths[:-1], 32, cache_file=cache, workers=0, progress=False)
    assert calls == []

    st = os.stat(folder / "pic.bmp")
    os.utime(folder / "pic.bmp", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    build_cache(paths[:-1], 32, cache_file=cache, workers=0, progress=False)
    assert len(calls) == len(paths) - 1


def test_changed_file_invalidates_and_corrupt_cache_rebuilt(folder, tmp_path):
    paths = list_images(folder)
    cache = tmp_path / "c.npz"
    build_cache(paths, 8, cache_file=cache, workers=0, progress=False)
    st = os.stat(folder / "text.png")
    _noise(12, 12).save(folder / "text.png", "PNG")  # the bad file is fixed
    os.utime(folder / "text.png", ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime (size differs)
    arr, kept, skipped = build_cache(paths, 8, cache_file=cache, workers=0, progress=False)
    assert folder / "text.png" in kept and len(arr) == len(GOOD) + 1
    cache.write_bytes(b"garbage")
    arr2, kept2, _ = build_cache(paths, 8, cache_file=cache, workers=0, progress=False)
    assert kept2 == kept and np.array_equal(arr2, arr)


def test_cache_file_has_no_pickles(folder, tmp_path):
    cache = tmp_path / "c.npz"
    build_cache(list_images(folder), 8, cache_file=cache, workers=0, progress=False)
    with np.load(cache, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_build_cache_empty():
    arr, kept, skipped = build_cache([], 8, workers=0, progress=False)
    assert arr.shape == (0, 8, 8, 3) and kept == [] and skipped == []


def test_write_skipped_and_summary(folder, tmp_path):
    _, _, skipped = build_cache(list_images(folder), 8, workers=0, progress=False)
    out = write_skipped(tmp_path, skipped)
    assert out == tmp_path / "skipped_files.csv"
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "reason"] and rows[1:] == [[str(p), r] for p, r in skipped]
    assert write_skipped(tmp_path / "other", []) is None and not (tmp_path / "other").exists()

    line = skipped_summary(skipped, 22)
    assert line.startswith(f"skipped {len(BAD)} of 22 files (see skipped_files.csv): ")
    assert f"{skipped[0][0].name} ({skipped[0][1]})" in line and line.endswith(", ...") and "\n" not in line
    assert skipped_summary([], 22) is None


def test_cache_path_for(tmp_path):
    a, b = tmp_path / "x" / "My Images", tmp_path / "y" / "My Images"
    pa = cache_path_for(a, 32)
    assert pa.parent == images.REPO_ROOT / "data" / "cache"
    assert pa.name.startswith("My-Images-") and pa.name.endswith("-32px.npz")
    assert pa != cache_path_for(b, 32) and pa == cache_path_for(a / ".." / "My Images", 32)
    assert cache_path_for(a, 224) != pa


def test_unwritable_cache_warns_and_continues(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the cache folder should be
    with pytest.warns(UserWarning, match="could not write the image cache"):
        arr, kept, _ = build_cache(list_images(folder), 8, cache_file=blocker / "c.npz", workers=0, progress=False)
    assert len(arr) == len(kept) == len(GOOD)
