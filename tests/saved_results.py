"""What Tune saved of an experiment's ended trials, for the tests that stop an experiment and resume it."""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from experiments.core.tune_state import saved_trial_states

# For a driver whose saved state a test polls: Tune snapshots it (and syncs the trial folders on the
# storage path with it) every 10 s or more by default (`TUNE_GLOBAL_CHECKPOINT_S`, "auto"), long enough
# for a short sweep to end between a trial's end and the snapshot that shows it. Every second keeps the
# poll close to the run; what a stop saves is the same (a graceful stop forces a snapshot either way).
SNAPSHOT_EVERY_S = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}


def _saved_terminated(experiment: Path) -> dict[str, int] | None:
    """Trial folder -> the last training_iteration Tune saved, for the trials of the newest saved state that are
    TERMINATED; None while that state cannot be read (none yet, or a sync is rewriting it)."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (IndexError, OSError, ValueError, KeyError):
        return None
    ended = {}
    for state, run in trial_data:  # Tune's format: each trial is [its state JSON, its run metadata JSON]
        state, run = json.loads(state), json.loads(run)
        if state["status"] == "TERMINATED":
            ended[state["relative_logdir"]] = (run.get("last_result") or {}).get("training_iteration", 0)
    return ended


def progress_rows(progress: Path) -> list | None:
    """The (training_iteration, val_mae) rows of a progress.csv; None if it is missing or empty (a snapshot's
    copy was rewriting it, or a kill stopped the copy: see :func:`terminated_progress`)."""
    try:
        text = progress.read_text()
    except OSError:
        return None
    if not text.strip():
        return None
    return pd.read_csv(io.StringIO(text))[["training_iteration", "val_mae"]].values.tolist()


def terminated_progress(experiment: Path, timeout: float = 30) -> dict[str, list]:
    """Trial folder -> its (training_iteration, val_mae) rows, for the trials Tune last saved as TERMINATED
    (finished or stopped early by the scheduler): a resumed experiment must leave these rows as they are.

    While an experiment runs, each snapshot re-copies the driver's trial folders and state file onto the
    storage path (``pyarrow.fs.copy_files``: each file truncated, then written), so a file read at that
    moment can be empty, or older than the state beside it (a CI run, 2026-12-05: an empty progress.csv of a
    TERMINATED trial). Each trial's rows are therefore read until they end at the iteration Tune saved as
    its last; a trial still behind after ``timeout`` seconds fails the test, naming it.
    """
    deadline = time.monotonic() + timeout
    while True:
        ended = _saved_terminated(experiment)
        rows = {logdir: progress_rows(experiment / logdir / "progress.csv") for logdir in ended or {}}
        behind = {logdir: (last, (rows[logdir] or [[None]])[-1][0]) for logdir, last in (ended or {}).items()
                  if not rows[logdir] or rows[logdir][-1][0] != last}
        if ended is not None and not behind:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{experiment}: saved state unreadable or progress.csv behind it after "
                                 f"{timeout:.0f} s (folder: (saved last iteration, last row)): {behind}")
        time.sleep(0.5)


def wait_for_a_terminated_trial(experiment: Path, timeout: float, running: Callable[[], bool]) -> bool:
    """Poll Tune's saved state of ``experiment`` until a trial in it is TERMINATED (finished or stopped by its
    scheduler): True then; False if ``timeout`` seconds pass or ``running()`` (the driver or its job) says the
    run has ended without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "TERMINATED" in saved_trial_states(experiment):
            return True
        if not running():
            return "TERMINATED" in saved_trial_states(experiment)
        time.sleep(0.5)
    return False
