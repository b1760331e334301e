"""What Tune saved of an experiment's ended trials, for the tests that stop an experiment and resume it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.core.tune_state import saved_trials


def terminated_progress(experiment: Path) -> dict[str, list]:
    """Trial folder -> its (training_iteration, val_mae) rows, for the trials Tune last saved as TERMINATED
    (finished or stopped early by the scheduler): a resumed experiment must leave these rows as they are."""
    done = {}
    for trial in saved_trials(experiment):
        if trial["status"] == "TERMINATED":
            rows = pd.read_csv(experiment / trial["relative_logdir"] / "progress.csv")
            done[trial["relative_logdir"]] = rows[["training_iteration", "val_mae"]].values.tolist()
    return done
