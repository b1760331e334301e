"""BOHB (Falkner et al., 2018) proposing from the spec: Ray's ``TuneBOHB`` over a compiled ConfigSpace.

BOHB replaces Hyperband's random sampling by a TPE-like kernel density model fitted, per budget,
on the results observed at that budget (the largest budget with enough results). Ray ships it as
``TuneBOHB`` (hpbandster's config generator) with the ``HyperBandForBOHB`` scheduler, which pauses
trials at each rung and tells the searcher each rung's result with its budget. hpbandster refuses
ordinal parameters, so the space is compiled by :func:`search_spaces.compile.to_configspace`
(discrete lists as ordered indices, choices as strings) and each proposal is mapped back to the
spec's values here.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import HyperBandForBOHB
from ray.tune.search.bohb import TuneBOHB

from experiments.searchers.base import SearcherError
from search_spaces import SearchSpace
from search_spaces.compile import from_configspace, to_configspace


def check_bohb_installed() -> None:
    """A one-line SearcherError naming the install command if BOHB's packages are absent."""
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError as err:
        raise SearcherError(f"BOHB needs the packages hpbandster and ConfigSpace ({err.msg}); install them with: "
                            "pip install -e .") from None


class SpecBOHB(TuneBOHB):
    """``TuneBOHB`` over the spec's ConfigSpace whose suggestions are mapped back to the spec's values.

    It limits concurrency itself (``max_concurrent``): ``TuneBOHB`` counts paused trials apart from
    running ones (``HyperBandForBOHB`` tells it), whereas Ray's limiter would count a paused trial
    as running and starve the brackets (Ray's ``hb_bohb.py`` says the same).
    """

    def __init__(self, space: SearchSpace, metric: str | None = None, mode: str | None = None,
                 max_concurrent: int = 0, seed: int | None = None):
        check_bohb_installed()
        super().__init__(space=to_configspace(space, seed=seed), metric=metric, mode=mode,
                         max_concurrent=max_concurrent, seed=seed)
        self.spec_space = space

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        return None if config is None else from_configspace(self.spec_space, config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Ray's TuneBOHB deletes the trial's params unconditionally: a second completion (a trial
        # stopped again by HyperBandWithoutOrphans below) would raise KeyError.
        if trial_id in self.trial_to_params:
            super().on_trial_complete(trial_id, result=result, error=error)


class HyperBandForBOHBStopsSaved(HyperBandForBOHB):
    """Ray's ``HyperBandForBOHB`` whose stops of paused trials reach the saved experiment state, and
    which a resumed experiment can finish.

    Measured with Ray 2.60 (``run_bohb.py --smoke-test``, 4 of 6 runs, Tune's debug log): when
    successive halving stops a PAUSED trial, ``TuneController._schedule_trial_stop`` returns early
    (the trial has no live actor) before it marks the trial for the experiment state, so the
    trial is TERMINATED in memory but PAUSED on disk: the run reports an unfinished trial (exit
    130) and a resume would start it again. Such trials are marked here after each bracket step.

    Resume: Tune does not save the scheduler, and on restore it adds every trial to the new one,
    finished ones included. Ray's scheduler put those in brackets where they never report again,
    so the brackets never completed and the resumed run waited forever with nothing running
    (measured: 6 minutes, 0 trials running, until killed). Here finished trials join no bracket;
    the unfinished ones fill new brackets (the bracket a trial was in before the stop is not
    restored, so after a resume trials are halved among the unfinished ones), and a trial Tune
    requeues later (``--resume-errored``) joins one when it is about to run.
    """

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if trial.status not in ("TERMINATED", "ERROR"):
            super().on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any, allow_recurse: bool = True) -> Any:
        for trial in tune_controller.get_trials():
            if trial.status == "PENDING" and trial not in self._trial_info:
                super().on_trial_add(tune_controller, trial)
        return super().choose_trial_to_run(tune_controller, allow_recurse)

    def _process_bracket(self, tune_controller: Any, bracket: Any) -> str:
        paused = [t for t in bracket.current_trials() if t.status == "PAUSED"]
        action = super()._process_bracket(tune_controller, bracket)
        for trial in paused:
            if trial.status == "TERMINATED":
                save_trial_status(tune_controller, trial)
        return action


def save_trial_status(tune_controller: Any, trial: Any) -> None:
    """Have Tune write ``trial``'s status into its next experiment-state save.

    Ray 2.60 private API, isolated here: the scheduler gets a ``TrialRunnerWrapper`` whose
    ``_tune_controller`` is the controller, and ``_mark_trial_to_checkpoint`` is what Tune itself
    calls on every status change it persists (tests/test_final_results.py checks both exist).
    """
    tune_controller._tune_controller._mark_trial_to_checkpoint(trial)
