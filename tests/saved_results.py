"""What Tune saved of an experiment's ended trials, for the tests that stop an experiment and resume it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.core.tune_state import saved_trials

# For a driver whose saved state a test polls: Tune snapshots it (and syncs the trial folders on the
# storage path with it) every 10 s or more by default (`TUNE_GLOBAL_CHECKPOINT_S`, "auto"), long enough
# for a short sweep to end between a trial's end and the snapshot that shows it. Every second keeps the
# poll close to the run; what a stop saves is the same (a graceful stop forces a snapshot either way).
SNAPSHOT_EVERY_S = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}


def terminated_progress(experiment: Path) -> dict[str, list]:
    """Trial folder -> its (training_iteration, val_mae) rows, for the trials Tune last saved as TERMINATED
    (finished or stopped early by the scheduler): a resumed experiment must leave these rows as they are."""
    done = {}
    for trial in saved_trials(experiment):
        if trial["status"] == "TERMINATED":
            rows = pd.read_csv(experiment / trial["relative_logdir"] / "progress.csv")
            done[trial["relative_logdir"]] = rows[["training_iteration", "val_mae"]].values.tolist()
    return done
