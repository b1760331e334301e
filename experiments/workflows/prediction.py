"""Prediction with a model folder (``best_model/``): read inputs, predict, write a CSV, score labelled inputs.

The model folder's ``hpo_model.json`` says which model it holds (:mod:`trainables.model_folder`):

- ``cgcnn``: inputs are a folder of ``<id>.cif`` files (with ``id_prop.csv`` their targets are
  known and the MAE is printed), or ``builtin:<split>``: the built-in adsorption set rebuilt with the
  experiment's data settings (``builtin:val`` is the validation split the search was scored on,
  ``builtin:test`` the test split, ``builtin`` all structures). Output columns ``id,prediction``
  (and ``target`` where known). Elements the model's atom features do not cover are a DataError.
- ``roberta_rte``: inputs are sentence pairs in a SuperGLUE ``.jsonl`` (``premise``,
  ``hypothesis``, optional ``label`` and ``idx``) or a GLUE ``.tsv`` (header with ``sentence1``,
  ``sentence2``, optional ``label`` and ``index``); ``--split eval`` / ``test`` picks the
  experiment's seeded half of a labelled validation file (the halves the search tuned and
  reported on). Output columns ``id,label,probability`` (and ``true_label`` where known); labelled
  inputs print the accuracy. Pairs longer than the model's maximum length are truncated, as in
  training, with a warning.
"""

from __future__ import annotations

import csv
import json
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
    from trainables.data.graphs import build_graphs, missing_elements

    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of CIF files (CGCNN prediction reads <id>.cif files, with an "
                        f"optional id_prop.csv, or builtin:val)")
    if (folder / cif_folder.ID_PROP).is_file():
        rows = cif_folder.read_id_prop(folder)
    else:
        rows = [(path.stem, math.nan) for path in sorted(folder.glob("*.cif"))]
        if not rows:
            raise DataError(f"{folder}: no .cif files")
    arrays, _ = cif_folder.featurise(folder, rows, featurisation["radius"], featurisation["max_neighbors"],
                                     progress=False)
    for g, (structure_id, _) in enumerate(rows):
        numbers = arrays.numbers[arrays.atom_offsets[g]: arrays.atom_offsets[g + 1]]
        missing = missing_elements(numbers, atom_features)
        if missing:
            raise DataError(f"{folder / (structure_id + '.cif')}: element(s) {', '.join(missing)} not covered by "
                            f"the model's atom features")
    graphs = build_graphs(arrays, atom_features, featurisation["radius"], featurisation["gaussian_step"])
    return [structure_id for structure_id, _ in rows], graphs


def predict_cgcnn(model_dir: Path, info: dict[str, Any], data: str, split: str | None) -> Predictions:
    """Predicted targets for CIF structures or a built-in split; MAE where targets are known."""
    import torch
    from torch_geometric.data import Batch

    from trainables.models.cgcnn_io import load_cgcnn

    loaded = load_cgcnn(model_dir)
    if data == "builtin" or data.startswith("builtin:"):
        ids, graphs = _builtin_graphs(info, loaded.featurisation, data, split)
    else:
        if split is not None:
            raise DataError(f"--split {split}: only for builtin data (e.g. --data builtin:val)")
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

def read_pairs(path: Path) -> tuple[list[str], list[str], list[str], list[int] | None]:
    """(ids, premises, hypotheses, labels or None) of a ``.jsonl`` or ``.tsv`` file; labels optional."""
    from trainables.data.rte import parse_label

    if not path.is_file():
        raise DataError(f"{path}: file not found (the classifier reads a SuperGLUE .jsonl or a GLUE .tsv file)")
    ids, premises, hypotheses, labels = [], [], [], []
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{where}: invalid JSON ({err.msg})") from None
                if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("premise", "hypothesis")):
                    raise DataError(f"{where}: expected an object with string 'premise' and 'hypothesis'")
                ids.append(str(row.get("idx", len(ids))))
                premises.append(row["premise"])
                hypotheses.append(row["hypothesis"])
                labels.append(parse_label(row["label"], where) if "label" in row else None)
    elif path.suffix == ".tsv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)  # GLUE's files: no quoting
            header = next(reader, None) or []
            if not {"sentence1", "sentence2"} <= set(header):
                raise DataError(f"{path}:1: header lacks sentence1 and sentence2 (has {', '.join(header)})")
            column = {name: header.index(name) for name in ("sentence1", "sentence2", "label", "index")
                      if name in header}
            for fields in reader:
                where = f"{path}:{reader.line_num}"
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{where}: expected {len(header)} tab-separated fields, got {len(fields)}")
                ids.append(fields[column["index"]] if "index" in column else str(len(ids)))
                premises.append(fields[column["sentence1"]])
                hypotheses.append(fields[column["sentence2"]])
                labels.append(parse_label(fields[column["label"]], where) if "label" in column else None)
    else:
        raise DataError(f"{path}: unknown format (the classifier reads a SuperGLUE .jsonl or a GLUE .tsv file)")
    if not ids:
        raise DataError(f"{path}: no sentence pairs")
    labelled = all(label is not None for label in labels)
    return ids, premises, hypotheses, ([int(label) for label in labels] if labelled else None)


def predict_classifier(model_dir: Path, info: dict[str, Any], data: str, split: str | None,
                       warn: Callable[[str], None]) -> Predictions:
    """Predicted label and its probability per sentence pair; accuracy where labels are known."""
    import torch
    from transformers.utils import logging as transformers_logging

    from trainables.data.rte import split_validation
    from trainables.roberta.export import load_classifier_folder

    transformers_logging.disable_progress_bar()  # a bar per weight load would drown the one-line output
    model, tokenizer = load_classifier_folder(model_dir)
    path = Path(data)
    if path.is_dir():
        raise DataError(f"{path}: give one file of pairs (e.g. {path / 'val.jsonl'} or {path / 'dev.tsv'})")
    ids, premises, hypotheses, labels = read_pairs(path)
    options = info.get("options") or {}
    if split is not None:
        if split not in RTE_HALVES:
            raise DataError(f"--split {split!r}: expected one of {', '.join(RTE_HALVES)} (a seeded half of a "
                            f"labelled validation file)")
        chosen = split_validation(len(ids), int(options.get("data_seed", 0)))[split]
        ids, premises, hypotheses = ([values[i] for i in chosen] for values in (ids, premises, hypotheses))
        labels = [labels[i] for i in chosen] if labels is not None else None
    max_length = int(options.get("max_seq_length") or min(getattr(tokenizer, "model_max_length", 512), 512))
    full = tokenizer(premises, hypotheses, truncation=False)["input_ids"]
    longer = sum(1 for row in full if len(row) > max_length)
    if longer:
        warn(f"{longer} of {len(ids)} pair(s) are longer than the model's maximum length of {max_length} tokens; "
             "truncated, as in training")
    encoded = tokenizer(premises, hypotheses, truncation=True, max_length=max_length)
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
