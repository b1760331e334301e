"""The one device-selection helper every trainable uses."""

from __future__ import annotations

import torch


def select_device() -> torch.device:
    """The GPU Ray assigned to this trial if any, else the CPU.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for a trial that asked for GPUs (fractional ones
    included), so ``cuda:0`` is always the trial's own GPU; a trial that asked for none sees no
    GPU and trains on the CPU.
    """
    return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")


def describe(device: torch.device) -> str:
    """A one-line description for the log line each trainable prints in ``setup``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
