"""Compare finished eval runs: size, speed and accuracy per model over its repeated runs, paired differences between
models over the splits they share, and accuracy against MACs (Markdown, CSV, PNG).

    python eval/compare.py                                   # every finished run under runs/eval
    python eval/compare.py runs/eval/A runs/eval/B           # these run folders (or folders holding run folders)
    python eval/compare.py runs/eval --SORT_BY=macs --OUT_DIR=runs/compare/isic

Any constant below can be set as --NAME=value; folders given as plain arguments replace RUNS. Runs of one model (the
same architecture and settings) that differ only in SEED or SPLIT_SEED are one row of the model table: mean ± SD
over the runs. Two models are compared over the splits both ran on (the same split.csv): per split the difference
of their means, averaged, with a 95 % bootstrap interval over the splits. Runs scored on different data (dataset
folder, classes, layout) are refused, not mixed into one table.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` from the repo root

from common import runs  # noqa: E402
from common.config import ConfigError, configure, format_config, run_cli  # noqa: E402
from common.labeled import comparison, run_groups  # noqa: E402  (modules: upper-case imports would count as settings)

# -----------------------------------------------------------------------------
RUNS = ()  # eval run folders, or folders holding them; () = every run under runs/eval; plain arguments replace it
OUT_DIR = None  # folder for comparison.md, .csv, models.csv, paired.csv, accuracy_vs_macs.png; None = runs/compare/<timestamp>
SORT_BY = "balanced_accuracy"  # balanced_accuracy (highest mean first) | auc_macro | macs | params | latency | name
DEBUG = False  # True: full tracebacks for user errors too
# -----------------------------------------------------------------------------
_RUNTIME = {"debug": DEBUG}


def resolve_config(argv=None):
    """(config, folders): --NAME=value settings over the constants block; plain arguments are run folders."""
    argv = sys.argv[1:] if argv is None else list(argv)
    folders = [a for a in argv if not a.startswith("--")]
    namespace = dict(globals())
    cfg, _ = configure(namespace, [a for a in argv if a.startswith("--")])
    if folders:
        cfg["RUNS"] = tuple(folders)
    if cfg["SORT_BY"] not in run_groups.SORT_KEYS:
        raise ConfigError(f"--SORT_BY={cfg['SORT_BY']}: choose one of {', '.join(run_groups.SORT_KEYS)}")
    return cfg, [Path(p).expanduser() for p in cfg["RUNS"]] or [runs.RUNS_ROOT / "eval"]


def main(argv=None, log=print):
    # ---- config
    cfg, paths = resolve_config(argv)
    _RUNTIME["debug"] = cfg["DEBUG"]
    # ---- runs: read and check everything before writing anything
    folders = run_groups.find_runs(paths, log)
    rows = run_groups.name_rows(run_groups.sort_rows([run_groups.load_run(f) for f in folders], cfg["SORT_BY"]))
    run_groups.check_comparable(rows)
    run_groups.check_splits(rows)
    models = run_groups.sort_rows(run_groups.group_runs(rows), cfg["SORT_BY"])
    pairs = run_groups.pair_models(models)
    out = comparison.open_out_dir(cfg["OUT_DIR"], folders)
    log(f"== compare: {len(rows)} runs of {len(models)} model(s) -> {out}")
    log(format_config(cfg))
    # ---- save
    runs.atomic_write_json(out / "config.json", {**cfg, "OUT_DIR": str(out), "RUNS": [str(f) for f in folders]})
    report = comparison.markdown_report(rows, models, pairs)
    runs.atomic_write_text(out / "comparison.md", report)
    runs.atomic_write_text(out / "comparison.csv", comparison.csv_text(rows, models))
    runs.atomic_write_text(out / "models.csv", comparison.models_csv(models))
    runs.atomic_write_text(out / "paired.csv", comparison.paired_csv(pairs))
    first = rows[0]
    comparison.plot_accuracy_vs_macs(models, out / "accuracy_vs_macs.png", f"{first['layout']}, {first['headline']} split")
    # ---- report
    log(report)
    log(f"wrote {out}/: {', '.join(comparison.OUTPUTS[1:])}")
    return out


def cli(argv=None):
    """main() for the command line: a user error is one line on stderr and exit status 2."""
    run_cli(lambda: main(argv), (ConfigError,), lambda: _RUNTIME["debug"], "nothing to resume: rerun the command")


if __name__ == "__main__":
    cli()
