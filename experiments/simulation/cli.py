"""``experiments/simulate.py``: parse the flags, read the pool, replay the strategies, write the report."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

# hyperopt / dragonfly are refused: they cannot be told the recorded configuration that ran (strategies.py)
DEFAULT_STRATEGIES = ("random:fifo", "random:asha", "random:ahb")


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate.py", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("sources", nargs="*", metavar="DIR",
                   help="finished full-length experiments (folders with summary.json) or one pool file (.json.gz)")
    p.add_argument("--pool", help="a shipped CGCNN pool, 'builtin' (the default experiment's space) or "
                   "'cgcnn_six' (six hyperparameters), or a pool file, instead of DIRs")
    p.add_argument("--workers", type=int, default=16, help="trial slots running at once")
    p.add_argument("--budget-s", type=float, default=28800.0, help="simulated wall-clock budget of each run (s)")
    p.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), metavar="SEARCHER:SCHEDULER",
                   help="strategies to replay: searcher random|quasirandom, scheduler fifo|asha|ahb (hyperopt and "
                   "dragonfly are refused: they cannot be told the recorded configuration that ran)")
    p.add_argument("--seeds", type=int, default=10, help="repetitions per strategy (seeds 0..K-1)")
    p.add_argument("--top-k", type=int, default=6, help="average the best k trials so far")
    p.add_argument("--grace-period", type=int, help="ASHA / AHB: epochs before the first stopping decision "
                   "(default: configs/<model>/asha.yaml, ahb.yaml)")
    p.add_argument("--reduction-factor", type=float, help="ASHA / AHB: 1 / the share promoted at each rung")
    p.add_argument("--brackets", type=int, help="AHB: number of brackets (default: configs/<model>/ahb.yaml)")
    p.add_argument("--max-concurrent-search", type=int,
                   help="HyperOpt / Dragonfly: proposals outstanding at once (default: the config's)")
    p.add_argument("--num-samples", type=int, default=0, help="trials per run at most (0: the budget decides)")
    p.add_argument("--target", type=float, help="metric value to reach (default: the pool's --target-quantile)")
    p.add_argument("--target-quantile", type=float, default=0.1,
                   help="the default target: this quantile of the pool's curves' best values (random search needs "
                   "about top-k / q full-length draws to reach it; see experiments/simulation/bootstrap.py)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap replicates (curves and seeds resampled) behind each 95%% interval")
    p.add_argument("--out", default="./results/simulation", help="folder for simulated_comparison.png/.md/.csv")
    p.add_argument("--real", nargs="+", metavar="DIR", help="real experiments to set beside the simulated "
                   "ones: trials started, epochs trained and final top-k mean, real vs simulated")
    p.add_argument("--save-pool", metavar="FILE", help="save the pool read from DIRs as FILE (.json.gz) and stop")
    p.add_argument("--pool-metadata", nargs="+", default=[], metavar="KEY=VALUE",
                   help="with --save-pool: facts to store with the pool (git commit, command, date)")
    return p


def main(argv: list[str] | None = None, description: str = "") -> int:
    """Entry point of ``experiments/simulate.py``; bad input is one ``error:`` line, exit 2."""
    from experiments.core.errors import INPUT_ERRORS, print_error
    from experiments.simulation.errors import SimulationError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(description).parse_args(argv)
    started = time.perf_counter()
    try:
        text = _run(args, started, "python experiments/simulate.py " + " ".join(shlex.quote(a) for a in argv))
    except (SimulationError, *INPUT_ERRORS) as err:
        return print_error(err)
    print(text)
    return 0


def _run(args: argparse.Namespace, started: float, command: str) -> str:
    import matplotlib.pyplot as plt

    from experiments.simulation.errors import SimulationError
    from experiments.simulation.pool import read_pool, save_pool
    from experiments.simulation.replay import replay_strategy
    from experiments.simulation.report import validation_table, write_report
    from experiments.simulation.strategies import check_replayable, parse_strategy

    if args.pool and args.sources:
        raise SimulationError("give experiment folders or --pool, not both")
    if not args.pool and not args.sources:
        raise SimulationError("give finished experiment folders (DIR ...) or --pool builtin (or cgcnn_six)")
    pool = read_pool([args.pool] if args.pool else args.sources)
    if args.save_pool:
        metadata = {}
        for item in args.pool_metadata:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SimulationError(f"--pool-metadata takes KEY=VALUE, got '{item}'")
            metadata[key] = value
        path = save_pool(pool, args.save_pool, metadata)
        return (f"saved {len(pool.trials)} full-length curves ({pool.max_epochs} epochs, {pool.metric}) to {path} "
                f"({path.stat().st_size / 1024:.0f} KiB)")
    if not 0 < args.target_quantile < 1:
        raise SimulationError(f"--target-quantile must lie between 0 and 1, got {args.target_quantile}")
    for flag, value in (("--seeds", args.seeds), ("--top-k", args.top_k), ("--bootstrap", args.bootstrap)):
        if value < 1:
            raise SimulationError(f"{flag} must be a positive integer, got {value}")
    if args.num_samples < 0:
        raise SimulationError(f"--num-samples must be 0 or more, got {args.num_samples}")
    names = [parse_strategy(s) for s in args.strategies]
    if len({n.label for n in names}) != len(names):
        raise SimulationError("a strategy is named twice in --strategies")
    settings = {key: value for key, value in (
        ("grace_period", args.grace_period), ("reduction_factor", args.reduction_factor),
        ("brackets", args.brackets), ("max_concurrent_search", args.max_concurrent_search)) if value is not None}
    for name in names:
        check_replayable(name, pool, settings)
    seeds = list(range(args.seeds))
    results = [replay_strategy(name, pool, workers=args.workers, budget_s=args.budget_s, seeds=seeds,
                               settings=settings, num_samples=args.num_samples) for name in names]
    text, rows, fig = write_report(results, pool, args.out, k=args.top_k, workers=args.workers,
                                   budget_s=args.budget_s, target=args.target, command=command,
                                   target_quantile=args.target_quantile, replicates=args.bootstrap,
                                   elapsed_s=time.perf_counter() - started)
    plt.close(fig)
    if args.real:
        text += "\n" + validation_table(results, pool, args.real, args.top_k, Path(args.out))
    return text + f"\nwritten to {Path(args.out).resolve()}; simulated in {time.perf_counter() - started:.1f} s"
