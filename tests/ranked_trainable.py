"""A tiny deterministic trainable for the scheduler-memory tests (tests/test_scheduler_state.py).

Its score is ``quality * iteration``. Two hooks make the order of events deterministic on a busy
machine: a first step waits until the trials ranked below it have had their result handled by the
driver (``<markers>/reported-<rank>``, written by the test's callback), and a step at ``hold_at``
waits (up to ``hold_s``) for ``<markers>/go``, so a stop requested before it lands at a known
iteration. Ray's workers import it by name (the test puts tests/ on their PYTHONPATH).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ray import tune


class RankedTrainable(tune.Trainable):
    def setup(self, config: dict) -> None:
        # PBT gives each trial a "quality" (and changes it); else it is the rank's entry of "qualities".
        self.quality = float(config.get("quality", config["qualities"][config["rank"]]))
        self.markers = Path(config["markers"])

    def step(self) -> dict:
        iteration = self.iteration + 1  # the result Tune numbers training_iteration
        if iteration == 1:
            self._wait_for(lambda: all((self.markers / f"reported-{r}").exists() for r in range(self.config["rank"])),
                           timeout_s=60)
        if iteration == self.config.get("hold_at"):
            self._wait_for(lambda: (self.markers / "go").exists(), timeout_s=self.config.get("hold_s", 3))
        time.sleep(self.config.get("step_s", 0.05))
        return {"score": self.quality * iteration}

    @staticmethod
    def _wait_for(ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # Tune restores the iteration count itself; the score needs nothing else.
        (Path(checkpoint_dir) / "state.json").write_text(json.dumps({"quality": self.quality}))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        json.loads((Path(checkpoint_dir) / "state.json").read_text())  # a checkpoint that is there and readable

    def reset_config(self, new_config: dict) -> bool:
        self.quality = float(new_config.get("quality", new_config["qualities"][new_config["rank"]]))
        return True
