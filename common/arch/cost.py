"""What a network costs: parameters used at inference, multiply-accumulates per image (torch's flop counter), CPU
latency and CUDA throughput, each measured on a copy so the caller's model is never moved or retyped."""
import contextlib
import copy
import time

import numpy as np
import torch

LATENCY_RUNS = 30  # timed batch-1 forward passes on the CPU
LATENCY_WARMUP = 5  # untimed passes first (allocator, kernel choice)
THROUGHPUT_RUNS = 20  # timed batches on CUDA
THROUGHPUT_WARMUP = 5
INPUT_SEED = 0  # the random input images (their values do not change the timings or the MAC count)


def random_inputs(image_size, batch, device="cpu"):
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(batch, 3, image_size, image_size, generator=g).to(device)  # (B, 3, S, S)


def _device_of(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def cpu_copy(model, channels_last):
    """A float32 copy on the CPU in eval mode: measuring never moves, retypes or re-modes the caller's model."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return copy.deepcopy(model).to("cpu", torch.float32).to(memory_format=fmt).eval()


def cpu_latency(model, image_size, runs=LATENCY_RUNS, warmup=LATENCY_WARMUP, threads=None, channels_last=True):
    """Batch-1 inference time on the CPU: {median, p90 (ms), runs, threads, channels_last}.

    Runs on a float32 copy in eval mode under no_grad. threads None = torch's current setting (restored after).
    channels_last: the memory format of copy and input (the training default on CPU; depthwise convs need it).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"cpu_latency needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    net = cpu_copy(model, channels_last)
    x = random_inputs(image_size, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        used = torch.get_num_threads()
        times = []
        with torch.no_grad():
            for i in range(warmup + runs):
                t = time.perf_counter()
                net(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t) * 1e3)
    finally:
        torch.set_num_threads(before)
    return {"median": round(float(np.median(times)), 3), "p90": round(float(np.percentile(times, 90)), 3),
            "runs": int(runs), "threads": int(used), "channels_last": bool(channels_last)}


def cuda_throughput(model, image_size, batch_size, runs=THROUGHPUT_RUNS, warmup=THROUGHPUT_WARMUP, autocast=None,
                    channels_last=True):
    """Inference images/s on CUDA at batch_size (a copy, eval mode, no_grad); None when CUDA is not available.

    autocast: None (float32) or a dtype such as torch.bfloat16. Timed between CUDA synchronisations.
    """
    if not torch.cuda.is_available():
        return None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).to("cuda", torch.float32).to(memory_format=fmt).eval()
    x = random_inputs(image_size, batch_size, "cuda").contiguous(memory_format=fmt)
    amp = torch.autocast("cuda", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.no_grad(), amp:
        for _ in range(warmup):
            net(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(runs):
            net(x)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    del net, x
    torch.cuda.empty_cache()
    return round(batch_size * runs / seconds, 1)


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
            model(random_inputs(image_size, 1, _device_of(model)) if example is None else example)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return int(counter.get_total_flops()) // 2
