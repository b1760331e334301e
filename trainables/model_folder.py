"""What a model folder is: ``hpo_model.json``, the small description beside the model's own files.

A model folder holds the model in its ecosystem's format (a CGCNN file, see
:mod:`trainables.models.cgcnn_io`; a Hugging Face ``save_pretrained`` folder, see
:mod:`trainables.roberta.export`) plus ``hpo_model.json``: the suite's model name (``model``:
``cgcnn`` or ``roberta_rte``), the trial configuration, the metrics of the epoch whose weights
these are, and where it came from. Hugging Face's loaders ignore the extra file; ``predict.py``
reads it to know which kind of model it was given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainables.errors import ModelConfigError

INFO_FILE = "hpo_model.json"


def write_info(directory: str | Path, info: dict[str, Any]) -> Path:
    """Write ``info`` (JSON-serialisable, with a ``model`` name) as ``directory/hpo_model.json``."""
    if "model" not in info:
        raise ValueError("model folder info needs a 'model' name")
    path = Path(directory) / INFO_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(info, indent=2, default=_plain) + "\n")
    os.replace(temporary, path)
    return path


def read_info(directory: str | Path) -> dict[str, Any]:
    """The ``hpo_model.json`` of a model folder; ModelConfigError if ``directory`` is no model folder."""
    directory = Path(directory)
    path = directory / INFO_FILE
    if not directory.is_dir():
        raise ModelConfigError(f"{directory}: model folder not found")
    if not path.is_file():
        hint = " (an experiment folder? its model is in best_model/)" if (directory / "summary.json").is_file() else ""
        raise ModelConfigError(f"{directory}: not a model folder of this suite (no {INFO_FILE}){hint}")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelConfigError(f"{path}: unreadable ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("model"), str):
        raise ModelConfigError(f"{path}: no 'model' name in it")
    return info


def _plain(value: Any) -> Any:
    """numpy scalars and paths as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def load_weights(directory: str | Path) -> dict[str, Any]:
    """The weights of a model folder as a state dict (on the CPU), whichever model it holds.

    Told apart by the files the folder holds (the CGCNN file or a ``save_pretrained`` folder), not by
    the model name in ``hpo_model.json``: a trainable registered under another name (a variant of
    CGCNN) writes the same files.
    """
    read_info(directory)  # a model folder of this suite, else one clear error
    from trainables.models.cgcnn_io import MODEL_FILE, load_cgcnn

    if (Path(directory) / MODEL_FILE).is_file():
        return load_cgcnn(directory).model.state_dict()
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise ModelConfigError(f"{directory}: no model.safetensors")
    return load_file(str(path))
