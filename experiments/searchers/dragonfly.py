"""Dragonfly Bayesian optimisation as a Ray Tune searcher (Ray removed its own in 2023).

A thin adapter over Dragonfly's ask/tell API: ``load_config`` builds the domain compiled from the
spec (:func:`search_spaces.compile.to_dragonfly_domain`, including ``discrete_numeric`` lists
such as the NERSC batch sizes), ``CPFunctionCaller`` wraps it, and ``CPGPBandit`` in ask/tell
mode proposes points. Dragonfly is an optional extra (``dragonfly-opt``, 2022) written for old
numpy; the compatibility names it needs are restored here, just before it is imported, and
nowhere else in the suite.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from experiments.searchers.base import SearcherError, SpecSearcher
from search_spaces import SearchSpace
from search_spaces.compile import from_dragonfly_point, to_dragonfly_domain, to_dragonfly_point

INSTALL_COMMAND = "pip install 'setuptools<81' wheel && pip install --no-build-isolation -e '.[dragonfly]'"


def _restore_numpy_names() -> None:
    """Put back the numpy names dragonfly-opt 0.1.7 still uses (removed since numpy 1.23 / 2.0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns when asked about its removed aliases
        for name, value in {"int": int, "float": float, "object": object, "bool": bool,
                            "NaN": np.nan, "math": math}.items():
            if not hasattr(np, name):
                setattr(np, name, value)
        if not hasattr(np, "asscalar"):
            np.asscalar = lambda a: a.item()
        if not hasattr(np.linalg, "linalg"):
            np.linalg.linalg = np.linalg


def import_dragonfly() -> SimpleNamespace:
    """Dragonfly's ask/tell entry points; a one-line SearcherError with the install command if absent."""
    _restore_numpy_names()
    try:
        with warnings.catch_warnings():
            # Without a Fortran compiler at build time Dragonfly warns that it falls back to a
            # pure-Python optimiser of its acquisition function; that is fine here.
            warnings.simplefilter("ignore", UserWarning)
            from dragonfly import load_config
            from dragonfly.exd.experiment_caller import CPFunctionCaller
            from dragonfly.opt.gp_bandit import CPGPBandit
    except ImportError as err:
        raise SearcherError(
            f"--search dragonfly needs the optional dragonfly-opt package ({err.msg}); install it with: "
            f"{INSTALL_COMMAND}"
        ) from None
    return SimpleNamespace(load_config=load_config, CPFunctionCaller=CPFunctionCaller, CPGPBandit=CPGPBandit)


class DragonflySearch(SpecSearcher):
    """Dragonfly's GP bandit (``CPGPBandit``) proposing configs from the spec's Dragonfly domain.

    Dragonfly maximises, so for ``mode="min"`` results are told negated. A failed trial is not
    told; a non-finite result (a diverged trial) is told as the worst finite value seen so far,
    so the GP learns to avoid the region without being fed infinities. Dragonfly draws from
    numpy's global random state; the adapter swaps in its own seeded state around every call,
    so runs are reproducible and nothing else's randomness is disturbed.
    """

    def __init__(self, space: SearchSpace, metric: str | None = None, mode: str | None = None, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self._df = import_dragonfly()
        self.space = space
        self.seed = seed
        self._rng_state = np.random.RandomState(seed).get_state()
        self._live: dict[str, list[Any]] = {}
        self.history: list[tuple[dict[str, Any], float]] = []  # (config, value told to Dragonfly)
        self._opt = self._make_optimiser()

    @contextlib.contextmanager
    def _own_random_state(self) -> Iterator[None]:
        outer = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outer)

    def _make_optimiser(self) -> Any:
        df = self._df
        with self._own_random_state():
            config = df.load_config({"domain": to_dragonfly_domain(self.space)})
            caller = df.CPFunctionCaller(None, config.domain, domain_orderings=config.domain_orderings)
            opt = df.CPGPBandit(caller, ask_tell_mode=True)
            opt.initialise()
        return opt

    def suggest(self, trial_id: str) -> dict[str, Any]:
        """Ask Dragonfly for the next point (its initial design first, then GP-UCB/EI proposals)."""
        with self._own_random_state():
            point = self._opt.ask()
        self._live[trial_id] = point
        return from_dragonfly_point(self.space, point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Dragonfly the trial's final metric."""
        point = self._live.pop(trial_id, None)
        if point is None or error or not result or self.metric not in result:
            return
        value = float(result[self.metric]) * (-1.0 if self.mode == "min" else 1.0)
        if not math.isfinite(value):
            if not self.history:
                return
            value = min(v for _, v in self.history)
        self._tell(from_dragonfly_point(self.space, point), value)

    def _tell(self, config: dict[str, Any], value: float) -> None:
        with self._own_random_state():
            self._opt.tell([(to_dragonfly_point(self.space, config), value)])
        self.history.append((config, value))

    def get_state(self) -> dict[str, Any]:
        # Dragonfly's optimiser does not pickle; its observations and the seed rebuild it.
        return {"seed": self.seed, "history": self.history, "metric": self.metric, "mode": self.mode}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seed, self._metric, self._mode = state["seed"], state["metric"], state["mode"]
        self._rng_state = np.random.RandomState(self.seed).get_state()
        self._live, self.history = {}, []
        self._opt = self._make_optimiser()
        for config, value in state["history"]:
            self._tell(config, value)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
