"""The summed per-op size of an eval network equals counting the whole network."""
import numpy as np
import pytest

from common.arch import genotypes as G
from common.arch.cell_cost import eval_network_size
from common.arch.cost import count_macs, count_params
from common.arch.networks import EvalNetwork


def _full(genotype, c, layers, px, classes):
    model = EvalNetwork(genotype, classes, C=c, layers=layers, auxiliary=False)
    return count_params(model), count_macs(model, px)


def _random(seed, space):
    rng = np.random.default_rng(seed)
    labels = G.sample_labels(space=space)
    return G.sample_to_genotype({k: int(rng.integers(len(G.choices(k, space)))) for k in labels}, space=space)


@pytest.mark.parametrize("network", [(8, 5, 64, 4), (6, 4, 40, 3)])  # 40 px: odd sides after the reductions
def test_summed_size_equals_the_full_count(network):
    genotypes = [G.DARTS_V2, G.CNAS_ISIC_s4, G.CNAS_ISIC_s5, *(_random(s, "paper") for s in range(3)),
                 *(_random(s, "explicit") for s in range(3))]
    for genotype in genotypes:
        assert eval_network_size(genotype, network) == _full(genotype, *network)


def test_a_proposal_builds_no_network_once_the_shape_is_known(monkeypatch):
    """Only the first genotype of a shape builds the full network; later ones are sums of cached op counts."""
    import common.arch.cell_cost

    network = (8, 5, 64, 4)
    eval_network_size(G.DARTS_V2, network)
    monkeypatch.setattr(common.arch.cell_cost, "EvalNetwork", None)  # building a network now would fail
    sizes = [eval_network_size(_random(s, "explicit"), network) for s in range(5)]
    assert all(p > 0 and m > 0 for p, m in sizes) and len(set(sizes)) > 1
