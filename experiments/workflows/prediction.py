"""Prediction with a model folder (``best_model/``): read inputs, predict, write a CSV, score labelled inputs.

The model folder's ``hpo_model.json`` says which model it holds (:mod:`trainables.model_folder`):

- ``cgcnn``: inputs are a folder of ``<id>.cif`` files (with ``id_prop.csv`` their targets are
  known and the MAE is printed), an ASE database, extended XYZ or trajectory file (``.db``,
  ``.extxyz``/``.xyz``, ``.traj``: :mod:`trainables.data.ase_files`; targets, where every structure
  has one under the model's ``target`` key, print the MAE; ids from ``sid``/``id`` or the row), or
  ``builtin:<split>``: the built-in adsorption set rebuilt with the
  experiment's data settings (``builtin:val`` is the validation split the search was scored on,
  ``builtin:test`` the test split, ``builtin`` all structures). Output columns ``id,prediction``
  (and ``target`` where known). Elements the model's atom features do not cover are a DataError.
- ``roberta_rte``: inputs are sentences or sentence pairs in a ``.csv``, ``.tsv`` or ``.jsonl``
  file, read by the data layer (:func:`trainables.data.text_classification.read_examples`) with the
  text and label fields the model was trained with (``hpo_model.json``'s options; by default RTE's
  ``premise``/``hypothesis`` or GLUE's ``sentence1``/``sentence2``, label ``label``; ids from
  ``idx``/``id``/``index`` or the row). Labels are optional, names or ids of the model's
  ``label2id``; ``--split eval`` / ``test`` picks the experiment's seeded half of a labelled
  validation file (the halves the search tuned and reported on). Output columns
  ``id,label,probability`` (and ``true_label`` where known); labelled inputs print the accuracy.
  Inputs longer than the model's maximum length are truncated, as in training, with a warning.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.errors import DataError, ModelConfigError
from trainables.model_folder import read_info

CGCNN_SPLITS = ("train", "val", "test")
RTE_HALVES = ("eval", "test")
EVAL_BATCH_SIZE = 64  # pairs per batch, as the trainable evaluates
GRAPH_BATCH_SIZE = 512  # structures per batch, as the trainable evaluates


@dataclass
class Predictions:
    """One row per input: ``columns`` and ``rows``; ``metric`` (name, value) where the inputs had labels."""

    columns: list[str]
    rows: list[list[Any]]
    metric: tuple[str, float] | None


def predict(model_dir: str | Path, data: str, split: str | None = None, warn: Callable[[str], None] | None = None
            ) -> Predictions:
    """Predictions of the model folder ``model_dir`` on ``data`` (see the module docstring for the forms)."""
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    info = read_info(model_dir)
    if info["model"] == "cgcnn":
        return predict_cgcnn(Path(model_dir), info, data, split)
    if info["model"] == "roberta_rte":
        return predict_classifier(Path(model_dir), info, data, split, warn)
    raise ModelConfigError(f"{model_dir}: model {info['model']!r} has no prediction here (cgcnn, roberta_rte)")


def write_csv(predictions: Predictions, out: str | Path) -> None:
    """The predictions as a CSV with a header row."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(predictions.columns)
        writer.writerows(predictions.rows)


# --- CGCNN ------------------------------------------------------------------------------------------------

def _builtin_graphs(info: dict[str, Any], featurisation: dict[str, Any], data: str, split: str | None
                    ) -> tuple[list[str], list[Any]]:
    """The built-in set's graphs of ``split`` as the experiment built them (ids: their dataset index)."""
    from trainables.data import load_dataset

    _, _, named = data.partition(":")
    split = named or split
    if split is not None and split not in CGCNN_SPLITS:
        raise DataError(f"{data}: split {split!r}: expected one of {', '.join(CGCNN_SPLITS)}")
    options = info.get("options") or {}
    if options.get("data"):
        raise DataError(f"{data}: this model was trained on {options['data']}, not the built-in data; "
                        f"give that folder (or another) as --data")
    dataset = load_dataset(None, num_structures=int(options.get("dataset_size", 2000)),
                           seed=int(options.get("data_seed", 0)), radius=featurisation["radius"],
                           max_neighbors=featurisation["max_neighbors"], gaussian_step=featurisation["gaussian_step"],
                           progress=False, split=str(options.get("split", "random")))
    indices = dataset.splits[split] if split else np.arange(len(dataset.graphs))
    return [str(int(i)) for i in indices], [dataset.graphs[int(i)] for i in indices]


def _folder_graphs(folder: Path, featurisation: dict[str, Any], atom_features: np.ndarray
                   ) -> tuple[list[str], list[Any]]:
    """A folder of CIFs (targets from its ``id_prop.csv`` if present) featurised as the model was trained."""
    from trainables.data import cif_folder
    from trainables.data.graphs import build_graphs

    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of CIF files (CGCNN prediction reads <id>.cif files, with an "
                        f"optional id_prop.csv; a .db, .extxyz, .xyz or .traj file; or builtin:val)")
    if (folder / cif_folder.ID_PROP).is_file():
        rows = cif_folder.read_id_prop(folder)
    else:
        rows = [(path.stem, math.nan) for path in sorted(folder.glob("*.cif"))]
        if not rows:
            raise DataError(f"{folder}: no .cif files")
    arrays, _ = cif_folder.featurise(folder, rows, featurisation["radius"], featurisation["max_neighbors"],
                                     progress=False)
    _check_elements(arrays, atom_features, [str(folder / (structure_id + ".cif")) for structure_id, _ in rows])
    graphs = build_graphs(arrays, atom_features, featurisation["radius"], featurisation["gaussian_step"])
    return [structure_id for structure_id, _ in rows], graphs


def _ase_graphs(path: Path, options: dict[str, Any], featurisation: dict[str, Any], atom_features: np.ndarray
                ) -> tuple[list[str], list[Any]]:
    """An ASE database, extended XYZ or trajectory file featurised as the model was trained.

    Targets are read from the key the model was trained on (``options["target"]``, default the stored
    energy) where the file has them; structures without one get NaN (no MAE then).
    """
    from trainables.data import ase_files
    from trainables.data.graphs import build_graphs

    rows = ase_files.read_structures(path, options.get("target") or ase_files.DEFAULT_TARGET, None,
                                     require_target=False, progress=False)
    arrays, metadata = ase_files.featurise(path, rows, featurisation["radius"], featurisation["max_neighbors"],
                                           progress=False)
    _check_elements(arrays, atom_features, [f"{path}: {meta['where']} (id {meta['id']})" for meta in metadata])
    graphs = build_graphs(arrays, atom_features, featurisation["radius"], featurisation["gaussian_step"])
    return [meta["id"] for meta in metadata], graphs


def _check_elements(arrays: Any, atom_features: np.ndarray, names: list[str]) -> None:
    """DataError naming the first structure (``names[g]``) with an element the model has no features for."""
    from trainables.data.graphs import missing_elements

    for g, name in enumerate(names):
        missing = missing_elements(arrays.numbers[arrays.atom_offsets[g]: arrays.atom_offsets[g + 1]], atom_features)
        if missing:
            raise DataError(f"{name}: element(s) {', '.join(missing)} not covered by the model's atom features")


def predict_cgcnn(model_dir: Path, info: dict[str, Any], data: str, split: str | None) -> Predictions:
    """Predicted targets for CIF structures, an ASE file's structures or a built-in split; MAE where targets are
    known."""
    import torch
    from torch_geometric.data import Batch

    from trainables.data.ase_files import is_ase_file
    from trainables.models.cgcnn_io import load_cgcnn

    loaded = load_cgcnn(model_dir)
    if data == "builtin" or data.startswith("builtin:"):
        ids, graphs = _builtin_graphs(info, loaded.featurisation, data, split)
    else:
        if split is not None:
            raise DataError(f"--split {split}: only for builtin data (e.g. --data builtin:val)")
        if is_ase_file(data):
            ids, graphs = _ase_graphs(Path(data), info.get("options") or {}, loaded.featurisation,
                                      loaded.atom_features)
        else:
            ids, graphs = _folder_graphs(Path(data), loaded.featurisation, loaded.atom_features)
    predicted, targets = [], []
    for start in range(0, len(graphs), GRAPH_BATCH_SIZE):
        batch = Batch.from_data_list(graphs[start: start + GRAPH_BATCH_SIZE])
        predicted.append(loaded.predict(batch))
        targets.append(batch.y.view(-1))
    prediction, target = torch.cat(predicted), torch.cat(targets)
    known = bool(torch.isfinite(target).all())
    rows = [[i, float(p)] + ([float(t)] if known else []) for i, p, t in zip(ids, prediction, target, strict=True)]
    metric = ("mae", float((prediction - target).abs().sum()) / len(ids)) if known else None
    return Predictions(["id", "prediction"] + (["target"] if known else []), rows, metric)


# --- the classifier ---------------------------------------------------------------------------------------

def _label_id(label: str, label2id: dict[str, int], num_labels: int, where: Path) -> int:
    """The class id of a file's label: its name in the model's ``label2id``, or (names that are not
    integers, e.g. RTE's) an integer class id, as RTE's own 0/1 labels are read in training."""
    if label in label2id:
        return int(label2id[label])
    names_are_numbers = all(name.lstrip("-").isdigit() for name in label2id)
    if not names_are_numbers and label.isdigit() and int(label) < num_labels:
        return int(label)
    raise DataError(f"{where}: label {label!r} is not one of the model's labels ({', '.join(label2id)})")


def read_inputs(path: Path, options: dict[str, Any], label2id: dict[str, int], num_labels: int
                ) -> tuple[list[str], list[tuple[str, ...]], list[int] | None]:
    """(ids, texts, class ids or None) of a ``.csv``, ``.tsv`` or ``.jsonl`` file, read as the model's data was.

    The text and label fields are the ones the model was trained with (``options``: ``text_fields``,
    ``label_field``); without them the data layer's defaults (RTE's ``premise``/``hypothesis``, GLUE's
    ``sentence1``/``sentence2``, then ``sentence``, ``text``; label ``label``), as in training.
    Labels are optional; present, they map through the model's ``label2id``.
    """
    from trainables.data import text_classification as tc

    if path.is_dir():
        raise DataError(f"{path}: give one file of inputs (e.g. {path / 'val.jsonl'} or {path / 'dev.tsv'})")
    fields = tc.parse_text_fields(options.get("text_fields"))
    examples = tc.read_examples(path, fields, options.get("label_field"), require_label=False)
    labels = None
    if examples.labels is not None:
        labels = [_label_id(label, label2id, num_labels, path) for label in examples.labels]
    return examples.ids, examples.texts, labels


def predict_classifier(model_dir: Path, info: dict[str, Any], data: str, split: str | None,
                       warn: Callable[[str], None]) -> Predictions:
    """Predicted label and its probability per input (a sentence or a pair); accuracy where labels are known."""
    import torch
    from transformers.utils import logging as transformers_logging

    from trainables.data.rte import split_validation
    from trainables.roberta.export import load_classifier_folder

    transformers_logging.disable_progress_bar()  # a bar per weight load would drown the one-line output
    model, tokenizer = load_classifier_folder(model_dir)
    options = info.get("options") or {}
    ids, texts, labels = read_inputs(Path(data), options, dict(model.config.label2id), model.config.num_labels)
    if split is not None:
        if split not in RTE_HALVES:
            raise DataError(f"--split {split!r}: expected one of {', '.join(RTE_HALVES)} (a seeded half of a "
                            f"labelled validation file)")
        chosen = split_validation(len(ids), int(options.get("data_seed", 0)))[split]
        ids, texts = [ids[i] for i in chosen], [texts[i] for i in chosen]
        labels = [labels[i] for i in chosen] if labels is not None else None
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if len(texts[0]) == 2 else None  # None: single-sentence classification
    max_length = int(options.get("max_seq_length") or min(getattr(tokenizer, "model_max_length", 512), 512))
    full = tokenizer(first, second, truncation=False)["input_ids"]
    longer = sum(1 for row in full if len(row) > max_length)
    if longer:
        warn(f"{longer} of {len(ids)} input(s) are longer than the model's maximum length of {max_length} tokens; "
             "truncated, as in training")
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(ids)), key=lambda i: len(encoded["input_ids"][i]))  # less padding, as in training
    probabilities = np.zeros((len(ids), model.config.num_labels), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(order), EVAL_BATCH_SIZE):
            chunk = order[start: start + EVAL_BATCH_SIZE]
            width = max(len(encoded["input_ids"][i]) for i in chunk)
            batch = {"input_ids": torch.full((len(chunk), width), pad_id, dtype=torch.long),
                     "attention_mask": torch.zeros((len(chunk), width), dtype=torch.long)}
            if "token_type_ids" in encoded:
                batch["token_type_ids"] = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                row = encoded["input_ids"][i]
                batch["input_ids"][r, : len(row)] = torch.tensor(row)
                batch["attention_mask"][r, : len(row)] = 1
                if "token_type_ids" in encoded:
                    batch["token_type_ids"][r, : len(row)] = torch.tensor(encoded["token_type_ids"][i])
            logits = model(**batch).logits.float()
            probabilities[chunk] = torch.softmax(logits, dim=-1).numpy()
    predicted = probabilities.argmax(axis=1)
    names = model.config.id2label
    rows = [[i, names[int(p)], float(probabilities[k, p])] + ([names[labels[k]]] if labels is not None else [])
            for k, (i, p) in enumerate(zip(ids, predicted, strict=True))]
    metric = ("accuracy", float(np.mean(predicted == np.asarray(labels)))) if labels is not None else None
    return Predictions(["id", "label", "probability"] + (["true_label"] if labels is not None else []), rows, metric)
