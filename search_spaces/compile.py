"""Compilers from one :class:`~search_spaces.spec.SearchSpace` to each search algorithm's format.

Each compiler is a small function over the same spec, so no space is ever written twice.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from search_spaces.spec import Param, SearchSpace


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
    """Number of points in the full grid of ``space``."""
    size = 1
    for p in space.params:
        size *= len(p.grid_values())
    return size


def to_grid(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune grid: the full product of each parameter's grid values (see ``Param.grid_values``)."""
    return {**space.constants, **{p.name: tune.grid_search(list(p.grid_values())) for p in space.params}}
