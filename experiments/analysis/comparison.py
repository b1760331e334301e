"""Compare search strategies by time to solution (the NERSC study's analysis, automated).

``python experiments/compare.py DIR [DIR ...]`` reads experiment folders (each with a
``summary.json``), groups them by strategy (searcher + scheduler) and repeated seed, and for each
strategy draws the mean metric of the top-k trials so far (k = 6, as the NERSC study) against
wall-clock time since the experiment started: the mean over seeds with a ± one standard deviation
band, one figure for all strategies. A table (Markdown and CSV next to the figure) gives for each
strategy the time to reach a target (default: what random search reaches at the end of its
budget), the speed-up over random search, the trials finished and the best single trial.

The curves are step functions: the top-k mean changes only when a trial reports, so every
quantity here is evaluated exactly at the reported results' times.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from experiments.analysis.experiment import Experiment, load_experiment, result_times
from experiments.core.config import ConfigError

RANDOM_SEARCH = "random + fifo"  # plain random search, the baseline of every speed-up


@dataclass
class Curve:
    """A step function: ``values[i]`` holds from ``times[i]`` until the next time (NaN: undefined).

    ``end`` is when the run ended; its last value holds after that (a finished run keeps its trials).
    """

    times: np.ndarray
    values: np.ndarray
    end: float

    def at(self, t: np.ndarray) -> np.ndarray:
        """The curve's value at each time in ``t`` (NaN before its first value)."""
        t = np.asarray(t, dtype=float)
        if not len(self.values):
            return np.full(len(t), np.nan)
        idx = np.searchsorted(self.times, t, side="right") - 1
        return np.where(idx >= 0, self.values[np.clip(idx, 0, None)], np.nan)


def strategy_label(summary: dict[str, Any]) -> str:
    """``"<searcher> + <scheduler>"``, e.g. ``"random + asha"``; ``"random + fifo"`` is random search."""
    return f"{summary['searcher']} + {summary['scheduler']}"


def topk_curve(times: np.ndarray, trial_ids: list[str], values: np.ndarray, k: int, mode: str,
               end: float | None = None) -> Curve:
    """Mean of the best ``k`` trials so far after each result (each trial counts with its best value).

    Undefined (NaN) until ``k`` trials have reported.
    """
    sign = 1.0 if mode == "min" else -1.0
    best: dict[str, float] = {}
    out = np.full(len(values), np.nan)
    for i, (trial, value) in enumerate(zip(trial_ids, values, strict=True)):
        if math.isfinite(value):
            best[trial] = min(best.get(trial, math.inf), sign * value)
        if len(best) >= k:
            out[i] = sign * float(np.mean(sorted(best.values())[:k]))
    times = np.asarray(times, dtype=float)
    return Curve(times, out, float(end if end is not None else (times[-1] if len(times) else 0.0)))


def experiment_curve(exp: Experiment, k: int) -> Curve:
    """The top-k curve of one experiment over wall-clock seconds since it started."""
    table = result_times(exp)
    end = max(float(exp.summary.get("wall_time_s") or 0.0), float(table["elapsed_s"].max()) if len(table) else 0.0)
    return topk_curve(table["elapsed_s"].to_numpy(), list(table["trial_id"]), table["value"].to_numpy(), k,
                      exp.summary["mode"], end)


def mean_curve(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds at every time any seed's curve changes.

    Defined only where every seed's curve is (a strategy is shown once all its seeds have k trials).
    """
    times = np.unique(np.concatenate([c.times for c in curves] + [[c.end for c in curves]]))
    stacked = np.vstack([c.at(times) for c in curves])
    defined = ~np.isnan(stacked).any(axis=0)
    mean = np.full(len(times), np.nan)
    std = np.full(len(times), np.nan)
    mean[defined] = stacked[:, defined].mean(axis=0)
    std[defined] = stacked[:, defined].std(axis=0)
    return times, mean, std


def time_to_target(times: np.ndarray, values: np.ndarray, target: float, mode: str) -> float | None:
    """First time the curve reaches ``target`` (at or below it for ``min``); None if it never does."""
    reached = values <= target if mode == "min" else values >= target
    reached &= ~np.isnan(values)
    hits = np.flatnonzero(reached)
    return float(times[hits[0]]) if len(hits) else None


def final_value(times: np.ndarray, values: np.ndarray) -> float | None:
    """The last defined value of a curve."""
    defined = np.flatnonzero(~np.isnan(values))
    return float(values[defined[-1]]) if len(defined) else None


@dataclass
class StrategyResult:
    """One row of the comparison: a strategy over its seeds."""

    label: str
    seeds: list[int]
    times: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    final: float | None
    trials_finished: float
    best_metric: float | None
    best_test: float | None
    best_where: str
    time_to_target: float | None = None
    speedup: float | None = None


def summarize_strategies(groups: dict[str, list[Experiment]], curves: dict[str, list[Curve]], mode: str,
                         target: float | None = None, baseline: str = RANDOM_SEARCH) -> tuple[list[StrategyResult],
                                                                                              float | None]:
    """Rows of the table and the target used: time to target, speed-up over ``baseline``, trials, best trial.

    The target defaults to the baseline's final mean top-k value; without a baseline and without
    ``target`` the time-to-target columns stay empty.
    """
    sign = 1 if mode == "min" else -1
    rows = []
    for label, exps in groups.items():
        times, mean, std = mean_curve(curves[label])
        trials = [t for e in exps for t in e.summary["trials"]
                  if not t.get("errored") and isinstance(t.get("metric"), (int, float)) and math.isfinite(t["metric"])]
        best = min(trials, key=lambda t: sign * t["metric"]) if trials else None
        test_key = next((key for key in (best or {}) if key.startswith("test_")), None)
        where = next((e.summary["name"] for e in exps if best is not None and best in e.summary["trials"]), "")
        rows.append(StrategyResult(
            label=label, seeds=[e.summary.get("seed") for e in exps], times=times, mean=mean, std=std,
            final=final_value(times, mean),
            trials_finished=float(np.mean([sum(1 for t in e.summary["trials"] if t.get("iteration"))
                                           for e in exps])),
            best_metric=best["metric"] if best else None,
            best_test=best.get(test_key) if best and test_key else None,
            best_where=where,
        ))
    by_label = {r.label: r for r in rows}
    if target is None and baseline in by_label:
        target = by_label[baseline].final
    if target is not None:
        for row in rows:
            row.time_to_target = time_to_target(row.times, row.mean, target, mode)
        base = by_label.get(baseline)
        if base is not None and base.time_to_target is not None:
            for row in rows:
                if row.time_to_target is not None:
                    # A strategy already there at its first defined point gets the honest bound, not infinity.
                    row.speedup = base.time_to_target / max(row.time_to_target, 1e-9)
    return rows, target


def plot_comparison(rows: list[StrategyResult], metric: str, k: int, target: float | None) -> Figure:
    """Mean top-k metric over wall-clock time per strategy, ± one standard deviation over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        colour = f"C{i % 10}"
        ax.step(row.times, row.mean, where="post", color=colour, label=f"{row.label} ({len(row.seeds)} seeds)")
        ax.fill_between(row.times, row.mean - row.std, row.mean + row.std, step="post", color=colour, alpha=0.2)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"target {target:.4g}")
    ax.set_xlabel("wall-clock time since the experiment started (s)")
    ax.set_ylabel(f"mean {metric} of the top {k} trials")
    ax.set_title("time to solution: mean ± std over seeds", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def table_rows(rows: list[StrategyResult]) -> list[dict[str, str]]:
    return [{
        "strategy": r.label,
        "seeds": " ".join(str(s) for s in r.seeds),
        "final_topk_mean": _fmt(r.final),
        "time_to_target_s": _fmt(r.time_to_target, ".1f"),
        "speedup_vs_random": _fmt(r.speedup, ".2f"),
        "trials_finished": _fmt(r.trials_finished, ".1f"),
        "best_trial_metric": _fmt(r.best_metric),
        "best_trial_test": _fmt(r.best_test),
        "best_trial_experiment": r.best_where,
    } for r in rows]


def load_groups(dirs: list[str | Path]) -> dict[str, list[Experiment]]:
    """Experiments grouped by strategy label; all must share model, metric and mode."""
    experiments = [load_experiment(d) for d in dirs]
    first = experiments[0].summary
    for exp in experiments[1:]:
        for key in ("model", "metric", "mode"):
            if exp.summary.get(key) != first.get(key):
                raise ConfigError(f"cannot compare {exp.path} ({key} {exp.summary.get(key)}) with "
                                  f"{experiments[0].path} ({key} {first.get(key)})")
    groups: dict[str, list[Experiment]] = {}
    for exp in experiments:
        groups.setdefault(strategy_label(exp.summary), []).append(exp)
    for label, exps in groups.items():
        seeds = [e.summary.get("seed") for e in exps]
        if len(set(seeds)) != len(seeds):
            print(f"compare: note: strategy '{label}' has repeated seed(s) {seeds}; each run counts once")
    return groups


def compare(dirs: list[str | Path], out_dir: str | Path, k: int = 6, target: float | None = None,
            baseline: str = RANDOM_SEARCH) -> tuple[list[StrategyResult], Figure]:
    """Compare experiment folders; write ``comparison.png``, ``comparison.md`` and ``comparison.csv``."""
    if k < 1:
        raise ConfigError(f"--top-k must be a positive integer, got {k}")
    groups = load_groups(dirs)
    first = next(iter(groups.values()))[0].summary
    curves = {label: [experiment_curve(e, k) for e in exps] for label, exps in groups.items()}
    rows, target = summarize_strategies(groups, curves, first["mode"], target, baseline)
    fig = plot_comparison(rows, first["metric"], k, target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "comparison.png", dpi=100)
    table = table_rows(rows)
    with open(out / "comparison.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    if target is not None:
        source = f"the final top-{k} mean of {baseline}" if baseline in groups else "given"
        target_text = f"{target:.4g} ({source})"
    elif baseline in groups:
        target_text = f"none ({baseline} never had {k} trials with a result; pass --target)"
    else:
        target_text = f"none (no {baseline} experiment among these; pass --target)"
    lines = [f"# Strategy comparison: {first['model']}, {first['metric']} ({first['mode']}), top-{k} mean", "",
             f"Target: {target_text}. Speed-up = time to target of {baseline} / time to target of the strategy.", "",
             "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row.values()) + " |" for row in table]
    lines += ["", "![comparison](comparison.png)", ""]
    (out / "comparison.md").write_text("\n".join(lines))
    return rows, fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("experiments", nargs="+", metavar="DIR", help="experiment folders (each with summary.json)")
    parser.add_argument("--top-k", type=int, default=6, help="average the best k trials so far")
    parser.add_argument("--target", type=float, help="metric value to reach (default: random search's final top-k)")
    parser.add_argument("--baseline", default=RANDOM_SEARCH, help="strategy the speed-ups are relative to")
    parser.add_argument("--out", help="folder for comparison.png/.md/.csv (default: the experiments' common parent)")
    args = parser.parse_args(argv)
    try:
        out = args.out or _common_parent(args.experiments)
        rows, fig = compare(args.experiments, out, args.top_k, args.target, args.baseline)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plt.close(fig)
    print((Path(out) / "comparison.md").read_text())
    return 0


def _common_parent(dirs: list[str]) -> str:
    parents = [str(Path(d).expanduser().resolve().parent) for d in dirs]
    return os.path.commonpath(parents)


if __name__ == "__main__":
    sys.exit(main())
