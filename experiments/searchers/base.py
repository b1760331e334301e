"""What the searchers Ray lacks have in common: they hold their space, compiled from the spec."""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher


class SearcherError(ValueError):
    """A searcher that cannot be built (e.g. a missing optional package); the message is one line.

    The searchers import nothing from the rest of ``experiments``, so they raise their own error;
    the entry point turns it into an ``error:`` line like the other layers' errors.
    """


class SpecSearcher(Searcher):
    """A Searcher whose space comes from a spec, not from Tune's ``param_space``."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        # The space comes from the spec; ``config`` holds only the constants every trial gets.
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True


def save_with_wrapped(searcher: Any, key: str, state: Any, checkpoint_path: str) -> None:
    """Save a wrapper's own ``state`` (under ``key``) and its wrapped ``searcher``'s file into one checkpoint."""
    import pickle

    searcher.save(checkpoint_path)
    with open(checkpoint_path, "rb") as f:
        searcher_state = f.read()
    with open(checkpoint_path, "wb") as f:
        pickle.dump({key: state, "searcher": searcher_state}, f)


def restore_with_wrapped(searcher: Any, key: str, checkpoint_path: str) -> Any | None:
    """Restore the wrapped ``searcher`` from a :func:`save_with_wrapped` checkpoint; return the wrapper's state.

    A checkpoint without the wrapper's part (written before the wrapper existed, or by Ray's own
    wrapper) is the searcher's alone: it is restored as such and None is returned.
    """
    import os
    import pickle
    import tempfile

    with open(checkpoint_path, "rb") as f:
        saved = pickle.load(f)
    if not (isinstance(saved, dict) and set(saved) == {key, "searcher"}):
        searcher.restore(checkpoint_path)
        return None
    # The wrapped searcher restores from a file of its own format, as it was saved.
    fd, path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(checkpoint_path)), suffix=".searcher")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(saved["searcher"])
        searcher.restore(path)
    finally:
        os.remove(path)
    return saved[key]
