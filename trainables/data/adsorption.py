"""Built-in dataset: relaxed adsorption energies on small metal slabs, computed with ASE's EMT calculator.

A laptop-sized stand-in for the catalysis data of the NERSC CGCNN study (what it is and is not:
see docs/cgcnn.md, "The built-in data"). Each structure is a small periodic slab (2x2 surface cells of
fcc(111)/(100), 3 layers; 3x2 of fcc(211), 2 layers: 12 metal atoms) of Al, Cu, Ag, Au, Ni, Pd
or Pt, all fcc metals EMT was fitted to, either pure or a surface alloy (1-3 surface atoms
replaced by another of these metals), with one adsorbate (H, C, N, O, CO, OH, NH) on a top,
bridge or hollow site.

Every structure is relaxed under EMT, as adsorption-energy databases do with DFT: the adsorbate
and the top slab layer move, the layers below are held at the bulk positions (``FixAtoms``), and
the binding atom is held laterally above its site (``FixCartesian`` on x, y; its height is free),
a site-resolved relaxation, so that top and bridge sites keep their identity instead of sliding
into the nearest hollow. The clean slab is relaxed the same way, and

    E_ads = E(relaxed slab + adsorbate) - E(relaxed slab) - sum over adsorbate atoms of mu(element)

with gas references mu(H) = E(H2)/2, mu(N) = E(N2)/2, mu(O) = E(O2)/2 and mu(C) = E(CO) - mu(O),
each molecule relaxed with EMT. What the network must learn beyond the (metal, adsorbate)
baseline is therefore what the relaxed geometry encodes: site, facet and alloy neighbours.

Structures are (slab, adsorbate, site, surface cell) combinations drawn without replacement,
and no structure appears twice, symmetry-equivalent copies included: two surface alloys related
by a translation, rotation or mirror of the surface (Pt on surface atom 0 or on atom 1 of a
Cu(111) 2x2 cell) are one slab, and one adsorbate site seen from two equivalent surface cells is
one structure. ``structure_key`` decides equivalence from the geometry alone (every atom's
element and the sorted elements and distances of its neighbours within ``KEY_CUTOFF``, periodic
images included); a slab equivalent to one already drawn is redrawn, and a starting structure
equivalent to one already drawn is skipped before it is relaxed. So no two slab ids are
equivalent, and the ``by_slab`` split keeps equivalent surfaces together. Relaxations that do not
converge within ``RELAX_STEPS`` or end desorbed or dissociated are dropped and replaced by
further draws.

Metadata per structure: ``metal`` is the slab's host metal (alloys are grouped with their host,
so the alloying effect is part of the within-group variation a graph network can see), ``dopant``
the substituting metal or "" for pure slabs, ``adsorbate``, ``facet``, ``site``, ``slab`` (an id
shared by all structures on one slab, for the ``by_slab`` split) and ``binding_distance`` (Å,
binding atom to its nearest metal atom after relaxation).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import fcc100, fcc111, fcc211
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms, FixCartesian
from ase.neighborlist import neighbor_list
from ase.optimize import LBFGS
from tqdm import tqdm

from trainables.data.graphs import GraphArrays, neighbor_graph

# Bump when the generator changes, so old caches are not reused.
# 8: symmetry-equivalent slabs and structures removed (structure_key).
GENERATOR_VERSION = 8

METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
FACETS = ("111", "100", "211")
# Adsorbate: (binding element, [(other element, height above the binding atom in Å)]).
ADSORBATES: dict[str, tuple[str, list[tuple[str, float]]]] = {
    "H": ("H", []),
    "C": ("C", []),
    "N": ("N", []),
    "O": ("O", []),
    "CO": ("C", [("O", 1.15)]),
    "OH": ("O", [("H", 0.98)]),
    "NH": ("N", [("H", 1.03)]),
}
SITES = {
    "111": ("ontop", "bridge", "fcc", "hcp"),
    "100": ("ontop", "bridge", "hollow"),
    "211": ("step-top", "step-bridge", "step-hollow", "terrace-top", "terrace-hollow"),
}
# Surface cells x layers. Small on purpose: training cost scales with edges, and in a small
# graph the adsorbate is not averaged away by the mean-pooling readout.
SLAB_SIZES = {"111": (2, 2, 3), "100": (2, 2, 3), "211": (3, 2, 2)}
VACUUM = 6.0
# Many distinct alloys, so that structures rarely share every neighbour of their adsorbate.
ALLOY_SLABS_PER_FACET = 12
MAX_SUBSTITUTIONS = 3
# Draws per host and facet before settling for fewer distinct alloys (a tiny cell has few).
MAX_ALLOY_DRAWS = 50 * ALLOY_SLABS_PER_FACET
# structure_key: neighbours within this (Å) describe each atom; distances rounded to KEY_DECIMALS.
# 7 Å spans every cell here (2x2 Al(111): 5.7 Å), so a dopant's position relative to the adsorbate
# is always part of the key.
KEY_CUTOFF = 7.0
KEY_DECIMALS = 3
# Relaxation: LBFGS to a maximum force of RELAX_FMAX eV/Å, at most RELAX_STEPS steps (most
# structures converge in 10-30; one that has not by then is dropped).
RELAX_FMAX = 0.05
RELAX_STEPS = 150
# A relaxed binding atom farther than this from every metal atom has desorbed (EMT's optimum
# bonds are 1.6-2.2 Å), and an adsorbate bond stretched past STRETCH_LIMIT x its start has broken.
MAX_BINDING_DISTANCE = 2.8  # Å
STRETCH_LIMIT = 1.3
# Structures to relax per batch beyond those still needed (some are dropped).
BATCH_MARGIN = 1.1
# Worker processes for the relaxations (EMT is serial Python + numpy, so processes, not threads).
DEFAULT_WORKERS = 2
# Below this many relaxations, starting worker processes (~4 s each: imports) costs more than it saves.
MIN_PARALLEL_TASKS = 200
# Gas-phase references: molecule -> starting bond length (Å); each is relaxed under EMT.
_GAS_BOND_LENGTHS = {"H2": 0.741, "N2": 1.098, "O2": 1.208, "CO": 1.128}

EMT_CALLS = 0  # EMT energy evaluations and relaxations in this process; lets tests prove cache hits


def _emt_energy(atoms: Atoms) -> float:
    global EMT_CALLS
    EMT_CALLS += 1
    atoms = atoms.copy()
    atoms.calc = EMT()
    return float(atoms.get_potential_energy())


def relax(atoms: Atoms, free: np.ndarray, binder: int | None = None) -> tuple[np.ndarray, float, bool]:
    """Relax ``atoms`` under EMT with only the atoms flagged in ``free`` moving.

    ``binder``: an atom held at its x, y (its height relaxes). Returns the relaxed positions,
    the energy and whether LBFGS reached ``RELAX_FMAX`` within ``RELAX_STEPS``.
    """
    global EMT_CALLS
    EMT_CALLS += 1
    atoms = atoms.copy()
    constraints = [FixAtoms(indices=np.flatnonzero(~free))]
    if binder is not None:
        constraints.append(FixCartesian(binder, mask=(True, True, False)))
    atoms.set_constraint(constraints)
    atoms.calc = EMT()
    converged = bool(LBFGS(atoms, logfile=None).run(fmax=RELAX_FMAX, steps=RELAX_STEPS))
    return atoms.positions.copy(), float(atoms.get_potential_energy()), converged


def _relax_task(task: tuple[Atoms, np.ndarray, int | None]) -> tuple[np.ndarray, float, bool]:
    """Module-level so worker processes can unpickle it."""
    return relax(*task)


def _map(tasks: list, workers: int) -> list:
    """``_relax_task`` over ``tasks`` in order, in ``workers`` processes when that pays."""
    if workers <= 1 or len(tasks) < MIN_PARALLEL_TASKS:
        return [_relax_task(task) for task in tasks]
    global EMT_CALLS
    EMT_CALLS += len(tasks)  # the workers count in their own processes
    # spawn, not fork: the driver has imported torch (and may hold threads) by now.
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_relax_task, tasks, chunksize=max(1, len(tasks) // (8 * workers))))
    except BrokenProcessPool:
        # A spawned worker re-imports the main script; one without an `if __name__ == "__main__"`
        # guard cannot start workers. The result does not depend on where it is computed.
        print("EMT dataset: worker processes could not start (main script without a __main__ guard?); "
              "relaxing in this process", flush=True)
        return [_relax_task(task) for task in tasks]


def gas_references() -> dict[str, float]:
    """EMT chemical potentials of H, C, N and O from relaxed H2, N2, O2 and CO (see module docstring)."""
    energy = {}
    for name, d in _GAS_BOND_LENGTHS.items():
        molecule = Atoms(name, [(0, 0, 0), (0, 0, d)], cell=[10.0, 10.0, 10.0])
        energy[name] = relax(molecule, np.ones(2, dtype=bool))[1]
    mu = {"H": energy["H2"] / 2, "N": energy["N2"] / 2, "O": energy["O2"] / 2}
    mu["C"] = energy["CO"] - mu["O"]
    return mu


def _clean_slab(metal: str, facet: str) -> Atoms:
    build = {"111": fcc111, "100": fcc100, "211": fcc211}[facet]
    return build(metal, size=SLAB_SIZES[facet], vacuum=VACUUM)


def _surface_indices(slab: Atoms, facet: str) -> np.ndarray:
    """The highest atoms: the top layer of (111)/(100), the step and two terrace rows of (211)."""
    n_surface = SLAB_SIZES[facet][0] * SLAB_SIZES[facet][1]
    return np.sort(np.argsort(slab.positions[:, 2], kind="stable")[-n_surface:])


@dataclass
class SlabSpec:
    """One slab: host metal, facet and (for alloys) the dopant and the surface atoms it replaces."""

    metal: str
    facet: str
    dopant: str
    substituted: tuple[int, ...]


def structure_key(atoms: Atoms, cutoff: float = KEY_CUTOFF, decimals: int = KEY_DECIMALS) -> str:
    """A hash equal for symmetry-equivalent structures: the sorted atom environments of ``atoms``.

    Each atom's environment is its atomic number and the sorted (atomic number, distance) pairs
    of its neighbours within ``cutoff`` Å (periodic images along ``atoms.pbc`` included, distances
    rounded to ``decimals``). Translations, rotations and mirrors leave every environment unchanged,
    so equivalent structures get one key. The converse is not guaranteed in general (the key is an
    invariant, not a canonical form), but for these few-atom slabs distinct arrangements differ in
    some atom's environment.
    """
    first, second, distance = neighbor_list("ijd", atoms, cutoff)
    numbers = atoms.get_atomic_numbers()
    # One sort orders the edges by centre, then neighbour element, then distance.
    rounded = np.round(distance, decimals)
    order = np.lexsort((rounded, numbers[second], first))
    first, neighbours, rounded = first[order], numbers[second][order], rounded[order]
    bounds = np.searchsorted(first, np.arange(len(atoms) + 1))
    environments = sorted(
        (int(numbers[a]), tuple(zip(neighbours[bounds[a]:bounds[a + 1]].tolist(),
                                    rounded[bounds[a]:bounds[a + 1]].tolist(), strict=True)))
        for a in range(len(atoms))
    )
    return hashlib.sha256(repr(environments).encode()).hexdigest()


def slab_specs(rng: np.random.Generator) -> list[SlabSpec]:
    """Every pure slab plus up to ``ALLOY_SLABS_PER_FACET`` distinct random surface alloys per host and facet.

    An alloy equivalent (``structure_key``) to one drawn before is drawn again, so no two specs
    describe the same surface; a cell with fewer distinct alloys than asked keeps those it has.
    """
    specs = []
    seen: set[str] = set()
    for metal in METALS:
        for facet in FACETS:
            n_surface = SLAB_SIZES[facet][0] * SLAB_SIZES[facet][1]
            specs.append(SlabSpec(metal, facet, "", ()))
            alloys = 0
            for _ in range(MAX_ALLOY_DRAWS):
                if alloys == ALLOY_SLABS_PER_FACET:
                    break
                dopant = str(rng.choice([m for m in METALS if m != metal]))
                count = int(rng.integers(1, MAX_SUBSTITUTIONS + 1))
                chosen = np.sort(rng.choice(n_surface, size=count, replace=False))
                spec = SlabSpec(metal, facet, dopant, tuple(int(i) for i in chosen))
                key = structure_key(build_slab(spec))
                if key not in seen:
                    seen.add(key)
                    specs.append(spec)
                    alloys += 1
    return specs


def build_slab(spec: SlabSpec) -> Atoms:
    """The slab described by ``spec`` (dopants replace the spec's surface atoms, by rank)."""
    slab = _clean_slab(spec.metal, spec.facet)
    surface = _surface_indices(slab, spec.facet)
    for rank in spec.substituted:
        slab[int(surface[rank])].symbol = spec.dopant
    return slab


def _site_xy(slab: Atoms, facet: str, site: str, cell_offset: tuple[int, int]) -> np.ndarray:
    """Lateral position of ``site`` in the surface unit cell ``cell_offset`` of the slab."""
    if facet in ("111", "100"):
        info = slab.info["adsorbate_info"]
        return (np.asarray(info["sites"][site]) + np.asarray(cell_offset)) @ np.asarray(info["cell"])
    # fcc211 has no site table in ASE: build sites from its three surface rows (step edge highest).
    surface = _surface_indices(slab, facet)
    pos = slab.positions[surface]
    row_x = np.unique(np.round(pos[:, 0], 3))[::-1]  # step row first (highest x is highest z)
    step_row = pos[np.isclose(pos[:, 0], row_x[0], atol=1e-2)]
    step_row = step_row[np.argsort(step_row[:, 1])]
    repeats = SLAB_SIZES[facet][1]
    nn = np.linalg.norm(slab.cell[1]) / repeats  # neighbour distance along the step
    base = step_row[cell_offset[1] % repeats, :2]
    x_step, x_middle, x_lower = row_x
    # Rows alternate by half a neighbour distance in y, so hollows sit at +nn/2.
    return {
        "step-top": base,
        "step-bridge": base + [0.0, nn / 2],
        "step-hollow": np.array([(2 * x_step + x_middle) / 3, base[1] + nn / 2]),
        "terrace-top": np.array([x_middle, base[1] + nn / 2]),
        "terrace-hollow": np.array([(2 * x_middle + x_lower) / 3, base[1]]),
    }[site]


def _binding_height(slab: Atoms, xy: np.ndarray, bonds: np.ndarray | float) -> float:
    """Lowest z at ``xy`` where a point is at least ``bonds[j]`` Å from every slab atom j (periodic in x, y).

    Per-atom bond lengths keep an adsorbate next to a large dopant (Ag in Ni) from being pushed
    into it at the host's shorter bond length.
    """
    bonds = np.broadcast_to(np.asarray(bonds, dtype=float), (len(slab),))
    shifts = np.array([i * slab.cell[0] + j * slab.cell[1] for i in (-1, 0, 1) for j in (-1, 0, 1)])
    images = (slab.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    image_bonds = np.tile(bonds, len(shifts))
    lateral = np.linalg.norm(images[:, :2] - xy, axis=1)
    close = lateral < image_bonds
    if not close.any():  # bond shorter than any lateral distance (only while scanning short bonds)
        return float(slab.positions[:, 2].max())
    return float(np.max(images[close, 2] + np.sqrt(image_bonds[close] ** 2 - lateral[close] ** 2)))


def _site_kind(site: str) -> str:
    """'top', 'bridge' or 'hollow' for any facet's site name."""
    if site.endswith("top"):
        return "top"
    return "bridge" if site.endswith("bridge") else "hollow"


def equilibrium_bond_lengths(mu: dict[str, float]) -> dict[tuple[str, str, str], float]:
    """EMT-optimal distance between each metal and binding atom, per site kind, on the pure (111) slab.

    Placing adsorbates at EMT's own optimum (rather than at textbook bond lengths, which EMT
    finds strongly repulsive for H) keeps energies in a physical range; the jitter then probes
    the well around it. A 0.1 Å grid refined by a parabola through the three lowest points.
    Bridge sites use the mean of the top and hollow optima.
    """
    grid = np.arange(1.3, 3.05, 0.1)
    lengths = {}
    for metal in METALS:
        slab = build_slab(SlabSpec(metal, "111", "", ()))
        slab_energy = _emt_energy(slab)
        for binder in sorted({binder for binder, _ in ADSORBATES.values()}):
            for kind, site in (("top", "ontop"), ("hollow", "fcc")):
                xy = _site_xy(slab, "111", site, (1, 1))
                energies = np.array(
                    [
                        _emt_energy(slab + Atoms(binder, [(*xy, _binding_height(slab, xy, d))])) - slab_energy
                        for d in grid
                    ]
                )
                i = int(np.clip(np.argmin(energies), 1, len(grid) - 2))
                e_left, e_mid, e_right = energies[i - 1 : i + 2]
                curvature = e_left - 2 * e_mid + e_right
                step = 0.5 * (e_left - e_right) / curvature if curvature > 0 else 0.0
                lengths[metal, binder, kind] = float(grid[i] + np.clip(step, -1, 1) * (grid[1] - grid[0]))
            top, hollow = lengths[metal, binder, "top"], lengths[metal, binder, "hollow"]
            lengths[metal, binder, "bridge"] = 0.5 * (top + hollow)
    return lengths


@dataclass(frozen=True)
class Candidate:
    """One structure to compute: slab ``slab`` of the spec list, adsorbate, site and surface cell."""

    slab: int
    adsorbate: str
    site: str
    cell: tuple[int, int]


def candidates(specs: list[SlabSpec]) -> list[Candidate]:
    """Every distinct (slab, adsorbate, site, surface cell); a pure slab's cells are equivalent, so one each."""
    out = []
    for k, spec in enumerate(specs):
        size = SLAB_SIZES[spec.facet]
        # fcc211's sites repeat along the step only (see _site_xy), so its cells differ in y alone.
        cells = [(i, j) for i in range(1 if spec.facet == "211" else size[0]) for j in range(size[1])]
        for adsorbate in ADSORBATES:
            for site in SITES[spec.facet]:
                for cell in cells if spec.dopant else cells[:1]:
                    out.append(Candidate(k, adsorbate, site, cell))
    return out


def place_adsorbate(
    slab: Atoms, spec: SlabSpec, candidate: Candidate, bond_lengths: dict[tuple[str, str, str], float]
) -> Atoms:
    """Slab plus upright adsorbate on the candidate's site, at EMT's optimal bond lengths: the relaxation's start."""
    xy = _site_xy(slab, spec.facet, candidate.site, candidate.cell)
    binder, others = ADSORBATES[candidate.adsorbate]
    kind = _site_kind(candidate.site)
    bonds = np.array([bond_lengths[symbol, binder, kind] for symbol in slab.get_chemical_symbols()])
    z = _binding_height(slab, xy, bonds)
    symbols = [binder] + [symbol for symbol, _ in others]
    positions = [(xy[0], xy[1], z)] + [(xy[0], xy[1], z + dz) for _, dz in others]
    return slab + Atoms(symbols, positions)


def _free_atoms(slab: Atoms, facet: str, n_adsorbate: int) -> np.ndarray:
    """Flags of the atoms a relaxation moves: the top slab layer and the adsorbate."""
    free = np.zeros(len(slab) + n_adsorbate, dtype=bool)
    free[_surface_indices(slab, facet)] = True
    free[len(slab) :] = True
    return free


def binding_distance(atoms: Atoms, n_slab: int) -> float:
    """Distance (Å, periodic in x, y) from the binding atom (the first adsorbate atom) to its nearest metal."""
    vectors = atoms.positions[:n_slab] - atoms.positions[n_slab]
    shifts = np.array([i * atoms.cell[0] + j * atoms.cell[1] for i in (-1, 0, 1) for j in (-1, 0, 1)])
    return float(np.linalg.norm(vectors[None, :, :] + shifts[:, None, :], axis=-1).min())


def _intact(start: Atoms, relaxed: Atoms, n_slab: int) -> bool:
    """Whether the relaxed adsorbate is still bound and in one piece."""
    if binding_distance(relaxed, n_slab) > MAX_BINDING_DISTANCE:
        return False
    for i in range(n_slab + 1, len(start)):
        if relaxed.get_distance(n_slab, i) > STRETCH_LIMIT * start.get_distance(n_slab, i):
            return False
    return True


def duplicate_groups(arrays: GraphArrays, decimals: int = 4, energy_decimals: int = 6) -> list[list[int]]:
    """Groups (two or more graph indices) that share composition, sorted edge lengths and target.

    The check the issue that removed duplicates asked for: copies of one structure have the same
    crystal graph and energy, whatever their slab ids. Lengths are compared to ``decimals`` Å,
    targets to ``energy_decimals`` eV.
    """
    groups: dict[tuple, list[int]] = {}
    for g in range(len(arrays)):
        numbers = arrays.numbers[arrays.atom_offsets[g] : arrays.atom_offsets[g + 1]]
        lengths = arrays.distances[arrays.edge_offsets[g] : arrays.edge_offsets[g + 1]]
        key = (
            tuple(np.sort(numbers).tolist()),
            tuple(np.round(np.sort(lengths.astype(np.float64)), decimals).tolist()),
            round(float(arrays.targets[g]), energy_decimals),
        )
        groups.setdefault(key, []).append(g)
    return [members for members in groups.values() if len(members) > 1]


def generate(
    num_structures: int = 2000,
    seed: int = 0,
    radius: float = 8.0,
    max_neighbors: int = 12,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[GraphArrays, list[dict]]:
    """Relax ``num_structures`` adsorbate + slab structures and return their neighbour graphs and energies.

    Deterministic in ``seed`` (the relaxations themselves are deterministic; workers only change
    where they run). ``workers``: relaxation processes, default ``min(DEFAULT_WORKERS, CPUs)``.

    Raises:
        ValueError: ``num_structures`` above the number of (slab, adsorbate, site, cell) draws.
        RuntimeError: the draws run out before ``num_structures`` distinct structures relax.
    """
    workers = min(DEFAULT_WORKERS, os.cpu_count() or 1) if workers is None else workers
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    mu = gas_references()
    bond_lengths = equilibrium_bond_lengths(mu)
    specs = slab_specs(rng)
    pool = candidates(specs)
    if num_structures > len(pool):
        raise ValueError(f"at most {len(pool)} built-in structures, {num_structures} asked for")
    order = [pool[i] for i in rng.permutation(len(pool))]
    slabs = [build_slab(spec) for spec in specs]
    relaxed_slabs: dict[int, float] = {}
    graphs, targets, metadata = [], [], []
    dropped, equivalent, next_draw = 0, 0, 0
    seen: set[str] = set()  # structure_key of every starting structure drawn so far
    # disable=None: no bar when stderr is not a terminal (a log file, a Slurm job), where tqdm
    # would print one line per update.
    with tqdm(total=num_structures, desc="EMT adsorption dataset (relaxing)",
              disable=None if progress else True) as bar:
        while len(targets) < num_structures:
            if next_draw >= len(order):
                raise RuntimeError(f"EMT dataset: {len(targets)} of {num_structures} structures after all "
                                   f"{len(order)} draws ({equivalent} equivalent, {dropped} dropped)")
            needed = num_structures - len(targets)
            drawn = order[next_draw : next_draw + max(8, int(np.ceil(needed * BATCH_MARGIN)))]
            next_draw += len(drawn)
            batch, starts = [], []
            for c in drawn:
                start = place_adsorbate(slabs[c.slab], specs[c.slab], c, bond_lengths)
                key = structure_key(start)
                if key in seen:  # a symmetry-equivalent copy of a structure drawn before
                    equivalent += 1
                    continue
                seen.add(key)
                batch.append(c)
                starts.append(start)
            if not batch:
                continue
            new_slabs = sorted({c.slab for c in batch} - set(relaxed_slabs))
            tasks = [(slabs[k], _free_atoms(slabs[k], specs[k].facet, 0), None) for k in new_slabs]
            tasks += [
                (atoms, _free_atoms(slabs[c.slab], specs[c.slab].facet, len(atoms) - len(slabs[c.slab])),
                 len(slabs[c.slab]))
                for c, atoms in zip(batch, starts, strict=True)
            ]
            results = _map(tasks, workers)
            for k, (_, energy, _) in zip(new_slabs, results[: len(new_slabs)], strict=True):
                relaxed_slabs[k] = energy
            for c, start, (positions, energy, converged) in zip(batch, starts, results[len(new_slabs) :], strict=True):
                if len(targets) == num_structures:
                    break
                n_slab = len(slabs[c.slab])
                relaxed = start.copy()
                relaxed.positions = positions
                if not converged or not _intact(start, relaxed, n_slab):
                    dropped += 1
                    continue
                reference = sum(mu[symbol] for symbol in relaxed.get_chemical_symbols()[n_slab:])
                graphs.append(neighbor_graph(relaxed, radius, max_neighbors))
                targets.append(energy - relaxed_slabs[c.slab] - reference)
                spec = specs[c.slab]
                metadata.append(
                    {
                        "metal": spec.metal,
                        "dopant": spec.dopant,
                        "adsorbate": c.adsorbate,
                        "facet": spec.facet,
                        "site": c.site,
                        "slab": c.slab,
                        "binding_distance": binding_distance(relaxed, n_slab),
                    }
                )
                bar.update(1)
    return GraphArrays.concatenate(graphs, targets), metadata
