"""Quasi-random search: scrambled Sobol or Halton points from ``scipy.stats.qmc`` mapped through the spec.

The Tuning Playbook's recommended exploration method: points cover the space more evenly than
independent random draws (lower discrepancy), a seed reproduces them exactly, and the result is
as easy to analyse as random search (no adaptivity, no dependence on earlier results).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import numpy as np
from scipy.stats import qmc

from experiments.searchers.base import SearcherError, SpecSearcher
from search_spaces import SearchSpace
from search_spaces.compile import from_unit_cube

SAMPLERS = ("sobol", "halton")


def sobol_count_warning(num_samples: int) -> str | None:
    """One line if ``num_samples`` Sobol points lose the sequence's balance, else None.

    A scrambled Sobol sequence is balanced (each dyadic box of the cube gets its share of points)
    only in its first 2^k points; 20, 24 or 30 trials stop part-way through a block of 32, and the
    points used cover the cube less evenly. The sequence itself does not depend on how many points
    are asked for, so this is a warning, not a change of the budget.
    """
    if num_samples < 1 or num_samples & (num_samples - 1) == 0:
        return None
    below = 1 << (num_samples.bit_length() - 1)
    return (f"warning: quasi-random Sobol search with num_samples {num_samples}, not a power of two: its points "
            f"are balanced only in counts 2^k; use {below} or {below * 2} (or quasirandom_sampler halton)")


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
        self._drawn = 0  # points taken from the engine so far
        self.points: dict[str, np.ndarray] = {}  # trial id -> its unit-cube point, for analysis

    def _make_engine(self) -> qmc.QMCEngine:
        dim = len(self.space.params)
        if self.sampler == "sobol":
            return qmc.Sobol(d=dim, scramble=True, seed=self.seed)
        return qmc.Halton(d=dim, scramble=True, seed=self.seed)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Take metric and mode from Tune; warn once if a Sobol run's trial count loses its balance."""
        num_samples = spec.get("num_samples")
        if self.sampler == "sobol" and isinstance(num_samples, int):
            message = sobol_count_warning(num_samples)
            if message:
                print(message, file=sys.stderr)
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        """The next point of the sequence as a config."""
        # One point at a time: the scrambled sequence is the same however it is drawn (scipy
        # warns only about draws of a size other than 2^k, and 1 = 2^0).
        point = self._engine.random(1)[0]
        self._drawn += 1
        self.points[trial_id] = point
        return from_unit_cube(self.space, point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: a quasi-random sequence does not depend on results."""

    def get_state(self) -> dict[str, Any]:
        # The engine is re-created and fast-forwarded on restore; only counters are state.
        return {"sampler": self.sampler, "seed": self.seed, "drawn": self._drawn, "points": self.points}

    def set_state(self, state: dict[str, Any]) -> None:
        self.sampler, self.seed, self.points = state["sampler"], state["seed"], state["points"]
        # Skip the points already proposed. A state saved while points were drawn in blocks
        # (before this version) counts the drawn but unproposed ones as "buffered".
        self._drawn = state["drawn"] - state.get("buffered", 0)
        self._engine = self._make_engine()
        self._engine.fast_forward(self._drawn)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
