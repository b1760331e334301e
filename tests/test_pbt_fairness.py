"""PBT's choice of the next paused member: a member that keeps cloning a paused donor does not run for ever."""

from types import SimpleNamespace

from ray.tune.experiment import Trial

from experiments.core.strategies import fair_pbt_class


class FakeTrial:
    """What the choice reads of a trial: its status and last result."""

    def __init__(self, name: str, iterations: int):
        self.trial_id, self.status, self.last_result = name, Trial.PAUSED, {"training_iteration": iterations}


def _trial(name: str, iterations: int) -> FakeTrial:
    return FakeTrial(name, iterations)


def test_among_members_tied_in_train_time_the_one_with_fewest_results_runs_first():
    scheduler = fair_pbt_class()(time_attr="epoch", perturbation_interval=1, hyperparam_mutations={"lr": [0.1, 0.2]})
    # Listed first and tied with its donor at epoch 2 after an exploit, but with more results behind it.
    clone, donor, behind = _trial("clone", 9), _trial("donor", 2), _trial("behind", 1)
    for trial, train_time in ((clone, 2), (donor, 2), (behind, 1)):
        scheduler._trial_state[trial] = SimpleNamespace(last_train_time=train_time)
    controller = SimpleNamespace(get_trials=lambda: [clone, donor, behind])
    assert scheduler.choose_trial_to_run(controller) is behind  # Ray's own rule: least train time first
    scheduler._trial_state[behind].last_train_time = 3
    assert scheduler.choose_trial_to_run(controller) is donor  # Ray's rule alone picks the clone again
