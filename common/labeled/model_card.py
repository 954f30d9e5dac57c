"""Size and speed of a classifier (parameters, MACs, CPU latency, CUDA throughput) and a checked ONNX export."""
import io
import warnings

import numpy as np
import torch
import torch.nn as nn

from common.arch.cost import (
    LATENCY_RUNS,
    LATENCY_WARMUP,
    count_macs,
    count_params,
    cpu_copy,
    cpu_latency,
    cuda_throughput,
    random_inputs,
)
from common.runs import atomic_write_bytes

ONNX_OPSET = 17  # ONNX opset of the export; onnxruntime >= 1.14 runs it, torch's TorchScript exporter writes it
ONNX_ATOL = 1e-4  # max abs difference of softmax probabilities, PyTorch vs onnxruntime


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


def export_onnx(model, path, image_size, check_batch=2, opset=ONNX_OPSET, atol=ONNX_ATOL):
    """Write `path` (.onnx, input 'image' (B, 3, S, S) with a dynamic batch axis, output 'logits' (B, K)) and
    check it: onnxruntime on the CPU must give softmax probabilities within `atol` of PyTorch's for a batch
    of check_batch random images (another batch size than the traced one, so the dynamic axis is tested too).

    Uses torch's TorchScript exporter (dynamo=False): the newer exporter needs onnxscript, which the project
    does not install. A (logits, aux) forward is exported as logits only. Returns {path, max_abs_diff, ok,
    opset}; raises OnnxMismatch (a RuntimeError) when the probabilities differ by more than atol.
    """
    import onnxruntime as ort

    net = LogitsOnly(cpu_copy(model, channels_last=False)).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        buf = io.BytesIO()
        torch.onnx.export(net, (random_inputs(image_size, 1),), buf, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    atomic_write_bytes(path, buf.getvalue())

    x = random_inputs(image_size, check_batch)
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
