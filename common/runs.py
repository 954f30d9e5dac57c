"""Run folders: create or resume one, refuse to mix configs or touch finished runs, write files atomically."""
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from common.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_ROOT = REPO_ROOT / "runs"  # default home of run folders: runs/search/<stamp>, runs/eval/<stamp>
FINISHED = "finished.json"


@functools.cache
def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes):
    """Write via a temporary file in the same folder and rename, so a kill leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should read like any other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def append_jsonl(path, obj):
    """Append one JSON line and fsync it: once this returns, the line survives a kill -9."""
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RecordError(ConfigError):
    """A complete line of a record file is not a JSON object (a crash glued two records, a disk wrote NULs)."""


def read_jsonl(path, repair=False):
    """The records of a JSON-lines file, one object per complete line ([] when there is no file).

    A torn last line (a writer killed mid-line, or one still writing it) is left out. repair=True is for the file's
    own writer resuming: it also truncates that tail, so the next append starts a line of its own; readers of
    another run's files leave them as they are. A complete line that is not a JSON object raises RecordError naming
    the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if repair and len(keep) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    records = []
    for number, line in enumerate(keep.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            record, why = None, f"{type(exc).__name__}: {str(exc)[:80]}"
        else:
            why = "not a JSON object"
        if not isinstance(record, dict):
            raise RecordError(f"{path} line {number} is not a record ({why}): delete or repair that line (the runs "
                              "it lists are kept), then run the same command again")
        records.append(record)
    return records


def new_run_dir(kind):
    """A fresh timestamped folder path under runs/<kind>/ (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = RUNS_ROOT / kind / stamp, 1
    while path.exists():
        path, n = RUNS_ROOT / kind / f"{stamp}-{n}", n + 1
    return path


def open_run_dir(out_dir, config, ignore=("OUT_DIR", "DEVICE")):
    """Create the run folder, or resume it when it holds an unfinished run of the same config.

    Returns (path, resumed). Raises ConfigError for a finished run, a different config (naming the settings
    that differ) or a non-empty folder that is not a run folder (dot-files such as .git or .DS_Store do not count).
    """
    path, resumed, _ = start_run_dir(out_dir, config, ignore)
    return path, resumed


def start_run_dir(out_dir, config, ignore=("OUT_DIR", "DEVICE")):
    """open_run_dir, plus undo(): for a start that fails before any work is done (a batch that cannot fit).

    undo() removes what this run wrote into the folder since it started (config.json and any later file), and the
    folder itself only when this call created it; whatever was there before (.git, .DS_Store) is left alone. For a
    resumed run undo() does nothing: its files are the run's, not this start's.
    """
    path = Path(out_dir).expanduser()
    existed = path.is_dir()
    before = {p.name for p in path.iterdir()} if existed else set()
    path, resumed = _open(path, config, ignore)
    if resumed:
        return path, True, lambda: None

    def undo():
        if not path.is_dir():
            return
        for entry in path.iterdir():
            if entry.name in before:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        if not existed:
            try:
                path.rmdir()  # only when empty: a file someone else put there meanwhile keeps the folder
            except OSError:
                pass

    return path, False, undo


def _open(path, config, ignore):
    cfg_file = path / "config.json"
    if (path / FINISHED).exists():
        raise ConfigError(f"{path} holds a finished run; choose a new OUT_DIR (results are never overwritten)")
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        new = json.loads(json.dumps(config))  # compare as JSON sees it (tuples -> lists)
        differ = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
        if differ:
            shown = ", ".join(f"{k}: {old.get(k)!r} there vs {new.get(k)!r} now" for k in differ[:4])
            raise ConfigError(f"{path} holds a run with other settings ({shown}); use a new OUT_DIR or the same settings")
        return path, True
    if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise ConfigError(f"{path} exists and is not a run folder of this script; choose a new OUT_DIR")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_file, config)
    return path, False


def mark_finished(path, summary=None):
    atomic_write_json(Path(path) / FINISHED, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), **(summary or {})})


def newest_run(kind, must_contain):
    """The newest folder under runs/<kind>/ that holds `must_contain`, or None."""
    root = RUNS_ROOT / kind
    if not root.exists():
        return None
    runs = sorted((p for p in root.glob("*") if (p / must_contain).exists()), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None
