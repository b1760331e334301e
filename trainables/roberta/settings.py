"""RoBERTa/RTE settings: the trial's hyperparameters (validated into :class:`FineTuneSettings`)
and the model options a run needs (:func:`check_options`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trainables.accelerators import PRECISIONS
from trainables.errors import ModelConfigError

# Name -> default; None marks a required hyperparameter (``classifier_lr`` defaults to ``lr``,
# ``epochs`` to the experiment's ``max_epochs``).
HYPERPARAMETERS: dict[str, Any] = {
    "lr": None,
    "batch_size": 32,
    "epochs": None,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "warmup_ratio": 0.0,
    "seed": 0,
    "max_grad_norm": 1.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "layer_groups": 1,
    "layer_lr_decay": 1.0,
    "classifier_lr": None,
}
# Trial length and schedule length of a config without ``epochs`` when the runner passes no
# ``max_epochs`` either (the trainable used on its own).
DEFAULT_EPOCHS = 3

# Per-group learning rates, named as in the Simple Transformers RoBERTa-large write-up:
# ``layer_<start>-<end>`` is the lr of encoder layers start..end-1 (the groups ``layer_groups``
# cuts the model's depth into), ``params_<name>`` that of one parameter (``named_parameters``'
# name, e.g. ``classifier.out_proj.weight``).
LAYER_GROUP_LR = re.compile(r"layer_(\d+)-(\d+)")
PARAMETER_LR = re.compile(r"params_(.+)")
HYPERPARAMETER_PATTERNS: dict[str, re.Pattern[str]] = {
    "layer_<start>-<end>": LAYER_GROUP_LR,
    "params_<parameter name>": PARAMETER_LR,
}


def unknown_hyperparameters(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that are neither a fixed hyperparameter nor a per-group lr (sorted)."""
    return sorted(
        name
        for name in set(names)
        if name not in HYPERPARAMETERS and not any(p.fullmatch(name) for p in HYPERPARAMETER_PATTERNS.values())
    )


@dataclass(frozen=True)
class FineTuneSettings:
    """One trial's hyperparameters, validated, with defaults filled in.

    ``layer_group_lrs`` holds the independent lrs of the encoder layer groups as (start, end, lr),
    bottom to top (empty: the groups follow ``layer_lr_decay``); ``parameter_lrs`` the lr of each
    parameter named by a ``params_<name>`` hyperparameter.
    """

    lr: float
    batch_size: int
    epochs: int
    weight_decay: float
    warmup_steps: int
    warmup_ratio: float
    seed: int
    max_grad_norm: float
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    layer_groups: int
    layer_lr_decay: float
    classifier_lr: float
    layer_group_lrs: tuple[tuple[int, int, float], ...] = ()
    parameter_lrs: tuple[tuple[str, float], ...] = ()


def _group_lrs(config: dict) -> tuple[tuple[tuple[int, int, float], ...], tuple[tuple[str, float], ...]]:
    """The ``layer_<start>-<end>`` and ``params_<name>`` lrs of ``config``, checked to tile the layers from 0."""
    layers, params = [], []
    for name, value in config.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            if LAYER_GROUP_LR.fullmatch(name) or PARAMETER_LR.fullmatch(name):
                raise ValueError(f"hyperparameter {name} is a learning rate: a number >= 0, got {value!r}")
            continue
        if match := LAYER_GROUP_LR.fullmatch(name):
            layers.append((int(match[1]), int(match[2]), float(value)))
        elif match := PARAMETER_LR.fullmatch(name):
            params.append((match[1], float(value)))
    layers.sort()
    end = 0
    for start, stop, _ in layers:
        if start != end or stop <= start:
            names = ", ".join(f"layer_{a}-{b}" for a, b, _ in layers)
            raise ValueError(
                f"the layer groups {names} must cover the encoder layers from 0 without gaps or overlaps "
                "(layer_<start>-<end>: layers start..end-1)"
            )
        end = stop
    return tuple(layers), tuple(sorted(params))


def parse_settings(config: dict, default_epochs: int = DEFAULT_EPOCHS) -> FineTuneSettings:
    """Validate a trial config into :class:`FineTuneSettings` (ValueError naming the bad hyperparameter).

    ``default_epochs`` is the trial (and schedule) length of a config without ``epochs``: the
    experiment's ``max_epochs``, so that under ASHA/HyperBand every trial follows one schedule
    and a rung compares trials at the same point of it.
    """
    unknown = unknown_hyperparameters(config)
    if unknown:
        known = [*HYPERPARAMETERS, *HYPERPARAMETER_PATTERNS]
        raise ValueError(f"unknown RoBERTa/RTE hyperparameter(s) {unknown}; known: {known}")
    if config.get("lr") is None:
        raise ValueError("the trial config lacks required hyperparameter(s) ['lr']")
    if "warmup_steps" in config and "warmup_ratio" in config:
        raise ValueError("give warmup_steps or warmup_ratio, not both")
    layer_group_lrs, parameter_lrs = _group_lrs(config)
    if layer_group_lrs and "layer_lr_decay" in config:
        raise ValueError("give layer_lr_decay or independent layer_<start>-<end> lrs, not both")
    if layer_group_lrs and config.get("layer_groups", len(layer_group_lrs)) != len(layer_group_lrs):
        raise ValueError(
            f"layer_groups is {config['layer_groups']} but the config names {len(layer_group_lrs)} layer groups"
        )
    values = {name: config.get(name, default) for name, default in HYPERPARAMETERS.items()}
    if values["classifier_lr"] is None:
        values["classifier_lr"] = values["lr"]
    if values["epochs"] is None:
        values["epochs"] = default_epochs
    if layer_group_lrs:
        values["layer_groups"] = len(layer_group_lrs)
    for name in ("batch_size", "epochs", "warmup_steps", "seed", "layer_groups"):
        if float(values[name]) != int(values[name]):
            raise ValueError(f"hyperparameter {name} must be a whole number, got {values[name]!r}")
        values[name] = int(values[name])
    settings = FineTuneSettings(
        **{k: (v if isinstance(v, int) else float(v)) for k, v in values.items()},
        layer_group_lrs=layer_group_lrs,
        parameter_lrs=parameter_lrs,
    )
    if settings.batch_size < 1 or settings.epochs < 1 or settings.layer_groups < 1:
        raise ValueError("batch_size, epochs and layer_groups must be at least 1")
    if (
        settings.lr < 0
        or settings.classifier_lr < 0
        or settings.weight_decay < 0
        or settings.warmup_steps < 0
    ):
        raise ValueError("lr, classifier_lr, weight_decay and warmup_steps must not be negative")
    if not 0 <= settings.warmup_ratio <= 1 or not 0 < settings.layer_lr_decay <= 1:
        raise ValueError("warmup_ratio must lie in [0, 1] and layer_lr_decay in (0, 1]")
    return settings
def check_options(options: dict) -> None:
    """The model options (``ModelSpec.options`` of ``roberta_rte``) a run can start with; ModelConfigError if not."""
    for name, low in (
        ("max_seq_length", 8),
        ("eval_every_steps", 0),
        ("max_train_examples", 0),
        ("data_seed", 0),
        ("gradient_accumulation_steps", 1),
    ):
        value = options.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelConfigError(f"{name} must be a whole number of at least {low}, got {value!r}")
    if options.get("precision", "auto") not in PRECISIONS:
        raise ModelConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {options.get('precision')!r}")
    if not isinstance(options.get("torch_compile", False), bool):
        raise ModelConfigError(f"torch_compile must be true or false, got {options.get('torch_compile')!r}")
    if not isinstance(options.get("model_name_or_path"), str) or not options["model_name_or_path"]:
        raise ModelConfigError(
            f"model_name_or_path must be a hub name or a folder, got {options.get('model_name_or_path')!r}"
        )
