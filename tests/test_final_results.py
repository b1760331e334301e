"""FinalResultSearcher: what HyperOpt, Dragonfly, Optuna and BOHB learn from trials behind a scheduler.

Driven with synthetic results as Tune hands them to a searcher (no Ray run): trials an ASHA
stopped at epoch 1 or 2, trials that ran the full 4 epochs, a trial out of GPU memory (the GPU
contract: a last result with ``oom: True`` and a NaN metric).
"""

import math

import pytest
from ray import cloudpickle

from experiments.searchers.final_results import FinalResultSearcher
from search_spaces.compile import OptunaSpace, to_hyperopt
from search_spaces.spec import parse_space

SPACE = parse_space("t", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "layers": {"type": "int", "low": 1, "high": 4},
    "batch": {"type": "discrete", "values": [16, 32, 64]},
}})
MAX_T = 4


def hyperopt(mode: str = "min", n_initial_points: int = 3) -> FinalResultSearcher:
    from ray.tune.search.hyperopt import HyperOptSearch

    inner = HyperOptSearch(space=to_hyperopt(SPACE), metric="loss", mode=mode, n_initial_points=n_initial_points,
                           random_state_seed=0)
    return FinalResultSearcher(inner, "training_iteration", MAX_T)


def run_trial(searcher, trial_id: str, values: list[float], oom: bool = False, metric: str = "loss") -> dict:
    """Suggest, report one result per epoch, complete with the last (as Tune does after a stop)."""
    config = searcher.suggest(trial_id)
    result = {}
    for epoch, value in enumerate(values, start=1):
        result = {metric: value, "training_iteration": epoch, **({"oom": True} if oom and epoch == len(values) else {})}
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result={**result, "done": True})
    return config


def done_losses(searcher: FinalResultSearcher) -> list[float]:
    trials = searcher.searcher._hpopt_trials.trials
    return [t["result"]["loss"] for t in trials if t["result"].get("status") == "ok"]


def test_hyperopt_behind_asha_holds_only_full_budget_losses():
    searcher = hyperopt()
    # Stopped by ASHA at epochs 1 and 2: their early values (much lower than any final one) are not learnt.
    run_trial(searcher, "stopped1", [0.1])
    run_trial(searcher, "stopped2", [0.2, 0.15])
    run_trial(searcher, "full1", [0.9, 0.8, 0.7, 0.6])
    run_trial(searcher, "full2", [0.9, 0.8, 0.7, 0.5])
    for i in range(6):  # TPE proposes (after 3 initial points) from the full-budget losses only
        run_trial(searcher, f"more{i}", [0.9] if i % 2 else [0.9, 0.8, 0.7, 0.4 + i / 100])
    losses = done_losses(searcher)
    assert sorted(losses) == pytest.approx(sorted([0.6, 0.5, 0.4, 0.42, 0.44]))
    # The stopped trials are filed as errors, without a loss; HyperOpt leaves them out of its trials.
    from hyperopt.base import JOB_STATE_ERROR

    errored = [t for t in searcher.searcher._hpopt_trials._dynamic_trials if t["state"] == JOB_STATE_ERROR]
    assert len(errored) == 2 + 3 and all("loss" not in t["result"] for t in errored)


@pytest.mark.parametrize(("mode", "values", "worst"), [("min", [0.6, 0.9], 0.9), ("max", [0.6, 0.9], 0.6)])
def test_an_out_of_memory_trial_is_told_the_worst_value_seen(mode, values, worst):
    searcher = hyperopt(mode)
    run_trial(searcher, "oom_first", [math.nan], oom=True)  # nothing seen yet: not told
    assert done_losses(searcher) == []
    run_trial(searcher, "a", [values[0]] * MAX_T)
    run_trial(searcher, "stopped", [values[1]])  # seen, though not learnt as a final value
    run_trial(searcher, "oom", [values[0], math.nan], oom=True)
    sign = 1 if mode == "min" else -1  # HyperOpt minimises: Ray negates a max metric
    assert sorted(done_losses(searcher)) == sorted([sign * values[0], sign * worst])
    assert searcher.worst == worst


def test_a_diverged_trial_counts_as_the_worst_and_a_collapsed_one_as_its_own_end():
    searcher = hyperopt("max")
    run_trial(searcher, "a", [0.7] * MAX_T)
    run_trial(searcher, "collapsed", [0.55, 0.5])  # ended itself (collapsed flag below)
    searcher.suggest("c2")
    searcher.on_trial_complete("c2", {"loss": 0.52, "training_iteration": 2, "collapsed": True})
    run_trial(searcher, "diverged", [0.6, math.inf])
    assert sorted(done_losses(searcher)) == sorted([-0.7, -0.52, -0.5])


def test_dragonfly_behind_asha_learns_only_full_budget_values():
    from experiments.searchers.dragonfly import DragonflySearch

    searcher = FinalResultSearcher(DragonflySearch(SPACE, "loss", "min", seed=0), "training_iteration", MAX_T)
    run_trial(searcher, "stopped", [0.1])
    run_trial(searcher, "full", [0.9, 0.8, 0.7, 0.6])
    run_trial(searcher, "oom", [math.nan], oom=True)
    assert [value for _, value in searcher.searcher.history] == [-0.6, -0.9]  # OOM: the worst value seen, 0.9
    assert not searcher.searcher._live  # the stopped trial's point was freed, not learnt


def test_optuna_hears_of_stopped_trials_as_pruned_and_of_oom_as_the_worst():
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, n_startup_trials=2, seed=0)
    inner = OptunaSearch(space=OptunaSpace(SPACE), metric="loss", mode="min", sampler=sampler)
    searcher = FinalResultSearcher(inner, "training_iteration", MAX_T, intermediate=True)
    configs = [run_trial(searcher, "stopped", [0.3]), run_trial(searcher, "full", [0.9, 0.8, 0.7, 0.6]),
               run_trial(searcher, "oom", [0.95, math.nan], oom=True)]
    for i in range(5):  # TPE proposals from then on
        configs.append(run_trial(searcher, f"t{i}", [0.5] * MAX_T))
    assert all(SPACE.contains(c) for c in configs) and {c["batch"] for c in configs} <= {16, 32, 64}
    trials = inner._ot_study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials[:3]] == ["PRUNED", "COMPLETE", "COMPLETE"]
    assert trials[0].intermediate_values == {1: 0.3}  # what Optuna's TPE ranks a pruned trial by
    assert trials[1].value == 0.6 and trials[2].value == 0.95  # the OOM trial: the worst value seen
    assert trials[2].intermediate_values == {1: 0.95, 2: 0.95}


def test_the_worst_value_survives_save_and_restore_and_pickling(tmp_path):
    searcher = hyperopt()
    run_trial(searcher, "a", [0.7, 0.8, 0.6, 0.5])
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    fresh = hyperopt()
    fresh.restore(str(path))
    assert fresh.worst == 0.8 and done_losses(fresh) == [0.5]
    clone = cloudpickle.loads(cloudpickle.dumps(searcher))  # as Tune pickles it into tuner.pkl
    assert clone.worst == 0.8 and clone.suggest("b") is not None


def test_bohb_is_told_every_rung_and_its_scheduler_reaches_on_pause():
    from experiments.searchers.bohb import SpecBOHB

    searcher = FinalResultSearcher(SpecBOHB(SPACE, "loss", "min", max_concurrent=2, seed=0),
                                   "training_iteration", MAX_T, intermediate=True)
    config = searcher.suggest("a")
    assert SPACE.contains(config) and config["batch"] in (16, 32, 64)
    searcher.on_trial_result("a", {"loss": 0.5, "training_iteration": 1, "hyperband_info": {"budget": 1}})
    searcher.on_pause("a")  # what HyperBandForBOHB calls on tune_controller.search_alg.searcher
    assert "a" in searcher.searcher.paused
    # A paused trial does not count: two more may run, not three.
    assert searcher.suggest("b") is not None and searcher.suggest("c") is not None and searcher.suggest("d") is None
    searcher.on_trial_result("b", {"loss": math.nan, "oom": True, "training_iteration": 1,
                                   "hyperband_info": {"budget": 1}})
    assert searcher.searcher.bohber.losses[1] == [0.5, 0.5]  # the OOM rung result told as the worst value seen


def test_bohbs_scheduler_saves_the_stop_of_a_paused_trial(monkeypatch):
    """Ray 2.60 does not write a paused trial's stop into the experiment state; the subclass does."""
    import inspect
    from types import SimpleNamespace

    from ray.tune.execution.tune_controller import TrialRunnerWrapper, TuneController
    from ray.tune.schedulers import HyperBandForBOHB

    from experiments.searchers.bohb import HyperBandForBOHBStopsSaved

    # The private names save_trial_status relies on.
    assert callable(TuneController._mark_trial_to_checkpoint)
    assert "self._tune_controller = tune_controller" in inspect.getsource(TrialRunnerWrapper.__init__)

    stopped, kept, running = (SimpleNamespace(status="PAUSED"), SimpleNamespace(status="PAUSED"),
                              SimpleNamespace(status="RUNNING"))

    def halve(self, tune_controller, bracket):  # what Ray's successive halving does to the bad paused trial
        stopped.status = "TERMINATED"
        return "PAUSE"

    monkeypatch.setattr(HyperBandForBOHB, "_process_bracket", halve)
    marked = []
    wrapper = SimpleNamespace(_tune_controller=SimpleNamespace(_mark_trial_to_checkpoint=marked.append))
    bracket = SimpleNamespace(current_trials=lambda: [stopped, kept, running])
    assert HyperBandForBOHBStopsSaved()._process_bracket(wrapper, bracket) == "PAUSE"
    assert marked == [stopped]
