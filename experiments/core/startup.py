"""Where an experiment's fixed cost goes: wall-clock marks from the process launch to the first result.

The runner marks the driver's phases (imports done, data prepared, Ray started, Tuner started);
:class:`FirstResultCallback` marks the first trial result the driver sees and reads the trial
side from that result: the actor's process start (its ``pid``'s creation time), where ``setup``
began and ended (the trainables report ``time_actor_start_s``, the process's age when setup began,
``time_setup_s`` and ``step_started_at``; without them the result's arrival less its
``time_this_iter_s`` stands for the step's start: Ray's own ``timestamp`` is whole seconds). The marks go
into ``summary.json`` as ``startup`` (seconds from the launch), which
``experiments/benchmarks/startup.py`` tabulates.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
from ray.tune import Callback

# The phases, in the order they happen, with what each one covers (the table's rows).
PHASES: tuple[tuple[str, str], ...] = (
    ("driver_imports", "process launch -> runner entered (Python, Ray, Tune, the library)"),
    ("prepare", "the model's driver-side prepare (data cached, baseline)"),
    ("ray_start", "ray.init until the cluster answers"),
    ("tuner_start", "Tuner construction and start"),
    ("actor_start", "Tuner start -> the first trial actor's process exists"),
    ("actor_boot", "actor process start -> setup entered (Ray worker start, importing the trainable)"),
    ("setup", "the trainable's setup (data from the cache, model, optimiser)"),
    ("first_step", "the first training step (epoch), its evaluation, and the result's trip to the driver"),
)


class StartupTimeline:
    """Absolute wall-clock marks (``time.time()``) of one driver process's start-up."""

    def __init__(self) -> None:
        # The OS knows when this process was launched: the interpreter's own start-up counts too.
        self.marks: dict[str, float] = {"launch": psutil.Process().create_time()}
        self.first_trial_id: str | None = None  # the trial whose result came first

    def mark(self, name: str, at: float | None = None) -> None:
        """Record ``name`` once (the first mark wins: a resumed or repeated phase keeps its start)."""
        self.marks.setdefault(name, time.time() if at is None else at)

    def summary(self) -> dict[str, float]:
        """Seconds from the launch to each mark, and each phase's duration (``<phase>_s``) where known."""
        launch = self.marks["launch"]
        out = {f"{name}_at_s": round(at - launch, 3) for name, at in self.marks.items() if name != "launch"}
        ends = {
            "driver_imports": ("launch", "driver_ready"),
            "prepare": ("prepare_start", "prepared"),
            "ray_start": ("ray_start", "ray_started"),
            "tuner_start": ("tuner_start", "tuner_started"),
            "actor_start": ("tuner_started", "actor_started"),
            "actor_boot": ("actor_started", "setup_started"),
            "setup": ("setup_started", "setup_done"),
            "first_step": ("setup_done", "first_result"),
        }
        for phase, (start, end) in ends.items():
            if start in self.marks and end in self.marks:
                out[f"{phase}_s"] = round(self.marks[end] - self.marks[start], 3)
        if self.first_trial_id:
            out["first_trial_id"] = self.first_trial_id
        return out


class FirstResultCallback(Callback):
    """Marks the first result the driver sees, and the trial-side times it carries."""

    def __init__(self, timeline: StartupTimeline) -> None:
        self.timeline = timeline

    def setup(self, **info: Any) -> None:
        self.timeline.mark("tuner_started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "first_result" in self.timeline.marks:
            return
        self.timeline.mark("first_result")
        arrived = self.timeline.marks["first_result"]
        step_started = result.get("step_started_at")
        if step_started is None:
            step_started = arrived - float(result.get("time_this_iter_s") or 0.0)
        self.timeline.mark("setup_done", float(step_started))
        if result.get("time_setup_s") is not None:
            self.timeline.mark("setup_started", float(step_started) - float(result["time_setup_s"]))
        try:  # the actor is alive while its first result is handled: its process knows when it started
            self.timeline.mark("actor_started", psutil.Process(int(result["pid"])).create_time())
        except (KeyError, ValueError, psutil.Error):  # another node's pid, or the actor already gone
            pass
        self.timeline.first_trial_id = getattr(trial, "trial_id", None)
