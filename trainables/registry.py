"""The models the suite can tune, and what the runner needs to know about each.

A model is named once here; its trainable and driver-side preparation are imported lazily so
a CGCNN run never imports transformers (and vice versa).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What the runner needs to tune one model.

    ``options`` are the model's fixed settings (data location, featurisation, ...) with their
    defaults: each is a YAML config key, and those in ``cli_options`` also a CLI flag. They reach
    the trainable's ``setup(config, options)`` through ``tune.with_parameters``, so they never
    mix with the hyperparameters a searcher proposes. ``prepare(options)`` runs once in the
    driver before any trial: it validates and caches the data and returns reference numbers
    for the summary (``baseline_val_mae`` for CGCNN).
    """

    name: str
    trainable: str  # "module:Class"
    prepare: str  # "module:function"
    metric: str
    mode: str
    test_metric: str  # the held-out metric reported beside the tuned one
    default_space: str
    options: dict[str, Any] = field(default_factory=dict)
    cli_options: tuple[str, ...] = ()
    smoke_options: dict[str, Any] = field(default_factory=dict)
    # The result field that counts epochs: schedulers' time attribute and the stop criterion.
    # RoBERTa reports a fractional ``epoch`` so that --eval-every-steps (several results per
    # epoch) still stops and schedules in epochs.
    time_attr: str = "training_iteration"
    # "module:NAME" of the hyperparameter names the trainable accepts, so a space naming another
    # one fails before any trial; None: not checked.
    hyperparameters: str | None = None
    # "module:NAME" of a dict {shown name: compiled regex} of hyperparameter names given by a
    # pattern (RoBERTa's per-group lrs: ``layer_<start>-<end>``, ``params_<parameter>``).
    hyperparameter_patterns: str | None = None
    # "module:function" (names, constants, prepared) -> None: checks the search space against what
    # ``prepare`` found (e.g. the checkpoint's depth), raising ModelConfigError before any trial.
    space_check: str | None = None

    def load_trainable(self) -> type:
        return _import(self.trainable)

    def load_hyperparameters(self) -> tuple[str, ...] | None:
        return tuple(_import(self.hyperparameters)) if self.hyperparameters else None

    def load_hyperparameter_patterns(self) -> dict[str, re.Pattern[str]]:
        return dict(_import(self.hyperparameter_patterns)) if self.hyperparameter_patterns else {}

    def load_prepare(self) -> Callable[[dict], dict]:
        return _import(self.prepare)

    def check_space(self, names: set[str], constants: dict[str, Any], prepared: dict[str, Any]) -> None:
        if self.space_check:
            _import(self.space_check)(names, constants, prepared)


def bind_options(trainable: type, options: dict) -> type:
    """``trainable`` with its fixed ``options`` bound, as ``tune.with_parameters`` does, for use without Ray.

    Benchmarks (the in-process floor) and tests construct the trainable directly: ``Bound(config)``.
    """

    class Bound(trainable):
        def setup(self, config: dict) -> None:
            super().setup(config, options=options)

    Bound.__name__ = Bound.__qualname__ = trainable.__name__
    return Bound


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


MODELS: dict[str, ModelSpec] = {
    "cgcnn": ModelSpec(
        name="cgcnn",
        trainable="trainables.cgcnn:CGCNNTrainable",
        prepare="trainables.cgcnn:prepare",
        metric="val_mae",
        mode="min",
        test_metric="test_mae",
        default_space="cgcnn_default",
        options={
            "data": None,  # None: the built-in EMT adsorption set; else a CIF folder or an ASE .db/.extxyz/.xyz/.traj
            "target": None,  # ASE files: the key holding the target (None: "energy", the stored calculator energy)
            "split_key": None,  # ASE files: a key with values train/val/test giving the split (None: seeded random)
            "dataset_size": 2000,
            "data_seed": 0,
            "radius": 8.0,
            "max_neighbors": 12,
            "gaussian_step": 0.2,
            "split": "random",  # "by_slab": each slab in one split, so test_mae measures unseen surfaces
            "tf32": False,  # GPUs: TF32 matmuls (Ampere and later); fp32 otherwise
            "cache_dir": None,  # None: $HPO_SUITE_CACHE or ~/.cache/hpo-suite
        },
        cli_options=("data", "target", "split_key"),
        smoke_options={"dataset_size": 240},
    ),
    "roberta_rte": ModelSpec(
        name="roberta_rte",
        trainable="trainables.roberta_rte:RobertaRTETrainable",
        prepare="trainables.roberta_rte:prepare",
        metric="eval_acc",
        mode="max",
        test_metric="test_acc",
        default_space="rte_pbt",
        options={
            "model_name_or_path": "roberta-base",  # a Hugging Face Hub name or a save_pretrained folder
            "data": None,  # None: RTE from the Hub; else a folder of SuperGLUE jsonl or GLUE tsv files, or any task's
            # train + dev/validation .csv/.tsv/.jsonl files (trainables/data/text_classification.py)
            "text_fields": None,  # "A" (single sentences) or "A,B" (pairs); None: RTE's, or sentence/text
            "label_field": None,  # None: "label"
            "max_seq_length": 128,
            "eval_every_steps": 0,  # 0: one step (result) per epoch; K: evaluate every K optimiser steps
            "max_train_examples": 0,  # 0: all training pairs; N: the first N (smoke tests)
            "data_seed": 0,  # seed of the eval/test halves of the validation set
            "torch_compile": False,  # torch.compile the model once per actor (pays on GPUs; slow to start)
            # auto: bf16 autocast on cards with native bf16 (compute capability >= 8.0), fp16 autocast +
            # gradient scaler on older ones, fp32 on the CPU; or force bf16, fp16 or fp32.
            "precision": "auto",
            # Micro-batches per optimiser step (must divide batch_size): batch 64 on a card that fits 16.
            "gradient_accumulation_steps": 1,
            "cache_dir": None,  # None: $HPO_SUITE_CACHE or ~/.cache/hpo-suite
        },
        cli_options=("model_name_or_path", "data", "text_fields", "label_field", "max_seq_length", "eval_every_steps",
                     "precision",
                     "gradient_accumulation_steps"),
        smoke_options={"max_train_examples": 64, "max_seq_length": 64},
        time_attr="epoch",
        hyperparameters="trainables.roberta.settings:HYPERPARAMETERS",
        hyperparameter_patterns="trainables.roberta.settings:HYPERPARAMETER_PATTERNS",
        space_check="trainables.roberta_rte:check_space",
    ),
}
