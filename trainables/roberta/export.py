"""The classifier's model folder: a Hugging Face ``save_pretrained`` folder of model and tokenizer.

``AutoModelForSequenceClassification.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load it with no code of ours; the config carries
``num_labels``, ``id2label`` / ``label2id`` (RTE: 0 entailment, 1 not_entailment; another task: its
training file's labels, sorted). The suite's
``hpo_model.json`` beside them records ``max_seq_length``, the length pairs were truncated to in
training, which prediction uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainables.errors import ModelConfigError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def save_classifier(directory: str | Path, model: Any, tokenizer: Any,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """``save_pretrained`` ``model`` (with ``state_dict``'s weights if given) and ``tokenizer`` into ``directory``.

    The config carries the label names the model was built with (``load_classifier``: the task's
    ``num_labels``, ``id2label``, ``label2id``), so the folder names its classes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if state_dict is not None:
        model.save_pretrained(str(directory), state_dict=state_dict)
    else:
        model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def load_classifier_folder(directory: str | Path) -> tuple[Any, Any]:
    """(model in eval mode on the CPU, tokenizer) of a folder written by :func:`save_classifier`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ModelConfigError(f"{directory}: no classifier weights ({', '.join(WEIGHT_FILES)})")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as err:
        problem = " ".join(str(err).split())[:300]
        raise ModelConfigError(f"{directory}: cannot load the classifier ({problem})") from None
    model.eval()
    return model, tokenizer
