"""Out-of-memory errors end one trial, not the experiment.

On a packed GPU a large configuration (CGCNN with 40 convolutions at batch 238, roberta-large at
batch 64) can exceed its trial's memory share. Uncaught, ``torch.OutOfMemoryError`` errors the
trial and fail-fast ends the whole experiment. With :func:`oom_guarded` on ``setup`` and ``step``,
such a trial instead frees its memory and ends with one last result holding ``oom: True``, its
metrics as NaN (it never ranks; the searcher wrapper tells model-based searchers the worst value
seen so far) and ``oom_where`` / ``oom_error`` saying where and what. An error in ``setup`` is
reported by the trial's first ``step``, since ``setup`` cannot report a result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from ray import tune

from trainables.device import free_gpu_memory

OutOfMemoryError: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def oom_guarded(method: Callable) -> Callable:
    """Decorator for a trainable's ``setup`` and ``step`` (see the module docstring).

    The trainable provides ``oom_result(self) -> dict``: the fields of its usual result that a trial
    ending now reports (its metrics as NaN, its epoch counters; it must work when ``setup`` stopped
    half-way), and ``release_training_state(self)``,
    which drops what a failed step may still hold (optimiser state, gradients).
    """
    is_setup = method.__name__ == "setup"

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_setup and getattr(self, "oom_in_setup", None):
            return _ended_by_oom(self, "setup", self.oom_in_setup)
        try:
            return method(self, *args, **kwargs)
        except OutOfMemoryError as err:
            if is_setup:
                self.oom_in_setup = _first_line(err)
                free_gpu_memory(getattr(self, "device", torch.device("cpu")))
                return None
            return _ended_by_oom(self, "step", _first_line(err))

    return guarded


def _ended_by_oom(self: Any, where: str, error: str) -> dict[str, Any]:
    if where == "step":  # (setup freed its memory when it failed)
        self.release_training_state()  # optimiser state and gradients, then the cached blocks
    fields = self.oom_result()
    print(f"{type(self).__name__}: out of GPU memory in {where}; this trial ends (oom): {error}", flush=True)
    return {**fields, "oom": True, "oom_where": where, "oom_error": error, "diverged": False,
            "collapsed": False, tune.result.DONE: True}


def setup_completed(trainable: Any) -> bool:
    """False for an actor whose ``setup`` ran out of memory: Ray must not reuse it (reset_config)."""
    return not getattr(trainable, "oom_in_setup", None)
