"""Run folders: atomic files, JSON lines that survive a torn write, and safe create / resume / refuse."""
import json
import re

import pytest

from common.config import ConfigError
from common.runs import (
    RecordError,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    mark_finished,
    open_run_dir,
    read_jsonl,
    start_run_dir,
)


def test_atomic_writes_leave_only_the_target(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    atomic_write_json(tmp_path / "c.json", {"x": 3})  # replacing an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 3}


def test_atomic_files_get_ordinary_permissions(tmp_path):
    (tmp_path / "plain.txt").write_text("x")  # what open() makes under the current umask
    atomic_write_text(tmp_path / "atomic.txt", "x")
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt")


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "c.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})  # not JSON-serialisable: fails before writing
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text, not bytes")  # fails while writing the temporary file
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_jsonl_round_trip_and_torn_last_line(tmp_path):
    path = tmp_path / "trials.jsonl"
    assert read_jsonl(path) == []  # no file yet
    append_jsonl(path, {"trial": 1, "loss": 1.5})
    append_jsonl(path, {"trial": 2, "loss": None})
    assert read_jsonl(path) == [{"trial": 1, "loss": 1.5}, {"trial": 2, "loss": None}]
    good = path.read_bytes()

    with open(path, "ab") as f:
        f.write(b'{"trial": 3, "lo')  # killed mid-write (or a live writer's line, half written)
    assert read_jsonl(path) == [{"trial": 1, "loss": 1.5}, {"trial": 2, "loss": None}]
    assert path.read_bytes() == good + b'{"trial": 3, "lo'  # a reader never rewrites the file
    assert read_jsonl(path, repair=True) == [{"trial": 1, "loss": 1.5}, {"trial": 2, "loss": None}]
    assert path.read_bytes() == good  # the writer resuming truncates the torn line away ...
    append_jsonl(path, {"trial": 3, "loss": 0.5})  # ... so the next append starts on a clean line
    assert [r["trial"] for r in read_jsonl(path)] == [1, 2, 3]


@pytest.mark.parametrize("bad", [b"\0" * 40, b'{"trial": 2, "lo{"trial": 3, "loss": 0.5}', b"[1, 2]", b"\xff\xfe"])
def test_a_corrupt_complete_line_is_one_error_naming_the_file_and_line(tmp_path, bad):
    """NULs a crash left, two half records glued together, a non-object, undecodable bytes: one line, no traceback."""
    path = tmp_path / "trials.jsonl"
    append_jsonl(path, {"trial": 1, "loss": 1.5})
    with open(path, "ab") as f:
        f.write(bad + b"\n")
    append_jsonl(path, {"trial": 4, "loss": 0.1})
    with pytest.raises(RecordError, match=rf"^{re.escape(str(path))} line 2 is not a record \(.*\): delete or repair"):
        read_jsonl(path, repair=True)
    assert issubclass(RecordError, ConfigError)  # scripts print it as one `error:` line


CFG = {"EPOCHS": 1, "N_TRIALS": 4, "MEAN": (0.5, 0.5), "OUT_DIR": "x", "DEVICE": "cpu"}


def test_open_run_dir_creates_then_resumes_the_same_config(tmp_path):
    run = tmp_path / "runs" / "a"
    path, resumed = open_run_dir(run, CFG)
    assert path == run and not resumed
    assert json.loads((run / "config.json").read_text())["MEAN"] == [0.5, 0.5]
    # same settings (tuples compare as JSON lists; OUT_DIR and DEVICE may change) -> resume
    path, resumed = open_run_dir(str(run), {**CFG, "OUT_DIR": "y", "DEVICE": "cuda"})
    assert path == run and resumed


def test_open_run_dir_accepts_an_empty_or_hidden_only_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert open_run_dir(tmp_path / "empty", CFG) == (tmp_path / "empty", False)
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".DS_Store").write_text("")
    assert open_run_dir(tmp_path / "hidden", CFG)[1] is False


def test_open_run_dir_refuses_another_config_naming_the_setting(tmp_path):
    open_run_dir(tmp_path, CFG)
    with pytest.raises(ConfigError) as err:
        open_run_dir(tmp_path, {**CFG, "EPOCHS": 3})
    msg = str(err.value)
    assert "EPOCHS" in msg and "1" in msg and "3" in msg and "OUT_DIR" in msg
    with pytest.raises(ConfigError, match="SEED"):
        open_run_dir(tmp_path, {**CFG, "SEED": 0})  # a setting the old run did not have
    # names listed in `ignore` may change
    assert open_run_dir(tmp_path, {**CFG, "EPOCHS": 3}, ignore=("EPOCHS", "OUT_DIR", "DEVICE"))[1]


def test_open_run_dir_refuses_a_finished_run(tmp_path):
    open_run_dir(tmp_path, CFG)
    mark_finished(tmp_path, {"ok_trials": 4})
    assert json.loads((tmp_path / "finished.json").read_text())["ok_trials"] == 4
    with pytest.raises(ConfigError, match="finished"):
        open_run_dir(tmp_path, CFG)


def test_open_run_dir_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis.tex").write_text("do not touch")
    with pytest.raises(ConfigError, match="not a run folder"):
        open_run_dir(tmp_path, CFG)
    assert not (tmp_path / "config.json").exists()


def test_undo_of_a_failed_start_removes_only_what_the_run_wrote(tmp_path):
    """A user's folder with only dot-files (a git checkout, .DS_Store) is accepted as OUT_DIR; a start that fails
    removes config.json and what came after it, never the folder or what was there before."""
    out = tmp_path / "out"
    (out / ".git" / "objects").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".DS_Store").write_text("x")
    path, resumed, undo = start_run_dir(out, CFG)
    assert path == out and not resumed and (out / "config.json").exists()
    (out / "skipped_files.csv").write_text("path,reason\n")  # files and folders the failed start wrote
    (out / "cam").mkdir()
    (out / "cam" / "a.png").write_bytes(b"png")
    undo()
    assert sorted(p.name for p in out.iterdir()) == [".DS_Store", ".git"]
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n" and (out / ".git" / "objects").is_dir()

    fresh = tmp_path / "runs" / "new"  # a folder the start made is removed with its files
    _, _, undo = start_run_dir(fresh, CFG)
    undo()
    assert not fresh.exists() and (tmp_path / "runs").is_dir()

    _, _, undo = start_run_dir(fresh, CFG)  # a resumed run's undo touches nothing
    _, resumed, undo_resumed = start_run_dir(fresh, CFG)
    undo_resumed()
    assert resumed and (fresh / "config.json").exists()
