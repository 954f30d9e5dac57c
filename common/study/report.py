"""A proxy study's results: study.csv (a row per genotype), correlations.json, the printed table and report.md.

The truth is one of three candidates measured on the validation split of every labeled training (TRUTHS): balanced
accuracy, macro AUC or the validation loss, each averaged over the last TRUTH_EPOCHS epochs (smoother than the last
epoch alone) and then over the seeds. Every candidate is a column of study.csv (with its per-seed columns); `truth`
is the one used, oriented so that higher is better (the loss negated). Not the best epoch's accuracy: it is chosen on
the same validation images, so biased upwards, more for some architectures than others. A genotype whose training
failed for any seed has no truth. correlations.json is computed from study.csv's columns alone (rows of the chosen
sources, values where both are finite), so scipy reproduces every point estimate from the CSV.
"""
import csv
import io
import json
import math
from dataclasses import dataclass

import numpy as np

from common.runs import atomic_write_json, atomic_write_text
from common.search.zero_cost import SCORES as TRAINING_FREE
from common.study import stats as S

# Which way each score predicts accuracy, declared once. The search minimises the contrastive loss; NASWOT and
# synflow keep their papers' direction; larger networks usually train to higher accuracy, so size predicts
# "higher is better": the trivial baseline any proxy has to beat.
HIGHER_IS_BETTER = {
    "nce": False,
    "nce_mean": False,  # the mean over the study's nce seeds: what a search with REPEATS = NCE_SEEDS would score
    "nce_init": False,  # the control: the same loss of the untrained network
    "nce_long": False,  # the optional second variant (longer contrastive training)
    "naswot": TRAINING_FREE["naswot"].higher_is_better,
    "synflow": TRAINING_FREE["synflow"].higher_is_better,
    "params": True,
    "macs": True,
}
BASELINE = "params"  # the size baseline every score is compared with (partial correlation, paired difference)
# truth candidates: name -> (the train record's per-epoch list, higher is better, what it is)
TRUTHS = {
    "bacc": ("epoch_balanced_accuracy", True, "validation balanced accuracy"),
    "auc": ("epoch_auc_macro", True, "validation macro AUC"),
    "val_loss": ("epoch_loss", False, "validation loss (the training criterion)"),
}
TIMED_PARTS = ("size", "naswot", "synflow", "nce", "nce_init", "nce_long", "train")
CSV_FILE, CORRELATIONS_FILE, REPORT_FILE = "study.csv", "correlations.json", "report.md"
ROW_CHOICES = ("random", "all")  # which genotypes the correlations use
RELIABLE = 0.8  # the decision rule's reliability threshold for the truth (fixed, whatever MIN_RELIABILITY lets run)
DECISION_RULE = (
    "Fixed before the numbers: a score is **useful** on this data when its Spearman rho with the truth has a "
    "{conf} CI above 0 and its paired difference from the `params` rho (same genotypes, same bootstrap) has a {conf} "
    "CI above 0; **no better than size** when its rho's CI lies above 0 but the difference's does not; **not shown "
    "better than chance** when its rho's CI reaches 0 or below. Every verdict is **not decidable** when the truth's "
    "reliability (its seed mean's, from ICC(1) and Spearman-Brown) is below {min_rel}."
)


def score_names(nce_seeds, has_long=False):
    return [n for n in HIGHER_IS_BETTER if (n != "nce_mean" or nce_seeds >= 2) and (n != "nce_long" or has_long)]


def direction(name):
    return "higher" if HIGHER_IS_BETTER[name] else "lower"


# ----------------------------------------------------------------------------- rows


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


# ----------------------------------------------------------------------------- correlations


def reliability(rows, n_seeds, use="random", target=RELIABLE, confidence=S.CONFIDENCE,
                n_resamples=S.N_RESAMPLES, seed=S.BOOTSTRAP_SEED):
    """How well each truth candidate agrees with itself from seed to seed: {candidate: {...}}, or {} with one seed.

    Per candidate: ICC(1) of one seed's measurement with its exact CI; `reliability`, that of the mean of the
    n_seeds seeds (Spearman-Brown), with the CI mapped the same way; seeds_needed to reach `target`; and the
    seed-vs-seed Spearman rho with its bootstrap CI.
    """
    if n_seeds < 2:
        return {}
    picked = [r for r in rows if use == "all" or r["source"] == "random"]
    out = {}
    for name in TRUTHS:
        table = np.stack([column(picked, f"{name}_s{i}") for i in range(n_seeds)], 1)
        icc = S.icc1(table, confidence)
        agree = S.seed_agreement(table, confidence, n_resamples, seed)
        lo, hi = icc["icc_ci"]
        out[name] = {"n": icc["n"], "seeds": n_seeds, "icc": icc["icc"], "icc_ci": icc["icc_ci"], "f": icc["f"],
                     "p": icc["p"], "reliability": S.spearman_brown(icc["icc"], n_seeds),
                     "reliability_ci": [S.spearman_brown(lo, n_seeds), S.spearman_brown(hi, n_seeds)],
                     "seeds_needed": S.seeds_for(icc["icc"], target), "target": target,
                     "seed_spearman": agree["spearman"], "seed_spearman_ci": agree["spearman_ci"]}
    return out


def choose_truth(setting, rel):
    """The truth candidate to use: `setting` itself, or for 'auto' the most reliable one (bacc without a measure)."""
    if setting != "auto":
        return setting
    known = {k: v["reliability"] for k, v in rel.items() if v.get("reliability") is not None}
    return max(known, key=lambda k: (known[k], -list(TRUTHS).index(k))) if known else "bacc"


def _spearman_or_none(x, y):
    """The point estimate alone (no interval): Spearman rho of the finite pairs, None below MIN_PAIRS or if constant."""
    x, y = S.finite_pairs(x, y)
    return S.finite_or_none(S.spearman(x, y)) if len(x) >= S.MIN_PAIRS else None


def verdict(entry, decidable):
    """The decision rule (DECISION_RULE) applied to one score's correlations.json entry."""
    if not decidable:
        return "not decidable"
    lo = (entry.get("spearman_ci") or [None])[0]
    if lo is None or lo <= 0:
        return "not shown better than chance"
    if entry.get("vs_params") is None:  # params itself
        return "better than chance"
    diff_lo = entry["vs_params"]["difference_ci"][0]
    return "useful" if diff_lo is not None and diff_lo > 0 else "no better than size"


@dataclass(frozen=True, kw_only=True)
class CorrelationSettings:
    """How correlations.json judges the scores (which rows, top-k, the bootstrap, the decision rule's reliability
    threshold) and what the study measured that its columns reflect (nce seeds, the long variant, the truth)."""

    use: str = "random"  # one of ROW_CHOICES
    top_fraction: float = S.TOP_FRACTION
    confidence: float = S.CONFIDENCE
    n_resamples: int = S.N_RESAMPLES
    seed: int = S.BOOTSTRAP_SEED  # the bootstrap's
    reliable: float = RELIABLE
    nce_seeds: int = 1
    has_long: bool = False  # study.csv has an nce_long column
    truth: str = "bacc"  # one of TRUTHS
    truth_epochs: int = 1


def correlations(rows, n_seeds, settings=CorrelationSettings(), pilot=None):
    """correlations.json: 'about'; 'reliability' of every truth candidate; per score {direction, n, spearman,
    spearman_ci, kendall, kendall_ci, top_k, with_params, partial, vs_params, verdict}; 'ceiling' (seed-to-seed
    agreement of the truth) and 'nce_seeds' with enough seeds; 'nce_checks' (nce_init and the first epoch against
    the final nce); 'search' (percentiles with CIs); 'pilot' as measured before the study went on."""
    use, top_fraction, confidence = settings.use, settings.top_fraction, settings.confidence
    n_resamples, seed, reliable = settings.n_resamples, settings.seed, settings.reliable
    nce_seeds, has_long, truth, truth_epochs = settings.nce_seeds, settings.has_long, settings.truth, settings.truth_epochs
    picked = [r for r in rows if use == "all" or r["source"] == "random"]
    truth_col = column(picked, "truth")
    kw = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    names = score_names(nce_seeds, has_long)
    rel = reliability(rows, n_seeds, use, reliable, **kw)
    used = rel.get(truth, {}).get("reliability")
    decidable = used is not None and used >= reliable
    out = {"about": {
        "truth": f"{truth}: {TRUTHS[truth][2]}, mean of the last {truth_epochs} epoch(s), mean over {n_seeds} seed(s)"
                 + ("" if TRUTHS[truth][1] else "; negated, so that higher is better"),
        "truth_name": truth, "truth_epochs": truth_epochs, "reliable": reliable,
        "truth_reliability": used, "decidable": decidable,
        "rows": use, "n_rows": len(picked), "scores": names, "seeds": n_seeds, "nce_seeds": nce_seeds,
        "orientation": "each score is negated when lower is better, so a positive coefficient means it ranks "
                       "genotypes like the truth",
        "ci": f"{confidence:.0%} percentile bootstrap over genotypes (paired), {n_resamples} resamples, seed {seed}",
        "top_k": f"share of the best {top_fraction:.0%} by the truth found in the best {top_fraction:.0%} by the score",
        "rule": DECISION_RULE.format(conf=f"{confidence:.0%}", min_rel=reliable),
    }, "reliability": rel, "pilot": pilot}
    size = column(picked, BASELINE)
    for name in names:
        hib = HIGHER_IS_BETTER[name]
        score = column(picked, name)
        entry = {"direction": direction(name), **S.rank_agreement(score, truth_col, hib, **kw),
                 "top_k": S.top_k(score, truth_col, hib, top_fraction),
                 "with_params": _spearman_or_none(S.oriented(score, hib), size)}
        if name != BASELINE:
            entry["partial"] = S.partial_agreement(score, truth_col, size, hib, **kw)
            entry["vs_params"] = S.difference_from(score, size, truth_col, hib, HIGHER_IS_BETTER[BASELINE], **kw)
        entry["verdict"] = verdict(entry, decidable)
        out[name] = entry
    if n_seeds >= 2:
        seeds = np.stack([column(picked, f"truth_s{i}") for i in range(n_seeds)], 1)
        out["ceiling"] = {"of": "truth_s<i> against truth_s<j>", **S.seed_agreement(seeds, **kw)}
    else:
        out["ceiling"] = None
    if nce_seeds >= 2:
        seeds = np.stack([column(picked, f"nce_s{i}") for i in range(nce_seeds)], 1)
        out["nce_seeds"] = {"of": "nce_s<i> against nce_s<j>", **S.seed_agreement(seeds, **kw)}
    else:
        out["nce_seeds"] = None
    final = column(picked, "nce")
    checks = {"nce_init": "nce_init (no learning) against nce", "nce_e1": "nce after its first epoch against nce"}
    if has_long:
        checks["nce_long"] = "nce_long against nce"
    out["nce_checks"] = {k: {"of": about, **S.rank_agreement(column(picked, k), final, True, **kw)}
                         for k, about in checks.items()}
    searched = [r for r in rows if r["source"] == "search"]
    if searched:
        reference = column([r for r in rows if r["source"] == "random"], "truth")
        found = [{"id": r["id"], "trial": r["trial"], "truth": S.finite_or_none(r["truth"]),
                  "percentile": S.percentile(r["truth"], reference),
                  "percentile_ci": S.percentile_ci(r["truth"], reference, **kw)} for r in searched]
        known = [f["percentile"] for f in found if f["percentile"] is not None]
        out["search"] = {"of": "each search genotype's truth among the random genotypes' (ties count half); CI from "
                               "resampling the random genotypes",
                         "n_random": int(np.isfinite(reference).sum()), "best": found[0], "genotypes": found,
                         "mean_percentile": float(np.mean(known)) if known else None}
    return out


# ----------------------------------------------------------------------------- the table


def _f(value, spec="+.2f"):
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _ci(entry, name):
    lo, hi = entry.get(f"{name}_ci") or (None, None)
    return f"{_f(entry.get(name))} [{_f(lo)}, {_f(hi)}]"


def _top(entry):
    t = entry["top_k"]
    if t["share"] is None:
        return "n/a"
    return f"{round(t['share'] * t['k'])}/{t['k']} (chance {t['chance']:.2f})"


def _partial(entry):
    part = entry.get("partial")
    return "" if part is None else _ci(part, "partial_spearman")


def _diff(entry):
    diff = entry.get("vs_params")
    return "" if diff is None else _ci(diff, "difference")


def table_rows(corr):
    """[(score, better, n, rho [CI], tau [CI], top-k, rho with params, partial rho [CI], minus params [CI], verdict)]
    for the printed table and report.md."""
    return [(n, corr[n]["direction"], str(corr[n]["n"]), _ci(corr[n], "spearman"), _ci(corr[n], "kendall"),
             _top(corr[n]), _f(corr[n].get("with_params")), _partial(corr[n]), _diff(corr[n]), corr[n]["verdict"])
            for n in corr["about"]["scores"]]


_HEADER = ("score", "better", "n", "Spearman rho [95% CI]", "Kendall tau [95% CI]", "top 20%", "rho with params",
           "partial rho given params [95% CI]", "rho - params rho [95% CI]", "verdict")


def format_table(corr):
    """The printed table: the truth's reliability, a row per score, then the ceiling, nce's checks and the search."""
    rows = [_HEADER, *table_rows(corr)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*reliability_lines(corr), *lines, *summary_lines(corr)])


def reliability_lines(corr):
    """The truth, its reliability (or that it is unknown) and what the verdicts may claim."""
    about, rel = corr["about"], corr.get("reliability") or {}
    lines = [f"truth: {about['truth']}"]
    if not rel:
        return lines + ["truth reliability: unknown (SEEDS=1); every verdict is 'not decidable'"]
    for name, r in rel.items():
        used = " (used)" if name == about["truth_name"] else ""
        lines.append(f"reliability of {name}{used}: {_f(r['reliability'], '.2f')} "
                     f"[{_f(r['reliability_ci'][0], '.2f')}, {_f(r['reliability_ci'][1], '.2f')}] for the mean of "
                     f"{r['seeds']} seeds (ICC(1) {_ci(r, 'icc')}, {r['n']} genotypes; seed-vs-seed rho "
                     f"{_ci(r, 'seed_spearman')}); {_seeds_needed(r, r['target'])}")
    state = "decidable" if about["decidable"] else f"NOT decidable (below {about['reliable']})"
    lines.append(f"the truth used is {state}")
    return lines


def _seeds_needed(r, target):
    k = r.get("seeds_needed")
    return f"no number of seeds reaches {target} (ICC <= 0)" if k is None else f"{k} seed(s) would reach {target}"


FEW_GENOTYPES = 10  # below this many, a bootstrap resample holds too few distinct genotypes to trust its interval
WIDE_CI = 0.5  # a ceiling whose CI is wider than this is reported as unknown


def summary_lines(corr):
    lines = []
    if corr["about"]["n_rows"] < FEW_GENOTYPES:
        lines.append(f"only {corr['about']['n_rows']} genotypes: the bootstrap intervals are unreliable below "
                     f"{FEW_GENOTYPES} (a resample holds few distinct genotypes); raise K")
    c = corr.get("ceiling")
    if c and c.get("spearman") is not None:
        lo, hi = c["spearman_ci"]
        wide = lo is None or hi is None or hi - lo > WIDE_CI
        lines.append(f"labels' own noise (truth seed vs seed, {c['n']} genotypes): rho {_ci(c, 'spearman')}; "
                     + ("the ceiling of a perfect score is unknown (that interval is too wide)" if wide else
                        f"a perfect score would reach about {_f(c['spearman_of_mean'])} against the mean of "
                        f"{c['seeds']} seeds"))
    else:
        lines.append("labels' own noise: not measured (SEEDS=1); rerun with SEEDS >= 2 for the ceiling")
    nce = corr.get("nce_seeds")
    if nce:
        lines.append(f"nce seed vs seed ({nce['n']} genotypes): rho {_ci(nce, 'spearman')}")
    for check in (corr.get("nce_checks") or {}).values():
        lines.append(f"{check['of']}: rho {_ci(check, 'spearman')} ({check['n']} genotypes)")
    search = corr.get("search")
    if search:
        for g in search["genotypes"]:
            lo, hi = g["percentile_ci"]
            lines.append(f"search genotype {g['id']} (trial {g['trial']}): truth {_f(g['truth'], '.4f')}, percentile "
                         f"{_f(g['percentile'], '.0f')} [{_f(lo, '.0f')}, {_f(hi, '.0f')}] among "
                         f"{search['n_random']} random genotypes")
        if search.get("mean_percentile") is not None:
            lines.append(f"search genotypes' mean percentile: {search['mean_percentile']:.0f} (50 = a random pick)")
    return lines


def genotype_line(n, total, row, seconds, eta_minutes):
    """'genotype 3/14 random-02 | nce 7.812 | nce_init 7.9 | naswot 812.3 | ... | truth 0.412 | ...'."""
    scores = " | ".join(f"{name} {_f(row.get(name), '.4g')}" for name in ("nce", "nce_init", "naswot", "synflow"))
    failed = f" | failed: {row['failed']}" if row["failed"] else ""
    return (f"genotype {n}/{total} {row['id']} | {scores} | {_f(row['params'] / 1e6, '.2f')}M params | "
            f"truth {_f(row['truth'], '.4f')} | {seconds / 60:.1f} min | ETA {eta_minutes:.0f} min{failed}")


# ----------------------------------------------------------------------------- files


def write_outputs(run_dir, rows, corr):
    """study.csv and correlations.json (after every genotype: a killed study leaves its results so far)."""
    atomic_write_text(run_dir / CSV_FILE, csv_text(rows))
    atomic_write_json(run_dir / CORRELATIONS_FILE, corr)


def timing_summary(parts):
    """{part: (mean wall seconds, mean CPU seconds or None)} per genotype and seed, over the parts that finished."""
    out = {}
    for part in TIMED_PARTS:
        done = [r for (_, p, _), r in parts.records.items() if p == part and r["status"] == "ok"]
        cpu = [r["cpu_seconds"] for r in done if r.get("cpu_seconds") is not None]
        if done:
            out[part] = (float(np.mean([r["seconds"] for r in done])), float(np.mean(cpu)) if cpu else None)
    return out


def report_markdown(corr, settings, timings, figures):
    """report.md: the decision rule, the truth's reliability, the table with verdicts, checks, search, settings,
    timings, figures, caveats; for a paper's appendix."""
    about = corr["about"]
    md = ["# Label-free scores against labeled accuracy", "",
          "How well does each label-free score rank DARTS cells like the accuracy they reach when trained with "
          "labels? Generated by `search/proxy_study.py`.", "", "## Decision rule", "", about["rule"], "",
          "## The truth and its reliability", "", *[f"- {line}" for line in reliability_lines(corr)]]
    pilot = corr.get("pilot")
    if pilot:
        md.append(f"- pilot ({pilot['genotypes']} genotypes x {pilot['seeds']} seeds, before the rest was measured): "
                  f"{pilot['truth']} reliability {_f(pilot['reliability'], '.2f')} "
                  f"[{_f(pilot['reliability_ci'][0], '.2f')}, {_f(pilot['reliability_ci'][1], '.2f')}]"
                  + (f" (below {about['reliable']}: run on with MIN_RELIABILITY={pilot['min_reliability']})"
                     if pilot.get("forced") else ""))
    md += ["", "## Rank correlation with the truth", "",
           f"Over {about['n_rows']} {'random genotypes' if about['rows'] == 'random' else 'genotypes'}; "
           f"{about['orientation']}. CIs: {about['ci']}. top 20%: {about['top_k']}. *rho with params*: the score's "
           "own rank correlation with parameter count; *partial rho given params*: with the truth, parameter count held "
           "fixed (ranks regressed on its ranks); *rho - params rho*: the paired difference from the size baseline.",
           "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in table_rows(corr)]
    md += ["", *[f"- {line}" for line in summary_lines(corr)], "", "## Settings", ""]
    md += [f"- **{k}**: {v}" for k, v in settings.items()]
    md += [""]
    if timings:
        md += ["## Cost per genotype", "", "| part | wall seconds | CPU seconds |", "|---|---|---|"]
        md += [f"| {p}{' (per seed)' if p in ('nce', 'train') else ''} | {wall:.1f} | {_f(cpu, '.1f')} |"
               for p, (wall, cpu) in timings.items()]
        md += [""]
    if figures:
        md += ["## Figures", "", *[f"![{name}]({name})" for name in figures], ""]
    md += ["## Caveats", "",
           "- The labels come from a short training budget, a proxy of full training itself; rankings after full "
           "training can differ.",
           "- The truth is measured on the validation split, averaged over the last epochs and seeds; not the best "
           "epoch's accuracy (selected on the same images, hence biased upwards).",
           "- With TRUTH='auto' the truth is the candidate that was most reliable on these genotypes: its "
           "reliability is the best of three estimates, slightly optimistic.",
           "- params and macs are the trivial baselines (larger = predicted better); a label-free score is only "
           "useful where it beats them.",
           "- Correlations use the random genotypes only (the population a search draws from); the search's own "
           "genotypes were picked by nce and enter only through their percentile."
           if about["rows"] == "random" else "- Correlations include the search's genotypes, which nce picked.",
           ""]
    return "\n".join(md)
