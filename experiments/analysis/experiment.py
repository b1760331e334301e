"""A finished experiment as data: its summary and every trial's per-epoch results.

:func:`load_experiment` reads an experiment folder (``<storage>/<name>``, the folder holding the
runner's ``summary.json``) into an :class:`Experiment`; :func:`result_times` and
:func:`best_so_far` put every reported result on the time axis the plots and the strategy
comparison share: the experiment's own running time, which leaves out the pauses between the
sessions of a resumed experiment (:func:`experiment_seconds`). Scores and ranking follow
:mod:`experiments.core.scores`, the suite's one definition of "best".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.core.config import ConfigError
from experiments.core.scores import counts, rank_trials, score_so_far, trial_score


@dataclass
class Experiment:
    """One experiment folder: its summary and each trial's per-epoch results (oldest first)."""

    path: Path
    summary: dict[str, Any]
    histories: dict[str, pd.DataFrame]

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def sign(self) -> int:
        """+1 when lower is better, -1 when higher is better: ``sign * value`` sorts best first."""
        return 1 if self.summary["mode"] == "min" else -1

    def sessions(self) -> list[tuple[float, float | None]]:
        """The sessions (a first run and each resume) as (start, last result seen), oldest first.

        From Tune's saved experiment state (:func:`tune_sessions`); an experiment without one (a
        hand-made folder) has one session from the summary's ``start_time``, else one estimated from
        its first results.
        """
        sessions = tune_sessions(self.path)
        if sessions:
            return sessions
        if self.summary.get("start_time") is not None:
            return [(float(self.summary["start_time"]), None)]
        firsts = [float(h["timestamp"].iloc[0] - h["time_this_iter_s"].iloc[0])
                  for h in self.histories.values() if len(h) and {"timestamp", "time_this_iter_s"} <= set(h)]
        return [(min(firsts) if firsts else 0.0, None)]

    def start_time(self) -> float:
        """Unix time the experiment's first session started: the origin of its time axis."""
        return self.sessions()[0][0]

    def score(self, trial: dict[str, Any]) -> float | None:
        """A trial's score (its best reported result): from its history, else from its summary record."""
        history = self.histories.get(trial["trial_id"])
        if history is not None and self.metric in history:
            return trial_score(history[self.metric].to_numpy(dtype=float), self.summary["mode"])
        return trial.get("metric") if _finite(trial.get("metric")) else None

    def ranked_trials(self) -> list[dict[str, Any]]:
        """The trials that count (not errored) with a score, best first."""
        return rank_trials(self.summary["trials"], self.summary["mode"], self.score)


def _finite(value: Any) -> bool:
    """Whether ``value`` is a real number that is neither infinite nor NaN (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)



def _read_history(trial_dir: Path) -> pd.DataFrame:
    """A trial's results: progress.csv, else result.json (one JSON object per line), else empty."""
    progress = trial_dir / "progress.csv"
    if progress.is_file() and progress.stat().st_size > 0:
        try:
            return pd.read_csv(progress)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            pass
    result = trial_dir / "result.json"
    if result.is_file():
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        return pd.DataFrame([{k: v for k, v in r.items() if k != "config"} for r in rows])
    return pd.DataFrame()


def load_experiment(exp_dir: str | Path) -> Experiment:
    """Read ``summary.json`` and every trial's history from an experiment folder.

    Trial folders are found by name next to ``summary.json``, so a results folder that was moved
    or copied from a cluster still loads.
    """
    path = Path(exp_dir).expanduser().resolve()
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise ConfigError(f"{path} has no summary.json; give the folder of one experiment (<storage>/<name>)")
    try:
        summary = json.loads(summary_file.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{summary_file} line {err.lineno}: not valid JSON ({err.msg})") from None
    for key in ("metric", "mode", "trials"):
        if key not in summary:
            raise ConfigError(f"{summary_file} has no '{key}' field; was it written by experiments/core/summary.py?")
    histories = {}
    for trial in summary["trials"]:
        trial_dir = path / Path(trial.get("path") or "").name if trial.get("path") else None
        history = _read_history(trial_dir) if trial_dir is not None else pd.DataFrame()
        if len(history) and "timestamp" in history:
            history = history.sort_values("timestamp", kind="stable").reset_index(drop=True)
        histories[trial["trial_id"]] = history
    return Experiment(path, summary, histories)



def tune_sessions(exp_dir: Path) -> list[tuple[float, float | None]]:
    """The Tune sessions that ran an experiment (a first run, then one per resume), oldest first.

    Each is (start, last result seen), in Unix seconds; the second is None when not recorded. Tune
    writes one ``experiment_state-<session>.json`` per session (a resume adds a file and keeps the
    old ones): ``stats.start_time`` is when that session's controller started, and each trial's
    runtime metadata holds ``last_result_time``, which also covers results a later session
    overwrote (a trial restarted without a checkpoint rewrites its progress.csv). That file format
    is Tune's own, not a public API: this is the one function that reads it (tests/test_analysis.py
    checks it against a real Tune run that errored and was resumed).
    """
    sessions = {}
    for state_file in Path(exp_dir).glob("experiment_state-*.json"):
        try:
            state = json.loads(state_file.read_text())
            start = state["stats"]["start_time"]
            trial_data = state.get("trial_data") or []
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a half-written or foreign file: its session is not known
        if not _finite(start):
            continue
        last = None
        for entry in trial_data:
            try:
                metadata = entry[1] if isinstance(entry[1], dict) else json.loads(entry[1])
                seen = metadata.get("last_result_time")
            except (IndexError, TypeError, ValueError, AttributeError):
                continue
            if _finite(seen):
                last = max(float(seen), last or float(seen))
        sessions[float(start)] = last
    return sorted(sessions.items())


def experiment_seconds(timestamps: np.ndarray, sessions: list[tuple[float, float | None]]) -> np.ndarray:
    """Map Unix times to the experiment's running time: the seconds spent in its sessions up to each.

    A time belongs to the last session that started at or before it (Ray stamps results in whole
    seconds, so a stamp may read up to a second before its session's start). Each earlier session
    adds its length, from its start to its last result (the later of the recorded one and the last
    of ``timestamps`` in it); the pause before the next session does not count, nor do the seconds
    between a session's last result and its end (work an interruption lost). Times before the first
    session are 0.
    """
    timestamps = np.asarray(timestamps, dtype=float)
    starts = np.asarray([start for start, _ in sessions], dtype=float)
    index = np.clip(np.searchsorted(np.floor(starts), timestamps, side="right") - 1, 0, None)
    ends = []
    for i, (start, recorded) in enumerate(sessions):
        seen = timestamps[index == i]
        end = max([start, *([recorded] if recorded is not None else []), *([seen.max()] if len(seen) else [])])
        if i + 1 < len(sessions):
            end = min(end, sessions[i + 1][0])  # a clock step back never makes sessions overlap
        ends.append(end)
    offsets = np.concatenate([[0.0], np.cumsum(np.asarray(ends) - starts)[:-1]])
    return offsets[index] + np.maximum(timestamps - starts[index], 0.0)


def result_times(exp: Experiment, include_errored: bool = False) -> pd.DataFrame:
    """Every reported result with its experiment time (:func:`experiment_seconds`), sorted by time.

    Columns ``elapsed_s``, ``trial_id``, ``value`` (the tuned metric). Errored trials' results are
    left out unless ``include_errored`` (they never count: :mod:`experiments.core.scores`). Ray
    stamps results with whole seconds (``timestamp``), so times are good to about a second.
    """
    keep = {t["trial_id"] for t in exp.summary["trials"] if include_errored or counts(t)}
    rows = []
    for trial_id, history in exp.histories.items():
        if exp.metric not in history or "timestamp" not in history:
            continue
        # Every trial's results place the sessions' ends, counted or not: the axis is the experiment's.
        rows.append(pd.DataFrame({"timestamp": history["timestamp"].astype(float), "trial_id": trial_id,
                                  "value": history[exp.metric].astype(float), "keep": trial_id in keep}))
    if not rows:
        return pd.DataFrame(columns=["elapsed_s", "trial_id", "value"])
    table = pd.concat(rows, ignore_index=True)
    table["elapsed_s"] = experiment_seconds(table["timestamp"].to_numpy(), exp.sessions())
    table = table[table["keep"] & np.isfinite(table["value"])][["elapsed_s", "trial_id", "value"]]
    return table.sort_values("elapsed_s", kind="stable").reset_index(drop=True)


def best_so_far(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    """Experiment times (s) and the best score of any counting trial up to each of them."""
    table = result_times(exp)
    return table["elapsed_s"].to_numpy(), score_so_far(table["value"].to_numpy(), exp.summary["mode"])
