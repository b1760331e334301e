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
