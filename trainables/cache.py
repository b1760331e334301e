"""Where the trainables cache what they compute once (featurised graphs, token ids): one definition.

Light on purpose (no torch): the experiment driver resolves the folder before it imports a model.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$HPO_SUITE_CACHE`` if set and not empty, else ``~/.cache/hpo-suite``; an absolute path."""
    return Path(os.environ.get("HPO_SUITE_CACHE") or "~/.cache/hpo-suite").expanduser().resolve()
