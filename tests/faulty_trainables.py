"""CGCNN trainables with injected faults, for the reliability tests.

They are the real CGCNNTrainable (real data, model, checkpoints) with one fault added, so the
runner's recovery paths are exercised end to end. Registered as extra models by the tests.
"""

from pathlib import Path

import torch

from trainables.cgcnn import CGCNNTrainable

FAIL_AT_EPOCH = 3


class FailOnceCGCNN(CGCNNTrainable):
    """Crashes once per trial when it is about to train epoch FAIL_AT_EPOCH."""

    def step(self):
        marker = Path(self.options["cache_dir"]) / f"crashed-{self.trial_id}"
        if self.epoch + 1 == FAIL_AT_EPOCH and not marker.exists():
            marker.touch()
            raise RuntimeError(f"injected crash at epoch {FAIL_AT_EPOCH}")
        return super().step()


class PoisonedCGCNN(CGCNNTrainable):
    """Trials with lr above 0.01 get NaN weights after their first epoch, so their loss really diverges."""

    def step(self):
        if self.epoch == 1 and self.config["lr"] > 0.01:
            with torch.no_grad():
                for parameter in self.model.parameters():
                    parameter.fill_(float("nan"))
        return super().step()


class FailOnceInAllCGCNN(CGCNNTrainable):
    """The first trial to reach epoch FAIL_AT_EPOCH crashes there, once in the whole experiment."""

    def step(self):
        marker = Path(self.options["cache_dir"]) / "crashed-once"
        if self.epoch + 1 == FAIL_AT_EPOCH and not marker.exists():
            marker.touch()
            raise RuntimeError(f"injected crash at epoch {FAIL_AT_EPOCH}")
        return super().step()


HANG_AT_EPOCH = 2


class HangOnceCGCNN(CGCNNTrainable):
    """The first trial to reach epoch HANG_AT_EPOCH hangs there (as on a deadlocked data loader), once."""

    def step(self):
        import time

        marker = Path(self.options["cache_dir"]) / "hung-once"
        if self.epoch + 1 == HANG_AT_EPOCH and not marker.exists():
            marker.write_text(self.trial_id)
            time.sleep(600)
        return super().step()
