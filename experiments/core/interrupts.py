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
  errored trial and never run the rest. :class:`StopOnTrialError` instead stops the experiment
  like a Ctrl-C when a trial errors for good, so the advised resume completes it as planned.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

# Tune's interrupt signal (ray/tune/tune.py _setup_signal_catching installs its handler while
# Tuner.fit runs); SIGINT works too but a second SIGINT skips Tune's final save.
TUNE_STOP_SIGNAL = signal.SIGUSR1
# The signals that, while the Tuner runs, mean "stop gracefully" as well.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def request_stop() -> None:
    """Ask the running Tuner of this process to stop gracefully (as Ctrl-C would)."""
    os.kill(os.getpid(), TUNE_STOP_SIGNAL)


def _forward(signum: int, _frame: Any) -> None:
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
    previous = {sig: signal.signal(sig, _forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopOnTrialError(Callback):
    """Fail-fast through the interrupt path: the first trial that errors for good stops the experiment.

    ``on_trial_error`` runs only once a trial has no retries left (``max_failures``); the other
    trials then stop as on a Ctrl-C (running ones saved as unfinished, pending ones kept, the
    searcher not finished), so ``--resume --resume-errored`` retries the failed trial and runs
    everything else as planned.
    """

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"Trial {trial.trial_id} failed: stopping the experiment (fail-fast); "
              "the other trials are saved unfinished", flush=True)
        request_stop()
