"""Packed CGCNN data (trainables/data/packed.py): batches gathered by index equal Batch.from_data_list's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from torch_geometric.data import Batch

from trainables.data import packed
from trainables.data.graphs import (
    GraphArrays,
    build_graphs,
    default_atom_feature_table,
    gaussian_expansion,
    neighbor_graph,
)
from trainables.data.packed import GraphBatch, PackedGraphs, choose_residence, to_device, trial_memory_bytes

RADIUS, STEP = 6.0, 0.2


def structures() -> list[Atoms]:
    """Different sizes, elements and periodicity, so offsets, types and edge counts all vary."""
    slab = fcc111("Pt", size=(2, 2, 3), vacuum=6.0)
    with_co = slab.copy() + molecule("CO", positions=[(1.0, 1.5, slab.positions[:, 2].max() + 1.9),
                                                      (1.0, 1.5, slab.positions[:, 2].max() + 3.05)])
    return [bulk("Cu", "fcc", a=3.6), with_co, bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1), slab,
            fcc111("Ni", size=(1, 1, 2), vacuum=5.0), bulk("Fe", "bcc", a=2.87, cubic=True)]


@pytest.fixture(scope="module")
def graphs():
    atoms = structures()
    arrays = GraphArrays.concatenate([neighbor_graph(a, RADIUS, 8) for a in atoms],
                                     [-0.1 * (i + 1) for i in range(len(atoms))])
    return build_graphs(arrays, default_atom_feature_table(), RADIUS, STEP)


def assert_same_batch(ours: GraphBatch, reference: Batch) -> None:
    """Every field Batch.from_data_list makes, bit for bit (dtype and shape included)."""
    assert set(reference.keys()) == {"x", "edge_index", "edge_attr", "edge_dist", "y", "batch", "ptr", "num_nodes"}
    for key in reference.keys():
        expected, got = reference[key], getattr(ours, key)
        if key == "num_nodes":
            assert got == expected
            continue
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        assert torch.equal(got, expected), key
    assert ours.num_graphs == reference.num_graphs


@pytest.mark.parametrize(("storage", "expand_once"), [(None, None), ("cpu", False)])
def test_gathered_batches_equal_batch_from_data_list(graphs, storage, expand_once) -> None:
    """Both ways to the Gaussian features: expanded once (the CPU's default), or per batch (a GPU's)."""
    data = PackedGraphs(graphs, RADIUS, STEP, torch.device("cpu"), storage=storage, expand_once=expand_once)
    assert (data.edge_attr is None) == (expand_once is False)
    assert len(data) == len(graphs)
    rng = np.random.default_rng(0)
    orders = [np.arange(len(graphs)), rng.permutation(len(graphs)), np.array([3]), np.array([5, 1, 5, 0])]
    for order in orders:
        assert_same_batch(data.batch(order), Batch.from_data_list([graphs[i] for i in order]))
    # Batches of an epoch: consecutive slices of the order, the last one shorter.
    order = rng.permutation(len(graphs))
    batches = list(data.batches(order, 4))
    assert [b.num_graphs for b in batches] == [4, 2]
    for k, ours in enumerate(batches):
        assert_same_batch(ours, Batch.from_data_list([graphs[i] for i in order[4 * k : 4 * k + 4]]))


def test_packed_data_keeps_a_distance_per_edge_and_one_feature_row_per_element(graphs) -> None:
    data = PackedGraphs(graphs, RADIUS, STEP, torch.device("cpu"), expand_once=False)
    edges = sum(g.edge_index.shape[1] for g in graphs)
    assert data.edge_dist.shape == (edges,)  # not [E, 41]
    elements = {"Cu", "Pt", "C", "O", "Na", "Cl", "Ni", "Fe"}
    assert data.feature_table.shape == (len(elements), graphs[0].x.shape[1])
    assert data.nbytes == PackedGraphs.estimate_bytes(graphs)
    # The expansion of the gathered distances is the one the Data objects carry.
    torch.testing.assert_close(gaussian_expansion(data.edge_dist, RADIUS, STEP, centers=data.centers),
                               torch.cat([g.edge_attr for g in graphs]), rtol=0, atol=0)


def test_residence_on_the_gpu_while_the_data_fits_its_share() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    storage, line = choose_residence(10 * 2**20, cpu, 0)
    assert storage == cpu and line == "data on the CPU (10.0 MiB)"
    gib = 2**30
    storage, line = choose_residence(int(packed.DEVICE_DATA_FRACTION * 4 * gib), gpu, 4 * gib)
    assert storage == gpu and line.startswith("data on the GPU")
    storage, line = choose_residence(int(packed.DEVICE_DATA_FRACTION * 4 * gib) + 1, gpu, 4 * gib)
    assert storage == cpu and "host memory, pinned non-blocking" in line and "4.0 GiB" in line


def test_trial_memory_is_the_cards_total_times_the_share(monkeypatch) -> None:
    class Properties:
        total_memory = 16 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties())
    assert trial_memory_bytes(torch.device("cuda", 0), 0.25) == 4 * 2**30
    assert trial_memory_bytes(torch.device("cuda", 0), 2.0) == 16 * 2**30  # two cards: the model uses one
    assert trial_memory_bytes(torch.device("cpu"), 0.25) == 0


def test_host_tensors_reach_a_gpu_through_pinned_memory_without_blocking() -> None:
    calls = []

    class HostTensor:  # stands in for a CPU tensor: this machine has no CUDA to copy to
        device = torch.device("cpu")

        def pin_memory(self):
            calls.append("pin_memory")
            return self

        def to(self, device, non_blocking=False):
            calls.append(("to", device, non_blocking))
            return "on the GPU"

    gpu = torch.device("cuda", 0)
    assert to_device(HostTensor(), gpu) == "on the GPU"
    assert calls == ["pin_memory", ("to", gpu, True)]
    tensor = torch.ones(2)
    assert to_device(tensor, torch.device("cpu")) is tensor
