"""Strategies to replay: names, the runner's own scheduler and searcher, and how searchers meet the pool.

A strategy is named ``searcher:scheduler`` (``random:fifo``, ``random:asha``, ``random:ahb``,
``quasirandom:asha``, ``hyperopt:asha``, ``dragonfly:ahb``) or, as
``experiments/benchmarks/strategies.py`` writes it, ``strategy[:searcher]`` after the run script
(``asha``, ``asha:hyperopt``, ``random``); both name the same thing, and the two orders cannot be
confused (no name is both a scheduler and a searcher, ``random`` alone is random search).

Settings come from where the run scripts take them: ``configs/<model>/<script>.yaml`` of the
run script that has the scheduler (``fifo`` -> ``run_random.py``), then the flags; the
scheduler is built by the runner's own ``build_scheduler`` and the model-based searchers by its
``build_search``, so a simulated ASHA is configured exactly as a real one. ``max_epochs`` is the
pool's (a recorded curve cannot run longer).

How searchers meet the pool:

- ``random``: the recorded trials in a random order (seeded). When the pool was recorded by
  random search over the same space, drawing from it without replacement *is* random search.
- ``quasirandom``: the suite's quasi-random searcher proposes a configuration, which is replaced by
  the recorded configuration nearest to it in the unit cube of the spec (each parameter mapped as
  quasi-random search maps it: log scale for log parameters, one equal cell per integer or choice;
  Euclidean distance) among those not used yet. Its proposals do not depend on results, so the
  substitution moves its points (the mean distance is reported) but misleads no model.
- A model-based searcher (``hyperopt``, ``dragonfly``) is replayed only if it can be told the
  configuration that actually ran: its proposal is withdrawn (``on_trial_complete(error=True)``)
  and the replayed configuration is added with its result through Ray's public
  ``Searcher.add_evaluated_point``. Telling it the recorded results under its own proposal (what
  this module did before) does not simulate it: on the shipped pool the substituted configuration
  lay 0.44 of the cube's side away on average, near the 0.66 of two random points. Ray 2.60's
  ``HyperOptSearch`` and the suite's ``DragonflySearch`` have no ``add_evaluated_point``, so both
  are refused with one line saying so (:func:`check_replayable`).
- When every recorded trial has been used, a new pass over the pool begins (each trial can be
  drawn again). Top-k curves count each recorded trial once, with its best result over its
  replays, so a repeated draw never counts as a new model; the number of passes is reported.

PBT cannot be replayed: it copies weights between trials and changes hyperparameters mid-run,
so no recorded curve shows what an exploited trial would have done. Grid search is the pool
itself (replay a grid pool with ``random:fifo``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.simulation.errors import SimulationError
from experiments.simulation.pool import Pool, RecordedTrial
from search_spaces import SearchSpace
from search_spaces.compile import to_unit_cube
from search_spaces.spec import SpaceError

SEARCHERS = ("random", "quasirandom", "hyperopt", "dragonfly")
SCHEDULERS = {"fifo": "random", "asha": "asha", "ahb": "ahb"}  # scheduler -> the run script that runs it
_SCRIPT_SCHEDULER = {script: scheduler for scheduler, script in SCHEDULERS.items()}
PBT_REFUSAL = ("PBT cannot be replayed from recorded curves: it copies weights between trials and changes their "
               "hyperparameters mid-run, so no recorded curve shows what an exploited trial would do")


@dataclass(frozen=True)
class StrategyName:
    """A strategy to replay: searcher and scheduler; ``label`` is compare.py's ``"<searcher> + <scheduler>"``."""

    searcher: str
    scheduler: str

    @property
    def label(self) -> str:
        return f"{self.searcher} + {self.scheduler}"

    @property
    def script(self) -> str:
        """The run script (``run_<script>.py``) whose config and settings this strategy uses."""
        return SCHEDULERS[self.scheduler]


def parse_strategy(text: str) -> StrategyName:
    """``"random:asha"`` or ``"asha:random"`` -> StrategyName("random", "asha"); ``"random"`` -> random + fifo."""
    first, _, second = text.strip().partition(":")
    parts = {first, second}
    if "pbt" in parts:
        raise SimulationError(PBT_REFUSAL)
    if "grid" in parts:
        raise SimulationError("grid search cannot be replayed as a strategy: a grid pool is the grid itself; "
                              "replay it with random:fifo")
    if not second:
        if first in SEARCHERS and first != "random":
            raise SimulationError(f"strategy '{text}' names a searcher only; add its scheduler, e.g. {first}:asha")
        scheduler = _SCRIPT_SCHEDULER.get(first, first)
        if scheduler not in SCHEDULERS:
            raise SimulationError(_unknown(text))
        return StrategyName("random", scheduler)
    if first in SEARCHERS and second in SCHEDULERS:
        return StrategyName(first, second)
    if first in _SCRIPT_SCHEDULER and second in SEARCHERS:
        return StrategyName(second, _SCRIPT_SCHEDULER[first])
    raise SimulationError(_unknown(text))


def _unknown(text: str) -> str:
    return (f"unknown strategy '{text}'; write searcher:scheduler with searcher one of {', '.join(SEARCHERS)} "
            f"and scheduler one of {', '.join(SCHEDULERS)} (e.g. random:asha)")


def strategy_config(name: StrategyName, pool: Pool, settings: dict[str, Any]) -> Any:
    """The ExperimentConfig the run script of ``name`` would run with: its YAML, then ``settings`` (flags).

    ``settings`` holds the flags given (``grace_period``, ``reduction_factor``, ``brackets``,
    ``seed``, ...); model, space and ``max_epochs`` are the pool's. The config layer's own checks
    apply (a grace period longer than the pool's curves is refused there).
    """
    from experiments.core.config import ConfigError, resolve_config
    from experiments.core.strategies import STRATEGIES

    chosen = STRATEGIES[name.script]
    args = {**settings, "model": pool.model, "space": pool.space, "search": name.searcher,
            "max_epochs": pool.max_epochs}
    if name.scheduler == "fifo":  # the run script of random search has no scheduler settings
        for key in ("grace_period", "reduction_factor", "brackets"):
            args.pop(key, None)
    try:
        config = resolve_config(name.script, args, {"search": chosen.searchers[0]}, chosen.smoke)
    except ConfigError as err:
        raise SimulationError(str(err)) from None
    return config


def build_scheduler(config: Any, space: SearchSpace, fast: bool = True) -> Any:
    """The runner's scheduler for ``config``, with metric and mode set as Tune sets them.

    ``fast``: exact incremental rung cut-offs (:mod:`experiments.simulation.rungs`); the same
    decisions, without Ray's O(n) percentile per decision.
    """
    from experiments.core.strategies import build_scheduler as runner_scheduler
    from experiments.simulation.rungs import fast_rungs

    scheduler = runner_scheduler(config, space)
    scheduler.set_search_properties(config.metric, config.mode)
    return fast_rungs(scheduler) if fast else scheduler


# --- searchers over the pool ----------------------------------------------------------------

def _cube(space: SearchSpace, config: dict[str, Any]) -> np.ndarray:
    """``to_unit_cube`` with its errors as the simulator's (a recorded config the space does not fit)."""
    try:
        return np.asarray(to_unit_cube(space, config))
    except SpaceError as err:
        raise SimulationError(f"a recorded configuration does not fit: {err}") from None


class PoolShuffle:
    """Random search over the pool: the recorded trials in a seeded random order, a new order each pass."""

    def __init__(self, pool: Pool, seed: int):
        self.trials = pool.trials
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.passes = 0
        self.finished = False
        self.used: set[str] = set()

    def propose(self, trial_id: str) -> RecordedTrial:
        if not self.order:
            self.order = [int(i) for i in self.rng.permutation(len(self.trials))]
            self.passes += 1
        trial = self.trials[self.order.pop()]
        self.used.add(trial.key)
        return trial

    def on_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Random search learns nothing from results."""

    def on_complete(self, trial_id: str, result: dict[str, Any]) -> None:
        """Random search learns nothing from results."""


NON_ADAPTIVE = ("quasirandom",)  # searchers whose proposals never depend on results


def tells_evaluated_points(searcher: Any) -> bool:
    """True when ``searcher`` (or the searcher a ConcurrencyLimiter wraps) implements ``add_evaluated_point``."""
    from ray.tune.search import Searcher

    inner = searcher
    while hasattr(inner, "searcher") and isinstance(inner.searcher, Searcher):
        inner = inner.searcher
    return type(inner).add_evaluated_point is not Searcher.add_evaluated_point


class NearestRecorded:
    """A Ray Tune searcher whose every proposal runs as the nearest unused recorded trial (see module doc).

    ``adaptive``: the searcher learns from results, so it is told the replayed configuration, not
    its proposal: intermediate results are withheld, and at the end the proposal is withdrawn
    (``on_trial_complete(..., error=True)``) and the replayed configuration added with its last
    result (``add_evaluated_point``). Otherwise results go to it as Tune hands them over.
    """

    def __init__(self, searcher: Any, space: SearchSpace, pool: Pool, metric: str = "", adaptive: bool = False):
        self.searcher = searcher
        self.space = space
        self.metric = metric or pool.metric
        self.adaptive = adaptive
        self.trials = pool.trials
        self.points = np.vstack([_cube(space, t.config) for t in pool.trials])
        self.unused = np.ones(len(self.trials), dtype=bool)
        self.passes = 1
        self.finished = False
        self.distances: list[float] = []
        self.used: set[str] = set()
        self.replayed: dict[str, RecordedTrial] = {}

    def propose(self, trial_id: str) -> RecordedTrial | None:
        from ray.tune.search import Searcher

        config = self.searcher.suggest(trial_id)
        if config is None:  # e.g. the ConcurrencyLimiter holding back until a trial completes
            return None
        if config == Searcher.FINISHED:
            self.finished = True
            return None
        if not self.unused.any():
            self.unused[:] = True
            self.passes += 1
        distance = ((self.points - _cube(self.space, config)) ** 2).sum(axis=1)
        distance[~self.unused] = np.inf
        index = int(np.argmin(distance))
        self.unused[index] = False
        self.distances.append(float(math.sqrt(distance[index])))
        trial = self.trials[index]
        self.used.add(trial.key)
        self.replayed[trial_id] = trial
        return trial

    def on_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self.adaptive:
            self.searcher.on_trial_result(trial_id, result)

    def on_complete(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.replayed.pop(trial_id)
        if not self.adaptive:
            self.searcher.on_trial_complete(trial_id, result)
            return
        self.searcher.on_trial_complete(trial_id, None, error=True)  # the proposal never ran
        config = {name: trial.config[name] for name in self.space.names}
        self.searcher.add_evaluated_point(config, float(result[self.metric]))


def check_replayable(name: StrategyName, pool: Pool, settings: dict[str, Any] | None = None) -> None:
    """Refuse a searcher that cannot be replayed faithfully (before any strategy is simulated)."""
    if name.searcher == "random" or name.searcher in NON_ADAPTIVE:
        return
    from experiments.core.strategies import build_search
    from search_spaces import load_space

    config = strategy_config(name, pool, {**(settings or {}), "seed": 0})
    searcher, _ = build_search(config, load_space(pool.space))
    if not tells_evaluated_points(searcher):
        raise SimulationError(
            f"{name.searcher} cannot be replayed from a pool: it learns from results, and its searcher cannot be "
            "told that a recorded configuration other than its proposal ran (no add_evaluated_point), so it "
            "would learn each result under the wrong configuration; replay random or quasirandom, or run "
            f"{name.searcher} for real")


def build_proposer(name: StrategyName, config: Any, space: SearchSpace, pool: Pool) -> PoolShuffle | NearestRecorded:
    """The search side of ``name`` for one seed (``config.seed``), built as the runner builds it."""
    if name.searcher == "random":
        return PoolShuffle(pool, config.seed)
    from experiments.core.strategies import build_search

    searcher, param_space = build_search(config, space)
    searcher.set_search_properties(config.metric, config.mode, param_space)
    adaptive = name.searcher not in NON_ADAPTIVE
    if adaptive and not tells_evaluated_points(searcher):
        check_replayable(name, pool)  # raises with the reason
    return NearestRecorded(searcher, space, pool, config.metric, adaptive=adaptive)
