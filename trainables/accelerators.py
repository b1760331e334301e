"""What each kind of GPU supports, known without touching one (no torch import here).

The driver learns each node's card from Ray's ``accelerator_type:<name>`` resource (Ray reads it
from the driver stack when the node starts; names as in ``ray.util.accelerators``) and checks a
forced precision before any trial; trials read the real compute capability from torch.
"""

from __future__ import annotations

PRECISIONS = ("auto", "bf16", "fp16", "fp32")

# NVIDIA compute capability by Ray accelerator type. bf16 is native from 8.0 (Ampere) on; 7.x
# cards (V100, T4: most 16 GB cluster cards) only emulate it, slowly.
COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {
    "K80": (3, 7), "P4": (6, 1), "P100": (6, 0), "V100": (7, 0), "T4": (7, 5),
    "A100": (8, 0), "A10G": (8, 6), "L4": (8, 9), "L40S": (8, 9),
    "H100": (9, 0), "H200": (9, 0), "H20": (9, 0),
    "B200": (10, 0), "B300": (10, 3), "GB200": (10, 0), "GB300": (10, 3), "RTX-PRO-6000": (12, 0),
}


def native_bf16(capability: tuple[int, int]) -> bool:
    """Whether a card of this compute capability runs bf16 natively (>= 8.0)."""
    return tuple(capability) >= (8, 0)


def node_accelerator_types(resources: dict[str, float]) -> list[str]:
    """The accelerator types a Ray node advertises (its ``accelerator_type:<name>`` resources)."""
    prefix = "accelerator_type:"
    return [key[len(prefix):] for key in resources if key.startswith(prefix)]


def precision_problem(precision: str, gpus_per_trial: float, gpu_node_types: list[list[str]]) -> str | None:
    """Why ``precision`` cannot run on these nodes, or None. ``gpu_node_types``: per GPU node, its types.

    Unknown card types are left to the trial, which reads the real compute capability.
    """
    if precision not in PRECISIONS:
        return f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}"
    if precision in ("bf16", "fp16") and gpus_per_trial <= 0:
        return f"precision {precision} needs a GPU, but trials get none (--gpus-per-trial 0): use auto or fp32"
    if precision == "bf16" and gpus_per_trial > 0:
        emulated = sorted({t for types in gpu_node_types for t in types
                           if t in COMPUTE_CAPABILITY and not native_bf16(COMPUTE_CAPABILITY[t])})
        if emulated:
            return (f"precision bf16: the cluster's {', '.join(emulated)} card(s) have no native bf16 "
                    f"(compute capability < 8.0); use auto (fp16 there) or fp16")
    return None
