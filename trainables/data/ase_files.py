"""User data in the files DFT results usually live in: an ASE database, extended XYZ or an ASE trajectory.

``--data FILE`` with one of ``ASE_SUFFIXES``:

- ``.db``: an ASE database (``ase.db``; SQLite or JSON back end). A row's target is its key-value
  pair ``KEY``, or its stored calculator energy when ``KEY`` is ``energy`` (the default).
- ``.extxyz`` / ``.xyz``: extended XYZ, read with ASE's ``extxyz`` reader. A frame's target is
  the ``info`` entry ``KEY`` (a ``KEY=value`` pair on its comment line), or the calculator energy
  ASE reads from ``energy=...`` when ``KEY`` is ``energy``.
- ``.traj``: an ASE trajectory; targets as for extended XYZ.

Ids: a ``sid`` key where present (OC20's system id), else an ``id`` key (XYZ and trajectories; in
a database ``id`` is the row id), else the row id (databases) or the frame index from 0. A
duplicate id is an error naming both rows. An optional split key (``split_key``, values
``train``, ``val``, ``test``) gives a predefined split. Every problem is a ``DataError``, one line
naming the file and the row: a missing or non-finite target, a periodic frame without a cell,
a split value other than train/val/test, an element the atom features lack.

Public functions, shared with prediction on new data (``experiments/predict.py``):
``read_structures`` (validated rows with their ``Atoms``) and ``featurise`` (their neighbour
graphs, spread over the CPUs).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.db
import ase.io
import numpy as np
from ase import Atoms
from tqdm import tqdm

from trainables.data.errors import DataError
from trainables.data.graphs import GraphArrays, missing_elements, neighbor_graphs

ASE_SUFFIXES = (".db", ".extxyz", ".xyz", ".traj")
SPLIT_VALUES = ("train", "val", "test")
DEFAULT_TARGET = "energy"
# One structure each for train, validation and test.
MIN_STRUCTURES = 3


@dataclass
class StructureRow:
    """One structure of an ASE file: where it is (``where``: "row 7" or "frame 3"), id, target, split."""

    where: str
    id: str
    atoms: Atoms
    target: float
    split: str | None


def is_ase_file(data: str | Path) -> bool:
    """Whether ``data`` names a file this module reads (by suffix)."""
    return Path(data).suffix.lower() in ASE_SUFFIXES


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _frames(path: Path, progress: bool) -> list[tuple[str, Atoms, dict[str, Any], int | None]]:
    """(where, atoms, key-value pairs, database row id) of every structure in ``path``, in file order."""
    suffix = path.suffix.lower()
    bar = {"desc": f"reading {path}", "unit": "structure", "disable": None if progress else True}
    out = []
    try:
        if suffix == ".db":
            with ase.db.connect(str(path)) as database:
                for row in tqdm(database.select(), total=database.count(), **bar):
                    values = dict(row.key_value_pairs)
                    if row.get("energy") is not None:
                        values.setdefault("energy", row.energy)
                    out.append((f"row id={row.id}", row.toatoms(), values, int(row.id)))
        else:
            frames = ase.io.iread(str(path), index=":", format="extxyz" if suffix != ".traj" else "traj")
            for index, atoms in enumerate(tqdm(frames, **bar)):
                values = dict(atoms.info)
                results = getattr(atoms.calc, "results", None) or {}
                if "energy" in results:
                    values.setdefault("energy", results["energy"])
                out.append((f"frame {index}", atoms, values, None))
    except DataError:
        raise
    except Exception as error:  # ASE's readers raise many types for malformed files
        raise DataError(f"{path}: unreadable ({type(error).__name__}: {_one_line(error)})") from error
    return out


def _structure_id(values: dict[str, Any], row_id: int | None, index: int) -> str:
    if values.get("sid") is not None:
        return str(values["sid"])
    if row_id is None and values.get("id") is not None:
        return str(values["id"])
    return str(row_id if row_id is not None else index)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN or infinite)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(np.asarray(value).item()) if np.ndim(value) == 0 else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def read_structures(
    path: str | Path,
    target: str = DEFAULT_TARGET,
    split_key: str | None = None,
    *,
    require_target: bool = True,
    progress: bool = True,
) -> list[StructureRow]:
    """Validated structures of an ASE database, extended XYZ or trajectory file.

    ``target``: the key-value pair / ``info`` entry holding the target, or ``energy`` (the stored
    calculator energy where the file has one). ``split_key``: a key whose values (train, val,
    test) give a predefined split. ``require_target=False`` (prediction on new data) reads
    structures without targets (``target`` NaN where missing).

    Raises:
        DataError: missing file, unknown suffix, unreadable file, a missing or non-finite target,
            a periodic frame without a cell, a bad split value, a duplicate id, an empty file, or
            (with ``require_target``) fewer than ``MIN_STRUCTURES`` structures.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if not is_ase_file(path):
        raise DataError(f"{path}: unknown data file type (expected one of {', '.join(ASE_SUFFIXES)}, "
                        "or a folder of CIFs with id_prop.csv)")
    rows: list[StructureRow] = []
    first_row: dict[str, str] = {}
    for index, (where, atoms, values, row_id) in enumerate(_frames(path, progress)):
        located = f"{path}: {where}"
        if len(atoms) == 0:
            raise DataError(f"{located}: no atoms")
        if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-8:
            raise DataError(f"{located}: periodic (pbc={''.join('T' if p else 'F' for p in atoms.pbc)}) "
                            "but without a cell (give the lattice, or pbc=False for a molecule)")
        value = _number(values.get(target))
        if value is None and (require_target or target in values):
            if target not in values:
                keys = sorted(str(key) for key in values if _number(values[key]) is not None)
                raise DataError(f"{located}: no target {target!r} (numeric keys here: {', '.join(keys) or 'none'}; "
                                "choose one with --target)")
            shown = values[target].item() if isinstance(values[target], np.generic) else values[target]
            raise DataError(f"{located}: target {target!r} = {shown!r} is not a finite number")
        split = None
        if split_key is not None:
            split = values.get(split_key)
            if split not in SPLIT_VALUES:
                raise DataError(f"{located}: split key {split_key!r} = {split!r} (expected one of "
                                f"{', '.join(SPLIT_VALUES)})")
        structure_id = _structure_id(values, row_id, index)
        if structure_id in first_row:
            raise DataError(f"{path}: duplicate id {structure_id!r} ({first_row[structure_id]} and {where})")
        first_row[structure_id] = where
        atoms.calc = None  # the graph needs positions only; drops stored forces and stress
        rows.append(StructureRow(where, structure_id, atoms, math.nan if value is None else value, split))
    if not rows:
        raise DataError(f"{path}: no structures")
    if require_target and len(rows) < MIN_STRUCTURES:
        raise DataError(f"{path}: {len(rows)} structure(s), at least {MIN_STRUCTURES} are needed to split "
                        "into train/val/test")
    if require_target and split_key is not None:
        empty = [name for name in SPLIT_VALUES if not any(row.split == name for row in rows)]
        if empty:
            raise DataError(f"{path}: split key {split_key!r} gives no {' or '.join(empty)} structure")
    return rows


def fingerprint(path: str | Path, target: str, split_key: str | None) -> str:
    """Hash of the file's path, size and mtime and of the target and split keys: the cache key's data part."""
    path = Path(path).resolve()
    stat = path.stat()
    text = f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{target}:{split_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def featurise(
    path: str | Path,
    rows: list[StructureRow],
    radius: float,
    max_neighbors: int,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[GraphArrays, list[dict]]:
    """Neighbour graphs of ``rows`` (over the CPUs, with a progress bar) and their metadata (id, where, split).

    Raises:
        DataError: a structure the neighbour search rejects, naming its row.
    """
    graphs = neighbor_graphs([row.atoms for row in rows], radius, max_neighbors, workers=workers,
                             progress=progress, desc=f"featurising {path}")
    for row, graph in zip(rows, graphs, strict=True):
        if isinstance(graph, str):
            raise DataError(f"{path}: {row.where} (id {row.id}): {graph}")
    metadata = [{"id": row.id, "where": row.where, **({"split": row.split} if row.split is not None else {})}
                for row in rows]
    return GraphArrays.concatenate(graphs, [row.target for row in rows]), metadata


def check_elements(path: str | Path, metadata: list[dict], arrays: GraphArrays, table: np.ndarray) -> None:
    """Raise ``DataError`` naming the first structure with an element that ``table`` has no features for."""
    if not missing_elements(arrays.numbers, table):
        return
    for g, meta in enumerate(metadata):
        missing = missing_elements(arrays.numbers[arrays.atom_offsets[g] : arrays.atom_offsets[g + 1]], table)
        if missing:
            raise DataError(f"{path}: {meta['where']} (id {meta['id']}): element(s) {', '.join(missing)} missing "
                            f"from {Path(path).parent / 'atom_init.json'}")


def predefined_split(metadata: list[dict]) -> dict[str, np.ndarray]:
    """Indices per split from each structure's ``split`` (from the split key)."""
    return {
        name: np.array([g for g, meta in enumerate(metadata) if meta.get("split") == name], dtype=int)
        for name in SPLIT_VALUES
    }
