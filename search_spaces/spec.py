"""Declarative search-space specs: each hyperparameter written once.

A space lives in ``search_spaces/<name>.yaml`` (or any YAML path given to ``--space``)::

    description: one line on where the space comes from
    params:
      lr:          {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      batch_size:  {type: choice, values: [16, 32, 64], mutable: false}
      epochs:      {type: int, low: 2, high: 5, grid: [2, 3, 4]}
      batch:       {type: discrete, values: [40, 61, 79]}
    constants:     {warmup_ratio: 0.06}     # fixed values every trial gets (optional)

Kinds: ``float`` and ``int`` have inclusive bounds ``low``/``high`` and optional ``log``;
``choice`` is an unordered set of values (categorical); ``discrete`` is an ordered list of
numbers (Dragonfly's ``discrete_numeric``). ``grid`` overrides the values a grid search
uses; ``mutable: false`` keeps PBT from perturbing a parameter.

What a spec means, on every backend (tests/test_distributions.py checks each): a float is
uniform over ``[low, high]``, a log float uniform in ``log(value)``; every integer of an int is
equally likely, and a log int gives each integer ``k`` its share ``log((k + 1) / k)`` of the log
range ``[low, high + 1)`` (Ray's ``lograndint``); every value of a choice or discrete list is
equally likely. Under PBT a discrete value may move to a neighbour in its list, a choice is only
ever resampled.

The compilers in ``search_spaces/compile.py`` turn one :class:`SearchSpace` into what each
search algorithm needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPACES_DIR = Path(__file__).resolve().parent
KINDS = ("float", "int", "choice", "discrete")
_PARAM_KEYS = {"type", "low", "high", "log", "values", "grid", "mutable"}
_SPACE_KEYS = {"description", "params", "constants"}


class SpaceError(ValueError):
    """A search space that cannot be used; the message is one line naming space and parameter."""


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its name, kind, range or values, scale, grid values and mutability."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple = ()
    grid: tuple | None = None
    mutable: bool = True

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("float", "int", "discrete")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a legal value of this parameter."""
        if self.kind in ("choice", "discrete"):
            return value in self.values
        if self.kind == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def grid_values(self) -> tuple:
        """The values a grid search tries: explicit ``grid``, else all values of a finite kind."""
        if self.grid is not None:
            return self.grid
        if self.kind in ("choice", "discrete"):
            return self.values
        raise SpaceError(f"parameter '{self.name}' ({self.kind}) has no 'grid' values for a grid search")


@dataclass(frozen=True)
class SearchSpace:
    """A named, validated set of hyperparameters plus constants shared by every trial."""

    name: str
    params: tuple[Param, ...]
    constants: dict = field(default_factory=dict)
    description: str = ""

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def contains(self, config: dict) -> bool:
        """Whether every spec parameter in ``config`` holds a legal value."""
        return all(p.contains(config[p.name]) for p in self.params)


def _fail(space: str, param: str | None, problem: str) -> SpaceError:
    where = f"search space '{space}'" + (f", parameter '{param}'" if param else "")
    return SpaceError(f"{where}: {problem}")


def _number(space: str, name: str, raw: dict, key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(space, name, f"'{key}' must be a number, got {value!r}")
    return value


def parse_param(space: str, name: str, raw: Any) -> Param:
    """Validate one parameter entry of a spec and build a :class:`Param`."""
    if not isinstance(raw, dict):
        raise _fail(space, name, f"expected a mapping like {{type: float, low: .., high: ..}}, got {raw!r}")
    unknown = set(raw) - _PARAM_KEYS
    if unknown:
        raise _fail(space, name, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_PARAM_KEYS)}")
    kind = raw.get("type")
    if kind not in KINDS:
        raise _fail(space, name, f"type must be one of {list(KINDS)}, got {kind!r}")
    log = bool(raw.get("log", False))
    mutable = bool(raw.get("mutable", True))
    grid = raw.get("grid")
    if grid is not None:
        if not isinstance(grid, list) or not grid:
            raise _fail(space, name, "'grid' must be a non-empty list")
        grid = tuple(grid)
    if kind in ("float", "int"):
        low, high = _number(space, name, raw, "low"), _number(space, name, raw, "high")
        if kind == "int" and (int(low) != low or int(high) != high):
            raise _fail(space, name, f"int bounds must be whole numbers, got {low}..{high}")
        if not low < high:
            raise _fail(space, name, f"lower bound {low} must be below upper bound {high}")
        if log and low <= 0:
            raise _fail(space, name, f"log scale needs positive bounds, got low={low}")
        param = Param(name, kind, low=low, high=high, log=log, grid=grid, mutable=mutable)
    else:
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise _fail(space, name, "'values' must be a non-empty list")
        if len(set(map(repr, values))) != len(values):
            raise _fail(space, name, f"'values' has duplicates: {values}")
        if kind == "discrete":
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise _fail(space, name, f"discrete values must be numbers, got {values}")
            values = sorted(values)
        if log:
            raise _fail(space, name, f"'log' applies to float and int parameters, not {kind}")
        param = Param(name, kind, values=tuple(values), grid=grid, mutable=mutable)
    if grid is not None and not all(param.contains(v) for v in grid):
        raise _fail(space, name, f"grid values {list(grid)} fall outside the parameter's range")
    return param


def parse_space(name: str, raw: Any) -> SearchSpace:
    """Validate a whole spec (the parsed YAML mapping) and build a :class:`SearchSpace`."""
    if not isinstance(raw, dict):
        raise _fail(name, None, "the file must be a mapping with a 'params' key")
    unknown = set(raw) - _SPACE_KEYS
    if unknown:
        raise _fail(name, None, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPACE_KEYS)}")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise _fail(name, None, "'params' must be a non-empty mapping of parameter name to spec")
    constants = raw.get("constants") or {}
    if not isinstance(constants, dict):
        raise _fail(name, None, "'constants' must be a mapping")
    clash = set(constants) & set(params)
    if clash:
        raise _fail(name, sorted(clash)[0], "defined both as a parameter and as a constant")
    return SearchSpace(
        name=name,
        params=tuple(parse_param(name, key, value) for key, value in params.items()),
        constants=dict(constants),
        description=str(raw.get("description", "")),
    )


def available_spaces() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str) -> SearchSpace:
    """Load a shipped space by name (``cgcnn_default``) or a user spec from a YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise SpaceError(
                f"unknown search space '{name_or_path}'; shipped spaces: {', '.join(available_spaces())}"
                " (or give a path to a .yaml spec)"
            )
    elif not path.is_file():
        raise SpaceError(f"search space file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise SpaceError(f"search space file {path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    return parse_space(path.stem, raw)
