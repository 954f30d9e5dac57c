"""ContrastiveNet: one backbone pass per view, the search candidate's seeded initialisation order, and a classifier's
backbone under its own names."""
import pytest
import torch
import torch.nn as nn

from common.arch import genotypes as G
from common.arch.networks import EvalNetwork, SearchNetwork
from common.contrastive.net import ContrastiveNet
from common.device import Runtime


def _views(b=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, size, size, generator=g), torch.randn(2, b, 3, size, size, generator=g)


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_search_candidate_forward_backward(name):
    torch.manual_seed(0)
    net = ContrastiveNet.search_candidate(getattr(G, name), 4, 3)
    f_whole, f_patch = net(*_views())
    assert f_whole.shape == (4, 256) and f_patch.shape == (4, 256)
    assert torch.isfinite(f_whole).all() and torch.isfinite(f_patch).all()
    (f_whole.square().mean() + f_patch.square().mean()).backward()
    for p in (net.head_whole.weight, net.head_patch.weight, net.backbone.stem[0].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_search_candidate_draws_stem_cells_then_heads():
    """The seeded trials depend on this order: the backbone's weights are a bare SearchNetwork's of the same seed."""
    torch.manual_seed(5)
    net = ContrastiveNet.search_candidate(G.DARTS_V2, 4, 3, proj_dim=16)
    torch.manual_seed(5)
    bare = SearchNetwork(G.DARTS_V2, C=4, layers=3)
    whole, patch = nn.Linear(bare.feature_dim, 16), nn.Linear(2 * bare.feature_dim, 16)
    for k, v in bare.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v), k
    assert torch.equal(net.head_whole.weight, whole.weight) and torch.equal(net.head_patch.weight, patch.weight)


def test_each_view_runs_by_itself():
    """Training-mode BatchNorm sees one view at a time: no view's output depends on another view's content."""
    torch.manual_seed(0)
    rt = Runtime(torch.device("cpu"), channels_last=True)
    net = rt.place(ContrastiveNet.search_candidate(G.DARTS_V2, 4, 3)).train()
    whole, patches = _views(b=5)
    with torch.no_grad():
        f_whole, f_patch = net(whole, patches)
        torch.testing.assert_close(f_whole, net.represent(whole))  # what the bank is filled with
        other_whole, _ = net(whole, 5 * patches + 1)  # patches with very different statistics
        torch.testing.assert_close(other_whole, f_whole)
        # the patch head sees [view 0 | view 1] per image, each view's features from its own pass
        alone = torch.cat([net.features(patches[0]), net.features(patches[1])], dim=1)
        torch.testing.assert_close(f_patch, net.head_patch(alone))
        _, other_patch = net(whole * 3, list(patches))  # nor does the whole image reach the patch output (a list too)
        torch.testing.assert_close(other_patch, f_patch)


def test_from_classifier_keeps_the_bare_names_and_leaves_the_classifier_alone():
    torch.manual_seed(0)
    classifier = EvalNetwork(G.DARTS_V2, 3, C=8, layers=3, auxiliary=True)
    net = ContrastiveNet.from_classifier(classifier, proj_dim=8)
    own = {k for k in classifier.state_dict() if not k.startswith(("classifier.", "aux_head."))}
    assert set(net.backbone.state_dict()) == own
    assert isinstance(classifier.classifier, nn.Linear) and classifier.aux_head is not None  # a copy was changed
    assert net.head_whole.in_features == classifier.classifier.in_features
    f_whole, f_patch = net(*_views(b=2, size=32))
    assert f_whole.shape == (2, 8) and f_patch.shape == (2, 8)
