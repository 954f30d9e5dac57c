"""Training-free architecture scores of a candidate at initialisation: NASWOT and synflow, with their directions."""
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from common.arch.networks import SearchNetwork

# A sum of +-1 terms is an exact integer in float32 while it has fewer than 2**24 terms; Gram products of the
# activation codes are taken over column chunks of at most this many units so K stays exact.
_EXACT_COLUMNS = 2**23
_BATCHNORM = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d and SyncBatchNorm
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)  # the layers whose weights synflow's reference scores


def default_forward(model, x):
    """The path a score runs: model(x). For a candidate that is its SearchNetwork, the backbone alone (pooled
    features): the contrastive heads have the same shape for every candidate, the backbone is what the search chooses.
    """
    return model(x)


def _tensors(out):
    return [out] if torch.is_tensor(out) else [t for t in out if torch.is_tensor(t)]


def _live_relus(model, forward, x):
    """The nn.ReLU modules whose output reaches the output of `forward`, found from one image's autograd graph.

    NASWOT's reference counts a ReLU only if the backward pass visited it; in this search space a node outside
    the cell's concat that no later node reads is such a dead end. Eval mode: no batch statistics to update, and
    BatchNorm accepts the single image.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    grad_fns = {}  # module -> grad_fn of each of its outputs (kept alive so identity comparison stays valid)

    def record(module, inputs, out):
        grad_fns.setdefault(module, []).append(out.grad_fn)

    handles = [m.register_forward_hook(record) for m in relus]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            outs = _tensors(forward(model, x[:1].detach().clone().requires_grad_(True)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    seen, stack = set(), [t.grad_fn for t in outs]
    while stack:
        fn = stack.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            stack.extend(f for f, _ in fn.next_functions)
    return [m for m in relus if any(fn in seen for fn in grad_fns.get(m, ()))]


@torch.no_grad()
def naswot(model, images, forward=None):
    """NASWOT score: log|det K| of the batch's ReLU-code kernel (higher is better; no labels, no gradient step).

    Mellor et al., "Neural Architecture Search without Training", ICML 2021. Each image's code c_i is the on/off
    pattern (unit > 0) of every ReLU unit the forward pass runs; K[i, j] = N_A - Hamming(c_i, c_j), with N_A the
    number of units. With s = 2c - 1 (+-1 codes), s_i.s_j = N_A - 2 Hamming, so K = (S S^T + N_A) / 2: one Gram
    product per ReLU call, no codes stored.

    As in the authors' code (BayesWatch/nas-without-training): the network as built, i.e. train mode, so BatchNorm
    normalises with the batch's statistics (at initialisation the running statistics are 0/1 and eval-mode BN would
    leave the activations unnormalised); only ReLUs whose output reaches the output count. The model's mode and
    buffers (BN running statistics) are restored afterwards. An inplace ReLU is read correctly: the hook sees its
    rectified output, and relu(x) > 0 exactly when x > 0.

    images: (N, ...) float batch; forward(model, x) -> output, default `default_forward`.
    Returns a float; -inf when K is singular (e.g. two identical images).
    """
    forward = forward or default_forward
    relus = _live_relus(model, forward, images)
    n = images.shape[0]
    gram = torch.zeros(n, n, dtype=torch.float64, device=images.device)
    units = 0

    def accumulate(module, inputs, out):
        nonlocal units
        signs = (out.flatten(1) > 0).float().mul_(2).sub_(1)  # (N, units of this call), +-1
        for part in signs.split(_EXACT_COLUMNS, dim=1):
            gram.add_((part @ part.T).double())
        units += signs.shape[1]

    was_training = model.training
    buffers = [(b, b.clone()) for b in model.buffers()]
    handles = [m.register_forward_hook(accumulate) for m in relus]
    try:
        model.train()
        forward(model, images)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for b, saved in buffers:
            b.copy_(saved)
    kernel = (gram + units) / 2
    return torch.linalg.slogdet(kernel).logabsdet.item()


def _without_batchnorm(net):
    """Replace every BatchNorm module by Identity (the reference's synflow runs on such a copy)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BATCHNORM):
                setattr(parent, name, nn.Identity())
    return net


def synflow(model, input_shape, forward=None):
    """synflow score: sum over Conv/Linear weights of |theta * dR/dtheta| (higher is better; no data, no labels).

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic flow", NeurIPS
    2020; as a NAS proxy Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021. On a deep copy
    (the model is left untouched): BatchNorm replaced by Identity (the reference's `synflow`, bn=False), float64,
    every parameter replaced by its absolute value, eval mode (no dropout/drop-path noise), one all-ones input of
    shape (1, *input_shape), R = sum of the outputs of `forward`. As in the reference (SamsungLabs/zero-cost-nas),
    the sum runs over the weights of Conv and Linear layers (biases and norm parameters are not scored).

    input_shape: one sample's shape without the batch dimension, e.g. (3, 32, 32).
    """
    forward = forward or default_forward
    net = _without_batchnorm(copy.deepcopy(model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = list({id(m.weight): m.weight for m in net.modules() if isinstance(m, _WEIGHTED)}.values())
    for w in weights:
        w.requires_grad_(True)
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0].device)
    with torch.enable_grad():
        total = sum(t.sum() for t in _tensors(forward(net, x)))
        grads = torch.autograd.grad(total, weights, allow_unused=True)
    with torch.no_grad():
        return float(sum((w * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


def _synflow_on_batch(model, images, forward=None):
    return synflow(model, images.shape[1:], forward)


@dataclass(frozen=True)
class ScoreSpec:
    """A training-free score: fn(model, images, forward=None) -> float, and which way is better."""

    fn: Callable
    higher_is_better: bool

    def loss(self, value):
        """The value a minimiser (TPE) should see."""
        return -value if self.higher_is_better else value


SCORES = {
    "naswot": ScoreSpec(naswot, higher_is_better=True),
    "synflow": ScoreSpec(_synflow_on_batch, higher_is_better=True),
}


def score_batch(images, views, batch_size, seed, device):
    """The batch a candidate is scored on: `batch_size` images picked by a `seed`ed permutation (all if None).

    images: float (N, 3, H, W) used as they are, or with `views` (common.contrastive.views.ViewMaker) the search's uint8
    (N, H, W, 3) images turned into their seeded whole-image views: the inputs the candidate would train on.
    """
    if views is None and not images.is_floating_point():
        raise ValueError("uint8 images need `views` to become a normalised float batch")
    n = images.shape[0]
    k = n if batch_size is None else min(batch_size, n)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    chosen = images[pick.to(images.device)].to(device)
    if views is None:
        return chosen
    whole, _ = views(chosen, generator=torch.Generator(device=device).manual_seed(seed))
    return whole


@dataclass(frozen=True, kw_only=True)
class ScoreSettings:
    """The candidate network a training-free score is computed on, and its batch."""

    init_channels: int  # C of the SearchNetwork
    layers: int  # its cells
    seed: int  # the network's weights and the batch's images and views
    batch_size: int | None = None  # images scored (None = all)
    rt: object = None  # a common.device.Runtime: its device and channels_last (its autocast is not used)
    device: object = None  # without rt: this device (None = the images' device)


def score_candidate(name, genotype, images, views=None, *, settings):
    """Score of `genotype`'s SearchNetwork(C=settings.init_channels, layers) built with weights seeded by settings.seed.

    The batch comes from `score_batch` (same seed: every candidate sees the same images). The device is rt.device
    (a common.device.Runtime; its memory format is honoured for the weights and every input, its autocast is not:
    scores run in fp32/fp64), else `device`, else the images' device. The global RNG state is left as it was.
    """
    s = settings
    if name not in SCORES:
        raise ValueError(f"unknown training-free score {name!r}; choose from {', '.join(SCORES)}")
    device = torch.device(s.rt.device if s.rt is not None else s.device if s.device is not None else images.device)
    batch = score_batch(images, views, s.batch_size, s.seed, device)
    with torch.random.fork_rng(devices=[]):  # the network is built on the CPU: only its RNG is used
        torch.manual_seed(s.seed)
        model = SearchNetwork(genotype, C=s.init_channels, layers=s.layers)
    if s.rt is None:
        return SCORES[name].fn(model.to(device), batch)
    return SCORES[name].fn(s.rt.place(model), batch, lambda net, x: net(s.rt.inputs(x)))
