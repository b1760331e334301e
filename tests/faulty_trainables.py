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


OOM_AT_EPOCH = 2


class OOMOnceCGCNN(CGCNNTrainable):
    """The first trial to reach epoch OOM_AT_EPOCH runs out of GPU memory in its model's forward, once.

    The error is raised from a forward pre-hook, inside the real step (training or evaluation), as
    PyTorch's caching allocator raises it when an allocation exceeds the process's memory cap.
    """

    def _build(self, config):
        super()._build(config)
        marker = Path(self.options["cache_dir"]) / "oom-once"

        def out_of_memory(module, args):
            if self.epoch + 1 == OOM_AT_EPOCH and not marker.exists():
                marker.write_text(self.trial_id)
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

        self.model.register_forward_pre_hook(out_of_memory)


class OOMInSetupCGCNN(CGCNNTrainable):
    """Runs out of GPU memory while building its model in setup (reset_config builds normally)."""

    def setup(self, config, options=None):
        self.fail_build = True
        super().setup(config, options)

    def _build(self, config):
        if getattr(self, "fail_build", False):
            self.fail_build = False
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (injected in setup)")
        super()._build(config)
