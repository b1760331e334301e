"""Graph datasets for the CGCNN trainable: the built-in EMT adsorption set, a user's CIF folder or ASE file.

``load_dataset`` is the one entry point. Featurised neighbour graphs are cached on disk (in
``cache_dir``, default ``$HPO_SUITE_CACHE`` or ``~/.cache/hpo-suite``) under a name that hashes
every parameter they depend on, so a second call, in this process or in another Ray actor, only
reads a file. The Gaussian expansion of edge lengths is done at load time, vectorised, which
keeps the cache small and lets ``gaussian_step`` change without rebuilding.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock
from torch_geometric.data import Data

from trainables.cache import default_cache_dir
from trainables.data import adsorption, ase_files, cif_folder
from trainables.data.errors import DataError
from trainables.data.graphs import (
    NEIGHBOUR_SEARCH_VERSION,
    GraphArrays,
    build_graphs,
    default_atom_feature_table,
    gaussian_centers,
)

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SPLITS = ("random", "by_slab")


@dataclass
class GraphDataset:
    """Featurised structures with targets, baseline groups and a fixed train/val/test split.

    Attributes:
        graphs: one ``Data`` per structure with ``x`` [N, node_feature_dim], ``edge_index`` [2, E]
            (neighbour -> centre), ``edge_attr`` [E, edge_feature_dim], ``edge_dist`` [E] (the
            lengths ``edge_attr`` expands) and ``y`` [1].
        groups: baseline group key per graph: "metal|adsorbate" (built-in) or "all" (user data).
        splits: "train" / "val" / "test" -> indices into ``graphs``, disjoint.
        source: "builtin:<parameters>" or the data folder's or file's path.
        node_feature_dim: atom feature length.
        edge_feature_dim: number of Gaussians.
        metadata: per-graph details (built-in: metal, dopant, adsorbate, facet, site, slab,
            binding_distance; user: id, and split where a split key gave one).
        from_cache: True when the graphs were read from the disk cache rather than computed.
        atom_table: the atom feature table ``x`` was built from (row per atomic number), the one a
            saved model must featurise new structures with.
    """

    graphs: list[Data]
    groups: list[str]
    splits: dict[str, np.ndarray]
    source: str
    node_feature_dim: int
    edge_feature_dim: int
    metadata: list[dict] = field(default_factory=list)
    from_cache: bool = False
    atom_table: np.ndarray | None = None

    def subset(self, split: str) -> list[Data]:
        """The graphs of ``split`` ("train", "val" or "test")."""
        return [self.graphs[i] for i in self.splits[split]]


def split_indices(num_graphs: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded 70/15/15 split; validation and test get at least one structure each."""
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * num_graphs))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * num_graphs))
    if num_graphs - n_val - n_test < 1:
        raise ValueError(f"{num_graphs} structures cannot be split into train/val/test")
    order = np.random.default_rng([seed, 7]).permutation(num_graphs)
    return {
        "train": np.sort(order[n_val + n_test :]),
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
    }


def split_by_group(groups: list, seed: int) -> dict[str, np.ndarray]:
    """Seeded split that keeps every group (e.g. one slab's structures) in one of train/val/test.

    Whole groups, in a seeded order, go to validation until it holds ``SPLIT_FRACTIONS["val"]``
    of the structures, then to test, the rest to train; so val and test measure unseen groups.
    """
    keys = sorted(set(groups), key=str)
    if len(keys) < 3:
        raise ValueError(f"{len(keys)} group(s) cannot be split into train/val/test")
    members: dict = {key: [] for key in keys}
    for i, key in enumerate(groups):
        members[key].append(i)
    order = np.random.default_rng([seed, 7]).permutation(len(keys))
    targets = {"val": SPLIT_FRACTIONS["val"] * len(groups), "test": SPLIT_FRACTIONS["test"] * len(groups)}
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for position, k in enumerate(order):
        # Fill val, then test, never leaving train without a group.
        split = next((name for name in ("val", "test") if len(parts[name]) < targets[name]), "train")
        if position == len(order) - 1 and not parts["train"]:
            split = "train"
        parts[split].extend(members[keys[k]])
    return {name: np.sort(np.array(indices, dtype=int)) for name, indices in parts.items()}


def _load_or_build(
    path: Path, build: Callable[[], tuple[GraphArrays, list[dict]]]
) -> tuple[GraphArrays, list[dict], bool]:
    """Read the cached arrays at ``path``, or build and store them; returns (arrays, metadata, from_cache).

    Several Ray actors may ask at once: the lock lets one build while the others wait and then
    read its file, and writing to a temporary name then renaming means nobody reads half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            try:
                arrays, metadata = GraphArrays.load(path)
                return arrays, metadata, True
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # unreadable (e.g. written by an older version): rebuild below
        arrays, metadata = build()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays.save(temporary, metadata)
        os.replace(temporary, path)
        return arrays, metadata, False


def _parameter_hash(parameters: dict) -> str:
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]


def load_dataset(
    data: str | None = None,
    *,
    num_structures: int = 2000,
    seed: int = 0,
    radius: float = 8.0,
    max_neighbors: int = 12,
    gaussian_step: float = 0.2,
    cache_dir: str | None = None,
    progress: bool = True,
    split: str = "random",
    target: str | None = None,
    split_key: str | None = None,
) -> GraphDataset:
    """Load the built-in EMT adsorption dataset (``data=None``), a CGCNN-style CIF folder or an ASE file.

    An ASE file (``.db``, ``.extxyz``, ``.xyz``, ``.traj``; see ``ase_files``): ``target`` names
    the key holding each structure's target (default ``energy``: the stored calculator energy),
    ``split_key`` a key whose values (train, val, test) give the split; without it the split is
    the seeded random one. Reading and featurising happen once: the graphs are cached under the
    file's path, size and modification time and both keys.

    ``num_structures`` applies to the built-in set only; ``seed`` seeds its generator and, for
    both sources, the split. ``radius``, ``max_neighbors`` and ``gaussian_step`` are the
    featurisation parameters (CGCNN defaults). ``split``: "random" (structures, 70/15/15) or
    "by_slab" (built-in data only: whole slabs go to one split, so validation and test MAE measure
    surfaces the model has not seen).

    Raises:
        DataError: for problems in a user's data folder, or an unknown or inapplicable ``split``.
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if split == "by_slab" and data is not None:
        raise DataError(f"{data}: split 'by_slab' needs the built-in dataset (a CIF folder has no slab ids)")
    ase_file = data is not None and (ase_files.is_ase_file(data) or Path(data).is_file())
    for flag, value in (("--target", target), ("--split-key", split_key)):
        if value is not None and not ase_file:
            raise DataError(f"{flag} {value}: applies to ASE data files ({', '.join(ase_files.ASE_SUFFIXES)}), "
                            f"not to {'the built-in dataset' if data is None else 'a CIF folder'}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    graph_parameters = {"radius": float(radius), "max_neighbors": int(max_neighbors)}
    versions = {"neighbour_search": NEIGHBOUR_SEARCH_VERSION}  # in the cache keys, not in ``source``
    if data is None:
        parameters = {"num_structures": int(num_structures), "seed": int(seed), **graph_parameters}
        key = _parameter_hash({"generator_version": adsorption.GENERATOR_VERSION, **versions, **parameters})
        path = cache / f"emt-adsorption-n{num_structures}-seed{seed}-{key}.npz"
        arrays, metadata, from_cache = _load_or_build(
            path, lambda: adsorption.generate(num_structures, seed, radius, max_neighbors, progress)
        )
        table = default_atom_feature_table()
        groups = [f"{m['metal']}|{m['adsorbate']}" for m in metadata]
        described = {**parameters, "gaussian_step": gaussian_step}
        if split != "random":
            described["split"] = split
        source = "builtin:" + ",".join(f"{name}={value}" for name, value in described.items())
    elif ase_file:
        target = ase_files.DEFAULT_TARGET if target is None else target
        if not Path(data).is_file():
            raise DataError(f"{data}: data file not found")
        key = _parameter_hash({"file": ase_files.fingerprint(data, target, split_key), **versions,
                               **graph_parameters})
        path = cache / f"ase-{Path(data).resolve().name}-{key}.npz"
        arrays, metadata, from_cache = _load_or_build(
            path,
            lambda: ase_files.featurise(
                data, ase_files.read_structures(data, target, split_key, progress=progress), radius, max_neighbors,
                progress,
            ),
        )
        # atom_init.json beside the file replaces the default features, as in a CIF folder.
        table = cif_folder.atom_feature_table(Path(data).parent)
        ase_files.check_elements(data, metadata, arrays, table)
        groups = ["all"] * len(arrays)
        source = str(data)
    else:
        rows = cif_folder.read_id_prop(data)
        key = _parameter_hash({"folder": cif_folder.fingerprint(data, rows), **versions, **graph_parameters})
        path = cache / f"cif-{Path(data).resolve().name}-{key}.npz"
        arrays, metadata, from_cache = _load_or_build(
            path, lambda: cif_folder.featurise(data, rows, radius, max_neighbors, progress)
        )
        table = cif_folder.atom_feature_table(data)
        cif_folder.check_elements(data, rows, arrays, table)
        groups = ["all"] * len(arrays)
        source = str(data)
    if split == "by_slab":
        splits = split_by_group([m["slab"] for m in metadata], seed)
    elif split_key is not None:
        splits = ase_files.predefined_split(metadata)
    else:
        splits = split_indices(len(arrays), seed)
    return GraphDataset(
        graphs=build_graphs(arrays, table, radius, gaussian_step),
        groups=groups,
        splits=splits,
        source=source,
        node_feature_dim=int(table.shape[1]),
        edge_feature_dim=len(gaussian_centers(radius, gaussian_step)),
        metadata=metadata,
        from_cache=from_cache,
        atom_table=table,
    )


def baseline_mae(dataset: GraphDataset, split: str = "val") -> float:
    """MAE on ``split`` of predicting each group's mean TRAIN target (unseen group: global train mean)."""
    targets = np.array([float(g.y[0]) for g in dataset.graphs])
    train = dataset.splits["train"]
    sums: dict[str, list[float]] = {}
    for i in train:
        sums.setdefault(dataset.groups[i], []).append(targets[i])
    group_means = {group: float(np.mean(values)) for group, values in sums.items()}
    global_mean = float(np.mean(targets[train]))
    indices = dataset.splits[split]
    predictions = np.array([group_means.get(dataset.groups[i], global_mean) for i in indices])
    return float(np.mean(np.abs(predictions - targets[indices])))


__all__ = ["DataError", "GraphDataset", "baseline_mae", "default_cache_dir", "load_dataset", "split_by_group",
           "split_indices"]
