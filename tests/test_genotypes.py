"""The DARTS vocabulary and the TPE sample -> genotype encoding: deterministic, always valid, round-trips."""
import json

import numpy as np
import pytest

from common import genotypes as G
from common.genotypes import PRIMITIVES, Genotype

# the short forms DESIGN.md uses for the paper's cells
_SHORT = {"sk": "skip_connect", "avg": "avg_pool_3x3", "max": "max_pool_3x3", "sep3x3": "sep_conv_3x3",
          "sep5x5": "sep_conv_5x5", "dil3x3": "dil_conv_3x3", "dil5x5": "dil_conv_5x5"}


def _cell(text):
    """'sk0, avg1, dil5x5 0' -> [('skip_connect', 0), ('avg_pool_3x3', 1), ('dil_conv_5x5', 0)]."""
    out = []
    for item in text.split(","):
        item = item.replace(" ", "")
        op, state = item[:-1], int(item[-1])
        out.append((_SHORT[op], state))
    return out


# copied from DESIGN.md's text, not from genotypes.py
DESIGN = {
    "CNAS_ISIC_s4": dict(
        normal=_cell("sk0, avg1, dil5x5 0, dil3x3 1, sk0, sep5x5 1, sk0, avg1"), normal_concat=[2, 3, 4, 5],
        reduce=_cell("sk0, max1, dil3x3 0, dil5x5 2, dil3x3 0, sep3x3 1, max1, dil3x3 2"), reduce_concat=[2, 3, 4, 5]),
    "CNAS_ISIC_s5": dict(
        normal=_cell("avg1, max0, dil5x5 0, sep5x5 1, dil3x3 0, avg1, dil5x5 0, dil5x5 2, avg0, max1"),
        normal_concat=[3, 4, 5, 6],
        reduce=_cell("dil5x5 0, max1, sk0, avg1, sk0, dil5x5 1, sep5x5 0, avg1, max0, dil5x5 1"),
        reduce_concat=[3, 4, 5, 6]),
}


def test_primitives_order():
    assert PRIMITIVES == ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_named_genotypes_are_valid(name):
    assert set(G.NAMED_GENOTYPES) == {"DARTS_V2", "CNAS_ISIC_s4", "CNAS_ISIC_s5"}
    g = getattr(G, name)
    assert G.check_genotype(g) is g


@pytest.mark.parametrize("name", sorted(DESIGN))
def test_paper_cells_match_design(name):
    g = getattr(G, name)
    want = DESIGN[name]
    assert [tuple(e) for e in g.normal] == want["normal"]
    assert [tuple(e) for e in g.reduce] == want["reduce"]
    assert list(g.normal_concat) == want["normal_concat"]
    assert list(g.reduce_concat) == want["reduce_concat"]


def test_sample_labels():
    labels = G.sample_labels(5)
    assert len(labels) == 40 == len(set(labels))
    assert len(G.edges(5)) == 20
    assert G.sample_labels() == labels  # STEPS = 5 by default


def _random_sample(rng, steps=G.STEPS, none_p=None):
    if none_p is None:
        return {k: int(rng.integers(len(PRIMITIVES))) for k in G.sample_labels(steps)}
    return {k: 0 if rng.random() < none_p else int(rng.integers(1, len(PRIMITIVES))) for k in G.sample_labels(steps)}


def _expected_node(choices):
    """The documented rule for one node: choices[state] = op index -> sorted [(op, state)] it keeps."""
    real = [s for s, c in enumerate(choices) if c != 0]
    keep = [(PRIMITIVES[choices[s]], s) for s in real[:2]]
    fill = [s for s, c in enumerate(choices) if c == 0][: 2 - len(keep)]
    return sorted(keep + [("max_pool_3x3", s) for s in fill], key=lambda e: e[1])


def _nodes(cell):
    return [sorted(map(tuple, cell[i : i + 2]), key=lambda e: e[1]) for i in range(0, len(cell), 2)]


def test_same_sample_same_genotype():
    sample = _random_sample(np.random.default_rng(1))
    a, b = G.sample_to_genotype(sample), G.sample_to_genotype(dict(sample))
    assert a == b
    # op names work like indices (hyperopt's space_eval returns names)
    assert G.sample_to_genotype({k: PRIMITIVES[v] for k, v in sample.items()}) == a


def test_random_samples_give_valid_genotypes_by_the_documented_rule():
    rng = np.random.default_rng(0)
    for i in range(400):
        sample = _random_sample(rng, none_p=[None, 0.5, 0.85][i % 3])
        g = G.sample_to_genotype(sample)
        G.check_genotype(g)
        assert g.normal_concat == [3, 4, 5, 6] and g.reduce_concat == [3, 4, 5, 6]
        for cell_type in G.CELL_TYPES:
            cell = getattr(g, cell_type)
            assert len(cell) == 2 * G.STEPS
            for node, pair in enumerate(_nodes(cell)):
                assert all(op != "none" and 0 <= s < node + 2 for op, s in pair)
                assert pair[0][1] != pair[1][1]  # two different input states
                choices = [sample[G.edge_label(cell_type, node, s)] for s in range(node + 2)]
                assert pair == _expected_node(choices), (cell_type, node, choices)


def test_node_with_more_than_two_edges_keeps_the_lowest_states():
    sample = {k: 0 for k in G.sample_labels()}
    ops = {0: 4, 1: 6, 2: 2, 3: 7}  # node 2 draws from states 0..3, all non-'none'
    for s, op in ops.items():
        sample[G.edge_label("normal", 2, s)] = op
    g = G.sample_to_genotype(sample)
    assert _nodes(g.normal)[2] == [(PRIMITIVES[4], 0), (PRIMITIVES[6], 1)]


def test_node_with_fewer_than_two_edges_fills_with_max_pool_on_lowest_none_states():
    sample = {k: 0 for k in G.sample_labels()}
    sample[G.edge_label("reduce", 3, 4)] = PRIMITIVES.index("sep_conv_5x5")  # node 3: only state 4 is real
    g = G.sample_to_genotype(sample)
    assert _nodes(g.reduce)[3] == [("max_pool_3x3", 0), ("sep_conv_5x5", 4)]
    assert _nodes(g.reduce)[0] == [("max_pool_3x3", 0), ("max_pool_3x3", 1)]  # all 'none'
    assert _nodes(g.normal)[4] == [("max_pool_3x3", 0), ("max_pool_3x3", 1)]


def _random_genotype(rng, steps=G.STEPS):
    cells = []
    for _ in G.CELL_TYPES:
        cell = []
        for node in range(steps):
            for s in rng.choice(node + 2, 2, replace=False):
                cell.append((PRIMITIVES[int(rng.integers(1, len(PRIMITIVES)))], int(s)))
        cells.append(cell)
    concat = list(range(2 + steps - 4, 2 + steps))
    return Genotype(cells[0], concat, cells[1], list(concat))


def test_round_trip_genotype_sample_genotype():
    rng = np.random.default_rng(2)
    for g in [G.CNAS_ISIC_s5] + [_random_genotype(rng) for _ in range(200)]:
        sample = G.genotype_to_sample(g)
        assert set(sample) == set(G.sample_labels())
        assert G.canonical(G.sample_to_genotype(sample)) == G.canonical(g)


def _darts_reference(weights, steps):
    """DARTS's parser written out plainly: strongest non-'none' weight picks the two edges, then the op."""
    gene, start = [], 0
    for node in range(steps):
        rows = weights[start : start + node + 2]
        strength = [max(w for k, w in enumerate(row) if k != 0) for row in rows]
        states = sorted(range(node + 2), key=lambda s: strength[s], reverse=True)[:2]
        for s in states:
            k = max((k for k in range(1, len(PRIMITIVES))), key=lambda k: rows[s][k])
            gene.append((PRIMITIVES[k], s))
        start += node + 2
    return gene


@pytest.mark.parametrize("steps", [4, 5])
def test_parse_weights_matches_darts_rule(steps):
    rng = np.random.default_rng(steps)
    for _ in range(100):
        w = rng.normal(size=(len(G.edges(steps)), len(PRIMITIVES)))
        assert G.parse_weights(w, steps) == _darts_reference(w.tolist(), steps)


@pytest.mark.parametrize("name", G.NAMED_GENOTYPES)
def test_dict_and_literal_round_trips(name):
    g = getattr(G, name)
    d = G.to_dict(g)
    assert G.from_dict(json.loads(json.dumps(d))) == g
    literal = G.to_literal(g, "PASTED")
    scope = {"Genotype": Genotype}
    exec(literal, scope)  # what a user pastes into genotypes.py
    assert scope["PASTED"] == g


def test_from_dict_refuses_broken_genotypes():
    good = G.to_dict(G.DARTS_V2)
    for broken in ({**good, "normal": good["normal"][:-1]}, {**good, "reduce": [["conv_9x9", 0]] * 8},
                   {**good, "normal": [["skip_connect", 5]] * 8}, {"normal": []}, {**good, "reduce_concat": [9]}):
        with pytest.raises(ValueError):
            G.from_dict(broken)


def test_resolve(tmp_path):
    g, source = G.resolve("CNAS_ISIC_s5")
    assert g == G.CNAS_ISIC_s5 and source == "CNAS_ISIC_s5"

    run = tmp_path / "run"
    run.mkdir()
    best = run / "best_genotype.json"
    best.write_text(json.dumps({"genotype": G.to_dict(G.CNAS_ISIC_s4), "trial": 3, "loss": 1.0}))
    assert G.resolve(best) == (G.CNAS_ISIC_s4, str(best))
    assert G.resolve(str(run))[0] == G.CNAS_ISIC_s4
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(G.to_dict(G.DARTS_V2)))  # a genotype dict without the wrapper
    assert G.resolve(bare)[0] == G.DARTS_V2

    for spec in ("NO_SUCH_CELL", str(tmp_path / "missing.json"), str(tmp_path)):
        with pytest.raises(ValueError) as err:
            G.resolve(spec)
        assert "CNAS_ISIC_s5" in str(err.value) and "best_genotype.json" in str(err.value)
    for name, text in (("bad.json", "{not json"), ("list.json", "[1, 2]"), ("config.json", '{"EPOCHS": 1}')):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):  # the message names the file
            G.resolve(tmp_path / name)
