"""Layer-wise learning rates: encoder layers in groups, bottom to top, each group with its own lr,
the classification head with ``classifier_lr``; AdamW parameter groups built from them."""

from __future__ import annotations

from typing import Any

import torch

from trainables.roberta.settings import FineTuneSettings


def layer_lrs(settings: FineTuneSettings) -> dict[str, float]:
    """The lr of each layer group, bottom to top: embeddings, ``layers_0`` .. ``layers_{G-1}``, classifier."""
    groups = settings.layer_groups
    lrs = {"embeddings": settings.lr * settings.layer_lr_decay**groups}
    lrs.update(
        {f"layers_{g}": settings.lr * settings.layer_lr_decay ** (groups - 1 - g) for g in range(groups)}
    )
    lrs["classifier"] = settings.classifier_lr
    return lrs


def _layer_group_of(model: torch.nn.Module, groups: int) -> dict[int, str]:
    """Parameter id -> layer group name, for every parameter of ``model``.

    BERT-style encoders (``base_model.embeddings`` and ``base_model.encoder.layer``: BERT,
    RoBERTa, ELECTRA, DeBERTa, ...) get real layer groups; for other architectures the whole base
    model is one group, so only ``layer_groups: 1`` applies.
    """
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    embeddings = getattr(base, "embeddings", None)
    top = f"layers_{groups - 1}"
    owner: dict[int, str] = {}
    if layers is None or embeddings is None:
        if groups > 1:
            raise ValueError(
                f"layer-wise learning rates need a BERT-style encoder; {type(model).__name__} has none"
            )
    else:
        if groups > len(layers):
            raise ValueError(f"layer_groups ({groups}) exceeds the model's {len(layers)} encoder layers")
        for p in embeddings.parameters():
            owner[id(p)] = "embeddings"
        for index, layer in enumerate(layers):
            for p in layer.parameters():
                owner[id(p)] = f"layers_{index * groups // len(layers)}"
    # Whatever else belongs to the pretrained base model (a pooler, a final norm) sits on top of
    # the encoder; everything outside it is the freshly trained classification head.
    for p in base.parameters():
        owner.setdefault(id(p), top)
    for p in model.parameters():
        owner.setdefault(id(p), "classifier")
    return owner


def parameter_groups(model: torch.nn.Module, settings: FineTuneSettings) -> list[dict[str, Any]]:
    """AdamW parameter groups: each layer group's lr, split into decayed and undecayed parameters.

    Biases and normalisation weights (1-d tensors) get no weight decay, as in transformers'
    Trainer. Every parameter lands in exactly one group; each group carries a ``name``.
    """
    owner = _layer_group_of(model, settings.layer_groups)
    groups: list[dict[str, Any]] = []
    for group_name, lr in layer_lrs(settings).items():
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
