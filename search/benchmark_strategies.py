"""Search strategies at equal compute: random, TPE, regularized evolution and TPE with early stopping, through search.py.

    cd search && python benchmark_strategies.py                 # demo: the demo search, 62 min measured on one core
    cd search && python benchmark_strategies.py --PRESET=paper --DATA_DIR=/data/ISIC_2019_Training_Input   # a GPU

Every strategy x seed is one search.py run (a process of its own, its run folder under OUT_DIR/searches/) with the same
EPOCH_BUDGET of training epochs: a search starts a trial only while its full length fits, so none trains more, and
early stopping turns the epochs it saves into more trials. Seed s sets search.py's SEED for every strategy alike: the
same image subset, the same training seed for every candidate (common random numbers) and the same proposal seeds, so
strategies are compared seed by seed (paired). The searches run one after another, seed by seed, so a change in the
machine's load reaches every strategy alike.

Reported per strategy (strategies.csv, strategies.md, strategies.png): epochs trained, trials (and how many were
stopped early), wall time of the search.py process (start-up included), the best genotype's nce (the loss of the
best trial that ran to the end; the nce of different seeds is measured on different images and is not comparable
across seeds, the paired difference from the first strategy is), and the best nce so far against epochs spent.

Not reported: the pick's accuracy with labels (its truth percentile among random genotypes). A pick's truth needs
that pick trained with labels: proxy_study.py --SEARCH_RUN=<a search folder here> trains a search's best genotypes
beside K random ones and gives their percentiles with CIs. On the demo it would not mean much: the shipped demo study
(images/study/) measured its labeled truth's reliability at 0.14 (one genotype's accuracy is mostly seed noise at
demo scale), so a pick's percentile among the 40 random genotypes would carry a CI spanning most of the range.

Rerunning the same command resumes: finished searches are read, an unfinished one is resumed by search.py itself.
Any constant below can be overridden as --NAME=value.
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.child import run_script  # noqa: E402
from common.config import ConfigError, check_number, check_script_args, configure, format_config, run_cli, script_config  # noqa: E402
from common.machine import cpu_name, usable_cores  # noqa: E402
from common.runs import FINISHED, append_jsonl, mark_finished, new_run_dir, open_run_dir, read_jsonl  # noqa: E402
from common.search import strategy_report as report  # noqa: E402

# -----------------------------------------------------------------------------
# what is compared
STRATEGIES = ("random", "tpe", "evolution", "tpe+median", "tpe+halving")  # ALGO or ALGO+EARLY_STOP; the first is
# the baseline the paired differences are taken from
SEEDS = (0, 1, 2)  # search.py SEED of each repetition (subset, training seed, proposals): one search per seed
EPOCH_BUDGET = 600  # training epochs every search may spend (search.py --EPOCH_BUDGET): equal compute
# every search (search.py settings)
DATA_DIR = None  # search.py's DATA_DIR; None = the built-in demo lesions
SEARCH_PRESET = "auto"  # search.py's PRESET for every search ('auto': demo without DATA_DIR, else paper)
SEARCH_ARGS = ()  # more search.py settings for every search, '--NAME=value' strings, e.g. ('--SPACE=explicit',)
THREADS = 0  # CPU threads of each search (search.py --THREADS; 0 = torch's default)
DEVICE = "auto"  # search.py's DEVICE
# system
OUT_DIR = None  # this benchmark's folder; None = runs/strategies/<timestamp>; an unfinished benchmark there is resumed
PRESET = "auto"  # 'auto' ('demo' without DATA_DIR, else 'paper') | 'demo' | 'paper'
# -----------------------------------------------------------------------------
PRESETS = {
    # one GPU: the paper's search settings, 60 full trials' worth of epochs (10 each) per search, three seeds
    "paper": {},
    # one CPU core (62 min measured beside other jobs): trials of 6 epochs (so a rule has epochs to save) on 128 of
    # the demo lesions with C=8, one thread; a 6-epoch trial measured about 50 s on a loaded core (8 s an epoch), so
    # 48 epochs (8 full trials) per search x 5 strategies x 2 seeds; halving's rungs at 2 and 6 epochs
    "demo": dict(SEEDS=(0, 1), EPOCH_BUDGET=48, THREADS=1,
                 SEARCH_ARGS=("--EPOCHS=6", "--INIT_CHANNELS=8", "--LAYERS=5", "--MAX_IMAGES=128", "--BATCH_SIZE=32",
                              "--TPE_STARTUP=3", "--POPULATION=4", "--SAMPLE_SIZE=2", "--GRACE_EPOCHS=2",
                              "--REDUCTION_FACTOR=3", "--MIN_REFERENCE=2")),
}
_SET_HERE = ("ALGO", "EARLY_STOP", "EPOCH_BUDGET", "N_TRIALS", "SEED", "OUT_DIR", "THREADS", "DEVICE", "DATA_DIR",
             "PRESET")  # search.py settings the benchmark sets itself
_RESUME_MAY_CHANGE = ("OUT_DIR", "DEVICE", "THREADS")
_SEARCH = Path(__file__).with_name("search.py")


class SearchFailed(RuntimeError):
    """A search.py run ended with an error; the message names its log (its finished trials are kept)."""


def check_settings(cfg):
    """Every setting checked before anything is written; search.py checks its own (search_settings)."""
    names = cfg["STRATEGIES"]
    if not isinstance(names, (tuple, list)) or not names or len(set(names)) < len(names):
        raise ConfigError(f"--STRATEGIES={names!r}: needs different strategies, e.g. ('random', 'tpe', 'tpe+median')")
    for name in names:
        try:
            report.parse_strategy(name)
        except ValueError as exc:
            raise ConfigError(f"--STRATEGIES: {exc}") from None
    seeds = cfg["SEEDS"]
    if (not isinstance(seeds, (tuple, list)) or not seeds or len(set(seeds)) < len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"--SEEDS={seeds!r}: needs different whole numbers >= 0, e.g. (0, 1, 2)")
    check_number(cfg, "EPOCH_BUDGET", 1, integer=True)
    check_number(cfg, "THREADS", 0, integer=True)
    check_script_args(cfg, "SEARCH_ARGS", "benchmark", _SET_HERE)


def search_argv(cfg, strategy, seed, out_dir):
    """search.py's command line for one strategy and seed. N_TRIALS = EPOCH_BUDGET: every trial costs at least one
    epoch, so the budget, not N_TRIALS, ends the search."""
    algo, rule = report.parse_strategy(strategy)
    argv = [f"--ALGO={algo}", f"--EARLY_STOP={rule}", f"--EPOCH_BUDGET={cfg['EPOCH_BUDGET']}",
            f"--N_TRIALS={cfg['EPOCH_BUDGET']}", f"--SEED={seed}", f"--THREADS={cfg['THREADS']}",
            f"--DEVICE={cfg['DEVICE']}", f"--PRESET={cfg['SEARCH_PRESET']}", *cfg["SEARCH_ARGS"]]
    if cfg["DATA_DIR"] is not None:
        argv.append(f"--DATA_DIR={cfg['DATA_DIR']}")
    return argv + ([f"--OUT_DIR={out_dir}"] if out_dir is not None else [])


def search_settings(cfg):
    """search.py's resolved settings for every strategy (asked from search.py itself, which checks them: a setting
    it refuses stops the benchmark with its one line before anything runs)."""
    return {name: script_config(_SEARCH, search_argv(cfg, name, cfg["SEEDS"][0], None)) for name in cfg["STRATEGIES"]}


def run_search(argv, log_file, threads):
    """One search.py process, its output appended to log_file; returns its wall time. It dies with this process, even
    by kill -9 (a resumed benchmark must never run beside an orphaned search writing the same run folder), and a Ctrl-C
    here stops it and its workers (common/child.py). A failed search stops the benchmark with one line naming its log
    (its finished trials are kept: the same command resumes it)."""
    with open(log_file, "a") as log:
        run = run_script(_SEARCH, argv, log, env={"OMP_NUM_THREADS": str(threads)} if threads else None)
    if run.code == 130 or run.code == -signal.SIGINT:
        raise KeyboardInterrupt
    if run.code != 0:
        tail = "".join(Path(log_file).read_text().splitlines(True)[-1:]).strip()
        raise SearchFailed(f"search.py failed (exit status {run.code}): {tail} -- see {log_file}")
    return run.wall_s


def collect(run_dir, cfg, settings):
    """Every finished search's summary, with its wall time from attempts.jsonl (partial when an attempt was killed)."""
    attempts = read_jsonl(run_dir / "attempts.jsonl", repair=True)
    searches = []
    for seed in cfg["SEEDS"]:
        for name in cfg["STRATEGIES"]:
            folder = run_dir / "searches" / search_name(name, seed)
            if not (folder / FINISHED).exists():
                continue
            mine = [a for a in attempts if a["search"] == folder.name]
            ends = [a for a in mine if a["event"] == "end"]
            searches.append({"strategy": name, "seed": seed, "wall_s": sum(a["wall_s"] for a in ends) or None,
                             "wall_partial": len(ends) < sum(a["event"] == "start" for a in mine) or not ends,
                             **report.summarize_search(read_jsonl(folder / "trials.jsonl"), settings[name])})
    return searches


def search_name(strategy, seed):
    return f"{strategy.replace('+', '-')}-s{seed}"


def machine_line(cfg, load_start):
    cpu = cpu_name()
    gpu = f" | {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() and cfg["DEVICE"] != "cpu" else ""
    cores = usable_cores()
    return (f"machine: {cpu} | {cores} usable cores | {cfg['THREADS'] or 'default'} thread(s) per search{gpu} | "
            f"torch {torch.__version__} | load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), argv, PRESETS)
    check_settings(cfg)
    settings = search_settings(cfg)  # search.py's own checks, before the run folder
    run_dir, resumed = open_run_dir(cfg["OUT_DIR"] or new_run_dir("strategies"), cfg, ignore=_RESUME_MAY_CHANGE)
    print(f"config ({'resuming ' if resumed else ''}{run_dir}):\n{format_config(cfg, from_preset)}")
    first = settings[cfg["STRATEGIES"][0]]
    print(f"each search: {cfg['EPOCH_BUDGET']} epochs ({cfg['EPOCH_BUDGET'] // (first['EPOCHS'] * first['REPEATS'])} "
          f"full trials of {first['EPOCHS']} epochs), C={first['INIT_CHANNELS']}, {first['LAYERS']} cells, "
          f"batch {first['BATCH_SIZE']}, {first['SPACE']} space | {len(cfg['STRATEGIES'])} strategies x "
          f"{len(cfg['SEEDS'])} seeds")
    (run_dir / "searches").mkdir(exist_ok=True)
    load_start = os.getloadavg()[0]

    # ---- searches: seed by seed, every strategy in turn; a finished one is only read -------------------------
    total, n, walls = len(cfg["SEEDS"]) * len(cfg["STRATEGIES"]), 0, []
    for seed in cfg["SEEDS"]:
        for name in cfg["STRATEGIES"]:
            n += 1
            folder = run_dir / "searches" / search_name(name, seed)
            if (folder / FINISHED).exists():
                continue
            log_file = folder.with_suffix(".log")
            print(f"search {n}/{total}: {name}, seed {seed} (log {log_file}) ...", flush=True)
            records = len(read_jsonl(folder / "trials.jsonl")) if (folder / "trials.jsonl").exists() else 0
            append_jsonl(run_dir / "attempts.jsonl", {"search": folder.name, "event": "start", "records": records})
            wall = run_search(search_argv(cfg, name, seed, folder.resolve()), log_file, cfg["THREADS"])
            append_jsonl(run_dir / "attempts.jsonl", {"search": folder.name, "event": "end", "wall_s": round(wall, 2)})
            walls.append(wall)
            s = report.summarize_search(read_jsonl(folder / "trials.jsonl"), settings[name])
            eta = sum(walls) / len(walls) * (total - n) / 60
            print(f"search {n}/{total}: {name}, seed {seed}: best nce {s['best_nce']:.4f} | {s['epochs']} epochs | "
                  f"{s['trials_ok']} trials + {s['trials_stopped']} stopped | {wall / 60:.1f} min | "
                  f"ETA {eta:.0f} min", flush=True)

    # ---- report ------------------------------------------------------------------------------------------
    searches = collect(run_dir, cfg, settings)
    rows = report.strategy_rows(searches, list(cfg["STRATEGIES"]))
    header = [f"Search strategies at equal compute: {cfg['EPOCH_BUDGET']} training epochs per search, seeds "
              f"{', '.join(map(str, cfg['SEEDS']))}, search preset {first['PRESET']} "
              f"({first['EPOCHS']} epochs per full trial).", machine_line(cfg, load_start)]
    table = report.write_table(rows, run_dir / "strategies.csv", run_dir / "strategies.md", header)
    report.plot_best_so_far(searches, list(cfg["STRATEGIES"]), cfg["EPOCH_BUDGET"], run_dir / "strategies.png")
    mark_finished(run_dir, {"searches": len(searches)})
    print(f"\n{table}\n\nrun folder: {run_dir} (strategies.csv, strategies.md, strategies.png)")
    return run_dir


if __name__ == "__main__":
    run_cli(main, (ConfigError, SearchFailed),
            resume_hint="finished searches are kept; rerun the same command with --OUT_DIR=<the run folder above>")
