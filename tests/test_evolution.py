"""Regularized evolution: one mutation is one change of the cell in both encodings; parents, ageing, and a population
rebuilt from the finished records that proposes what the uninterrupted search would."""
from collections import Counter

import numpy as np
import pytest

from common.arch import genotypes as G
from common.search.evolution import RegularizedEvolution, mutate, random_sample
from common.search.strategy import make_strategy


def _nodes(genotype):
    """{(cell, node): Counter of its (op, state) edges}: a node's edges as a multiset (their order means nothing)."""
    return {(c, i // 2): Counter(map(tuple, getattr(genotype, c)[i : i + 2]))
            for c in G.CELL_TYPES for i in range(0, len(getattr(genotype, c)), 2)}


def _one_change(parent, child):
    """'op' or 'input' when child differs from parent in exactly one edge and in one of its two parts, else None."""
    a, b = _nodes(parent), _nodes(child)
    changed = [k for k in a if a[k] != b[k]]
    if len(changed) != 1:
        return None
    gone, new = list((a[changed[0]] - b[changed[0]]).elements()), list((b[changed[0]] - a[changed[0]]).elements())
    if len(gone) != 1 or len(new) != 1:
        return None
    (op0, s0), (op1, s1) = gone[0], new[0]
    return "op" if s0 == s1 and op0 != op1 else "input" if op0 == op1 and s0 != s1 else None


@pytest.mark.parametrize("space", G.SPACES)
def test_a_mutation_changes_exactly_one_op_or_one_input_and_stays_in_the_space(space):
    labels = G.sample_labels(space=space)
    kinds, states = Counter(), set()
    for i in range(150):
        rng = np.random.default_rng([7, i])
        parent = G.sample_to_genotype(random_sample(space, rng), space=space)
        child = mutate(parent, rng)
        kind = _one_change(parent, child)
        assert kind is not None, (parent, child)
        kinds[kind] += 1
        G.check_genotype(child)
        for cell in G.CELL_TYPES:  # a node never reads one state twice
            edges = getattr(child, cell)
            assert all(edges[j][1] != edges[j + 1][1] for j in range(0, len(edges), 2))
        states |= {s for _, s in child.normal}
        # the child as a sample of the space: every variable, valid indices, and it decodes to the mutated cell
        encoded = G.genotype_to_sample(child, space=space)
        assert set(encoded) == set(labels)
        assert all(0 <= v < len(G.choices(k, space)) for k, v in encoded.items())
        assert G.canonical(G.sample_to_genotype(encoded, space=space)) == G.canonical(child)
    assert kinds["op"] > 40 and kinds["input"] > 40  # both kinds, about half each
    assert states == set(range(2 + G.STEPS - 1))  # inputs reach every state a node can read


def _record(trial, sample, loss, status="ok"):
    return {"trial": trial, "sample": sample, "loss": loss, "status": status}


def test_the_best_of_the_sample_is_the_parent_and_the_oldest_leaves():
    evo = RegularizedEvolution("explicit", seed=0, population=4, sample_size=4)  # the sample is the whole population
    samples = [random_sample("explicit", np.random.default_rng(i)) for i in range(6)]
    for t in range(1, 4):
        evo.tell(_record(t, samples[t], 5.0 - t))
        assert evo.ask(10) == evo.ask(10) and len(evo.ask(10)) == 30  # not full: random members, seeded by trial
    evo.tell(_record(4, samples[4], 9.0))
    evo.tell(_record(5, samples[5], None, "fail"))  # failures and over-budget proposals never join
    evo.tell(_record(6, samples[0], None, "over_budget"))
    assert [m.trial for m in evo.population] == [1, 2, 3, 4]
    best = G.sample_to_genotype(samples[3], space="explicit")  # trial 3, loss 2.0
    child = G.sample_to_genotype(evo.ask(11), space="explicit")
    assert _one_change(best, child) is not None
    evo.tell(_record(7, samples[1], 8.0, "stopped"))  # a stopped trial joins with the loss it stopped at
    evo.tell(_record(8, samples[2], 8.5))
    assert [m.trial for m in evo.population] == [3, 4, 7, 8]
    evo.tell(_record(9, samples[4], 9.5))
    assert [m.trial for m in evo.population] == [4, 7, 8, 9]  # trial 3 was the best, and left as the oldest
    assert _one_change(G.sample_to_genotype(samples[1], space="explicit"),
                       G.sample_to_genotype(evo.ask(12), space="explicit")) is not None  # now trial 7 wins


def _fitness(sample, space):
    """A synthetic loss the cells decide: fewer pooling ops and deeper inputs are better."""
    g = G.sample_to_genotype(sample, space=space)
    return sum(op.endswith("pool_3x3") for op, _ in g.normal + g.reduce) - 0.1 * sum(s for _, s in g.normal)


@pytest.mark.parametrize("space", G.SPACES)
def test_a_population_rebuilt_from_the_records_proposes_what_the_uninterrupted_one_would(space):
    cfg = {"ALGO": "evolution", "SPACE": space, "SEED": 3, "POPULATION": 6, "SAMPLE_SIZE": 3}
    live, told, in_flight, proposals = make_strategy(cfg), [], [], {}
    for trial in range(1, 41):  # three trials in flight; they finish out of order
        proposals[trial] = live.ask(trial)
        in_flight.append(trial)
        if len(in_flight) == 3:
            done = in_flight.pop(trial % 3)
            status = "stopped" if done % 7 == 0 else "fail" if done % 11 == 0 else "ok"
            record = _record(done, proposals[done], None if status == "fail" else _fitness(proposals[done], space),
                             status)
            live.tell(record)
            told.append(record)
        if trial in (8, 25, 40):  # a kill here: a fresh search told the same finished records, in the same order
            rebuilt = make_strategy(cfg)
            for record in told:
                rebuilt.tell(record)
            assert list(rebuilt.population) == list(live.population)
            assert [rebuilt.ask(n) for n in range(trial + 1, trial + 6)] == [live.ask(n) for n in range(trial + 1, trial + 6)]
    assert len(live.population) == 6
    first = [_fitness(proposals[t], space) for t in range(1, 7)]
    last = [m.loss for m in live.population]
    assert np.mean(last) < np.mean(first)  # the population improved on its random start


def test_sample_size_must_fit_the_population():
    with pytest.raises(ValueError, match="SAMPLE_SIZE 5"):
        RegularizedEvolution("paper", 0, population=4, sample_size=5)
