"""Model card: parameter and MAC counts against hand counts, CPU latency, and ONNX exports within 1e-4."""
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torchvision

from common.arch.baselines import WithAux, build_baseline
from common.arch.cost import count_macs, count_params, cpu_latency, cuda_throughput
from common.arch.genotypes import DARTS_V2
from common.arch.networks import EvalNetwork
from common.labeled.model_card import (
    OnnxMismatch,
    export_onnx,
    model_card,
)


def plain_convnet():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),  # 32x32 out
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.ReLU(),  # 16x16 out
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def darts(aux=True):
    torch.manual_seed(0)
    return EvalNetwork(DARTS_V2, 7, C=8, layers=3, auxiliary=aux)


def test_macs_of_a_plain_convnet_equal_a_hand_count():
    by_hand = 32 * 32 * 8 * (3 * 3 * 3) + 16 * 16 * 16 * (8 * 3 * 3) + 16 * 10  # out pixels x out ch x kernel
    model = plain_convnet().train()
    assert count_macs(model, 32) == by_hand
    assert model.training  # counted in eval mode, mode given back
    assert count_macs(plain_convnet(), 64) == 4 * (by_hand - 160) + 160  # convs scale with the pixel count


def test_params_equal_torchvision_and_leave_the_aux_head_out():
    assert count_params(build_baseline("resnet18", 7)) == sum(
        p.numel() for p in torchvision.models.resnet18(num_classes=7).parameters())
    assert count_params(plain_convnet()) == (3 * 9 * 8 + 8) + 16 + (8 * 9 * 16) + (16 * 10 + 10)
    with_aux, without = darts(True), darts(False)
    assert count_params(with_aux) == count_params(without)  # DARTS's convention: the training-only head is not counted
    assert count_params(with_aux, include_aux=True) == sum(p.numel() for p in with_aux.parameters())
    assert count_params(with_aux, include_aux=True) > count_params(with_aux)
    assert count_macs(with_aux, 64) == count_macs(without, 64)


def test_cpu_latency_reports_median_p90_threads_and_leaves_the_model_alone():
    model = plain_convnet().train()
    before = torch.get_num_threads()
    lat = cpu_latency(model, 32, runs=5, warmup=1, threads=1)
    assert set(lat) == {"median", "p90", "runs", "threads", "channels_last"}
    assert 0 < lat["median"] <= lat["p90"] and lat["runs"] == 5 and lat["threads"] == 1
    assert torch.get_num_threads() == before and model.training
    assert next(model.parameters()).is_contiguous()  # the channels_last copy was a copy
    with pytest.raises(ValueError, match="runs >= 1"):
        cpu_latency(model, 32, runs=0)


def test_cuda_throughput_is_none_without_cuda():
    if torch.cuda.is_available():
        assert cuda_throughput(plain_convnet(), 32, 4, runs=2, warmup=1) > 0
    else:
        assert cuda_throughput(plain_convnet(), 32, 4) is None


def _check_onnx(result, path, image_size):
    assert result["ok"] and result["max_abs_diff"] <= 1e-4 and result["path"] == str(path)
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, image_size, image_size]
    assert len(graph.output) == 1  # logits only, even for a (logits, aux) model


def test_onnx_export_of_a_darts_network_with_aux_head_matches(tmp_path):
    model = darts(True).train()
    path = tmp_path / "darts.onnx"
    result = export_onnx(model, path, 64, check_batch=3)
    _check_onnx(result, path, 64)
    assert result["opset"] == onnx.load(str(path)).opset_import[0].version
    assert model.training  # the caller's model keeps its mode


def test_onnx_export_of_a_torchvision_model_matches(tmp_path):
    torch.manual_seed(0)
    model = WithAux(build_baseline("resnet18", 5))
    path = tmp_path / "resnet18.onnx"
    _check_onnx(export_onnx(model, path, 64, check_batch=2), path, 64)


class _Drifts(nn.Module):
    """Exports one function and computes another in PyTorch: a stand-in for an exporter bug."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        logits = self.fc(x.mean((2, 3)))
        return logits if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() else logits * 3


def test_onnx_mismatch_is_a_clear_runtime_error(tmp_path):
    with pytest.raises(OnnxMismatch, match="differs from PyTorch") as err:
        export_onnx(_Drifts(), tmp_path / "drift.onnx", 32)
    assert isinstance(err.value, RuntimeError)


def test_model_card_is_plain_json_with_the_listed_fields():
    card = model_card(darts(True), 64, 8, "cpu", latency_runs=3, latency_warmup=1)
    again = json.loads(json.dumps(card))
    assert again == card
    assert card["params"] == count_params(darts(False)) and card["macs"] == count_macs(darts(False), 64)
    assert card["macs_note"].startswith("MACs = FLOPs/2 from torch.utils.flop_counter at 64")
    assert card["image_size"] == 64 and card["torch"] == torch.__version__
    assert set(card["cpu_latency_ms"]) >= {"median", "p90", "runs", "threads"} and card["cpu_latency_ms"]["runs"] == 3
    assert card["cuda_throughput_img_s"] is None  # device cpu: not measured
    assert np.isfinite(card["cpu_latency_ms"]["median"])
