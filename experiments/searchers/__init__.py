"""What Ray Tune does not ship: quasi-random search (scipy.stats.qmc), Dragonfly BO, a resumable concurrency limiter."""

from experiments.searchers.base import SearcherError, SpecSearcher
from experiments.searchers.limiter import ResumableConcurrencyLimiter
from experiments.searchers.quasirandom import QuasiRandomSearch

__all__ = ["QuasiRandomSearch", "ResumableConcurrencyLimiter", "SearcherError", "SpecSearcher"]
