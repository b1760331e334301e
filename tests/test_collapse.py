"""Collapse detection of the RoBERTa trainable: single-class evaluations at least one epoch apart,
and under PBT a collapsed member goes on (to be exploited) instead of ending."""

import pytest
from test_roberta_trainable import CONFIG, bound, build_tiny_roberta, options  # noqa: F401 - options: a fixture

from experiments.core.config import resolve_config
from experiments.core.runner import trial_options
from experiments.core.strategies import STRATEGIES


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory) -> str:
    """A tiny checkpoint whose head predicts class 1 for every pair (a collapsed model)."""
    return str(build_tiny_roberta(tmp_path_factory.mktemp("constant"), constant_class=1))


def test_the_runner_tells_every_trial_its_scheduler():
    for strategy in ("pbt", "asha", "random"):
        config = resolve_config(strategy, {}, {"search": STRATEGIES[strategy].searchers[0]}, STRATEGIES[strategy].smoke)
        assert trial_options(config)["scheduler"] == STRATEGIES[strategy].scheduler


def test_under_pbt_a_collapsed_trial_reports_it_and_goes_on(options, constant_model):  # noqa: F811
    trainable = bound({**options, "model_name_or_path": constant_model, "scheduler": "pbt"})(
        {**CONFIG, "lr": 0.0, "epochs": 4})
    try:
        results = [trainable.train() for _ in range(3)]
        assert [r["collapsed"] for r in results] == [False, True, True]
        assert not any(r["done"] for r in results)  # PBT exploits it at its next perturbation
    finally:
        trainable.stop()


def test_single_class_evaluations_count_only_one_epoch_apart(options, constant_model):  # noqa: F811
    # 5 steps per epoch, an evaluation every 2 steps: results at epochs 0.4, 0.8, 1.0, 1.4, 1.8, 2.0, ...
    trainable = bound({**options, "model_name_or_path": constant_model, "eval_every_steps": 2})(
        {**CONFIG, "lr": 0.0, "epochs": 4})
    try:
        results = []
        while not results or not results[-1]["done"]:
            results.append(trainable.train())
        epochs = [r["epoch"] for r in results]
        assert epochs[:4] == [0.4, 0.8, 1.0, 1.4]
        # Single-class from epoch 1.0 on: evaluations at 1.4 and 1.8 are under an epoch after it.
        assert [r["collapsed"] for r in results[:5]] == [False] * 5
        assert results[-1]["collapsed"] and results[-1]["epoch"] == 2.0  # one epoch after the first counted
    finally:
        trainable.stop()
