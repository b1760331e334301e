"""Benchmark search strategies: each strategy x seed on one model with the same wall-clock budget.

Define, run, analyse: the strategies are the ``run_<strategy>.py`` scripts (``STRATEGIES`` in
core/strategies.py) with an optional searcher, written ``strategy[:searcher]`` (``asha``,
``asha:hyperopt``, ``pbt``); each run is a real experiment through its run script, with
``--time-budget-s`` so every run gets the same wall-clock time; the analysis is
``experiments/compare.py`` over all the runs. Results go to ``<storage>/<strategy>_<searcher>_seed<N>``
plus ``comparison.png``, ``comparison.md`` and ``comparison.csv`` in ``<storage>``.

The defaults (random search, ASHA and async HyperBand, three seeds, 5 minutes each, on the
built-in CGCNN data) take about 50 minutes on a laptop CPU; ``--smoke-test`` takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments.core.config import ConfigError, resolve_config
from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.core.strategies import STRATEGIES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STRATEGIES = ("random", "asha", "ahb")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BUDGET_S = 300.0
# Enough trials that the time budget, not the trial count, ends every sampling strategy; Tune
# creates them lazily, so the unused ones cost nothing. PBT keeps its configured population.
BUDGET_BOUND_SAMPLES = 1000
SMOKE = {"strategies": ("random", "asha"), "seeds": (0, 1), "time_budget_s": 15.0}


def run_env() -> dict[str, str]:
    """The run scripts' environment: Tune's queue of pending trials kept short.

    With unbounded sampling Tune would otherwise create 200 pending trials (placement groups) at
    once, whose set-up eats into a short budget. Twice the local cores keeps every core busy; on
    a cluster (``--address``) set ``TUNE_MAX_PENDING_TRIALS_PG`` yourself.
    """
    env = dict(os.environ)
    env.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(8, 2 * (os.cpu_count() or 1))))
    return env


def parse_strategy(text: str) -> tuple[str, str]:
    """``"asha:hyperopt"`` -> ``("asha", "hyperopt")``; the searcher defaults to the strategy's first."""
    strategy, _, searcher = text.partition(":")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}'; available: {', '.join(STRATEGIES)}")
    allowed = STRATEGIES[strategy].searchers
    searcher = searcher or allowed[0]
    if searcher not in allowed:
        raise ConfigError(f"strategy '{strategy}' works with search algorithm(s) {', '.join(allowed)}, "
                          f"not '{searcher}'")
    return strategy, searcher


def run_args(strategy: str, searcher: str, seed: int, args: argparse.Namespace, storage: Path) -> list[str]:
    """The run script's command-line flags for one strategy x seed."""
    flags = ["--model", args.model, "--seed", str(seed), "--time-budget-s", str(args.time_budget_s),
             "--storage-path", str(storage), "--name", f"{strategy}_{searcher}_seed{seed}"]
    if strategy not in ("grid", "pbt"):
        flags += ["--search", searcher]
    if args.smoke_test:
        flags.append("--smoke-test")
    if args.max_epochs is not None:
        flags += ["--max-epochs", str(args.max_epochs)]
    if strategy in ("asha", "ahb"):
        for flag, value in (("--grace-period", args.grace_period), ("--reduction-factor", args.reduction_factor)):
            if value is not None:
                flags += [flag, f"{value:g}"]
    samples = args.num_samples or (BUDGET_BOUND_SAMPLES if strategy not in ("grid", "pbt") else None)
    if samples:
        flags += ["--num-samples", str(samples)]
    if args.data:
        flags += ["--data", args.data]
    if args.address:
        flags += ["--address", args.address]
    return flags


def _as_cli_dict(strategy: str, flags: list[str]) -> dict[str, object]:
    """The flags as the dict the strategy's parser would produce (for validating before any run)."""
    from experiments.core.config import build_parser

    return vars(build_parser(strategy, "").parse_args(flags))


def main(argv: list[str] | None = None) -> int:
    from experiments.analysis.comparison import compare

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="cgcnn", help="model to tune (every strategy uses its config file)")
    parser.add_argument("--strategies", nargs="+", help=f"strategy[:searcher] ... (default: {DEFAULT_STRATEGIES})")
    parser.add_argument("--seeds", nargs="+", type=int, help=f"seeds to repeat each strategy with "
                                                             f"(default: {DEFAULT_SEEDS})")
    parser.add_argument("--time-budget-s", type=float, help=f"wall-clock budget per run (default {DEFAULT_BUDGET_S})")
    parser.add_argument("--max-epochs", type=int,
                        help="epochs per trial at most, the same for every strategy so their runs compare "
                             "(default: the model's ASHA config, the default experiment's)")
    parser.add_argument("--grace-period", type=int, help="ASHA / AHB: epochs before the first stop")
    parser.add_argument("--reduction-factor", type=float, help="ASHA / AHB: rung reduction factor")
    parser.add_argument("--num-samples", type=int, help="trials per run (default: unbounded except PBT's population)")
    parser.add_argument("--data", help="CGCNN: a CIF folder with id_prop.csv instead of the built-in data")
    parser.add_argument("--address", help="join a running Ray cluster")
    parser.add_argument("--storage-path", help="folder for all runs (default ./results/benchmark_<time>)")
    parser.add_argument("--top-k", type=int, default=6, help="compare the mean of the best k trials so far")
    parser.add_argument("--smoke-test", action="store_true", help="2 strategies x 2 seeds x 15 s on tiny data")
    args = parser.parse_args(argv)
    smoke = SMOKE if args.smoke_test else {}
    args.time_budget_s = args.time_budget_s or smoke.get("time_budget_s", DEFAULT_BUDGET_S)
    strategies = args.strategies or list(smoke.get("strategies", DEFAULT_STRATEGIES))
    seeds = args.seeds or list(smoke.get("seeds", DEFAULT_SEEDS))
    storage = Path(args.storage_path or f"./results/benchmark_{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    try:
        if args.time_budget_s <= 0:
            raise ConfigError(f"--time-budget-s must be positive, got {args.time_budget_s}")
        if args.max_epochs is None:  # the configs differ per strategy; compare.py refuses mixed max_epochs
            default = {"model": args.model, "smoke_test": args.smoke_test}
            args.max_epochs = resolve_config("asha", default, {"search": "random"}, STRATEGIES["asha"].smoke).max_epochs
        runs = []
        # Seed by seed, every strategy in turn: a slow stretch of a shared machine then falls on
        # all strategies alike instead of on one strategy's runs.
        for seed in seeds:
            for text in strategies:
                strategy, searcher = parse_strategy(text)
                flags = run_args(strategy, searcher, seed, args, storage)
                # Every run's configuration is checked before the first one starts.
                resolve_config(strategy, _as_cli_dict(strategy, flags),
                               {"search": STRATEGIES[strategy].searchers[0]}, STRATEGIES[strategy].smoke)
                runs.append((strategy, flags))
    except INPUT_ERRORS as err:
        return print_error(err)

    storage.mkdir(parents=True, exist_ok=True)
    finished = []
    for i, (strategy, flags) in enumerate(runs, start=1):
        name = flags[flags.index("--name") + 1]
        print(f"[{i}/{len(runs)}] {name}: {args.time_budget_s:g} s", flush=True)
        command = [sys.executable, str(REPO_ROOT / "experiments" / f"run_{strategy}.py"), *flags]
        proc = subprocess.run(command, cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True)
        log = storage / f"{name}.log"
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode == 2 or not (storage / name / "summary.json").is_file():
            print(f"error: {name} did not run (exit {proc.returncode}); see {log}", file=sys.stderr)
            return 2
        if proc.returncode != 0:
            print(f"warning: {name} exited with {proc.returncode} (see {log}); its finished trials still count")
        finished.append(storage / name)
    try:
        rows, _ = compare(finished, storage, k=args.top_k)
    except INPUT_ERRORS as err:
        return print_error(err)
    print((storage / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
