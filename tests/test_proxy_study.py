"""search/proxy_study.py: which genotypes, study.csv -> correlations.json with scipy alone, a tiny study end to end,
nce equal to the search's own trial score, a failed part recorded, resume without redoing anything, user errors."""
import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import common.data.images
import proxy_study
import search
from common.arch import genotypes as G
from common.config import ConfigError
from common.contrastive.trainer import NonFiniteLoss
from common.labeled import run as labeled_run
from common.study import measure as study_measure
from common.study.analysis import HIGHER_IS_BETTER, correlations
from common.study.analysis import CorrelationSettings as Judging
from common.study.columns import csv_text, study_rows
from common.study.measure import PartLog, random_genotypes, search_top
from common.study.report import format_table, report_markdown
from conftest import killed_after_epoch, write_isic

SEARCH_TINY = ["--EPOCHS=1", "--INIT_CHANNELS=4", "--LAYERS=3", "--BATCH_SIZE=8", "--IMAGE_SIZE=16", "--SEED=0",
               "--DECODE_WORKERS=1", "--DEVICE=cpu", "--BUDGET_NETWORK=(8,3,32,4)"]
STUDY_TINY = ["--K=3", "--SEEDS=2", "--NCE_SEEDS=2", "--MIN_RELIABILITY=0", "--TOP=1", "--EPOCHS=2",
              "--INIT_CHANNELS=8", "--LAYERS=3", "--IMAGE_SIZE=32",
              "--BATCH_SIZE=8", "--DEVICE=cpu", "--THREADS=1", "--N_RESAMPLES=200", "--VAL_FRACTION=0.25",
              "--TRAIN_ARGS=('--NUM_WORKERS=0','--RESIZED_CACHE=off','--LR=0.1')"]


def read_study_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(text):
    return float(text) if text != "" else math.nan


def check_reproducible(csv_path, corr):
    """Every correlations.json number recomputed from study.csv's columns with scipy alone."""
    rows = read_study_csv(csv_path)
    picked = [r for r in rows if corr["about"]["rows"] == "all" or r["source"] == "random"]
    truth = np.array([_num(r["truth"]) for r in picked])
    checked = 0
    for name in corr["about"]["scores"]:
        entry = corr[name]
        sign = 1 if entry["direction"] == "higher" else -1
        score = sign * np.array([_num(r[name]) for r in picked])
        keep = np.isfinite(score) & np.isfinite(truth)
        assert entry["n"] == keep.sum(), name
        for key, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
            if keep.sum() >= 3 and np.ptp(score[keep]) > 0 and np.ptp(truth[keep]) > 0:
                assert entry[key] == pytest.approx(fn(score[keep], truth[keep]).statistic, abs=1e-12), (name, key)
                lo, hi = entry[f"{key}_ci"]
                assert lo <= hi
                checked += 1
            else:
                assert entry[key] is None, (name, key)
    if corr.get("ceiling"):
        seeds = np.array([[_num(r[f"truth_s{i}"]) for i in range(corr["about"]["seeds"])] for r in picked])
        seeds = seeds[np.isfinite(seeds).all(1)]
        if np.ptp(seeds[:, 0]) > 0 and np.ptp(seeds[:, 1]) > 0:
            assert corr["ceiling"]["spearman"] == pytest.approx(stats.spearmanr(seeds[:, 0], seeds[:, 1]).statistic)
    for found in (corr.get("search") or {}).get("genotypes", []):
        reference = [b for b in (_num(r["truth"]) for r in rows if r["source"] == "random") if math.isfinite(b)]
        if found["truth"] is not None:
            assert found["percentile"] == pytest.approx(stats.percentileofscore(reference, found["truth"], kind="mean"))
            lo, hi = found["percentile_ci"]
            assert lo <= hi
    return checked


# ----------------------------------------------------------------------------- genotypes


def test_random_genotypes_are_seeded_uniform_samples_of_the_space():
    first = random_genotypes(5, "paper", seed=7)
    assert [g["id"] for g in first] == [f"random-0{i}" for i in range(5)] and {g["source"] for g in first} == {"random"}
    assert random_genotypes(5, "paper", seed=7) == first
    assert random_genotypes(8, "paper", seed=7)[:5] == first  # a larger K keeps the first genotypes
    assert random_genotypes(5, "paper", seed=8) != first
    for g in first:
        assert G.from_dict(g["genotype"]) == G.sample_to_genotype(g["sample"], space="paper")
        assert set(g["sample"]) == set(G.sample_labels(space="paper"))
    explicit = random_genotypes(4, "explicit", seed=7)
    assert all(set(g["sample"]) == set(G.sample_labels(space="explicit")) for g in explicit)
    # 40 uniform choices of 8 ops: different genotypes, and 'none' is as likely as any op in the sample
    values = np.array([v for g in random_genotypes(50, "paper", 0) for v in g["sample"].values()])
    assert len({json.dumps(g["genotype"]) for g in random_genotypes(50, "paper", 0)}) == 50
    assert np.bincount(values, minlength=8).min() > 0.8 * len(values) / 8


def test_search_top_takes_the_best_distinct_ok_trials(tmp_path):
    a, b = G.to_dict(G.CNAS_ISIC_s4), G.to_dict(G.DARTS_V2)
    swapped = G.to_dict(G.Genotype([G.CNAS_ISIC_s5.normal[1], G.CNAS_ISIC_s5.normal[0], *G.CNAS_ISIC_s5.normal[2:]],
                                   G.CNAS_ISIC_s5.normal_concat, G.CNAS_ISIC_s5.reduce, G.CNAS_ISIC_s5.reduce_concat))
    trials = [{"trial": 1, "status": "ok", "loss": 3.0, "genotype": a},
              {"trial": 2, "status": "fail", "loss": None, "genotype": b},
              {"trial": 3, "status": "ok", "loss": 2.0, "genotype": G.to_dict(G.CNAS_ISIC_s5)},
              {"trial": 4, "status": "ok", "loss": 2.5, "genotype": swapped},  # the same cell, edges in another order
              {"trial": 5, "status": "over_budget", "loss": None, "genotype": b},
              {"trial": 6, "status": "ok", "loss": 4.0, "genotype": b}]
    text = "".join(json.dumps(t) + "\n" for t in trials) + '{"trial": 7, "status": "ok", "lo'  # a search still writing
    (tmp_path / "trials.jsonl").write_text(text)
    top = search_top(tmp_path, 3)
    assert [(t["id"], t["trial"], t["search_loss"]) for t in top] == [("search-01", 3, 2.0), ("search-02", 1, 3.0),
                                                                       ("search-03", 6, 4.0)]
    assert (tmp_path / "trials.jsonl").read_text() == text  # another run's file is never truncated
    assert [t["trial"] for t in search_top(tmp_path, 1)] == [3]


# ----------------------------------------------------------------------------- study.csv -> correlations.json


def _synthetic_parts(tmp_path, n=14, n_seeds=2, seed=0):
    """A PartLog of n genotypes with scores that track accuracy to different degrees; one failed training. Each
    training has three epochs; the truth candidates average the last few."""
    rng = np.random.default_rng(seed)
    parts = PartLog(tmp_path)
    genotypes = random_genotypes(n, "paper", 0) + [{"id": "search-01", "source": "search", "trial": 9,
                                                     "genotype": G.to_dict(G.DARTS_V2)}]
    quality = rng.normal(size=len(genotypes))
    for g, q in zip(genotypes, quality):
        def add(part, i=None, gid=g["id"], **values):
            parts.add({"id": gid, "part": part, "seed_index": i, "status": "ok", "seconds": 1.5, **values})

        add("size", params=int(1e5 * (3 + q + rng.normal())), macs=int(1e7 * (3 + rng.normal())))
        add("naswot", naswot=800 + 5 * q + 5 * rng.normal())
        add("synflow", synflow=float(np.exp(40 + rng.normal())))
        add("nce_init", 0, nce_init=7.2 - 0.1 * q + 0.2 * rng.normal(), epoch_losses=[7.3, 7.2])
        for i in range(n_seeds):
            nce = 7.0 - 0.3 * q + 0.1 * rng.normal()
            add("nce", i, nce=nce, epoch_losses=[nce + 0.2 + 0.1 * rng.normal(), nce])
            if g["id"] == "random-03" and i == 1:
                parts.add({"id": g["id"], "part": "train", "seed_index": i, "status": "fail", "seconds": 0.5,
                           "reason": "RuntimeError: out of memory"})
            else:
                bacc = list(0.4 + 0.05 * q + 0.03 * rng.normal(size=3))
                add("train", i, bacc=bacc[-1], test_bacc=0.4 + 0.05 * q, epoch_balanced_accuracy=bacc,
                    epoch_auc_macro=list(0.7 + 0.05 * q + 0.03 * rng.normal(size=3)),
                    epoch_loss=list(1.5 - 0.1 * q + 0.03 * rng.normal(size=3)))
    return genotypes, parts


def test_correlations_json_is_reproducible_from_study_csv(tmp_path):
    genotypes, parts = _synthetic_parts(tmp_path)
    rows = study_rows(genotypes, parts, 2, nce_seeds=2, truth="bacc", truth_epochs=2)
    (tmp_path / "study.csv").write_text(csv_text(rows))
    corr = correlations(rows, 2, Judging(n_resamples=300, nce_seeds=2, truth="bacc", truth_epochs=2))
    scores = [n for n in HIGHER_IS_BETTER if n != "nce_long"]
    assert corr["about"]["scores"] == scores
    assert check_reproducible(tmp_path / "study.csv", corr) == 2 * len(scores)  # every score, both coefficients
    assert corr["about"]["rows"] == "random" and corr["about"]["n_rows"] == 14
    assert corr["nce"]["direction"] == "lower" and corr["nce"]["spearman"] > 0.5  # nce tracks quality, oriented
    assert corr["nce"]["n"] == 13  # random-03 has no bacc (one seed failed)
    assert corr["nce_seeds"]["spearman"] > 0.5 and corr["ceiling"]["n"] == 13
    assert set(corr["nce"]["top_k"]) == {"k", "share", "chance"} and corr["nce"]["top_k"]["k"] == 3
    assert corr["search"]["best"]["id"] == "search-01" and 0 <= corr["search"]["best"]["percentile"] <= 100
    written = read_study_csv(tmp_path / "study.csv")
    r3 = next(r for r in written if r["id"] == "random-03")
    assert r3["failed"] == "train_s1" and r3["bacc"] == "" and r3["bacc_s0"] != "" and r3["truth"] == ""
    first = parts.get("random-00", "train", 0)
    assert float(written[0]["bacc_s0"]) == pytest.approx(np.mean(first["epoch_balanced_accuracy"][-2:]))  # last 2
    assert float(written[0]["val_loss_s0"]) == pytest.approx(np.mean(first["epoch_loss"][-2:]))
    assert float(written[0]["bacc"]) == pytest.approx((float(written[0]["bacc_s0"]) + float(written[0]["bacc_s1"])) / 2)
    assert written[0]["truth"] == written[0]["bacc"] and float(written[0]["nce_e2"]) == float(written[0]["nce"])
    assert float(written[0]["seconds_nce"]) == 3.0 and written[0]["params"].isdigit()
    everyone = correlations(rows, 2, Judging(use="all", n_resamples=300, nce_seeds=2, truth="bacc", truth_epochs=2))
    assert everyone["nce"]["n"] == 14 and check_reproducible(tmp_path / "study.csv", everyone)
    one_seed = correlations(study_rows(genotypes, parts, 1), 1, Judging(n_resamples=300))
    assert "nce_mean" not in one_seed and one_seed["ceiling"] is None and one_seed["nce"]["n"] == 14
    assert one_seed["reliability"] == {} and one_seed["nce"]["verdict"] == "not decidable"
    # a loss truth is negated (higher is better), and every number still comes from the CSV
    loss_rows = study_rows(genotypes, parts, 2, nce_seeds=2, truth="val_loss", truth_epochs=2)
    assert loss_rows[0]["truth"] == -loss_rows[0]["val_loss"]
    (tmp_path / "study.csv").write_text(csv_text(loss_rows))
    check_reproducible(tmp_path / "study.csv", correlations(loss_rows, 2, Judging(n_resamples=300, nce_seeds=2,
                                                                                  truth="val_loss", truth_epochs=2)))


def test_reliability_verdicts_and_the_size_baseline(tmp_path):
    """The truth's reliability per candidate, verdicts by the fixed rule, partial correlations and differences."""
    genotypes, parts = _synthetic_parts(tmp_path, n=40)
    rows = study_rows(genotypes, parts, 2, nce_seeds=2, truth="bacc", truth_epochs=3)
    corr = correlations(rows, 2, Judging(n_resamples=300, nce_seeds=2, truth="bacc", truth_epochs=3, reliable=0.5))
    rel = corr["reliability"]
    assert set(rel) == {"bacc", "auc", "val_loss"} and rel["bacc"]["n"] == 39  # random-03 lost a seed
    table = np.array([[r[f"bacc_s{i}"] for i in range(2)] for r in rows if r["source"] == "random"])
    table = table[np.isfinite(table).all(1)]
    msb, msw = 2 * table.mean(1).var(ddof=1), table.var(1, ddof=1).mean()
    assert rel["bacc"]["icc"] == pytest.approx((msb - msw) / (msb + msw))
    assert rel["bacc"]["reliability"] == pytest.approx(2 * rel["bacc"]["icc"] / (1 + rel["bacc"]["icc"]))
    assert corr["about"]["decidable"] == (rel["bacc"]["reliability"] >= 0.5)
    assert corr["params"]["verdict"] in ("better than chance", "not shown better than chance")
    for name in corr["about"]["scores"]:
        entry = corr[name]
        lo = entry["spearman_ci"][0]
        if not corr["about"]["decidable"]:
            assert entry["verdict"] == "not decidable"
        elif lo is None or lo <= 0:
            assert entry["verdict"] == "not shown better than chance"
        elif name != "params":
            useful = entry["vs_params"]["difference_ci"][0] > 0
            assert entry["verdict"] == ("useful" if useful else "no better than size")
        if name != "params":
            assert entry["vs_params"]["difference"] == pytest.approx(entry["spearman"] - corr["params"]["spearman"])
    strict = correlations(rows, 2, Judging(n_resamples=300, nce_seeds=2, truth="bacc", truth_epochs=3, reliable=0.99))
    assert {strict[n]["verdict"] for n in strict["about"]["scores"]} == {"not decidable"}
    assert "Decision rule" in report_markdown(strict, {}, {}, []) and "not decidable" in format_table(strict)
    assert corr["nce_checks"]["nce_init"]["n"] == 40 and corr["nce_checks"]["nce_e1"]["spearman"] is not None


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny labeled ISIC folder, a 2-trial search on its images, and a K=3 + TOP=1, SEEDS=2 study of both."""
    root = tmp_path_factory.mktemp("study")
    isic = root / "isic"
    write_isic(isic)
    with pytest.MonkeyPatch.context() as mp:
        # image caches stay in the test's folder
        mp.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: root / f"cache-{size}.npz")
        search_run = search.main([f"--DATA_DIR={isic / 'ISIC_2019_Training_Input'}", f"--OUT_DIR={root / 'search'}",
                                  "--N_TRIALS=2", "--ALGO=random", *SEARCH_TINY])
        real_nce = study_measure.nce_score

        def flaky_nce(genotype, ctx, desc="trial", **kw):  # one part fails: recorded, the study goes on
            if desc == "search-01 nce s1":
                raise NonFiniteLoss("loss is nan")
            return real_nce(genotype, ctx, desc, **kw)

        mp.setattr(study_measure, "nce_score", flaky_nce)
        args = [f"--LABELED_DIR={isic}", f"--SEARCH_RUN={search_run}", f"--OUT_DIR={root / 'run'}", *STUDY_TINY]
        killed = []
        with pytest.raises(KeyboardInterrupt):  # killed after the first labeled training's first epoch
            _study(args, killed, interrupt_after_epoch=1)
        calls = []
        run_dir = _study(args, calls)  # the same command again: resumes
    return {"root": root, "isic": isic, "search": Path(search_run), "run": Path(run_dir), "args": args, "calls": calls,
            "killed": killed}


def _study(args, calls, interrupt_after_epoch=None):
    """Run proxy_study.py's main(), recording the settings of every labeled training it starts; optionally interrupted
    (like a kill) once a training has saved that many epochs."""
    real_train = labeled_run.train
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(labeled_run, "train", lambda cfg, *a, **k: calls.append(cfg) or real_train(cfg, *a, **k))
        if interrupt_after_epoch is None:
            return proxy_study.main(args)
        with killed_after_epoch(interrupt_after_epoch):
            return proxy_study.main(args)


@pytest.mark.slow
def test_study_writes_every_file(tiny):
    run = tiny["run"]
    for name in ("config.json", "search_settings.json", "genotypes.json", "parts.jsonl", "pilot.json", "study.csv",
                 "correlations.json", "report.md", "correlations.png", "finished.json"):
        assert (run / name).is_file(), name
    scores = json.loads((run / "correlations.json").read_text())["about"]["scores"]
    assert scores == [n for n in HIGHER_IS_BETTER if n != "nce_long"]
    for score in scores:
        assert (run / f"scatter_{score}.png").is_file(), score
    rows = read_study_csv(run / "study.csv")
    assert [r["id"] for r in rows] == ["random-00", "random-01", "random-02", "search-01"]
    assert [r["source"] for r in rows] == ["random"] * 3 + ["search"]
    for column in ("truth", "truth_s0", "truth_s1", "nce", "nce_mean", "nce_init", "nce_e1", "nce_init_e1", "naswot",
                   "synflow", "params", "macs", "bacc", "bacc_s0", "bacc_s1", "auc", "auc_s0", "val_loss",
                   "val_loss_s1", "bacc_last", "test_bacc", "test_bacc_s0", "nce_s0", "nce_s1", "seconds_nce",
                   "seconds_nce_init", "seconds_train", "failed", "genotype"):
        assert column in rows[0], column
    report = (run / "report.md").read_text()
    assert "| score | better | n | Spearman rho [95% CI] |" in report and "## Caveats" in report
    assert report.index("## Decision rule") < report.index("## The truth and its reliability") < report.index("| score")
    assert "pilot (3 genotypes x 2 seeds" in report and "run on with MIN_RELIABILITY=0.0)" in report
    assert all(f"| {score} |" in report for score in scores)


@pytest.mark.slow
def test_labels_come_from_train_isic_runs_with_one_split_and_each_seed(tiny):
    run, calls = tiny["run"], tiny["calls"]
    assert len(calls) == 8  # 4 genotypes x 2 seeds, through train_isic's own training
    assert sorted(cfg["SEED"] for cfg in calls) == [0] * 4 + [1] * 4
    splits = set()
    for r in read_study_csv(run / "study.csv"):
        for i in range(2):
            metrics = json.loads((run / "train" / f"{r['id']}-s{i}" / "metrics.json").read_text())
            history = [json.loads(line) for line in (run / "train" / f"{r['id']}-s{i}" / "history.jsonl").open()]
            # the mean of the last TRUTH_EPOCHS (3: both of the 2 epochs), not the best epoch
            assert float(r[f"bacc_s{i}"]) == pytest.approx(np.mean([h["val_balanced_accuracy"] for h in history]))
            assert float(r[f"val_loss_s{i}"]) == pytest.approx(np.mean([h["val_loss"] for h in history]))
            assert history[-1]["val_balanced_accuracy"] == metrics["val_last"]["balanced_accuracy"]
            assert float(r[f"test_bacc_s{i}"]) == metrics["test"]["balanced_accuracy"]
            assert metrics["genotype"] == json.loads(r["genotype"]) and metrics["epochs"] == 2
            splits.add(metrics["split_sha1"])
        assert float(r["bacc"]) == pytest.approx((float(r["bacc_s0"]) + float(r["bacc_s1"])) / 2)
    assert len(splits) == 1  # SEED changes, the split (SPLIT_SEED) does not


@pytest.mark.slow
def test_a_study_killed_during_a_labeled_training_resumes_it_from_its_checkpoint(tiny):
    assert len(tiny["killed"]) == 1 and tiny["calls"][0] == tiny["killed"][0]  # the same settings: the same run folder
    run = tiny["run"] / "train" / "random-00-s0"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    log = (tiny["run"] / "train" / "random-00-s0.log").read_text()
    # killed before it printed epoch 1's line (the checkpoint was saved); the rerun trained epoch 2 alone
    assert "resumed from" in log and "after epoch 1" in log and "epoch 1/2 |" not in log and log.count("epoch 2/2 |") == 1
    parts = [json.loads(line) for line in (tiny["run"] / "parts.jsonl").read_text().splitlines()]
    assert len(parts) == len({(p["id"], p["part"], p["seed_index"]) for p in parts}) == 4 * 8  # nothing measured twice
    # the pilot (the 3 random genotypes' labeled training) ran first
    assert [(p["id"], p["part"]) for p in parts[:6]] == [(f"random-0{i // 2}", "train") for i in range(6)]


@pytest.mark.slow
def test_nce_is_the_searchs_own_trial_score_and_a_failed_part_is_recorded(tiny):
    rows = {r["id"]: r for r in read_study_csv(tiny["run"] / "study.csv")}
    trials = {t["trial"]: t for t in map(json.loads, (tiny["search"] / "trials.jsonl").read_text().splitlines())}
    found = rows["search-01"]
    best = min((t for t in trials.values() if t["status"] == "ok"), key=lambda t: t["loss"])
    assert int(found["trial"]) == best["trial"] and json.loads(found["genotype"]) == best["genotype"]
    assert float(found["nce"]) == best["loss"]  # same code, same settings, same seed: the same number
    assert found["failed"] == "nce_s1" and found["nce_s1"] == "" and found["nce_mean"] == ""
    assert found["bacc"] != ""  # the other parts ran
    for r in rows.values():
        assert r["nce"] == r["nce_s0"]
        if r["source"] == "random":
            assert r["failed"] == "" and float(r["nce_mean"]) == pytest.approx((float(r["nce_s0"]) + float(r["nce_s1"])) / 2)
    settings = json.loads((tiny["run"] / "search_settings.json").read_text())
    assert settings["INIT_CHANNELS"] == 4 and settings["EPOCHS"] == 1  # the search run's own settings


@pytest.mark.slow
def test_correlations_reproducible_and_search_percentile(tiny):
    corr = json.loads((tiny["run"] / "correlations.json").read_text())
    check_reproducible(tiny["run"] / "study.csv", corr)
    assert corr["about"]["n_rows"] == 3 and corr["about"]["seeds"] == 2
    assert set(corr["about"]["scores"]) == set(HIGHER_IS_BETTER) - {"nce_long"}
    assert {"spearman", "spearman_ci", "kendall", "kendall_ci", "top_k", "direction", "n"} <= set(corr["nce"])
    assert corr["ceiling"]["seeds"] == 2 and corr["nce_seeds"]["n"] == 3
    assert corr["search"]["best"]["id"] == "search-01" and corr["search"]["n_random"] == 3


@pytest.mark.slow
def test_rerun_after_finished_marker_deleted_redoes_nothing(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    (run / "finished.json").unlink()
    before = {p: (run / p).read_bytes() for p in ("parts.jsonl", "study.csv", "correlations.json")}
    calls = []
    args = [a if not a.startswith("--OUT_DIR=") else f"--OUT_DIR={run}" for a in tiny["args"]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tiny["root"] / f"cache-{size}.npz")
        mp.setattr(study_measure, "nce_score", lambda *a, **k: pytest.fail("nce rerun"))
        _study(args, calls)
    assert calls == [] and (run / "finished.json").is_file()
    for name, data in before.items():
        assert (run / name).read_bytes() == data, name
    with pytest.raises(ConfigError, match="finished"):  # a finished study is never written again
        _study(args, calls)


@pytest.mark.slow
def test_resume_after_kill_runs_only_the_missing_parts(tiny, tmp_path):
    """As if killed while search-01's last parts ran: their lines are missing (one torn); the finished train runs are
    read back, not trained again; the missing nce is computed again, to the same number."""
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    (run / "finished.json").unlink()
    lines = (run / "parts.jsonl").read_text().splitlines(keepends=True)
    assert [json.loads(line)["part"] for line in lines[-5:]] == ["nce", "nce", "nce_init", "train", "train"]
    (run / "parts.jsonl").write_text("".join(lines[:-5]) + lines[-5][:25])  # nce s0 torn, the rest never written
    calls = []
    args = [a if not a.startswith("--OUT_DIR=") else f"--OUT_DIR={run}" for a in tiny["args"]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tiny["root"] / f"cache-{size}.npz")
        _study(args, calls)
    assert calls == []  # both seeds' train_isic runs had finished: read, not retrained
    old = {r["id"]: r for r in read_study_csv(tiny["run"] / "study.csv")}
    new = {r["id"]: r for r in read_study_csv(run / "study.csv")}
    for gid in old:
        for column in ("nce", "nce_init", "naswot", "synflow", "params", "bacc_s0", "bacc_s1", "test_bacc"):
            assert new[gid][column] == old[gid][column], (gid, column)
    assert new["search-01"]["failed"] == "" and new["search-01"]["nce_s1"] != ""  # no failure injected this time
    assert (run / "finished.json").is_file()


@pytest.mark.parametrize("bad, match", [
    ("--TRAIN_ARGS=('--SEED=3',)", "set by the study"),
    ("--K=2", "K"),
    ("--SEARCH_ARGS=('EPOCHS=1',)", "NAME=value"),
    ("--CORRELATE=best", "CORRELATE"),
    pytest.param("--TRAIN_ARGS=('--LR=-1',)", "LR", marks=pytest.mark.slow),  # asks train_isic.py in a process
])
def test_bad_settings_stop_before_a_run_folder(tmp_path, bad, match):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        proxy_study.main([f"--OUT_DIR={out}", "--DEVICE=cpu", bad])
    assert not out.exists()


def test_a_folder_that_is_no_search_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a search run"):
        proxy_study.main([f"--SEARCH_RUN={tmp_path}", f"--OUT_DIR={tmp_path / 'run'}"])


@pytest.mark.slow
def test_nce_init_is_the_same_loss_without_learning(tiny):
    """nce_init: the search's loss with the weights left at initialisation, the same as training with LR 0."""
    from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer
    from common.search.candidate import candidate
    from common.search.trial import nce_score, trial_context

    settings = json.loads((tiny["run"] / "search_settings.json").read_text())
    settings.pop("NCE_LONG")
    for name in ("COLOR_JITTER", "PATCH_SCALE", "MEAN", "STD", "BUDGET_NETWORK"):
        settings[name] = tuple(settings[name])
    images = np.random.default_rng(0).integers(0, 255, (24, 16, 16, 3), dtype=np.uint8)
    ctx = trial_context({"images": images, "cfg": {**settings, "EPOCHS": 2}}, "cpu", 1)
    frozen = nce_score(G.DARTS_V2, ctx, progress=False, learn=False)
    still = nce_score(G.DARTS_V2, dataclasses.replace(ctx, cfg={**ctx.cfg, "LR": 0.0}), progress=False)
    trained = nce_score(G.DARTS_V2, ctx, progress=False)
    assert frozen["epoch_losses"] == pytest.approx(still["epoch_losses"], abs=1e-5)
    assert frozen["loss"] != pytest.approx(trained["loss"], abs=1e-5)  # learning changes it
    rows = {r["id"]: r for r in read_study_csv(tiny["run"] / "study.csv")}
    assert all(r["nce_init"] != "" and r["nce_init_e1"] != "" for r in rows.values())
    trainer = ContrastiveTrainer(candidate(G.DARTS_V2, 4, 3), ctx.images, ctx.views, ContrastiveSettings(
        rt=ctx.rt, lr=0.1, momentum=0.9, weight_decay=0.0, tau=0.07, bank_momentum=0.5, patch_weight=0.5, batch_size=8,
        learn=False))
    before = [p.detach().clone() for p in trainer.net.parameters()]
    trainer.fill_bank()
    trainer.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))


@pytest.mark.slow
def test_a_pure_noise_truth_stops_after_the_pilot_with_one_line(tiny, tmp_path, monkeypatch):
    """Labeled results that are noise (no genotype differs from another): the pilot measures a reliability near 0
    and the study stops before any label-free score, naming the levers; --MIN_RELIABILITY=0 would go on."""
    def noise(self, entry, seed_index):
        rng = np.random.default_rng([seed_index, int(entry["id"].split("-")[1])])
        return {"bacc": 0.3, "test_bacc": 0.3, "epoch_balanced_accuracy": list(rng.uniform(0.2, 0.4, 3)),
                "epoch_auc_macro": list(rng.uniform(0.6, 0.7, 3)), "epoch_loss": list(rng.uniform(1.5, 1.7, 3))}

    monkeypatch.setattr(study_measure.Measurer, "_train", noise)
    monkeypatch.setattr(study_measure, "nce_score", lambda *a, **k: pytest.fail("scored after a failed pilot"))
    monkeypatch.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tiny["root"] / "cache.npz")
    args = [a for a in tiny["args"] if not a.startswith(("--OUT_DIR=", "--MIN_RELIABILITY=", "--K=", "--SEARCH_RUN"))]
    out = tmp_path / "run"
    search = ["--SEARCH_ARGS=('--EPOCHS=1','--INIT_CHANNELS=4','--LAYERS=3','--BATCH_SIZE=8','--IMAGE_SIZE=16')"]
    with pytest.raises(study_measure.StudyStopped, match="MIN_RELIABILITY 0.8 in the pilot") as stop:
        _study([*args, *search, f"--OUT_DIR={out}", "--K=8", "--PILOT_K=8"], [])
    assert "\n" not in str(stop.value) and "--SEEDS=" in str(stop.value) and "--MIN_RELIABILITY=0" in str(stop.value)
    pilot = json.loads((out / "pilot.json").read_text())
    assert pilot["genotypes"] == 8 and pilot["reliability"] < 0.8
    parts = [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines()]
    assert {p["part"] for p in parts} == {"train"} and len(parts) == 16
    assert not (out / "finished.json").exists()  # the same command with --MIN_RELIABILITY=0 resumes from here


@pytest.mark.slow
@pytest.mark.parametrize("where", ["nce", "labeled"])
def test_a_step_that_cannot_fit_stops_before_a_run_folder(tiny, tmp_path, monkeypatch, where):
    """The study probes nce's step (search settings) and the labeled step before any part and any folder: one line
    naming the setting, instead of the kernel's OOM killer (faked: a 'device' of a few MB for one of the two)."""
    import common.memory

    calls = []
    real = common.memory.check_fits

    def small_device(need, device, setting="BATCH_SIZE", **kw):
        calls.append(need)
        tiny_room = len(calls) == (1 if where == "nce" else 2)
        return real(need, device, setting, **{**kw, "available": 1000 if tiny_room else kw.get("available")})

    monkeypatch.setattr(common.memory, "check_fits", small_device)
    monkeypatch.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tiny["root"] / "cache.npz")
    out = tmp_path / "run"
    args = [f"--OUT_DIR={out}" if a.startswith("--OUT_DIR=") else a for a in tiny["args"]]
    with pytest.raises(ConfigError, match=("nce with the search settings" if where == "nce" else "labeled training")
                       + ".*BATCH_SIZE") as stop:
        _study(args, [])
    assert "\n" not in str(stop.value) and not out.exists()


def test_the_committed_demo_study_reproduces_its_correlations_and_the_docs_table():
    """images/study/: the demo study shipped with the docs. Its study.csv gives every coefficient of its
    correlations.json with scipy alone, and docs/study.md's table is that file's table."""
    from common.study.report import table_rows

    shipped = Path(__file__).resolve().parents[1] / "images" / "study"
    corr = json.loads((shipped / "correlations.json").read_text())
    assert corr["about"]["n_rows"] >= 40 and check_reproducible(shipped / "study.csv", corr) > 0
    page = (shipped.parents[1] / "docs" / "study.md").read_text()
    for row in table_rows(corr):
        assert "| " + " | ".join(row) + " |" in page, row[0]


@pytest.mark.slow
def test_parts_in_two_worker_processes_measure_what_one_process_does(tiny, tmp_path):
    """WORKERS=2: the parts run in two spawned processes (each its own TrialContext and train_isic), recorded by the
    driver; every score and truth of the random genotypes equals the in-process study's."""
    out = tmp_path / "run"
    args = [f"--OUT_DIR={out}" if a.startswith("--OUT_DIR=") else a for a in tiny["args"]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tiny["root"] / f"cache-{size}.npz")
        _study([*args, "--WORKERS=2"], [])
    old = {r["id"]: r for r in read_study_csv(tiny["run"] / "study.csv")}
    new = {r["id"]: r for r in read_study_csv(out / "study.csv")}
    assert set(new) == set(old) and (out / "finished.json").is_file()
    for gid in (g for g in old if g.startswith("random")):
        for column in ("nce", "nce_s1", "nce_init", "naswot", "synflow", "params", "truth_s0", "truth_s1", "bacc_s0"):
            assert float(new[gid][column]) == pytest.approx(float(old[gid][column]), rel=1e-5, abs=1e-6), (gid, column)
