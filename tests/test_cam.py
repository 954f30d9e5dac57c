"""Grad-CAM maps have the input's size, depend on the target class, and leave the model as they found it."""
import numpy as np
import pytest
import torch
from PIL import Image

from common.arch.genotypes import CNAS_ISIC_s4
from common.arch.networks import EvalNetwork
from common.labeled.cam import GradCAM, overlay, pick_cam_samples, save_cam_figure


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EvalNetwork(CNAS_ISIC_s4, num_classes=3, C=8, layers=3, auxiliary=True)


def test_cam_shape_range_and_class_dependence(model):
    model.train()
    x = torch.randn(1, 3, 64, 64)
    with GradCAM(model, model.last_cell()) as cam_of:
        maps = [cam_of(x, k)[0] for k in range(3)]
        pred_map, logits = cam_of(x)
    for m in maps:
        assert m.shape == (64, 64) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    assert any(not np.allclose(maps[0], m) for m in maps[1:])  # the explanation depends on the class
    assert logits.shape == (3,) and not logits.requires_grad
    np.testing.assert_allclose(pred_map, maps[int(logits.argmax())])  # None = the predicted class
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    assert not model.last_cell()._forward_hooks and not model.last_cell()._backward_hooks


def test_cam_in_eval_mode_with_frozen_parameters_and_non_square_input(model):
    model.eval()
    model.requires_grad_(False)
    try:
        cam, _ = GradCAM(model, model.last_cell())(torch.randn(1, 3, 48, 80), class_idx=1)
    finally:
        model.requires_grad_(True)
    assert cam.shape == (48, 80) and np.isfinite(cam).all()
    assert not model.training


def test_cam_refuses_batches_and_bad_class(model):
    cam_of = GradCAM(model, model.last_cell())
    with pytest.raises(ValueError, match="one image"):
        cam_of(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="out of range"):
        cam_of(torch.randn(1, 3, 32, 32), class_idx=3)
    assert not model.last_cell()._forward_hooks  # removed even after an error


def test_overlay_and_figure(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cam = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)  # smaller than the image: resized
    out = overlay(image, cam)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), cam)
    for true, pred in (("MEL", "MEL"), ("MEL", "NV")):
        path = tmp_path / "cam" / f"{true}_{pred}.png"
        save_cam_figure(path, image, cam, true, pred, 0.83)
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] <= 500
        assert path.stat().st_size < 150_000


def test_pick_cam_samples_mixes_correct_and_wrong_deterministically():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, (y_true + 1) % 4)
    a = pick_cam_samples(y_true, y_pred, 8, seed=3)
    assert a == pick_cam_samples(y_true, y_pred, 8, seed=3)
    assert a != pick_cam_samples(y_true, y_pred, 8, seed=4)
    assert len(a) == len(set(a)) == 8
    hits = sum(int(y_true[i] == y_pred[i]) for i in a)
    assert hits == 4  # half correct, half wrong
    assert len({int(y_true[i]) for i in a if y_true[i] == y_pred[i]}) == 4  # spread over the classes


def test_pick_cam_samples_fills_up_when_one_kind_is_scarce():
    y_true = np.arange(10) % 2
    y_pred = y_true.copy()
    y_pred[3] = 0  # a single wrong prediction
    picked = pick_cam_samples(y_true, y_pred, 6, seed=0)
    assert len(picked) == 6 and 3 in picked
    assert pick_cam_samples(y_true, y_pred, 50, seed=0) == list(range(10))
    assert pick_cam_samples(y_true, y_pred, 0, seed=0) == []
