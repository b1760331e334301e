"""What Ray Tune does not ship: quasi-random search (scipy.stats.qmc), Dragonfly BO, a resumable concurrency limiter.

The searchers themselves are imported from their modules (``experiments.searchers.quasirandom``,
``experiments.searchers.dragonfly``) when a run uses them, so catching :class:`SearcherError`
(every entry point does) costs no scipy or Dragonfly import.
"""

from experiments.searchers.base import SearcherError, SpecSearcher
from experiments.searchers.limiter import ResumableConcurrencyLimiter

__all__ = ["ResumableConcurrencyLimiter", "SearcherError", "SpecSearcher"]
