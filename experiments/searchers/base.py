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
