"""Networks built from a genotype: the CIFAR-style search backbone and the ImageNet-style evaluation network."""
import torch
import torch.nn as nn

from common.arch.operations import OPS, FactorizedReduce, ReLUConvBN, drop_path


class _ChannelCat(torch.autograd.Function):
    """torch.cat along channels whose backward hands each input a channels_last-contiguous gradient.

    A plain cat's backward gives channel slices of a channels_last gradient, which are contiguous in no format,
    and the CPU BatchNorm/conv backward kernels fall to a path about 4x slower on them (a whole search step
    ~25% slower on CPU); one copy per slice is cheaper. Values are identical; other layouts are left as views.
    """

    @staticmethod
    def forward(ctx, *xs):
        ctx.sizes = [x.shape[1] for x in xs]
        return torch.cat(xs, dim=1)

    @staticmethod
    def backward(ctx, grad):
        parts = grad.split(ctx.sizes, dim=1)
        if grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last):
            parts = [p.contiguous(memory_format=torch.channels_last) for p in parts]
        return tuple(parts)


def cat_channels(xs):
    """(N, C_i, H, W) tensors -> (N, sum C_i, H, W); see _ChannelCat for why not plain torch.cat."""
    return _ChannelCat.apply(*xs) if torch.is_grad_enabled() else torch.cat(xs, dim=1)


class Cell(nn.Module):
    """A DARTS cell: two preprocessed inputs, len(ops)/2 nodes each summing two ops, concat of some states."""

    def __init__(self, ops, concat, c_prev_prev, c_prev, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_prev_prev, c) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.inputs = [int(s) for _, s in ops]
        self.concat = [int(s) for s in concat]
        self.multiplier = len(self.concat)
        self.ops = nn.ModuleList(
            OPS[name](c, 2 if reduction and state < 2 else 1, True) for name, state in ops
        )

    def forward(self, s0, s1, drop_prob=0.0):
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(0, len(self.ops), 2):
            h = []
            for op, src in ((self.ops[i], self.inputs[i]), (self.ops[i + 1], self.inputs[i + 1])):
                out = op(states[src])
                if not isinstance(op, nn.Identity):  # DARTS never drops the identity path
                    out = drop_path(out, drop_prob, self.training)
                h.append(out)
            states.append(h[0] + h[1])
        return cat_channels([states[i] for i in self.concat])


def _stack_cells(genotype, c_prev_prev, c_prev, c, layers, reduce_prev_first):
    """Cells with reductions at 1/3 and 2/3 depth; returns (cells, channels out)."""
    cells, reduction_prev = nn.ModuleList(), reduce_prev_first
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c *= 2
        ops, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal, genotype.normal_concat)
        cell = Cell(ops, concat, c_prev_prev, c_prev, c, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, cell.multiplier * c
    return cells, c_prev


class SearchNetwork(nn.Module):
    """CIFAR-style backbone of a search candidate: 3x3 stem, cells, global pool -> (N, feature_dim) features.

    With C=32, 8 cells and 4-node concat the pooled feature is 512-d (4 x 128 channels). The two projection heads the
    contrastive loss trains it with are common/contrastive/net.py's ContrastiveNet (ContrastiveNet.search_candidate).
    Memory format is the caller's: common.device.Runtime places the weights and converts the inputs alike.
    """

    def __init__(self, genotype, C=32, layers=8, stem_multiplier=3):
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells, self.feature_dim = _stack_cells(genotype, c_stem, c_stem, C, layers, False)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):  # (N, 3, H, W) -> (N, feature_dim)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.pool(s1).flatten(1)


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS's ImageNet auxiliary classifier on the 2/3-depth feature map (pooled to 2x2 for any input size)."""

    def __init__(self, c, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the main path's feature map: must not change it
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # no BatchNorm after it: DARTS has that one commented out
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """ImageNet-style network (DARTS's NetworkImageNet shape): two stride-2 stems, cells, classifier.

    forward returns (logits, aux_logits); aux_logits is None unless training with the auxiliary head.
    """

    def __init__(self, genotype, num_classes, C=58, layers=24, auxiliary=True, drop_path_prob=0.0):
        super().__init__()
        self.drop_path_prob = drop_path_prob
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        self.cells, c_out = _stack_cells(genotype, C, C, C, layers, True)
        self.aux_index = 2 * layers // 3
        self.aux_head = None
        if auxiliary:
            self.aux_head = AuxiliaryHeadImageNet(self.cells[self.aux_index].multiplier * C * 4, num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(s1)
        return self.classifier(self.pool(s1).flatten(1)), aux

    def last_cell(self):
        """The module whose output Grad-CAM explains (the final feature map)."""
        return self.cells[-1]
