"""Featurisation speed of CGCNN data: structures per second of the neighbour search, in one run.

Three measurements, each on the same structures, interleaved so that other work on a shared
machine moves both sides of a ratio:

- the suite's ``neighbor_graph`` (matscipy's ``neighbour_list`` in C, then the nearest
  ``max_neighbors`` per atom) against ASE's ``neighbor_list`` (numpy; the search alone, without
  picking the nearest, so the ratio understates the suite's lead) on slabs, bulk cells and one
  large cell;
- ``neighbor_graphs`` over the driver's CPUs (worker processes) against one process, on enough
  structures to pass ``MIN_PARALLEL_ATOMS``; on a machine with few free cores the ratio is small.

    python experiments/benchmarks/featurisation.py            # a few minutes on 2 cores (ASE's search is slow)
    python experiments/benchmarks/featurisation.py --smoke-test
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ase import Atoms
from ase.build import bulk, fcc111, fcc211
from ase.neighborlist import neighbor_list

from experiments.benchmarks.hardware import describe_hardware
from trainables.data import graphs


def _structures(kind: str, count: int) -> list[Atoms]:
    build = {
        "fcc(111) slab + O, 13 atoms": lambda: fcc111("Cu", (2, 2, 3), vacuum=6.0) + Atoms("O", [(0, 0, 16.0)]),
        "fcc(211) slab, 12 atoms": lambda: fcc211("Pt", (3, 2, 2), vacuum=6.0),
        "fcc bulk, 64 atoms": lambda: bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2) * (2, 1, 1),
        "fcc bulk, 864 atoms": lambda: bulk("Cu", "fcc", a=3.6, cubic=True).repeat(6),
    }[kind]
    out = []
    for seed in range(count):
        atoms = build()
        atoms.rattle(0.05, seed=seed)  # no exact distance ties
        out.append(atoms)
    return out


def _rate(function: Callable[[Atoms], object], structures: list[Atoms]) -> float:
    started = time.perf_counter()
    for atoms in structures:
        function(atoms)
    return len(structures) / (time.perf_counter() - started)


def compare_search(count: int, rounds: int) -> list[str]:
    lines = []
    for kind in ("fcc(111) slab + O, 13 atoms", "fcc(211) slab, 12 atoms", "fcc bulk, 64 atoms", "fcc bulk, 864 atoms"):
        structures = _structures(kind, max(2, count // (20 if "864" in kind else 1)))
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_rate(graphs.neighbor_graph, structures))
            theirs.append(_rate(lambda atoms: neighbor_list("ijdS", atoms, graphs.DEFAULT_RADIUS), structures))
        best_ours, best_theirs = max(ours), max(theirs)
        lines.append(f"{kind}: neighbor_graph {best_ours:,.0f}/s, ASE neighbor_list {best_theirs:,.0f}/s, "
                     f"ratio {best_ours / best_theirs:.1f}x")
    return lines


def compare_workers(count: int) -> str:
    structures = _structures("fcc bulk, 64 atoms", count)
    previous = graphs.MIN_PARALLEL_ATOMS
    graphs.MIN_PARALLEL_ATOMS = 0  # measure the worker path whatever the size
    try:
        started = time.perf_counter()
        graphs.neighbor_graphs(structures, workers=1, progress=False)
        serial = len(structures) / (time.perf_counter() - started)
        started = time.perf_counter()
        graphs.neighbor_graphs(structures, progress=False)
        parallel = len(structures) / (time.perf_counter() - started)
    finally:
        graphs.MIN_PARALLEL_ATOMS = previous
    return (f"neighbor_graphs on {count} 64-atom cells: 1 process {serial:,.0f}/s, {graphs.available_cpus()} "
            f"processes {parallel:,.0f}/s (worker start-up included), ratio {parallel / serial:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=40,
                        help="structures per kind (864-atom cell: 1/20; the worker comparison: 50x)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each side counts")
    parser.add_argument("--smoke-test", action="store_true", help="a few structures, one round")
    args = parser.parse_args(argv)
    count, rounds = (20, 1) if args.smoke_test else (args.structures, args.rounds)
    print(describe_hardware())
    for line in compare_search(count, rounds):
        print(line)
    print(compare_workers(count * 50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
