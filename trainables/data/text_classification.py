"""Any sentence or sentence-pair classification task in local files, for the transformer trainable.

``--data FOLDER`` with a training file ``train.<ext>`` and an evaluation file ``dev.<ext>``,
``validation.<ext>`` or ``val.<ext>``, where ``<ext>`` is ``csv`` (comma-separated, a header row,
standard quoting), ``tsv`` (tab-separated, a header row, no quoting, as GLUE ships) or ``jsonl``
(one JSON object per line). ``text_fields`` names one field (single-sentence classification) or
two (pairs); ``label_field`` the label (default ``label``). Without ``text_fields`` the first of
``DEFAULT_TEXT_FIELDS`` the training file has is used. (A folder with RTE's own file names and no
flags is read by ``trainables.data.rte`` as before, with RTE's label names; give ``--text-fields``
for another GLUE task shipped under those names, e.g. SST-2's ``sentence``.)

Labels are whatever the training file holds (strings or integers); their names, sorted (as
numbers when all are integers), give the class ids: ``num_labels`` and ``id2label`` of the model.
Every problem is one ``DataError`` line naming the file (and line): an unknown field (the file's
fields are listed), an empty file, an empty text, a label in the evaluation file that training
lacks, fewer than two labels.

Public, also for prediction on new files: ``read_examples`` (one file) and ``load_folder``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.errors import DataError

SUFFIXES = (".csv", ".tsv", ".jsonl")
TRAIN_NAMES = ("train",)
EVAL_NAMES = ("dev", "validation", "val")
DEFAULT_LABEL_FIELD = "label"
# Tried in order when no text fields are given: RTE (SuperGLUE, GLUE), then single sentences.
DEFAULT_TEXT_FIELDS = (("premise", "hypothesis"), ("sentence1", "sentence2"), ("sentence",), ("text",))
ID_FIELDS = ("idx", "id", "index")


@dataclass(frozen=True)
class Examples:
    """One file's rows: ids, texts (one tuple of one or two strings per row) and raw labels (None if absent)."""

    path: Path
    text_fields: tuple[str, ...]
    ids: list[str]
    texts: list[tuple[str, ...]]
    labels: list[str] | None


def parse_text_fields(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"premise,hypothesis"`` (the CLI) or a list (YAML) as a tuple of one or two names; None stays None.

    Raises:
        DataError: not one or two non-empty names.
    """
    if value is None:
        return None
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    if not 1 <= len(names) <= 2 or not all(names):
        raise DataError(f"text_fields {value!r}: give one field (single sentences) or two, comma-separated (pairs)")
    return tuple(names)


def read_json_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for each non-blank line of a JSON-lines file; DataError naming the line otherwise."""
    rows: list[tuple[str, dict[str, Any]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            rows.append((where, row))
    return rows


def _rows(path: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The file's field names (the header, or every key the JSON objects use) and its (where, row) pairs."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix == ".jsonl":
        rows = read_json_lines(path)
        fields: dict[str, None] = {}
        for _, row in rows:
            fields.update(dict.fromkeys(row))
        return list(fields), rows
    with open(path, encoding="utf-8", newline="") as handle:
        # GLUE's .tsv files hold unbalanced quote characters inside sentences: no quoting there.
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if path.suffix == ".tsv" \
            else csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return [], []
        header = [name.strip() for name in header]
        for fields_in_row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(field.strip() for field in fields_in_row):
                continue
            if len(fields_in_row) != len(header):
                raise DataError(f"{where}: expected {len(header)} fields (as the header), got {len(fields_in_row)}")
            rows.append((where, dict(zip(header, fields_in_row, strict=True))))
    return header, rows


def _label_text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: label {value!r} is not a non-empty string or an integer")
    return str(value).strip()


def read_examples(
    path: str | Path,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    *,
    require_label: bool = True,
) -> Examples:
    """Rows of one ``.csv``, ``.tsv`` or ``.jsonl`` file: texts from ``text_fields``, labels from ``label_field``.

    ``text_fields`` None: the first of ``DEFAULT_TEXT_FIELDS`` the file has. ``label_field`` None:
    ``label``. ``require_label=False`` (prediction) reads a file without the label field (labels
    None). Ids: an ``idx``, ``id`` or ``index`` field where present, else the row's position.

    Raises:
        DataError: missing or empty file, unknown format, unknown field names (the file's fields
            listed), an empty text, a missing or malformed label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown format (expected {', '.join(SUFFIXES)})")
    fields, rows = _rows(path)
    if not rows:
        raise DataError(f"{path}: empty file (no rows)")
    if text_fields is None:
        text_fields = next((c for c in DEFAULT_TEXT_FIELDS if set(c) <= set(fields)), None)
        if text_fields is None:
            defaults = "; ".join(",".join(c) for c in DEFAULT_TEXT_FIELDS)
            raise DataError(f"{path}: none of the default text fields ({defaults}) in the file's fields "
                            f"({', '.join(fields)}); name them with --text-fields")
    label_field = DEFAULT_LABEL_FIELD if label_field is None else label_field
    unknown = [name for name in text_fields if name not in fields]
    if unknown:
        raise DataError(f"{path}: no field(s) {', '.join(unknown)} (the file's fields: {', '.join(fields)})")
    has_labels = label_field in fields
    if require_label and not has_labels:
        raise DataError(f"{path}: no label field {label_field!r} (the file's fields: {', '.join(fields)}); "
                        "name it with --label-field")
    id_field = next((name for name in ID_FIELDS if name in fields), None)
    ids, texts, labels = [], [], []
    for position, (where, row) in enumerate(rows):
        values = []
        for name in text_fields:
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
            values.append(value)
        texts.append(tuple(values))
        ids.append(str(row[id_field]) if id_field is not None and row.get(id_field) is not None else str(position))
        if has_labels:
            if label_field not in row:
                raise DataError(f"{where}: no {label_field!r}")
            labels.append(_label_text(row[label_field], where))
    return Examples(path, tuple(text_fields), ids, texts, labels if has_labels else None)


def label_names(labels: Sequence[str]) -> tuple[str, ...]:
    """The distinct labels in class-id order: numerically when all are integers, else as sorted strings."""
    distinct = set(labels)
    try:
        return tuple(sorted(distinct, key=int))
    except ValueError:
        return tuple(sorted(distinct))


def label_ids(examples: Examples, names: Sequence[str], train_path: Path) -> np.ndarray:
    """Class ids of ``examples``' labels under ``names``; DataError naming a label training lacks."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(examples.labels or ()) - set(index))
    if unknown:
        raise DataError(f"{examples.path}: label(s) {', '.join(map(repr, unknown))} not in the training file "
                        f"{train_path} (its labels: {', '.join(names)})")
    return np.array([index[label] for label in examples.labels or ()], dtype=np.int64)


def find_files(folder: Path) -> tuple[Path, Path] | None:
    """(training file, evaluation file) of ``folder``, or None when it holds no ``train.<csv|tsv|jsonl>``.

    Raises:
        DataError: a training file without an evaluation file.
    """
    train = next((folder / f"{n}{s}" for n in TRAIN_NAMES for s in SUFFIXES if (folder / f"{n}{s}").is_file()), None)
    if train is None:
        return None
    candidates = [folder / f"{n}{s}" for n in EVAL_NAMES for s in (train.suffix, *SUFFIXES)]
    evaluation = next((path for path in candidates if path.is_file()), None)
    if evaluation is None:
        raise DataError(f"{folder}: {train.name} but no evaluation file "
                        f"({', '.join(f'{n}{train.suffix}' for n in EVAL_NAMES)})")
    return train, evaluation
