"""Latency of the evaluation network each finalist becomes, measured on this machine: SELECT='fastest''s number."""
import torch

from common.arch import genotypes as G
from common.arch.cost import cpu_latency, cuda_throughput
from common.arch.networks import EvalNetwork
from common.device import device_name

RUNS, WARMUP = 10, 2  # timed and untimed batch-1 forward passes per finalist


def finalist_latency(genotype, network, device, runs=RUNS, warmup=WARMUP):
    """{'latency_ms', 'method', 'device'}: batch-1 inference time of EvalNetwork(genotype) at network = (C, cells,
    px, classes), float32, eval mode, seeded weights (they do not change the time). On a CPU the median of `runs`
    timed passes with torch's thread setting; on CUDA the time per image of `runs` batch-1 passes between
    synchronisations."""
    c, layers, px, classes = network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EvalNetwork(G.from_dict(genotype), classes, C=c, layers=layers, auxiliary=False)
    device = torch.device(device)
    if device.type == "cuda":
        per_s = cuda_throughput(model, px, 1, runs=runs, warmup=warmup)
        ms, method = 1000.0 / per_s, f"CUDA, batch 1, mean of {runs} passes after {warmup} warm-up, float32"
    else:
        lat = cpu_latency(model, px, runs=runs, warmup=warmup)
        ms = lat["median"]
        method = f"CPU, batch 1, median of {runs} passes after {warmup} warm-up, {lat['threads']} threads, float32"
    return {"latency_ms": round(float(ms), 3), "method": method, "device": device_name(device)}
