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
_errored_while_stopping: set[str] = set()


def stop_requested() -> bool:
    """Whether SIGTERM or SIGHUP asked this process to stop while its Tuner ran."""
    return _stop_requested_at is not None


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
    global _stop_requested_at
    _stop_requested_at = None
    _errored_while_stopping.clear()
    previous = {sig: signal.signal(sig, _forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class TrialErrorPolicy(Callback):
    """What a trial that errors for good (no retries left, ``max_failures``) does to the experiment.

    With ``fail_fast`` the first such trial stops the experiment as a Ctrl-C would (running trials
    saved as unfinished, pending ones kept, the searcher not finished), so ``--resume
    --resume-errored`` retries the failed trial and runs everything else as planned. A trial that
    errors after a stop signal is only recorded (see :func:`errored_while_stopping`).
    """

    def __init__(self, fail_fast: bool):
        self.fail_fast = fail_fast

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if stop_requested():
            _errored_while_stopping.add(trial.trial_id)
        elif self.fail_fast:
            print(f"Trial {trial.trial_id} failed: stopping the experiment (fail-fast); "
                  "the other trials are saved unfinished", flush=True)
            request_stop()


def mark_interrupted_trials(summary: dict[str, Any]) -> None:
    """In ``summary``, count trials that errored while the experiment stopped as unfinished, not errored.

    Their resume retries them (``--resume-errored`` is added to the resume command): they did not fail,
    the stop signal ended their actors.
    """
    ids = errored_while_stopping()
    hit = [t for t in summary["trials"] if t["errored"] and t["trial_id"] in ids]
    for trial in hit:
        trial["errored"], trial["interrupted"] = False, True
    if hit:
        summary["num_errored"] -= len(hit)
        summary["num_unfinished"] = summary.get("num_unfinished", 0) + len(hit)
        summary["resume_command"] += " --resume-errored"
