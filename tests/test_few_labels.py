"""train_isic.py with few labels on a tiny ISIC 2019 folder: LABEL_FRACTION's subset marked in split.csv and used
alone, pre-training on the training split (or UNLABELED_DIR without held-out images) before the labeled epochs, a kill
during pre-training resumed to the uninterrupted result, pretrained.pt reused through PRETRAINED_WEIGHTS, and the
errors that stop before any run folder."""
import csv
import json

import pytest
import torch

import train_isic
from common.data.label_subset import labels_kept
from common.labeled import pretrain
from conftest import killed_after_epoch

TINY = ["--IMAGE_SIZE=32", "--INIT_CHANNELS=8", "--LAYERS=3", "--EPOCHS=2", "--BATCH_SIZE=8", "--NUM_WORKERS=0",
        "--N_CAM=0", "--LATENCY_RUNS=1", "--GENOTYPE=CNAS_ISIC_s4", "--VAL_FRACTION=0.25", "--RESIZED_CACHE=off",
        "--LR=0.05"]
FEW = ["--LABEL_FRACTION=0.5", "--PRETRAIN_EPOCHS=2"]


@pytest.fixture(scope="module")
def few_run(isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "few"
    assert train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, *FEW]) == out
    return out


def split_rows(run):
    with open(run / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_label_fraction_trains_on_its_subset_after_pretraining_on_the_whole_split(few_run):
    rows = split_rows(few_run)
    train = [r for r in rows if r["split"] == "train"]
    assert {r["labeled"] for r in train} == {"0", "1"} and {r["labeled"] for r in rows if r["split"] != "train"} == {""}
    labeled = [r for r in train if r["labeled"] == "1"]
    for c in ("MEL", "NV", "BCC"):  # half of each class's images, rounded half up (7 -> 4)
        assert sum(r["class"] == c for r in labeled) == labels_kept(sum(r["class"] == c for r in train), 0.5)

    metrics = json.loads((few_run / "metrics.json").read_text())
    assert metrics["dataset"]["n_labeled"] == len(labeled) and metrics["dataset"]["n_train"] == len(train)
    saved = torch.load(few_run / pretrain.PRETRAINED, weights_only=True)
    assert saved["images"] == len(train)  # pre-trained on every training image, labeled or not
    assert [h["epoch"] for h in saved["history"]] == [1, 2] and not (few_run / pretrain.CKPT).exists()
    assert len((few_run / pretrain.HISTORY).read_text().splitlines()) == 2


def test_a_kill_during_pretraining_resumes_to_the_same_run(isic, few_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "killed"
    save = pretrain.save_checkpoint

    def kill_after_first_pretrain_epoch(path, obj):
        save(path, obj)
        if path.name == pretrain.CKPT and obj["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "save_checkpoint", kill_after_first_pretrain_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, *FEW])
    monkeypatch.undo()
    assert (out / pretrain.CKPT).exists() and not (out / pretrain.PRETRAINED).exists() and not (out / "ckpt.pt").exists()

    capsys.readouterr()
    train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, *FEW])
    assert "pre-training: resumed" in capsys.readouterr().out
    for name in (pretrain.PRETRAINED, "best.pt"):
        a, b = (torch.load(run / name, weights_only=True)["model"] for run in (few_run, out))
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    same = ("balanced_accuracy", "auc_macro", "best_epoch")
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (few_run, out))
    assert {k: a[k] for k in same} == {k: b[k] for k in same}


def test_a_kill_during_the_labeled_epochs_resumes_after_the_pretraining(isic, few_run, tmp_path, capsys):
    out = tmp_path / "killed"
    with killed_after_epoch(1), pytest.raises(KeyboardInterrupt):
        train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, *FEW])
    stamp = (out / pretrain.PRETRAINED).stat().st_mtime_ns
    train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, *FEW])
    assert "resumed from" in capsys.readouterr().out
    assert (out / pretrain.PRETRAINED).stat().st_mtime_ns == stamp  # not pre-trained again
    a, b = (torch.load(run / "best.pt", weights_only=True)["model"] for run in (few_run, out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_weights_start_a_genotype_run(isic, few_run, tmp_path):
    out = tmp_path / "reused"
    # a learning rate so small that the trained backbone is still the file's: it was loaded, not re-initialised
    train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, "--LR=1e-12", "--EPOCHS=1",
                     f"--PRETRAINED_WEIGHTS={few_run / pretrain.PRETRAINED}"])
    backbone = torch.load(few_run / pretrain.PRETRAINED, weights_only=True)["model"]
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    for k in ("stem0.0.weight", "cells.2.pre1.1.weight"):
        assert torch.allclose(best[k], backbone[k], atol=1e-6), k
    assert not (out / pretrain.PRETRAINED).exists()


def _cli_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        train_isic.cli(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_errors_stop_in_one_line_before_any_run_folder(isic, few_run, tmp_path, capsys):
    out = tmp_path / "run"
    base = [f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY]
    torchvision_file = tmp_path / "plain.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, torchvision_file)
    for settings, says in (
        (["--LABEL_FRACTION=0.05"], "--LABEL_FRACTION=0.05 leaves no labeled training image of class MEL"),
        (["--LABEL_FRACTION=0"], "--LABEL_FRACTION=0"),
        (["--PRETRAIN_EPOCHS=-1"], "--PRETRAIN_EPOCHS=-1"),
        ([f"--UNLABELED_DIR={isic}"], "only pre-training reads it"),
        ([f"--UNLABELED_DIR={tmp_path / 'nowhere'}", "--PRETRAIN_EPOCHS=1"], "not a folder"),
        ([f"--PRETRAINED_WEIGHTS={torchvision_file}"], "a DARTS genotype takes no other weights"),
        ([f"--PRETRAINED_WEIGHTS={few_run / pretrain.PRETRAINED}", "--INIT_CHANNELS=12"], "does not fit this network"),
    ):
        assert says in _cli_error(capsys, base + settings)
        assert not out.exists(), settings


def test_unlabeled_dir_leaves_out_validation_and_test_images(isic, tmp_path, capsys):
    out = tmp_path / "unlabeled"
    train_isic.main([f"--DATA_DIR={isic}", f"--OUT_DIR={out}", *TINY, "--EPOCHS=1", "--PRETRAIN_EPOCHS=1",
                     f"--UNLABELED_DIR={isic / 'ISIC_2019_Training_Input'}"])  # every image of the dataset is there
    held_out = [r for r in split_rows(out) if r["split"] != "train"]
    n_files = len(list((isic / "ISIC_2019_Training_Input").glob("*.jpg")))
    assert torch.load(out / pretrain.PRETRAINED, weights_only=True)["images"] == n_files - len(held_out)
    assert f"({len(held_out)} validation/test images there left out)" in capsys.readouterr().out
