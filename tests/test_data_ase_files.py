"""ASE files as CGCNN data (.db, .extxyz, .xyz, .traj): same graphs as a CIF folder, ids, splits, errors."""

from __future__ import annotations

from pathlib import Path

import ase.db
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import Trajectory, write

from trainables.data import DataError, load_dataset
from trainables.data.ase_files import read_structures


def structures(n: int = 6) -> list[Atoms]:
    """Rattled crystals (no distance ties, so neighbour choice cannot depend on file rounding)."""
    out = []
    for i in range(n):
        crystal = bulk("Cu", "fcc", a=3.5 + 0.05 * i) if i % 2 else bulk("NaCl", "rocksalt", a=5.5 + 0.05 * i)
        crystal = crystal.repeat((2, 1, 1))
        crystal.rattle(0.05, seed=i)
        out.append(crystal)
    return out


def with_results(atoms: Atoms, energy: float, **info) -> Atoms:
    atoms = atoms.copy()
    atoms.info.update(info)
    atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def write_all(folder: Path, crystals: list[Atoms]) -> dict[str, Path]:
    """The same structures as a CIF folder (target = energy), extxyz, ASE db and trajectory."""
    folder.mkdir(parents=True, exist_ok=True)
    energies = [-1.0 - 0.1 * i for i in range(len(crystals))]
    cif = folder / "cif"
    cif.mkdir()
    for i, crystal in enumerate(crystals):
        write(cif / f"s{i}.cif", crystal)
    (cif / "id_prop.csv").write_text("".join(f"s{i},{e}\n" for i, e in enumerate(energies)))
    frames = [with_results(c, energies[i], sid=f"s{i}", band_gap=0.5 * i) for i, c in enumerate(crystals)]
    write(folder / "data.extxyz", frames, format="extxyz")
    with ase.db.connect(folder / "data.db") as database:
        for i, frame in enumerate(frames):
            database.write(frame, sid=f"s{i}", band_gap=0.5 * i)
    with Trajectory(folder / "data.traj", "w") as trajectory:
        for frame in frames:
            trajectory.write(frame)
    return {"cif": cif, "extxyz": folder / "data.extxyz", "db": folder / "data.db", "traj": folder / "data.traj"}


def test_ase_files_give_the_cif_folders_graphs_and_targets(tmp_path: Path) -> None:
    paths = write_all(tmp_path, structures())
    cache = str(tmp_path / "cache")
    reference = load_dataset(str(paths["cif"]), cache_dir=cache, progress=False)
    for name in ("extxyz", "db", "traj"):
        dataset = load_dataset(str(paths[name]), cache_dir=cache, progress=False)
        assert not dataset.from_cache and dataset.source == str(paths[name])
        assert [m["id"] for m in dataset.metadata] == [m["id"] for m in reference.metadata], name
        for ours, theirs in zip(dataset.graphs, reference.graphs, strict=True):
            assert torch.equal(ours.x, theirs.x)
            assert torch.equal(ours.edge_index, theirs.edge_index), name
            torch.testing.assert_close(ours.edge_attr, theirs.edge_attr, atol=1e-3, rtol=0)
            assert ours.y.item() == pytest.approx(theirs.y.item())
        for split in ("train", "val", "test"):  # same seeded random split
            np.testing.assert_array_equal(dataset.splits[split], reference.splits[split])
    # Another target: a key-value pair / info entry; cached under its own key.
    gaps = load_dataset(str(paths["db"]), cache_dir=cache, progress=False, target="band_gap")
    assert [g.y.item() for g in gaps.graphs] == pytest.approx([0.5 * i for i in range(6)])
    assert load_dataset(str(paths["db"]), cache_dir=cache, progress=False).from_cache


def test_split_key_and_ids(tmp_path: Path) -> None:
    crystals = structures(5)
    splits = ["train", "train", "val", "test", "train"]
    frames = [with_results(c, -float(i), subset=s) for i, (c, s) in enumerate(zip(crystals, splits, strict=True))]
    write(tmp_path / "a.xyz", frames, format="extxyz")
    dataset = load_dataset(str(tmp_path / "a.xyz"), cache_dir=str(tmp_path / "c"), progress=False,
                           split_key="subset")
    assert {name: idx.tolist() for name, idx in dataset.splits.items()} == {"train": [0, 1, 4], "val": [2],
                                                                            "test": [3]}
    assert [m["id"] for m in dataset.metadata] == ["0", "1", "2", "3", "4"]  # no sid/id: the frame index
    # ASE database: the row id unless a sid key is there.
    with ase.db.connect(tmp_path / "b.db") as database:
        for frame in frames:
            database.write(frame)
    assert [row.id for row in read_structures(tmp_path / "b.db", progress=False)] == ["1", "2", "3", "4", "5"]


def error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_ase_file_errors(tmp_path: Path) -> None:
    cache = str(tmp_path / "c")
    crystals = structures(4)

    def load(name: str, **kwargs):
        return lambda: load_dataset(str(tmp_path / name), cache_dir=cache, progress=False, **kwargs)

    frames = [with_results(c, -1.0, id=f"x{i}") for i, c in enumerate(crystals)]
    frames[3].info["id"] = "x1"
    write(tmp_path / "dup.extxyz", frames)
    assert error(load("dup.extxyz")) == f"{tmp_path / 'dup.extxyz'}: duplicate id 'x1' (frame 1 and frame 3)"

    frames = [with_results(c, -1.0) for c in crystals]
    frames[2].calc = None
    write(tmp_path / "missing.extxyz", frames)
    message = error(load("missing.extxyz"))
    assert message.startswith(f"{tmp_path / 'missing.extxyz'}: frame 2: no target 'energy'")
    message = error(load("missing.extxyz", target="formation_energy"))
    assert "frame 0: no target 'formation_energy'" in message and "energy" in message  # lists the numeric keys

    frames = [with_results(c, -1.0, gap=0.1) for c in crystals]
    frames[1].info["gap"] = float("nan")
    write(tmp_path / "nan.extxyz", frames)
    assert "frame 1: target 'gap' = nan is not a finite number" in error(load("nan.extxyz", target="gap"))

    with ase.db.connect(tmp_path / "split.db") as database:
        for i, c in enumerate(crystals):
            database.write(c, data_split=["train", "val", "test", "dev"][i], energy_above_hull=0.1 * i)
    message = error(load("split.db", target="energy_above_hull", split_key="data_split"))
    assert "row id=4: split key 'data_split' = 'dev' (expected one of train, val, test)" in message

    periodic = [with_results(c, -1.0) for c in crystals]
    periodic[0] = with_results(Atoms("Cu2", positions=[(0, 0, 0), (2.5, 0, 0)], pbc=True), -1.0)
    write(tmp_path / "nocell.traj", periodic)
    assert "frame 0: periodic (pbc=TTT) but without a cell" in error(load("nocell.traj"))

    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "atom_init.json").write_text('{"1": [1.0, 0.0], "8": [0.0, 1.0]}')
    water = [with_results(molecule("H2O"), -1.0) for _ in range(3)]  # molecules: no cell needed
    write(tmp_path / "features" / "water.extxyz", water)
    assert load("features/water.extxyz")().graphs[0].x.shape == (3, 2)  # atom_init.json beside the file
    water[1] = with_results(molecule("CH4"), -1.0)
    write(tmp_path / "features" / "methane.extxyz", water)
    assert "frame 1 (id 1): element(s) C missing from" in error(load("features/methane.extxyz"))

    (tmp_path / "empty.extxyz").write_text("")
    assert "no structures" in error(load("empty.extxyz"))
    assert "data file not found" in error(load("absent.db"))
    (tmp_path / "x.csv").write_text("a,b\n")
    assert "unknown data file type" in error(load("x.csv"))
    assert "--target formation_energy: applies to ASE data files" in error(
        lambda: load_dataset(None, cache_dir=cache, target="formation_energy"))


def test_neighbour_search_in_worker_processes_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.data import graphs

    monkeypatch.setattr(graphs, "MIN_PARALLEL_ATOMS", 0)
    crystals = structures(4) + [Atoms("Cu", pbc=True)]  # the last: periodic without a cell
    serial = graphs.neighbor_graphs(crystals, workers=1, progress=False)
    parallel = graphs.neighbor_graphs(crystals, workers=2, progress=False)
    assert serial[-1] == parallel[-1] == "periodic structure with a degenerate (zero-volume) cell"
    for ours, theirs in zip(serial[:-1], parallel[:-1], strict=True):
        np.testing.assert_array_equal(ours.src, theirs.src)
        np.testing.assert_array_equal(ours.distances, theirs.distances)
