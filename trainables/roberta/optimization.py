"""The optimiser and its schedule: AdamW over the layer-wise parameter groups, linear warmup then
linear decay to 0 over the trial's ``epochs`` (the experiment's ``max_epochs`` where the config has
no ``epochs``), and carrying both over to another trial's hyperparameters when PBT restores a
donor's checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.roberta.layerwise import group_lrs, parameter_groups
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


@dataclass(frozen=True)
class LinearSchedule:
    """Linear warmup over ``warmup_steps`` optimiser steps, then linear decay to 0 at ``total_steps``.

    The same shape as transformers' ``get_linear_schedule_with_warmup``; here a picklable object
    whose factor the trainable also reads to report the current lr.
    """

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        """The lr multiplier after ``step`` optimiser steps."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))


def linear_schedule(settings: FineTuneSettings, steps_per_epoch: int) -> LinearSchedule:
    """The schedule of ``settings``: ``epochs`` long, warmup of ``warmup_steps`` or ``warmup_ratio`` of it."""
    total_steps = steps_per_epoch * settings.epochs
    return LinearSchedule(settings.warmup_steps or round(settings.warmup_ratio * total_steps), total_steps)


def build_schedule(optimizer: torch.optim.Optimizer, schedule: LinearSchedule,
                   steps_done: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """``schedule`` as a LambdaLR over ``optimizer``, positioned after ``steps_done`` optimiser steps.

    With ``steps_done`` > 0 every parameter group needs its ``initial_lr`` (the base lr the
    schedule multiplies): torch's documented way to resume a schedule (``last_epoch``).
    """
    # LambdaLR's constructor takes one step: last_epoch = steps_done - 1 leaves it at steps_done.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=steps_done - 1)


def resume_schedule(model: torch.nn.Module, optimizer: torch.optim.Optimizer, settings: FineTuneSettings,
                    schedule: LinearSchedule, steps_done: int) -> torch.optim.lr_scheduler.LambdaLR:
    """After loading a checkpoint's optimiser state: this trial's hyperparameters, its schedule at ``steps_done``.

    PBT restores a donor's checkpoint into a trial whose config it has just mutated: AdamW's
    moments come from the donor, its hyperparameters (base lrs, weight decay, betas, eps) and the
    schedule from this trial, at the donor's point in training. The schedule is rebuilt, not edited.
    """
    lrs = group_lrs(model, settings)
    for group in optimizer.param_groups:
        group["initial_lr"] = lrs[group["name"].split("/")[0]]
        group["weight_decay"] = settings.weight_decay if group["name"].endswith("/decay") else 0.0
        group["betas"], group["eps"] = (settings.adam_beta1, settings.adam_beta2), settings.adam_epsilon
    return build_schedule(optimizer, schedule, steps_done)
