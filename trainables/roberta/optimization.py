"""The optimiser and its schedule: AdamW over the layer-wise parameter groups, linear warmup then
linear decay, and carrying both over to another trial's hyperparameters when PBT restores a
donor's checkpoint."""

from __future__ import annotations

from typing import Any

import torch

from trainables.roberta.layerwise import layer_lrs, parameter_groups
from trainables.roberta.settings import FineTuneSettings


def build_optimizer(model: torch.nn.Module, settings: FineTuneSettings, fused: bool) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` (fused, one kernel for the whole update, where ``fused``)."""
    return torch.optim.AdamW(
        parameter_groups(model, settings),
        lr=settings.lr,
        betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_epsilon,
        fused=fused or None,
    )


def build_schedule(optimizer: torch.optim.Optimizer, settings: FineTuneSettings, steps_per_epoch: int) -> Any:
    """Linear warmup (``warmup_steps``, or ``warmup_ratio`` of all steps), then linear decay to 0 at the last step."""
    from transformers import get_linear_schedule_with_warmup

    total_steps = steps_per_epoch * settings.epochs
    warmup = settings.warmup_steps or round(settings.warmup_ratio * total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def continue_schedule(optimizer: torch.optim.Optimizer, scheduler: Any, settings: FineTuneSettings,
                      steps: int) -> None:
    """After loading a checkpoint: continue at step ``steps`` with ``settings``' hyperparameters.

    PBT restores a donor's checkpoint into a trial whose config it has just mutated: the
    optimiser continues with this trial's hyperparameters, at the donor's point in training.
    ``LambdaLR`` keeps its base lrs and last lrs in attributes (``base_lrs``, ``last_epoch``,
    ``_last_lr``, the last one private): this is the one function that sets them.
    """
    group_lrs = layer_lrs(settings)
    for group in optimizer.param_groups:
        group["initial_lr"] = group_lrs[group["name"].split("/")[0]]
        group["weight_decay"] = settings.weight_decay if group["name"].endswith("/decay") else 0.0
        group["betas"], group["eps"] = (settings.adam_beta1, settings.adam_beta2), settings.adam_epsilon
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    scheduler.last_epoch = steps
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(steps)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
