"""The CGCNN model folder: a trained CGCNN that loads and predicts without the experiment.

Like txie-93/cgcnn's ``model_best.pth.tar`` (weights, optimiser-free, with the normaliser and the
arguments that built the model), one file ``cgcnn_model.pt`` holds everything prediction needs:

- ``state_dict``: the weights (batch-norm statistics included);
- ``architecture``: the :class:`~trainables.models.cgcnn.CGCNN` constructor arguments;
- ``target``: the normaliser, ``mean`` and ``std`` of the training targets (the network predicts
  ``(y - mean) / std``);
- ``featurisation``: ``radius``, ``max_neighbors``, ``gaussian_step`` of the neighbour graphs;
- ``atom_features``: the atom feature table [119, F] indexed by atomic number (NaN rows: elements
  the model has no features for).

It holds tensors, numbers and strings only, so ``torch.load(path, weights_only=True)`` reads it.
Beside it, ``hpo_model.json`` (:mod:`trainables.model_folder`) says what the folder is and where
it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables.errors import ModelConfigError
from trainables.models.cgcnn import CGCNN

MODEL_FILE = "cgcnn_model.pt"
FORMAT = "hpo-suite-cgcnn"
FORMAT_VERSION = 1
ARCHITECTURE_KEYS = ("node_feature_dim", "edge_feature_dim", "atom_embedding_size", "num_graph_conv_layers",
                     "fc_feat_size", "num_fc_layers")
FEATURISATION_KEYS = ("radius", "max_neighbors", "gaussian_step")


@dataclass
class LoadedCGCNN:
    """A CGCNN read from a model folder, in eval mode on the CPU.

    ``predict`` gives targets in the data's units (the normaliser undone).
    """

    model: CGCNN
    y_mean: float
    y_std: float
    featurisation: dict[str, Any]
    atom_features: np.ndarray  # float32 [119, F]

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        """Predicted targets [num_graphs] for a torch_geometric ``Batch``, computed as the trainable evaluates."""
        self.model.eval()
        return self.model(batch) * self.y_std + self.y_mean


def save_cgcnn(
    directory: str | Path,
    state_dict: dict[str, torch.Tensor],
    architecture: dict[str, int],
    y_mean: float,
    y_std: float,
    featurisation: dict[str, Any],
    atom_features: np.ndarray,
) -> Path:
    """Write ``cgcnn_model.pt`` into ``directory`` (created); returns the file's path."""
    missing = [key for key in ARCHITECTURE_KEYS if key not in architecture]
    if missing:
        raise ModelConfigError(f"CGCNN architecture lacks {', '.join(missing)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    torch.save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()},
            "architecture": {key: int(architecture[key]) for key in ARCHITECTURE_KEYS},
            "target": {"mean": float(y_mean), "std": float(y_std)},
            "featurisation": {"radius": float(featurisation["radius"]),
                              "max_neighbors": int(featurisation["max_neighbors"]),
                              "gaussian_step": float(featurisation["gaussian_step"])},
            "atom_features": torch.from_numpy(np.asarray(atom_features, dtype=np.float32).copy()),
        },
        path,
    )
    return path


def load_cgcnn(directory: str | Path) -> LoadedCGCNN:
    """Read a model folder written by :func:`save_cgcnn` (ModelConfigError if it holds none)."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise ModelConfigError(f"{directory}: no CGCNN model ({MODEL_FILE} not found)")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ModelConfigError(f"{path}: unreadable CGCNN model ({type(err).__name__}: {err})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ModelConfigError(f"{path}: not a CGCNN model folder of this suite (format {FORMAT!r})")
    if int(stored.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelConfigError(f"{path}: format version {stored['format_version']} is newer than this code's "
                               f"{FORMAT_VERSION}; update the suite")
    architecture = stored["architecture"]
    model = CGCNN(**{key: int(architecture[key]) for key in ARCHITECTURE_KEYS})
    model.load_state_dict(stored["state_dict"])
    model.eval()
    return LoadedCGCNN(
        model=model,
        y_mean=float(stored["target"]["mean"]),
        y_std=float(stored["target"]["std"]),
        featurisation=dict(stored["featurisation"]),
        atom_features=stored["atom_features"].numpy(),
    )
