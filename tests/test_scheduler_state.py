"""The scheduler remembers across an interruption (experiments/core/scheduler_state.py).

Unit tests check the two functions that touch Ray's private scheduler attributes against Ray's own
classes; the two slow tests interrupt a real Tune experiment (ASHA, then PBT), resume it with
``Tuner.restore`` and show the restored scheduler is the interrupted one: the same rung records
(so a new trial below the old cut-off stops at its first rung, where an empty rung would let it
pass) and the same perturbation times (so no trial perturbs off its interval right after the resume).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import ray.cloudpickle as cloudpickle
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, PopulationBasedTraining

from experiments.core.scheduler_state import SchedulerMemory, apply, capture
from search_spaces.compile import to_pbt_mutations
from search_spaces.spec import parse_space

TESTS = Path(__file__).parent


def _ahb(brackets: int = 3) -> AsyncHyperBandScheduler:
    return AsyncHyperBandScheduler(time_attr="training_iteration", metric="score", mode="max", max_t=16,
                                   grace_period=1, reduction_factor=2, brackets=brackets)


def test_async_hyperband_rungs_and_brackets_survive_a_pickle_round_trip():
    np.random.seed(0)
    scheduler = _ahb()
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(8)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    for step in (1, 2, 4):
        for i, trial in enumerate(trials):
            scheduler.on_trial_result(None, trial, {"training_iteration": step, "score": (i % 5) * step})
    saved = cloudpickle.loads(cloudpickle.dumps(capture(scheduler)))  # as Tune saves callback states
    assert any(recorded for rungs in saved["rungs"] for _, recorded in rungs)

    np.random.seed(1)  # a fresh process: brackets drawn again, rungs empty
    resumed = _ahb()
    for trial in trials:
        resumed.on_trial_add(None, trial)
    assert apply(resumed, saved) == len(trials)
    assert capture(resumed) == saved
    with pytest.raises(ValueError, match="do not fit"):
        apply(_ahb(brackets=1), saved)
    with pytest.raises(ValueError, match="does not fit"):
        apply(PopulationBasedTraining(hyperparam_mutations={"x": [1, 2]}), saved)


def test_pbt_explore_generator_goes_on_after_restore():
    space = parse_space("s", {"params": {"lr": {"type": "float", "low": 0.0, "high": 1.0}}})
    _, explore = to_pbt_mutations(space, seed=3)
    first = PopulationBasedTraining(hyperparam_mutations={"x": [1, 2]}, custom_explore_fn=explore)
    explore({"lr": 0.5})
    saved = cloudpickle.loads(cloudpickle.dumps(capture(first)))
    expected = [explore({"lr": 0.5})["lr"] for _ in range(3)]  # what the uninterrupted run draws next

    _, fresh_explore = to_pbt_mutations(space, seed=3)  # the resumed driver rebuilds it from the seed
    resumed = PopulationBasedTraining(hyperparam_mutations={"x": [1, 2]}, custom_explore_fn=fresh_explore)
    apply(resumed, saved)
    assert [resumed._custom_explore_fn({"lr": 0.5})["lr"] for _ in range(3)] == expected


def test_memory_puts_random_streams_back_at_setup():
    memory = SchedulerMemory(_ahb())
    random.seed(5)
    np.random.seed(5)
    state = cloudpickle.loads(cloudpickle.dumps(memory.get_state()))
    expected = (random.random(), np.random.rand())
    random.seed(9)
    np.random.seed(9)  # the resumed driver
    memory.set_state(state)
    memory.setup()
    assert (random.random(), np.random.rand()) == expected
    assert memory.restored == 0  # no trials re-added in this unit test


def test_a_stop_tune_had_not_carried_out_is_decided_again_after_a_resume():
    """ASHA stopped a trial at a rung, and a stop signal came before Tune completed it (its checkpoint save
    was still out): the resumed trial must be judged at that rung again, not let through as recorded."""
    np.random.seed(0)
    scheduler = _ahb(brackets=1)
    memory = SchedulerMemory(scheduler)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(4)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    decisions = {}
    for score, trial in zip((1.0, 2.0, 3.0, 0.0), trials, strict=True):  # the median cut-off stops only t3
        result = {"training_iteration": 1, "score": score}
        decisions[trial.trial_id] = scheduler.on_trial_result(None, trial, result)
        # Tune marks a stopped trial's result done before the callbacks see it.
        memory.on_trial_result(1, trials, trial, {**result, "done": decisions[trial.trial_id] == "STOP"})
    assert decisions["t3"] == "STOP" and scheduler._num_stopped == 1
    memory.on_trial_result(1, trials, trials[0], {"training_iteration": 16, "score": 9.0, "done": True})  # at max_t
    saved = cloudpickle.loads(cloudpickle.dumps(memory.get_state()))
    rung_1 = dict(saved["scheduler"]["rungs"][0])[1]
    assert "t3" not in rung_1 and {"t0", "t1", "t2"} <= set(rung_1)  # only the score of the uncarried-out stop
    assert saved["scheduler"]["num_stopped"] == 0

    resumed = _ahb(brackets=1)
    resumed_memory = SchedulerMemory(resumed)
    for trial in trials:
        resumed.on_trial_add(None, trial)
    resumed_memory.set_state(saved)
    resumed_memory.setup()
    assert resumed.on_trial_result(None, trials[3], {"training_iteration": 1, "score": 0.0}) == "STOP"
    assert resumed.on_trial_result(None, trials[1], {"training_iteration": 1, "score": 2.0}) == "CONTINUE"

    # Once Tune completes the trial, the stop is carried out and its rung score is kept.
    memory.on_trial_complete(1, trials, trials[3])
    assert "t3" in dict(capture(scheduler, memory._ending)["rungs"][0])[1]


# --- slow: a real Tune experiment interrupted and restored -----------------------------------

_seen: dict[str, Any] = {"restored": None, "results": []}


class Probe(tune.Callback):
    """Drives the interruption and records what the restored scheduler holds.

    Before ``<markers>/go`` exists (the first run) it marks each first result as handled (the
    trainable's ordering) and stops the experiment as Ctrl-C would once ``stop_after`` trials have
    reported ``stop_at``; in the resumed run it records the scheduler's state at setup and at each result.
    """

    def __init__(self, scheduler: Any, markers: Path, stop_at: int, stop_after: int):
        self.scheduler, self.markers, self.stop_at, self.stop_after = scheduler, markers, stop_at, stop_after
        self.reached: set[str] = set()

    def _resumed(self) -> bool:
        return (self.markers / "go").exists()

    def setup(self, **info: Any) -> None:
        if self._resumed():
            _seen["restored"] = capture(self.scheduler)  # after SchedulerMemory.setup (it comes first)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = result["training_iteration"]
        if self._resumed():
            _seen["results"].append((trial.trial_id, step, capture(self.scheduler)))
            return
        if step == 1:
            (self.markers / f"reported-{trial.config['rank']}").touch()
        if step >= self.stop_at:
            self.reached.add(trial.trial_id)
            if len(self.reached) == self.stop_after:
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful interrupt: it saves its state


@pytest.fixture(scope="module")
def ray_with_test_trainables():
    import ray

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), old]))  # the workers import it by name
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def _interrupt_and_restore(tmp_path: Path, name: str, scheduler: Any, param_space: dict, stop_at: int,
                           max_t: int, max_concurrent: int | None = None, num_to_keep: int | None = 2,
                           ) -> tuple[dict, Any]:
    """Run until ``Probe`` interrupts, then restore and finish; returns the saved state and the results."""
    import sys

    sys.path.insert(0, str(TESTS))
    from ranked_trainable import RankedTrainable

    markers = tmp_path / "markers"
    markers.mkdir()
    _seen.update(restored=None, results=[])
    tuner = tune.Tuner(
        RankedTrainable,
        param_space={**param_space, "markers": str(markers)},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler,
                                    max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(
            name=name, storage_path=str(tmp_path), stop={"training_iteration": max_t}, verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=num_to_keep),
            callbacks=[SchedulerMemory(scheduler), Probe(scheduler, markers, stop_at, stop_after=4)]),
    )
    tuner.fit()
    saved = capture(scheduler)  # nothing changes it after Tune's last save at the interrupt
    (markers / "go").touch()
    results = tune.Tuner.restore(str(tmp_path / name), trainable=RankedTrainable, resume_unfinished=True).fit()
    return saved, results


@pytest.mark.slow
def test_resumed_asha_keeps_its_rungs_and_stops_a_new_trial_below_the_old_cutoff(tmp_path, ray_with_test_trainables):
    # Ranks 0-3 reach rung 1 in that order (rising scores: nobody stopped), then the run is interrupted;
    # rank 4 (score 0.5) starts only after the resume. Rung 1's records 1, 2, 3, 4 put its cut-off at 2.5.
    scheduler = AsyncHyperBandScheduler(time_attr="training_iteration", max_t=4, grace_period=1,
                                        reduction_factor=2, brackets=1)
    saved, results = _interrupt_and_restore(
        tmp_path, "asha", scheduler,
        {"rank": tune.grid_search([0, 1, 2, 3, 4]), "qualities": [1, 2, 3, 4, 0.5], "step_s": 0.2},
        stop_at=1, max_t=4, max_concurrent=4)

    first_rung = saved["rungs"][0][-1]  # rungs are listed from the last milestone down
    assert first_rung[0] == 1 and sorted(first_rung[1].values()) == [1, 2, 3, 4]
    restored = _seen["restored"]
    assert restored["rungs"] == saved["rungs"]
    assert {tid: restored["bracket_of"][tid] for tid in saved["bracket_of"]} == saved["bracket_of"]
    assert not results.errors
    by_rank = {r.config["rank"]: r.metrics for r in results}
    # Below the restored cut-off: stopped at its first rung. With empty rungs it would have been the
    # first at rung 1 (passes unconditionally) and trained on to rung 2.
    assert by_rank[4]["training_iteration"] == 1
    assert by_rank[3]["training_iteration"] == 4  # the best trained to max_t across the interruption


@pytest.mark.slow
def test_resumed_pbt_keeps_its_perturbation_times(tmp_path, ray_with_test_trainables):
    # Every trial perturbs at epoch 2; the run is interrupted while they wait in epoch 3 (hold_at), so
    # they resume from their epoch-2 checkpoints. A PBT that forgot would perturb them again at epoch 3.
    scheduler = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                        quantile_fraction=0.25, hyperparam_mutations={"quality": [1, 2, 3, 4]})
    saved, results = _interrupt_and_restore(
        tmp_path, "pbt", scheduler,
        {"quality": tune.grid_search([1, 2, 3, 4]), "rank": 0, "qualities": [0], "hold_at": 3, "hold_s": 2},
        stop_at=2, max_t=4, num_to_keep=None)  # every checkpoint kept: donors' are never gone

    times = {tid: s["last_perturbation_time"] for tid, s in saved["trials"].items()}
    assert sorted(times.values()) == [2, 2, 2, 2]
    restored = _seen["restored"]
    assert {tid: s["last_perturbation_time"] for tid, s in restored["trials"].items()} == times
    assert not results.errors
    after = [(tid, step, state["trials"][tid]["last_perturbation_time"]) for tid, step, state in _seen["results"]]
    assert any(step == 3 for _, step, _ in after)  # a trial went on from epoch 2: where a forgetful PBT perturbs
    assert all(perturbed % 2 == 0 for _, _, perturbed in after), after  # perturbations only every 2 epochs
