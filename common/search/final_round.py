"""The final round of a search: its FINAL_TOP best distinct candidates measured again with FINAL_REPEATS further
seeds, the same seeds for every finalist (common random numbers), recorded in final.jsonl and resumable.

The search's own measurement of a finalist is left out of the round: it is the measurement that made it a
finalist, so it is biased low (the winner's curse), and FINAL_SCORE may be another score altogether (a training-free
screen, then nce). Only this process writes final.jsonl; a (finalist, seed) recorded there is never measured again.
"""
import json
import math
import time
from dataclasses import dataclass

from common.runs import append_jsonl, read_jsonl

FINAL_FILE = "final.jsonl"
TRAINED_SCORES = ("nce", "nce_init")  # scores that train (or run) the candidate's contrastive epochs: seed-dependent


@dataclass(frozen=True)
class FinalPlan:
    """What the final round measures: FINAL_TOP finalists x `seeds` with `score` for `epochs` epochs."""

    top: int
    score: str
    epochs: int
    seeds: tuple


def final_score(cfg):
    """FINAL_SCORE, with 'auto' = the search's SCORE when it trains (nce, nce_init), else 'nce' (a training-free
    screen is followed by the paper's score)."""
    if cfg["FINAL_SCORE"] != "auto":
        return cfg["FINAL_SCORE"]
    return cfg["SCORE"] if cfg["SCORE"] in TRAINED_SCORES else "nce"


def make_plan(cfg, repeat_seeds):
    """The round's FinalPlan, or None with FINAL_TOP=0 (the paper's behaviour: the lowest single loss is handed over).

    repeat_seeds(seed, n): the search's seed list (common.search.trial.repeat_seeds); the round takes the next
    FINAL_REPEATS seeds after the search's own REPEATS, so no finalist is re-measured with a seed the search used."""
    if not cfg["FINAL_TOP"]:
        return None
    seeds = repeat_seeds(cfg["SEED"], cfg["REPEATS"] + cfg["FINAL_REPEATS"])[cfg["REPEATS"]:]
    return FinalPlan(top=cfg["FINAL_TOP"], score=final_score(cfg), epochs=cfg["FINAL_EPOCHS"] or cfg["EPOCHS"],
                     seeds=tuple(seeds))


def genotype_key(genotype):
    """A genotype dict as text: two trials with the same cell have the same key."""
    return json.dumps(genotype, sort_keys=True)


def pick_finalists(records, top):
    """The `top` best distinct cells among the trials that ran to the end (lowest loss first; of two trials with one
    cell, the better one); [{'trial', 'sample', 'genotype', 'search_loss', 'params', 'macs'}]."""
    ok = sorted((r for r in records if r["status"] == "ok" and r.get("loss") is not None),
                key=lambda r: (r["loss"], r["trial"]))
    out, seen = [], set()
    for r in ok:
        key = genotype_key(r["genotype"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"trial": r["trial"], "sample": r["sample"], "genotype": r["genotype"], "search_loss": r["loss"],
                    "params": r.get("params"), "macs": r.get("macs")})
        if len(out) == top:
            break
    return out


class FinalRound:
    """The finalists' measurements: which (finalist, seed) pairs are still to run, running them on an executor, and
    the losses recorded so far. final.jsonl is the source of truth; a record whose score or epochs differ from the
    plan is not this round's and is ignored."""

    def __init__(self, run_dir, plan, finalists, log=print):
        self.plan, self.finalists, self.log = plan, finalists, log
        self.file = run_dir / FINAL_FILE
        self.records = [r for r in read_jsonl(self.file, repair=True)  # this process appends to it
                        if r.get("score") == plan.score and r.get("epochs") == plan.epochs]

    def _done(self):
        return {(r["trial"], r["seed"]) for r in self.records}

    def todo(self):
        """(finalist, seed) pairs not yet recorded, finalist by finalist."""
        done = self._done()
        return [(f, s) for f in self.finalists for s in self.plan.seeds if (f["trial"], s) not in done]

    def total(self):
        return len(self.finalists) * len(self.plan.seeds)

    def run(self, executor, on_record=None):
        """Measure every pair still to do, `executor.capacity` at a time; each result is appended to final.jsonl
        before the next is looked at. A failed measurement is recorded too (status 'fail'): its finalist cannot be
        paired on that seed and is reported, never tied."""
        todo = self.todo()
        if not todo:
            return self.records
        by_key = {}
        for f, seed in todo:
            key = ("final", f["trial"], seed)
            by_key[key] = (f, seed)
            executor.submit(key, {"trial": f["trial"], "sample": f["sample"],
                                  "final": {"seed": seed, "score": self.plan.score, "epochs": self.plan.epochs}})
        start = time.perf_counter()
        while executor.in_flight:
            for done in executor.poll(timeout=1.0):
                f, seed = by_key[done.key]
                record = done.result if done.result is not None else {
                    "trial": f["trial"], "status": "fail", "loss": None, "reason": done.error, "seconds": 0.0}
                record.update(seed=seed, score=self.plan.score, epochs=self.plan.epochs, worker=done.where)
                append_jsonl(self.file, record)
                self.records.append(record)
                if on_record is not None:
                    on_record(record, self.progress_line(record, len(todo), start))
        return self.records

    def progress_line(self, record, todo, start):
        """'final 4/15 | trial #7, seed 123 | nce 3.4121 | 41 s | ETA 2.0 min' (a failure names its reason)."""
        n = len(self._done())
        ran = n - (self.total() - todo)
        left = (time.perf_counter() - start) / max(ran, 1) * (self.total() - n) / 60
        what = (f"{self.plan.score} {record['loss']:.4f}" if record["status"] == "ok"
                else f"failed: {record.get('reason')}")
        return (f"final {n}/{self.total()} | trial #{record['trial']}, seed {record['seed']} | {what} | "
                f"{record.get('seconds', 0):.0f} s | ETA {left:.1f} min")

    def losses(self):
        """{trial: {seed: loss}} of the finalists' successful measurements."""
        out = {f["trial"]: {} for f in self.finalists}
        for r in self.records:
            if r["trial"] in out and r["status"] == "ok" and r.get("loss") is not None and math.isfinite(r["loss"]):
                out[r["trial"]][r["seed"]] = float(r["loss"])
        return out


def decide(run_dir, plan, records, executor, settings, log=print):
    """Run (or resume) the final round on `executor` and apply the tie rule and SELECT; returns the summary that
    best_genotype.json's 'selection' holds (common.search.results.final_summary).

    settings: {'select', 'budget_network' (C, cells, px, classes), 'device' (where 'fastest' times the finalists)}."""
    from common.search import selection
    from common.search.latency import finalist_latency
    from common.search.results import final_summary

    finalists = pick_finalists(records, plan.top)
    rnd = FinalRound(run_dir, plan, finalists, log)
    left = len(rnd.todo())
    log(f"final round: {len(finalists)} finalists x {len(plan.seeds)} seeds of {plan.score} ({plan.epochs} epochs)"
        + (f", {rnd.total() - left} measured before" if left < rnd.total() else ""), flush=True)
    rnd.run(executor, on_record=lambda record, line: log(line, flush=True))
    rows = selection.summarize(finalists, rnd.losses())
    method = None
    if settings["select"] == "fastest":
        for row in rows:
            if row["tied"]:  # only a tied finalist can be chosen
                lat = finalist_latency(row["genotype"], settings["budget_network"], settings["device"])
                row["latency_ms"], method = lat["latency_ms"], f"{lat['method']} on {lat['device']}"
    chosen, why = selection.select(rows, settings["select"])
    return final_summary(rows, plan, settings["select"], chosen, why, method)
