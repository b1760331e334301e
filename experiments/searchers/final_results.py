"""What a model-based searcher learns from a trial behind an early-stopping scheduler.

Behind ASHA or async HyperBand most trials are stopped at an early rung. Ray tells the searcher
each stopped trial's last result as if it were final, so HyperOpt's TPE or Dragonfly's GP would
model an epoch-1 value and an epoch-12 value as the same kind of observation. Wrapped in
:class:`FinalResultSearcher`, a searcher learns:

- a trial that reached the full budget (``time_attr >= max_t``): its final value;
- a trial that ended itself before it (its own shorter ``epochs``, or a collapse or divergence
  the trainable detected): its final value too;
- a trial out of GPU memory (its last result holds ``oom: True`` and a NaN metric) or with a
  non-finite value (diverged): the worst value seen so far in the experiment, so the model
  learns to avoid the region; nothing if no value has been seen yet;
- a trial the scheduler stopped early (or a time budget cut): nothing as a value. A searcher
  that cannot use partial results (HyperOpt, Dragonfly: ``intermediate=False``) hears of it as a
  failed trial (its bookkeeping frees the point; HyperOpt files it as an error, without a loss);
  one that can (Optuna: ``intermediate=True``) receives every intermediate result and hears of
  the stop as a pruned trial (``on_trial_complete`` without a result), which Optuna's TPE ranks
  below every completed trial, by how far it got, as Optuna's own pruners do.

BOHB learns every rung's result at its budget by design (multi-fidelity), so it is wrapped with
``intermediate=True`` only for the out-of-memory rule.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.search import Searcher

from experiments.searchers.base import restore_with_wrapped, save_with_wrapped


class FinalResultSearcher(Searcher):
    """A searcher told only full-budget (and out-of-memory) results; see the module docstring.

    Methods a scheduler may call on the searcher itself (BOHB's ``on_pause`` / ``on_unpause``),
    and anything else the wrapped searcher offers, are passed through.
    """

    def __init__(self, searcher: Searcher, time_attr: str, max_t: int, intermediate: bool = False):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.time_attr = time_attr
        self.max_t = max_t
        self.intermediate = intermediate
        self.worst: float | None = None  # the worst finite metric value seen in any result

    # --- what Tune and the concurrency limiter ask of a searcher --------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        accepted = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return accepted

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = self._value(result)
        if value is not None and math.isfinite(value):
            self._see(value)
        if not self.intermediate:
            return
        if value is None or math.isfinite(value):
            self.searcher.on_trial_result(trial_id, result)
        elif self.worst is not None:
            self.searcher.on_trial_result(trial_id, {**result, self.metric: self.worst})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = self._value(result) if result and not error else None
        if value is None:  # an errored trial, or no metric to learn
            self.searcher.on_trial_complete(trial_id, result=None, error=True)
            return
        if not math.isfinite(value) or result.get("oom"):
            if self.worst is None:
                self.searcher.on_trial_complete(trial_id, result=None, error=True)  # nothing to tell yet
            else:
                self.searcher.on_trial_complete(trial_id, result={**result, self.metric: self.worst})
            return
        self._see(value)
        if self._final(result):
            self.searcher.on_trial_complete(trial_id, result=result)
        elif self.intermediate:
            self.searcher.on_trial_complete(trial_id, result=None)  # stopped early: pruned
        else:
            self.searcher.on_trial_complete(trial_id, result=None, error=True)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class lacks (e.g. BOHB's on_pause / on_unpause).
        if name == "searcher":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.searcher, name)

    # --- state: the worst value seen, with the wrapped searcher's own -----------------------------

    def get_state(self) -> dict[str, Any]:
        # This wrapper's own state only: Tune saves each wrapper's, then the base searcher's itself
        # (SearchGenerator.save_to_dir), as for Ray's ConcurrencyLimiter.
        return {"worst": self.worst}

    def set_state(self, state: dict[str, Any]) -> None:
        self.worst = state["worst"]

    def save(self, checkpoint_path: str) -> None:
        save_with_wrapped(self.searcher, "final_results", {"worst": self.worst}, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        state = restore_with_wrapped(self.searcher, "final_results", checkpoint_path)
        if state is not None:  # None: saved before this wrapper existed, the searcher alone
            self.worst = state["worst"]

    # --- helpers --------------------------------------------------------------------------------

    def _value(self, result: dict | None) -> float | None:
        if not result or self.metric not in result or result[self.metric] is None:
            return None
        try:
            return float(result[self.metric])
        except (TypeError, ValueError):
            return None

    def _final(self, result: dict) -> bool:
        """Whether ``result`` is the trial's end, not a stop by the scheduler or a time budget.

        The full budget, a trial's own shorter schedule (a searched ``epochs``, in the flattened
        result Tune hands searchers), or an end the trainable declared (collapsed, diverged).
        Tune marks every stopped trial's last result ``done``, so ``done`` cannot tell these apart.
        """
        reached = result.get(self.time_attr, 0)
        own_length = result.get("config/epochs")
        return (reached >= self.max_t or bool(result.get("collapsed")) or bool(result.get("diverged"))
                or (isinstance(own_length, (int, float)) and reached >= own_length))

    def _see(self, value: float) -> None:
        if self.worst is None:
            self.worst = value
        else:
            self.worst = min(self.worst, value) if self.mode == "max" else max(self.worst, value)
