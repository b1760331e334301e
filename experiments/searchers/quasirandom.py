"""Quasi-random search: scrambled Sobol or Halton points from ``scipy.stats.qmc`` mapped through the spec.

The Tuning Playbook's recommended exploration method: points cover the space more evenly than
independent random draws (lower discrepancy), a seed reproduces them exactly, and the result is
as easy to analyse as random search (no adaptivity, no dependence on earlier results).
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from scipy.stats import qmc

from experiments.searchers.base import SearcherError, SpecSearcher
from search_spaces import SearchSpace
from search_spaces.compile import from_unit_cube

SAMPLERS = ("sobol", "halton")
# Sobol points keep their balance properties only in blocks whose running total is a power of
# two, so points are drawn in doubling blocks: 16, 16, 32, 64, ...
_FIRST_BLOCK = 16


class QuasiRandomSearch(SpecSearcher):
    """A Ray Tune searcher proposing the points of one scrambled low-discrepancy sequence, in order.

    ``space`` is the declarative spec; each unit-cube point is mapped to a config by
    :func:`search_spaces.compile.from_unit_cube`. The sequence depends only on ``sampler``, the
    number of parameters and ``seed``; results do not influence it.
    """

    def __init__(
        self,
        space: SearchSpace,
        metric: str | None = None,
        mode: str | None = None,
        sampler: str = "sobol",
        seed: int | None = 0,
    ):
        if sampler not in SAMPLERS:
            raise SearcherError(f"quasi-random sampler must be one of {', '.join(SAMPLERS)}, got '{sampler}'")
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.sampler = sampler
        self.seed = seed
        self._engine = self._make_engine()
        self._buffer: list[np.ndarray] = []
        self._drawn = 0  # points taken from the engine so far
        self.points: dict[str, np.ndarray] = {}  # trial id -> its unit-cube point, for analysis

    def _make_engine(self) -> qmc.QMCEngine:
        dim = len(self.space.params)
        if self.sampler == "sobol":
            return qmc.Sobol(d=dim, scramble=True, seed=self.seed)
        return qmc.Halton(d=dim, scramble=True, seed=self.seed)

    def _next_point(self) -> np.ndarray:
        if not self._buffer:
            block = max(_FIRST_BLOCK, self._drawn)
            self._buffer = list(self._engine.random(block))
            self._drawn += block
        return self._buffer.pop(0)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        """The next point of the sequence as a config."""
        point = self._next_point()
        self.points[trial_id] = point
        return from_unit_cube(self.space, point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: a quasi-random sequence does not depend on results."""

    def get_state(self) -> dict[str, Any]:
        # The engine is re-created and fast-forwarded on restore; only counters are state.
        return {"sampler": self.sampler, "seed": self.seed, "drawn": self._drawn,
                "buffered": len(self._buffer), "points": self.points}

    def set_state(self, state: dict[str, Any]) -> None:
        self.sampler, self.seed, self.points = state["sampler"], state["seed"], state["points"]
        # Skip the points already proposed; buffered but unproposed ones are drawn again.
        used = state["drawn"] - state["buffered"]
        self._engine = self._make_engine()
        self._engine.fast_forward(used)
        self._buffer, self._drawn = [], used

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
