"""Tune's saved experiment state (the newest ``experiment_state-*.json``), read without Ray.

What Tune last saved of each trial: its id, its status (in memory every trial shows stopped after a
stop signal; the saved state still says which were running or pending) and its folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def saved_trials(exp_dir: Path) -> list[dict[str, Any]]:
    """The trials of the newest saved state, in Tune's order; [] when there is none or it is unreadable."""
    states = sorted(Path(exp_dir).glob("experiment_state-*.json"))  # named by start time; a resume adds one
    if not states:
        return []
    try:
        trial_data = json.loads(states[-1].read_text()).get("trial_data", [])
        return [json.loads(t[0]) if isinstance(t, list) else t for t in trial_data]
    except (OSError, ValueError, TypeError):  # truncated (full disk, killed mid-write): Tune.restore reports it
        return []


def saved_trial_statuses(exp_dir: Path) -> dict[str, str]:
    """Trial id -> status as Tune last saved them."""
    return {t.get("trial_id", str(i)): t.get("status", "") for i, t in enumerate(saved_trials(exp_dir))}


def unfinished_ids(statuses: dict[str, str]) -> set[str]:
    """Ids of the trials in ``statuses`` (``saved_trial_statuses``) neither finished nor errored: a stop
    left them running or pending."""
    return {tid for tid, status in statuses.items() if status not in ("TERMINATED", "ERROR")}


def saved_trial_states(exp_dir: Path) -> list[str]:
    """The statuses of :func:`saved_trial_statuses`, in Tune's order."""
    return list(saved_trial_statuses(exp_dir).values())


def saved_trial_ids(exp_dir: Path) -> dict[str, str]:
    """Trial folder name -> trial id.

    The id a trial's own results carry is only there once it reported: before that Tune fills its last
    result from its actor, and a reused actor still carries the id of the trial it ran before.
    """
    return {Path(t["relative_logdir"]).name: t["trial_id"] for t in saved_trials(exp_dir)
            if t.get("relative_logdir") and t.get("trial_id")}
