"""Periodic neighbour search for crystal graphs: each atom's nearest neighbours within a cutoff.

Apart from ``trainables.data`` (whose package imports torch and torch_geometric) so that the
worker processes ``trainables.data.graphs.neighbor_graphs`` spawns import only numpy, ASE and
matscipy: a worker starts in well under a second instead of several. Use it through
``trainables.data.graphs``, which re-exports ``neighbor_graph`` and ``NeighborGraph``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list

DEFAULT_RADIUS = 8.0
DEFAULT_MAX_NEIGHBORS = 12
# Distances equal to this many decimals count as ties, broken by neighbour index and image.
_TIE_DECIMALS = 8


@dataclass
class NeighborGraph:
    """Edges of one structure, before featurisation.

    Attributes:
        numbers: atomic numbers, shape [N].
        src: index of the neighbour (message sender) of each edge, shape [E].
        dst: index of the centre atom (message receiver) of each edge, shape [E].
        distances: edge lengths in Å (periodic images included), shape [E].
    """

    numbers: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    distances: np.ndarray


def neighbor_graph(
    atoms: Atoms, radius: float = DEFAULT_RADIUS, max_neighbors: int = DEFAULT_MAX_NEIGHBORS
) -> NeighborGraph:
    """Find each atom's ``max_neighbors`` nearest neighbours within ``radius`` Å.

    Periodic images are searched along the cell vectors flagged in ``atoms.pbc`` (slabs: x and y),
    by matscipy's ``neighbour_list`` (the same interface and result as ASE's ``neighbor_list``, in C:
    1.7x the previous hand-written numpy search on 15-atom slabs, 40x on an 864-atom cell). An
    atom may neighbour a periodic image of itself, as in CGCNN. Atoms with fewer neighbours in
    range keep fewer edges (no padding). Edges point neighbour -> centre, each centre's edges
    nearest first; equal distances (to ``_TIE_DECIMALS`` decimals, e.g. a symmetric shell cut
    by ``max_neighbors``) are ordered by neighbour index, then image, so the chosen neighbours
    do not depend on floating-point noise.

    Raises:
        ValueError: when a periodic direction has a degenerate cell.
    """
    numbers = atoms.get_atomic_numbers().astype(np.int64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and abs(np.linalg.det(np.asarray(atoms.cell[:], dtype=float))) < 1e-8:
        raise ValueError("periodic structure with a degenerate (zero-volume) cell")
    if pbc.any():
        centre, neighbour, distance, shift = neighbour_list("ijdS", atoms, float(radius))
    else:
        # A molecule: matscipy needs an invertible cell to bin atoms in; the file's cell (often
        # zero) plays no part without periodicity, so use a box around the atoms.
        low, high = atoms.positions.min(axis=0), atoms.positions.max(axis=0)
        centre, neighbour, distance, shift = neighbour_list(
            "ijdS", positions=atoms.positions, cell=np.diag(high - low + 1.0), cell_origin=low - 0.5,
            pbc=pbc, numbers=numbers.astype(np.int32), cutoff=float(radius),
        )
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], neighbour, np.round(distance, _TIE_DECIMALS), centre))
    centre, neighbour, distance = centre[order], neighbour[order], distance[order]
    # Rank of each edge within its centre's list (edges are grouped by centre after the sort).
    first = np.searchsorted(centre, np.arange(len(numbers)))
    keep = np.arange(len(centre)) - first[centre] < max_neighbors
    return NeighborGraph(
        numbers=numbers,
        src=neighbour[keep].astype(np.int64),
        dst=centre[keep].astype(np.int64),
        distances=distance[keep].astype(np.float32),
    )


def graph_or_error(task: tuple[Atoms, float, int]) -> NeighborGraph | str:
    """Module-level so worker processes can unpickle it; an error comes back as its one-line text."""
    try:
        return neighbor_graph(*task)
    except ValueError as error:
        return " ".join(str(error).split())
