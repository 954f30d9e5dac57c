"""A search's result files: best_genotype.json (the cell handed over, and how it was chosen), search_curve.png,
pareto.csv / pareto.png, the cell diagrams; and the final round's table as printed."""
import math
import time

from common.arch import genotypes as G
from common.arch.cell_diagram import write_cell_diagrams
from common.figures import plot_pareto, plot_search_curve
from common.runs import atomic_write_json
from common.search import pareto
from common.search.selection import RULE

BEST_FILE = "best_genotype.json"
REFRESH_S = 5.0  # seconds between redraws of the figures while a search runs
_TRIAL_KEYS = ("trial", "loss", "score", "params", "macs")  # what best_genotype.json says of the chosen trial


def best_by_loss(records):
    """The trial with the lowest loss among those that ran to the end (the first on a tie), or None."""
    ok = [r for r in records if r["status"] == "ok" and r.get("loss") is not None]
    return min(ok, key=lambda r: (r["loss"], r["trial"])) if ok else None


def write_progress(run_dir, records, final=None):
    """search_curve.png, pareto.csv / pareto.png and, while no final round has chosen, best_genotype.json with the
    lowest loss so far. final: the final round's summary (final_summary()) once there is one."""
    plot_search_curve([r for r in records if r["status"] != "over_budget"], run_dir / "search_curve.png")
    marks = None if final is None else {"finalists": [r["trial"] for r in final["finalists"]],
                                        "tied": final["tied"], "chosen": final["chosen"]}
    rows = pareto.front_rows(records, marks)
    pareto.write_csv(run_dir / "pareto.csv", rows)
    plot_pareto(rows, run_dir / "pareto.png", final)
    best = best_by_loss(records)
    if best is not None and final is None:
        _write_best(run_dir, best)
    return best


class Refresh:
    """write_progress at most every `every_s` seconds: a training-free search finishes a trial in a fraction of a second,
    and drawing the figures after each would take longer than the trials (the last call of a search is write_final)."""

    def __init__(self, run_dir, every_s=REFRESH_S):
        self.run_dir, self.every_s, self.last = run_dir, every_s, -math.inf

    def __call__(self, records):
        if time.monotonic() - self.last >= self.every_s:
            write_progress(self.run_dir, records)
            self.last = time.monotonic()


def _write_best(run_dir, trial, selection=None):
    literal = G.to_literal(G.from_dict(trial["genotype"]), "CSNAS_SEARCHED")
    summary = {k: trial[k] for k in _TRIAL_KEYS if k in trial}
    extra = {} if selection is None else {"selection": selection}
    atomic_write_json(run_dir / BEST_FILE, {"genotype": trial["genotype"], **summary, "literal": literal, **extra})
    return literal


def final_summary(rows, plan, select, chosen, why, latency_method=None):
    """What best_genotype.json's 'selection' says: the rule, the round's settings, every finalist's numbers, the tied
    set and why the chosen one."""
    keep = ("trial", "search_loss", "params", "macs", "latency_ms", "seeds", "losses", "complete", "n", "mean", "se",
            "ci", "diff", "diff_se", "diff_ci", "best", "tied")
    return {"select": select, "tie_rule": RULE, "score": plan.score, "epochs": plan.epochs, "seeds": list(plan.seeds),
            "finalists": [{k: r.get(k) for k in keep} for r in rows], "tied": [r["trial"] for r in rows if r["tied"]],
            "chosen": None if chosen is None else chosen["trial"], "why": why,
            "best_final": next((r["trial"] for r in rows if r["best"]), None), "latency_method": latency_method}


def write_final(run_dir, records, final=None, log=print):
    """The files of a finished search: the chosen trial (final['chosen'], else the lowest loss) in best_genotype.json,
    with the final round's selection; the figures; the chosen cell's diagrams. Returns (chosen record, literal)."""
    write_progress(run_dir, records, final)
    best = best_by_loss(records)
    if best is None:
        return None
    chosen = best if final is None or final["chosen"] is None else next(r for r in records if r["trial"] == final["chosen"])
    selection = None
    if final is not None:
        selection = {**final, "best_by_search": {"trial": best["trial"], "loss": best["loss"]}}
    literal = _write_best(run_dir, chosen, selection)
    write_cell_diagrams(G.from_dict(chosen["genotype"]), run_dir, log)
    return chosen, literal


def _num(v, fmt):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def final_table(final, best_by_search):
    """The final round as printed: the rule, one line per finalist, the tied set and the choice."""
    lines = [f"final round: {len(final['finalists'])} finalists x {len(final['seeds'])} seeds of {final['score']} "
             f"({final['epochs']} epochs), the same seeds for each",
             f"rule (fixed before the numbers): {final['tie_rule']}",
             f"{'trial':>7} {'search':>9} {'mean ± SE':>17} {'Δ vs best ± SE':>18} {'95% t-interval of Δ':>21} "
             f"{'MACs':>9} {'params':>8}  tied"]
    for f in final["finalists"]:
        mean = f"{_num(f['mean'], '.4f')} ± {_num(f['se'], '.4f')}"
        if f["best"]:
            diff, ci = "best", ""
        elif f["diff"] is None:
            diff, ci = "n/a (seed failed)" if not f["complete"] else "n/a", ""
        else:
            diff = f"{f['diff']:+.4f} ± {_num(f['diff_se'], '.4f')}"
            ci = f"[{f['diff_ci'][0]:+.4f}, {f['diff_ci'][1]:+.4f}]" if f["diff_ci"] else ""
        macs = f"{f['macs'] / 1e6:.0f}M" if f["macs"] is not None else "n/a"
        params = f"{f['params'] / 1e6:.2f}M" if f["params"] is not None else "n/a"
        lines.append(f"{'#' + str(f['trial']):>7} {_num(f['search_loss'], '.4f'):>9} {mean:>17} {diff:>18} {ci:>21} "
                     f"{macs:>9} {params:>8}  {'yes' if f['tied'] else 'no'}")
    lines.append(f"tied with the best: {', '.join('#' + str(t) for t in final['tied']) or 'none'} "
                 "(tied: this round could not tell them apart, not that they are equal)")
    if final["chosen"] is not None:
        chosen = next(f for f in final["finalists"] if f["trial"] == final["chosen"])
        line = f"SELECT={final['select']!r}: trial #{final['chosen']}, {final['why']}"
        single = next((f for f in final["finalists"] if f["trial"] == best_by_search), None)
        if single is not None and single["trial"] != chosen["trial"] and single["macs"] and chosen["macs"]:
            line += (f"; {100 * (1 - chosen['macs'] / single['macs']):.0f} % fewer MACs than the best by the search's "
                     f"single loss (#{single['trial']})")
        lines.append(line)
    return lines
