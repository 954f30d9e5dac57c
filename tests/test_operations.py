"""Every candidate op keeps or halves the feature map as cells expect; drop_path drops whole samples."""
import math

import pytest
import torch

from common.arch.genotypes import PRIMITIVES
from common.arch.operations import OPS, drop_path


def test_ops_cover_the_primitives():
    assert sorted(OPS) == sorted(PRIMITIVES)


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (9, 6), (5, 11)], ids=str)
def test_op_shapes(name, affine, hw):
    torch.manual_seed(0)
    c, (h, w) = 4, hw
    x = torch.randn(2, c, h, w)
    for stride in (1, 2):
        op = OPS[name](c, stride, affine)
        y = op(x)
        assert y.shape == (2, c, math.ceil(h / stride), math.ceil(w / stride)), (name, stride)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", [p for p in PRIMITIVES if p != "none"])
def test_op_backward_reaches_input(name):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    for stride in (1, 2):
        x.grad = None
        OPS[name](4, stride, True)(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    p = 0.3
    y = drop_path(x, p, training=True)
    per_sample = y.flatten(1)
    zero = (per_sample == 0).all(1)
    kept = torch.isclose(per_sample, torch.full_like(per_sample, 1 / (1 - p))).all(1)
    assert (zero | kept).all()  # each sample is dropped entirely or kept entirely (scaled)
    assert abs(zero.float().mean().item() - p) < 0.04
    assert abs(y.mean().item() - 1.0) < 0.06


def test_drop_path_is_identity_when_not_training_or_zero_prob():
    x = torch.randn(5, 3, 4, 4)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.equal(drop_path(x, 0.0, training=True), x)
