"""Graceful stops: every stop request ends an experiment through Ray Tune's interrupt path.

Tune stops gracefully on SIGINT and SIGUSR1 only: it leaves its loop, saves the experiment
state one last time and returns the results so far, which the runner turns into
``summary.json`` and a resume command (exit status 130, see ``runner._report_outcome``).
Everything else that should end an experiment is routed to that same path:

- SIGTERM (``kill``, ``scancel``, preemption, a container runtime) and SIGHUP (a closed
  terminal) would kill the driver outright with no summary and no final save: while the
  Tuner runs they are turned into SIGUSR1 (:func:`graceful_stop_signals`).
- fail-fast: on Tune's own ``fail_fast`` the controller marks every running and pending trial
  TERMINATED and the searcher finished, so ``--resume --resume-errored`` would retry only the
  errored trial and never run the rest. :class:`TrialErrorPolicy` instead stops the experiment
  like a Ctrl-C when a trial errors for good, so the advised resume completes it as planned.
- hung trials (a deadlocked data loader or collective, a stuck file system): with
  ``trial_timeout_s`` set, :class:`TrialTimeout` ends a trial that has reported nothing for that
  long by killing its actor, so Tune records it as errored (retried from its checkpoint while
  ``max_failures`` allows) and the experiment goes on; fail-fast does not stop for it.
- the last seconds: once the Tuner has returned, the runner writes the summary and keeps the best
  model. A SIGTERM there would meet Ray's driver handler (it exits at once, status 15) and a
  SIGUSR1 (the batch script's time-limit warning) its default action (the process dies): both,
  and SIGHUP, are held while that runs (:func:`stop_signals_held`), so the summary is written and
  the run ends with the status it earned; only the analysis report (plots, checks) is skipped.
- casualties of the stop: ``scancel`` and preemption send SIGTERM to every process of the job,
  Ray's too, so trials whose actors die before Tune leaves its loop are recorded as errored.
  :class:`TrialErrorPolicy` remembers which trials errored after a stop was requested
  (:func:`errored_while_stopping`): they were interrupted, not broken, and the resume retries them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

# Tune's interrupt signal (ray/tune/tune.py _setup_signal_catching installs its handler while
# Tuner.fit runs); SIGINT works too but a second SIGINT skips Tune's final save.
TUNE_STOP_SIGNAL = signal.SIGUSR1
# The signals that, while the Tuner runs, mean "stop gracefully" as well.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


_stop_requested_at: float | None = None
_held_signal: str | None = None  # a stop signal that came while the summary was written (stop_signals_held)
_errored_while_stopping: set[str] = set()
_timed_out: dict[str, float] = {}  # trial id -> the timeout that ended it
_planned_trials: int | None = None  # the trials the search plans in all (Tune's total_num_samples)


def stop_requested() -> bool:
    """Whether SIGTERM or SIGHUP asked this process to stop while its Tuner ran."""
    return _stop_requested_at is not None


def planned_trials() -> int | None:
    """How many trials the running (or last) Tuner's search plans in all; None when open-ended or unknown."""
    return _planned_trials


def errored_while_stopping() -> set[str]:
    """Ids of trials that errored after a stop was requested (their actors died with the cluster)."""
    return set(_errored_while_stopping)


def request_stop() -> None:
    """Ask the running Tuner of this process to stop gracefully (as Ctrl-C would)."""
    os.kill(os.getpid(), TUNE_STOP_SIGNAL)


def _forward(signum: int, _frame: Any) -> None:
    global _stop_requested_at
    _stop_requested_at = _stop_requested_at or time.time()
    print(f"Received {signal.Signals(signum).name}: stopping the experiment gracefully "
          "(saving Tune's state and the summary)", flush=True)
    request_stop()


@contextmanager
def graceful_stop_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP stop the Tuner gracefully instead of killing the process.

    Use it around ``Tuner.fit()`` (in the main thread: Python delivers signals there). Repeated
    signals are harmless: each one only sets Tune's stop flag again. Before and after the block
    the previous handlers apply (before the Tuner starts there is nothing to save).
    """
    global _stop_requested_at, _planned_trials
    _stop_requested_at = None
    _planned_trials = None
    _errored_while_stopping.clear()
    _timed_out.clear()
    with _handled(FORWARDED_SIGNALS, _forward):
        yield


@contextmanager
def _handled(signals: tuple[signal.Signals, ...], handler: Any) -> Iterator[None]:
    """``handler`` for ``signals`` while the block runs; the previous handlers before and after it."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# The signals that mean "stop" to a driver whose Tuner has returned (SIGINT stays a KeyboardInterrupt).
HELD_SIGNALS = (*FORWARDED_SIGNALS, TUNE_STOP_SIGNAL)


def _hold(signum: int, _frame: Any) -> None:
    global _held_signal
    if _held_signal is None:
        print(f"Received {signal.Signals(signum).name}: the trials are over; writing the summary, then stopping",
              flush=True)
    _held_signal = signal.Signals(signum).name


def held_stop_signal() -> str | None:
    """The name of the stop signal :func:`stop_signals_held` held in its last block; None when none came."""
    return _held_signal


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """While the block runs, SIGTERM, SIGHUP and SIGUSR1 are noted instead of ending the process.

    Use it around what the runner does after ``Tuner.fit()`` returned (the summary, the best
    model): Tune's handlers are gone by then, Ray's driver handler exits at once on SIGTERM and
    SIGUSR1's default action kills the process, either of which would lose the summary of a
    finished experiment. :func:`held_stop_signal` says whether one came (the runner then skips what
    can be made later). Before and after the block the previous handlers apply.
    """
    global _held_signal
    _held_signal = None
    with _handled(HELD_SIGNALS, _hold):
        yield


class TrialErrorPolicy(Callback):
    """What a trial that errors for good (no retries left, ``max_failures``) does to the experiment.

    With ``fail_fast`` the first such trial stops the experiment as a Ctrl-C would (running trials
    saved as unfinished, pending ones kept, the searcher not finished), so ``--resume
    --resume-errored`` retries the failed trial and runs everything else as planned. A trial that
    errors after a stop signal is only recorded (see :func:`errored_while_stopping`).
    """

    def __init__(self, fail_fast: bool):
        self.fail_fast = fail_fast

    def setup(self, **info: Any) -> None:
        # Trials a stop prevents from starting are missing from the saved state: the runner compares
        # the trials there with this total (runner.trials_not_started).
        global _planned_trials
        total = info.get("total_num_samples")
        _planned_trials = int(total) if total and total > 0 else None

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if stop_requested():
            _errored_while_stopping.add(trial.trial_id)
        elif trial.trial_id in _timed_out:
            print(f"Trial {trial.trial_id} ended as errored after its timeout; the experiment goes on", flush=True)
        elif self.fail_fast:
            print(f"Trial {trial.trial_id} failed: stopping the experiment (fail-fast); "
                  "the other trials are saved unfinished", flush=True)
            request_stop()


def kill_trial_actor(trial: Any) -> bool:
    """Kill the Ray actor that runs ``trial``; False when it has none (not started, or already gone).

    The one private Ray Tune access of the runner: Tune has no public call to end one running
    trial from outside it, and ``Trial.temporary_state.ray_actor`` is where Tune 2.60 keeps the
    actor handle (tests/test_reliability.py checks it on a real Ray). ``ray.kill`` itself is public;
    Tune then sees the actor die, as on a node failure, and handles the trial as failed.
    """
    import ray

    actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
    if actor is None:
        return False
    ray.kill(actor, no_restart=True)
    return True


class TrialTimeout(Callback):
    """Ends a trial that has reported no result for ``timeout_s`` seconds while RUNNING.

    The clock of a trial starts when the controller first sees it RUNNING (again after a pause)
    and restarts at each of its results, so the timeout must cover a trial's start (the actor's
    start-up and ``setup``) and its slowest epoch. Checked at each step of Tune's loop.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._since: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Saved with the Tuner (tuner.pkl): a resumed driver starts every clock afresh.
        return {"timeout_s": self.timeout_s, "_since": {}}

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        from ray.tune.experiment import Trial

        now = time.monotonic()
        for trial in trials:
            if trial.status != Trial.RUNNING:
                self._since.pop(trial.trial_id, None)
                continue
            started = self._since.setdefault(trial.trial_id, now)
            if now - started > self.timeout_s and trial.trial_id not in _timed_out and not stop_requested():
                _timed_out[trial.trial_id] = self.timeout_s
                print(f"Trial {trial.trial_id} reported nothing for {self.timeout_s:g} s (trial timeout): "
                      "ending it as errored", flush=True)
                kill_trial_actor(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._since[trial.trial_id] = time.monotonic()
        _timed_out.pop(trial.trial_id, None)  # a retry that reports again is alive


def mark_interrupted_trials(summary: dict[str, Any]) -> None:
    """In ``summary``, mark the trials the trial timeout ended (``timed_out``, ``num_timed_out``), and
    count trials that errored while the experiment stopped as unfinished, not errored.

    Their resume retries them (``--resume-errored`` is added to the resume command): they did not fail,
    the stop signal ended their actors.
    """
    for trial in summary["trials"]:
        if trial["errored"] and trial["trial_id"] in _timed_out:
            trial["timed_out"] = True
            trial["error"] = f"reported nothing for {_timed_out[trial['trial_id']]:g} s: ended by the trial timeout"
    summary["num_timed_out"] = sum(1 for t in summary["trials"] if t.get("timed_out"))
    ids = errored_while_stopping()
    hit = [t for t in summary["trials"] if t["errored"] and t["trial_id"] in ids]
    for trial in hit:
        trial["errored"], trial["interrupted"] = False, True
    if hit:
        summary["num_errored"] -= len(hit)
        summary["num_unfinished"] = summary.get("num_unfinished", 0) + len(hit)
        summary["resume_command"] += " --resume-errored"
