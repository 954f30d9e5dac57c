"""eval/train_isic.py end to end on a tiny ISIC-layout fixture: run files, resume, refusals, user errors, prediction."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from common.config import ConfigError
from common.genotypes import CNAS_ISIC_s4, CNAS_ISIC_s5
from common.metrics import balanced_accuracy_from_csv
from conftest import ROOT, load_script

CLASSES = ["MEL", "NV", "BCC", "UNK"]  # UNK as in ISIC 2019: a column that is never 1 in training
COLOURS = {"MEL": (70, 40, 30), "NV": (170, 110, 80), "BCC": (210, 150, 160)}
TINY = ["--IMAGE_SIZE=32", "--INIT_CHANNELS=8", "--LAYERS=3", "--EPOCHS=2", "--BATCH_SIZE=8", "--NUM_WORKERS=0",
        "--N_CAM=3", "--GENOTYPE=CNAS_ISIC_s4", "--VAL_FRACTION=0.25", "--RESIZED_CACHE=off", "--LR=0.05"]


def write_isic(root, n=36, seed=0, image_column="image"):
    """An ISIC 2019 layout: <root>/ISIC_2019_Training_Input/*.jpg and the one-hot ground-truth CSV."""
    rng = np.random.default_rng(seed)
    folder = root / "ISIC_2019_Training_Input"
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        cls = list(COLOURS)[i % len(COLOURS)]
        pixels = np.clip(np.array(COLOURS[cls]) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
        name = f"ISIC_{i:07d}"
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=90)
        rows.append([name] + ["1.0" if c == cls else "0.0" for c in CLASSES])
    truth = root / "ISIC_2019_Training_GroundTruth.csv"
    with open(truth, "w", newline="") as f:
        csv.writer(f).writerows([[image_column, *CLASSES], *rows])
    return truth


@pytest.fixture(scope="module")
def script():
    return load_script("eval/train_isic.py")


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    root = tmp_path_factory.mktemp("isic")
    write_isic(root)
    return root


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
    for name in ("config.json", "history.jsonl", "metrics.json", "predictions_val.csv", "confusion_matrix.png",
                 "curves.png", "ckpt.pt", "best.pt", "split.csv", "finished.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "cam").glob("*.png"))) == 3
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]

    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "auc_macro", "recall", "best_epoch", "genotype_source"):
        assert key in metrics, key
    assert list(metrics["recall"]) == CLASSES
    assert metrics["genotype_source"] == "CNAS_ISIC_s4"

    rows = read_csv(run / "predictions_val.csv")
    assert rows[0] == ["image", *CLASSES]  # the ground-truth CSV's order, UNK included
    split = read_csv(run / "split.csv")
    val_ids = [r[0] for r in split[1:] if r[1] == "val"]
    assert sorted(r[0] for r in rows[1:]) == sorted(val_ids) and len(rows) - 1 == metrics["n"]
    # the ISIC challenge's way of scoring the saved predictions gives metrics.json's number
    scored = balanced_accuracy_from_csv(run / "predictions_val.csv", isic / "ISIC_2019_Training_GroundTruth.csv")
    assert scored == pytest.approx(metrics["balanced_accuracy"], abs=1e-12)

    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    ckpt = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    assert best["classes"] == CLASSES and best["config"]["INIT_CHANNELS"] == 8
    assert all(v.is_contiguous() for v in best["model"].values())  # trained channels_last, saved NCHW
    assert best["epoch"] == metrics["best_epoch"]
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert {"optimizer", "scheduler", "rng", "best"} <= set(ckpt)


def test_resumed_run_matches_uninterrupted(script, finished_run, isic, tmp_path, monkeypatch, capsys):
    out = tmp_path / "resumed"
    args = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY]
    real_save = script.save_checkpoint

    def kill_after_first_epoch(path, obj):  # a kill right after epoch 1's ckpt.pt is on disk
        real_save(path, obj)
        if path.name == "ckpt.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(script, "save_checkpoint", kill_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        script.main(args)
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(script, "save_checkpoint", real_save)
    capsys.readouterr()
    script.main(args)
    log = capsys.readouterr().out
    assert "resumed from" in log and "epoch 1/2 |" not in log and "epoch 2/2 |" in log  # epoch 1 not trained again

    full = json.loads((finished_run / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    for key in ("balanced_accuracy", "accuracy", "auc_macro", "val_loss", "recall", "confusion_matrix", "best_epoch"):
        assert resumed[key] == full[key], key
    drop = ("seconds",)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k not in drop}  # noqa: E731
                          for line in path.read_text().splitlines()]
    assert strip(out / "history.jsonl") == strip(finished_run / "history.jsonl")
    assert (out / "predictions_val.csv").read_text() == (finished_run / "predictions_val.csv").read_text()


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


def test_unknown_genotype_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train_isic.py", "--GENOTYPE=CNAS_ISIC_s9", f"--OUT_DIR={tmp_path / 'run'}"],
        cwd=ROOT / "eval", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown GENOTYPE 'CNAS_ISIC_s9'")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # stopped before any run folder was made


def test_predict_dir_writes_a_submission(script, finished_run, tmp_path):
    folder = tmp_path / "test_images"
    (folder / "sub").mkdir(parents=True)
    for i, where in enumerate((folder, folder, folder / "sub")):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(where / f"ISIC_9{i:06d}.jpg")
    (folder / "ISIC_broken.jpg").write_bytes(b"")  # zero bytes: skipped and recorded
    (folder / "notes.txt").write_text("not an image")  # ignored
    out = tmp_path / "pred"
    script.main([f"--PREDICT_DIR={folder}", f"--CHECKPOINT={finished_run / 'best.pt'}", f"--OUT_DIR={out}",
                 "--NUM_WORKERS=0"])
    rows = read_csv(out / "submission.csv")
    assert rows[0] == ["image", *CLASSES]
    assert sorted(r[0] for r in rows[1:]) == ["ISIC_9000000", "ISIC_9000001", "ISIC_9000002"]
    probs = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    skipped = read_csv(out / "skipped_files.csv")
    assert [r[0].endswith("ISIC_broken.jpg") for r in skipped[1:]] == [True]


@pytest.mark.parametrize("genotype", [CNAS_ISIC_s4, CNAS_ISIC_s5], ids=["CNAS_ISIC_s4", "CNAS_ISIC_s5"])
def test_paper_genotypes_build_at_224(script, genotype):
    cfg = {"INIT_CHANNELS": 8, "LAYERS": 6, "AUXILIARY_WEIGHT": 0.4}
    model = script.build_model(genotype, 9, cfg).eval()
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
    val_ids = [r[0] for r in read_csv(out / "split.csv")[1:] if r[1] == "val"]
    predicted = [r[0] for r in read_csv(out / "predictions_val.csv")[1:]]
    assert "ISIC_0000004" not in predicted and metrics["n"] == len(predicted) == len(set(val_ids) - {"ISIC_0000004"})
    assert len(list((out / "cam").glob("*.png"))) == 1


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    import random

    from common.training import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt", need=("rng",))["rng"])  # weights_only=True inside
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
