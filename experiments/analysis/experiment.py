"""A finished experiment as data: its summary and every trial's per-epoch results.

:func:`load_experiment` reads an experiment folder (``<storage>/<name>``, the folder holding the
runner's ``summary.json``) into an :class:`Experiment`; :func:`result_times` and
:func:`best_so_far` put every reported result on the wall-clock axis the plots and the strategy
comparison share.
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

    def start_time(self) -> float:
        """Unix time the experiment's trials started from: recorded by the runner, else estimated."""
        if self.summary.get("start_time") is not None:
            return float(self.summary["start_time"])
        starts = [float(h["timestamp"].iloc[0] - h["time_this_iter_s"].iloc[0])
                  for h in self.histories.values() if len(h) and {"timestamp", "time_this_iter_s"} <= set(h)]
        return min(starts) if starts else 0.0

    def ranked_trials(self) -> list[dict[str, Any]]:
        """Trials with a finite final metric, best first."""
        good = [t for t in self.summary["trials"] if not t.get("errored") and _finite(t.get("metric"))]
        return sorted(good, key=lambda t: self.sign * t["metric"])



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



def result_times(exp: Experiment) -> pd.DataFrame:
    """Every reported result of every trial with its wall-clock time since the experiment started.

    Columns ``elapsed_s``, ``trial_id``, ``value`` (the tuned metric), sorted by time. Ray stamps
    results with whole seconds (``timestamp``), so times are good to about a second.
    """
    start = exp.start_time()
    frames = []
    for trial_id, history in exp.histories.items():
        if exp.metric not in history or "timestamp" not in history:
            continue
        frames.append(pd.DataFrame({
            "elapsed_s": np.maximum(history["timestamp"].astype(float) - start, 0.0),
            "trial_id": trial_id,
            "value": history[exp.metric].astype(float),
        }))
    if not frames:
        return pd.DataFrame(columns=["elapsed_s", "trial_id", "value"])
    table = pd.concat(frames, ignore_index=True)
    table = table[np.isfinite(table["value"])]
    return table.sort_values("elapsed_s", kind="stable").reset_index(drop=True)


def best_so_far(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock times (s) and the best metric reported by any trial up to each of them."""
    table = result_times(exp)
    values = table["value"].to_numpy() * exp.sign
    return table["elapsed_s"].to_numpy(), np.minimum.accumulate(values) * exp.sign if len(values) else values

