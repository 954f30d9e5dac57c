"""eval/compare.py on fake run folders: table content, CSV, figure, unfinished runs skipped, mixed data refused."""
import csv
import json

import pytest
from PIL import Image

from common.config import ConfigError
from conftest import load_script

CLASSES = ["MEL", "NV", "BCC"]
SPLIT = "ab" * 20  # a sha1's length


@pytest.fixture(scope="module")
def compare():
    return load_script("eval/compare.py")


def fake_run(parent, name, bacc, macs, arch=None, genotype="CNAS_ISIC_s5", split=SPLIT, classes=CLASSES,
             layout="isic2019", card=True, threads=1):
    run = parent / name
    run.mkdir(parents=True)
    recall = {c: round(bacc + 0.01 * i, 4) for i, c in enumerate(classes)}
    (run / "config.json").write_text(json.dumps({"GENOTYPE": genotype, "ARCH": arch, "IMAGE_SIZE": 64, "SEED": 0,
                                                 "DATA_DIR": "/data", "LAYOUT": "auto"}))
    metrics = {"accuracy": bacc + 0.05, "balanced_accuracy": bacc, "auc_macro": bacc + 0.1, "recall": recall,
               "n": 120, "headline": "test", "test": {}, "val_selected": {}, "val_last": {}, "split_sha1": split,
               "dataset": {"layout": layout, "root": "/data", "classes": classes, "n_train": 400, "n_val": 80,
                           "n_test": 120},
               "genotype_source": genotype}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if card:
        (run / "model_card.json").write_text(json.dumps({
            "params": macs * 10, "macs": macs, "macs_note": "MACs = FLOPs/2", "image_size": 64,
            "cpu_latency_ms": {"median": macs / 1e6, "p90": macs / 1e6 + 1, "runs": 30, "threads": threads},
            "cuda_throughput_img_s": None, "torch": "2.14.1"}))
    return run


@pytest.fixture
def parent(tmp_path):
    p = tmp_path / "eval"
    fake_run(p, "darts_run", 0.61, 80_000_000, genotype="/x/runs/search/20250101-1200/best_genotype.json")
    fake_run(p, "r18", 0.55, 600_000_000, arch="resnet18", genotype=None)
    fake_run(p, "mnv3", 0.66, 60_000_000, arch="mobilenet_v3_large", genotype=None)
    (p / "unfinished").mkdir()
    (p / "unfinished" / "config.json").write_text("{}")
    return p


def test_table_csv_and_figure_from_a_parent_folder(compare, parent, tmp_path):
    out = tmp_path / "cmp"
    lines = []
    assert compare.main([str(parent), f"--OUT_DIR={out}"], log=lines.append) == out
    assert any(line.startswith("skip ") and "unfinished" in line and "no metrics.json" in line for line in lines)

    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["name"] for r in rows] == ["mnv3", "darts_run", "r18"]  # highest balanced accuracy first
    by = {r["name"]: r for r in rows}
    assert by["r18"]["arch"] == "resnet18" and by["r18"]["kind"] == "baseline"
    assert by["darts_run"]["arch"] == "20250101-1200/best_genotype.json" and by["darts_run"]["kind"] == "genotype"
    assert int(by["r18"]["macs"]) == 600_000_000 and int(by["r18"]["params"]) == 6_000_000_000
    assert float(by["mnv3"]["balanced_accuracy"]) == 0.66 and float(by["mnv3"]["auc_macro"]) == pytest.approx(0.76)
    assert float(by["darts_run"]["recall_NV"]) == pytest.approx(0.62) and float(by["darts_run"]["cpu_latency_ms"]) == 80

    md = (out / "comparison.md").read_text()
    header, rule, first, *_ = md.splitlines()
    assert header.split(" | ")[:3] == ["| run", "genotype / arch", "px"] and "recall BCC |" in header
    assert first.startswith("| mnv3 | mobilenet_v3_large | 64 | 600.00 | 60.0 | 60.0 | **0.660** | **0.760** |")
    assert "MACs = FLOPs/2" in md and "n = 120" in md

    png = out / "accuracy_vs_macs.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert json.loads((out / "config.json").read_text())["RUNS"] == sorted(
        str((parent / n).resolve()) for n in ("darts_run", "mnv3", "r18"))


def test_named_runs_sort_by_macs_and_a_run_without_card(compare, parent, tmp_path):
    fake_run(parent, "nocard", 0.5, 1, card=False)
    out = tmp_path / "cmp"
    compare.main([str(parent / "r18"), str(parent / "darts_run"), str(parent / "nocard"), "--SORT_BY=macs",
                  f"--OUT_DIR={out}"], log=lambda s: None)
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["name"] for r in rows] == ["darts_run", "r18", "nocard"]  # unknown MACs last
    assert rows[2]["macs"] == "" and rows[2]["params"] == ""
    md = (out / "comparison.md").read_text()
    assert "| nocard | CNAS_ISIC_s5 | 64 | n/a | n/a | n/a |" in md and "No model_card.json" in md


def test_different_splits_or_classes_are_refused_naming_both(compare, tmp_path):
    p = tmp_path / "mixed"
    fake_run(p, "a", 0.6, 10)
    fake_run(p, "b", 0.6, 10, split="cd" * 20)
    with pytest.raises(ConfigError, match=r"runs a and b differ in split \(split_sha1\) \(ababababab vs cdcdcdcdcd\)"):
        compare.main([str(p), f"--OUT_DIR={tmp_path / 'o'}"], log=lambda s: None)
    assert not (tmp_path / "o").exists()  # refused before writing anything

    q = tmp_path / "classes"
    fake_run(q, "a", 0.6, 10)
    fake_run(q, "ham", 0.6, 10, classes=["nv", "mel"])
    with pytest.raises(ConfigError, match="runs a and ham differ in classes .MEL,NV,BCC vs nv,mel."):
        compare.main([str(q), f"--OUT_DIR={tmp_path / 'o'}"], log=lambda s: None)


def test_user_errors_are_one_line_and_exit_2(compare, tmp_path, capsys):
    for argv in ([str(tmp_path / "missing")], [str(tmp_path)], ["--SORT_BY=speed"], ["--RUNZ=x"]):
        with pytest.raises(SystemExit) as exit_:
            compare.cli(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_pareto_front_keeps_only_undominated_points(compare):
    pts = [(10, 0.5), (20, 0.4), (30, 0.7), (5, 0.3), (30, 0.6)]
    assert compare.pareto_front(pts) == [(5, 0.3), (10, 0.5), (30, 0.7)]
