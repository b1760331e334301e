"""A dataset's crystal graphs as a few flat tensors, and batches gathered from them by index.

CGCNN's training data is small per graph (tens of atoms) but a step touches many graphs, so
building each batch from Python ``Data`` objects (``Batch.from_data_list``) and copying it to the
device costs more than the step's arithmetic on a GPU. Here the whole dataset lives in a handful
of tensors on one device:

- ``atom_types`` [num_atoms]: the row of ``feature_table`` [T, F] holding each atom's features
  (T distinct feature rows: one per element present);
- ``edge_index`` [2, num_edges]: neighbour and centre atom of each edge, numbered within its graph;
- ``edge_dist`` [num_edges]: edge lengths in Å, expanded on Gaussians on the GPU only when a batch
  is built (1 float per edge held and moved instead of 41). On the CPU, where the exponentials would
  be the costliest part of building a batch and memory is not the GPU's, the expansion is computed
  once (as the ``Data`` objects hold it) and its rows gathered with the batch;
- ``atom_offsets`` / ``edge_offsets`` [num_graphs + 1] and ``targets`` [num_graphs].

:meth:`PackedGraphs.batches` gathers batches by graph index with a few vectorised indexing
operations on that device, with no host-device synchronisation (the batches' atom and edge totals
come from host copies of the per-graph counts). The result, a :class:`GraphBatch`, holds exactly
the fields and values ``Batch.from_data_list`` gives for the same graphs (tests/test_packed_data.py
compares them field by field).

Where the data is too large for the trial's share of GPU memory (:func:`choose_residence`), it stays
in host memory: batches are gathered there, staged in pinned memory and copied with
``non_blocking=True``, so the copy of one batch overlaps the GPU's work on the previous one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

from trainables.data.graphs import gaussian_centers, gaussian_expansion

# Data-resident on the GPU while it takes at most this share of the trial's GPU memory: the rest
# is for the model, its activations over a batch and the optimiser state.
DEVICE_DATA_FRACTION = 0.25


@dataclass
class GraphBatch:
    """A batch of graphs, with the fields (and values) of torch_geometric's ``Batch.from_data_list``.

    Attributes:
        x: atom features [num_atoms, F].
        edge_index: [2, num_edges], row 0 neighbour, row 1 centre, numbered within the batch.
        edge_attr: Gaussian-expanded edge lengths [num_edges, G].
        edge_dist: edge lengths in Å [num_edges].
        y: targets [num_graphs].
        batch: graph of each atom, 0..num_graphs-1 [num_atoms].
        ptr: first atom of each graph, then num_atoms [num_graphs + 1].
        num_graphs: the number of graphs (a Python int: reading it never synchronises a GPU).
        num_nodes: the number of atoms (a Python int).
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    edge_dist: torch.Tensor
    y: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    num_graphs: int
    num_nodes: int


def trial_memory_bytes(device: torch.device, share: float) -> int:
    """GPU memory the trial may use: the card's total times its ``share`` of the card (at most 1); 0 on the CPU."""
    if device.type != "cuda":
        return 0
    return int(torch.cuda.get_device_properties(device).total_memory * min(1.0, max(0.0, share)))


def choose_residence(data_bytes: int, device: torch.device, memory_bytes: int) -> tuple[torch.device, str]:
    """Where the packed data lives (its storage device) and a few words for the trial's device line.

    On the CPU: with the model. On a GPU: there too while ``data_bytes`` is at most
    ``DEVICE_DATA_FRACTION`` of the trial's ``memory_bytes``, else in host memory with pinned,
    non-blocking batch copies.
    """
    size = f"{data_bytes / 2**20:.1f} MiB"
    if device.type != "cuda":
        return device, f"data on the CPU ({size})"
    budget = DEVICE_DATA_FRACTION * memory_bytes
    if data_bytes <= budget:
        return device, f"data on the GPU ({size} of the trial's {memory_bytes / 2**30:.1f} GiB)"
    return torch.device("cpu"), (f"data in host memory, pinned non-blocking batch copies ({size} > "
                                 f"{DEVICE_DATA_FRACTION:g} of the trial's {memory_bytes / 2**30:.1f} GiB)")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a host tensor bound for a GPU goes through pinned memory, without blocking.

    torch's caching host allocator keeps the pinned block until the copy has finished, so the
    caller may drop the pinned tensor at once.
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class PackedGraphs:
    """Graphs as flat tensors on ``storage``; batches from :meth:`batches` are on ``device``.

    Args:
        graphs: ``Data`` objects with ``x`` [N, F], ``edge_index`` [2, E] (within the graph),
            ``edge_dist`` [E] and ``y`` [1] (what ``trainables.data.load_dataset`` builds).
        radius, gaussian_step: the Gaussian expansion of the edge lengths (``edge_attr``).
        device: where the model runs.
        storage: where the flat tensors live (default ``device``; see :func:`choose_residence`).
        expand_once: expand all edge lengths now rather than each batch's (default: on the CPU).
    """

    def __init__(self, graphs: list[Data], radius: float, gaussian_step: float, device: torch.device,
                 storage: torch.device | None = None, expand_once: bool | None = None) -> None:
        self.device = torch.device(device)
        self.storage = torch.device(storage) if storage is not None else self.device
        self.radius, self.gaussian_step = float(radius), float(gaussian_step)
        # Per-graph counts on the host: batch totals (output sizes) without asking the device.
        self.atom_counts = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        self.edge_counts = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
        x = torch.cat([g.x for g in graphs])
        # Atoms of one element share one feature row: keep the distinct rows and an index per atom.
        table, types = torch.unique(x, dim=0, return_inverse=True)
        store = self.storage
        self.feature_table = table.to(self.device)  # tiny ([elements, F]): always with the model
        self.atom_types = types.to(torch.int32).to(store)
        # Numbered within each graph, so they fit int32; widened when a batch is built.
        self.edge_index = torch.cat([g.edge_index for g in graphs], dim=1).to(torch.int32).to(store)
        self.edge_dist = torch.cat([g.edge_dist for g in graphs]).to(torch.float32).to(store)
        self.targets = torch.cat([g.y.view(-1) for g in graphs]).to(torch.float32).to(store)
        self.atom_offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(self.atom_counts)])).to(store)
        self.edge_offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(self.edge_counts)])).to(store)
        self.atom_count_t = torch.from_numpy(self.atom_counts).to(store)
        self.edge_count_t = torch.from_numpy(self.edge_counts).to(store)
        # Gaussian centres once, on the model's device (an upload per batch would block a GPU).
        self.centers = torch.as_tensor(gaussian_centers(radius, gaussian_step), dtype=torch.float32,
                                       device=self.device)
        # Expanded once where the model runs on the CPU (see the module docstring); else per batch.
        if expand_once is None:
            expand_once = self.device.type == "cpu"
        self.edge_attr = self._expand(self.edge_dist.to(self.device)).to(store) if expand_once else None

    def __len__(self) -> int:
        return len(self.atom_counts)

    @property
    def nbytes(self) -> int:
        """Bytes of the flat tensors (what :func:`choose_residence` weighs; a CPU's expansion aside)."""
        tensors = (self.atom_types, self.edge_index, self.edge_dist, self.targets, self.atom_offsets,
                   self.edge_offsets, self.atom_count_t, self.edge_count_t)
        return sum(t.numel() * t.element_size() for t in tensors)

    def _expand(self, edge_dist: torch.Tensor) -> torch.Tensor:
        return gaussian_expansion(edge_dist, self.radius, self.gaussian_step, centers=self.centers)

    @staticmethod
    def estimate_bytes(graphs: list[Data]) -> int:
        """What ``nbytes`` will be for ``graphs``, before any tensor is built."""
        atoms = sum(g.num_nodes for g in graphs)
        edges = sum(g.edge_index.shape[1] for g in graphs)
        graph_count = len(graphs)
        # int32 type per atom; int32 pair + float32 length per edge; per graph a float32 target, two
        # int64 counts and two int64 offsets (one more offset each).
        return 4 * atoms + (2 * 4 + 4) * edges + (4 + 2 * 8) * graph_count + 2 * 8 * (graph_count + 1)

    def batches(self, indices: np.ndarray, batch_size: int) -> Iterator[GraphBatch]:
        """Batches of the graphs ``indices`` (in that order), ``batch_size`` at a time (the last may be smaller).

        The indices go to the storage device once, not once per batch.
        """
        indices = np.asarray(indices, dtype=np.int64)
        on_storage = to_device(torch.from_numpy(indices), self.storage)
        for start in range(0, len(indices), batch_size):
            stop = min(len(indices), start + batch_size)
            yield self._gather(on_storage[start:stop], indices[start:stop])

    def batch(self, indices: np.ndarray) -> GraphBatch:
        """One batch of the graphs ``indices``, in that order."""
        return next(self.batches(indices, max(1, len(indices))))

    def _gather(self, index: torch.Tensor, host_index: np.ndarray) -> GraphBatch:
        """Gather graphs ``index`` (on the storage device; ``host_index`` the same on the host)."""
        num_graphs = len(host_index)
        num_atoms = int(self.atom_counts[host_index].sum())
        num_edges = int(self.edge_counts[host_index].sum())
        store = self.storage
        graph_ids = torch.arange(num_graphs, device=store)
        atom_counts, edge_counts = self.atom_count_t[index], self.edge_count_t[index]
        ptr = torch.zeros(num_graphs + 1, dtype=torch.int64, device=store)
        torch.cumsum(atom_counts, 0, out=ptr[1:])
        edge_ptr = torch.cumsum(edge_counts, 0) - edge_counts
        # Graph of each atom and edge of the batch; output_size keeps repeat_interleave from reading
        # the counts back from the device.
        atom_graph = torch.repeat_interleave(graph_ids, atom_counts, output_size=num_atoms)
        edge_graph = torch.repeat_interleave(graph_ids, edge_counts, output_size=num_edges)
        # Position in the dataset = position in the batch + (graph's first in dataset - its first in batch).
        atoms = torch.arange(num_atoms, device=store) + (self.atom_offsets[index] - ptr[:-1])[atom_graph]
        edges = torch.arange(num_edges, device=store) + (self.edge_offsets[index] - edge_ptr)[edge_graph]
        edge_index = self.edge_index[:, edges].to(torch.int64) + ptr[:-1][edge_graph]
        moved = [to_device(t, self.device) for t in
                 (self.atom_types[atoms], edge_index, self.edge_dist[edges], self.targets[index], atom_graph, ptr)]
        types, edge_index, edge_dist, y, atom_graph, ptr = moved
        return GraphBatch(
            x=self.feature_table[types.to(torch.int64)],
            edge_index=edge_index,
            edge_attr=self.edge_attr[edges] if self.edge_attr is not None else self._expand(edge_dist),
            edge_dist=edge_dist,
            y=y,
            batch=atom_graph,
            ptr=ptr,
            num_graphs=num_graphs,
            num_nodes=num_atoms,
        )
