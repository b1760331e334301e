"""Tests of the CGCNN data layer: featurisation, the built-in EMT dataset, the CIF-folder loader."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.io import write
from ase.neighborlist import neighbor_list
from torch_geometric.data import Data

from trainables.data import DataError, GraphDataset, adsorption, baseline_mae, elements, load_dataset
from trainables.data.elements import group_and_period
from trainables.data.graphs import (
    DEFAULT_ATOM_FEATURE_DIM,
    GraphArrays,
    atoms_to_graph,
    default_atom_feature_table,
    gaussian_centers,
    gaussian_expansion,
    neighbor_graph,
)

SMALL = 60  # structures in the built-in dataset for tests


# --- featurisation ---------------------------------------------------------------------------


def test_graph_shapes_and_neighbour_limit() -> None:
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    graph = atoms_to_graph(slab, target=-0.5)
    n_atoms, n_edges = len(slab), graph.edge_index.shape[1]
    assert graph.x.shape == (n_atoms, DEFAULT_ATOM_FEATURE_DIM)
    assert graph.edge_index.shape == (2, n_edges)
    assert graph.edge_attr.shape == (n_edges, 41)
    assert graph.y.shape == (1,) and graph.y.item() == pytest.approx(-0.5)
    assert graph.num_nodes == n_atoms
    in_degree = torch.bincount(graph.edge_index[1], minlength=n_atoms)
    # An 8 Å sphere holds far more than 12 atoms, so every atom keeps exactly 12.
    assert (in_degree == 12).all()


def test_neighbours_match_ase_within_cutoff() -> None:
    atoms = fcc111("Pt", size=(2, 2, 3), vacuum=5.0) + Atoms("O", [(0.1, 0.2, 12.0)])
    radius, k = 3.5, 12
    graph = neighbor_graph(atoms, radius=radius, max_neighbors=k)
    assert graph.distances.max() <= radius
    centres, reference = neighbor_list("id", atoms, radius)
    for i in range(len(atoms)):
        expected = np.sort(reference[centres == i])[:k]
        ours = np.sort(graph.distances[graph.dst == i])
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_periodic_images_are_neighbours() -> None:
    # One atom per cell: all of its 12 nearest neighbours are images of itself across the boundary.
    cu = bulk("Cu", "fcc", a=3.6)
    graph = neighbor_graph(cu, radius=8.0, max_neighbors=12)
    assert len(graph.distances) == 12
    assert (graph.src == 0).all() and (graph.dst == 0).all()
    np.testing.assert_allclose(graph.distances, 3.6 / np.sqrt(2), atol=1e-5)


def test_non_periodic_direction_is_respected() -> None:
    # A single close-packed layer, periodic in x and y only: 6 in-plane neighbours, none across z
    # even though the cell is only 2.6 Å high.
    layer = fcc111("Cu", size=(1, 1, 1), a=3.6)
    layer.cell[2] = [0.0, 0.0, 2.6]
    layer.pbc = (True, True, False)
    graph = neighbor_graph(layer, radius=3.0, max_neighbors=12)
    assert len(graph.distances) == 6
    layer.pbc = (True, True, True)
    assert len(neighbor_graph(layer, radius=3.0, max_neighbors=12).distances) > 6


def test_isolated_molecule_without_pbc() -> None:
    water = molecule("H2O")
    graph = neighbor_graph(water, radius=8.0, max_neighbors=12)
    assert len(graph.distances) == 6  # every atom sees the other two


def test_gaussian_expansion() -> None:
    centres = gaussian_centers(8.0, 0.2)
    assert len(centres) == 41 and centres[0] == 0.0 and centres[-1] == pytest.approx(8.0)
    expanded = gaussian_expansion(np.array([2.0, 3.3]), 8.0, 0.2)
    assert expanded.shape == (2, 41)
    assert expanded[0].argmax().item() == 10 and expanded[0, 10].item() == pytest.approx(1.0)
    assert expanded[1, 16].item() == pytest.approx(np.exp(-((3.3 - 3.2) ** 2) / 0.04), rel=1e-5)


def test_group_and_period() -> None:
    assert group_and_period(1) == (1, 1)
    assert group_and_period(8) == (16, 2)
    assert group_and_period(29) == (11, 4)
    assert group_and_period(57) == (3, 6)  # lanthanum: f block counts as group 3
    assert group_and_period(78) == (10, 6)
    assert group_and_period(118) == (18, 7)


def feature_slots(row: np.ndarray) -> dict[str, int]:
    """The hot slot of each of CGCNN's nine properties in one row of the atom feature table."""
    slots, start = {}, 0
    for feature in elements.FEATURES:
        block = row[start : start + feature.width]
        start += feature.width
        assert block.sum() in (0.0, 1.0)
        slots[feature.name] = int(block.argmax()) if block.sum() else -1
    return slots


def test_default_atom_features_are_cgcnns_nine_properties_from_mendeleev() -> None:
    from mendeleev import element

    table = default_atom_feature_table()
    assert table.shape == (119, DEFAULT_ATOM_FEATURE_DIM) and DEFAULT_ATOM_FEATURE_DIM == elements.ATOM_FEATURE_DIM
    pt, o = element("Pt"), element("O")
    assert (pt.en_pauling, pt.covalent_radius_pyykko, pt.electron_affinity) == pytest.approx((2.2, 123, 2.128))
    # Pt: group 10, period 6, Pauling 2.20 -> bin 4 of 0.5..4.0, 123 pm (Pyykko) -> bin 4 of 25..250,
    # 6s1 5d9 -> 10 valence electrons, ln(8.96 eV) = 2.19 -> bin 4 of 1.3..3.3, EA 2.13 eV -> bin 7
    # of -3..3.7, d block, ln(195.08 / 21.5 cm3/mol) = 2.21 -> bin 2 of 1.5..4.3.
    assert feature_slots(table[78]) == {
        "group": 9, "period": 5, "electronegativity": 4, "covalent_radius_pm": 4, "valence_electrons": 9,
        "first_ionisation_energy_ev": 4, "electron_affinity_ev": 7, "block": 2, "atomic_volume_cm3_per_mol": 2,
    }
    assert feature_slots(table[8])["electronegativity"] == int((o.en_pauling - 0.5) / 0.35) == 8
    assert feature_slots(table[8])["valence_electrons"] == 5 and feature_slots(table[8])["block"] == 1
    # Elements a property is unknown for keep zeros there (mendeleev has no electron affinity for Gd).
    assert feature_slots(table[64])["electron_affinity_ev"] == -1 and feature_slots(table[64])["block"] == 3
    # Chemically similar metals share most slots, dissimilar ones few: what the network can generalise on.
    assert (table[29] * table[47]).sum() > (table[29] * table[13]).sum()
    assert not table[0].any()
    assert np.unique(table[1:], axis=0).shape[0] > 100  # nearly every element has its own row


# --- built-in EMT dataset ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emt-cache")


@pytest.fixture(scope="module")
def small_dataset(small_cache: Path) -> GraphDataset:
    return load_dataset(num_structures=SMALL, seed=0, cache_dir=str(small_cache), progress=False)


def targets(dataset: GraphDataset) -> np.ndarray:
    return np.array([g.y.item() for g in dataset.graphs])


def test_builtin_dataset_contents(small_dataset: GraphDataset) -> None:
    assert not small_dataset.from_cache
    assert len(small_dataset.graphs) == SMALL
    assert small_dataset.node_feature_dim == DEFAULT_ATOM_FEATURE_DIM
    assert small_dataset.edge_feature_dim == 41
    assert small_dataset.source.startswith("builtin:")
    for graph, group, meta in zip(small_dataset.graphs, small_dataset.groups, small_dataset.metadata, strict=True):
        assert group == f"{meta['metal']}|{meta['adsorbate']}"
        assert meta["metal"] in adsorption.METALS and meta["adsorbate"] in adsorption.ADSORBATES
        assert meta["site"] in adsorption.SITES[meta["facet"]]
        assert graph.x.shape == (graph.num_nodes, small_dataset.node_feature_dim)
        assert graph.edge_attr.shape == (graph.edge_index.shape[1], small_dataset.edge_feature_dim)
        assert 0.0 < meta["binding_distance"] <= adsorption.MAX_BINDING_DISTANCE
        assert np.isfinite(graph.y.item())
    assert np.std(targets(small_dataset)) > 0.05
    # Distinct (slab, adsorbate, site, cell) draws: no structure twice.
    assert len({(m["slab"], m["adsorbate"], m["site"]) for m in small_dataset.metadata}) > 0.9 * SMALL


def test_no_duplicates_in_builtin_data(
    small_dataset: GraphDataset, small_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No two structures share composition, sorted edge lengths and energy; equivalent slabs are one slab."""
    (cached,) = small_cache.glob(f"emt-adsorption-n{SMALL}-seed0-*.npz")
    assert not adsorption.duplicate_groups(GraphArrays.load(cached)[0])
    # A tiny generator where the version before de-duplication (generator 7) made 4 copies in 20
    # structures: two hosts, one facet, one adsorbate, four alloy draws per host, three distinct.
    monkeypatch.setattr(adsorption, "METALS", ("Cu", "Pt"))
    monkeypatch.setattr(adsorption, "FACETS", ("111",))
    monkeypatch.setattr(adsorption, "ADSORBATES", {"O": ("O", [])})
    monkeypatch.setattr(adsorption, "ALLOY_SLABS_PER_FACET", 4)
    specs = adsorption.slab_specs(np.random.default_rng(0))
    keys = [adsorption.structure_key(adsorption.build_slab(spec)) for spec in specs]
    assert len(set(keys)) == len(keys) == 2 * (1 + 3)  # a 2x2 (111) cell has 3 alloys per dopant (1, 2, 3 atoms)
    arrays, _ = adsorption.generate(20, seed=1, progress=False, workers=1)
    assert len(arrays) == 20 and not adsorption.duplicate_groups(arrays)
    # Pt on surface atom 0 or 1 of Cu(111) 2x2 is one surface; Pt on 0 and 1 is another.
    key = adsorption.structure_key
    assert key(adsorption.build_slab(adsorption.SlabSpec("Cu", "111", "Pt", (0,)))) == key(
        adsorption.build_slab(adsorption.SlabSpec("Cu", "111", "Pt", (1,))))
    assert key(adsorption.build_slab(adsorption.SlabSpec("Cu", "111", "Pt", (0,)))) != key(
        adsorption.build_slab(adsorption.SlabSpec("Cu", "111", "Pt", (0, 1))))


def test_relaxation_moves_only_free_atoms_and_reaches_fmax() -> None:
    from ase.calculators.emt import EMT

    spec = adsorption.SlabSpec("Cu", "111", "Pt", (0, 2))
    slab = adsorption.build_slab(spec)
    bonds = adsorption.equilibrium_bond_lengths(adsorption.gas_references())
    start = adsorption.place_adsorbate(slab, spec, adsorption.Candidate(0, "OH", "bridge", (1, 0)), bonds)
    free = adsorption._free_atoms(slab, "111", 2)
    assert free.sum() == 4 + 2  # top layer and the adsorbate
    positions, energy, converged = adsorption.relax(start, free, binder=len(slab))
    assert converged
    moved = np.linalg.norm(positions - start.positions, axis=1)
    assert (moved[~free] == 0).all() and moved[free].max() > 1e-3
    np.testing.assert_allclose(positions[len(slab), :2], start.positions[len(slab), :2])  # binder held above its site
    relaxed = start.copy()
    relaxed.positions = positions
    relaxed.calc = EMT()
    assert relaxed.get_potential_energy() == pytest.approx(energy)
    start.calc = EMT()
    assert energy < start.get_potential_energy()
    forces = relaxed.get_forces()
    forces[len(slab), :2] = 0.0  # held laterally
    assert np.linalg.norm(forces[free], axis=1).max() < adsorption.RELAX_FMAX


def test_worker_processes_give_the_serial_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adsorption, "MIN_PARALLEL_TASKS", 1)
    serial, serial_meta = adsorption.generate(12, seed=3, progress=False, workers=1)
    parallel, parallel_meta = adsorption.generate(12, seed=3, progress=False, workers=2)
    np.testing.assert_array_equal(serial.targets, parallel.targets)
    np.testing.assert_array_equal(serial.distances, parallel.distances)
    assert serial_meta == parallel_meta


def test_by_slab_split_keeps_each_slab_in_one_split(small_cache: Path) -> None:
    dataset = load_dataset(num_structures=SMALL, seed=0, cache_dir=str(small_cache), progress=False, split="by_slab")
    assert dataset.from_cache  # the split is applied at load time
    slabs = {name: {dataset.metadata[i]["slab"] for i in idx} for name, idx in dataset.splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not slabs[a] & slabs[b]
    assert sorted(np.concatenate(list(dataset.splits.values())).tolist()) == list(range(SMALL))
    assert all(len(idx) >= 5 for idx in dataset.splits.values())
    assert "split=by_slab" in dataset.source
    with pytest.raises(DataError, match="split 'nope'"):
        load_dataset(num_structures=SMALL, cache_dir=str(small_cache), split="nope")


def test_split_disjoint_complete_and_fixed(small_dataset: GraphDataset, small_cache: Path) -> None:
    splits = small_dataset.splits
    joined = np.concatenate([splits["train"], splits["val"], splits["test"]])
    assert sorted(joined.tolist()) == list(range(SMALL))
    assert len(splits["val"]) == len(splits["test"]) == 9
    again = load_dataset(num_structures=SMALL, seed=0, cache_dir=str(small_cache), progress=False)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(again.splits[name], splits[name])
    assert [g.y.item() for g in small_dataset.subset("val")] == [
        small_dataset.graphs[i].y.item() for i in splits["val"]
    ]


def test_second_load_hits_cache(small_dataset: GraphDataset, small_cache: Path) -> None:
    calls_before = adsorption.EMT_CALLS
    start = time.perf_counter()
    cached = load_dataset(num_structures=SMALL, seed=0, cache_dir=str(small_cache), progress=False)
    elapsed = time.perf_counter() - start
    assert cached.from_cache
    assert adsorption.EMT_CALLS == calls_before  # no EMT computation at all
    assert elapsed < 1.0
    np.testing.assert_array_equal(targets(cached), targets(small_dataset))
    assert torch.equal(cached.graphs[0].edge_index, small_dataset.graphs[0].edge_index)
    assert cached.metadata == small_dataset.metadata
    # The Gaussian step is applied at load time: a new one reuses the cached neighbour graphs.
    coarse = load_dataset(num_structures=SMALL, seed=0, gaussian_step=0.4, cache_dir=str(small_cache), progress=False)
    assert coarse.from_cache and coarse.edge_feature_dim == 21
    assert adsorption.EMT_CALLS == calls_before


def test_same_seed_recomputed_is_identical_other_seed_differs(small_dataset: GraphDataset, tmp_path: Path) -> None:
    calls_before = adsorption.EMT_CALLS
    rebuilt = load_dataset(num_structures=SMALL, seed=0, cache_dir=str(tmp_path / "a"), progress=False)
    assert not rebuilt.from_cache and adsorption.EMT_CALLS > calls_before
    np.testing.assert_allclose(targets(rebuilt), targets(small_dataset), rtol=0, atol=1e-6)
    other = load_dataset(num_structures=SMALL, seed=1, cache_dir=str(tmp_path / "a"), progress=False)
    assert not other.from_cache
    assert not np.allclose(targets(other), targets(small_dataset))
    assert len(list((tmp_path / "a").glob("*.npz"))) == 2  # one cache file per parameter set


# --- baseline ---------------------------------------------------------------------------------


def tiny_dataset(values: list[float], groups: list[str], train: list[int], val: list[int]) -> GraphDataset:
    graphs = [Data(x=torch.zeros(1, 1), y=torch.tensor([v])) for v in values]
    splits = {"train": np.array(train), "val": np.array(val), "test": np.array(val)}
    return GraphDataset(graphs, groups, splits, "test", node_feature_dim=1, edge_feature_dim=1)


def test_baseline_mae_uses_train_group_means() -> None:
    values = [1.0, 3.0, 10.0, 2.5, 9.0, 100.0]
    groups = ["a", "a", "b", "a", "b", "c"]
    dataset = tiny_dataset(values, groups, train=[0, 1, 2], val=[3, 4, 5])
    # Group means from train: a -> 2, b -> 10; unseen "c" -> global train mean 14/3.
    expected = (abs(2.5 - 2.0) + abs(9.0 - 10.0) + abs(100.0 - 14.0 / 3.0)) / 3
    assert baseline_mae(dataset, "val") == pytest.approx(expected)
    assert baseline_mae(dataset, "train") == pytest.approx((1.0 + 1.0 + 0.0) / 3)


def test_builtin_baseline_is_finite(small_dataset: GraphDataset) -> None:
    assert 0.0 < baseline_mae(small_dataset, "val") < 1.0


# --- CIF folders ------------------------------------------------------------------------------


def write_cif_folder(folder: Path, n: int = 6, header: bool = False) -> list[float]:
    folder.mkdir(parents=True, exist_ok=True)
    values = []
    lines = ["id,target"] if header else []
    for i in range(n):
        crystal = bulk("Cu", "fcc", a=3.5 + 0.05 * i) if i % 2 else bulk("NaCl", "rocksalt", a=5.5 + 0.05 * i)
        write(folder / f"s{i}.cif", crystal)
        values.append(0.1 * i)
        lines.append(f"s{i},{values[-1]}")
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    return values


def assert_one_line_error(folder_or_file: Path, match: str, call) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert str(folder_or_file) in message
    assert match in message
    return message


def test_cif_folder_loads_and_caches(tmp_path: Path) -> None:
    values = write_cif_folder(tmp_path / "data", n=6, header=True)
    dataset = load_dataset(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), progress=False)
    assert not dataset.from_cache
    np.testing.assert_allclose(targets(dataset), values, atol=1e-6)
    assert dataset.groups == ["all"] * 6
    assert dataset.source == str(tmp_path / "data")
    assert [m["id"] for m in dataset.metadata] == [f"s{i}" for i in range(6)]
    assert sum(len(ix) for ix in dataset.splits.values()) == 6
    assert (torch.bincount(dataset.graphs[0].edge_index[1]) == 12).all()
    again = load_dataset(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), progress=False)
    assert again.from_cache
    # Global-mean baseline for user data.
    train_mean = np.mean(targets(dataset)[dataset.splits["train"]])
    expected = np.mean(np.abs(targets(dataset)[dataset.splits["val"]] - train_mean))
    assert baseline_mae(dataset) == pytest.approx(expected, rel=1e-5)
    # Editing a CIF changes the cache key.
    write(tmp_path / "data" / "s0.cif", bulk("Cu", "fcc", a=3.7))
    edited = load_dataset(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), progress=False)
    assert not edited.from_cache


def test_cif_folder_atom_init(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write_cif_folder(folder, n=4)
    (folder / "atom_init.json").write_text(json.dumps({"11": [1.0, 0.0, 0.5], "17": [0.0, 1.0, 0.5]}))
    # Cu (29) is missing from atom_init.json: the error names the first CIF that contains it.
    assert_one_line_error(folder / "s1.cif", "Cu", lambda: load_dataset(str(folder), cache_dir=str(tmp_path / "c")))
    (folder / "atom_init.json").write_text(json.dumps({"11": [1, 0, 0.5], "17": [0, 1, 0.5], "29": [1, 1, 0]}))
    dataset = load_dataset(str(folder), cache_dir=str(tmp_path / "c"), progress=False)
    assert dataset.node_feature_dim == 3
    assert dataset.graphs[1].x.tolist() == [[1.0, 1.0, 0.0]]


def test_cif_folder_errors(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    missing = tmp_path / "nowhere"
    assert_one_line_error(missing, "not found", lambda: load_dataset(str(missing), cache_dir=cache))

    folder = tmp_path / "data"
    folder.mkdir()
    id_prop = folder / "id_prop.csv"
    assert_one_line_error(id_prop, "not found", lambda: load_dataset(str(folder), cache_dir=cache))

    write_cif_folder(folder, n=5)
    id_prop.write_text(id_prop.read_text() + "ghost,1.0\n")
    assert_one_line_error(
        Path(f"{id_prop}:6"), "no CIF file for id 'ghost'", lambda: load_dataset(str(folder), cache_dir=cache)
    )

    write_cif_folder(folder, n=5)
    id_prop.write_text("s0,0.0\ns1,abc\ns2,1.0\n")
    assert_one_line_error(Path(f"{id_prop}:2"), "'abc'", lambda: load_dataset(str(folder), cache_dir=cache))

    write_cif_folder(folder, n=5)
    (folder / "s3.cif").write_text("data_broken\n_cell_length_a oops\nloop_\n_atom_site_label\n")
    assert_one_line_error(folder / "s3.cif", "unreadable CIF", lambda: load_dataset(str(folder), cache_dir=cache))

    write_cif_folder(folder, n=5)
    text = (folder / "s2.cif").read_text()
    assert "_atom_site_occupancy" in text and " 1.0000" in text
    (folder / "s2.cif").write_text(text.replace(" 1.0000", " 0.5000", 1))
    message = assert_one_line_error(folder / "s2.cif", "partial occupancy 0.5",
                                    lambda: load_dataset(str(folder), cache_dir=cache))
    assert "site Na" in message

    write_cif_folder(folder, n=2)
    message = assert_one_line_error(id_prop, "2 structure(s)", lambda: load_dataset(str(folder), cache_dir=cache))
    assert "at least 3" in message
