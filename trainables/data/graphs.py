"""Crystal graphs for CGCNN: periodic neighbour search, atom features, Gaussian edge features.

The defaults follow the CGCNN paper (Xie & Grossman, 2018): an 8 Å cutoff, the 12 nearest
neighbours of every atom, and interatomic distances expanded on Gaussians 0.2 Å apart.

Featurisation is split in two so datasets can cache the expensive, parameter-independent part:
``neighbor_graph`` finds the edges and their lengths once; ``gaussian_expansion`` and
``atom_features`` turn them into tensors, vectorised over a whole dataset, at load time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch_geometric.data import Data
from tqdm import tqdm

from trainables.data.elements import MAX_ATOMIC_NUMBER, cgcnn_atom_feature_table

# The neighbour search lives in a module without torch, so worker processes start fast; re-exported here.
from trainables.neighbours import DEFAULT_MAX_NEIGHBORS, DEFAULT_RADIUS, NeighborGraph, graph_or_error, neighbor_graph

DEFAULT_GAUSSIAN_STEP = 0.2

# Part of every graph cache key: bump when neighbor_graph's output changes (e.g. tie order).
NEIGHBOUR_SEARCH_VERSION = 2

DEFAULT_ATOM_FEATURE_DIM = 91  # trainables.data.elements.ATOM_FEATURE_DIM


# Below this many atoms in all, starting worker processes (a few seconds each: they import torch)
# costs more than the search (about 4,000 15-atom slabs per second on one core).
MIN_PARALLEL_ATOMS = 200_000


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a Slurm allocation or taskset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def neighbor_graphs(
    structures: Sequence[Atoms],
    radius: float = DEFAULT_RADIUS,
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS,
    *,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "neighbour search",
) -> list[NeighborGraph | str]:
    """``neighbor_graph`` of every structure, in order, spread over ``workers`` processes when that pays.

    ``workers`` defaults to the CPUs this process may use (``available_cpus``); below
    ``MIN_PARALLEL_ATOMS`` atoms in all the search runs here. A structure that ``neighbor_graph``
    rejects gives its error message (a string) in its place, so the caller can name it. A tqdm
    bar shows progress when stderr is a terminal.
    """
    workers = available_cpus() if workers is None else max(1, int(workers))
    tasks = [(atoms, float(radius), int(max_neighbors)) for atoms in structures]
    bar = tqdm(total=len(tasks), desc=desc, unit="structure", disable=None if progress else True)
    with bar:
        if workers > 1 and sum(len(atoms) for atoms in structures) >= MIN_PARALLEL_ATOMS:
            try:
                # spawn, not fork: the driver has imported torch (and may hold threads) by now.
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                    results = []
                    chunk = max(1, min(256, len(tasks) // (16 * workers)))
                    for result in pool.map(graph_or_error, tasks, chunksize=chunk):
                        results.append(result)
                        bar.update(1)
                    return results
            except BrokenProcessPool:
                # A spawned worker re-imports the main script; one without an `if __name__ ==
                # "__main__"` guard cannot start workers. The result does not depend on where it runs.
                print("featurisation: worker processes could not start (main script without a __main__ "
                      "guard?); searching neighbours in this process", flush=True)
                bar.reset()
        results = []
        for task in tasks:
            results.append(graph_or_error(task))
            bar.update(1)
        return results


def gaussian_centers(radius: float = DEFAULT_RADIUS, step: float = DEFAULT_GAUSSIAN_STEP) -> np.ndarray:
    """Gaussian centres 0, step, ..., radius (41 for the defaults)."""
    return np.linspace(0.0, radius, int(round(radius / step)) + 1)


def gaussian_expansion(
    distances: np.ndarray | torch.Tensor,
    radius: float = DEFAULT_RADIUS,
    step: float = DEFAULT_GAUSSIAN_STEP,
    centers: torch.Tensor | None = None,
) -> torch.Tensor:
    """Expand distances [E] on Gaussians exp(-(d - mu)^2 / step^2), returning float32 [E, G].

    ``centers``: ``gaussian_centers(radius, step)`` as a float32 tensor on the distances' device,
    for callers that expand batch after batch on a GPU (made here, they would be uploaded each call).
    """
    d = torch.as_tensor(distances, dtype=torch.float32)
    if centers is None:
        centers = torch.as_tensor(gaussian_centers(radius, step), dtype=torch.float32)
    return torch.exp(-((d[:, None] - centers[None, :]) ** 2) / step**2)


def default_atom_feature_table() -> np.ndarray:
    """Feature row per atomic number 0..118, float32 [119, 91]: CGCNN's nine binned element properties.

    Group, period, electronegativity, covalent radius, valence electrons, first ionisation
    energy, electron affinity, block and atomic volume, computed from the mendeleev element
    database (see ``trainables/data/elements.py``). Row 0 is unused. A copy, safe to modify.
    """
    return cgcnn_atom_feature_table().copy()


def read_atom_init(path: str | Path) -> np.ndarray:
    """Read a CGCNN ``atom_init.json`` ({"Z": [floats]}) into a table indexed by atomic number.

    Elements missing from the file get a row of NaN so their use can be reported.

    Raises:
        ValueError: on malformed content (the caller adds the file name).
    """
    with open(path) as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict) or not raw:
        raise ValueError("expected a JSON object mapping atomic numbers to feature lists")
    rows = {int(z): np.asarray(vec, dtype=np.float32) for z, vec in raw.items()}
    widths = {row.shape for row in rows.values()}
    if len(widths) != 1 or len(next(iter(widths))) != 1:
        raise ValueError("feature vectors must be flat lists of equal length")
    table = np.full((MAX_ATOMIC_NUMBER + 1, len(next(iter(rows.values())))), np.nan, dtype=np.float32)
    for z, row in rows.items():
        if not 1 <= z <= MAX_ATOMIC_NUMBER:
            raise ValueError(f"atomic number {z} out of range")
        table[z] = row
    return table


def missing_elements(numbers: np.ndarray, table: np.ndarray) -> list[str]:
    """Symbols of elements in ``numbers`` that have no features in ``table``."""
    present = np.unique(numbers)
    return [chemical_symbols[z] for z in present if np.isnan(table[z]).any()]


@dataclass
class GraphArrays:
    """Many ``NeighborGraph``s concatenated, with one target each: the form datasets cache on disk.

    Graph ``g`` owns atoms ``atom_offsets[g]:atom_offsets[g+1]`` and edges
    ``edge_offsets[g]:edge_offsets[g+1]``; ``src``/``dst`` are local to their graph.
    """

    numbers: np.ndarray
    atom_offsets: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    distances: np.ndarray
    edge_offsets: np.ndarray
    targets: np.ndarray

    @classmethod
    def concatenate(cls, graphs: list[NeighborGraph], targets: list[float]) -> GraphArrays:
        """Stack per-structure graphs; compact dtypes keep the cache small."""
        atom_counts = [len(g.numbers) for g in graphs]
        edge_counts = [len(g.distances) for g in graphs]
        return cls(
            numbers=np.concatenate([g.numbers for g in graphs]).astype(np.int16),
            atom_offsets=np.concatenate([[0], np.cumsum(atom_counts)]).astype(np.int64),
            src=np.concatenate([g.src for g in graphs]).astype(np.int32),
            dst=np.concatenate([g.dst for g in graphs]).astype(np.int32),
            distances=np.concatenate([g.distances for g in graphs]).astype(np.float32),
            edge_offsets=np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64),
            targets=np.asarray(targets, dtype=np.float64),
        )

    def save(self, path: str | Path, metadata: list[dict]) -> None:
        """Write arrays and per-graph metadata (JSON) to an ``.npz`` file at ``path``."""
        with open(path, "wb") as handle:
            np.savez(handle, metadata=np.array(json.dumps(metadata)), **self.__dict__)

    @classmethod
    def load(cls, path: str | Path) -> tuple[GraphArrays, list[dict]]:
        """Read what ``save`` wrote."""
        with np.load(path) as stored:
            arrays = cls(**{name: stored[name] for name in cls.__dataclass_fields__})
            metadata = json.loads(str(stored["metadata"]))
        return arrays, metadata

    def __len__(self) -> int:
        return len(self.targets)


def build_graphs(
    arrays: GraphArrays,
    atom_table: np.ndarray,
    radius: float = DEFAULT_RADIUS,
    gaussian_step: float = DEFAULT_GAUSSIAN_STEP,
) -> list[Data]:
    """Turn concatenated neighbour graphs into ``Data`` objects, featurising all atoms and edges at once.

    Each ``Data`` holds views of shared tensors, which keeps loading a few thousand graphs fast.
    ``atom_table`` maps atomic number to a feature row.
    """
    x = torch.from_numpy(np.ascontiguousarray(atom_table[arrays.numbers.astype(np.int64)]))
    edge_dist = torch.from_numpy(arrays.distances.astype(np.float32))
    edge_attr = gaussian_expansion(edge_dist, radius, gaussian_step)
    edge_index = torch.from_numpy(np.stack([arrays.src, arrays.dst]).astype(np.int64))
    y = torch.as_tensor(arrays.targets, dtype=torch.float32)
    graphs = []
    for g in range(len(arrays)):
        a0, a1 = int(arrays.atom_offsets[g]), int(arrays.atom_offsets[g + 1])
        e0, e1 = int(arrays.edge_offsets[g]), int(arrays.edge_offsets[g + 1])
        graphs.append(
            Data(
                x=x[a0:a1],
                edge_index=edge_index[:, e0:e1],
                edge_attr=edge_attr[e0:e1],
                edge_dist=edge_dist[e0:e1],  # the lengths edge_attr expands (trainables/data/packed.py)
                y=y[g : g + 1],
                num_nodes=a1 - a0,
            )
        )
    return graphs


def atoms_to_graph(
    atoms: Atoms,
    target: float = 0.0,
    radius: float = DEFAULT_RADIUS,
    max_neighbors: int = DEFAULT_MAX_NEIGHBORS,
    gaussian_step: float = DEFAULT_GAUSSIAN_STEP,
    atom_table: np.ndarray | None = None,
) -> Data:
    """Featurise one structure: ``x`` [N, F], ``edge_index`` [2, E], ``edge_attr`` [E, G], ``y`` [1].

    ``atom_table`` maps atomic number to features (e.g. from ``read_atom_init``); the default
    is ``default_atom_feature_table()``.
    """
    graph = neighbor_graph(atoms, radius, max_neighbors)
    table = default_atom_feature_table() if atom_table is None else atom_table
    return build_graphs(GraphArrays.concatenate([graph], [target]), table, radius, gaussian_step)[0]
