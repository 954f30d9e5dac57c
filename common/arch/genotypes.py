"""The DARTS vocabulary: PRIMITIVES, Genotype, named genotypes, and the two TPE search spaces <-> genotype.

SPACES = ("paper", "explicit"); a sample maps each label of sample_labels(steps, space) to a choice index
(what hyperopt's hp.choice records; the option itself, e.g. an op name, is accepted too).

"paper" (default): one categorical over all 8 PRIMITIVES per candidate edge ({cell}_n{node}_s{state}),
40 variables for 5 nodes, as the CSNAS paper searched. The original turned a sample into one-hot edge weights
plus tiny unseeded noise and ran DARTS's parser; we do the same with the noise drawn from a generator seeded
by the sample itself, so the same sample gives the same genotype in every process while the genotypes keep
the original's distribution. Per cell and node:
  * noise = NOISE_SCALE * np.random.default_rng([cell index, node, choice of each of the node's edges in
    state order]).random((node + 2, len(PRIMITIVES))) is added to the one-hot weights;
  * DARTS's parser (parse_weights) then keeps the two edges whose best non-'none' weight is largest, so
    a node keeps two of its non-'none' edges, picked at random among them when it has more than two;
  * a node with fewer than two non-'none' edges fills up with randomly picked 'none' edges, each carrying a
    randomly picked non-'none' op (the op whose noise is largest);
  * the cell's output concatenates the last 4 nodes.
Under uniform sampling each node's input pair is uniform over its pairs of distinct states and each op is
uniform over the 7 non-'none' ops. Many variables do not change the genotype (a 'none' edge when the node
has two others), and a kept edge's op cannot be told apart from the tie-break noise by TPE.

"explicit": each node is its two inputs and two ops, as in DARTS's random-search baselines, so every
variable changes the cell: {cell}_n{node}_inputs picks one of the C(node+2, 2) unordered pairs of distinct
input states (itertools.combinations order), {cell}_n{node}_op0 / _op1 the non-'none' op on the lower /
higher of the two states. 30 variables for 5 nodes.

A genotype with two distinct inputs per node survives genotype -> sample -> genotype in both spaces
(compare with canonical(): the node's edge order may change).
"""
import json
import re
from collections import namedtuple
from itertools import combinations
from numbers import Integral
from pathlib import Path

import numpy as np

PRIMITIVES = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]
STEPS = 5  # intermediate nodes per searched cell
CONCAT_LAST = 4  # the cell output concatenates this many of the last nodes
CELL_TYPES = ("normal", "reduce")
SPACES = ("paper", "explicit")  # TPE encodings of a genotype; see the module docstring
OPS = PRIMITIVES[1:]  # the ops a kept edge can carry
NOISE_SCALE = 1e-3  # tie-break noise added to one-hot weights; far below the gap of 1 between chosen and not

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

# fmt: off
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)

# The cells the CSNAS paper found on ISIC 2019 with 4 and 5 intermediate nodes.
CNAS_ISIC_s4 = Genotype(
    normal=[("skip_connect", 0), ("avg_pool_3x3", 1), ("dil_conv_5x5", 0), ("dil_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_5x5", 1), ("skip_connect", 0), ("avg_pool_3x3", 1)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("skip_connect", 0), ("max_pool_3x3", 1), ("dil_conv_3x3", 0), ("dil_conv_5x5", 2),
            ("dil_conv_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 1), ("dil_conv_3x3", 2)],
    reduce_concat=[2, 3, 4, 5],
)

CNAS_ISIC_s5 = Genotype(
    normal=[("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("dil_conv_5x5", 0), ("sep_conv_5x5", 1),
            ("dil_conv_3x3", 0), ("avg_pool_3x3", 1), ("dil_conv_5x5", 0), ("dil_conv_5x5", 2),
            ("avg_pool_3x3", 0), ("max_pool_3x3", 1)],
    normal_concat=[3, 4, 5, 6],
    reduce=[("dil_conv_5x5", 0), ("max_pool_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 1),
            ("skip_connect", 0), ("dil_conv_5x5", 1), ("sep_conv_5x5", 0), ("avg_pool_3x3", 1),
            ("max_pool_3x3", 0), ("dil_conv_5x5", 1)],
    reduce_concat=[3, 4, 5, 6],
)
# fmt: on

NAMED_GENOTYPES = ("DARTS_V2", "CNAS_ISIC_s4", "CNAS_ISIC_s5")


def edges(steps=STEPS):
    """Candidate edges of a cell in encoding order: (node, input_state) for node 0..steps-1."""
    return [(node, state) for node in range(steps) for state in range(node + 2)]


def edge_label(cell_type, node, state):
    return f"{cell_type}_n{node}_s{state}"


def _check_space(space):
    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; choose from {', '.join(SPACES)}")


def input_pairs(node):
    """The unordered pairs of distinct input states node `node` can take, in the explicit space's order."""
    return list(combinations(range(node + 2), 2))


def sample_labels(steps=STEPS, space="paper"):
    """The names of the space's categorical variables, normal cell first, node by node."""
    _check_space(space)
    if space == "paper":
        return [edge_label(c, n, s) for c in CELL_TYPES for n, s in edges(steps)]
    return [f"{c}_n{n}_{v}" for c in CELL_TYPES for n in range(steps) for v in ("inputs", "op0", "op1")]


_LABEL = re.compile(r"(normal|reduce)_n(\d+)_(s\d+|inputs|op0|op1)")


def choices(label, space="paper"):
    """The options of one variable, in choice-index order: op names, or (state, state) pairs for _inputs."""
    _check_space(space)
    m = _LABEL.fullmatch(label)
    kind = m and m.group(3)
    if space == "paper" and kind and kind.startswith("s") and int(kind[1:]) < int(m.group(2)) + 2:
        return list(PRIMITIVES)
    if space == "explicit" and kind in ("op0", "op1"):
        return list(OPS)
    if space == "explicit" and kind == "inputs":
        return input_pairs(int(m.group(2)))
    raise ValueError(f"{label!r} is not a variable of the {space!r} space")


def _index(sample, label, options):
    """The choice index a sample holds for `label` (an index, or the option itself)."""
    try:
        value = sample[label]
    except KeyError:
        raise ValueError(f"the sample has no value for {label!r}") from None
    if isinstance(value, Integral):
        index = int(value)
    else:
        value = tuple(value) if isinstance(value, list) else value
        index = options.index(value) if value in options else -1
    if not 0 <= index < len(options):
        raise ValueError(f"{label}={value!r} is neither a choice index below {len(options)} nor one of {options}")
    return index


def parse_weights(weights, steps=STEPS):
    """DARTS genotype parser: (n_edges, len(PRIMITIVES)) weights -> [(op, state)] with 2 edges per node.

    Ties keep edge order (a stable sort and a first-wins argmax), so one-hot weights parse deterministically.
    """
    weights = np.asarray(weights, dtype=float)
    none = PRIMITIVES.index("none")
    ops = [k for k in range(len(PRIMITIVES)) if k != none]
    gene, start = [], 0
    for node in range(steps):
        w = weights[start : start + node + 2]
        best_op = [ops[int(np.argmax(row[ops]))] for row in w]  # argmax returns the first maximum
        keep = sorted(range(node + 2), key=lambda s: -w[s][best_op[s]])[:2]  # stable: lower state wins
        gene += [(PRIMITIVES[best_op[s]], s) for s in keep]
        start += node + 2
    return gene


def _concat(steps):
    return list(range(2 + steps - CONCAT_LAST, 2 + steps))


def _paper_cell(sample, cell_type, steps):
    weights = []
    for node in range(steps):
        labels = [edge_label(cell_type, node, state) for state in range(node + 2)]
        picked = [_index(sample, label, PRIMITIVES) for label in labels]
        seed = [CELL_TYPES.index(cell_type), node, *picked]  # the sample itself; no hash(), same in every process
        rows = NOISE_SCALE * np.random.default_rng(seed).random((node + 2, len(PRIMITIVES)))
        rows[np.arange(node + 2), picked] += 1.0
        weights.append(rows)
    return parse_weights(np.concatenate(weights), steps)


def _explicit_cell(sample, cell_type, steps):
    gene = []
    for node in range(steps):
        name = f"{cell_type}_n{node}_"
        low, high = input_pairs(node)[_index(sample, name + "inputs", input_pairs(node))]
        gene += [(OPS[_index(sample, name + "op0", OPS)], low), (OPS[_index(sample, name + "op1", OPS)], high)]
    return gene


def sample_to_genotype(sample, steps=STEPS, space="paper"):
    """A TPE sample {label: choice index} of `space` -> Genotype, by the rules in this module's docstring."""
    _check_space(space)
    parse = _paper_cell if space == "paper" else _explicit_cell
    cells = {cell_type: parse(sample, cell_type, steps) for cell_type in CELL_TYPES}
    return Genotype(cells["normal"], _concat(steps), cells["reduce"], _concat(steps))


def genotype_to_sample(genotype, space="paper"):
    """Genotype -> {label: choice index} of `space` that maps back to it (up to canonical()).

    paper: kept edges carry their op, every other edge is 'none'. explicit: each node's pair of input states
    and its ops, lower state first; a node whose two edges read the same state is refused.
    """
    _check_space(space)
    check_genotype(genotype)
    steps = len(genotype.normal) // 2
    sample = {}
    for cell_type in CELL_TYPES:
        cell = getattr(genotype, cell_type)
        if space == "paper":
            sample.update({edge_label(cell_type, n, s): 0 for n, s in edges(steps)})
            for i, (op, state) in enumerate(cell):
                sample[edge_label(cell_type, i // 2, state)] = PRIMITIVES.index(op)
            continue
        for node in range(len(cell) // 2):
            (op0, low), (op1, high) = sorted(((op, int(s)) for op, s in cell[2 * node : 2 * node + 2]), key=lambda e: e[1])
            if low == high:
                raise ValueError(f"{cell_type} node {node} reads state {low} twice; the explicit space needs two")
            name = f"{cell_type}_n{node}_"
            sample.update({name + "inputs": input_pairs(node).index((low, high)),
                           name + "op0": OPS.index(op0), name + "op1": OPS.index(op1)})
    return sample


def canonical(genotype):
    """The same cells with each node's two edges sorted by input state (for comparing genotypes)."""

    def sort_cell(cell):
        return [e for i in range(0, len(cell), 2) for e in sorted(cell[i : i + 2], key=lambda e: (e[1], e[0]))]

    return Genotype(
        sort_cell(genotype.normal), list(genotype.normal_concat), sort_cell(genotype.reduce), list(genotype.reduce_concat)
    )


def check_genotype(genotype):
    """Raise ValueError unless every node has two edges with known ops drawn from earlier states."""
    for cell_type in CELL_TYPES:
        cell = getattr(genotype, cell_type)
        concat = getattr(genotype, cell_type + "_concat")
        if len(cell) == 0 or len(cell) % 2:
            raise ValueError(f"{cell_type} cell needs two (op, input) pairs per node, got {len(cell)} pairs")
        for i, (op, state) in enumerate(cell):
            if op not in PRIMITIVES or op == "none":
                raise ValueError(f"{cell_type} cell: unknown op {op!r}; choose from {PRIMITIVES[1:]}")
            if not 0 <= int(state) < 2 + i // 2:
                raise ValueError(f"{cell_type} cell: node {i // 2} cannot take input state {state}")
        n_states = 2 + len(cell) // 2
        if not concat or any(not 0 <= int(s) < n_states for s in concat):
            raise ValueError(f"{cell_type}_concat {list(concat)} names states outside 0..{n_states - 1}")
    return genotype


def to_dict(genotype):
    return {k: [list(e) if isinstance(e, tuple) else e for e in v] for k, v in genotype._asdict().items()}


def from_dict(d):
    try:
        g = Genotype(
            normal=[(str(op), int(s)) for op, s in d["normal"]],
            normal_concat=[int(s) for s in d["normal_concat"]],
            reduce=[(str(op), int(s)) for op, s in d["reduce"]],
            reduce_concat=[int(s) for s in d["reduce_concat"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a genotype: {exc!r}") from None
    return check_genotype(g)


def to_literal(genotype, name="SEARCHED"):
    """A Python line one can paste into this file."""
    g = genotype
    return (
        f"{name} = Genotype(normal={[tuple(e) for e in g.normal]}, normal_concat={list(g.normal_concat)}, "
        f"reduce={[tuple(e) for e in g.reduce]}, reduce_concat={list(g.reduce_concat)})"
    )


def resolve(spec):
    """A genotype from a name in this module, a best_genotype.json, or a search run folder -> (Genotype, source)."""
    spec = str(spec)
    if spec in NAMED_GENOTYPES:
        return globals()[spec], spec
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "best_genotype.json"
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        try:
            return from_dict(data.get("genotype", data) if isinstance(data, dict) else data), str(path)
        except ValueError as exc:
            raise ValueError(f"{path} holds no usable genotype ({exc})") from None
    raise ValueError(
        f"unknown GENOTYPE {spec!r}: give one of {', '.join(NAMED_GENOTYPES)}, a best_genotype.json, "
        "or a search run folder that holds one"
    )
