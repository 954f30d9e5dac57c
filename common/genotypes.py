"""The DARTS vocabulary: PRIMITIVES, Genotype, named genotypes, and TPE sample <-> genotype encoding.

Encoding rule (deterministic; the original broke ties with unseeded noise):
a TPE sample picks one primitive per candidate edge. It becomes one-hot edge weights, and the genotype is
what DARTS's own parser returns for those weights with exact ties kept in edge order, i.e.
  * each node keeps the two incoming edges whose op is not 'none', lowest input state first;
  * a node with fewer than two such edges fills up with its 'none' edges, lowest input state first, and
    a filled edge gets the first non-'none' primitive (max_pool_3x3), as DARTS's argmax does on a tie;
  * the cell's output concatenates the last 4 nodes.
A genotype with two distinct inputs per node and STEPS nodes survives genotype -> sample -> genotype.
"""
import json
from collections import namedtuple
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


def sample_labels(steps=STEPS):
    """The names of the 2 x len(edges) categorical variables, normal cell first."""
    return [edge_label(c, n, s) for c in CELL_TYPES for n, s in edges(steps)]


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


def sample_to_genotype(sample, steps=STEPS):
    """A TPE sample {label: op index or op name} -> Genotype, by the rule in this module's docstring."""
    cells = {}
    for cell_type in CELL_TYPES:
        weights = np.zeros((len(edges(steps)), len(PRIMITIVES)))
        for e, (node, state) in enumerate(edges(steps)):
            choice = sample[edge_label(cell_type, node, state)]
            weights[e, PRIMITIVES.index(choice) if isinstance(choice, str) else int(choice)] = 1.0
        cells[cell_type] = parse_weights(weights, steps)
    return Genotype(cells["normal"], _concat(steps), cells["reduce"], _concat(steps))


def genotype_to_sample(genotype):
    """Genotype -> {label: op index}: kept edges carry their op, every other edge is 'none'."""
    check_genotype(genotype)
    steps = len(genotype.normal) // 2
    sample = {}
    for cell_type in CELL_TYPES:
        sample.update({edge_label(cell_type, n, s): 0 for n, s in edges(steps)})
        for i, (op, state) in enumerate(getattr(genotype, cell_type)):
            sample[edge_label(cell_type, i // 2, state)] = PRIMITIVES.index(op)
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
