"""The errors each layer raises for input a run cannot start with, gathered for the entry points.

Every layer raises its own one-line error: the configuration (:class:`ConfigError`), the search
spaces (``SpaceError``), the searchers (``SearcherError``), the model layer's data
(``DataError``) and options (``ModelConfigError``). An entry point catches :data:`INPUT_ERRORS`
and prints the message as one ``error:`` line (exit status 2), never a traceback.
"""

from __future__ import annotations

import sys

from experiments.core.config import ConfigError
from experiments.searchers.base import SearcherError
from search_spaces import SpaceError
from trainables.errors import DataError, ModelConfigError

INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, SpaceError, SearcherError, DataError, ModelConfigError)


def print_error(err: Exception) -> int:
    """Print ``err`` as the one ``error:`` line a user sees; return the exit status for bad input (2)."""
    print(f"error: {err}", file=sys.stderr)
    return 2
