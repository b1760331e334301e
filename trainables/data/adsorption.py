"""Built-in dataset: adsorption energies on small metal slabs, computed with ASE's EMT calculator.

A laptop-sized stand-in for the catalysis data of the NERSC CGCNN study. Each structure is a
small periodic slab (2x2 surface cells of fcc(111)/(100), 3 layers; 3x2 of fcc(211), 2 layers:
12 metal atoms) of Al, Cu, Ag, Au, Ni, Pd or Pt, either pure or a surface alloy (1-3 surface atoms
replaced by another of these metals), with one adsorbate (H, C, N, O, CO, OH, NH) on a top,
bridge or hollow site. Single-point EMT energies, no relaxation:

    E_ads = E(slab + adsorbate) - E(slab) - sum over adsorbate atoms of mu(element)

with gas references mu(H) = E(H2)/2, mu(N) = E(N2)/2, mu(O) = E(O2)/2 and mu(C) = E(CO) - mu(O),
each molecule computed with EMT at its experimental bond length. The references only shift each
adsorbate's energies by a constant; what the network must learn beyond the (metal, adsorbate)
baseline comes from facet, site, alloy neighbours and adsorbate height.

Heights are physical rather than fixed: every slab atom j must be at least d(j) from the
adsorbate's binding atom, where d is EMT's own optimal distance for that metal, binding element
and site kind (top / bridge / hollow, scanned once on the pure (111) slabs), and the adsorbate
sits at the lowest height that satisfies all of them. A seeded offset of the bond lengths
(-0.1 to +0.6 Å: from slightly compressed to partly desorbed) and a small lateral jitter make
repeated visits to one site give different energies.

Metadata per structure: ``metal`` is the slab's host metal (alloys are grouped with their host,
so the alloying effect is part of the within-group variation a graph network can see), ``dopant``
the substituting metal or "" for pure slabs, ``adsorbate``, ``facet`` and ``site``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import fcc100, fcc111, fcc211
from ase.calculators.emt import EMT
from tqdm import tqdm

from trainables.data.graphs import GraphArrays, neighbor_graph

# Bump when the generator changes, so old caches are not reused.
GENERATOR_VERSION = 6

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
ALLOY_SLABS_PER_FACET = 5
MAX_SUBSTITUTIONS = 3
# Bond-length offset from EMT's optimum, uniform in this range (Å). Structures sample the bonding
# well from slightly compressed to partly desorbed, so within one (metal, adsorbate) group the
# energy varies by a few tenths of an eV with a geometry a graph network can read from its edge
# lengths. With only +-0.05 Å the within-group signal (site, alloy) was too subtle for a small
# CGCNN to beat the group-mean baseline in 10 epochs; 0.7 Å of range lets it do so by 2-3x.
BOND_OFFSET_RANGE = (-0.10, 0.60)
LATERAL_JITTER = 0.05  # Å, Gaussian standard deviation per axis
# Over the sampled bond lengths EMT gives E_ads of about -0.8..+1.9 eV (the top end: atomic N
# and O pulled 0.6 Å out of their well). Beyond 2 eV only artefacts of the rigid, unrelaxed
# geometry remain (e.g. NH pushed into an Al(100) hollow, 3 eV); they would dominate an MAE
# without teaching anything, so they are dropped. The check depends only on the energy, hence on
# the seed, so the dataset stays deterministic.
MAX_ABS_ADSORPTION_ENERGY = 2.0  # eV
# Gas-phase references: molecule -> bond length (Å).
_GAS_BOND_LENGTHS = {"H2": 0.741, "N2": 1.098, "O2": 1.208, "CO": 1.128}

EMT_CALLS = 0  # number of EMT energy evaluations in this process; lets tests prove cache hits


@dataclass
class SlabSpec:
    """One slab: host metal, facet and (for alloys) the dopant and the surface atoms it replaces."""

    metal: str
    facet: str
    dopant: str
    substituted: tuple[int, ...]


def _emt_energy(atoms: Atoms) -> float:
    global EMT_CALLS
    EMT_CALLS += 1
    atoms = atoms.copy()
    atoms.calc = EMT()
    return float(atoms.get_potential_energy())


def gas_references() -> dict[str, float]:
    """EMT chemical potentials of H, C, N and O from H2, N2, O2 and CO (see module docstring)."""
    energy = {name: _emt_energy(Atoms(name, [(0, 0, 0), (0, 0, d)])) for name, d in _GAS_BOND_LENGTHS.items()}
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


def slab_specs(rng: np.random.Generator) -> list[SlabSpec]:
    """Every pure slab plus ``ALLOY_SLABS_PER_FACET`` random surface alloys per host and facet."""
    specs = []
    for metal in METALS:
        for facet in FACETS:
            n_surface = SLAB_SIZES[facet][0] * SLAB_SIZES[facet][1]
            specs.append(SlabSpec(metal, facet, "", ()))
            for _ in range(ALLOY_SLABS_PER_FACET):
                dopant = str(rng.choice([m for m in METALS if m != metal]))
                count = int(rng.integers(1, MAX_SUBSTITUTIONS + 1))
                chosen = np.sort(rng.choice(n_surface, size=count, replace=False))
                specs.append(SlabSpec(metal, facet, dopant, tuple(int(i) for i in chosen)))
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


def place_adsorbate(
    slab: Atoms,
    spec: SlabSpec,
    adsorbate: str,
    site: str,
    bond_lengths: dict[tuple[str, str, str], float],
    rng: np.random.Generator,
) -> Atoms:
    """Slab plus upright ``adsorbate`` on a random copy of ``site``, with seeded jitter."""
    size = SLAB_SIZES[spec.facet]
    cell_offset = (int(rng.integers(size[0])), int(rng.integers(size[1])))
    xy = _site_xy(slab, spec.facet, site, cell_offset) + rng.normal(0.0, LATERAL_JITTER, size=2)
    binder, others = ADSORBATES[adsorbate]
    kind = _site_kind(site)
    bonds = np.array([bond_lengths[symbol, binder, kind] for symbol in slab.get_chemical_symbols()])
    z = _binding_height(slab, xy, bonds + rng.uniform(*BOND_OFFSET_RANGE))
    symbols = [binder] + [symbol for symbol, _ in others]
    positions = [(xy[0], xy[1], z)] + [(xy[0], xy[1], z + dz) for _, dz in others]
    return slab + Atoms(symbols, positions)


def generate(
    num_structures: int = 2000,
    seed: int = 0,
    radius: float = 8.0,
    max_neighbors: int = 12,
    progress: bool = True,
) -> tuple[GraphArrays, list[dict]]:
    """Compute ``num_structures`` adsorption energies and their neighbour graphs.

    Deterministic in ``seed``. Structures whose |E_ads| exceeds ``MAX_ABS_ADSORPTION_ENERGY``
    are skipped and replaced by further draws, so the result has exactly ``num_structures``.
    """
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    mu = gas_references()
    bond_lengths = equilibrium_bond_lengths(mu)
    specs = slab_specs(rng)
    slabs = [build_slab(spec) for spec in specs]
    slab_energies: dict[int, float] = {}  # computed lazily: many adsorbates share one slab
    graphs, targets, metadata = [], [], []
    dropped = 0
    with tqdm(total=num_structures, desc="EMT adsorption dataset", disable=not progress) as bar:
        while len(targets) < num_structures:
            if dropped > num_structures:
                raise RuntimeError(f"EMT dataset: dropped {dropped} structures; generator parameters broken")
            k = int(rng.integers(len(specs)))
            spec = specs[k]
            adsorbate = str(rng.choice(list(ADSORBATES)))
            site = str(rng.choice(SITES[spec.facet]))
            atoms = place_adsorbate(slabs[k], spec, adsorbate, site, bond_lengths, rng)
            if k not in slab_energies:
                slab_energies[k] = _emt_energy(slabs[k])
            reference = sum(mu[symbol] for symbol in atoms.get_chemical_symbols()[len(slabs[k]) :])
            energy = _emt_energy(atoms) - slab_energies[k] - reference
            if not abs(energy) <= MAX_ABS_ADSORPTION_ENERGY:
                dropped += 1
                continue
            graphs.append(neighbor_graph(atoms, radius, max_neighbors))
            targets.append(energy)
            metadata.append(
                {
                    "metal": spec.metal,
                    "dopant": spec.dopant,
                    "adsorbate": adsorbate,
                    "facet": spec.facet,
                    "site": site,
                }
            )
            bar.update(1)
    return GraphArrays.concatenate(graphs, targets), metadata
