"""The contrastive views: shapes, normalisation, crops as a plain crop+resize would make them, seeded randomness."""
import pytest
import torch
import torch.nn.functional as F

from common.contrastive.views import ViewMaker

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.25, 0.2)
NO_JITTER = (0.0, 0.0, 0.0, 0.0)


def _images(b=4, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def _unnormalise(x):
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


def _resize(x, size):  # (B, 3, h, w) -> (B, 3, size, size), plain bilinear as torchvision's Resize without antialias
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_and_finite(size):
    whole, patches = ViewMaker(size=size)(_images(b=5, h=40, w=30), torch.Generator().manual_seed(0))
    assert whole.shape == (5, 3, size, size) and patches.shape == (2, 5, 3, size, size)
    assert whole.dtype == patches.dtype == torch.float32
    assert torch.isfinite(whole).all() and torch.isfinite(patches).all()


def test_constant_colour_is_normalised_with_the_given_mean_and_std():
    colour = torch.tensor([200, 100, 50], dtype=torch.uint8)
    images = colour.view(1, 1, 1, 3).expand(3, 20, 28, 3).contiguous()
    vm = ViewMaker(size=16, color_jitter=NO_JITTER, grayscale_p=0.0, mean=MEAN, std=STD)
    whole, patches = vm(images, torch.Generator().manual_seed(0))
    want = ((colour.float() / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1)
    torch.testing.assert_close(whole, want.expand_as(whole), rtol=0, atol=1e-5)
    torch.testing.assert_close(patches, want.expand_as(patches[0]).expand_as(patches), rtol=0, atol=1e-5)


def test_same_generator_seed_same_views_other_seed_other_views():
    images, vm = _images(), ViewMaker(size=16)
    a = vm(images, torch.Generator().manual_seed(7))
    b = vm(images, torch.Generator().manual_seed(7))
    c = vm(images, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1][1], c[1][1])
    assert torch.equal(a[1][0], c[1][0])  # the centre crop has no randomness


# the search's case (32 px cache, 32 px views: the patch is upsampled), a non-square one, and one that is exact
@pytest.mark.parametrize("hw,size", [((32, 32), 32), ((24, 32), 32), ((64, 64), 32)], ids=str)
def test_centre_crop_equals_plain_crop_and_resize(hw, size):
    h, w = hw
    images = _images(h=h, w=w)
    vm = ViewMaker(size=size, color_jitter=NO_JITTER, center_crop=0.5, mean=MEAN, std=STD)
    _, patches = vm(images, torch.Generator().manual_seed(0))
    x = images.permute(0, 3, 1, 2).float() / 255
    crop = x[:, :, h // 4 : h - h // 4, w // 4 : w - w // 4]  # the central half of each side
    got, want = _unnormalise(patches[0]), _resize(crop, size)
    if crop.shape[-1] < size:
        # upsampled: the outer ring blends in the pixels just outside the crop (sampling the whole image)
        # where a crop-then-resize repeats the crop's edge; everything inside must agree
        got, want = got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_whole_view_is_the_image_possibly_flipped():
    images = _images(b=16, h=20, w=20)  # the cache is at view size already
    vm = ViewMaker(size=20, color_jitter=NO_JITTER, mean=MEAN, std=STD)
    whole, _ = vm(images, torch.Generator().manual_seed(0))
    ref = images.permute(0, 3, 1, 2).float() / 255
    got = _unnormalise(whole)
    flips = set()
    for i in range(16):
        match = [dims for dims in ((), (-1,), (-2,), (-1, -2))
                 if torch.allclose(got[i], ref[i].flip(dims) if dims else ref[i], atol=1e-5)]
        assert match, f"image {i} is not a flip of the image"
        flips.add(match[0])
    assert len(flips) > 1  # flips do happen


def test_colour_jitter_changes_the_whole_view_only_in_colour_space():
    images = _images(b=8, h=32, w=32)
    whole = lambda jitter: ViewMaker(32, jitter, mean=MEAN, std=STD)(images, torch.Generator().manual_seed(1))[0]  # noqa: E731
    plain, jit = whole(NO_JITTER), whole((0.4, 0.4, 0.4, 0.1))
    assert not torch.allclose(plain, jit, atol=1e-3)  # the jitter is real (it was a no-op in the original)
    got = _unnormalise(jit)
    assert got.min() >= -1e-5 and got.max() <= 1 + 1e-5  # stays a valid image


def test_grayscale_p_one_makes_the_random_patch_gray():
    images = _images(b=6)
    vm = ViewMaker(size=16, grayscale_p=1.0, mean=MEAN, std=STD)
    _, patches = vm(images, torch.Generator().manual_seed(0))
    rnd = _unnormalise(patches[1])
    torch.testing.assert_close(rnd[:, 0], rnd[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(rnd[:, 1], rnd[:, 2], rtol=0, atol=1e-5)
    centre = _unnormalise(patches[0])
    assert (centre[:, 0] - centre[:, 1]).abs().max() > 0.1  # the centre patch keeps its colour
    _, never = ViewMaker(size=16, grayscale_p=0.0, mean=MEAN, std=STD)(images, torch.Generator().manual_seed(0))
    assert (_unnormalise(never[1])[:, 0] - _unnormalise(never[1])[:, 1]).abs().amax((1, 2)).min() > 0.01
