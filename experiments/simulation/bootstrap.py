"""Bootstrap intervals over curves and seeds for the simulated table's means, and the pool's target.

A simulated figure is uncertain twice over: the seeds (which curves a run draws, in which order,
which ASHA brackets) and the pool itself (a sample of N curves from the space: another recording
would hold other curves). Once a run has drawn the whole pool (passes > 1) the first source
vanishes: every seed ends with the same curves, and only the second is left. So each bootstrap
replicate resamples both, hierarchically:

- **curves**: one multinomial draw of N curves from the pool's N, with replacement, shared by every
  run and every strategy of the replicate (the pool is one sample for all of them): a curve drawn
  w times counts w times in each run's top-k (w = 0: the curve is left out);
- **seeds**: R runs drawn with replacement from each strategy's R seeds.

The replicate's top-k curve of each run is recomputed with those counts, then the mean over its
runs, from which its final top-k mean and its time to target follow as compare.py defines them
(the first time the mean curve over seeds reaches the target). The run's timing and every
scheduler decision stay those of the simulation on the recorded pool: re-simulating each
replicate would cost the whole simulation once per replicate. The interval is the percentile
interval (2.5 % and 97.5 % of ``replicates`` replicates, 95 %).

What bounds it, for a run that drew the whole pool (the test's closed-form case): every seed
ends with the same set of curves at the same epochs, so the interval is the curve level's alone.
A replicate's top-k mean is at least the best curve's value (x_(1)), and it is at most the
3k-th best value x_(3k) unless fewer than k of the 3k best curves were drawn, which happens with
probability P(Poisson(3k) < k) (3e-4 for k = 6): so the interval lies within [x_(1), x_(3k)] and is
narrower than x_(3k) - x_(1).

**The target** (:func:`pool_target`) is the ``q`` quantile of the pool's curves' best values
(curves that ended themselves, diverged, never rank): a top-k mean at the level of a top-``q``
configuration. Random search has k curves below it after about k / q full-length trials, so
with q = 0.1 and k = 6 it is reached after about 60 draws, within one pass over any pool of 120
curves or more: the time to reach it is a property of the strategy, not of the pool's end
(random search's final value, the earlier target, is the pool's own top-k once a run has drawn
the pool).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.simulation.engine import SimulatedRun
from experiments.simulation.pool import Pool

DEFAULT_QUANTILE = 0.1
DEFAULT_REPLICATES = 1000
LEVEL = 95.0


def curve_bests(pool: Pool) -> np.ndarray:
    """Each ranking curve's best value (curves with no finite value and curves that ended themselves left out)."""
    sign = 1.0 if pool.mode == "min" else -1.0
    return np.array([sign * float(np.nanmin(sign * t.values)) for t in pool.trials
                     if np.isfinite(t.values).any() and not t.ends_itself])


def pool_target(pool: Pool, q: float = DEFAULT_QUANTILE) -> float | None:
    """The ``q`` quantile of the pool's ranking curves' best values (``mode`` max: the 1 - q quantile)."""
    best = curve_bests(pool)
    if not best.size:
        return None
    return float(np.quantile(best, q if pool.mode == "min" else 1 - q))


def pool_spread(pool: Pool) -> str:
    """How much the pool's configurations differ, the room an early-stopping scheduler has: one sentence.

    The best, median and 0.9 quantile (the worst tenth starts there) of the curves' best values, and for a
    positive metric that is minimised, the share of curves ending within 2x of the pool's best (a flat
    space: most of them; then stopping trials early saves little).
    """
    best = curve_bests(pool)
    ended = sum(t.ends_itself for t in pool.trials)
    if not best.size:
        return "no curve of the pool ranks"
    minimise = pool.mode == "min"
    top, worst_tenth = (best.min(), np.quantile(best, 0.9)) if minimise else (best.max(), np.quantile(best, 0.1))
    text = (f"the {best.size} ranking curves' best values: best {top:.4g}, median {np.median(best):.4g}, "
            f"worst tenth from {worst_tenth:.4g}")
    if minimise and top > 0:
        text += f"; {np.mean(best <= 2 * top):.0%} end within 2x of the best, {np.mean(best > 4 * top):.0%} beyond 4x"
    if ended:
        text += f"; {ended} curve(s) ended themselves (diverged) and do not rank"
    return text


def expected_draws(k: int, q: float) -> float:
    """Full-length random draws after which k curves below the ``q`` quantile are expected: k / q."""
    return k / q


@dataclass
class Replicates:
    """One strategy's bootstrap replicates: final top-k mean and time to target (inf: never) per replicate."""

    final: np.ndarray
    time_to_target: np.ndarray


def weighted_topk(rows: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Per row, the mean of the k smallest values counting each ``weights`` times (inf where fewer than k).

    ``rows`` holds sign-adjusted values (lower is better), inf for curves without a result yet.
    Only each row's ``max(8k, 32)`` smallest values are sorted: the k smallest units lie among them
    whenever their counts add up to k (a curve's count is about Poisson(1), so all but never); the
    rows where they do not are computed in full.
    """
    keep = max(8 * k, 32)
    if rows.shape[1] <= keep:
        return _weighted_topk(rows, weights, k)
    part = np.argpartition(rows, keep - 1, axis=1)[:, :keep]
    out = _weighted_topk(np.take_along_axis(rows, part, axis=1), np.take_along_axis(weights, part, axis=1), k)
    redo = np.isinf(out) & (np.isfinite(rows).sum(axis=1) > keep)
    if redo.any():
        out[redo] = _weighted_topk(rows[redo], weights[redo], k)
    return out


def _weighted_topk(rows: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(rows, axis=1, kind="stable")
    values = np.take_along_axis(rows, order, axis=1)
    counts = np.take_along_axis(weights, order, axis=1) * np.isfinite(values)
    before = np.cumsum(counts, axis=1) - counts
    take = np.clip(k - before, 0, counts)
    total = np.where(take > 0, take * np.where(np.isfinite(values), values, 0.0), 0.0).sum(axis=1)
    return np.where(counts.sum(axis=1) >= k, total / k, np.inf)


class _RunTable:
    """Each run's best value per curve after each of its improving results, stacked for fast lookup."""

    def __init__(self, runs: list[SimulatedRun], n: int, sign: float):
        blocks, self.times, self.offsets = [], [], []
        offset = 0
        for run in runs:
            m = len(run.times)
            block = np.full((m + 1, n), np.inf)  # row j: after the first j improving results
            if m:
                block[np.arange(1, m + 1), np.asarray(run.keys)] = sign * np.asarray(run.values, dtype=float)
                block = np.minimum.accumulate(block, axis=0)
            blocks.append(block)
            self.times.append(np.asarray(run.times, dtype=float))
            self.offsets.append(offset)
            offset += m + 1
        self.rows = np.vstack(blocks)
        self.grid = np.unique(np.concatenate([t for t in self.times] + [[0.0]]))

    def at(self, run_index: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Row indices of runs ``run_index`` at times ``t`` (same shapes)."""
        out = np.empty(run_index.shape, dtype=np.int64)
        for r, (times, offset) in enumerate(zip(self.times, self.offsets, strict=True)):
            mask = run_index == r
            if mask.any():
                out[mask] = offset + np.searchsorted(times, t[mask], side="right")
        return out


def replicate(runs: list[SimulatedRun], pool: Pool, k: int, target: float | None, weights: np.ndarray,
              seed_draws: np.ndarray) -> Replicates:
    """The replicates of one strategy: ``weights`` (B x N curve counts), ``seed_draws`` (B x R run indices)."""
    sign = 1.0 if pool.mode == "min" else -1.0
    table = _RunTable(runs, len(pool.trials), sign)
    b, r = seed_draws.shape

    def mean_at(grid_index: np.ndarray, sel: np.ndarray) -> np.ndarray:
        """Mean over the runs of replicates ``sel`` of their weighted top-k at grid times ``grid_index``."""
        t = np.repeat(table.grid[grid_index], r)
        rows = table.rows[table.at(seed_draws[sel].ravel(), t)]
        w = np.repeat(weights[sel], r, axis=0)  # each (replicate, run) row gets its replicate's curve counts
        return weighted_topk(rows, w, k).reshape(len(grid_index), r).mean(axis=1)  # inf if any run is undefined

    every = np.arange(b)
    last = np.full(b, len(table.grid) - 1)
    final = mean_at(last, every)
    ttt = np.full(b, np.inf)
    if target is not None:
        goal = sign * target
        reached = final <= goal
        lo, hi = np.zeros(b, dtype=np.int64), last.copy()  # invariant: the mean curve has reached the goal at hi
        active = reached.copy()
        while active.any():
            sel = np.flatnonzero(active)
            mid = (lo[sel] + hi[sel]) // 2
            ok = mean_at(mid, sel) <= goal
            hi[sel] = np.where(ok, mid, hi[sel])
            lo[sel] = np.where(ok, lo[sel], mid + 1)
            active &= lo < hi
        ttt[reached] = table.grid[hi[reached]]
    return Replicates(final=np.where(np.isfinite(final), sign * final, np.nan), time_to_target=ttt)


def draws(pool: Pool, seeds_per_strategy: list[int], replicates: int = DEFAULT_REPLICATES,
          seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """The curve counts (shared by every strategy) and each strategy's seed draws, one row per replicate."""
    rng = np.random.default_rng(seed)
    n = len(pool.trials)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)
    return weights, [rng.integers(0, r, size=(replicates, r)) for r in seeds_per_strategy]


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval (inf stays inf: "never" for a time to target)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(values, [tail, 100.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def seed_interval(values: list[float], replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean over seeds, seeds resampled (for counts no curve weight changes)."""
    x = np.asarray(values, dtype=float)
    if not len(x):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    return interval(x[rng.integers(0, len(x), size=(replicates, len(x)))].mean(axis=1))
