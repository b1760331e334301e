"""Exact, incremental rung cut-offs for Ray's ``AsyncHyperBandScheduler`` (the one private-API use here).

Ray 2.60's ``_Bracket.cutoff(recorded)`` (``ray/tune/schedulers/async_hyperband.py``) computes
``np.nanpercentile(list(recorded.values()), (1 - 1 / rf) * 100)`` over every reward the rung has
recorded, at every result that reaches the rung: O(n) per decision, O(n^2) per run. A real run
never notices (its trials take minutes), but a simulated 16-worker, 8-hour run on the built-in
pool reaches ~60,000 trials, where that sum alone took 389 s for one seed (measured).

:func:`fast_rungs` keeps every decision Ray's: the scheduler, its brackets, rung milestones,
bracket draws and ``on_result`` logic are untouched. Only the storage of each rung's rewards
becomes a dict that also keeps its non-NaN values sorted, and each bracket's ``cutoff`` reads the
percentile off the sorted values with NumPy's own arithmetic for the default ``linear`` method
(``numpy/lib/_function_base_impl.py``: ``_get_indexes``, ``_get_gamma``, ``_lerp``), so the
cut-off is bit-identical to ``np.nanpercentile``'s. ``tests/test_simulate.py`` checks it on
random, tied, infinite and NaN rewards, and that whole simulated runs are identical with and
without it. It touches the private ``_brackets``, ``_rungs`` and ``rf``: if Ray renames them,
:func:`fast_rungs` raises and the test says so.
"""

from __future__ import annotations

import bisect
import math
import types
from typing import Any


class SortedRewards(dict):
    """A rung's ``trial_id -> reward`` dict that also keeps its non-NaN rewards sorted."""

    def __init__(self, items: dict | None = None):
        super().__init__()
        self.sorted: list[float] = []
        for key, value in (items or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: float) -> None:
        if key in self:
            old = dict.__getitem__(self, key)
            if not math.isnan(old):
                del self.sorted[bisect.bisect_left(self.sorted, old)]
        super().__setitem__(key, value)
        if not math.isnan(value):
            bisect.insort(self.sorted, float(value))

    def percentile(self, q: float) -> float:
        """``np.nanpercentile(list(self.values()), q)`` (method ``linear``), bit for bit."""
        values = self.sorted
        n = len(values)
        if n == 0:
            return math.nan  # NumPy: all-NaN input gives NaN
        virtual = (n - 1) * (q / 100.0)
        if virtual >= n - 1:  # _get_indexes: at or above the last index, both neighbours are the last
            previous = nxt = n - 1
            gamma = virtual - (-1)  # _get_gamma subtracts the index NumPy stored: -1
        else:
            previous = int(math.floor(virtual))
            nxt = previous + 1
            gamma = virtual - previous
        a, b = values[previous], values[nxt]
        diff = b - a
        result = a + diff * gamma  # _lerp
        if gamma >= 0.5:
            result = b - diff * (1 - gamma)
        return result


def _cutoff(self: Any, recorded: dict) -> float | None:
    """``_Bracket.cutoff`` over :class:`SortedRewards` (same early return for an empty rung)."""
    if not recorded:
        return None
    return recorded.percentile((1 - 1 / self.rf) * 100)


def fast_rungs(scheduler: Any) -> Any:
    """Give an ``AsyncHyperBandScheduler``'s rungs sorted storage and exact incremental cut-offs; return it.

    Any other scheduler is returned unchanged.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler

    if not isinstance(scheduler, AsyncHyperBandScheduler):
        return scheduler
    try:
        for bracket in scheduler._brackets:
            bracket._rungs = [(milestone, SortedRewards(recorded)) for milestone, recorded in bracket._rungs]
            bracket.rf  # noqa: B018 - fail here, not mid-run, if Ray renamed it
            bracket.cutoff = types.MethodType(_cutoff, bracket)
    except (AttributeError, TypeError, ValueError) as err:
        raise RuntimeError(f"Ray's AsyncHyperBandScheduler internals changed ({err}); "
                           "experiments/simulation/rungs.py needs updating") from err
    return scheduler
