"""The one definition of a trial's score: which trials take part in ranking."""

from experiments.core.scores import rank_trials


def test_errored_diverged_and_collapsed_trials_never_rank():
    trials = [
        {"trial_id": "ok", "metric": 0.3},
        {"trial_id": "errored", "metric": 0.1, "errored": True},
        {"trial_id": "diverged", "metric": 0.05, "diverged": True},  # good epochs before its loss went NaN
        {"trial_id": "collapsed", "metric": 0.01, "collapsed": True},
        {"trial_id": "better", "metric": 0.2},
    ]
    assert [t["trial_id"] for t in rank_trials(trials, "min")] == ["better", "ok"]


def test_an_experiment_without_a_best_trial_says_why():
    from experiments.core.summary import no_best_reason

    base = {"num_trials": 3, "num_errored": 0, "num_diverged": 0, "num_collapsed": 0}
    assert no_best_reason(base) == "no trial produced a finite metric"
    reason = no_best_reason({**base, "num_errored": 1, "num_collapsed": 2})
    assert reason.startswith("no trial counts (1 errored, 2 collapsed of 3;")
    assert "diverged" not in reason.split(";")[0]
