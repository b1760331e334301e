"""Time to solution on the built-in CGCNN benchmark: how much sooner each strategy reaches random search's result.

The NERSC study's measurement: every strategy gets the same wall-clock budget per run, the same
max_epochs (``--max-epochs``, default 20) and the same seeds; the target is random search's mean
val_mae of its top 6 trials at the end of its budget (a trial's score is its best result so far,
errored trials do not count: ``experiments/core/scores.py``); the speed-up
of a strategy is random search's time to that target over the strategy's. The runs and the
analysis are the suite's own (``experiments/benchmarks/strategies.py`` runs strategies x seeds
through the run scripts with ``--time-budget-s``; ``experiments/compare.py`` computes the
curves, times and speed-ups); this script picks the strategies, passes the budget and prints
the figures as ratio lines.

Defaults: RS, ASHA/RS, AHB/RS, ASHA/HyperOpt, ASHA/Dragonfly and PBT, 3 seeds, 180 s per run
(18 runs: about an hour on a laptop). Dragonfly needs the ``[dragonfly]`` extra.

    python experiments/benchmarks/time_to_solution.py
    python experiments/benchmarks/time_to_solution.py --strategies random asha --seeds 0 --budget 120
    python experiments/benchmarks/time_to_solution.py --smoke-test
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from experiments.benchmarks.hardware import describe_hardware

# The study's names for the strategies -> benchmarks/strategies.py's strategy[:searcher].
STRATEGIES = {
    "RS": "random",
    "ASHA/RS": "asha:random",
    "AHB/RS": "ahb:random",
    "ASHA/HyperOpt": "asha:hyperopt",
    "ASHA/Dragonfly": "asha:dragonfly",
    "PBT": "pbt",
}
# compare.py's labels ("<searcher> + <scheduler>") of the same strategies.
LABELS = {"random": "random + fifo", "asha:random": "random + asha", "ahb:random": "random + ahb",
          "asha:hyperopt": "hyperopt + asha", "asha:dragonfly": "dragonfly + asha", "pbt": "random + pbt"}


def rung_evidence(run_dirs: list[Path], epochs: tuple[int, ...] = (1, 2, 4, 8), k: int = 6) -> list[str]:
    """How well a trial's metric at an early epoch predicts its score, from random search's full runs.

    ASHA can only be faster if its first rungs keep the trials that end best: for each early
    epoch, the Spearman rank correlation between the metric there and each trial's score (its best
    result over its whole run, as :mod:`experiments.core.scores` defines it), and how many of the k
    best trials rank in the top half / quarter at that epoch (what a rung with reduction factor 2 / 4
    would keep). Only trials that ran every epoch and did not error count.
    """
    import numpy as np
    import pandas as pd

    from experiments.analysis.experiment import load_experiment
    from experiments.core.scores import counts, trial_score

    early: dict[int, list[float]] = {e: [] for e in epochs}
    scores: list[float] = []  # sign * score: lower is better whatever the mode
    for run in run_dirs:
        exp = load_experiment(run)
        full = max((len(h) for h in exp.histories.values()), default=0)
        for trial in exp.summary["trials"]:
            history = exp.histories.get(trial["trial_id"])
            if not counts(trial) or history is None or len(history) < full or exp.metric not in history:
                continue
            values = history[exp.metric].to_numpy(dtype=float)
            score = trial_score(values, exp.summary["mode"])
            if score is None:
                continue
            scores.append(exp.sign * score)
            for e in epochs:
                early[e].append(exp.sign * float(values[e - 1]) if e <= len(values) else float("nan"))
    if len(scores) < 2 * k:
        return [f"rung evidence: only {len(scores)} complete random-search trials; need {2 * k}"]
    lines = [f"rung evidence from {len(scores)} complete random-search trials (the {k} best by score, "
             "a trial's best result):"]
    best = set(np.argsort(scores)[:k])
    for e, values in early.items():
        series = pd.Series(values)
        if series.isna().any():
            continue
        rho = series.corr(pd.Series(scores), method="spearman")
        ranks = series.rank(method="first").to_numpy()
        kept = {share: sum(ranks[i] <= len(values) * share for i in best) for share in (0.5, 0.25)}
        lines.append(f"  epoch {e}: rank correlation with the trial's score {rho:.2f}; of the {k} best, "
                     f"{kept[0.5]} in the top half, {kept[0.25]} in the top quarter there")
    return lines


def main(argv: list[str] | None = None) -> int:
    from experiments.benchmarks import strategies as benchmark_strategies

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES.values()),
                        help="strategy[:searcher] list (RS, the baseline, is added if missing)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=180.0, help="wall-clock seconds per run")
    parser.add_argument("--max-epochs", type=int, default=20,
                        help="epochs per trial at most, the same for every strategy (compare.py refuses runs "
                             "whose max_epochs differ)")
    parser.add_argument("--grace-period", type=int, help="ASHA / AHB: epochs before the first stop")
    parser.add_argument("--reduction-factor", type=float, help="ASHA / AHB: rung reduction factor")
    parser.add_argument("--storage-path", help="folder for all runs (default ./results/time_to_solution_<time>)")
    parser.add_argument("--smoke-test", action="store_true", help="RS and ASHA/RS, 1 seed, 20 s, tiny data")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.strategies, args.seeds, args.budget, args.max_epochs = ["random", "asha"], [0], 20.0, 3
    strategies = [s if ":" in s or s in ("random", "pbt") else f"{s}:random" for s in args.strategies]
    if "random" not in strategies:
        strategies.insert(0, "random")
    storage = Path(args.storage_path or f"./results/time_to_solution_{time.strftime('%Y%m%d-%H%M%S')}").resolve()

    print(describe_hardware(torch_threads=1))
    print(f"{len(strategies)} strategies x {len(args.seeds)} seed(s) x {args.budget:g} s: {' '.join(strategies)}",
          flush=True)
    flags = ["--strategies", *strategies, "--seeds", *map(str, args.seeds), "--time-budget-s", str(args.budget),
             "--storage-path", str(storage), "--top-k", "6"]
    if args.max_epochs < 1:
        print(f"error: --max-epochs must be a positive integer, got {args.max_epochs}", file=sys.stderr)
        return 2
    flags += ["--max-epochs", str(args.max_epochs)]
    for flag, value in (("--grace-period", args.grace_period), ("--reduction-factor", args.reduction_factor)):
        if value is not None:
            flags += [flag, f"{value:g}"]
    if args.smoke_test:
        flags.append("--smoke-test")
    status = benchmark_strategies.main(flags)
    if status != 0:
        return status

    with open(storage / "comparison.csv", newline="") as fh:
        rows = {row["strategy"]: row for row in csv.DictReader(fh)}
    names = {code: name for name, code in STRATEGIES.items()}
    for code in strategies:
        row = rows.get(LABELS.get(code, code))
        if row is None:
            continue
        name = names.get(code, code)
        target = " (target >= 5x)" if code == "asha:random" else ""
        print(f"SPEEDUP {name} vs RS (time to RS's top-6 mean val_mae at the end of its budget): "
              f"{row['speedup_vs_random']}x{target}; time to target {row['time_to_target_s']} s, top-6 mean at the "
              f"end {row['final_topk_mean']}, trials finished {row['trials_finished']} per run")
    print("\n".join(rung_evidence(sorted(p.parent for p in storage.glob("random_random_seed*/summary.json")))))
    print(f"runs, comparison.md and comparison.png in {storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
