"""The console of a run: one live progress line and one line per notable event, instead of Ray's tables.

:class:`ConsoleReporter` is a Ray Tune ``Callback`` (Tune's own hooks, no parsing of output). It
prints to stdout

- a progress line: trials done / running / stopped early / errored, epochs trained, the best
  metric so far and its trial, elapsed time and, once a trial has finished, an estimate of the
  time left (the epochs still expected, at the rate trained so far). On a terminal it
  is redrawn in place; elsewhere (a log file, Slurm, CI) it is printed every
  ``PROGRESS_EVERY_S`` seconds and at the end;
- one line per event: a trial started (with the hyperparameters searched), was stopped by the
  scheduler, finished, errored (with the last line of its error and its ``error.txt``),
  diverged or collapsed, or was exploited by PBT (the hyperparameters it continues with).

Ray's own output is chosen by :func:`ray_output`: quiet by default (the legacy output engine at
verbosity 0 prints nothing, where the new engine at 0 still prints boxed tables), Ray's full
tables with ``--verbose``. Files are unaffected: every trial's logs, results and errors stay
complete in the experiment folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray.tune import Callback

from experiments.core.tune_state import saved_trial_statuses, unfinished_ids

PROGRESS_EVERY_S = 15.0  # off a terminal: a progress line this often
REDRAW_EVERY_S = 0.5  # on a terminal: the live line's refresh


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ConsoleReporter(Callback):
    """Progress line and event lines of one experiment (see the module docstring).

    ``fixed`` names the config keys every trial shares (constants), left out of the "started"
    lines; ``time_budget_s`` (0: none) bounds the estimate of the time left. The reporter keeps no
    stream or Ray object, so Tune can save it with the experiment and a resumed run reports again.
    """

    def __init__(self, metric: str, mode: str, max_epochs: int, time_attr: str = "training_iteration",
                 fixed: set[str] | frozenset[str] = frozenset(), time_budget_s: float = 0.0,
                 experiment_path: str | None = None) -> None:
        self.metric, self.mode, self.max_epochs, self.time_attr = metric, mode, max_epochs, time_attr
        self.fixed = frozenset(fixed)
        self.time_budget_s = time_budget_s
        self.experiment_path = experiment_path
        self._reset()

    def _reset(self, total: int | None = None) -> None:
        self.total = total
        self.start = time.monotonic()
        self.first_trial_start: float | None = None  # the training rate is measured from here, not from Ray's start-up
        self.last_progress = float("-inf")
        self.configs: dict[str, dict[str, Any]] = {}
        self.reported: set[tuple[str, str]] = set()  # (trial_id, event) printed once per trial
        self.live = False  # a progress line is on the terminal, to be overwritten

    # -- output ------------------------------------------------------------------------------------

    @staticmethod
    def _tty() -> bool:
        return sys.stdout.isatty()

    def _write(self, line: str) -> None:
        if self.live:  # clear the live progress line first
            sys.stdout.write("\r\033[K")
            self.live = False
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def event(self, line: str) -> None:
        """Print one event line, stamped with the time since the experiment started."""
        self._write(f"[{_fmt_duration(time.monotonic() - self.start)}] {line}")

    def _progress(self, trials: list[Any], force: bool = False, unfinished: frozenset[str] | set[str] = frozenset(),
                  ended: bool = False) -> None:
        now = time.monotonic()
        every = REDRAW_EVERY_S if self._tty() else PROGRESS_EVERY_S
        if not force and now - self.last_progress < every:
            return
        self.last_progress = now
        line = self.progress_line(trials, unfinished, ended)
        if self._tty() and not force:
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
            self.live = True
        else:
            self._write(line)

    # -- what the lines say ----------------------------------------------------------------------------

    def _epochs(self, trial: Any) -> float:
        result = trial.last_result or {}
        return result.get(self.time_attr, result.get("training_iteration", 0)) or 0

    def _planned(self, trial: Any) -> float:
        """The epochs a trial was meant to train: its own ``epochs`` hyperparameter, at most max_epochs."""
        own = (trial.config or {}).get("epochs")
        return min(self.max_epochs, own) if isinstance(own, (int, float)) else self.max_epochs

    def _stopped_early(self, trial: Any) -> bool:
        result = trial.last_result or {}
        return (trial.status == "TERMINATED" and 0 < self._epochs(trial) < self._planned(trial)
                and not result.get("diverged") and not result.get("collapsed") and not result.get("oom"))

    def _score(self, trial: Any) -> Any:
        """A trial's score as summary.json defines it (core/scores.py): its best result so far."""
        best = ((getattr(trial, "metric_analysis", None) or {}).get(self.metric) or {}).get(self.mode)
        return best if best is not None else (trial.last_result or {}).get(self.metric)

    def _best(self, trials: list[Any]) -> tuple[Any, float] | None:
        sign = 1 if self.mode == "min" else -1
        # Errored, diverged, collapsed and out-of-memory trials never count, as in summary.json (core/scores.py).
        broken = ("diverged", "collapsed", "oom")
        scored = [(t, self._score(t)) for t in trials
                  if t.status != "ERROR" and not any((t.last_result or {}).get(flag) for flag in broken)]
        scored = [(t, v) for t, v in scored if _finite(v)]
        return min(scored, key=lambda tv: sign * tv[1]) if scored else None

    def progress_line(self, trials: list[Any], unfinished: frozenset[str] | set[str] = frozenset(),
                      ended: bool = False) -> str:
        """``[elapsed] trials: done/total (stopped early, errored), running | epochs | best | time left``.

        ``unfinished``: ids of the trials a stop left unfinished (in memory Tune shows them stopped; its
        saved state does not): they are not done. When a stop left some (``unfinished``) or the
        experiment ``ended`` short of its plan (the stop came between two trials), the line ends
        ``N stopped unfinished``: N counts those and the trials never started.
        """
        elapsed = time.monotonic() - self.start
        done = [t for t in trials if t.status in ("TERMINATED", "ERROR") and t.trial_id not in unfinished]
        unfinished = [t for t in trials if t.trial_id in unfinished]
        running = sum(1 for t in trials if t.status == "RUNNING")
        errored = sum(1 for t in done if t.status == "ERROR")
        early = sum(1 for t in done if self._stopped_early(t))
        total = self.total if self.total and self.total > 0 else len(trials)
        epochs = sum(self._epochs(t) for t in trials)
        parts = [f"[{_fmt_duration(elapsed)}] trials {len(done)}/{total} done "
                 f"({early} stopped early, {errored} errored), {running} running",
                 f"{_fmt_value(round(epochs, 2))} epochs"]
        best = self._best(trials)
        parts.append(f"best {self.metric} {_fmt_value(best[1])} ({best[0].trial_id})" if best
                     else f"best {self.metric} -")
        open_epochs = [self._epochs(t) for t in trials if t not in done] + [0] * max(0, total - len(trials))
        left = self._time_left(elapsed, epochs, [self._epochs(t) for t in done], open_epochs)
        if total and len(done) >= total:
            parts.append("all done")
        elif (unfinished or ended) and not running:
            parts.append(f"{total - len(done)} stopped unfinished")
        else:
            parts.append(f"~{_fmt_duration(left)} left" if left is not None else "time left ?")
        return " | ".join(parts)

    def _time_left(self, elapsed: float, epochs: float, done_epochs: list[float],
                   open_epochs: list[float]) -> float | None:
        """Seconds left: the epochs still expected, at the rate trained so far (bounded by the time budget).

        Each unfinished trial (``open_epochs``: the epochs it has, 0 for one not started) is expected
        to reach the average of the finished ones (under a stopping scheduler far fewer than
        max_epochs); before any has finished there is no estimate. The rate counts from the first
        trial's start, so Ray's and the actors' start-up do not slow it down.
        """
        budget_left = max(0.0, self.time_budget_s - elapsed) if self.time_budget_s else None
        training = time.monotonic() - (self.first_trial_start or self.start)
        if epochs <= 0 or training <= 0 or not done_epochs:
            return budget_left
        per_trial = sum(done_epochs) / len(done_epochs)
        remaining = sum(max(0.0, per_trial - e) for e in open_epochs)
        estimate = remaining / (epochs / training)
        return min(estimate, budget_left) if budget_left is not None else estimate

    def _searched(self, config: dict[str, Any]) -> str:
        shown = {k: v for k, v in config.items() if k not in self.fixed}
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in shown.items()) or "no searched hyperparameters"

    def _once(self, trial: Any, event: str) -> bool:
        key = (trial.trial_id, event)
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    # -- Tune's hooks ------------------------------------------------------------------------------------

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._reset(total_num_samples or num_samples)
        where = f"; logs in {self.experiment_path}" if self.experiment_path else ""
        self._write(f"{self.total if self.total and self.total > 0 else 'open-ended'} trials, up to "
                    f"{self.max_epochs} epochs each, tuning {self.metric} ({self.mode}){where}")

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.first_trial_start is None:
            self.first_trial_start = time.monotonic()
        if trial.trial_id not in self.configs:  # a PBT trial resumed after an exploit starts again
            self.configs[trial.trial_id] = dict(trial.config)
            self.event(f"trial {trial.trial_id} started: {self._searched(trial.config)}")

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        before = self.configs.get(trial.trial_id)
        if before is not None and dict(trial.config) != before:
            # PBT cloned a better trial's weights into this one and perturbed its hyperparameters.
            changed = [k for k in trial.config if before.get(k) != trial.config[k]]
            values = ", ".join(f"{k}={_fmt_value(trial.config[k])} (was {_fmt_value(before.get(k))})" for k in changed)
            epoch = _fmt_value(result.get(self.time_attr, result.get("training_iteration")))
            self.event(f"trial {trial.trial_id} exploited by PBT before epoch {epoch}: continues from a better "
                       f"trial's weights with {values}")
        self.configs[trial.trial_id] = dict(trial.config)
        for flag, what in (("diverged", "non-finite loss"), ("collapsed", "predicts a single class")):
            if result.get(flag) and self._once(trial, flag):
                self.event(f"trial {trial.trial_id} {flag} at epoch {_fmt_value(result.get(self.time_attr))} ({what})")
        if result.get("oom") and self._once(trial, "oom"):
            self.event(f"trial {trial.trial_id} ran out of GPU memory in {result.get('oom_where')} and ends; the "
                       f"experiment goes on ({result.get('oom_error')})")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        value = result.get(self.metric)
        score = f"{self.metric} {_fmt_value(value)}" if value is not None else "no result"
        epochs = _fmt_value(self._epochs(trial))
        if result.get("diverged") or result.get("collapsed") or result.get("oom"):
            return  # its event line is already out
        if 0 < self._epochs(trial) < self._planned(trial):
            self.event(f"trial {trial.trial_id} stopped by the scheduler at epoch {epochs}: {score}")
        else:
            self.event(f"trial {trial.trial_id} finished after {epochs} epochs: {score}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error_file = trial.error_file
        message = "see its error.txt"
        if error_file and Path(error_file).is_file():
            lines = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
            message = lines[-1].strip() if lines else message
        where = f" ({error_file})" if error_file else ""
        self.event(f"trial {trial.trial_id} errored at epoch {_fmt_value(self._epochs(trial))}: {message}{where}")

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._progress(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        unfinished: set[str] = set()
        if self.experiment_path:  # Tune saved its state before this hook: after a stop it names the unfinished
            unfinished = unfinished_ids(saved_trial_statuses(Path(self.experiment_path)))
        self._progress(trials, force=True, unfinished=unfinished, ended=True)


def plain_worker_log_prefixes() -> None:
    """No colour codes around Ray's ``(CGCNNTrainable pid=...)`` line prefixes when stdout is no terminal.

    Ray wraps them in ANSI colour codes unless ``RAY_COLOR_PREFIX=0`` (its own switch); in a file
    (a Slurm job's output, a pipe, ``> log``) those codes are noise. A user's own setting wins.
    """
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


@contextlib.contextmanager
def ray_output(verbose: bool) -> Iterator[None]:
    """Ray Tune's own console output for the block: none (default) or its full tables (``verbose``).

    Ray 2.60's new output engine (``RAY_AIR_NEW_OUTPUT``, on by default) still prints a boxed
    configuration table and a boxed result table per errored trial at ``verbose=0``; its legacy
    engine at ``verbose=0`` prints nothing, so quiet runs select it for the block (Tune reads the
    variable when ``fit`` starts). PBT's exploit log lines are left to the reporter's event line.
    """
    if verbose:
        yield
        return
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    pbt_logger = logging.getLogger("ray.tune.schedulers.pbt")
    level = pbt_logger.level
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    pbt_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pbt_logger.setLevel(level)
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous
