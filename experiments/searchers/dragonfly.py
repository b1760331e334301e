"""Dragonfly Bayesian optimisation as a Ray Tune searcher (Ray removed its own in 2023).

A thin adapter over Dragonfly's ask/tell API: ``load_config`` builds the domain compiled from the
spec (:func:`search_spaces.compile.to_dragonfly_domain`: integers and log scales searched as
floats and mapped back, ``discrete_numeric`` lists such as the NERSC batch sizes),
``CPFunctionCaller`` wraps it, and ``CPGPBandit`` in ask/tell mode proposes points. Dragonfly is
an optional extra (``dragonfly-opt``, 2022) written for old numpy; the compatibility names it
needs are restored here, just before it is imported, and nowhere else in the suite.
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
from search_spaces.compile import from_dragonfly_point, to_dragonfly_domain

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


def _initial_design_left(opt: Any) -> int:
    """How many points of its initial design a Dragonfly optimiser still holds.

    Dragonfly's ask/tell API has no public way to say this: ``ask`` pops ``first_qinfos`` (filled
    by ``initialise``) before it fits a GP, and ``tell`` never touches it. This is the one place
    the adapter reads that attribute (see ``DragonflySearch.set_state``).
    """
    return len(opt.first_qinfos)


class DragonflySearch(SpecSearcher):
    """Dragonfly's GP bandit (``CPGPBandit``) proposing configs from the spec's Dragonfly domain.

    Dragonfly maximises, so for ``mode="min"`` results are told negated. A failed trial is not
    told; a non-finite result (a diverged trial) is told as the worst finite value seen so far,
    so the GP learns to avoid the region without being fed infinities. Dragonfly draws from
    numpy's global random state; the adapter swaps in its own seeded state around every call,
    so runs are reproducible and nothing else's randomness is disturbed.

    The searcher limits concurrency itself (``set_max_concurrency``, which Ray's
    ``ConcurrencyLimiter`` calls and then defers to), because the limiter's own record of live
    trials is not saved with the experiment: after a resume it would drop the results of the
    trials that were running at the interruption. Here they are part of the saved state, and
    so is how far the initial design got, so a resumed searcher neither re-proposes points nor
    loses results (see :meth:`set_state`).
    """

    def __init__(self, space: SearchSpace, metric: str | None = None, mode: str | None = None, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self._df = import_dragonfly()
        self.space = space
        self.seed = seed
        self._rng_state = np.random.RandomState(seed).get_state()
        self._live: dict[str, list[Any]] = {}  # trial id -> the raw Dragonfly point it was given
        self._asked = 0  # points proposed so far
        self._told: list[tuple[list[Any], float]] = []  # (raw point, value) told to Dragonfly, in order
        self._max_concurrent: int | None = None
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

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Hold at most ``max_concurrent`` trials unfinished (True: Ray's limiter need not)."""
        self._max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ask Dragonfly for the next point (its initial design first, then GP-UCB/EI proposals).

        None (ask again later) while ``max_concurrent`` trials are unfinished: a proposal made
        with many results outstanding learns from little.
        """
        if self._max_concurrent is not None and len(self._live) >= self._max_concurrent:
            return None
        with self._own_random_state():
            point = self._opt.ask()
        self._asked += 1
        self._live[trial_id] = point
        return from_dragonfly_point(self.space, point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Dragonfly the trial's final metric, at the point it was asked for."""
        point = self._live.pop(trial_id, None)
        if point is None or error or not result or self.metric not in result:
            return
        value = float(result[self.metric]) * (-1.0 if self.mode == "min" else 1.0)
        if not math.isfinite(value):
            if not self.history:
                return
            value = min(v for _, v in self.history)
        self._tell(point, value)

    def _tell(self, point: list[Any], value: float) -> None:
        with self._own_random_state():
            self._opt.tell([(point, value)])
        self._told.append((point, value))
        self.history.append((from_dragonfly_point(self.space, point), value))

    def get_state(self) -> dict[str, Any]:
        # Dragonfly's optimiser does not pickle; the seed rebuilds its initial design, the told
        # points its model, and the counters and live trials say where the run stood.
        return {"seed": self.seed, "metric": self.metric, "mode": self.mode, "asked": self._asked,
                "told": self._told, "live": self._live, "rng_state": self._rng_state,
                "max_concurrent": self._max_concurrent}

    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the optimiser where the saved one stood.

        The same seed gives the same initial design; the points of it already proposed are
        drawn off again (cheap: no GP is fitted while the design lasts), so they are not proposed
        twice; every told result is told again; the trials live at the save stay live, so their
        results are learnt when the resumed experiment finishes them; and the random state goes
        on from where it was.
        """
        self.seed, self._metric, self._mode = state["seed"], state["metric"], state["mode"]
        self._max_concurrent = state["max_concurrent"]
        self._rng_state = np.random.RandomState(self.seed).get_state()
        self._told, self.history = [], []
        self._opt = self._make_optimiser()
        with self._own_random_state():
            for _ in range(min(state["asked"], _initial_design_left(self._opt))):
                self._opt.ask()
        for point, value in state["told"]:
            self._tell(point, value)
        self._asked, self._live, self._rng_state = state["asked"], dict(state["live"]), state["rng_state"]

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher with the experiment (tuner.pkl) and unpickles it in the resumed
        # process: pickled as its state, it is rebuilt there through import_dragonfly, which puts
        # back the numpy names Dragonfly needs (an unpickled optimiser failed on np.math).
        return {"space": self.space, **self.get_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        SpecSearcher.__init__(self, metric=state["metric"], mode=state["mode"])
        self._df = import_dragonfly()
        self.space = state["space"]
        self.set_state(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
