"""search/search.py end to end on tiny folders: every run file, bad files, failing candidates, resume, clear errors."""
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import common.data.images
import search
from common.arch import genotypes as G
from common.config import ConfigError
from common.contrastive.net import ContrastiveNet
from common.contrastive.trainer import ContrastiveTrainer
from common.data.images import cache_path_for
from common.search import trial as search_trial
from conftest import ROOT, write_images

# a network small enough for a 2-core CPU: 3 cells (normal, reduce, reduce), C=4 (FactorizedReduce sees 8, 16)
TINY = ["--EPOCHS=1", "--INIT_CHANNELS=4", "--LAYERS=3", "--BATCH_SIZE=8", "--IMAGE_SIZE=16", "--SEED=3",
        "--DECODE_WORKERS=1", "--DEVICE=cpu", "--BUDGET_NETWORK=(8,3,32,4)", "--FINAL_TOP=0"]  # final round: test_final_round


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("data") / "images")


def _search(out_dir, data_dir, *args, cache=None):
    """Run search.py's main() in-process, its image cache kept out of the repository."""
    cache = cache or Path(out_dir).parent / f"{Path(out_dir).name}-cache.npz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: cache)
        run_dir = search.main([f"--DATA_DIR={data_dir}", f"--OUT_DIR={out_dir}", *TINY, *args])
    return search, Path(run_dir)


def _trials(run_dir):
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(images, tmp_path_factory):
    """One tiny TPE search (2 trials) shared by the tests that only read its folder."""
    out = tmp_path_factory.mktemp("search") / "run"
    _, run_dir = _search(out, images, "--N_TRIALS=2")
    return run_dir


def test_tiny_search_writes_every_file(tiny_run):
    run = tiny_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["N_TRIALS"] == 2 and cfg["INIT_CHANNELS"] == 4 and cfg["ALGO"] == "tpe"
    assert not {"STATUS_OK", "KINDS", "SCORES", "SPACES"} & set(cfg)  # only the constants block is configuration

    trials = _trials(run)
    assert [t["trial"] for t in trials] == [1, 2] and {t["status"] for t in trials} == {"ok"}
    for t in trials:
        assert np.isfinite(t["loss"]) and t["seconds"] > 0
        G.from_dict(t["genotype"])  # a valid genotype
        assert G.sample_to_genotype(t["sample"]) == G.from_dict(t["genotype"])

    best = json.loads((run / "best_genotype.json").read_text())
    winner = min(trials, key=lambda t: t["loss"])
    assert best["trial"] == winner["trial"] and best["loss"] == winner["loss"]
    genotype, source = G.resolve(run)  # what eval's GENOTYPE=<run folder> does
    assert genotype == G.from_dict(winner["genotype"]) and source == str(run / "best_genotype.json")
    scope = {"Genotype": G.Genotype}
    exec(best["literal"], scope)
    assert scope["CSNAS_SEARCHED"] == genotype

    rendered = ("normal_cell.png", "reduce_cell.png") if shutil.which("dot") else ()  # CI installs Graphviz
    for name in ("search_curve.png", *rendered):
        with Image.open(run / name) as im:
            assert im.format == "PNG" and min(im.size) > 10
    for name in ("normal_cell.pdf", "reduce_cell.pdf") if rendered else ():
        assert (run / name).read_bytes().startswith(b"%PDF")
    for kind in ("normal", "reduce"):
        assert "digraph" in (run / f"{kind}_cell.gv").read_text()
    assert json.loads((run / "finished.json").read_text())["ok_trials"] == 2
    assert not (run / "skipped_files.csv").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_without_dot_the_search_finishes_with_sources_and_a_hint(images, tmp_path, monkeypatch, capsys, tiny_run):
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else which(name, *a, **k))
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=2")
    out = capsys.readouterr().out
    assert "install Graphviz" in out and "apt-get install graphviz" in out
    assert (run / "normal_cell.gv").exists() and (run / "reduce_cell.gv").exists()
    assert not (run / "normal_cell.png").exists() and (run / "finished.json").exists()

    # the same SEED and settings propose the same candidates and train them to the same losses
    first, again = _trials(tiny_run), _trials(run)
    assert [t["genotype"] for t in again] == [t["genotype"] for t in first]
    assert [t["sample"] for t in again] == [t["sample"] for t in first]
    assert [t["loss"] for t in again] == pytest.approx([t["loss"] for t in first], rel=1e-4)


def _bad_file_folder(root):
    """16 good images, each bad kind from issue 5 once, and files that must be ignored."""
    folder = write_images(root, n=14, seed=1)
    deep = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")  # 16-bit grayscale: loads
    Image.new("CMYK", (40, 30), (0, 200, 200, 0)).save(folder / "cmyk.jpg")  # loads
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: loads, rotated
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
        folder / "exif_rotated.jpg", exif=exif)
    (folder / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "text.png").write_text("this is not a picture\n")
    (folder / ".hidden.jpg").write_bytes(b"")  # hidden: ignored, not listed
    (folder / "notes.txt").write_text("labels are never read\n")  # not an image: ignored
    return folder, {"zero.jpg", "truncated.jpg", "text.png"}


def test_random_search_over_a_folder_with_bad_files(tmp_path, capsys):
    folder, unreadable = _bad_file_folder(tmp_path / "messy")
    _, run = _search(tmp_path / "run", folder, "--N_TRIALS=2", "--ALGO=random")
    assert "skipped 3 of 20 files" in capsys.readouterr().out
    with open(run / "skipped_files.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {Path(r["path"]).name for r in rows} == unreadable
    assert all(r["reason"] for r in rows)
    assert json.loads((run / "config.json").read_text())["ALGO"] == "random"
    assert [t["status"] for t in _trials(run)] == ["ok", "ok"] and (run / "finished.json").exists()


def _nan_in_trial(monkeypatch, bad_trials):
    """Trials' training runs number `bad_trials` (1-based) get a network whose features are NaN."""
    real, calls = search_trial.run_trial, []

    def run_trial(genotype, *args, **kwargs):
        calls.append(1)
        if len(calls) not in bad_trials:
            return real(genotype, *args, **kwargs)
        with monkeypatch.context() as m:
            features = ContrastiveNet.features
            m.setattr(ContrastiveNet, "features", lambda self, x: features(self, x) * float("nan"))
            return real(genotype, *args, **kwargs)

    monkeypatch.setattr(search_trial, "run_trial", run_trial)
    return calls


def test_a_nan_candidate_is_recorded_as_failed_and_the_search_goes_on(images, tmp_path, monkeypatch):
    _nan_in_trial(monkeypatch, {1})
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=2")
    trials = _trials(run)
    assert [t["status"] for t in trials] == ["fail", "ok", "ok"]
    assert trials[0]["loss"] is None and "NonFiniteLoss" in trials[0]["reason"] and "nan" in trials[0]["reason"]
    assert trials[0]["seconds"] >= 0 and "genotype" in trials[0]
    finished = json.loads((run / "finished.json").read_text())
    assert finished["ok_trials"] == 2 and finished["failed_trials"] == 1
    assert json.loads((run / "best_genotype.json").read_text())["trial"] in (2, 3)


def test_a_failed_candidate_is_freed_before_the_next_trial(images, tmp_path, monkeypatch):
    """After a failure the trainer (model, bank, optimizer) is gone when memory is released, not still held by the
    exception's traceback: on a GPU that would turn one out-of-memory trial into a cascade."""
    trainers, checks = [], []
    init = ContrastiveTrainer.__init__

    def tracked_init(self, *args, **kwargs):
        trainers.append(weakref.ref(self))
        init(self, *args, **kwargs)

    release = search_trial.release_memory

    def checked_release(device):
        release(device)
        checks.append([ref() is None for ref in trainers])

    monkeypatch.setattr(ContrastiveTrainer, "__init__", tracked_init)
    monkeypatch.setattr(search_trial, "release_memory", checked_release)
    calls = _nan_in_trial(monkeypatch, {1})
    real = search_trial.run_trial

    def next_trial(*args, **kwargs):  # when trial 2 starts, trial 1's trainer must be gone
        if len(calls) == 1:
            checks.append([ref() is None for ref in trainers])
        return real(*args, **kwargs)

    monkeypatch.setattr(search_trial, "run_trial", next_trial)
    _search(tmp_path / "run", images, "--N_TRIALS=1")
    # probe trainer freed, failed trial's trainer freed at release and still gone when trial 2 starts
    assert len(checks) == 3 and all(all(c) for c in checks) and len(checks[-1]) == 2


def test_too_many_failures_stop_the_search(images, tmp_path, monkeypatch):
    def run_trial(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(search_trial, "run_trial", run_trial)
    monkeypatch.setattr(common.data.images, "cache_path_for", lambda folder, size, subset=None: tmp_path / "cache.npz")
    with pytest.raises(search.SearchStopped, match="2 failed trials.*out of memory"):
        search.main([f"--DATA_DIR={images}", f"--OUT_DIR={tmp_path / 'run'}", *TINY, "--N_TRIALS=2",
                     "--MAX_FAILURES=2"])
    trials = _trials(tmp_path / "run")
    assert [t["status"] for t in trials] == ["fail", "fail"]
    assert not (tmp_path / "run" / "finished.json").exists()


# ---- as users run it: a subprocess from search/ ------------------------------------------------------------


def _cli(*args):
    return [sys.executable, "search.py", *TINY, *args]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def repo_cache_cleanup():
    """Subprocesses cache images under REPO_ROOT/data/cache; remove exactly the files these tests made."""
    folders = []
    yield folders.append
    for folder in folders:
        cache_path_for(folder, 16).unlink(missing_ok=True)


def _error_line(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module", autouse=True)
def cli_errors(images, tmp_path_factory):
    """Launch the user-error subprocesses when this module starts: they import torch on the spare core while the
    in-process tests run on the other, and test_user_errors_exit_with_one_line collects them."""
    tmp = tmp_path_factory.mktemp("cli")
    empty = tmp / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "README.txt").write_text("no pictures here")
    missing = tmp / "no_such_folder"
    data = tmp / "nan_data"
    shutil.copytree(images, data)
    cases = {
        "missing": (_cli(f"--DATA_DIR={missing}", f"--OUT_DIR={tmp / 'r1'}"), [str(missing), "not a folder"]),
        "empty": (_cli(f"--DATA_DIR={empty}", f"--OUT_DIR={tmp / 'r2'}"), [str(empty), "no images"]),
        "too many failures": (  # so large a learning rate makes every loss NaN
            _cli(f"--DATA_DIR={data}", f"--OUT_DIR={tmp / 'r3'}", "--LR=1e30", "--MAX_FAILURES=1", "--N_TRIALS=2"),
            ["stopped after 1 failed trials", "NonFiniteLoss"]),
    }
    procs = {name: subprocess.Popen(cmd, cwd=ROOT / "search", env=_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, (cmd, _) in cases.items()}
    yield tmp, {name: (procs[name], words) for name, (_, words) in cases.items()}
    for proc in procs.values():
        proc.kill()
        proc.communicate()
    cache_path_for(data, 16).unlink(missing_ok=True)  # subprocesses cache under REPO_ROOT/data/cache


@pytest.mark.slow
def test_user_errors_exit_with_one_line(cli_errors):
    tmp, runs = cli_errors
    for name, (proc, words) in runs.items():
        out, err = proc.communicate(timeout=180)
        line = _error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        assert all(word in line for word in words), (name, line)
    # a wrong DATA_DIR leaves no run folder behind (so the corrected command can reuse OUT_DIR)
    assert not (tmp / "r1").exists() and not (tmp / "r2").exists()
    assert [t["status"] for t in _trials(tmp / "r3")] == ["fail"]


@pytest.mark.parametrize("arg,words", [("--FOO=1", ["--FOO", "unknown"]), ("--EPOCHS=abc", ["--EPOCHS=abc", "int"]),
                                       ("--EPOCH=3", ["did you mean EPOCHS?"]), ("EPOCHS=3", ["--NAME=value"]),
                                       ("--N_TRIALS=0", ["N_TRIALS", ">= 1"]), ("--ALGO=grid", ["ALGO", "grid"])])
def test_bad_arguments_exit_with_one_line(arg, words, monkeypatch, capsys):
    line = _error_line(_run_main_block(monkeypatch, capsys, ["search.py", arg]))
    assert all(w in line for w in words), line


def _run_main_block(monkeypatch, capsys, argv):
    """`python search.py ...` without a new process: what its __main__ block runs (cli) runs here and must exit."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        search.cli(argv[1:])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, exit_.value.code, out, err)


@pytest.mark.slow
def test_killed_search_resumes_where_it_stopped(images, tmp_path, repo_cache_cleanup, monkeypatch, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(images, data)
    repo_cache_cleanup(data)
    cmd = _cli("--N_TRIALS=4", f"--DATA_DIR={data}", f"--OUT_DIR={out}")
    trials_file = out / "trials.jsonl"

    proc = subprocess.Popen(cmd, cwd=ROOT / "search", env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, seen = time.monotonic() + 120, b""
    try:
        while seen.count(b"\n") < 2:
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials within 120 s"
            time.sleep(0.02)
            seen = trials_file.read_bytes() if trials_file.exists() else b""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "finished.json").exists()
    before = seen.split(b"\n")[:2]  # as they were before the kill
    assert trials_file.read_bytes().split(b"\n")[:2] == before

    # a different config is refused and changes nothing
    config = (out / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="EPOCHS"):
        _search(out, data, "--N_TRIALS=4", "--EPOCHS=2")
    assert (out / "config.json").read_bytes() == config and trials_file.read_bytes().split(b"\n")[:2] == before

    search.cli(cmd[2:])  # the same command again, here (a second process costs ~5 s)
    assert "resumed:" in capsys.readouterr().out
    assert trials_file.read_bytes().split(b"\n")[:2] == before  # kept as they were, not re-run
    trials = _trials(out)
    assert [t["status"] for t in trials] == ["ok"] * 4 and [t["trial"] for t in trials] == [1, 2, 3, 4]
    assert json.loads((out / "finished.json").read_text())["ok_trials"] == 4

    again = _run_main_block(monkeypatch, capsys, cmd[1:])  # the same command once more
    assert "finished run" in _error_line(again) and str(out) in _error_line(again)
    assert len(_trials(out)) == 4


# ---- issue 8: the score measures what the method measures ------------------------------------------------------


def test_every_candidate_trains_with_the_same_seed(images, tmp_path, monkeypatch):
    """Common random numbers: views, negatives and batch order depend on the seed only, so every trial gets SEED."""
    seeds, real = [], search_trial.run_trial

    def spy(genotype, images, views, settings, **kwargs):
        seeds.append(settings.seed)
        return real(genotype, images, views, settings, **kwargs)

    monkeypatch.setattr(search_trial, "run_trial", spy)
    _search(tmp_path / "run", images, "--N_TRIALS=2", "--ALGO=random")
    assert seeds == [3, 3]  # TINY sets --SEED=3


def test_repeats_record_each_loss_their_mean_and_std(images, tmp_path):
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=1", "--REPEATS=2")
    (t,) = _trials(run)
    assert len(t["repeat_losses"]) == 2 and t["repeat_seeds"][0] == 3 and len(set(t["repeat_seeds"])) == 2
    assert t["loss"] == pytest.approx(np.mean(t["repeat_losses"]))
    assert t["loss_std"] == pytest.approx(np.std(t["repeat_losses"], ddof=1))
    assert len(t["epoch_losses"]) == 2  # one list per repeat


def test_explicit_space_runs_a_full_search(images, tmp_path):
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=2", "--SPACE=explicit")
    trials = _trials(run)
    assert [t["status"] for t in trials] == ["ok", "ok"] and (run / "finished.json").exists()
    for t in trials:
        assert G.sample_to_genotype(t["sample"], space="explicit") == G.from_dict(t["genotype"])
        assert set(t["sample"]) == set(G.sample_labels(space="explicit"))


def test_nce_init_score_is_the_untrained_loss_of_the_same_candidates(images, tmp_path):
    """SCORE='nce_init': the search runs as usual, each trial scored by nce's loss with the weights never updated;
    with common random numbers it equals the LR 0 run of nce, trial for trial."""
    _, frozen = _search(tmp_path / "frozen", images, "--N_TRIALS=2", "--ALGO=random", "--SCORE=nce_init")
    _, still = _search(tmp_path / "still", images, "--N_TRIALS=2", "--ALGO=random", "--LR=1e-30")
    a, b = _trials(frozen), _trials(still)
    assert [t["status"] for t in a] == ["ok", "ok"] and (frozen / "finished.json").exists()
    assert [t["score"] for t in a] == ["nce_init"] * 2 and [t["genotype"] for t in a] == [t["genotype"] for t in b]
    assert [t["loss"] for t in a] == pytest.approx([t["loss"] for t in b], abs=1e-5)


@pytest.mark.parametrize("arg,words", [("--COLOR_JITTER=(0.2,0.2)", ["COLOR_JITTER", "4 numbers"]),
                                       ("--PATCH_SCALE=(0.5,0.1)", ["PATCH_SCALE", "low to high"]),
                                       ("--MEAN=(0.5,0.5)", ["MEAN", "3 numbers"]),
                                       ("--TAU=-1.0", ["TAU", "> 0"]),
                                       ("--SPACE=grid", ["SPACE", "paper"]),
                                       ("--REPEATS=0", ["REPEATS", ">= 1"])])
def test_a_mistyped_setting_stops_before_any_run_folder(images, tmp_path, arg, words):
    with pytest.raises(ConfigError) as err:
        _search(tmp_path / "run", images, "--N_TRIALS=1", arg)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()  # the corrected command can use the same OUT_DIR


def test_a_resumed_run_refuses_another_runtime(images, tmp_path):
    _search(tmp_path / "run", images, "--N_TRIALS=1", "--MAX_FAILURES=1")
    (tmp_path / "run" / "finished.json").unlink()  # pretend it was interrupted
    runtime_file = tmp_path / "run" / "runtime.json"
    saved = json.loads(runtime_file.read_text())
    assert saved == {"device_type": "cpu", "autocast": "off", "channels_last": True}
    runtime_file.write_text(json.dumps({**saved, "device_type": "cuda", "autocast": "bfloat16"}))
    with pytest.raises(ConfigError, match="ALLOW_RUNTIME_CHANGE"):
        _search(tmp_path / "run", images, "--N_TRIALS=1", "--MAX_FAILURES=1")
    _search(tmp_path / "run", images, "--N_TRIALS=1", "--MAX_FAILURES=1", "--ALLOW_RUNTIME_CHANGE=True")


def test_an_image_subset_has_a_cache_file_of_its_own(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    whole, part = cache_path_for(tmp_path, 32), cache_path_for(tmp_path, 32, paths[:2])
    assert whole != part and part == cache_path_for(tmp_path, 32, paths[1::-1])  # order does not matter
    assert part != cache_path_for(tmp_path, 32, paths[2:])


# ---- issue 11: a size budget -------------------------------------------------------------------------------------


def test_a_budget_skips_large_proposals_and_the_best_fits(images, tmp_path):
    limit = 25_000  # parameters of the (8, 3, 32, 4) budget network: sampled cells range about 22k to 38k
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=2", "--ALGO=random", f"--MAX_PARAMS={limit}")
    trials = _trials(run)
    over = [t for t in trials if t["status"] == "over_budget"]
    ok = [t for t in trials if t["status"] == "ok"]
    assert len(ok) == 2 and over, [t["params"] for t in trials]
    assert all(t["params"] > limit and "MAX_PARAMS" in t["reason"] and t["loss"] is None for t in over)
    assert all(t["params"] <= limit and t["macs"] > 0 for t in ok)
    assert json.loads((run / "best_genotype.json").read_text())["params"] <= limit
    assert json.loads((run / "finished.json").read_text())["over_budget"] == len(over)
    assert len({t["trial"] for t in trials}) == len(trials)


def test_a_budget_nothing_fits_stops_with_the_smallest_size(images, tmp_path):
    with pytest.raises(Exception, match=r"3 proposals in a row were over budget; the smallest had 0\.\d\dM"):
        _search(tmp_path / "run", images, "--N_TRIALS=2", "--MAX_PARAMS=1000", "--MAX_OVER_BUDGET=3")
    assert [t["status"] for t in _trials(tmp_path / "run")] == ["over_budget"] * 3


# ---- issue 12: the step's memory is measured before the first trial ------------------------------------------------


def test_the_search_prints_its_step_memory(tiny_run, images, tmp_path, capsys):
    _search(tmp_path / "run", images, "--N_TRIALS=1")
    assert "step memory: about" in capsys.readouterr().out


def test_a_batch_that_cannot_fit_stops_before_training(images, tmp_path, monkeypatch):
    import common.memory

    monkeypatch.setattr(common.memory, "available_bytes", lambda device: 10_000_000)  # a 10 MB device
    with pytest.raises(ConfigError, match=r"BATCH_SIZE=8: one training step needs about .* MB on cpu") as err:
        _search(tmp_path / "run", images, "--N_TRIALS=1")
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()  # the smaller batch can use the folder


# ---- a failed start never deletes what it did not create; one failure policy for candidates --------------------------


def test_a_failed_start_leaves_the_users_folder_and_its_dot_files(images, tmp_path, monkeypatch):
    """`mkdir -p out/.git && python search.py --OUT_DIR=out` with a batch that cannot fit: out/.git stays."""
    import common.memory

    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    monkeypatch.setattr(common.memory, "available_bytes", lambda device: 10_000_000)  # a 10 MB device
    with pytest.raises(ConfigError, match="BATCH_SIZE=8"):
        _search(out, images, "--N_TRIALS=1")
    assert sorted(p.name for p in out.iterdir()) == [".git"]  # config.json gone, the user's folder kept
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"


def test_a_candidate_raising_keyerror_is_a_failed_trial_inline(images, tmp_path, monkeypatch):
    """WORKERS=1: any exception of a candidate (not only NaN / RuntimeError / ValueError) is its failure."""
    real, calls = search_trial.run_trial, []

    def run_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("sep_conv_9x9")
        return real(*args, **kwargs)

    monkeypatch.setattr(search_trial, "run_trial", run_trial)
    _, run = _search(tmp_path / "run", images, "--N_TRIALS=2")
    trials = _trials(run)
    assert [t["status"] for t in trials] == ["fail", "ok", "ok"]
    assert trials[0]["reason"] == "KeyError: 'sep_conv_9x9'" and trials[0]["loss"] is None and "genotype" in trials[0]
    assert (run / "finished.json").exists()
