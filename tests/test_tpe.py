"""The hyperopt side: each genotype encoding's search space, and ask/tell suggestions that decode to valid cells."""
import numpy as np
import pytest
from hyperopt import space_eval

from common.arch import genotypes as G
from common.search.tpe import TrialHistory, make_suggest, search_space


@pytest.mark.parametrize("space, n_labels", [("paper", 40), ("explicit", 30)])
def test_search_space_has_one_choice_per_variable(space, n_labels):
    hp_space = search_space(space)
    labels = G.sample_labels(space=space)
    assert list(hp_space) == labels and len(labels) == n_labels
    # choice index k reads option k: the first and the last option of every variable
    for pick in (0, -1):
        indices = {label: len(G.choices(label, space)) - 1 if pick else 0 for label in labels}
        assert space_eval(hp_space, indices) == {label: G.choices(label, space)[pick] for label in labels}
    counts = {label: len(G.choices(label, space)) for label in labels}
    if space == "paper":
        assert set(counts.values()) == {len(G.PRIMITIVES)}
    else:
        assert counts["normal_n0_inputs"] == 1 and counts["reduce_n4_inputs"] == 15 and counts["normal_n3_op1"] == 7
    assert list(search_space(space, steps=4)) == G.sample_labels(4, space)


def test_search_space_refuses_an_unknown_space():
    with pytest.raises(ValueError, match="paper, explicit"):
        search_space("edges")


@pytest.mark.parametrize("space", G.SPACES)
@pytest.mark.parametrize("algo", ["tpe", "random"])
def test_history_suggests_valid_samples(space, algo):
    history = TrialHistory(search_space(space))
    suggest = make_suggest(algo, n_startup=4)
    counts = {label: len(G.choices(label, space)) for label in G.sample_labels(space=space)}
    seen = set()
    for trial in range(1, 13):
        sample = history.suggest(suggest, trial, seed=trial)
        assert set(sample) == set(counts)
        assert all(isinstance(v, int) and 0 <= v < counts[k] for k, v in sample.items())
        genotype = G.check_genotype(G.sample_to_genotype(sample, space=space))
        seen.add(str(G.canonical(genotype)))
        # a synthetic loss that TPE can read from the cells; every fifth trial fails
        loss = None if trial % 5 == 0 else sum(s for _, s in genotype.normal) + np.float32(0.5)
        history.add(trial, sample, loss)
    assert len(seen) >= 8  # mostly distinct cells (TPE may repeat a good one), not one collapsed genotype
    assert len(history.trials.trials) == 12


def test_same_history_and_seed_suggest_the_same_sample():
    def run(space):
        history = TrialHistory(search_space(space))
        suggest = make_suggest("tpe", n_startup=3)
        out = []
        for trial in range(1, 7):
            sample = history.suggest(suggest, trial, seed=100 + trial)
            out.append(sample)
            history.add(trial, sample, float(sum(sample.values())))
        return out

    for space in G.SPACES:
        assert run(space) == run(space)


def test_make_suggest_refuses_an_unknown_algorithm():
    with pytest.raises(ValueError, match="'tpe' or 'random'"):
        make_suggest("anneal")
