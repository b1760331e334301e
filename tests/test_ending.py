"""summary.json's ``ended_by`` and ``num_cut`` (experiments/core/summary.mark_ending)."""

from experiments.core.summary import mark_ending


def _trial(done: bool, errored: bool = False, iteration: int = 3) -> dict:
    return {"done": done, "errored": errored, "iteration": iteration}


def _summary(trials: list[dict], **fields) -> dict:
    return {"trials": trials, "num_errored": sum(t["errored"] for t in trials), **fields}


def test_budget_cut_trials_are_counted_as_cut_not_finished():
    summary = _summary([_trial(True), _trial(False), _trial(False, iteration=0), _trial(False, errored=True)])
    mark_ending(summary, time_budget_s=60)
    assert summary["ended_by"] == "time_budget" and summary["num_cut"] == 2  # the never-started one included
    assert [t["cut"] for t in summary["trials"]] == [False, True, True, False]


def test_every_trial_done_is_completed_even_with_a_budget():
    summary = _summary([_trial(True), _trial(True)])
    mark_ending(summary, time_budget_s=60)
    assert summary["ended_by"] == "completed" and summary["num_cut"] == 0


def test_trials_left_to_run_mean_an_interruption_or_a_fail_fast_stop():
    interrupted = _summary([_trial(True), _trial(False)], num_unfinished=1)
    mark_ending(interrupted, time_budget_s=60)
    assert interrupted["ended_by"] == "interrupted" and interrupted["num_cut"] == 0
    failed = _summary([_trial(False, errored=True)], num_not_started=2)
    mark_ending(failed, time_budget_s=None)
    assert failed["ended_by"] == "trial_error"
