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
    by ``initialise``) before it fits a GP, and ``tell`` never touches it. One of the three places
    the adapter reads Dragonfly's internals (see tests/test_searcher_resume.py).
    """
    return len(opt.first_qinfos)


def _refit_gp(opt: Any) -> None:
    """Re-fit the GP's kernel hyperparameters on every result told so far.

    Dragonfly's own loop (``ExperimentDesigner.run_experiments``) calls ``_build_new_model`` every
    ``build_new_model_every`` steps; in ask/tell mode nothing does, so the kernel fitted at the
    first ask after the initial design would stay for the whole run.
    """
    opt._build_new_model()


@contextlib.contextmanager
def _pending(opt: Any, raw_points: list[list[Any]]) -> Iterator[None]:
    """Let Dragonfly see the points still being evaluated while it proposes the next one.

    Its asynchronous loop keeps them in ``eval_points_in_progress`` and its acquisitions
    hallucinate their values there (``handle_parallel: halluc``) so that parallel proposals spread
    out; in ask/tell mode the list stays empty. Filled for the one ``ask`` and emptied again.
    """
    points = [opt.func_caller.get_processed_domain_point_from_raw(p) for p in raw_points]
    opt.eval_points_in_progress, opt.eval_idxs_in_progress = points, [-1] * len(points)
    try:
        yield
    finally:
        opt.eval_points_in_progress, opt.eval_idxs_in_progress = [], []


class DragonflySearch(SpecSearcher):
    """Dragonfly's GP bandit (``CPGPBandit``) proposing configs from the spec's Dragonfly domain.

    Dragonfly maximises, so for ``mode="min"`` results are told negated. A failed trial is not
    told; a non-finite result (a diverged trial) is told as the worst finite value seen so far,
    so the GP learns to avoid the region without being fed infinities. Dragonfly draws from
    numpy's global random state; the adapter swaps in its own seeded state around every call,
    so runs are reproducible and nothing else's randomness is disturbed.

    Ask/tell mode does what Dragonfly's own asynchronous loop does, which it otherwise would not:
    the GP's kernel hyperparameters are re-fitted on all results told so far every
    ``build_new_model_every`` results (Dragonfly's option, 17), not fitted once after the initial
    design; and the points of unfinished trials are in progress while Dragonfly proposes, so its
    acquisition hallucinates them instead of proposing next to them.

    The searcher limits concurrency itself (``set_max_concurrency``, which Ray's
    ``ConcurrencyLimiter`` calls and then defers to), because the limiter's own record of live
    trials is not saved with the experiment: after a resume it would drop the results of the
    trials that were running at the interruption. Here they are part of the saved state, and
    so is every ask and tell in order, so a resumed searcher is rebuilt by replaying them: it is
    the optimiser the uninterrupted run has, and proposes what it proposes (see :meth:`set_state`).
    """

    def __init__(self, space: SearchSpace, metric: str | None = None, mode: str | None = None, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self._df = import_dragonfly()
        self.space = space
        self.seed = seed
        self._max_concurrent: int | None = None
        self._reset()

    def _reset(self) -> None:
        """A fresh optimiser from the seed, with nothing asked or told."""
        self._rng_state = np.random.RandomState(self.seed).get_state()
        self._live: dict[str, list[Any]] = {}  # trial id -> the raw Dragonfly point it was given
        self._asked = 0  # points proposed so far
        self._told: list[tuple[list[Any], float]] = []  # (raw point, value) told to Dragonfly, in order
        self._events: list[tuple] = []  # ("ask", trial, point) / ("tell", trial, value) / ("drop", trial)
        self.model_builds: list[int] = []  # how many results the GP was fitted on, at each (re-)fit
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
        return from_dragonfly_point(self.space, self._ask(trial_id))

    def _ask(self, trial_id: str) -> list[Any]:
        opt = self._opt
        with self._own_random_state():
            designing = _initial_design_left(opt) > 0
            first_fit = not designing and getattr(opt, "gp_processor", None) is None  # ask fits the first GP
            every = int(opt.options.build_new_model_every)
            refit = not designing and not first_fit and len(self._told) - self.model_builds[-1] >= every
            if refit:
                _refit_gp(opt)
            with _pending(opt, [] if designing else list(self._live.values())):
                point = opt.ask()
        if first_fit or refit:
            self.model_builds.append(len(self._told))
        self._asked += 1
        self._live[trial_id] = point
        self._events.append(("ask", trial_id, point))
        return point

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Dragonfly the trial's final metric, at the point it was asked for."""
        if trial_id not in self._live:
            return
        if error or not result or self.metric not in result:
            self._drop(trial_id)
            return
        value = float(result[self.metric]) * (-1.0 if self.mode == "min" else 1.0)
        if not math.isfinite(value):
            if not self.history:
                self._drop(trial_id)
                return
            value = min(v for _, v in self.history)
        self._tell(trial_id, value)

    def _drop(self, trial_id: str) -> None:
        self._live.pop(trial_id)
        self._events.append(("drop", trial_id))

    def _tell(self, trial_id: str, value: float) -> None:
        point = self._live.pop(trial_id)
        with self._own_random_state():
            self._opt.tell([(point, value)])
        self._told.append((point, value))
        self._events.append(("tell", trial_id, value))
        self.history.append((from_dragonfly_point(self.space, point), value))

    def get_state(self) -> dict[str, Any]:
        # Dragonfly's optimiser does not pickle; the seed and the asks and tells in order rebuild it.
        # "asked", "told" and "live" are what the events add up to (kept for analysis and older readers).
        return {"seed": self.seed, "metric": self.metric, "mode": self.mode, "events": list(self._events),
                "asked": self._asked, "told": list(self._told), "live": dict(self._live),
                "max_concurrent": self._max_concurrent}

    def set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the optimiser the saved one was, by replaying its asks and tells in order.

        The same seed gives the same initial design and random stream; each ask is made again
        with the same points in progress and the same re-fits, each result told again at its
        place, so the optimiser, its GP and its random state end where the saved ones were, and
        the trials live at the save stay live (their results are learnt when the resumed
        experiment finishes them). Replaying costs the asks' acquisition optimisations again.
        A state saved before events were recorded is rebuilt the old way (see
        :meth:`_set_state_without_events`).
        """
        self.seed, self._metric, self._mode = state["seed"], state["metric"], state["mode"]
        self._max_concurrent = state["max_concurrent"]
        self._reset()
        if "events" not in state:
            self._set_state_without_events(state)
            return
        for event in state["events"]:
            if event[0] == "ask":
                point = self._ask(event[1])
                if [str(v) for v in point] != [str(v) for v in event[2]]:
                    warnings.warn(f"Dragonfly replay proposed {point} for trial {event[1]}, saved {event[2]}; "
                                  "the resumed search goes on from the replayed optimiser", stacklevel=2)
                    self._live[event[1]] = event[2]  # its result is learnt at the point the trial ran
            elif event[0] == "tell":
                self._tell(event[1], event[2])
            else:
                self._drop(event[1])

    def _set_state_without_events(self, state: dict[str, Any]) -> None:
        """A pre-replay state: draw the proposed design points off again, re-tell every result."""
        with self._own_random_state():
            for _ in range(min(state["asked"], _initial_design_left(self._opt))):
                self._opt.ask()
        for point, value in state["told"]:
            with self._own_random_state():
                self._opt.tell([(point, value)])
            self._told.append((point, value))
            self.history.append((from_dragonfly_point(self.space, point), value))
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
