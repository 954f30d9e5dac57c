"""Training-free scores: NASWOT and synflow against hand-computed cases, BatchNorm handling, side effects, search use."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.spatial.distance import cdist

from common.arch.genotypes import DARTS_V2
from common.arch.networks import SearchNetwork
from common.contrastive.views import ViewMaker
from common.search.zero_cost import SCORES, ScoreSettings, naswot, score_batch, score_candidate, synflow


def _linear(weight, bias=None):
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


@pytest.mark.parametrize("inplace", [False, True])
def test_naswot_hand_computed_kernel(inplace):
    """W = [[1, 0], [0, 1], [1, -1]], no bias, then ReLU; inputs x1 = (1, 2), x2 = (-1, 1), x3 = (2, -1).

    Pre-activations W x: (1, 2, -1), (-1, 1, -2), (2, -1, 3) -> codes c1 = 110, c2 = 010, c3 = 101, N_A = 3.
    Hamming: d12 = 1, d13 = 2, d23 = 3, so K = 3 - d = [[3, 2, 1], [2, 3, 0], [1, 0, 3]],
    det K = 3 (9 - 0) - 2 (6 - 0) + 1 (0 - 3) = 12, score = log 12.
    """
    model = nn.Sequential(_linear([[1, 0], [0, 1], [1, -1]]), nn.ReLU(inplace=inplace))
    x = torch.tensor([[1.0, 2.0], [-1.0, 1.0], [2.0, -1.0]])
    assert naswot(model, x) == pytest.approx(math.log(12.0), abs=1e-12)


def test_naswot_equals_kernel_from_explicit_codes_over_several_relus():
    """Two ReLU layers (8 + 5 units): K built from the concatenated codes with scipy's Hamming distance."""
    torch.manual_seed(0)
    l1, l2 = nn.Linear(4, 8), nn.Linear(8, 5)
    model = nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(inplace=True), nn.Linear(5, 2))
    x = torch.randn(6, 4)
    with torch.no_grad():
        h1 = torch.relu(l1(x))
        h2 = torch.relu(l2(h1))
    codes = torch.cat([h1 > 0, h2 > 0], dim=1).numpy()
    n_units = codes.shape[1]
    kernel = n_units - cdist(codes, codes, metric="hamming") * n_units  # scipy's hamming is a fraction
    expected = np.linalg.slogdet(kernel)[1]
    assert np.isfinite(expected)
    assert naswot(model, x) == pytest.approx(expected, abs=1e-9)


class _DeadBranch(nn.Module):
    """A ReLU branch computed but never used: the reference skips it (its backward hook never fires)."""

    def __init__(self, with_dead):
        super().__init__()
        torch.manual_seed(1)
        self.live = nn.Sequential(nn.Linear(3, 32), nn.ReLU())
        self.dead = nn.Sequential(nn.Linear(3, 32), nn.ReLU()) if with_dead else None

    def forward(self, x):
        if self.dead is not None:
            self.dead(x)
        return self.live(x)


def test_naswot_skips_relus_that_do_not_reach_the_output():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    with_dead, without = naswot(_DeadBranch(True), x), naswot(_DeadBranch(False), x)
    assert np.isfinite(without) and with_dead == pytest.approx(without, abs=1e-12)


def test_naswot_identical_images_give_a_singular_kernel():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    assert naswot(model, torch.ones(3, 3)) == -math.inf


def _tiny_search_network(seed=0):
    torch.manual_seed(seed)
    return SearchNetwork(DARTS_V2, C=4, layers=3)


def test_naswot_on_search_network_uses_batch_statistics_and_restores_the_model():
    model = _tiny_search_network().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    score = naswot(model, x)
    assert np.isfinite(score) and score == naswot(model, x)  # deterministic
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running statistics untouched
    # train-mode BN (batch statistics) differs from eval-mode BN with the 0/1 running statistics at init
    assert naswot(model, x, forward=_eval_features) != pytest.approx(score)


def _eval_features(model, x):
    """Forward with every BN in eval mode even though naswot put the model in train mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model(x)


def _chain(weights, relu_between):
    layers = []
    for i, w in enumerate(weights):
        if i and relu_between:
            layers.append(nn.ReLU())
        layers.append(_linear(w))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("depth,relu_between", [(2, False), (3, True)])
def test_synflow_of_bias_free_linear_chain_is_depth_times_r(depth, relu_between):
    """y = |W_L| ... |W_1| 1 after the abs step; ReLUs act as identity on these non-negative values.

    R = 1^T |W_L| ... |W_1| 1. For W1 (two layers): dR/dW1_ij = (1^T |W2|)_i * 1, so
    sum_ij |W1_ij| dR/dW1_ij = 1^T |W2| |W1| 1 = R; for W2: dR/dW2_ki = (|W1| 1)_i, and
    sum_ki |W2_ki| (|W1| 1)_i = R again. Total 2 R; in general R is homogeneous of degree 1 in each layer's
    weights, so (Euler) each layer contributes R and synflow = depth * R.
    """
    rng = np.random.default_rng(depth)
    shapes = [(5, 4), (3, 5), (2, 3)][:depth]
    weights = [rng.standard_normal(s) for s in shapes]
    product = np.ones(shapes[0][1])
    for w in weights:
        product = np.abs(w) @ product
    r = product.sum()
    assert synflow(_chain(weights, relu_between), (shapes[0][1],)) == pytest.approx(depth * r, rel=1e-6)


def test_synflow_with_biases_scores_weights_only():
    """y = |W2| (|W1| 1 + |b1|) + |b2|, R = 1^T y. W1 contributes 1^T |W2| |W1| 1 (as above), W2 contributes
    sum_ki |W2_ki| h_i = 1^T |W2| (|W1| 1 + |b1|); biases are not scored (the reference's per-layer weight metric)."""
    w1, b1 = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]]), np.array([-0.5, 2.0, 1.0])
    w2, b2 = np.array([[2.0, -1.0, 0.5]]), np.array([-7.0])
    model = nn.Sequential(_linear(w1, b1), _linear(w2, b2))
    ones = np.ones(2)
    expected = 2 * (np.abs(w2) @ np.abs(w1) @ ones).sum() + (np.abs(w2) @ np.abs(b1)).sum()
    # by hand: |W1| 1 = (3, 3.5, 2), |W2| that = 6 + 3.5 + 1 = 10.5; |W2| |b1| = 1 + 2 + 0.5 = 3.5
    assert expected == pytest.approx(2 * 10.5 + 3.5)
    assert synflow(model, (2,)) == pytest.approx(expected, rel=1e-12)


def test_synflow_ignores_batchnorm_and_leaves_the_model_unchanged():
    """BN with odd running statistics and affine parameters changes nothing: it is removed, as in the reference.
    With one input, train-mode BatchNorm1d would even refuse to run."""
    weights = [[[1.0, -2.0], [3.0, 0.5]], [[-1.0, 2.0]]]
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.running_mean.fill_(5.0)
        bn.running_var.fill_(9.0)
        bn.weight.fill_(-3.0)
        bn.bias.fill_(4.0)
    with_bn = nn.Sequential(_linear(weights[0]), bn, nn.ReLU(), _linear(weights[1]))
    before = {k: v.clone() for k, v in with_bn.state_dict().items()}
    score = synflow(with_bn, (2,))
    assert score == pytest.approx(synflow(_chain(weights, True), (2,)), rel=1e-12)
    assert score == pytest.approx(20.0)  # R = |W2| |W1| 1 = (1, 2) . (3, 3.5) = 10; synflow = 2 R
    after = with_bn.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)
    assert with_bn.training and isinstance(with_bn[1], nn.BatchNorm1d)
    assert all(p.grad is None for p in with_bn.parameters())


def test_synflow_on_search_network_is_positive_and_model_untouched():
    model = _tiny_search_network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    score = synflow(model, (3, 16, 16))
    assert np.isfinite(score) and score > 0 and score == synflow(model, (3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32


def test_registry_directions_and_loss():
    assert set(SCORES) == {"naswot", "synflow"}
    assert all(spec.higher_is_better for spec in SCORES.values())
    assert SCORES["naswot"].loss(3.0) == -3.0


@pytest.mark.parametrize("name", ["naswot", "synflow"])
def test_score_candidate_is_seeded_and_keeps_the_global_rng(name):
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    rng = torch.get_rng_state()
    a = score_candidate(name, DARTS_V2, x, settings=ScoreSettings(init_channels=4, layers=3, seed=0))
    assert torch.equal(rng, torch.get_rng_state())
    assert a == score_candidate(name, DARTS_V2, x, settings=ScoreSettings(init_channels=4, layers=3, seed=0))
    assert a != score_candidate(name, DARTS_V2, x, settings=ScoreSettings(init_channels=4, layers=3, seed=1))
    assert np.isfinite(a)


def test_score_candidate_from_uint8_images_and_views():
    """The search's path: uint8 (N, H, W, 3) images, a ViewMaker, a batch of `batch_size` seeded picks."""
    images = torch.randint(0, 256, (12, 20, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    views = ViewMaker(size=16)
    batch = score_batch(images, views, 6, seed=0, device=torch.device("cpu"))
    assert batch.shape == (6, 3, 16, 16) and batch.dtype == torch.float32
    assert torch.equal(batch, score_batch(images, views, 6, seed=0, device=torch.device("cpu")))
    score = score_candidate("naswot", DARTS_V2, images, views,
                            settings=ScoreSettings(init_channels=4, layers=3, seed=0, batch_size=6))
    assert score == pytest.approx(naswot(_tiny_search_network(0), batch))
    with pytest.raises(ValueError, match="views"):
        score_batch(images, None, 6, seed=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown"):
        score_candidate("nce", DARTS_V2, images, views, settings=ScoreSettings(init_channels=4, layers=3, seed=0))
