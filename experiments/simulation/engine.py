"""The discrete-event loop: recorded curves replayed through a Ray Tune scheduler on a virtual clock.

``workers`` trial slots run trials epoch by epoch; an epoch of a recorded trial takes the seconds
it took when it was recorded, and the slot pays the pool's measured overheads (a slot's first
start, the switch between trials in a reused actor, the gap between results). Each result goes
to the scheduler exactly as Tune's controller hands it over (``TuneController._process_trial_result``
and ``stop_trial`` in Ray 2.60):

- a result at ``max_epochs`` (the runner's ``stop={time_attr: max_epochs}``) or one that ends
  its trial itself (``done``) stops the trial without ``on_trial_result``;
- any other result goes to ``scheduler.on_trial_result``, whose CONTINUE / STOP decides; on
  CONTINUE the searcher gets ``on_trial_result``;
- a stopped trial goes to ``scheduler.on_trial_complete`` and the searcher's ``on_trial_complete``
  with its last result, and its slot starts the trial ``scheduler.choose_trial_to_run`` picks
  among the trials added so far (a new one is asked of the searcher when none is pending; each
  is announced with ``scheduler.on_trial_add``).

Time advances from event to event; nothing sleeps, nothing trains. The run ends at ``budget_s``
(Tune's ``time_budget_s``: results after it never happen) or when the searcher has nothing more
to propose and every slot is idle.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from experiments.simulation.errors import SimulationError
from experiments.simulation.pool import Overheads, Pool, RecordedTrial


class SimTrial:
    """The stand-in for ``ray.tune.experiment.Trial`` that the schedulers are handed.

    Ray's trial object needs a running Tune (placement groups, storage, a trainable). What the
    replayed schedulers touch of it, read in Ray 2.60's source, is only this:
    ``AsyncHyperBandScheduler`` (``schedulers/async_hyperband.py``) keys its brackets and rungs
    by ``trial.trial_id``; ``FIFOScheduler.choose_trial_to_run`` (``schedulers/trial_scheduler.py``)
    compares ``trial.status`` with ``Trial.PENDING`` / ``Trial.PAUSED``. ``config`` and
    ``last_result`` are there for schedulers that read them. A scheduler touching anything else
    fails with AttributeError (``__slots__``), not silently; ``tests/test_simulate.py`` checks
    the stand-in against the real ``Trial``'s attribute names.
    """

    __slots__ = ("trial_id", "status", "config", "last_result", "recorded", "epochs_done", "started_at")

    def __init__(self, trial_id: str, recorded: RecordedTrial):
        self.trial_id = trial_id
        self.status = Trial.PENDING
        self.config = recorded.config
        self.last_result: dict[str, Any] = {}
        self.recorded = recorded
        self.epochs_done = 0
        self.started_at = math.nan


class SimController:
    """The stand-in for ``TuneController`` the scheduler hooks get (``get_trials`` is all FIFO calls).

    ``get_trials`` returns the trials not yet finished, in the order they were added; Tune's
    returns finished ones too, which ``choose_trial_to_run`` skips (it picks PENDING, then PAUSED):
    leaving them out keeps each call independent of the run's length.
    """

    def __init__(self) -> None:
        self._live: dict[str, SimTrial] = {}

    def add(self, trial: SimTrial) -> None:
        self._live[trial.trial_id] = trial

    def remove(self, trial: SimTrial) -> None:
        del self._live[trial.trial_id]

    def get_trials(self) -> list[SimTrial]:
        return list(self._live.values())


class Proposer(Protocol):
    """The search side of a simulation: proposes recorded trials and hears their results."""

    finished: bool  # True once it will never propose again

    def propose(self, trial_id: str) -> RecordedTrial | None:
        """The recorded trial to run as ``trial_id``; None if there is none to run now."""

    def on_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A result of a trial that goes on."""

    def on_complete(self, trial_id: str, result: dict[str, Any]) -> None:
        """The last result of a stopped trial."""


@dataclass(frozen=True)
class TrialOutcome:
    """What happened to one simulated trial."""

    trial_id: str
    key: str  # the recorded trial it replayed
    epochs: int  # epochs trained
    value: float  # the metric at its last trained epoch (NaN if none)
    test: float  # the test metric there (NaN if none)
    started_at: float
    stopped_by_scheduler: bool  # stopped before max_epochs by the scheduler's decision
    finished: bool  # its last result happened within the budget


@dataclass
class SimulatedRun:
    """One simulated run on the virtual clock: the results that matter and every trial's outcome.

    A run at cluster scale has hundreds of thousands of results, so it keeps them compactly:
    ``times`` / ``keys`` / ``values`` hold only the results that improved their recorded trial's
    best value so far (the only ones that can change a top-k curve, whose every trial counts
    with its best value), ``keys`` as indices into ``pool.trials``; per trial (in the order trials
    ended), ``trial_numbers``, ``trial_keys``, ``trial_epochs``, ``trial_started`` and the two flags
    are parallel lists (see :meth:`outcomes` for them as objects).
    """

    pool: Pool
    seed: int
    workers: int
    budget_s: float
    end: float = 0.0  # virtual seconds when the run ended
    results: int = 0  # results reported within the budget
    times: list[float] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    trial_numbers: list[int] = field(default_factory=list)  # n of each trial's id sim_<n> (the n-th created)
    trial_keys: list[int] = field(default_factory=list)
    trial_epochs: list[int] = field(default_factory=list)
    trial_started: list[float] = field(default_factory=list)
    trial_stopped: list[bool] = field(default_factory=list)  # stopped early by the scheduler
    trial_finished: list[bool] = field(default_factory=list)  # its last result happened within the budget

    @property
    def epochs_trained(self) -> int:
        return sum(self.trial_epochs)

    @property
    def num_trials(self) -> int:
        return len(self.trial_keys)

    def outcomes(self) -> list[TrialOutcome]:
        """Every trial's outcome, in the order the trials ended (in-flight ones last)."""
        out = []
        for i, (index, epochs) in enumerate(zip(self.trial_keys, self.trial_epochs, strict=True)):
            rec = self.pool.trials[index]
            value = float(rec.values[epochs - 1]) if epochs else math.nan
            test = float(rec.tests[epochs - 1]) if epochs and rec.tests is not None else math.nan
            out.append(TrialOutcome(f"sim_{self.trial_numbers[i]:06d}", rec.key, epochs, value, test,
                                    self.trial_started[i], self.trial_stopped[i], self.trial_finished[i]))
        return out


def simulate(pool: Pool, scheduler: TrialScheduler, proposer: Proposer, *, workers: int, budget_s: float,
             time_attr: str = "training_iteration", num_samples: int = 0, reuse_actors: bool = True,
             overheads: Overheads | None = None, seed: int = 0) -> SimulatedRun:
    """Replay ``pool`` through ``scheduler`` and ``proposer`` on ``workers`` slots for ``budget_s`` seconds.

    ``scheduler`` must already know metric and mode (``set_search_properties``, as Tune calls it).
    ``num_samples`` (0: unlimited) caps the trials created, as Tune's ``num_samples`` does. With
    ``reuse_actors`` a slot pays ``first_start_s`` once and ``switch_s`` between trials; without,
    every trial pays ``first_start_s``. ``seed`` seeds NumPy's global generator, which
    ``AsyncHyperBandScheduler`` draws each trial's bracket from.
    """
    if workers < 1:
        raise SimulationError(f"--workers must be a positive integer, got {workers}")
    if not budget_s > 0:
        raise SimulationError(f"--budget-s must be positive, got {budget_s}")
    np.random.seed(seed)
    costs = overheads or pool.overheads
    first_start, switch, between = costs.first_start_s, costs.switch_s, costs.between_results_s
    metric, max_epochs = pool.metric, pool.max_epochs
    controller = SimController()
    run = SimulatedRun(pool=pool, seed=seed, workers=workers, budget_s=budget_s)
    # Plain Python lists per recorded trial: the loop below runs once per result, NumPy indexing is slower.
    index = {id(t): i for i, t in enumerate(pool.trials)}
    curves = [([float(v) for v in t.values], [float(x) for x in t.seconds], t.ends_itself) for t in pool.trials]
    sign = 1.0 if pool.mode == "min" else -1.0
    best = [math.inf] * len(pool.trials)  # each recorded trial's best (sign * value) so far
    events: list[tuple[float, int, int]] = []  # (virtual time of a slot's next result, tie-break, slot)
    running: list[SimTrial | None] = [None] * workers
    idle = list(range(workers - 1, -1, -1))  # a stack: a freed slot (warm actor) is reused first, as Tune does
    fresh = [True] * workers  # the slot's actor has not started yet
    created = pushed = waiting = 0  # trials created, events pushed, trials added but not yet started
    CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP

    def fill(now: float) -> None:
        """Start a trial on every idle slot that can get one (a new trial asked of the searcher if none is pending)."""
        nonlocal created, pushed, waiting
        while idle:
            if not waiting:  # Tune's _update_trial_queue
                if proposer.finished or (num_samples and created >= num_samples):
                    return
                trial_id = f"sim_{created:06d}"
                recorded = proposer.propose(trial_id)
                if recorded is None:
                    return
                created += 1
                trial = SimTrial(trial_id, recorded)
                controller.add(trial)
                scheduler.on_trial_add(controller, trial)
                waiting += 1
            trial = scheduler.choose_trial_to_run(controller)
            if trial is None:
                return
            waiting -= 1
            slot = idle.pop()
            trial.status = Trial.RUNNING
            trial.started_at = now + (first_start if fresh[slot] or not reuse_actors else switch)
            fresh[slot] = False
            running[slot] = trial
            pushed += 1
            heapq.heappush(events, (trial.started_at + curves[index[id(trial.recorded)]][1][0], pushed, slot))

    def finish(trial: SimTrial, stopped_by_scheduler: bool, finished: bool) -> None:
        run.trial_numbers.append(int(trial.trial_id[4:]))
        run.trial_keys.append(index[id(trial.recorded)])
        run.trial_epochs.append(trial.epochs_done)
        run.trial_started.append(trial.started_at)
        run.trial_stopped.append(stopped_by_scheduler)
        run.trial_finished.append(finished)

    fill(0.0)
    results = 0
    while events and events[0][0] <= budget_s:
        now, _, slot = heapq.heappop(events)
        trial = running[slot]
        key = index[id(trial.recorded)]
        values, seconds, ends = curves[key]
        epoch = trial.epochs_done = trial.epochs_done + 1
        value = values[epoch - 1]
        results += 1
        # A recorded trial that ended itself (diverged or collapsed) never ranks (core/scores.py),
        # whatever epoch its replay reaches: the pool knows its training broke.
        if not ends and sign * value < best[key]:  # NaN never improves
            best[key] = sign * value
            run.times.append(now)
            run.keys.append(key)
            run.values.append(value)
        ends_itself = ends and epoch == len(values)
        result = {metric: value, time_attr: epoch, "training_iteration": epoch,
                  "time_this_iter_s": seconds[epoch - 1], "trial_id": trial.trial_id, "done": ends_itself,
                  "config": trial.config}  # as in Tune's results: the configuration that ran (the recorded one)
        if epoch >= max_epochs or ends_itself:
            decision = STOP  # Tune's stopper / the trial's own done: no on_trial_result
        else:
            decision = scheduler.on_trial_result(controller, trial, result)
        if decision == CONTINUE:
            trial.last_result = result
            proposer.on_result(trial.trial_id, result)
            pushed += 1
            heapq.heappush(events, (now + between + seconds[epoch], pushed, slot))
            continue
        if decision != STOP:
            raise SimulationError(f"the scheduler returned {decision} for a trial; only schedulers that "
                                  "continue or stop trials (FIFO, ASHA, async HyperBand) can be replayed")
        result["done"] = True
        trial.last_result = result
        scheduler.on_trial_complete(controller, trial, result)
        proposer.on_complete(trial.trial_id, result)
        trial.status = Trial.TERMINATED
        controller.remove(trial)
        finish(trial, stopped_by_scheduler=epoch < max_epochs and not ends_itself, finished=True)
        running[slot] = None
        idle.append(slot)
        fill(now)
        run.end = now
    run.results = results
    if events:  # the budget ran out with trials in flight
        run.end = budget_s
        for trial in running:
            if trial is not None:
                finish(trial, stopped_by_scheduler=False, finished=False)
    return run
