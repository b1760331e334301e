"""User data in the CGCNN convention: a folder of ``<id>.cif`` files plus ``id_prop.csv``.

``id_prop.csv`` has rows ``id,target`` (no header in the original CGCNN; one header row is
accepted). An optional ``atom_init.json`` ({"Z": [floats]}) replaces the default atom features.
Every problem is reported as a ``DataError`` with one line naming the file (and line).
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import ase.io
import ase.io.cif
import numpy as np
from tqdm import tqdm

from trainables.data.errors import DataError
from trainables.data.graphs import (
    GraphArrays,
    default_atom_feature_table,
    missing_elements,
    neighbor_graphs,
    read_atom_init,
)

ID_PROP = "id_prop.csv"
ATOM_INIT = "atom_init.json"
# One structure each for train, validation and test.
MIN_STRUCTURES = 3
# Occupancies within this of 1 count as full (CIFs round, e.g. 0.9999).
OCCUPANCY_TOLERANCE = 1e-3


def _one_line(text: object) -> str:
    """Collapse an exception message so a DataError stays on one line."""
    return " ".join(str(text).split())


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def read_id_prop(folder: str | Path) -> list[tuple[str, float]]:
    """Validated ``(id, target)`` rows of ``folder/id_prop.csv``, each id with its CIF present.

    Raises:
        DataError: missing folder or file, malformed row, non-numeric target, missing CIF,
            or fewer than ``MIN_STRUCTURES`` rows.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    id_prop = folder / ID_PROP
    if not id_prop.is_file():
        raise DataError(f"{id_prop}: file not found (expected rows 'id,target', one per CIF file)")
    rows: list[tuple[str, float]] = []
    with open(id_prop, newline="") as handle:
        for line_number, fields in enumerate(csv.reader(handle), start=1):
            fields = [field.strip() for field in fields]
            if not any(fields):
                continue
            if len(fields) < 2:
                raise DataError(f"{id_prop}:{line_number}: expected 'id,target', got {','.join(fields)!r}")
            structure_id, target = fields[0], fields[1]
            cif = folder / f"{structure_id}.cif"
            where = f"{id_prop}:{line_number}"
            if not _is_number(target):
                # A first row whose "id" has no CIF is a header such as "id,target".
                if line_number == 1 and not rows and not cif.is_file():
                    continue
                raise DataError(f"{where}: target {target!r} for id {structure_id!r} is not a number")
            if not cif.is_file():
                raise DataError(f"{where}: no CIF file for id {structure_id!r} (expected {cif})")
            rows.append((structure_id, float(target)))
    if len(rows) < MIN_STRUCTURES:
        raise DataError(
            f"{id_prop}: {len(rows)} structure(s), at least {MIN_STRUCTURES} are needed to split into train/val/test"
        )
    return rows


def fingerprint(folder: str | Path, rows: list[tuple[str, float]]) -> str:
    """Hash of the folder path and the size and mtime of every file it uses: the featurisation cache key."""
    folder = Path(folder).resolve()
    parts = [str(folder)]
    for name in [ID_PROP, ATOM_INIT] + [f"{structure_id}.cif" for structure_id, _ in rows]:
        path = folder / name
        if path.is_file():
            stat = path.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def atom_feature_table(folder: str | Path) -> np.ndarray:
    """Features per atomic number: ``folder/atom_init.json`` if present, else the default table.

    Raises:
        DataError: unreadable or malformed ``atom_init.json``.
    """
    path = Path(folder) / ATOM_INIT
    if not path.is_file():
        return default_atom_feature_table()
    try:
        return read_atom_init(path)
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{path}: cannot read atom features ({_one_line(error)})") from error


def check_elements(folder: str | Path, rows: list[tuple[str, float]], arrays: GraphArrays, table: np.ndarray) -> None:
    """Raise ``DataError`` naming the first CIF with an element that ``table`` has no features for."""
    if not missing_elements(arrays.numbers, table):
        return
    for g, (structure_id, _) in enumerate(rows):
        numbers = arrays.numbers[arrays.atom_offsets[g] : arrays.atom_offsets[g + 1]]
        missing = missing_elements(numbers, table)
        if missing:
            raise DataError(
                f"{Path(folder) / (structure_id + '.cif')}: element(s) {', '.join(missing)} missing from "
                f"{Path(folder) / ATOM_INIT}"
            )


def partially_occupied_site(cif: Path) -> tuple[str, float] | None:
    """(label, occupancy) of the first site with occupancy below 1 in ``cif``, or None.

    ASE reads such a site as one of its species (a 0.5 Fe / 0.5 Co site becomes Co or Fe), so a
    disordered structure would silently become a different ordered one.
    """
    for block in ase.io.cif.parse_cif(str(cif)):
        occupancies = block.get("_atom_site_occupancy")
        if occupancies is None:
            continue
        labels = block.get("_atom_site_label") or block.get("_atom_site_type_symbol") or []
        for k, value in enumerate(occupancies):
            try:
                occupancy = float(str(value).split("(")[0])  # "0.50(2)": value with its uncertainty
            except ValueError:
                continue  # "?" or "." (unknown): CIF readers take full occupancy
            if occupancy < 1.0 - OCCUPANCY_TOLERANCE:
                return (str(labels[k]) if k < len(labels) else f"#{k + 1}"), occupancy
    return None


def featurise(
    folder: str | Path,
    rows: list[tuple[str, float]],
    radius: float,
    max_neighbors: int,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[GraphArrays, list[dict]]:
    """Read each row's CIF and find its neighbour graph (``neighbor_graphs``: over the CPUs, with a bar).

    Raises:
        DataError: a CIF that ASE cannot read or that holds no atoms.
    """
    structures = []
    for structure_id, _ in tqdm(rows, desc=f"reading {folder}", disable=None if progress else True):
        cif = Path(folder) / f"{structure_id}.cif"
        try:
            atoms = ase.io.read(cif, format="cif")
        except Exception as error:  # ASE raises many types for malformed CIFs
            raise DataError(f"{cif}: unreadable CIF ({type(error).__name__}: {_one_line(error)})") from error
        if len(atoms) == 0:
            raise DataError(f"{cif}: CIF contains no atoms")
        partial = partially_occupied_site(cif)
        if partial is not None:
            raise DataError(f"{cif}: site {partial[0]} has partial occupancy {partial[1]:g}; CGCNN needs ordered "
                            "structures (give an ordered supercell, one species per site)")
        structures.append(atoms)
    graphs = neighbor_graphs(structures, radius, max_neighbors, workers=workers, progress=progress,
                             desc=f"featurising {folder}")
    for (structure_id, _), graph in zip(rows, graphs, strict=True):
        if isinstance(graph, str):
            raise DataError(f"{Path(folder) / (structure_id + '.cif')}: {graph}")
    metadata = [{"id": structure_id} for structure_id, _ in rows]
    return GraphArrays.concatenate(graphs, [target for _, target in rows]), metadata
