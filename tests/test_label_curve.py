"""eval/label_curve.py on a tiny ISIC 2019 folder: the grid of trainings and pre-trainings, its files, a kill resumed
without redoing finished work, compare.py over its runs of 3 split seeds, and the errors that stop before a folder."""
import csv
import json

import pytest
from PIL import Image

import compare
import label_curve
from common.labeled import pretrain
from conftest import write_isic

TRAIN = ("--IMAGE_SIZE=32", "--INIT_CHANNELS=8", "--LAYERS=3", "--BATCH_SIZE=8", "--NUM_WORKERS=0",
         "--GENOTYPE=CNAS_ISIC_s4", "--RESIZED_CACHE=off", "--THREADS=1", "--LR=0.05")


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    root = tmp_path_factory.mktemp("isic")
    write_isic(root, n=48)
    return root


def argv(isic, out, fractions="(0.5, 1.0)", seeds="(0, 1)"):
    return [f"--DATA_DIR={isic}", "--PRESET=paper", f"--LABEL_FRACTIONS={fractions}", f"--SEEDS={seeds}",
            "--PRETRAIN_EPOCHS=1", "--EPOCHS=1", "--MIN_STEPS=2", f"--OUT_DIR={out}", f"--TRAIN_ARGS={TRAIN!r}"]


@pytest.mark.slow
def test_a_killed_curve_resumes_and_compare_groups_its_runs_over_three_split_seeds(isic, tmp_path, monkeypatch,
                                                                                     capsys):
    out = tmp_path / "curve"
    args = argv(isic, out, fractions="(0.5,)", seeds="(0, 1, 2)")
    calls, armed, real_train = [], [True], label_curve.train

    def killed_at_third(cfg):
        calls.append(cfg["OUT_DIR"])
        if armed[0] and len(calls) == 3:
            raise KeyboardInterrupt  # as a kill during the third training would
        return real_train(cfg)

    monkeypatch.setattr(label_curve, "train", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        label_curve.main(args)
    assert len(list(csv.DictReader(open(out / "curve.csv")))) == 2 and not (out / "finished.json").exists()
    pretrained = out / "pretrain" / "s0" / pretrain.PRETRAINED
    stamp = pretrained.stat().st_mtime_ns

    calls.clear()
    armed[0] = False
    capsys.readouterr()
    label_curve.main(args)
    assert [c.split("/")[-1] for c in calls] == [  # the two finished ones are read, not trained again
        "scratch_f0.5_s1", "pretrained_f0.5_s1", "scratch_f0.5_s2", "pretrained_f0.5_s2"]
    assert pretrained.stat().st_mtime_ns == stamp  # split 0's pre-training is reused, not redone
    assert "run 6/6 pretrained fraction 0.5   seed 2" in capsys.readouterr().out

    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"} and {r["epochs"] for r in rows} == {"2"}  # MIN_STEPS
    for r in rows:  # each row is its run folder's test score, and the pre-trained arm started from its split's file
        run = json.loads(open(f"{r['run']}/metrics.json").read())
        assert float(r["balanced_accuracy"]) == pytest.approx(run["balanced_accuracy"])
        cfg = json.loads(open(f"{r['run']}/config.json").read())
        assert cfg["LABEL_FRACTION"] == 0.5 and cfg["SPLIT_SEED"] == cfg["SEED"] == int(r["seed"]) and cfg["EPOCHS"] == 2
        want = str(out / "pretrain" / f"s{r['seed']}" / pretrain.PRETRAINED) if r["arm"] == "pretrained" else None
        assert cfg["PRETRAINED_WEIGHTS"] == want and cfg["PRETRAIN_EPOCHS"] == 0
    md = (out / "curve.md").read_text()
    assert "| 0.5 |" in md and "3 / 3 |" in md and "machine:" in md
    with Image.open(out / "label_curve.png") as im:
        assert im.format == "PNG"
    assert (out / "finished.json").exists()

    # compare.py over the curve's runs: two models (the arms), each over 3 split seeds, paired with a CI
    compare.main([str(out / "runs"), f"--OUT_DIR={tmp_path / 'cmp'}"], log=lambda s: None)
    models = {m["model"]: m for m in csv.DictReader(open(tmp_path / "cmp" / "models.csv"))}
    assert len(models) == 2 and {m["runs"] for m in models.values()} == {"3"}
    assert {m["split_seeds"] for m in models.values()} == {"0 1 2"}
    assert any("PRETRAINED_WEIGHTS=pretrained.pt" in name for name in models)  # the arms are told apart by their start
    (pair,) = csv.DictReader(open(tmp_path / "cmp" / "paired.csv"))
    assert pair["balanced_accuracy_splits"] == "3" and pair["balanced_accuracy_ci_low"] != ""
    assert "±" in (tmp_path / "cmp" / "comparison.md").read_text()


@pytest.mark.slow  # asks train_isic.py for its settings in a process of its own
def test_settings_that_cannot_work_stop_before_a_folder(isic, tmp_path, capsys):
    out = tmp_path / "curve"
    for args, says in (
        (argv(isic, out, fractions="(0.01, 1.0)"), "SPLIT_SEED 0: --LABEL_FRACTION=0.01 leaves no labeled training image"),
        (argv(isic, out) + ["--TRAIN_ARGS=('--SEED=3',)"], "--SEED=3 is set by the curve itself"),
        (argv(isic, out) + ["--TRAIN_ARGS=('--EPOCS=3',)"], "unknown setting --EPOCS"),
        (argv(isic, out, seeds="(0, 0)"), "--SEEDS=(0, 0)"),
        (argv(isic, out, fractions="(0, 1.0)"), "every share must lie in (0, 1]"),
    ):
        with pytest.raises(SystemExit) as exit_:
            label_curve.cli(args)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
        assert not out.exists(), args
