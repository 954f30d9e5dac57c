"""eval/train_isic.py with a torchvision ARCH: run files, model card, ONNX export, weights files, prediction, compare.py."""
import csv
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision

import compare
import predict
import train_isic
from common.arch.baselines import BASELINES, cam_layer, head_name, unwrap_aux
from common.arch.cost import count_macs, count_params
from common.arch.genotypes import from_dict
from common.config import ConfigError
from common.device import runtime
from common.labeled import results
from common.labeled.cam import GradCAM
from common.labeled.model import build_model
from common.labeled.training import TrainStep, train_one_epoch
from conftest import ISIC_CLASSES as CLASSES
from conftest import write_isic

SMALL = ["--IMAGE_SIZE=32", "--EPOCHS=1", "--BATCH_SIZE=8", "--NUM_WORKERS=0", "--N_CAM=2", "--VAL_FRACTION=0.25",
         "--RESIZED_CACHE=off", "--LR=0.05", "--LATENCY_RUNS=3"]
DARTS = ["--GENOTYPE=CNAS_ISIC_s4", "--INIT_CHANNELS=8", "--LAYERS=3"]  # a tiny genotype network for comparisons
USUAL = ("config.json", "genotype.json", "runtime.json", "split.csv", "history.jsonl", "metrics.json", "model_card.json",
         "predictions_val.csv", "predictions_test.csv", "confusion_matrix.png", "confusion_matrix_val.png", "curves.png",
         "ckpt.pt", "best.pt", "finished.json")


@pytest.fixture(scope="module")
def script():
    return train_isic


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    root = tmp_path_factory.mktemp("isic")
    write_isic(root, n=24)
    return root


@pytest.fixture(scope="module")
def baseline_run(script, isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "resnet18"
    assert script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, "--ARCH=resnet18", "--EXPORT_ONNX=True"]) == out
    return out


@pytest.fixture(scope="module")
def genotype_run(script, isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "darts"
    assert script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, *DARTS, "--EXPORT_ONNX=True"]) == out
    return out


def read_json(path):
    return json.loads(path.read_text())


def torchvision_model(name):
    return torchvision.models.get_model(name, weights=None, num_classes=len(CLASSES))


def test_baseline_run_writes_every_file_and_a_model_card(baseline_run):
    run = baseline_run
    for name in USUAL + ("model.onnx",):
        assert (run / name).is_file(), name
    assert len(list((run / "cam").glob("*.png"))) == 2  # Grad-CAM on layer4

    metrics = read_json(run / "metrics.json")
    assert metrics["genotype"] is None and metrics["arch"] == "resnet18"
    assert metrics["genotype_source"] == "torchvision resnet18" and list(metrics["recall"]) == CLASSES
    assert read_json(run / "genotype.json") == {"genotype": None, "source": "torchvision resnet18", "arch": "resnet18"}
    assert [h["drop_path_prob"] for h in map(json.loads, (run / "history.jsonl").read_text().splitlines())] == [0.0]

    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert best["genotype"] is None and best["arch"] == best["config"]["ARCH"] == "resnet18"
    reference = torchvision_model("resnet18")
    reference.load_state_dict(best["model"])  # strict: plain torchvision keys, no wrapper prefix

    card = read_json(run / "model_card.json")
    assert card["model"] == "torchvision resnet18" and card["arch"] == "resnet18" and card["image_size"] == 32
    assert card["params"] == sum(p.numel() for p in reference.parameters())  # the same model, same 4 classes
    assert card["macs"] == count_macs(reference, 32)
    assert card["cpu_latency_ms"]["runs"] == 3 and 0 < card["cpu_latency_ms"]["median"] <= card["cpu_latency_ms"]["p90"]
    assert card["cuda_throughput_img_s"] is None  # trained on the CPU


@pytest.mark.parametrize("which", ["genotype_run", "baseline_run"])
def test_onnx_export_runs_in_onnxruntime_like_the_checkpoint(request, which):
    run = request.getfixturevalue(which)
    card = read_json(run / "model_card.json")["onnx"]
    assert card["ok"] and card["path"] == str(run / "model.onnx") and card["max_abs_diff"] <= 1e-4
    assert card["images"] == read_json(run / "metrics.json")["dataset"]["n_val"]  # every val image (fewer than 16)
    onnx.checker.check_model(onnx.load(run / "model.onnx"))

    # independently of the run's own check: best.pt rebuilt as predict mode does, against onnxruntime at batch 3
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    genotype = from_dict(best["genotype"]) if best["genotype"] is not None else None
    model = build_model(genotype, len(CLASSES), best["config"])
    model.load_state_dict(best["model"])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x)[0].double(), 1).numpy()
    (logits,) = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    assert np.abs(torch.softmax(torch.from_numpy(logits).double(), 1).numpy() - expected).max() <= 1e-4


def test_genotype_card_counts_parameters_without_the_auxiliary_head(genotype_run):
    card = read_json(genotype_run / "model_card.json")
    best = torch.load(genotype_run / "best.pt", map_location="cpu", weights_only=True)
    aux = sum(v.numel() for k, v in best["model"].items() if k.startswith("aux_head.") and "running" not in k
              and "num_batches" not in k)
    weights = sum(v.numel() for k, v in best["model"].items() if "running" not in k and "num_batches" not in k)
    assert aux > 0 and card["params"] == weights - aux and card["model"] == "CNAS_ISIC_s4" and card["arch"] is None


def test_compare_tables_a_genotype_run_and_a_baseline_run(genotype_run, baseline_run, tmp_path):
    out = tmp_path / "cmp"
    lines = []
    compare.main([str(genotype_run), str(baseline_run), f"--OUT_DIR={out}", "--SORT_BY=macs"], log=lines.append)
    rows = {r["name"]: r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert [r["arch"] for r in rows.values()] == ["CNAS_ISIC_s4", "resnet18"]  # fewer MACs first
    assert rows["darts"]["kind"] == "genotype" and rows["resnet18"]["kind"] == "baseline"
    for name, run in (("darts", genotype_run), ("resnet18", baseline_run)):
        card, metrics = read_json(run / "model_card.json"), read_json(run / "metrics.json")
        assert int(rows[name]["params"]) == card["params"] and int(rows[name]["macs"]) == card["macs"]
        assert float(rows[name]["balanced_accuracy"]) == pytest.approx(metrics["balanced_accuracy"])
        assert float(rows[name]["cpu_latency_ms"]) == card["cpu_latency_ms"]["median"]
    assert (out / "accuracy_vs_macs.png").stat().st_size > 0 and "| darts |" in (out / "comparison.md").read_text()


def test_predict_py_with_a_baseline_checkpoint(baseline_run, isic, tmp_path):
    out = tmp_path / "pred"
    predict.main([f"--PREDICT_DIR={isic / 'ISIC_2019_Training_Input'}", f"--CHECKPOINT={baseline_run / 'best.pt'}",
                 f"--OUT_DIR={out}", "--NUM_WORKERS=0"])
    rows = list(csv.reader(open(out / "submission.csv")))
    assert rows[0] == ["image", *CLASSES] and len(rows) == 25
    # the test images' rows equal the run's own predictions of them (same weights, same preprocessing)
    ours = {r[0]: np.array(r[1:], float) for r in rows[1:]}
    for r in list(csv.reader(open(baseline_run / "predictions_test.csv")))[1:]:
        assert np.allclose(ours[r[0]], np.array(r[1:], float), atol=2e-6), r[0]


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_builds_trains_a_step_and_explains(name):
    cfg = {"ARCH": name, "INIT_CHANNELS": 8, "LAYERS": 3, "AUXILIARY_WEIGHT": 0.4}  # the last three are ignored
    torch.manual_seed(0)
    rt = runtime("cpu", "off", "on")
    model = rt.place(build_model(None, len(CLASSES), cfg))
    assert count_params(model) == sum(p.numel() for p in torchvision_model(name).parameters())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = TrainStep(criterion=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1,
                     momentum=0.9), scaler=torch.amp.GradScaler("cpu", enabled=False), aux_weight=0.4, grad_clip=5.0)
    loss = train_one_epoch(model, [(x, y, torch.arange(4))], step, rt)
    assert np.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith(head_name(unwrap_aux(model)) + ".") for k in changed)  # the fresh head learned
    cam, logits = GradCAM(model, cam_layer(model))(x[:1], None)
    assert cam.shape == (32, 32) and logits.shape == (len(CLASSES),) and np.isfinite(cam).all()
    torchvision_model(name).load_state_dict(model.state_dict())  # checkpoints hold plain torchvision keys


def _cli_error(script, capsys, args):
    with pytest.raises(SystemExit) as exc:
        script.cli(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_bad_weights_files_are_refused_before_any_run_folder(script, isic, tmp_path, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file\n")
    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), other)
    for path, says in ((garbage, "cannot read"), (other, "does not fit resnet18"), (tmp_path / "nowhere.pth", "not found")):
        out = tmp_path / f"run_{path.stem}"
        err = _cli_error(script, capsys, [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, "--ARCH=resnet18",
                                          f"--PRETRAINED_WEIGHTS={path}"])
        assert says in err and str(path) in err and not out.exists(), err
    assert "looks like mobilenet_v3_large" in _cli_error(
        script, capsys, [f"--DATA_DIR={isic}", *SMALL, "--ARCH=resnet18", f"--PRETRAINED_WEIGHTS={other}"])


@pytest.mark.parametrize("settings, named", [
    (["--ARCH=resnet19"], "--ARCH='resnet19': choose one of resnet18"),
    (["--PRETRAINED_WEIGHTS=r18.pth"], "--PRETRAINED_WEIGHTS=r18.pth: file not found"),
    (["--ARCH=resnet18", "--GENOTYPE=CNAS_ISIC_s5"], "set one of them"),
    (["--LATENCY_RUNS=0"], "--LATENCY_RUNS=0"), (["--EXPORT_ONNX=yes"], "--EXPORT_ONNX=yes"),
])
def test_architecture_settings_are_checked_first(script, isic, tmp_path, capsys, settings, named):
    out = tmp_path / "run"
    assert named in _cli_error(script, capsys, [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, *settings])
    assert not out.exists()


def test_compatible_weights_file_is_loaded(script, isic, tmp_path, capsys):
    torch.manual_seed(1)
    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # torchvision's own file format, 1000 classes
    saved = torch.load(weights, weights_only=True)
    out = tmp_path / "run"
    # a learning rate so small that the trained weights are still the file's: they were loaded, not re-initialised
    script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, "--N_CAM=0", "--ARCH=resnet18", "--LR=1e-12",
                 f"--PRETRAINED_WEIGHTS={weights}"])
    log = capsys.readouterr().out
    assert f"backbone from {weights}" in log and "--MEAN=(0.485, 0.456, 0.406)" in log  # the normalisation note
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight"):
        assert torch.allclose(best["model"][key], saved[key], atol=1e-6), key
    assert best["model"]["fc.weight"].shape == (len(CLASSES), 512)  # a fresh 4-way head
    assert read_json(out / "metrics.json")["genotype_source"] == "torchvision resnet18, ImageNet backbone resnet18-imagenet.pth"


def test_onnx_mismatch_finishes_the_run_then_fails_in_one_line(script, isic, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(results, "onnx_prob_diff", lambda path, model, images: 0.5)  # as a broken export would give
    out = tmp_path / "run"
    err = _cli_error(script, capsys, [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, *DARTS, "--N_CAM=0",
                                      "--EXPORT_ONNX=True"])
    assert "ONNX export differs from PyTorch" in err and "5.00e-01 > 1e-04" in err and "run itself finished" in err
    for name in USUAL:  # every other result is there, and the run is finished: nothing to resume
        assert (out / name).is_file(), name
    assert not (out / "model.onnx").exists() and (out / "model_rejected.onnx").is_file()
    card = read_json(out / "model_card.json")["onnx"]
    assert card["ok"] is False and card["max_abs_diff"] == 0.5 and card["path"] == str(out / "model_rejected.onnx")
    with pytest.raises(ConfigError, match="finished"):
        script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *SMALL, *DARTS, "--N_CAM=0", "--EXPORT_ONNX=True"])
