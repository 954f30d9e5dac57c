"""Size of the eval network a genotype becomes (parameters, MACs), summed from cached per-op counts in milliseconds.

Building the ImageNet-shaped network (C=58, 24 cells) and counting its FLOPs at 224 px takes seconds on a CPU,
too slow to check every TPE proposal against a budget. Every genotype of one shape shares the same skeleton
(stems, the cells' input preprocessing, classifier); only the ops on the edges differ. So the skeleton and each
cell's channels and resolutions are measured once on a full network, and each op is counted once per (op, C,
stride, resolution); a genotype's size is then a sum. tests/test_cell_cost.py checks it against the full count.
"""
import functools

import torch

from common.arch.cost import count_macs, count_params
from common.arch.networks import Cell, EvalNetwork
from common.arch.operations import OPS


@functools.cache
def _op_cost(name, c, stride, h):
    """(params, MACs) of one edge op on a (1, c, h, h) input."""
    op = OPS[name](c, stride, True)
    return count_params(op), count_macs(op, None, example=torch.zeros(1, c, h, h))


def _edges(genotype, cells):
    """(op, C, stride, input side) of every edge of every cell; cells: [(reduction, C, side in, side out)]."""
    for reduction, c, h_in, h_out in cells:
        for name, state in genotype.reduce if reduction else genotype.normal:
            stride = 2 if reduction and state < 2 else 1
            yield name, c, stride, h_in if state < 2 else h_out


def _ops_cost(genotype, cells):
    costs = [_op_cost(*edge) for edge in _edges(genotype, cells)]
    return sum(p for p, _ in costs), sum(m for _, m in costs)


_SKELETONS = {}  # (network, steps, concat lengths) -> (skeleton params, skeleton MACs, cells)


def _skeleton(genotype, network):
    """The skeleton's (params, MACs) and each cell's (reduction, C, side in, side out), measured once per shape."""
    c, layers, px, classes = (int(v) for v in network)
    key = (c, layers, px, classes, len(genotype.normal) // 2, len(genotype.normal_concat), len(genotype.reduce_concat))
    if key not in _SKELETONS:
        model = EvalNetwork(genotype, classes, C=c, layers=layers, auxiliary=False)
        cells = []

        def record(cell, inputs, output):  # inputs (s0, s1): the edges from states 0/1 run at s1's side
            cells.append((cell.reduction, cell.pre1[1].out_channels, inputs[1].shape[-1], output.shape[-1]))

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, Cell)]
        try:
            params, macs = count_params(model), count_macs(model, px)
        finally:
            for h in hooks:
                h.remove()
        op_params, op_macs = _ops_cost(genotype, cells)
        _SKELETONS[key] = (params - op_params, macs - op_macs, cells)
    return _SKELETONS[key]


def eval_network_size(genotype, network):
    """(parameters, MACs per image) of EvalNetwork(genotype) for network = (C, cells, image px, classes), without the
    auxiliary head (it only trains); MACs = FLOPs / 2 as counted by torch.utils.flop_counter."""
    params, macs, cells = _skeleton(genotype, network)
    op_params, op_macs = _ops_cost(genotype, cells)
    return params + op_params, macs + op_macs
