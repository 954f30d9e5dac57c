"""Regularized evolution (Real et al., AAAI 2019) as ask/tell over either genotype encoding.

The population is the last POPULATION trials told, oldest first. Until it is full, every proposal is a random sample
of the encoding (what ALGO='random' draws). Then a proposal samples SAMPLE_SIZE members at random, takes the best
(lowest loss; the older on a tie) as the parent and mutates exactly one edge of its genotype -- its op (to another
of the 7 non-'none' ops) or its input (to another earlier state the node does not already read), each kind with
probability 1/2 -- and the child enters the population when its result is told, pushing the oldest member out
(ageing, not the worst: the "regularized" of the title).

Mutations act on the genotype, not on the encoding's variables, so one mutation is one change of the cell in both
spaces: in the 'paper' space many variables change nothing and a kept edge's op is hidden behind the seeded tie-break,
so the child's sample is the genotype's own encoding (kept edges carry their op, every other edge 'none'), which
decodes back to exactly the mutated cell.

What joins the population: trials told as 'ok', and 'stopped' ones (early stopping) with the loss they had when they
stopped -- a pessimistic value, since losses fall with epochs, so a stopped trial seldom wins a tournament. Failed
and over-budget proposals never join.

Asynchrony and resume. `ask` reads only the population as it stands (the finished trials told so far, in trials.jsonl
order) and a generator seeded from (SEED, trial number), so trials in flight (WORKERS > 1) need no special care, and
a search rebuilt from trials.jsonl after a kill proposes for trial n exactly what the uninterrupted search would have
proposed, given the same finished trials.
"""
from collections import deque
from dataclasses import dataclass

import numpy as np

from common.arch import genotypes as G


@dataclass(frozen=True)
class Member:
    trial: int
    sample: dict
    loss: float


def random_sample(space, rng, steps=G.STEPS):
    """A uniform draw of every variable of the encoding (one choice index each)."""
    return {label: int(rng.integers(len(G.choices(label, space)))) for label in G.sample_labels(steps, space)}


def mutate(genotype, rng):
    """A copy of `genotype` with exactly one edge changed: its op, or its input state (kept distinct from the node's
    other input). Node 0 reads the two cell inputs, so only its ops can change."""
    cells = {cell_type: list(getattr(genotype, cell_type)) for cell_type in G.CELL_TYPES}
    edges = cells[G.CELL_TYPES[int(rng.integers(len(G.CELL_TYPES)))]]
    if rng.random() < 0.5:  # the op of one edge
        i = int(rng.integers(len(edges)))
        op, state = edges[i]
        others = [o for o in G.OPS if o != op]
        edges[i] = (others[int(rng.integers(len(others)))], state)
    else:  # the input of one edge of a node past the first
        i = int(rng.integers(2, len(edges)))
        op, state = edges[i]
        node, other = i // 2, edges[i ^ 1][1]
        free = [s for s in range(node + 2) if s not in (state, other)]
        edges[i] = (op, free[int(rng.integers(len(free)))])
    return G.Genotype(cells["normal"], list(genotype.normal_concat), cells["reduce"], list(genotype.reduce_concat))


class RegularizedEvolution:
    """ALGO='evolution': ask(trial) -> a sample of `space`; tell(record) -> a finished trial joins the population."""

    def __init__(self, space, seed, population, sample_size):
        if not 1 <= sample_size <= population:
            raise ValueError(f"SAMPLE_SIZE {sample_size} must be between 1 and POPULATION {population}")
        self.space, self.seed, self.size, self.sample_size = space, seed, population, sample_size
        self.population = deque()  # Members, oldest first

    def tell(self, record):
        loss = record.get("loss")
        if record.get("status") not in ("ok", "stopped") or not isinstance(loss, (int, float)) or not np.isfinite(loss):
            return
        self.population.append(Member(record["trial"], record["sample"], float(loss)))
        if len(self.population) > self.size:
            self.population.popleft()  # the oldest leaves, however good

    def parent(self, rng):
        """The best of SAMPLE_SIZE members drawn without replacement (the older one on a tie)."""
        picks = rng.choice(len(self.population), self.sample_size, replace=False)
        return min((self.population[i] for i in picks), key=lambda m: (m.loss, m.trial))

    def ask(self, trial):
        rng = np.random.default_rng([self.seed, trial, 2])  # 2: a stream of its own (TPE's suggestions use 1)
        if len(self.population) < self.size:
            return random_sample(self.space, rng)
        parent = self.parent(rng)
        child = mutate(G.sample_to_genotype(parent.sample, space=self.space), rng)
        return G.genotype_to_sample(child, space=self.space)
