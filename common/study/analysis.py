"""correlations.json: how each label-free score ranks genotypes against the truth, the truth's reliability, verdicts."""
from dataclasses import dataclass

import numpy as np

from common.search.zero_cost import SCORES as TRAINING_FREE
from common.study import stats as S
from common.study.columns import TRUTHS, column

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


# correlations.json is computed from study.csv's columns alone (rows of the chosen sources, values where both are
# finite), so scipy reproduces every point estimate from the CSV.
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
