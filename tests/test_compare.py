"""eval/compare.py (its library: common/labeled/run_groups.py, comparison.py) on fake run folders: models over repeated
runs (mean ± SD, n), paired differences with a bootstrap CI, per-run table, CSVs, figure, unfinished runs skipped, mixed
data refused."""
import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats

import common.stats as S
import compare as compare_script
from common.config import ConfigError
from common.labeled import repeats
from common.labeled.comparison import pareto_front

CLASSES = ["MEL", "NV", "BCC"]


def split_of(split_seed):
    return f"{split_seed:02d}" * 20  # a sha1's length, one per split seed


@pytest.fixture(scope="module")
def compare():
    return compare_script


def fake_run(parent, name, bacc, macs, arch=None, genotype="CNAS_ISIC_s5", classes=CLASSES, layout="isic2019",
             card=True, threads=1, seed=0, split_seed=0, split=None, root="/data", epochs=30):
    run = parent / name
    run.mkdir(parents=True)
    recall = {c: round(bacc + 0.01 * i, 4) for i, c in enumerate(classes)}
    (run / "config.json").write_text(json.dumps({"GENOTYPE": genotype, "ARCH": arch, "IMAGE_SIZE": 64, "SEED": seed,
                                                 "SPLIT_SEED": split_seed, "EPOCHS": epochs, "DATA_DIR": "/data",
                                                 "LAYOUT": "auto", "OUT_DIR": str(run)}))
    metrics = {"accuracy": bacc + 0.05, "balanced_accuracy": bacc, "auc_macro": bacc + 0.1, "recall": recall,
               "n": 120, "headline": "test", "test": {}, "val_selected": {}, "val_last": {},
               "split_sha1": split or split_of(split_seed),
               "dataset": {"layout": layout, "root": root, "classes": classes, "n_train": 400, "n_val": 80,
                           "n_test": 120},
               "genotype": None if arch else {"normal": [["skip_connect", 0]]}, "arch": arch, "genotype_source": genotype}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if card:
        (run / "model_card.json").write_text(json.dumps({
            "params": macs * 10, "macs": macs, "macs_note": "MACs = FLOPs/2", "image_size": 64,
            "cpu_latency_ms": {"median": macs / 1e6, "p90": macs / 1e6 + 1, "runs": 30, "threads": threads},
            "cuda_throughput_img_s": None, "torch": "2.14.1"}))
    return run


def read_csv(path):
    return list(csv.DictReader(open(path)))


@pytest.fixture
def parent(tmp_path):
    p = tmp_path / "eval"
    fake_run(p, "darts_run", 0.61, 80_000_000, genotype="/x/runs/search/20250101-1200/best_genotype.json")
    fake_run(p, "r18", 0.55, 600_000_000, arch="resnet18", genotype=None)
    fake_run(p, "mnv3", 0.66, 60_000_000, arch="mobilenet_v3_large", genotype=None)
    (p / "unfinished").mkdir()
    (p / "unfinished" / "config.json").write_text("{}")
    return p


def test_one_run_per_model_table_csv_and_figure(compare, parent, tmp_path):
    out = tmp_path / "cmp"
    lines = []
    assert compare.main([str(parent), f"--OUT_DIR={out}"], log=lines.append) == out
    assert any(line.startswith("skip ") and "unfinished" in line and "no metrics.json" in line for line in lines)

    rows = read_csv(out / "comparison.csv")
    assert [r["name"] for r in rows] == ["mnv3", "darts_run", "r18"]  # highest balanced accuracy first
    by = {r["name"]: r for r in rows}
    assert by["r18"]["arch"] == "resnet18" and by["r18"]["kind"] == "baseline" and by["r18"]["model"] == "resnet18"
    assert by["darts_run"]["arch"] == "20250101-1200/best_genotype.json" and by["darts_run"]["kind"] == "genotype"
    assert int(by["r18"]["macs"]) == 600_000_000 and int(by["r18"]["params"]) == 6_000_000_000
    assert float(by["mnv3"]["balanced_accuracy"]) == 0.66 and float(by["mnv3"]["auc_macro"]) == pytest.approx(0.76)
    assert float(by["darts_run"]["recall_NV"]) == pytest.approx(0.62) and float(by["darts_run"]["cpu_latency_ms"]) == 80

    md = (out / "comparison.md").read_text()
    assert "| mobilenet_v3_large | 1 | 1 | 64 | 600.00 | 60.0 | 60.0 | **0.660** | **0.760** |" in md  # one run: no SD
    assert "| mnv3 | mobilenet_v3_large | 0 | 0 | 64 | 600.00 | 60.0 | 60.0 | **0.660** | **0.760** |" in md
    assert "recall BCC |" in md and "MACs = FLOPs/2" in md and "n = 120" in md
    # one split shared by all: paired differences exist, but without an interval
    assert "| mobilenet_v3_large | 20250101-1200/best_genotype.json | 1 | +0.050 | +0.050 |" in md
    models = read_csv(out / "models.csv")
    assert [m["model"] for m in models] == ["mobilenet_v3_large", "20250101-1200/best_genotype.json", "resnet18"]
    assert models[0]["runs"] == "1" and models[0]["balanced_accuracy_sd"] == ""

    with Image.open(out / "accuracy_vs_macs.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert json.loads((out / "config.json").read_text())["RUNS"] == sorted(
        str((parent / n).resolve()) for n in ("darts_run", "mnv3", "r18"))


def test_three_split_seeds_give_mean_sd_and_a_paired_bootstrap_ci(compare, tmp_path):
    p = tmp_path / "eval"
    a = [0.60, 0.52, 0.58]  # model A on split seeds 0, 1, 2 (two training seeds on split 2)
    b = [0.55, 0.50, 0.50]
    for s in range(3):
        fake_run(p, f"a{s}", a[s], 5_000_000, genotype="DARTS_V2", split_seed=s)
        fake_run(p, f"b{s}", b[s], 600_000_000, arch="resnet18", genotype=None, split_seed=s)
    fake_run(p, "a2_seed1", 0.62, 5_000_000, genotype="DARTS_V2", split_seed=2, seed=1)
    fake_run(p, "b_other_split", 0.40, 600_000_000, arch="resnet18", genotype=None, split_seed=7)  # A never ran it
    out = tmp_path / "cmp"
    lines = []
    compare.main([str(p), f"--OUT_DIR={out}"], log=lines.append)

    models = {m["model"]: m for m in read_csv(out / "models.csv")}
    a_runs = a + [0.62]
    assert models["DARTS_V2"]["runs"] == "4" and models["DARTS_V2"]["splits"] == "3"
    assert models["DARTS_V2"]["seeds"] == "0 1" and models["DARTS_V2"]["split_seeds"] == "0 1 2"
    assert float(models["DARTS_V2"]["balanced_accuracy_mean"]) == pytest.approx(np.mean(a_runs))
    assert float(models["DARTS_V2"]["balanced_accuracy_sd"]) == pytest.approx(np.std(a_runs, ddof=1))
    assert models["resnet18"]["runs"] == "4" and models["resnet18"]["splits"] == "4"

    # paired over the 3 shared splits; split 2's two A runs are averaged first
    diffs = [a[0] - b[0], a[1] - b[1], (a[2] + 0.62) / 2 - b[2]]
    (pair,) = read_csv(out / "paired.csv")
    assert (pair["model_a"], pair["model_b"], pair["balanced_accuracy_splits"]) == ("DARTS_V2", "resnet18", "3")
    assert float(pair["balanced_accuracy_diff"]) == pytest.approx(np.mean(diffs))
    ref = stats.bootstrap((np.array(diffs),), np.mean, n_resamples=S.N_RESAMPLES, method="percentile",
                          rng=np.random.default_rng(S.BOOTSTRAP_SEED)).confidence_interval
    assert float(pair["balanced_accuracy_ci_low"]) == pytest.approx(ref.low)
    assert float(pair["balanced_accuracy_ci_high"]) == pytest.approx(ref.high)
    assert min(diffs) <= ref.low < np.mean(diffs) < ref.high <= max(diffs)

    md = (out / "comparison.md").read_text()
    assert f"| DARTS_V2 | 4 | 3 | 64 | 50.00 | 5.0 | 5.0 | **{np.mean(a_runs):.3f} ± {np.std(a_runs, ddof=1):.3f}** |" in md
    assert f"| DARTS_V2 | resnet18 | 3 | {np.mean(diffs):+.3f} [{ref.low:+.3f}, {ref.high:+.3f}] |" in md
    assert "percentile bootstrap interval over those splits" in md
    assert any("8 runs of 2 model(s)" in line for line in lines)
    with Image.open(out / "accuracy_vs_macs.png") as im:
        assert im.format == "PNG"


def test_models_of_one_architecture_are_named_apart_by_their_settings(compare, tmp_path):
    p = tmp_path / "eval"
    fake_run(p, "short", 0.5, 10, genotype="DARTS_V2", epochs=10)
    fake_run(p, "long", 0.6, 10, genotype="DARTS_V2", epochs=30)
    out = tmp_path / "cmp"
    compare.main([str(p), f"--OUT_DIR={out}"], log=lambda s: None)
    assert [m["model"] for m in read_csv(out / "models.csv")] == ["DARTS_V2 (EPOCHS=30)", "DARTS_V2 (EPOCHS=10)"]


def test_named_runs_sort_by_macs_and_a_run_without_card(compare, parent, tmp_path):
    fake_run(parent, "nocard", 0.5, 1, card=False, genotype="DARTS_V2")
    out = tmp_path / "cmp"
    compare.main([str(parent / "r18"), str(parent / "darts_run"), str(parent / "nocard"), "--SORT_BY=macs",
                  f"--OUT_DIR={out}"], log=lambda s: None)
    rows = read_csv(out / "comparison.csv")
    assert [r["name"] for r in rows] == ["darts_run", "r18", "nocard"]  # unknown MACs last
    assert rows[2]["macs"] == "" and rows[2]["params"] == ""
    md = (out / "comparison.md").read_text()
    assert "| nocard | DARTS_V2 | 0 | 0 | 64 | n/a | n/a | n/a |" in md and "No model_card.json" in md


def test_other_data_or_a_changed_split_is_refused_naming_both(compare, tmp_path):
    p = tmp_path / "mixed"
    fake_run(p, "a", 0.6, 10)
    fake_run(p, "b", 0.6, 10, root="/elsewhere")
    with pytest.raises(ConfigError, match=r"runs a and b differ in dataset folder \(/data vs /elsewhere\)"):
        compare.main([str(p), f"--OUT_DIR={tmp_path / 'o'}"], log=lambda s: None)
    assert not (tmp_path / "o").exists()  # refused before writing anything

    q = tmp_path / "classes"
    fake_run(q, "a", 0.6, 10)
    fake_run(q, "ham", 0.6, 10, classes=["nv", "mel"])
    with pytest.raises(ConfigError, match="runs a and ham differ in classes .MEL,NV,BCC vs nv,mel."):
        compare.main([str(q), f"--OUT_DIR={tmp_path / 'o'}"], log=lambda s: None)

    r = tmp_path / "changed"
    fake_run(r, "a", 0.6, 10, split_seed=1)
    fake_run(r, "b", 0.6, 10, split_seed=1, seed=1, split="cd" * 20)
    with pytest.raises(ConfigError, match="SPLIT_SEED 1 but on different splits .split_sha1 0101010101 vs cdcdcdcdcd"):
        compare.main([str(r), f"--OUT_DIR={tmp_path / 'o'}"], log=lambda s: None)


def test_user_errors_are_one_line_and_exit_2(compare, tmp_path, capsys):
    for argv in ([str(tmp_path / "missing")], [str(tmp_path)], ["--SORT_BY=speed"], ["--RUNZ=x"]):
        with pytest.raises(SystemExit) as exit_:
            compare.cli(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10, 0.5), (20, 0.4), (30, 0.7), (5, 0.3), (30, 0.6)]
    assert pareto_front(pts) == [(5, 0.3), (10, 0.5), (30, 0.7)]


def test_repeats_spread_and_pairs():
    assert S.spread([0.5, None, float("nan")]) == {"n": 1, "mean": 0.5, "sd": None}
    assert repeats.mean_sd_text(S.spread([0.5, 0.7])) == "0.600 ± 0.141"
    d = repeats.paired_difference({0: 0.5, 1: 0.6}, {1: 0.5, 2: 0.4})
    assert d["n"] == 1 and d["mean"] == pytest.approx(0.1) and d["ci"] is None and d["splits"] == [1]
    assert repeats.difference_text(d) == "+0.100"
    assert repeats.paired_difference({0: 0.5}, {1: 0.5})["mean"] is None
    assert S.bootstrap_mean_ci([0.2, 0.2, 0.2]) == [0.2, 0.2]  # no spread: a point, no scipy warning
