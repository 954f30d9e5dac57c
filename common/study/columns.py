"""study.csv: one row per genotype (its scores, size, truth candidates per seed, timings, failures), and its columns."""
import csv
import io
import json
import math

import numpy as np

# The truth is one of three candidates measured on the validation split of every labeled training (TRUTHS): balanced
# accuracy, macro AUC or the validation loss, each averaged over the last TRUTH_EPOCHS epochs (smoother than the last
# epoch alone) and then over the seeds. Every candidate is a column of study.csv (with its per-seed columns); `truth`
# is the one used, oriented so that higher is better (the loss negated). Not the best epoch's accuracy: it is chosen on
# the same validation images, so biased upwards, more for some architectures than others. A genotype whose training
# failed for any seed has no truth.
# truth candidates: name -> (the train record's per-epoch list, higher is better, what it is)
TRUTHS = {
    "bacc": ("epoch_balanced_accuracy", True, "validation balanced accuracy"),
    "auc": ("epoch_auc_macro", True, "validation macro AUC"),
    "val_loss": ("epoch_loss", False, "validation loss (the training criterion)"),
}
TIMED_PARTS = ("size", "naswot", "synflow", "nce", "nce_init", "nce_long", "train")


def _value(record, key):
    """A finished part's number, NaN when the part failed, has not run, or has no value."""
    if record is None or record.get("status") != "ok" or record.get(key) is None:
        return math.nan
    return float(record[key])


def truth_value(record, name, truth_epochs):
    """One seed's truth candidate: the mean of its last truth_epochs epochs (NaN if the part failed or is missing;
    a training with fewer epochs averages what it has)."""
    if record is None or record.get("status") != "ok":
        return math.nan
    series = [v for v in record.get(TRUTHS[name][0], [])[-truth_epochs:]]
    if not series or any(v is None for v in series):
        return math.nan
    return float(np.mean(series))


def study_rows(genotypes, parts, n_seeds, nce_seeds=1, truth="bacc", truth_epochs=1):
    """One dict per genotype, in genotypes order: the columns of study.csv (NaN where a part failed or is missing).

    nce is nce seed 0 (the search's own SEED: exactly the search's trial score), nce_e<k> its loss after epoch k;
    seed index i of <truth candidate>_s<i> and test_bacc_s<i> is the i-th labeled-training seed of the study.
    """
    rows = []
    for g in genotypes:
        def rec(part, i=None, gid=g["id"]):
            return parts.get(gid, part, i)

        nce = [_value(rec("nce", i), "nce") for i in range(nce_seeds)]
        row = {"id": g["id"], "source": g["source"], "trial": g.get("trial")}
        candidates = {name: [truth_value(rec("train", i), name, truth_epochs) for i in range(n_seeds)]
                      for name in TRUTHS}
        sign = 1.0 if TRUTHS[truth][1] else -1.0
        row["truth"] = sign * float(np.mean(candidates[truth]))  # NaN when a seed failed
        row.update({f"truth_s{i}": sign * v for i, v in enumerate(candidates[truth])})
        row["nce"] = nce[0]
        if nce_seeds >= 2:
            row["nce_mean"] = float(np.mean(nce))
        row.update(nce_init=_value(rec("nce_init", 0), "nce_init"), nce_long=_value(rec("nce_long", 0), "nce_long"),
                   naswot=_value(rec("naswot"), "naswot"), synflow=_value(rec("synflow"), "synflow"),
                   params=_value(rec("size"), "params"), macs=_value(rec("size"), "macs"))
        for name, values in candidates.items():
            row[name] = float(np.mean(values))
            row.update({f"{name}_s{i}": v for i, v in enumerate(values)})
        test = [_value(rec("train", i), "test_bacc") for i in range(n_seeds)]
        row["bacc_last"] = float(np.mean([_value(rec("train", i), "bacc") for i in range(n_seeds)]))
        row["test_bacc"] = float(np.mean(test))
        row.update({f"test_bacc_s{i}": v for i, v in enumerate(test)})
        if nce_seeds >= 2:
            row.update({f"nce_s{i}": v for i, v in enumerate(nce)})
        for part in ("nce", "nce_init", "nce_long"):
            done = rec(part, 0)
            if done is not None and done.get("status") == "ok":
                row.update({f"{part}_e{k}": float(v) for k, v in enumerate(done["epoch_losses"], 1)})
        for part in TIMED_PARTS:  # summed over seeds
            done = [r for (gid, p, _), r in parts.records.items() if gid == g["id"] and p == part]
            row[f"seconds_{part}"] = round(sum(r["seconds"] for r in done), 2) if done else math.nan
        failed = [f"{part}" + ("" if i is None else f"_s{i}") for (gid, part, i), r in parts.records.items()
                  if gid == g["id"] and r["status"] == "fail"]
        row["failed"] = " ".join(sorted(failed))
        row["genotype"] = json.dumps(g["genotype"], separators=(",", ":"))
        rows.append(row)
    return _same_columns(rows)


def _same_columns(rows):
    """Every row with every column (per-epoch columns exist only where a part finished): NaN fills the gaps."""
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("failed", "genotype")]
    names += ["failed", "genotype"]
    return [{k: r.get(k, math.nan) for k in names} for r in rows]


def _cell(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""  # a gap, as pandas and spreadsheets read it
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # parameter and MAC counts
    return repr(value) if isinstance(value, float) else str(value)  # repr: the float reads back bit for bit


def csv_text(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(rows[0]))
    writer.writerows([_cell(v) for v in row.values()] for row in rows)
    return out.getvalue()


def column(rows, name):
    """A float array of one column (NaN for gaps)."""
    return np.array([r.get(name, math.nan) if r.get(name) is not None else math.nan for r in rows], dtype=float)
