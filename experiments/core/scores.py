"""What "best" means in this suite, defined once for the summary, the analysis and the comparison.

- A trial's **score at time t** is the best value of the tuned metric (the lowest for ``mode: min``,
  the highest for ``max``) among the results it reported up to t. Non-finite values (NaN, inf: a
  diverged epoch) never count. A trial's **score** is its score at its end, the best result it ever
  reported; its **best result** is the first result that reached that value (its iteration and its
  test metric are the ones reported with it, so the test metric belongs to the model that was selected).
- **Errored trials do not count at all**, not even through the results they reported before they
  failed: they are not ranked, not in any top-k curve and never the best trial. A configuration
  that crashes (out of memory, a failed restore) is no result a user can take home, and counting its
  partial results would reward the strategies whose trials crash. The same holds for trials that
  **diverged** (a non-finite loss or metric: the trainable ends them) or **collapsed** (a constant
  prediction): their training broke, so their earlier results are no model to take home either; and
  for trials that ran **out of memory** (``oom``: the configuration does not fit its GPU share).
  ``--resume --resume-errored`` reruns errored trials; once a rerun finishes, the trial counts like
  any other. Trials that a stop signal ended (``interrupted``) and trials stopped early by a
  scheduler or the budget are not errored: their results count.
- An experiment's **best trial** is the counting trial with the best score (ties: the one listed first).
- The **top-k mean at time t** (the NERSC study's "average of the top 6 trials over time") is the
  mean of the k best scores at t among the counting trials; it is undefined until k trials have one.

``experiments/core/summary.py`` writes each trial's score as its ``metric`` (and the last value as
``last_metric``); ``experiments/analysis`` ranks, plots and compares with these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def sign(mode: str) -> int:
    """+1 when lower is better (``min``), -1 when higher is better: ``sign * value`` sorts best first."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return 1 if mode == "min" else -1


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (bools and None are not)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


def counts(trial: Mapping[str, Any]) -> bool:
    """Whether a trial record (summary.json's ``trials`` entry) takes part in ranking: it did not error,
    diverge, collapse or run out of memory."""
    return not (trial.get("errored") or trial.get("diverged") or trial.get("collapsed") or trial.get("oom"))


def score_so_far(values: Sequence[float] | np.ndarray, mode: str) -> np.ndarray:
    """A trial's score after each of its results, oldest first (NaN until its first finite value)."""
    keyed = sign(mode) * np.asarray(values, dtype=float)
    keyed = np.where(np.isfinite(keyed), keyed, np.inf)
    running = np.minimum.accumulate(keyed) if len(keyed) else keyed
    return np.where(np.isfinite(running), sign(mode) * running, np.nan)


def best_position(values: Sequence[float] | np.ndarray, mode: str) -> int | None:
    """Index of a trial's best result (the first that reached its score); None without a finite value."""
    keyed = sign(mode) * np.asarray(values, dtype=float)
    finite = np.flatnonzero(np.isfinite(keyed))
    if not len(finite):
        return None
    return int(finite[np.argmin(keyed[finite])])  # argmin returns the first of equal values


def trial_score(values: Sequence[float] | np.ndarray, mode: str) -> float | None:
    """A trial's score: its best finite result; None when it reported none."""
    position = best_position(values, mode)
    return None if position is None else float(np.asarray(values, dtype=float)[position])


def rank_trials(trials: Iterable[Mapping[str, Any]], mode: str, score_of=None) -> list:
    """The counting trials with a score, best first (ties keep the given order).

    ``score_of(trial)`` gives a trial's score; by default its summary record's ``metric``.
    """
    score_of = score_of or (lambda t: t.get("metric"))
    scored = [(score_of(t), t) for t in trials if counts(t)]
    ranked = sorted((pair for pair in scored if is_number(pair[0])), key=lambda pair: sign(mode) * float(pair[0]))
    return [t for _, t in ranked]
