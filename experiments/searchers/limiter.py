"""Ray's ConcurrencyLimiter with a checkpoint that survives a resume."""

from __future__ import annotations

import os
import pickle
import tempfile

from ray.tune.search import ConcurrencyLimiter


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
        self.searcher.save(checkpoint_path)
        with open(checkpoint_path, "rb") as f:
            searcher_state = f.read()
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"limiter": self.get_state(), "searcher": searcher_state}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        if not (isinstance(saved, dict) and set(saved) == {"limiter", "searcher"}):
            self.searcher.restore(checkpoint_path)  # written by Ray's own limiter: the searcher alone
            return
        # The wrapped searcher restores from a file of its own format, as it was saved.
        fd, path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(checkpoint_path)), suffix=".searcher")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(saved["searcher"])
            self.searcher.restore(path)
        finally:
            os.remove(path)
        self.set_state(saved["limiter"])
