"""Size of a network: parameters used at inference and multiply-accumulates per image (torch's flop counter)."""
import torch

INPUT_SEED = 0  # the random input image (its values do not change the MAC count)


def _device_of(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _image(image_size, device):
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(1, 3, image_size, image_size, generator=g).to(device)  # (1, 3, S, S)


def count_params(model, include_aux=False):
    """Parameters used at inference: all of them, less an auxiliary head (a module named aux_head) unless
    include_aux. DARTS and the NAS papers after it report sizes without the auxiliary head, which only trains."""
    aux = set()
    if not include_aux:
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] == "aux_head":
                aux.update(id(p) for p in module.parameters())
    return int(sum(p.numel() for p in model.parameters() if id(p) not in aux))


def count_macs(model, image_size, example=None):
    """Multiply-accumulates of one (1, 3, S, S) image (or of `example`, a ready input) in eval mode; MACs = FLOPs / 2.

    FLOPs come from torch.utils.flop_counter.FlopCounterMode, which counts matrix products and convolutions
    (2 FLOPs per multiply-add) and nothing else: BatchNorm, activations, pooling, additions and biases are
    free, the usual convention of NAS papers. An auxiliary head is not counted (it runs only in training).
    """
    from torch.utils.flop_counter import FlopCounterMode

    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(_image(image_size, _device_of(model)) if example is None else example)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return int(counter.get_total_flops()) // 2
