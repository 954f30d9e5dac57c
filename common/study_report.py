"""A proxy study's results: study.csv (a row per genotype), correlations.json, the printed table and report.md.

The truth is `bacc`: validation balanced accuracy of the labeled network's LAST epoch (metrics.json's `val_last`),
averaged over the seeds; not the best epoch, which is chosen on the same validation images and so is biased
upwards, more for some architectures than others. A genotype whose training failed for any seed has no `bacc`.
correlations.json is computed from study.csv's columns alone (rows of the chosen sources, pairs where both
values are finite), so scipy reproduces every point estimate from the CSV.
"""
import csv
import io
import json
import math

import numpy as np

from common import proxy_stats as S
from common.runs import atomic_write_json, atomic_write_text
from common.zero_cost import SCORES as TRAINING_FREE

# Which way each score predicts accuracy, declared once. The search minimises the contrastive loss; NASWOT and
# synflow keep their papers' direction; larger networks usually train to higher accuracy, so size predicts
# "higher is better": the trivial baseline any proxy has to beat.
HIGHER_IS_BETTER = {
    "nce": False,
    "nce_mean": False,  # the mean over the study's seeds: what a search with REPEATS = SEEDS would score
    "naswot": TRAINING_FREE["naswot"].higher_is_better,
    "synflow": TRAINING_FREE["synflow"].higher_is_better,
    "params": True,
    "macs": True,
}
TIMED_PARTS = ("size", "naswot", "synflow", "nce", "train")
CSV_FILE, CORRELATIONS_FILE, REPORT_FILE = "study.csv", "correlations.json", "report.md"
ROW_CHOICES = ("random", "all")  # which genotypes the correlations use


def score_names(n_seeds):
    return [n for n in HIGHER_IS_BETTER if n != "nce_mean" or n_seeds >= 2]


def direction(name):
    return "higher" if HIGHER_IS_BETTER[name] else "lower"


# ----------------------------------------------------------------------------- rows


def _value(record, key):
    """A finished part's number, NaN when the part failed, has not run, or has no value."""
    if record is None or record.get("status") != "ok" or record.get(key) is None:
        return math.nan
    return float(record[key])


def study_rows(genotypes, parts, n_seeds):
    """One dict per genotype, in genotypes order: the columns of study.csv (NaN where a part failed or is missing).

    nce is seed index 0 (the search's own SEED: exactly the search's trial score); seed index i of nce_s<i>,
    bacc_s<i> and test_bacc_s<i> is the i-th seed of the study.
    """
    rows = []
    for g in genotypes:
        def rec(part, i=None, gid=g["id"]):
            return parts.get(gid, part, i)

        nce = [_value(rec("nce", i), "nce") for i in range(n_seeds)]
        bacc = [_value(rec("train", i), "bacc") for i in range(n_seeds)]
        test = [_value(rec("train", i), "test_bacc") for i in range(n_seeds)]
        row = {"id": g["id"], "source": g["source"], "trial": g.get("trial"), "nce": nce[0]}
        if n_seeds >= 2:
            row["nce_mean"] = float(np.mean(nce))  # NaN when a seed failed
        row.update(naswot=_value(rec("naswot"), "naswot"), synflow=_value(rec("synflow"), "synflow"),
                   params=_value(rec("size"), "params"), macs=_value(rec("size"), "macs"), bacc=float(np.mean(bacc)))
        row.update({f"bacc_s{i}": v for i, v in enumerate(bacc)})
        row["test_bacc"] = float(np.mean(test))
        row.update({f"test_bacc_s{i}": v for i, v in enumerate(test)})
        if n_seeds >= 2:
            row.update({f"nce_s{i}": v for i, v in enumerate(nce)})
        for part in TIMED_PARTS:  # summed over seeds
            done = [rec(part, i) for i in ((None,) if part in ("size", "naswot", "synflow") else range(n_seeds))]
            row[f"seconds_{part}"] = round(sum(r["seconds"] for r in done if r is not None), 2) if any(done) else math.nan
        failed = [f"{part}" + ("" if i is None else f"_s{i}") for (gid, part, i), r in parts.records.items()
                  if gid == g["id"] and r["status"] == "fail"]
        row["failed"] = " ".join(sorted(failed))
        row["genotype"] = json.dumps(g["genotype"], separators=(",", ":"))
        rows.append(row)
    return rows


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


def correlations(rows, n_seeds, use="random", top_fraction=S.TOP_FRACTION, confidence=S.CONFIDENCE,
                 n_resamples=S.N_RESAMPLES, seed=S.BOOTSTRAP_SEED):
    """correlations.json: per score {direction, n, spearman, spearman_ci, kendall, kendall_ci, top_k}; 'ceiling'
    (seed-to-seed agreement of bacc) and 'nce_seeds' (of nce) with SEEDS >= 2; 'search' (percentiles); 'about'."""
    picked = [r for r in rows if use == "all" or r["source"] == "random"]
    truth = column(picked, "bacc")
    kw = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    out = {"about": {
        "truth": "bacc: validation balanced accuracy of the last epoch (metrics.json val_last), mean over seeds",
        "rows": use, "n_rows": len(picked), "scores": score_names(n_seeds), "seeds": n_seeds,
        "orientation": "each score is negated when lower is better, so a positive coefficient means it ranks "
                       "genotypes like accuracy",
        "ci": f"{confidence:.0%} percentile bootstrap over genotypes (paired), {n_resamples} resamples, seed {seed}",
        "top_k": f"share of the best {top_fraction:.0%} by bacc found in the best {top_fraction:.0%} by the score",
    }}
    for name in score_names(n_seeds):
        hib = HIGHER_IS_BETTER[name]
        score = column(picked, name)
        out[name] = {"direction": direction(name), **S.rank_agreement(score, truth, hib, **kw),
                     "top_k": S.top_k(score, truth, hib, top_fraction)}
    if n_seeds >= 2:
        seeds = lambda prefix: np.stack([column(picked, f"{prefix}_s{i}") for i in range(n_seeds)], 1)  # noqa: E731
        out["ceiling"] = {"of": "bacc_s<i> against bacc_s<j>", **S.seed_agreement(seeds("bacc"), **kw)}
        out["nce_seeds"] = {"of": "nce_s<i> against nce_s<j>", **S.seed_agreement(seeds("nce"), **kw)}
    else:
        out["ceiling"] = out["nce_seeds"] = None
    searched = [r for r in rows if r["source"] == "search"]
    if searched:
        reference = column([r for r in rows if r["source"] == "random"], "bacc")
        found = [{"id": r["id"], "trial": r["trial"], "bacc": S.finite_or_none(r["bacc"]),
                  "percentile": S.percentile(r["bacc"], reference)} for r in searched]
        out["search"] = {"of": "each search genotype's bacc among the random genotypes' (ties count half)",
                         "n_random": int(np.isfinite(reference).sum()), "best": found[0], "genotypes": found}
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


def table_rows(corr):
    """[(score, better, n, rho [CI], tau [CI], top-k)] for the printed table and report.md."""
    return [(n, corr[n]["direction"], str(corr[n]["n"]), _ci(corr[n], "spearman"), _ci(corr[n], "kendall"),
             _top(corr[n])) for n in corr["about"]["scores"]]


_HEADER = ("score", "better", "n", "Spearman rho [95% CI]", "Kendall tau [95% CI]", "top 20%")


def format_table(corr):
    """The printed table: a row per score, then the ceiling, nce's own agreement and the search's percentile."""
    rows = [_HEADER, *table_rows(corr)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*lines, *summary_lines(corr)])


FEW_GENOTYPES = 10  # below this many, a bootstrap resample holds too few distinct genotypes to trust its interval


def summary_lines(corr):
    lines = []
    if corr["about"]["n_rows"] < FEW_GENOTYPES:
        lines.append(f"only {corr['about']['n_rows']} genotypes: the bootstrap intervals are unreliable below "
                     f"{FEW_GENOTYPES} (a resample holds few distinct genotypes); raise K")
    c = corr.get("ceiling")
    if c:
        lines.append(f"labels' own noise (bacc seed vs seed, {c['n']} genotypes): rho {_ci(c, 'spearman')}; a perfect "
                     f"score would reach about {_f(c['spearman_of_mean'])} against the mean of {c['seeds']} seeds")
    else:
        lines.append("labels' own noise: not measured (SEEDS=1); rerun with SEEDS >= 2 for the ceiling")
    nce = corr.get("nce_seeds")
    if nce:
        lines.append(f"nce seed vs seed ({nce['n']} genotypes): rho {_ci(nce, 'spearman')}")
    search = corr.get("search")
    if search:
        best = search["best"]
        lines.append(f"search's best genotype ({best['id']}, trial {best['trial']}): bacc {_f(best['bacc'], '.3f')}, "
                     f"percentile {_f(best['percentile'], '.0f')} among {search['n_random']} random genotypes")
    return lines


def genotype_line(n, total, row, seconds, eta_minutes):
    """'genotype 3/14 random-02 | nce 7.812 | naswot 812.3 | synflow 2.1e+09 | 0.41M params | bacc 0.412 | ...'."""
    scores = " | ".join(f"{name} {_f(row.get(name), '.4g')}" for name in ("nce", "naswot", "synflow"))
    failed = f" | failed: {row['failed']}" if row["failed"] else ""
    return (f"genotype {n}/{total} {row['id']} | {scores} | {_f(row['params'] / 1e6, '.2f')}M params | "
            f"bacc {_f(row['bacc'], '.3f')} | {seconds / 60:.1f} min | ETA {eta_minutes:.0f} min{failed}")


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
    """report.md: settings, the table, ceiling, search, timings, figures, caveats; for a paper's appendix."""
    n_seeds = corr["about"]["seeds"]
    md = ["# Label-free scores against labeled accuracy", "",
          "How well does each label-free score rank DARTS cells like the accuracy they reach when trained with "
          "labels? Generated by `search/proxy_study.py`.", "", "## Settings", ""]
    md += [f"- **{k}**: {v}" for k, v in settings.items()]
    md += ["", "## Rank correlation with labeled accuracy", "",
           f"Over {corr['about']['n_rows']} {'random genotypes' if corr['about']['rows'] == 'random' else 'genotypes'}; "
           f"{corr['about']['orientation']}. CIs: {corr['about']['ci']}. top 20%: {corr['about']['top_k']}.", "",
           "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    md += ["| " + " | ".join(r) + " |" for r in table_rows(corr)]
    md += ["", *[f"- {line}" for line in summary_lines(corr)], ""]
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
           "- The truth is the last epoch's validation balanced accuracy, not the best epoch's (selected on the "
           "same images, hence biased upwards).",
           "- With few genotypes the intervals are wide; a coefficient whose interval spans 0 does not show that "
           "the score ranks anything.",
           (f"- The labels' own seed-to-seed agreement bounds any score: a score can reach at most about "
            f"{_f((corr.get('ceiling') or {}).get('spearman_of_mean'))} against the mean of {n_seeds} seeds."
            if n_seeds >= 2 else "- One seed only: the labels' own noise is unknown."),
           "- params and macs are the trivial baselines (larger = predicted better); a label-free score is only "
           "useful where it beats them.",
           "- Correlations use the random genotypes only (the population a search draws from); the search's own "
           "genotypes were picked by nce and enter only through their percentile."
           if corr["about"]["rows"] == "random" else "- Correlations include the search's genotypes, which nce picked.",
           ""]
    return "\n".join(md)
