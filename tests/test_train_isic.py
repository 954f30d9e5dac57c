"""eval/train_isic.py end to end on a tiny ISIC-layout fixture: run files, resume, refusals, user errors, prediction."""
import csv
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import predict
import train_isic
from common.arch.genotypes import CNAS_ISIC_s4, CNAS_ISIC_s5
from common.config import ConfigError
from common.labeled.metrics import balanced_accuracy_from_csv
from common.labeled.model import build_model, check_training_memory
from common.machine import usable_cores
from conftest import ISIC_CLASSES as CLASSES
from conftest import ROOT, killed_after_epoch, write_isic

TINY = ["--IMAGE_SIZE=32", "--INIT_CHANNELS=8", "--LAYERS=3", "--EPOCHS=2", "--BATCH_SIZE=8", "--NUM_WORKERS=0",
        "--N_CAM=3", "--GENOTYPE=CNAS_ISIC_s4", "--VAL_FRACTION=0.25", "--RESIZED_CACHE=off", "--LR=0.05"]


@pytest.fixture(scope="module")
def script():
    return train_isic


@pytest.fixture(scope="module")
def finished_run(script, isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run_dir = script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY])
    assert run_dir == out
    return out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_end_to_end_writes_every_file(finished_run, isic):
    run = finished_run
    for name in ("config.json", "history.jsonl", "metrics.json", "predictions_val.csv", "predictions_test.csv",
                 "confusion_matrix.png", "confusion_matrix_val.png", "curves.png", "ckpt.pt", "best.pt", "split.csv",
                 "runtime.json", "finished.json", "genotype.json", "model_card.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "cam").glob("*.png"))) == 3
    assert not (run / "model.onnx").exists()  # EXPORT_ONNX is off by default
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["headline"] == "test" and metrics["genotype_source"] == "CNAS_ISIC_s4"
    for key in ("accuracy", "balanced_accuracy", "auc_macro", "recall", "n"):  # the headline: test, selected model
        assert metrics[key] == metrics["test"][key], key
    assert list(metrics["recall"]) == CLASSES
    best = metrics["best_epoch"]
    assert metrics["test"]["epoch"] == metrics["val_selected"]["epoch"] == best and metrics["val_last"]["epoch"] == 2
    for section in ("test", "val_selected", "val_last"):
        assert {"accuracy", "balanced_accuracy", "auc_macro", "recall", "precision", "confusion_matrix", "loss",
                "n"} <= set(metrics[section]), section
    # the validation numbers are the ones the epochs logged: the selected epoch's and the last one's
    assert metrics["val_selected"]["balanced_accuracy"] == pytest.approx(history[best - 1]["val_balanced_accuracy"])
    assert metrics["val_last"]["balanced_accuracy"] == pytest.approx(history[-1]["val_balanced_accuracy"])
    assert max(h["val_balanced_accuracy"] for h in history) == pytest.approx(metrics["val_selected"]["balanced_accuracy"])

    split = read_csv(run / "split.csv")
    assert metrics["split_sha1"] == hashlib.sha1((run / "split.csv").read_bytes()).hexdigest()
    ids = {s: [r[0] for r in split[1:] if r[1] == s] for s in ("train", "val", "test")}
    assert all(ids.values()) and len(set(sum(ids.values(), []))) == len(split) - 1 == 36  # disjoint, all images
    assert metrics["dataset"] == {"layout": "isic2019", "root": str(isic), "classes": CLASSES, "n_train": len(ids["train"]),
                                  "n_val": len(ids["val"]), "n_test": len(ids["test"]), "carved": ["val", "test"],
                                  "n_labeled": len(ids["train"])}  # LABEL_FRACTION 1: every training label
    truth = isic / "ISIC_2019_Training_GroundTruth.csv"
    for name, section in (("val", "val_selected"), ("test", "test")):
        rows = read_csv(run / f"predictions_{name}.csv")
        assert rows[0] == ["image", *CLASSES]  # the ground-truth CSV's order, UNK included
        assert sorted(r[0] for r in rows[1:]) == sorted(ids[name]) and len(rows) - 1 == metrics[section]["n"]
        # the ISIC challenge's way of scoring the saved predictions gives metrics.json's number
        scored = balanced_accuracy_from_csv(run / f"predictions_{name}.csv", truth)
        assert scored == pytest.approx(metrics[section]["balanced_accuracy"], abs=1e-12)

    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    ckpt = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    assert best["classes"] == CLASSES and best["config"]["INIT_CHANNELS"] == 8
    assert all(v.is_contiguous() for v in best["model"].values())  # trained channels_last, saved NCHW
    assert best["epoch"] == metrics["best_epoch"]
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert {"optimizer", "scheduler", "rng", "best"} <= set(ckpt)

    card = json.loads((run / "model_card.json").read_text())  # the selected model's size, without the auxiliary head
    inference = [v for k, v in best["model"].items() if not k.startswith("aux_head.") and v.is_floating_point()
                 and "running_" not in k]
    assert card["params"] == sum(v.numel() for v in inference) and card["macs"] > 0 and card["onnx"] is None
    assert card["image_size"] == 32 and card["cpu_latency_ms"]["runs"] == 30 and card["model"] == "CNAS_ISIC_s4"


def test_resumed_run_matches_uninterrupted(script, finished_run, isic, tmp_path, capsys):
    out = tmp_path / "resumed"
    args = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY]
    with pytest.raises(KeyboardInterrupt), killed_after_epoch(1):  # a kill right after epoch 1's ckpt.pt is on disk
        script.main(args)
    assert not (out / "metrics.json").exists()
    capsys.readouterr()
    script.main(args + ["--ALLOW_RUNTIME_CHANGE=True", "--NUM_WORKERS=0"])  # neither is compared on resume
    log = capsys.readouterr().out
    assert "resumed from" in log and "epoch 1/2 |" not in log and "epoch 2/2 |" in log  # epoch 1 not trained again

    full = json.loads((finished_run / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    for key in ("balanced_accuracy", "accuracy", "auc_macro", "recall", "n", "best_epoch", "split_sha1", "test",
                "val_selected", "val_last"):
        assert resumed[key] == full[key], key
    drop = ("seconds",)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k not in drop}  # noqa: E731
                          for line in path.read_text().splitlines()]
    assert strip(out / "history.jsonl") == strip(finished_run / "history.jsonl")
    for name in ("predictions_val.csv", "predictions_test.csv", "split.csv"):
        assert (out / name).read_text() == (finished_run / name).read_text(), name


def test_finished_run_folder_is_refused(script, finished_run, isic):
    before = (finished_run / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="finished"):
        script.main([f"--DATA_DIR={isic}", f"--OUT_DIR={finished_run}", *TINY])
    assert (finished_run / "metrics.json").read_text() == before


def _cli_error(script, capsys, args):
    with pytest.raises(SystemExit) as exc:
        script.cli(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_user_errors_exit_2_with_one_line(script, tmp_path, capsys):
    err = _cli_error(script, capsys, [f"--DATA_DIR={tmp_path / 'nowhere'}", f"--OUT_DIR={tmp_path / 'o1'}", *TINY])
    assert "nowhere" in err and "does not exist" in err
    assert not (tmp_path / "o1").exists()  # nothing created for a run that could not start

    bad = tmp_path / "renamed"
    write_isic(bad, n=8, image_column="image_name")
    err = _cli_error(script, capsys, [f"--DATA_DIR={bad}", f"--OUT_DIR={tmp_path / 'o2'}", *TINY])
    assert "'image' column" in err and "GroundTruth" in err
    assert not (tmp_path / "o2").exists()

    err = _cli_error(script, capsys, [f"--DATA_DIR={bad}", "--CLASS_BALANCE=sometimes", *TINY])
    assert "CLASS_BALANCE" in err


@pytest.mark.parametrize("setting, named", [
    ("--MEAN=(0.5,0.5)", "MEAN"), ("--STD=(0.2,0.2,0)", "STD"), ("--CROP_SCALE=(0.4,'1')", "CROP_SCALE"),
    ("--CROP_SCALE=(0.9,0.4)", "CROP_SCALE"), ("--LR=-0.1", "LR"), ("--TEST_FRACTION=0.8", "TEST_FRACTION"),
    ("--TEST_FRACTION=1.2", "TEST_FRACTION"), ("--BATCH_SIZE=1", "BATCH_SIZE"), ("--LABEL_SMOOTHING=1.0", "LABEL_SMOOTHING"),
    ("--DATA_DIR=[1]", "DATA_DIR"), ("--LAYOUT=folders", "LAYOUT"), ("--SPLIT_SEED=-1", "SPLIT_SEED"),
])
def test_mistyped_setting_stops_before_any_folder(script, isic, tmp_path, capsys, setting, named):
    out = tmp_path / "run"
    err = _cli_error(script, capsys, [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, setting])
    assert err.startswith("error: --") and f"--{named}=" in err and not out.exists()


def test_corrected_command_runs_after_a_typo(script, isic, tmp_path, capsys):
    out = tmp_path / "run"
    args = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, "--EPOCHS=1", "--N_CAM=0"]
    with pytest.raises(ConfigError, match=r"--MEAN=\(0.5, 0.5\): needs 3 numbers"):
        script.main(args + ["--MEAN=(0.5,0.5)"])
    assert not out.exists()
    assert script.main(args + ["--MEAN=(0.5,0.5,0.5)"]) == out and (out / "finished.json").exists()
    assert json.loads((out / "config.json").read_text())["MEAN"] == [0.5, 0.5, 0.5]


def test_resume_refuses_another_runtime_or_other_data(script, tmp_path, capsys):
    data = tmp_path / "isic"
    truth = write_isic(data, n=24)
    out = tmp_path / "run"
    args = [f"--DATA_DIR={data}", f"--OUT_DIR={out}", *TINY, "--N_CAM=0"]
    with pytest.raises(KeyboardInterrupt), killed_after_epoch(1):
        script.main(args)
    assert json.loads((out / "runtime.json").read_text())["autocast"] == "off"  # resolved on this CPU
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    # bf16 autocast now (as a CUDA run's 'auto' would resolve): refused, the folder untouched
    err = _cli_error(script, capsys, args + ["--AMP=bf16"])
    assert "ALLOW_RUNTIME_CHANGE" in err and "autocast" in err
    # the data changed since the run began: refused
    text = truth.read_text().splitlines()
    truth.write_text("\n".join(text[:-1]) + "\n")
    err = _cli_error(script, capsys, args)
    assert "split.csv differs" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    truth.write_text("\n".join(text) + "\n")
    # the user says so: the run goes on under bf16 autocast
    script.main(args + ["--AMP=bf16", "--ALLOW_RUNTIME_CHANGE=True"])
    assert "epoch 2/2 |" in capsys.readouterr().out and (out / "finished.json").exists()
    assert json.loads((out / "runtime.json").read_text())["autocast"] == "bfloat16"


def test_dermamnist_npz_is_scored_on_its_own_test_split(script, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 28), ("val", 14), ("test", 14)):
        labels = np.arange(n) % 7
        arrays[f"{split}_images"] = (rng.integers(0, 60, (n, 16, 16, 3)) + labels[:, None, None, None] * 25).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(n, 1)
    np.savez(tmp_path / "dermamnist.npz", **arrays)
    out = tmp_path / "run"
    script.main([f"--DATA_DIR={tmp_path / 'dermamnist.npz'}", f"--OUT_DIR={out}", *TINY, "--EPOCHS=1", "--N_CAM=0"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["carved"] == [] and metrics["n"] == metrics["dataset"]["n_test"] == 14
    assert sorted(r[0] for r in read_csv(out / "predictions_test.csv")[1:]) == sorted(f"test_{i}" for i in range(14))
    assert [r[0] for r in read_csv(out / "split.csv")[1:] if r[1] == "test"] == [f"test_{i}" for i in range(14)]


def test_num_workers_default_fits_the_machine(script):
    assert script.NUM_WORKERS == min(4, usable_cores())


@pytest.mark.slow
def test_unknown_genotype_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train_isic.py", "--GENOTYPE=CNAS_ISIC_s9", f"--OUT_DIR={tmp_path / 'run'}"],
        cwd=ROOT / "eval", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown GENOTYPE 'CNAS_ISIC_s9'")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # stopped before any run folder was made


def test_predict_py_writes_a_submission(finished_run, tmp_path):
    folder = tmp_path / "test_images"
    (folder / "sub").mkdir(parents=True)
    for i, where in enumerate((folder, folder, folder / "sub")):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(where / f"ISIC_9{i:06d}.jpg")
    (folder / "ISIC_broken.jpg").write_bytes(b"")  # zero bytes: skipped and recorded
    (folder / "notes.txt").write_text("not an image")  # ignored
    out = tmp_path / "pred"
    predict.main([f"--PREDICT_DIR={folder}", f"--CHECKPOINT={finished_run / 'best.pt'}", f"--OUT_DIR={out}",
                  "--NUM_WORKERS=0"])
    rows = read_csv(out / "submission.csv")
    assert rows[0] == ["image", *CLASSES]
    assert sorted(r[0] for r in rows[1:]) == ["ISIC_9000000", "ISIC_9000001", "ISIC_9000002"]
    probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    skipped = read_csv(out / "skipped_files.csv")
    assert [r[0].endswith("ISIC_broken.jpg") for r in skipped[1:]] == [True]


def test_predict_dir_in_train_isic_names_the_new_script(script, tmp_path, capsys):
    err = _cli_error(script, capsys, [f"--PREDICT_DIR={tmp_path}", f"--OUT_DIR={tmp_path / 'run'}"])
    assert err.startswith("error: --PREDICT_DIR: predicting a folder is its own script now: python predict.py")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("genotype", [CNAS_ISIC_s4, CNAS_ISIC_s5], ids=["CNAS_ISIC_s4", "CNAS_ISIC_s5"])
def test_paper_genotypes_build_at_224(genotype):
    cfg = {"INIT_CHANNELS": 8, "LAYERS": 6, "AUXILIARY_WEIGHT": 0.4}
    model = build_model(genotype, 9, cfg).eval()
    with torch.no_grad():
        logits, aux = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 9) and aux is None and torch.isfinite(logits).all()


def test_gpu_settings_sampler_and_a_broken_file(script, tmp_path, capsys):
    """bf16 autocast (the CUDA default) in NCHW, class-balanced batches, drop path and the resized copy, on the
    CPU, with one broken image among the data: it is skipped, recorded and summarised."""
    data = tmp_path / "isic"
    write_isic(data, n=30)
    (data / "ISIC_2019_Training_Input" / "ISIC_0000004.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "bf16"
    script.main([f"--DATA_DIR={data}", f"--OUT_DIR={out}", *TINY, "--EPOCHS=1", "--AMP=bf16", "--CHANNELS_LAST=off",
                 "--CLASS_BALANCE=both", "--DROP_PATH_PROB=0.2", "--N_CAM=1", f"--RESIZED_CACHE={tmp_path / 'cache'}"])
    assert "skipped 1 of 30 files" in capsys.readouterr().out
    skipped = read_csv(out / "skipped_files.csv")
    assert len(skipped) == 2 and skipped[1][0].endswith("ISIC_0000004.jpg")
    metrics = json.loads((out / "metrics.json").read_text())
    split = read_csv(out / "split.csv")[1:]
    for name, section in (("val", "val_selected"), ("test", "test")):
        ids = [r[0] for r in split if r[1] == name]
        predicted = [r[0] for r in read_csv(out / f"predictions_{name}.csv")[1:]]
        assert "ISIC_0000004" not in predicted
        assert metrics[section]["n"] == len(predicted) == len(set(ids) - {"ISIC_0000004"})
    assert len(list((out / "cam").glob("*.png"))) == 1


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    import random

    from common.labeled.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt", need=("rng",))["rng"])  # weights_only=True inside
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ---- the step's memory is probed before the first epoch ---------------------------------------------------------


def test_a_batch_that_cannot_fit_stops_before_the_first_epoch(script, isic, tmp_path, capsys, monkeypatch):
    """As the paper preset (C=58, 24 cells, 224 px, batch 160) on a CPU: one line naming BATCH_SIZE, no run folder,
    instead of the kernel's OOM killer mid-epoch (faked here: a tiny network on a 'device' of a few MB)."""
    import common.memory
    from common.labeled import step_memory

    out = tmp_path / "run"
    args = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, "--BATCH_SIZE=160", "--EPOCHS=1"]
    rng = torch.get_rng_state()
    mem = step_memory.probe_classifier(
        lambda: build_model(CNAS_ISIC_s4, 4, {"ARCH": None, "INIT_CHANNELS": 8, "LAYERS": 3, "AUXILIARY_WEIGHT": 0.4}),
        step_memory.LabeledStep(image_size=32, n_classes=4), batch_size=160, device="cpu")
    assert torch.equal(rng, torch.get_rng_state())  # the probe leaves the seeded streams alone
    room = int(mem.bytes_at(40) / common.memory.HEADROOM)  # batch 32 fits, 64 does not
    monkeypatch.setattr(common.memory, "available_bytes", lambda device: room)
    err = _cli_error(script, capsys, args)
    assert err.startswith("error: BATCH_SIZE=160: one training step needs about") and "on cpu" in err
    assert err.endswith("try --BATCH_SIZE=32") and not out.exists()

    monkeypatch.setattr(common.memory, "available_bytes", lambda device: mem.fixed // 2)  # not even 2 images fit
    err = _cli_error(script, capsys, args)
    assert "even BATCH_SIZE=2 would not fit: lower IMAGE_SIZE or INIT_CHANNELS" in err and not out.exists()


def test_the_step_memory_is_printed_before_training(capsys):
    """What check_training_memory prints (and returns) when the step fits."""
    from common.device import runtime
    from common.labeled.distributed import DistContext

    need = check_training_memory({"IMAGE_SIZE": 32, "BATCH_SIZE": 8, "AUXILIARY_WEIGHT": 0.4, "ARCH": None},
                        build_model(CNAS_ISIC_s4, 4, {"ARCH": None, "INIT_CHANNELS": 8, "LAYERS": 3,
                                                      "AUXILIARY_WEIGHT": 0.4}),
                        4, runtime("cpu", "off", "off"), DistContext())
    line = capsys.readouterr().out.strip()
    assert need > 0 and line.startswith("step memory: about") and "per step on cpu" in line
