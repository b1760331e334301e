"""The one device-selection helper every trainable uses, and the GPU policies that go with it.

- **Device**: inside a Ray actor the device is what Ray assigned to the trial (its accelerator ids),
  never what CUDA happens to show. Ray 2.60 no longer blanks ``CUDA_VISIBLE_DEVICES`` for an actor
  given zero GPUs (ray issue 54868), so a ``--gpus-per-trial 0`` trial on a GPU node would otherwise
  land on GPU 0, unaccounted for by Ray's scheduler. Outside Ray (the in-process floor of the
  benchmarks, the batch-size probe, tests) the caller names the device (option ``device``);
  without one the trainable trains on the CPU and its device line says so.
- **Memory share**: a trial holding a fraction of a card caps its process at that fraction less
  :data:`CONTEXT_RESERVE_BYTES` (:func:`cap_gpu_memory`), so its largest configuration runs out of
  memory itself instead of taking memory its neighbours hold.
- **Precision** (:func:`choose_precision`): bf16 autocast where bf16 is native (compute capability
  >= 8.0), fp16 autocast with a gradient scaler on older cards (V100, T4), fp32 on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from trainables.accelerators import PRECISIONS, native_bf16
from trainables.errors import ModelConfigError

# set_per_process_memory_fraction caps only PyTorch's caching allocator. Each process also holds a
# CUDA context and cuBLAS/cuDNN workspaces outside it (typically 0.3-0.8 GiB on current cards and
# drivers); with four trials packed on a card each one subtracts its own from its own share, so the
# four caps plus the four contexts stay within the card.
CONTEXT_RESERVE_BYTES = 1 << 30


@dataclass(frozen=True)
class TrialDevice:
    """Where a trial trains: ``device``, the share of the card it holds and how that was decided."""

    device: torch.device
    gpu_share: float  # share of one card (0 on the CPU, 1 for a whole card, 2 for two cards)
    source: str  # e.g. "Ray assigned GPU 3", "Ray assigned no GPU", "requested outside Ray"


def _ray_actor_context() -> object | None:
    """Ray's runtime context when this code runs inside a Ray actor (a trial), else None."""
    import ray

    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return context if context.get_actor_id() is not None else None


def trial_device(requested: str | None = None, gpu_share: float | None = None) -> TrialDevice:
    """The trial's device, from Ray's assignment inside a Ray actor, else from ``requested``.

    ``requested`` ("cpu", "cuda", "cuda:1") is for callers outside Ray: the batch-size probe and the
    in-process benchmarks say which device they measure; ``gpu_share`` is then their share of the
    card (default 1). Inside an actor Ray's accelerator ids decide: no GPU assigned means the CPU, and
    the node's GPUs are hidden from this process (``CUDA_VISIBLE_DEVICES`` emptied before CUDA starts)
    so nothing the trial loads can touch them.
    """
    context = None if requested else _ray_actor_context()
    if context is not None:
        ids = list(context.get_accelerator_ids().get("GPU", []))
        if not ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
            return TrialDevice(torch.device("cpu"), 0.0, "Ray assigned no GPU")
        share = float(context.get_assigned_resources().get("GPU", len(ids)))
        # Ray set CUDA_VISIBLE_DEVICES to exactly these ids, so the first visible device is the trial's.
        return TrialDevice(torch.device("cuda:0"), share, f"Ray assigned GPU {','.join(ids)}")
    if not requested:
        return TrialDevice(torch.device("cpu"), 0.0, "outside Ray, no device requested")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ModelConfigError(f"device {requested!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelConfigError(f"device {requested!r} requested, but torch sees no CUDA device")
        device = torch.device("cuda", device.index or 0)
        return TrialDevice(device, 1.0 if gpu_share is None else float(gpu_share), "requested outside Ray")
    return TrialDevice(device, 0.0, "requested outside Ray")


def cap_gpu_memory(placed: TrialDevice) -> str:
    """Cap this process's GPU memory at the trial's share of the card; a few words for the device line.

    A whole card (share >= 1) or the CPU gets no cap. Allocations past the cap raise
    ``torch.OutOfMemoryError`` in this trial, which the trainable turns into an ``oom`` result.
    """
    if placed.device.type != "cuda" or placed.gpu_share >= 1:
        return "" if placed.device.type != "cuda" else "whole card"
    total = torch.cuda.get_device_properties(placed.device).total_memory
    fraction = placed.gpu_share - CONTEXT_RESERVE_BYTES / total
    if fraction <= 0:
        raise ModelConfigError(
            f"a share of {placed.gpu_share:g} of a {total / 2**30:.1f} GiB card leaves nothing after the "
            f"{CONTEXT_RESERVE_BYTES / 2**30:g} GiB a CUDA context needs; raise --gpus-per-trial")
    torch.cuda.set_per_process_memory_fraction(fraction, placed.device)
    return f"memory cap {fraction * total / 2**30:.1f} GiB ({placed.gpu_share:g} of {total / 2**30:.0f} GiB)"


def choose_precision(requested: str, device: torch.device) -> str:
    """The precision a trial trains in: "bf16", "fp16" or "fp32" (autocast for the first two).

    ``auto``: bf16 where the card runs it natively (compute capability >= 8.0: A100, H100, L4...),
    fp16 with a gradient scaler on older cards (V100, T4, where ``torch.cuda.is_bf16_supported()``
    is true only by emulation), fp32 on the CPU. A forced precision the device cannot run is a
    ModelConfigError (the driver checks it earlier, from Ray's accelerator types).
    """
    if requested not in PRECISIONS:
        raise ModelConfigError(f"precision {requested!r}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ModelConfigError(f"precision {requested} needs a GPU, and this trial runs on the CPU "
                                   "(--gpus-per-trial 0): use auto or fp32")
        return "fp32"
    capability = torch.cuda.get_device_capability(device)
    if requested == "auto":
        return "bf16" if native_bf16(capability) else "fp16"
    if requested == "bf16" and not native_bf16(capability):
        raise ModelConfigError(f"precision bf16: {torch.cuda.get_device_name(device)} (compute capability "
                               f"{capability[0]}.{capability[1]}) has no native bf16; use auto or fp16")
    return requested


def free_gpu_memory(device: torch.device) -> None:
    """Return cached blocks to the driver (between reused trials, after an out-of-memory error)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def describe(device: torch.device) -> str:
    """A one-line description for the log line each trainable prints in ``setup``."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
