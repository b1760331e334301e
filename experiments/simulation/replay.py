"""Replay strategies x seeds on a pool: the configs, schedulers and searchers the runner would build."""

from __future__ import annotations

from typing import Any

from experiments.simulation.engine import simulate
from experiments.simulation.errors import SimulationError
from experiments.simulation.pool import Pool
from experiments.simulation.report import StrategyRuns
from experiments.simulation.strategies import StrategyName, build_proposer, build_scheduler, strategy_config


def replay_strategy(name: StrategyName, pool: Pool, *, workers: int, budget_s: float, seeds: list[int],
                    settings: dict[str, Any] | None = None, num_samples: int = 0) -> StrategyRuns:
    """Simulate ``name`` once per seed; each seed gets a fresh scheduler and searcher seeded with it.

    ``settings`` are the run scripts' flags (``grace_period``, ``reduction_factor``, ``brackets``,
    ``max_concurrent_search``, ...), applied over the strategy's YAML config.
    """
    from search_spaces import SpaceError, load_space

    try:
        space = load_space(pool.space)
    except SpaceError as err:
        raise SimulationError(f"the pool's search space is not available: {err}") from None
    out = StrategyRuns(name)
    for seed in seeds:
        config = strategy_config(name, pool, {**(settings or {}), "seed": seed})
        scheduler = build_scheduler(config, space)
        proposer = build_proposer(name, config, space, pool)
        run = simulate(pool, scheduler, proposer, workers=workers, budget_s=budget_s,
                       time_attr=config.model_spec.time_attr, num_samples=num_samples,
                       reuse_actors=config.reuse_actors, seed=seed)
        out.runs.append(run)
        out.passes.append(proposer.passes)
        out.distinct.append(len(proposer.used))
        out.distances += getattr(proposer, "distances", [])
    return out
