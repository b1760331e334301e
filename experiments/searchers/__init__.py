"""Search algorithms Ray Tune does not ship: quasi-random (scipy.stats.qmc) and Dragonfly BO."""

from experiments.searchers.base import SearcherError, SpecSearcher
from experiments.searchers.quasirandom import QuasiRandomSearch

__all__ = ["QuasiRandomSearch", "SearcherError", "SpecSearcher"]
