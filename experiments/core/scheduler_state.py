"""The scheduler's memory, saved with the experiment's state and restored on ``--resume``.

Ray Tune saves the trials, the searcher and the callbacks of an experiment, never the scheduler
(``TuneController.save_to_dir``; ray issue 30838): ``Tuner.restore`` gets the scheduler as it was
constructed. A resumed experiment would then not be the one that was interrupted:

- ASHA's rungs start empty, so the first trial to reach each rung passes whatever its score, and
  trials far below the old cut-off train on;
- async HyperBand draws every restored trial's bracket again;
- PBT forgets when each trial was last perturbed (so every trial perturbs at its next result)
  and, synchronous, the epoch of the next sync point;
- the random streams PBT and async HyperBand draw from (the global ``random`` and ``np.random``,
  and the suite's own explore function's generator) start over from the seed instead of going on.

:class:`SchedulerMemory` is a Tune callback holding the scheduler: Tune saves callback states in
the same save as the trials (``callback-states-*.pkl`` beside ``experiment_state-*.json``), so
the scheduler's state always matches the trials it is restored with. On restore Tune gives the
state back (``set_state``) before it re-adds the trials, which makes the scheduler forget again
(it registers each restored trial as new); the state is therefore put back in ``setup``, which
Tune calls after the trials are re-added and before any result or new trial.

A stop decision Tune has not carried out yet is not kept either. When ASHA stops a trial at a rung
where the trial also checkpoints, Tune holds the stop until the save returns; a stop signal in
between leaves the trial saved as running (with its rung score recorded), and a resume would run it
again past the rung that stopped it (ASHA lets a trial recorded at a rung continue). The callback
therefore notes each ending result until Tune reports the trial complete, and :func:`capture` leaves
out the rung score such a result recorded: the resumed trial is judged at that rung again.

Everything that reads or writes Ray's private scheduler attributes is in :func:`capture` and
:func:`apply` (tests/test_scheduler_state.py checks both against Ray's classes).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from ray.tune import Callback

# PBT's per-trial fields that make up its memory (ray.tune.schedulers.pbt._PBTTrialState).
_PBT_TRIAL_FIELDS = ("last_score", "last_perturbation_time", "last_train_time", "last_result")


def capture(scheduler: Any, ending: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The state of ``scheduler`` that a restored experiment needs, keyed by trial id; None if it has none.

    ``ending``: trial id -> its last result, for trials whose result ended them (``done``) while Tune has
    not completed them yet. A rung score such a result recorded is left out (and its stop uncounted), so
    the resumed trial is judged at that rung again instead of passing it.

    Ray 2.60's private attributes, read here only: ``AsyncHyperBandScheduler._brackets`` (each a
    ``_Bracket`` whose ``_rungs`` is a list of ``(milestone, {trial_id: score})``), ``_trial_info``
    (trial id -> its bracket), ``_num_stopped``; ``PopulationBasedTraining._trial_state`` (Trial ->
    ``_PBTTrialState``), ``_next_perturbation_sync``, ``_num_perturbations``, ``_num_checkpoints``
    and ``_custom_explore_fn`` (the suite's explore function, whose generator state pickles with it).
    A checkpoint PBT holds for a top trial is saved as a flag: a pending save cannot be pickled, and
    on restore the trial's own latest checkpoint is that one (or newer).
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler, PopulationBasedTraining

    if isinstance(scheduler, AsyncHyperBandScheduler):
        brackets = scheduler._brackets
        rungs = [[(milestone, {tid: float(score) for tid, score in recorded.items()})
                  for milestone, recorded in bracket._rungs] for bracket in brackets]
        num_stopped = scheduler._num_stopped
        for tid, result in (ending or {}).items():
            if tid not in scheduler._trial_info or result.get(scheduler._metric) is None:
                continue
            at = result.get(scheduler._time_attr, 0)
            score = float(scheduler._metric_op * result[scheduler._metric])
            for milestone, recorded in rungs[brackets.index(scheduler._trial_info[tid])]:
                if milestone <= at and recorded.get(tid) == score:  # this result's rung score: ASHA stopped it here
                    del recorded[tid]
                    num_stopped -= 1
                    break
        return {
            "kind": "async_hyperband",
            "rungs": rungs,
            "bracket_of": {tid: brackets.index(bracket) for tid, bracket in scheduler._trial_info.items()},
            "num_stopped": num_stopped,
        }
    if isinstance(scheduler, PopulationBasedTraining):
        return {
            "kind": "pbt",
            "trials": {trial.trial_id: {**{f: getattr(state, f) for f in _PBT_TRIAL_FIELDS},
                                        "has_checkpoint": state.last_checkpoint is not None}
                       for trial, state in scheduler._trial_state.items()},
            "next_perturbation_sync": scheduler._next_perturbation_sync,
            "num_perturbations": scheduler._num_perturbations,
            "num_checkpoints": scheduler._num_checkpoints,
            "explore_fn": scheduler._custom_explore_fn,
        }
    return None  # FIFO: nothing to remember


def apply(scheduler: Any, state: dict[str, Any]) -> int:
    """Put ``state`` (from :func:`capture`) back into ``scheduler``; returns how many trials it restored.

    Trials the scheduler does not hold (not re-added on this resume) are skipped; trials it holds
    that the state lacks (created after the save) keep what the scheduler gave them. A state of
    another kind of scheduler, or of another rung layout, is refused with a ValueError.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler, PopulationBasedTraining

    if isinstance(scheduler, AsyncHyperBandScheduler) and state.get("kind") == "async_hyperband":
        brackets = scheduler._brackets
        layout = [[milestone for milestone, _ in bracket._rungs] for bracket in brackets]
        if layout != [[milestone for milestone, _ in rungs] for rungs in state["rungs"]]:
            raise ValueError(f"saved rungs {state['rungs']} do not fit this scheduler's rungs {layout}")
        for bracket, rungs in zip(brackets, state["rungs"], strict=True):
            for (_, recorded), (_, saved) in zip(bracket._rungs, rungs, strict=True):
                recorded.clear()
                recorded.update(saved)
        restored = 0
        for tid, index in state["bracket_of"].items():
            if tid in scheduler._trial_info:  # re-added with a freshly drawn bracket: the saved one wins
                scheduler._trial_info[tid] = brackets[index]
                restored += 1
        scheduler._num_stopped = state["num_stopped"]
        return restored
    if isinstance(scheduler, PopulationBasedTraining) and state.get("kind") == "pbt":
        restored = 0
        for trial, trial_state in scheduler._trial_state.items():
            saved = state["trials"].get(trial.trial_id)
            if saved is None:
                continue
            for field in _PBT_TRIAL_FIELDS:
                setattr(trial_state, field, saved[field])
            trial_state.last_checkpoint = trial.checkpoint if saved["has_checkpoint"] else None
            restored += 1
        scheduler._next_perturbation_sync = state["next_perturbation_sync"]
        scheduler._num_perturbations = state["num_perturbations"]
        scheduler._num_checkpoints = state["num_checkpoints"]
        if state.get("explore_fn") is not None and scheduler._custom_explore_fn is not None:
            scheduler._custom_explore_fn = state["explore_fn"]
        return restored
    raise ValueError(f"saved scheduler state of kind {state.get('kind')!r} does not fit {type(scheduler).__name__}")


def random_streams() -> dict[str, Any]:
    """The states of the global generators PBT and async HyperBand draw from (see seeding.py)."""
    return {"random": random.getstate(), "numpy": np.random.get_state()}


def continue_random_streams(streams: dict[str, Any]) -> None:
    """Set the global generators to saved states: a resumed run goes on drawing where it stopped."""
    random.setstate(streams["random"])
    np.random.set_state(streams["numpy"])


class SchedulerMemory(Callback):
    """Saves ``scheduler``'s state and the random streams with Tune's experiment state; restores both.

    Give the Tuner the same scheduler object (both are pickled together in ``tuner.pkl``, so the
    restored callback holds the restored Tuner's scheduler). ``restored`` tells, after a resume
    started, how many trials got their scheduler state back (None when nothing was restored).
    """

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self._pending: dict[str, Any] | None = None
        self._ending: dict[str, dict[str, Any]] = {}  # trial id -> the result that ended it, until Tune completes it
        self.restored: int | None = None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("done"):
            self._ending[trial.trial_id] = result

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ending.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ending.pop(trial.trial_id, None)

    def get_state(self) -> dict[str, Any] | None:
        return {"scheduler": capture(self.scheduler, self._ending), "random_streams": random_streams()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._pending = state  # applied in setup, after Tune has re-added the restored trials

    def setup(self, **info: Any) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        if pending.get("scheduler") is not None:
            self.restored = apply(self.scheduler, pending["scheduler"])
        continue_random_streams(pending["random_streams"])

    def __getstate__(self) -> dict[str, Any]:
        # In tuner.pkl: the scheduler as constructed; nothing pending.
        return {"scheduler": self.scheduler, "_pending": None, "_ending": {}, "restored": None}
