"""The search algorithms behind one ask/tell interface: ask(trial) -> sample, tell(finished record)."""
from common.search.evolution import RegularizedEvolution
from common.search.tpe import HyperoptStrategy

ALGOS = ("tpe", "random", "evolution")


def make_strategy(cfg):
    """ALGO's proposer for SPACE, seeded by SEED (tpe, random: hyperopt; evolution: regularized evolution)."""
    if cfg["ALGO"] == "evolution":
        return RegularizedEvolution(cfg["SPACE"], cfg["SEED"], cfg["POPULATION"], cfg["SAMPLE_SIZE"])
    if cfg["ALGO"] in ("tpe", "random"):
        return HyperoptStrategy(cfg["ALGO"], cfg["SPACE"], cfg["SEED"], cfg["TPE_STARTUP"])
    raise ValueError(f"unknown search algorithm {cfg['ALGO']!r}; choose from {', '.join(ALGOS)}")
