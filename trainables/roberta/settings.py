"""RoBERTa/RTE settings: the trial's hyperparameters (validated into :class:`FineTuneSettings`)
and the model options a run needs (:func:`check_options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.errors import ModelConfigError

# Name -> default; None marks a required hyperparameter.
HYPERPARAMETERS: dict[str, Any] = {
    "lr": None,
    "batch_size": 32,
    "epochs": 3,
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


@dataclass(frozen=True)
class FineTuneSettings:
    """One trial's hyperparameters, validated, with defaults filled in."""

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


def parse_settings(config: dict) -> FineTuneSettings:
    """Validate a trial config into :class:`FineTuneSettings` (ValueError naming the bad hyperparameter)."""
    unknown = sorted(set(config) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown RoBERTa/RTE hyperparameter(s) {unknown}; known: {sorted(HYPERPARAMETERS)}")
    missing = [
        name
        for name, default in HYPERPARAMETERS.items()
        if default is None and name != "classifier_lr" and config.get(name) is None
    ]
    if missing:
        raise ValueError(f"the trial config lacks required hyperparameter(s) {missing}")
    values = {name: config.get(name, default) for name, default in HYPERPARAMETERS.items()}
    if values["classifier_lr"] is None:
        values["classifier_lr"] = values["lr"]
    for name in ("batch_size", "epochs", "warmup_steps", "seed", "layer_groups"):
        if float(values[name]) != int(values[name]):
            raise ValueError(f"hyperparameter {name} must be a whole number, got {values[name]!r}")
        values[name] = int(values[name])
    settings = FineTuneSettings(**{k: (v if isinstance(v, int) else float(v)) for k, v in values.items()})
    if settings.batch_size < 1 or settings.epochs < 1 or settings.layer_groups < 1:
        raise ValueError("batch_size, epochs and layer_groups must be at least 1")
    if (
        settings.lr < 0
        or settings.classifier_lr < 0
        or settings.weight_decay < 0
        or settings.warmup_steps < 0
    ):
        raise ValueError("lr, classifier_lr, weight_decay and warmup_steps must not be negative")
    if settings.warmup_steps and settings.warmup_ratio:
        raise ValueError("give warmup_steps or warmup_ratio, not both")
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
    ):
        value = options.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelConfigError(f"{name} must be a whole number of at least {low}, got {value!r}")
    if not isinstance(options.get("torch_compile", False), bool):
        raise ModelConfigError(f"torch_compile must be true or false, got {options.get('torch_compile')!r}")
    if not isinstance(options.get("model_name_or_path"), str) or not options["model_name_or_path"]:
        raise ModelConfigError(
            f"model_name_or_path must be a hub name or a folder, got {options.get('model_name_or_path')!r}"
        )
