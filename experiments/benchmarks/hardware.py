"""The hardware line every benchmark prints, and the ratio arithmetic they share."""

from __future__ import annotations

import os
import platform
import statistics


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_hardware(torch_threads: int | None = None) -> str:
    """One line: CPU model, cores, load average, torch threads and the GPU if there is one."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    threads = torch_threads if torch_threads is not None else torch.get_num_threads()
    return (f"hardware: {cpu_model()}, {os.cpu_count()} cores, load average {load}, torch {torch.__version__} "
            f"with {threads} thread(s) per process, {gpu}")


def median(values: list[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


def format_ratios(values: list[float]) -> str:
    """``"1.83x (median of 1.80x 1.83x 1.91x)"``."""
    listed = " ".join(f"{v:.2f}x" for v in values)
    return f"{median(values):.2f}x (median of {listed})"
