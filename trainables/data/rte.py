"""RTE sentence pairs (premise, hypothesis -> entailment / not_entailment) and their tokenisation.

Three sources, one result (:class:`RTEData`):

- a SuperGLUE folder: ``train.jsonl`` and ``val.jsonl``, one JSON object per line with
  ``premise``, ``hypothesis`` and ``label`` (``test.jsonl`` is unlabelled and ignored);
- a GLUE folder: ``train.tsv`` and ``dev.tsv``, tab-separated with a header row naming
  ``sentence1``, ``sentence2`` and ``label``;
- ``data=None``: RTE from the Hugging Face Hub through ``datasets.load_dataset``.

Labels are ``entailment`` / ``not_entailment`` or 0 / 1 (0 = entailment, the Hub's ids); any other
value is a :class:`~trainables.data.DataError` naming file, line and value. Because RTE's test
labels are hidden, the labelled validation set is split into two seeded halves
(:func:`split_validation`): ``eval`` to tune on and ``test`` to report on.

:func:`tokenize_rte` tokenises both labelled splits once and caches the token ids on disk under a
name that hashes the data, the tokenizer and the maximum length, so every Ray actor after the
first (and every trial an actor runs) only reads a file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from trainables.data import DataError
from trainables.data.text_classification import read_json_lines

LABELS = {"entailment": 0, "not_entailment": 1}
LABEL_NAMES = {0: "entailment", 1: "not_entailment"}
# (path, config, premise column, hypothesis column) of RTE on the Hugging Face Hub, tried in order.
# "nyu-mll/glue" and "aps/super_glue" are the current names of the "glue" and "super_glue" datasets;
# both hold the same 2,490 training and 277 validation pairs.
HUB_SOURCES = (
    ("nyu-mll/glue", "rte", "sentence1", "sentence2"),
    ("aps/super_glue", "rte", "premise", "hypothesis"),
)
SUPERGLUE_FILES = ("train.jsonl", "val.jsonl")
GLUE_FILES = ("train.tsv", "dev.tsv")
# Bump when the cached token layout changes, so old cache files are not read.
TOKEN_CACHE_VERSION = 1


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class RTESplit:
    """Labelled sentence pairs: ``premises[i]``, ``hypotheses[i]`` -> ``labels[i]`` (0 = entailment).

    Any other classification task (``trainables.data.text_classification``) fits too: the first
    text in ``premises``, the second (None for single-sentence tasks) in ``hypotheses``, class ids
    in ``labels``.
    """

    premises: list[str]
    hypotheses: list[str] | None
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RTEData:
    """The labelled training and validation pairs of RTE and where they came from."""

    train: RTESplit
    validation: RTESplit
    source: str
    # Class names by id: the model's num_labels and id2label.
    label_names: tuple[str, ...] = ("entailment", "not_entailment")

    def fingerprint(self) -> str:
        """A hash of every text and label and of the label names: the cache key's data part."""
        digest = hashlib.sha256()
        if self.label_names != tuple(LABEL_NAMES.values()):  # RTE's keys stay what they were
            digest.update(("\x1f".join(self.label_names) + "\x1d").encode())
        for split in (self.train, self.validation):
            hypotheses = split.hypotheses if split.hypotheses is not None else [None] * len(split)
            for premise, hypothesis, label in zip(split.premises, hypotheses, split.labels, strict=True):
                digest.update(f"{premise}\x1f{hypothesis}\x1f{int(label)}\x1e".encode())
            digest.update(b"\x1d")
        return digest.hexdigest()[:16]


def parse_label(raw: Any, where: str) -> int:
    """0 for ``entailment`` / 0, 1 for ``not_entailment`` / 1; else a DataError naming ``where``."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in (0, 1):
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text in LABELS:
            return LABELS[text]
        if text in ("0", "1"):
            return int(text)
    raise DataError(f"{where}: label {raw!r} is not one of entailment, not_entailment, 0, 1")


def _split(premises: list[str], hypotheses: list[str], labels: list[int], path: Path) -> RTESplit:
    if not labels:
        raise DataError(f"{path}: no sentence pairs")
    return RTESplit(premises, hypotheses, np.asarray(labels, dtype=np.int64))


def _text(value: Any, column: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: '{column}' must be a non-empty string, got {value!r}")
    return value


def read_jsonl(path: str | Path) -> RTESplit:
    """One SuperGLUE RTE file: a JSON object per line with ``premise``, ``hypothesis``, ``label``."""
    path = Path(path)
    premises, hypotheses, labels = [], [], []
    for where, row in read_json_lines(path):
        missing = [key for key in ("premise", "hypothesis", "label") if key not in row]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        premises.append(_text(row["premise"], "premise", where))
        hypotheses.append(_text(row["hypothesis"], "hypothesis", where))
        labels.append(parse_label(row["label"], where))
    return _split(premises, hypotheses, labels, path)


def read_tsv(path: str | Path) -> RTESplit:
    """One GLUE RTE file: tab-separated, a header row naming ``sentence1``, ``sentence2``, ``label``."""
    path = Path(path)
    premises, hypotheses, labels = [], [], []
    with open(path, encoding="utf-8", newline="") as handle:
        # GLUE's files contain unbalanced quote characters inside sentences: no quoting at all.
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header row with sentence1, sentence2, label)")
        missing = [column for column in ("sentence1", "sentence2", "label") if column not in header]
        if missing:
            raise DataError(
                f"{path}:1: header lacks column(s) {', '.join(missing)} (has {', '.join(header)})"
            )
        columns = {name: header.index(name) for name in ("sentence1", "sentence2", "label")}
        for fields in reader:
            where = f"{path}:{reader.line_num}"
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise DataError(f"{where}: expected {len(header)} tab-separated fields, got {len(fields)}")
            premises.append(_text(fields[columns["sentence1"]], "sentence1", where))
            hypotheses.append(_text(fields[columns["sentence2"]], "sentence2", where))
            labels.append(parse_label(fields[columns["label"]], where))
    return _split(premises, hypotheses, labels, path)


def load_task_folder(folder: str | Path, text_fields: Any = None, label_field: str | None = None) -> RTEData:
    """Any classification task in ``folder`` (``trainables.data.text_classification``), labels from its train file.

    Raises:
        DataError: no train/evaluation files, or a problem ``read_examples`` reports, a label in
            the evaluation file that training lacks, fewer than two labels.
    """
    from trainables.data import text_classification as tc

    folder = Path(folder)
    files = tc.find_files(folder)
    if files is None:
        raise DataError(f"{folder}: no RTE files and no training file (expected SuperGLUE train.jsonl + val.jsonl, "
                        "GLUE train.tsv + dev.tsv, or any task's train.csv/.tsv/.jsonl with dev, validation or val)")
    fields = tc.parse_text_fields(text_fields)
    train = tc.read_examples(files[0], fields, label_field)
    fields = train.text_fields  # the evaluation file is read with the fields the training file had
    evaluation = tc.read_examples(files[1], fields, label_field)
    names = tc.label_names(train.labels)
    if len(names) < 2:
        raise DataError(f"{files[0]}: one label ({names[0]!r}) in the training file; classification needs two")

    def split(examples: tc.Examples) -> RTESplit:
        second = [t[1] for t in examples.texts] if len(fields) == 2 else None
        return RTESplit([t[0] for t in examples.texts], second, tc.label_ids(examples, names, files[0]))

    source = f"{folder.resolve()} ({','.join(fields)} -> {label_field or tc.DEFAULT_LABEL_FIELD})"
    return RTEData(split(train), split(evaluation), source, names)


def _another_task(folder: Path) -> bool:
    """Whether ``folder`` holds no complete RTE file pair but another task's train + evaluation files."""
    from trainables.data import text_classification

    if any(all((folder / name).is_file() for name in pair) for pair in (SUPERGLUE_FILES, GLUE_FILES)):
        return False
    try:
        return text_classification.find_files(folder) is not None
    except DataError:  # a training file alone: RTE's messages say which file is missing
        return not any((folder / name).is_file() for name in (*SUPERGLUE_FILES, *GLUE_FILES))


def load_folder(folder: str | Path, text_fields: Any = None, label_field: str | None = None) -> RTEData:
    """RTE from a SuperGLUE (``train.jsonl``/``val.jsonl``) or GLUE (``train.tsv``/``dev.tsv``) folder.

    With ``text_fields`` or ``label_field``, or without RTE's file names, any classification task
    (:func:`load_task_folder`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    if text_fields is not None or label_field is not None or _another_task(folder):
        return load_task_folder(folder, text_fields, label_field)
    for (train_name, val_name), reader in ((SUPERGLUE_FILES, read_jsonl), (GLUE_FILES, read_tsv)):
        train, val = folder / train_name, folder / val_name
        if train.is_file() or val.is_file():
            missing = [str(p) for p in (train, val) if not p.is_file()]
            if missing:
                raise DataError(
                    f"{missing[0]}: file not found (an RTE folder needs both {train_name} and {val_name})"
                )
            return RTEData(reader(train), reader(val), str(folder.resolve()))
    raise DataError(
        f"{folder}: no RTE files (expected SuperGLUE train.jsonl + val.jsonl or GLUE train.tsv + dev.tsv)"
    )


def load_hub() -> RTEData:
    """RTE from the Hugging Face Hub (needs network access or a filled ``HF_DATASETS_CACHE``)."""
    import datasets

    failures = []
    for path, name, premise, hypothesis in HUB_SOURCES:
        try:
            loaded = datasets.load_dataset(path, name)
        except Exception as error:  # noqa: BLE001 - any failure (network, auth, format) means: try the next source
            failures.append(f"{path}/{name}: {type(error).__name__}: {_one_line(error)[:200]}")
            continue
        splits = []
        for split_name in ("train", "validation"):
            rows = loaded[split_name]
            labels = [
                parse_label(label, f"{path}/{name} {split_name}[{i}]")
                for i, label in enumerate(rows["label"])
            ]
            splits.append(
                RTESplit(list(rows[premise]), list(rows[hypothesis]), np.asarray(labels, dtype=np.int64))
            )
        return RTEData(splits[0], splits[1], f"hub:{path}/{name}")
    raise DataError(
        "RTE from the Hugging Face Hub could not be loaded ("
        + "; ".join(failures)
        + "); give --data DIR with train.jsonl + val.jsonl or train.tsv + dev.tsv"
    )


def load_rte(data: str | None, text_fields: Any = None, label_field: str | None = None) -> RTEData:
    """RTE (or another task: ``load_folder``) from a local folder (``data``) or, when None, RTE from the Hub."""
    if data is None:
        if text_fields is not None or label_field is not None:
            raise DataError("--text-fields/--label-field need --data FOLDER (the Hub source is RTE)")
        return load_hub()
    return load_folder(data, text_fields, label_field)


def split_validation(num_pairs: int, seed: int) -> dict[str, np.ndarray]:
    """Two disjoint seeded halves of the validation set: ``eval`` (tuned on) and ``test`` (reported).

    ``eval`` gets the extra pair when ``num_pairs`` is odd; the same seed always gives the same halves.
    """
    if num_pairs < 2:
        raise DataError(
            f"the validation set has {num_pairs} pair(s); splitting it into eval and test needs 2"
        )
    order = np.random.default_rng([int(seed), 5]).permutation(num_pairs)
    n_eval = num_pairs - num_pairs // 2
    return {"eval": np.sort(order[:n_eval]), "test": np.sort(order[n_eval:])}


def majority_accuracy(train_labels: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy on ``labels`` of always predicting the most frequent training label (any number of labels)."""
    majority = int(np.bincount(train_labels).argmax())
    return float(np.mean(labels == majority))


@dataclass(frozen=True)
class TokenizedSplit:
    """Token ids per pair (no padding; ``token_type_ids`` only for tokenizers that make them)."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TokenizedRTE:
    """Both labelled splits tokenised; ``from_cache`` says whether this process read them from disk."""

    train: TokenizedSplit
    validation: TokenizedSplit
    path: Path
    from_cache: bool
    label_names: tuple[str, ...] = ("entailment", "not_entailment")  # class names by id


def _label_names(arrays: Any) -> tuple[str, ...]:
    # Caches written before other tasks were supported hold RTE, whose names are the default.
    return tuple(str(n) for n in arrays["label_names"].tolist()) if "label_names" in arrays else tuple(
        LABEL_NAMES.values())


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides token ids: the tokenizer's class and full serialised state."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are per-call settings the backend remembers after a call: not identity.
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        state = json.dumps(state, sort_keys=True)
    else:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    digest = hashlib.sha256(type(tokenizer).__name__.encode() + state.encode())
    digest.update(json.dumps(sorted(map(str, tokenizer.all_special_tokens))).encode())
    return digest.hexdigest()[:16]


def _flatten(
    split_name: str, encoded: dict[str, list[list[int]]], labels: np.ndarray
) -> dict[str, np.ndarray]:
    ids = encoded["input_ids"]
    arrays = {
        f"{split_name}_offsets": np.cumsum([0] + [len(row) for row in ids]).astype(np.int64),
        f"{split_name}_ids": np.fromiter((t for row in ids for t in row), dtype=np.int32),
        f"{split_name}_labels": labels,
    }
    if "token_type_ids" in encoded:
        arrays[f"{split_name}_types"] = np.fromiter(
            (t for row in encoded["token_type_ids"] for t in row), dtype=np.int8
        )
    return arrays


def _unflatten(arrays: Any, split_name: str) -> TokenizedSplit:
    offsets = arrays[f"{split_name}_offsets"]
    ids = arrays[f"{split_name}_ids"]
    rows = [ids[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    types = None
    if f"{split_name}_types" in arrays:
        flat = arrays[f"{split_name}_types"]
        types = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    return TokenizedSplit(rows, types, np.asarray(arrays[f"{split_name}_labels"], dtype=np.int64))


def tokenize_rte(data: RTEData, tokenizer: Any, max_seq_length: int, cache_dir: str | Path) -> TokenizedRTE:
    """Token ids of both splits, read from the disk cache or computed (once) and stored there.

    The cache name hashes the data, the tokenizer and ``max_seq_length``; pairs are truncated to
    ``max_seq_length`` tokens but not padded (batches pad to their own longest pair).
    """
    key = hashlib.sha256(
        json.dumps(
            {
                "version": TOKEN_CACHE_VERSION,
                "data": data.fingerprint(),
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "max_seq_length": int(max_seq_length),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir) / "rte" / f"rte-tokens-L{int(max_seq_length)}-{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several Ray actors may start at once: one tokenises while the others wait, then they read
    # its file; the temporary name + rename means nobody reads half a file.
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                with np.load(path) as arrays:
                    return TokenizedRTE(
                        _unflatten(arrays, "train"), _unflatten(arrays, "validation"), path, True, _label_names(arrays)
                    )
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # unreadable: tokenise again below
        arrays: dict[str, np.ndarray] = {"label_names": np.array(data.label_names, dtype=str)}
        for split_name, split in (("train", data.train), ("validation", data.validation)):
            encoded = tokenizer(
                split.premises, split.hypotheses, truncation=True, max_length=int(max_seq_length)
            )
            arrays.update(_flatten(split_name, encoded, split.labels))
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    return TokenizedRTE(_unflatten(arrays, "train"), _unflatten(arrays, "validation"), path, False, data.label_names)


def read_token_cache(path: str | Path) -> TokenizedRTE:
    """The tokenised splits the driver's ``prepare`` wrote to ``path`` (trials read this, never the data)."""
    path = Path(path)
    try:
        with np.load(path) as arrays:
            return TokenizedRTE(_unflatten(arrays, "train"), _unflatten(arrays, "validation"), path, True,
                                _label_names(arrays))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"token cache {path} (written by the driver's prepare) is unreadable from this "
                        f"node ({type(error).__name__}); the cache folder must be shared by every node") from None
