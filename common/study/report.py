"""A proxy study's report: the printed table, report.md, the progress line, and its files written."""
import math

import numpy as np

from common.runs import atomic_write_json, atomic_write_text
from common.study.columns import TIMED_PARTS, csv_text

CSV_FILE, CORRELATIONS_FILE, REPORT_FILE = "study.csv", "correlations.json", "report.md"


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
