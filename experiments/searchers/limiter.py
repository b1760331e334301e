"""Ray's ConcurrencyLimiter with a checkpoint that survives a resume."""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter

from experiments.searchers.base import restore_with_wrapped, save_with_wrapped


class ResumableConcurrencyLimiter(ConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter`` whose checkpoint also holds the trials it let through.

    Ray's limiter saves only the searcher it wraps (``ConcurrencyLimiter.save`` in Ray 2.60), so
    after ``Tuner.restore`` its set of live trials is empty: it drops the result of every trial
    that was running at the interruption (``on_trial_complete`` ignores trial ids it does not
    know), the wrapped searcher never learns them, and up to ``max_concurrent`` new trials start
    beside them. This one saves its own state with the searcher's, in the one file Tune asks for.
    A searcher that limits itself (``set_max_concurrency`` returns True, as ``DragonflySearch``
    does) is passed through unchanged, as by Ray's limiter.
    """

    def save(self, checkpoint_path: str) -> None:
        save_with_wrapped(self.searcher, "limiter", self.get_state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        state = restore_with_wrapped(self.searcher, "limiter", checkpoint_path)
        if state is not None:  # None: written by Ray's own limiter, the searcher alone
            self.set_state(state)
