"""Size and speed of a classifier (parameters, MACs, CPU latency, CUDA throughput) and a checked ONNX export."""
import contextlib
import copy
import io
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

from common.arch.size import count_macs, count_params
from common.runs import atomic_write_bytes

ONNX_OPSET = 17  # ONNX opset of the export; onnxruntime >= 1.14 runs it, torch's TorchScript exporter writes it
ONNX_ATOL = 1e-4  # max abs difference of softmax probabilities, PyTorch vs onnxruntime
LATENCY_RUNS = 30  # timed batch-1 forward passes on the CPU
LATENCY_WARMUP = 5  # untimed passes first (allocator, kernel choice)
THROUGHPUT_RUNS = 20  # timed batches on CUDA
THROUGHPUT_WARMUP = 5
INPUT_SEED = 0  # the random input images (their values do not change the timings or the MAC count)


class OnnxMismatch(RuntimeError):
    """The exported ONNX model's probabilities differ from PyTorch's by more than the tolerance."""


class LogitsOnly(nn.Module):
    """Forward returns the logits of a model whose forward may return (logits, aux) (DARTS EvalNetwork, WithAux)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _inputs(image_size, batch, device="cpu"):
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(batch, 3, image_size, image_size, generator=g).to(device)  # (B, 3, S, S)


def _device_of(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _cpu_copy(model, channels_last):
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
    net = _cpu_copy(model, channels_last)
    x = _inputs(image_size, 1)
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
    x = _inputs(image_size, batch_size, "cuda").contiguous(memory_format=fmt)
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


def export_onnx(model, path, image_size, check_batch=2, opset=ONNX_OPSET, atol=ONNX_ATOL):
    """Write `path` (.onnx, input 'image' (B, 3, S, S) with a dynamic batch axis, output 'logits' (B, K)) and
    check it: onnxruntime on the CPU must give softmax probabilities within `atol` of PyTorch's for a batch
    of check_batch random images (another batch size than the traced one, so the dynamic axis is tested too).

    Uses torch's TorchScript exporter (dynamo=False): the newer exporter needs onnxscript, which the project
    does not install. A (logits, aux) forward is exported as logits only. Returns {path, max_abs_diff, ok,
    opset}; raises OnnxMismatch (a RuntimeError) when the probabilities differ by more than atol.
    """
    import onnxruntime as ort

    net = LogitsOnly(_cpu_copy(model, channels_last=False)).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        buf = io.BytesIO()
        torch.onnx.export(net, (_inputs(image_size, 1),), buf, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    atomic_write_bytes(path, buf.getvalue())

    x = _inputs(image_size, check_batch)
    with torch.no_grad():
        expected = torch.softmax(net(x).double(), dim=1).numpy()  # (B, K)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    got = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    if got.shape != expected.shape:
        raise OnnxMismatch(f"ONNX model {path} returns shape {got.shape} for a batch of {check_batch}, PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if not diff <= atol:  # also catches NaN
        raise OnnxMismatch(f"ONNX model {path} differs from PyTorch: max |softmax difference| {diff:.2e} > {atol:.0e}")
    return {"path": str(path), "max_abs_diff": diff, "ok": True, "opset": int(opset)}


def model_card(model, image_size, batch_size, device, latency_runs=LATENCY_RUNS, latency_warmup=LATENCY_WARMUP,
               threads=None):
    """Size and speed of a classifier, ready for model_card.json (plain JSON types).

    device: where the model trains; CUDA throughput is measured (at batch_size) only when it is a CUDA device.
    """
    device = torch.device(device)
    return {
        "params": count_params(model),
        "params_note": "parameters used at inference (an auxiliary head is left out)",
        "macs": count_macs(model, image_size),
        "macs_note": f"MACs = FLOPs/2 from torch.utils.flop_counter at {image_size} px (convolutions and matrix "
                     "products only), one image, eval mode",
        "image_size": int(image_size),
        "cpu_latency_ms": cpu_latency(model, image_size, runs=latency_runs, warmup=latency_warmup, threads=threads),
        "cuda_throughput_img_s": cuda_throughput(model, image_size, batch_size) if device.type == "cuda" else None,
        "cuda_batch_size": int(batch_size) if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
