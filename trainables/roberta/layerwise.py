"""Layer-wise learning rates: the encoder layers in groups, bottom to top, each with its own lr, and
AdamW parameter groups built from them.

Two ways to give the groups' lrs:

- a geometric decay: the top group trains at ``lr``, each group below at ``layer_lr_decay`` times
  the group above, the embeddings one step below the bottom group;
- independently, as the Simple Transformers RoBERTa-large write-up tuned them: one
  ``layer_<start>-<end>`` hyperparameter per group (the names follow from ``layer_groups`` and the
  model's depth: 24 layers in 4 groups give ``layer_0-6`` .. ``layer_18-24``); the embeddings
  train at ``lr``.

Either way the classification head trains at ``classifier_lr`` (default ``lr``), and a
``params_<name>`` hyperparameter gives one parameter (``named_parameters``' name, e.g.
``classifier.out_proj.weight`` on RoBERTa, ``classifier.weight`` on BERT) its own lr. Whatever
else the base model holds on top of its encoder (BERT's pooler, a final norm) belongs to the top
layer group. Every parameter lands in exactly one group.
"""

from __future__ import annotations

from typing import Any

import torch

from trainables.errors import ModelConfigError
from trainables.roberta.settings import FineTuneSettings


def layer_group_bounds(depth: int, groups: int) -> list[tuple[int, int]]:
    """(start, end) of each of ``groups`` groups of ``depth`` encoder layers, bottom to top (as even as can be)."""
    if not 1 <= groups <= depth:
        raise ModelConfigError(f"layer_groups ({groups}) must lie between 1 and the model's {depth} encoder layers")
    starts = [-(-g * depth // groups) for g in range(groups + 1)]  # ceil(g * depth / groups)
    return list(zip(starts[:-1], starts[1:], strict=True))


def layer_group_names(depth: int, groups: int) -> list[str]:
    """The ``layer_<start>-<end>`` hyperparameter names of the groups, bottom to top."""
    return [f"layer_{start}-{end}" for start, end in layer_group_bounds(depth, groups)]


def check_layer_groups(given: list[str], depth: int, groups: int) -> list[str]:
    """The group names for ``depth`` layers in ``groups`` groups; ModelConfigError when the search
    space's ``layer_<start>-<end>`` names ``given`` (bottom to top) are not those."""
    names = layer_group_names(depth, groups)
    if given != names:
        raise ModelConfigError(
            f"the search space's layer groups {', '.join(given)} do not fit this model's {depth} "
            f"encoder layers; in {groups} groups they are {', '.join(names)}"
        )
    return names


def _encoder(model: torch.nn.Module) -> tuple[Any, Any]:
    """The embeddings and the list of encoder layers of a BERT-style model (None, None for others)."""
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    embeddings = getattr(base, "embeddings", None)
    return (embeddings, layers) if layers is not None and embeddings is not None else (None, None)


def group_lrs(model: torch.nn.Module, settings: FineTuneSettings) -> dict[str, float]:
    """The lr of each group, bottom to top: ``embeddings``, the layer groups, ``params_<name>`` ones, ``classifier``.

    ModelConfigError where the settings do not fit the model: more groups than layers, layer
    groups on a model without a BERT-style encoder, ``layer_<start>-<end>`` names that do not
    match the model's depth, a ``params_<name>`` naming no parameter.
    """
    embeddings, layers = _encoder(model)
    groups = settings.layer_groups
    if layers is None:
        if groups > 1 or settings.layer_group_lrs:
            raise ModelConfigError(
                f"layer-wise learning rates need a BERT-style encoder; {type(model).__name__} has none"
            )
        lrs = {"base": settings.lr}
    else:
        names = layer_group_names(len(layers), groups)
        if settings.layer_group_lrs:
            given = [f"layer_{start}-{end}" for start, end, _ in settings.layer_group_lrs]
            check_layer_groups(given, len(layers), groups)
            lrs = {"embeddings": settings.lr}
            lrs.update({name: lr for name, (_, _, lr) in zip(names, settings.layer_group_lrs, strict=True)})
        else:
            lrs = {"embeddings": settings.lr * settings.layer_lr_decay**groups}
            decay = settings.layer_lr_decay
            lrs.update({name: settings.lr * decay ** (groups - 1 - g) for g, name in enumerate(names)})
    known = dict(model.named_parameters())
    for name, lr in settings.parameter_lrs:
        if name not in known:
            head = [n for n in known if not n.startswith(model.base_model_prefix + ".")]
            raise ModelConfigError(
                f"params_{name}: {type(model).__name__} has no parameter {name!r}; its head's are "
                f"{', '.join(head)}"
            )
        lrs[f"params_{name}"] = lr
    lrs["classifier"] = settings.classifier_lr
    return lrs


def _group_of(model: torch.nn.Module, settings: FineTuneSettings, lrs: dict[str, float]) -> dict[int, str]:
    """Parameter id -> the name of its group in ``lrs``, for every parameter of ``model``."""
    embeddings, layers = _encoder(model)
    owner: dict[int, str] = {}
    named = dict(model.named_parameters())
    for name, _ in settings.parameter_lrs:
        owner[id(named[name])] = f"params_{name}"
    if layers is None:
        top = "base"
    else:
        bounds = layer_group_bounds(len(layers), settings.layer_groups)
        top = f"layer_{bounds[-1][0]}-{bounds[-1][1]}"
        for p in embeddings.parameters():
            owner.setdefault(id(p), "embeddings")
        for start, end in bounds:
            for layer in layers[start:end]:
                for p in layer.parameters():
                    owner.setdefault(id(p), f"layer_{start}-{end}")
    # Whatever else belongs to the pretrained base model (a pooler, a final norm) sits on top of
    # the encoder; everything outside it is the freshly trained classification head.
    for p in model.base_model.parameters():
        owner.setdefault(id(p), top)
    for p in model.parameters():
        owner.setdefault(id(p), "classifier")
    return owner


def parameter_groups(model: torch.nn.Module, settings: FineTuneSettings) -> list[dict[str, Any]]:
    """AdamW parameter groups: each group's lr (:func:`group_lrs`), split into decayed and undecayed parameters.

    Biases and normalisation weights (1-d tensors) get no weight decay, as in transformers'
    Trainer. Every parameter lands in exactly one group; each group carries a ``name``
    (``<group>/decay`` or ``<group>/no_decay``).
    """
    lrs = group_lrs(model, settings)
    owner = _group_of(model, settings, lrs)
    groups: list[dict[str, Any]] = []
    for group_name, lr in lrs.items():
        for decay in (True, False):
            params = [p for p in model.parameters() if owner[id(p)] == group_name and (p.ndim >= 2) == decay]
            if params:
                groups.append(
                    {
                        "name": f"{group_name}/{'decay' if decay else 'no_decay'}",
                        "params": params,
                        "lr": lr,
                        "weight_decay": settings.weight_decay if decay else 0.0,
                    }
                )
    return groups
