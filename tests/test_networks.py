"""Every named genotype builds a search backbone and an evaluation network that run forward and backward cleanly."""
import pytest
import torch

from common.arch import genotypes as G
from common.arch.networks import EvalNetwork, SearchNetwork
from common.device import Runtime


def _images(b=4, size=16, seed=0):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _dead_prefixes(model):
    """Parameter-name prefixes of ops on nodes whose output reaches neither the concat nor a used node.

    The paper's CNAS_ISIC_s5 reduction cell has one: node 0 (state 2) feeds nothing and is not in 3..6.
    """
    dead = []
    for k, cell in enumerate(model.cells):
        live = set(cell.concat)
        for node in reversed(range(len(cell.ops) // 2)):
            if 2 + node in live:
                live |= {cell.inputs[2 * node], cell.inputs[2 * node + 1]}
        dead += [f"cells.{k}.ops.{j}." for j in range(len(cell.ops)) if 2 + j // 2 not in live]
        dead += [f"cells.{k}.pre{s}." for s in (0, 1) if s not in live]
    return tuple(dead)


def _check_grads(model):
    dead = _dead_prefixes(model)
    for name, p in model.named_parameters():
        if name.startswith(dead):
            assert p.grad is None, f"{name} is on an unused node yet got a gradient"
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_only_the_s5_reduction_cell_has_an_unused_node(name):
    model = SearchNetwork(getattr(G, name), C=4, layers=3)  # cells 1 and 2 reduce
    want = ("cells.1.ops.0.", "cells.1.ops.1.", "cells.2.ops.0.", "cells.2.ops.1.") if name == "CNAS_ISIC_s5" else ()
    assert _dead_prefixes(model) == want


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_search_network_forward_backward(name):
    torch.manual_seed(0)
    model = SearchNetwork(getattr(G, name), C=4, layers=3)
    feats = model(_images())
    assert feats.shape == (4, model.feature_dim) and torch.isfinite(feats).all()
    feats.square().mean().backward()
    _check_grads(model)


def test_search_network_paper_size():
    torch.manual_seed(0)
    model = SearchNetwork(G.CNAS_ISIC_s5)  # C=32, 8 cells
    assert model.feature_dim == 512
    assert len(model.cells) == 8 and sum(c.reduction for c in model.cells) == 2
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 512) and torch.isfinite(feats).all()


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_search_network_channels_last_matches_nchw(train):
    torch.manual_seed(0)
    model = SearchNetwork(G.DARTS_V2, C=4, layers=3).train(train)
    x = _images(b=3)
    rt = Runtime(torch.device("cpu"), channels_last=True)
    with torch.no_grad():
        ref = model(x)
        model = rt.place(model)
        assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        out = model(rt.inputs(x))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_auxiliary_head_matches_darts():
    """DARTS's ImageNet aux head: ReLU, pool, 1x1 conv to 128 + BN, ReLU, 2x2 conv to 768 without BN, ReLU."""
    head = EvalNetwork(G.DARTS_V2, num_classes=3, C=8, layers=3).aux_head
    kinds = [type(m).__name__ for m in head.features]
    assert kinds == ["ReLU", "AdaptiveAvgPool2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "ReLU"]
    assert head.features[5].out_channels == 768 and head.classifier.in_features == 768


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_eval_network_logits_aux_and_gradients(name):
    torch.manual_seed(0)
    model = EvalNetwork(getattr(G, name), num_classes=5, C=8, layers=3, auxiliary=True, drop_path_prob=0.2)
    x = torch.randn(2, 3, 64, 64)
    logits, aux = model(x)
    assert logits.shape == (2, 5) and aux is not None and aux.shape == (2, 5)
    assert torch.isfinite(logits).all() and torch.isfinite(aux).all()
    (logits.logsumexp(1).mean() + 0.4 * aux.logsumexp(1).mean()).backward()
    _check_grads(model)

    model.eval()
    with torch.no_grad():
        logits, aux = model(x)
    assert logits.shape == (2, 5) and aux is None and torch.isfinite(logits).all()
    assert model.last_cell() is model.cells[-1]


def test_auxiliary_head_does_not_change_the_main_output():
    torch.manual_seed(0)
    model = EvalNetwork(G.DARTS_V2, num_classes=4, C=8, layers=3)  # the aux head sits on the last cell here
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with_aux, aux = model(x)
        head, model.aux_head = model.aux_head, None
        without_aux, _ = model(x)
    assert aux is not None and head is not None
    torch.testing.assert_close(with_aux, without_aux)


def test_eval_network_without_auxiliary_head():
    model = EvalNetwork(G.CNAS_ISIC_s4, num_classes=3, C=8, layers=3, auxiliary=False)
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3) and aux is None
    assert not any(n.startswith("aux_head") for n, _ in model.named_parameters())
