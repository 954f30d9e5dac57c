"""The DARTS vocabulary and both TPE sample -> genotype encodings: deterministic, always valid, round-trip."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.arch import genotypes as G
from common.arch.genotypes import PRIMITIVES, Genotype

ROOT = Path(__file__).resolve().parents[1]

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


def test_sample_labels_per_space():
    labels = G.sample_labels(5)
    assert len(labels) == 40 == len(set(labels))
    assert len(G.edges(5)) == 20
    assert G.sample_labels() == labels == G.sample_labels(5, "paper")  # STEPS = 5, space 'paper' by default
    explicit = G.sample_labels(5, "explicit")
    assert len(explicit) == 30 == len(set(explicit))
    assert explicit[:3] == ["normal_n0_inputs", "normal_n0_op0", "normal_n0_op1"]
    assert explicit[-1] == "reduce_n4_op1"
    assert G.SPACES == ("paper", "explicit")
    for call in (lambda: G.sample_labels(5, "nope"), lambda: G.sample_to_genotype({}, space="nope"),
                 lambda: G.genotype_to_sample(G.DARTS_V2, "nope"), lambda: G.choices("normal_n0_s0", "nope")):
        with pytest.raises(ValueError, match="paper, explicit"):
            call()


def test_choices():
    assert G.choices("reduce_n4_s5") == PRIMITIVES
    assert G.choices("normal_n2_op1", "explicit") == PRIMITIVES[1:]
    assert G.choices("normal_n0_inputs", "explicit") == [(0, 1)]
    assert G.choices("reduce_n2_inputs", "explicit") == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert [len(G.choices(f"normal_n{i}_inputs", "explicit")) for i in range(5)] == [1, 3, 6, 10, 15]
    for label, space in (("normal_n0_s2", "paper"), ("normal_n0_inputs", "paper"), ("normal_n0_s0", "explicit"),
                         ("other_n0_op0", "explicit"), ("normal_n0_op2", "explicit")):
        with pytest.raises(ValueError, match=label):
            G.choices(label, space)


def _random_sample(rng, steps=G.STEPS, none_p=None, space="paper"):
    if space == "explicit":
        return {k: int(rng.integers(len(G.choices(k, space)))) for k in G.sample_labels(steps, space)}
    if none_p is None:
        return {k: int(rng.integers(len(PRIMITIVES))) for k in G.sample_labels(steps)}
    return {k: 0 if rng.random() < none_p else int(rng.integers(1, len(PRIMITIVES))) for k in G.sample_labels(steps)}


def _nodes(cell):
    return [sorted(map(tuple, cell[i : i + 2]), key=lambda e: e[1]) for i in range(0, len(cell), 2)]


def test_same_sample_same_genotype():
    sample = _random_sample(np.random.default_rng(1))
    a, b = G.sample_to_genotype(sample), G.sample_to_genotype(dict(sample))
    assert a == b
    # op names work like indices (hyperopt's space_eval returns names)
    assert G.sample_to_genotype({k: PRIMITIVES[v] for k, v in sample.items()}) == a
    assert G.sample_to_genotype({k: np.int64(v) for k, v in sample.items()}) == a
    explicit = _random_sample(np.random.default_rng(1), space="explicit")
    options = {k: G.choices(k, "explicit")[v] for k, v in explicit.items()}  # names and (state, state) pairs
    assert G.sample_to_genotype(options, space="explicit") == G.sample_to_genotype(explicit, space="explicit")


def test_same_sample_same_genotype_in_another_process():
    rng = np.random.default_rng(3)
    samples = {space: [_random_sample(rng, space=space) for _ in range(5)] for space in G.SPACES}
    here = {space: [G.to_dict(G.sample_to_genotype(s, space=space)) for s in samples[space]] for space in G.SPACES}
    code = ("import json, sys; from common.arch import genotypes as G; samples = json.load(sys.stdin); "
            "print(json.dumps({sp: [G.to_dict(G.sample_to_genotype(s, space=sp)) for s in v] for sp, v in samples.items()}))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # a different str hash must not matter
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(samples), capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)
    assert json.loads(out.stdout) == here


def test_bad_samples_are_refused():
    sample = _random_sample(np.random.default_rng(4))
    del sample["reduce_n3_s2"]
    with pytest.raises(ValueError, match="reduce_n3_s2"):
        G.sample_to_genotype(sample)
    for label, value, space in (("normal_n1_s0", 8, "paper"), ("normal_n1_s0", "conv_9x9", "paper"),
                                ("normal_n1_inputs", 3, "explicit"), ("normal_n1_op0", "none", "explicit")):
        sample = {**_random_sample(np.random.default_rng(4), space=space), label: value}
        with pytest.raises(ValueError, match=label):
            G.sample_to_genotype(sample, space=space)


@pytest.mark.parametrize("space", G.SPACES)
def test_random_samples_give_valid_genotypes(space):
    rng = np.random.default_rng(0)
    for i in range(300):
        g = G.sample_to_genotype(_random_sample(rng, none_p=[None, 0.5, 0.85][i % 3], space=space), space=space)
        assert G.check_genotype(g) is g
        assert g.normal_concat == [3, 4, 5, 6] and g.reduce_concat == [3, 4, 5, 6]
        for cell_type in G.CELL_TYPES:
            cell = getattr(g, cell_type)
            assert len(cell) == 2 * G.STEPS
            for node, pair in enumerate(_nodes(cell)):
                assert all(op != "none" and 0 <= s < node + 2 for op, s in pair)
                assert pair[0][1] < pair[1][1]  # two different input states


def test_paper_nodes_keep_their_real_edges_and_fill_from_none_edges():
    rng = np.random.default_rng(5)
    for i in range(300):
        sample = _random_sample(rng, none_p=[None, 0.5, 0.85][i % 3])
        g = G.sample_to_genotype(sample)
        for cell_type in G.CELL_TYPES:
            for node, pair in enumerate(_nodes(getattr(g, cell_type))):
                picked = {s: sample[G.edge_label(cell_type, node, s)] for s in range(node + 2)}
                real = {s: PRIMITIVES[c] for s, c in picked.items() if c != 0}
                kept_real = [(op, s) for op, s in pair if s in real]
                assert all(real[s] == op for op, s in kept_real)  # a real edge keeps its op
                assert len(kept_real) == min(2, len(real))  # real edges first, 'none' edges only to fill up


def test_paper_ties_and_fill_ins_are_not_biased_to_low_states_or_max_pool():
    kept_pairs, fill_ops = set(), set()
    rng = np.random.default_rng(6)
    for _ in range(200):
        sample = {k: 0 for k in G.sample_labels()}
        for s in range(4):  # node 2: all four edges real, so two of them must be dropped
            sample[G.edge_label("normal", 2, s)] = int(rng.integers(1, len(PRIMITIVES)))
        real, op = int(rng.integers(5)), int(rng.integers(1, len(PRIMITIVES)))
        sample[G.edge_label("reduce", 3, real)] = op  # node 3: one real edge, so one 'none' edge must fill in
        g = G.sample_to_genotype(sample)
        kept_pairs.add(tuple(s for _, s in _nodes(g.normal)[2]))
        assert (PRIMITIVES[op], real) in _nodes(g.reduce)[3]
        fill_ops.update(o for o, s in _nodes(g.reduce)[3] if s != real)
    assert kept_pairs == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert len(fill_ops) >= 5  # any non-'none' op, not always max_pool_3x3


def _original_rule(sample, rng, steps=G.STEPS):
    """The original CSNAS mapping: one-hot weights plus tiny noise from an unrelated generator, DARTS-parsed."""
    cells = []
    for cell_type in G.CELL_TYPES:
        w = 1e-3 * rng.random((len(G.edges(steps)), len(PRIMITIVES)))
        for e, (n, s) in enumerate(G.edges(steps)):
            w[e, sample[G.edge_label(cell_type, n, s)]] += 1.0
        cells.append(G.parse_weights(w, steps))
    return cells


def _shares(cells):
    """Input-state shares (states 0..6) and op shares (the 7 non-'none' ops) over all kept edges."""
    edges = [e for cell in cells for e in cell]
    states = np.bincount([s for _, s in edges], minlength=G.STEPS + 2) / len(edges)
    ops = np.array([sum(op == name for op, _ in edges) for name in PRIMITIVES[1:]]) / len(edges)
    return states, ops


def test_uniform_sampling_matches_the_original_distribution():
    rng = np.random.default_rng(7)
    samples = [_random_sample(rng) for _ in range(1200)]
    original = _shares([c for s in samples for c in _original_rule(s, rng)])
    for space in G.SPACES:
        space_samples = samples if space == "paper" else [_random_sample(rng, space=space) for _ in samples]
        ours = _shares([c for s in space_samples for c in G.sample_to_genotype(s, space=space)[::2]])
        for want, got in zip(original, ours):
            assert np.abs(want - got).max() < 0.02, (space, want, got)
    # each node's pair is uniform over its pairs of states; the 10 kept edges of a cell share that out
    expected = np.array([sum(2 / (n + 2) for n in range(G.STEPS) if s < n + 2) for s in range(G.STEPS + 2)]) / 10
    assert np.abs(original[0] - expected).max() < 0.02
    assert np.abs(original[1] - 1 / 7).max() < 0.02


def test_explicit_every_variable_changes_the_genotype():
    rng = np.random.default_rng(8)
    for _ in range(5):
        sample = _random_sample(rng, space="explicit")
        base = G.canonical(G.sample_to_genotype(sample, space="explicit"))
        for label in G.sample_labels(space="explicit"):
            for value in range(len(G.choices(label, "explicit"))):
                if value != sample[label]:
                    flipped = G.sample_to_genotype({**sample, label: value}, space="explicit")
                    assert G.canonical(flipped) != base, (label, value)


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


@pytest.mark.parametrize("space", G.SPACES)
def test_round_trip_genotype_sample_genotype(space):
    rng = np.random.default_rng(2)
    for g in [G.CNAS_ISIC_s5, G.DARTS_V2] + [_random_genotype(rng) for _ in range(200)]:
        steps = len(g.normal) // 2
        sample = G.genotype_to_sample(g, space)
        assert set(sample) == set(G.sample_labels(steps, space))
        assert G.canonical(G.sample_to_genotype(sample, steps, space)) == G.canonical(g)


def test_explicit_space_refuses_a_node_that_reads_one_state_twice():
    g = G.DARTS_V2._replace(normal=[("sep_conv_3x3", 0), ("skip_connect", 0)] + G.DARTS_V2.normal[2:])
    with pytest.raises(ValueError, match="normal node 0"):
        G.genotype_to_sample(g, "explicit")


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
