"""Compilers from one :class:`~search_spaces.spec.SearchSpace` to each search algorithm's format.

Each compiler is a small function over the same spec, so no space is ever written twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ray import tune

from search_spaces.spec import Param, SearchSpace, SpaceError


def _ray_domain(p: Param) -> Any:
    if p.kind == "float":
        return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    if p.kind == "int":
        # Ray's randint excludes its upper bound; spec bounds are inclusive.
        low, high = int(p.low), int(p.high) + 1
        return tune.lograndint(low, high) if p.log else tune.randint(low, high)
    return tune.choice(list(p.values))


def to_ray(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune sampling space (``param_space``): one domain per parameter plus the constants."""
    return {**space.constants, **{p.name: _ray_domain(p) for p in space.params}}


def grid_size(space: SearchSpace) -> int:
    """Number of points in the full grid of ``space``; a SpaceError naming the space if it has no grid."""
    size = 1
    for p in space.params:
        try:
            size *= len(p.grid_values())
        except SpaceError as err:
            raise SpaceError(f"search space '{space.name}': {err}") from None
    return size


def to_grid(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune grid: the full product of each parameter's grid values (see ``Param.grid_values``)."""
    return {**space.constants, **{p.name: tune.grid_search(list(p.grid_values())) for p in space.params}}


# --- HyperOpt ---------------------------------------------------------------------------------

def _hyperopt_expr(p: Param) -> Any:
    import numpy as np
    from hyperopt import hp
    from hyperopt.pyll import scope

    if p.kind == "float":
        if p.log:
            return hp.loguniform(p.name, np.log(p.low), np.log(p.high))
        return hp.uniform(p.name, p.low, p.high)
    if p.kind == "int":
        # A (log-)uniform draw over [low, high + 1), floored: every integer gets the cell its own
        # width (on the log axis for a log int), as in Ray's randint and the unit-cube mapping.
        # Rounding a draw over [low, high] instead (``quniform``) gives each bound half a cell.
        # TPE still models the draw as a continuous, ordered value (``hp.randint`` would make it
        # a category per integer: 501 unrelated ones for warmup steps 0..500). The clip only
        # catches the measure-zero draw of exactly high + 1. Built-in pyll operations only, so a
        # pickled HyperOptSearch restores without this module's help.
        low, high = int(p.low), int(p.high)
        if p.log:
            draw = hp.loguniform(p.name, np.log(low), np.log(high + 1))
        else:
            draw = hp.uniform(p.name, low, high + 1)
        return scope.int(scope.minimum(draw // 1, high))
    if p.kind == "discrete":
        # An ordered list of numbers: a uniform draw over [0, n) floored to an index, as for an
        # int, so TPE models the index as an ordered value (batch size 32 lies between 16 and
        # 64); ``hp.choice`` would make each value an unrelated category. Every value keeps an
        # equal share. The index picks the spec's own value (``switch``, a built-in pyll
        # operation). HyperOpt records the index draw, not the value.
        n = len(p.values)
        index = scope.int(scope.minimum(hp.uniform(p.name, 0, n) // 1, n - 1))
        return scope.switch(index, *p.values)
    # choice: unordered categories.
    return hp.choice(p.name, list(p.values))


def to_hyperopt(space: SearchSpace) -> dict[str, Any]:
    """HyperOpt search space for ``HyperOptSearch(space=...)``: one ``hp`` expression per parameter.

    Written directly rather than through Ray's converter so every integer, bounds included, gets
    the same probability as under Ray's own sampling (Ray's converter rounds, ``uniformint``), and
    ordered discrete lists are searched as an ordered index (not as categories). A point given to
    ``points_to_evaluate`` names integers and discrete values by their value (``{"epochs": 3}``,
    ``{"batch": 64}``); HyperOpt records the underlying draw: for an integer the same number, for
    a discrete value its index (Ray converts the value of a ``switch`` to its index, which is the
    draw). Constants are not part of the space: they travel in the Tuner's ``param_space``.
    """
    return {p.name: _hyperopt_expr(p) for p in space.params}


# --- Optuna -----------------------------------------------------------------------------------

class OptunaSpace:
    """A define-by-run function for Ray's ``OptunaSearch``: one ``trial.suggest_*`` per parameter.

    A float is ``suggest_float`` (``log`` as in the spec), an int ``suggest_int`` over its
    inclusive bounds, a choice ``suggest_categorical``. An ordered discrete list is searched as
    its index (``suggest_int`` over ``0 .. n-1``, so TPE models it as an ordered value, as in
    :func:`to_hyperopt`) and the value is returned in its place (Ray's ``OptunaSearch`` puts a
    returned value over the captured draw). Constants travel in the Tuner's ``param_space``. A
    class, not a closure, so the searcher pickles with the experiment.
    """

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for p in self.space.params:
            if p.kind == "float":
                trial.suggest_float(p.name, p.low, p.high, log=p.log)
            elif p.kind == "int":
                trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
            elif p.kind == "discrete":
                values[p.name] = p.values[trial.suggest_int(p.name, 0, len(p.values) - 1)]
            else:
                trial.suggest_categorical(p.name, list(p.values))
        return values


# --- ConfigSpace (BOHB) -----------------------------------------------------------------------

def to_configspace(space: SearchSpace, seed: int | None = None) -> Any:
    """A ``ConfigSpace.ConfigurationSpace`` for BOHB (Ray's ``TuneBOHB``); map back with :func:`from_configspace`.

    Floats and ints keep their bounds and log scale. hpbandster's BOHB refuses ordinal
    parameters, so an ordered discrete list is an integer index ``0 .. n-1`` (its KDE models it as
    an ordered value); a choice is categorical over its values' strings (ConfigSpace hands back
    numpy strings).
    """
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    for p in space.params:
        if p.kind == "float":
            cs.add(CS.UniformFloatHyperparameter(p.name, p.low, p.high, log=p.log))
        elif p.kind == "int":
            cs.add(CS.UniformIntegerHyperparameter(p.name, int(p.low), int(p.high), log=p.log))
        elif p.kind == "discrete":
            cs.add(CS.UniformIntegerHyperparameter(p.name, 0, len(p.values) - 1))
        else:
            cs.add(CS.CategoricalHyperparameter(p.name, [str(v) for v in p.values]))
    return cs


def from_configspace(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The spec's config of a point of :func:`to_configspace` (other keys pass through unchanged)."""
    out = dict(config)
    for p in space.params:
        raw = config[p.name]
        if p.kind == "float":
            out[p.name] = min(max(float(raw), p.low), p.high)
        elif p.kind == "int":
            out[p.name] = int(raw)
        elif p.kind == "discrete":
            out[p.name] = p.values[int(raw)]
        else:
            out[p.name] = p.values[[str(v) for v in p.values].index(str(raw))]
    return out


# --- Dragonfly --------------------------------------------------------------------------------

def _dragonfly_float_range(p: Param) -> tuple[float, float]:
    """The float range Dragonfly searches for a float or int parameter (see :func:`to_dragonfly_domain`)."""
    top = p.high + 1 if p.kind == "int" else p.high
    return (math.log(p.low), math.log(top)) if p.log else (float(p.low), float(top))


def to_dragonfly_domain(space: SearchSpace) -> list[dict[str, Any]]:
    """Dragonfly domain (the ``domain`` list of ``dragonfly.load_config``), in spec order.

    Dragonfly has no log scale, and its own ``int`` type never proposes its upper bound (it
    samples a float over ``[min, max]`` and truncates: int 1..3 gives 1 and 2 only). So every
    float and int is searched as a Dragonfly float and mapped back by :func:`from_dragonfly_point`:

    - a float over ``[low, high]``, a log float over ``[log(low), log(high)]``;
    - an int over ``[low, high + 1)``, floored, a log int over ``[log(low), log(high + 1))``,
      exponentiated and floored: each integer gets a cell as wide as its share of the (log)
      range, as under Ray's ``randint`` / ``lograndint`` and the unit-cube mapping, and the GP
      models the integer as an ordered value on the scale the spec asks for.

    A discrete list becomes ``discrete_numeric`` with its numbers as a list (Dragonfly's
    ``"40-61-79"`` string form, used in the NERSC domain, cannot hold a negative number or
    ``1e-05``); a choice becomes ``discrete`` over the values' strings.
    """
    domain = []
    for p in space.params:
        if p.kind in ("float", "int"):
            low, high = _dragonfly_float_range(p)
            domain.append({"name": p.name, "type": "float", "min": low, "max": high})
        elif p.kind == "discrete":
            domain.append({"name": p.name, "type": "discrete_numeric", "items": list(p.values)})
        else:
            domain.append({"name": p.name, "type": "discrete", "items": [str(v) for v in p.values]})
    return domain


def from_dragonfly_point(space: SearchSpace, point: list[Any]) -> dict[str, Any]:
    """A config from a raw Dragonfly point (values in the order of :func:`to_dragonfly_domain`)."""
    config: dict[str, Any] = {}
    for p, raw in zip(space.params, point, strict=True):
        if p.kind in ("float", "int"):
            value = math.exp(float(raw)) if p.log else float(raw)
            # Clipped: exp(log(x)) may round just outside, and an int's range ends at high + 1.
            value = min(max(value, p.low), p.high)
            config[p.name] = math.floor(value) if p.kind == "int" else value
        elif p.kind == "discrete":
            # Dragonfly hands discrete numbers back as numpy floats; return the spec's own value.
            config[p.name] = min(p.values, key=lambda v: abs(v - float(raw)))
        else:
            config[p.name] = p.values[[str(v) for v in p.values].index(str(raw))]
    return config


def to_dragonfly_point(space: SearchSpace, config: dict[str, Any]) -> list[Any]:
    """A raw Dragonfly point of a config (:func:`from_dragonfly_point` maps it back to ``config``).

    An integer has a whole cell of points; it is represented by the cell's centre (on the log
    axis for a log int).
    """
    point: list[Any] = []
    for p in space.params:
        value = config[p.name]
        if p.kind == "float":
            point.append(math.log(value) if p.log else float(value))
        elif p.kind == "int":
            point.append((math.log(value) + math.log(value + 1)) / 2 if p.log else value + 0.5)
        elif p.kind == "discrete":
            point.append(float(value))
        else:
            point.append(str(value))
    return point


# --- quasi-random unit cube -------------------------------------------------------------------

def from_unit_cube(space: SearchSpace, u: Any) -> dict[str, Any]:
    """Map a point of the unit cube ``[0, 1)^d`` (d = number of parameters, spec order) to a config.

    Each coordinate is mapped so equal volumes of the cube get equal probability under the
    parameter's own scale: floats linearly or log-linearly; integers by cutting the (log) range
    into one cell per whole number; choices and discrete lists into one equal cell per value.
    This keeps a low-discrepancy sequence low-discrepancy in the space the parameter lives in.
    """
    if len(u) != len(space.params):
        raise ValueError(f"unit-cube point has {len(u)} coordinates, space '{space.name}' has {len(space.params)}")
    config: dict[str, Any] = {}
    for p, x in zip(space.params, u, strict=True):
        x = min(max(float(x), 0.0), 1.0)
        if p.kind == "float":
            if p.log:
                value = math.exp(math.log(p.low) + x * (math.log(p.high) - math.log(p.low)))
            else:
                value = p.low + x * (p.high - p.low)
            config[p.name] = min(max(value, p.low), p.high)
        elif p.kind == "int":
            low, high = int(p.low), int(p.high)
            if p.log:
                # Log-uniform over [low, high + 1), floored: each integer's cell is as wide as
                # its share of the log range.
                value = math.floor(math.exp(math.log(low) + x * (math.log(high + 1) - math.log(low))))
            else:
                value = low + math.floor(x * (high - low + 1))
            config[p.name] = min(max(value, low), high)
        else:
            config[p.name] = p.values[min(int(x * len(p.values)), len(p.values) - 1)]
    return config


# --- PBT --------------------------------------------------------------------------------------


def to_unit_cube(space: SearchSpace, config: dict[str, Any]) -> list[float]:
    """A configuration's point in the unit cube of ``space``: the inverse of ``from_unit_cube``.

    Floats map (log-)linearly; an integer or a choice to the centre of its cell, so that
    ``from_unit_cube(space, to_unit_cube(space, c)) == c`` for every configuration of the space.
    Values outside the bounds are clipped to the cube.
    """
    point = []
    for p in space.params:
        if p.name not in config:
            raise SpaceError(f"search space '{space.name}': the configuration has no '{p.name}'")
        value = config[p.name]
        if p.kind == "float":
            low, high, v = (math.log(p.low), math.log(p.high), math.log(value)) if p.log else (p.low, p.high, value)
            x = (v - low) / (high - low) if high > low else 0.5
        elif p.kind == "int":
            low, high, v = int(p.low), int(p.high), int(round(value))
            if p.log:
                span = math.log(high + 1) - math.log(low)
                x = (0.5 * (math.log(v) + math.log(v + 1)) - math.log(low)) / span
            else:
                x = (v - low + 0.5) / (high - low + 1)
        else:
            values = list(p.values)
            if value in values:
                index = values.index(value)
            elif all(isinstance(c, (int, float)) for c in values) and isinstance(value, (int, float)):
                index = min(range(len(values)), key=lambda j: abs(values[j] - value))
            else:
                raise SpaceError(f"search space '{space.name}': value {value!r} of '{p.name}' is not one of {values}")
            x = (index + 0.5) / len(values)
        point.append(min(max(x, 0.0), 1.0))
    return point

def to_pbt_mutations(
    space: SearchSpace,
    *,
    resample_probability: float = 0.25,
    perturbation_factors: tuple[float, float] = (1.2, 0.8),
    seed: int | None = None,
) -> tuple[dict[str, Any], Callable[[dict], dict]]:
    """PBT's ``hyperparam_mutations`` and ``custom_explore_fn`` for the spec's mutable parameters.

    Ray's ``PopulationBasedTraining`` perturbs a continuous value by multiplying it by one of
    ``perturbation_factors``: a log-scale step, right for log parameters, but it can leave the
    bounds and it never moves a linear parameter by a fixed amount. So:

    - discrete lists (ordered numbers) go to Ray as lists (resample, or shift one place left or
      right);
    - choices are unordered, so no value is a neighbour of another: they stay out of Ray's
      mutations (Ray shifts along a list, and multiplies a domain's value by a factor) and the
      explore function resamples them uniformly with ``resample_probability``, else keeps them;
    - log floats and log ints go to Ray as their sampling domains (resample log-uniformly, or
      multiply by a factor), and the explore function clips them back into bounds;
    - linear floats and ints stay out of Ray's mutations (so the explore function receives the
      donor's value unchanged) and the explore function moves them additively: resample with
      ``resample_probability``, else step by ``(factor - 1)`` times half the range (at least one
      unit for an int), clipped into bounds.

    Immutable parameters (``mutable: false``) appear in neither.
    """
    import random

    rng = random.Random(seed)
    mutations: dict[str, Any] = {}
    linear: list[Param] = []
    bounded: list[Param] = []
    categorical: list[Param] = []
    for p in space.params:
        if not p.mutable:
            continue
        if p.kind == "choice":
            categorical.append(p)
        elif p.kind == "discrete":
            mutations[p.name] = list(p.values)
        elif p.log:
            mutations[p.name] = _ray_domain(p)
            bounded.append(p)
        else:
            linear.append(p)

    def explore(config: dict) -> dict:
        for p in linear:
            if rng.random() < resample_probability:
                value = rng.uniform(p.low, p.high) if p.kind == "float" else rng.randint(int(p.low), int(p.high))
            else:
                step = (rng.choice(perturbation_factors) - 1.0) * (p.high - p.low) / 2
                if p.kind == "int":
                    step = int(math.copysign(max(1, round(abs(step))), step))
                value = config[p.name] + step
            config[p.name] = min(max(value, p.low), p.high)
            if p.kind == "int":
                config[p.name] = int(config[p.name])
        for p in bounded:
            config[p.name] = min(max(config[p.name], p.low), p.high)
        for p in categorical:
            if rng.random() < resample_probability:
                config[p.name] = rng.choice(p.values)
        return config

    return mutations, explore
