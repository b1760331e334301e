"""The simulated comparison: compare.py's time-to-solution table and top-k plot, drawn from simulated runs.

The curves, the table and the figure are ``experiments/analysis/comparison.py``'s own
(``topk_curve``, ``summarize_strategies``, ``plot_comparison``, ``table_rows``): a simulated run
is handed to them as an experiment whose summary lists its trials, so real and simulated results
read alike. What differs is said on every output: the title, the axis and the files
(``simulated_comparison.{md,csv,png}``) say *simulated*, and a second table gives what only a
simulation knows (epochs trained, trials stopped, passes over the pool).

A top-k curve counts each recorded trial once, with its best result over its replays (the
curve's trial key is the recorded trial's key), so drawing a recorded trial again in a later
pass over the pool never counts as a new model. A strategy whose runs drew the pool more than
once is marked POOL-LIMITED (its final top-k is then the pool's, not a search's), and the printed
conclusion says so. Every mean of the table carries a 95 % bootstrap interval over the pool's
curves and the seeds (:mod:`experiments.simulation.bootstrap`); the default target is a pool
quantile (:func:`~experiments.simulation.bootstrap.pool_target`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from experiments.analysis.comparison import (
    RANDOM_SEARCH,
    Curve,
    StrategyResult,
    plot_comparison,
    summarize_strategies,
    table_rows,
    topk_curve,
    write_csv,
)
from experiments.analysis.experiment import Experiment
from experiments.simulation.bootstrap import (
    DEFAULT_QUANTILE,
    DEFAULT_REPLICATES,
    draws,
    expected_draws,
    interval,
    replicate,
    seed_interval,
)
from experiments.simulation.engine import SimulatedRun
from experiments.simulation.pool import Pool
from experiments.simulation.strategies import StrategyName


@dataclass
class StrategyRuns:
    """One strategy's simulated runs (one per seed) and what its searcher did with the pool."""

    name: StrategyName
    runs: list[SimulatedRun] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)  # passes over the pool per run
    distinct: list[int] = field(default_factory=list)  # distinct recorded trials used per run
    distances: list[float] = field(default_factory=list)  # nearest-recorded distances (model-based searchers)


def run_curve(run: SimulatedRun, k: int, mode: str) -> Curve:
    """The top-k curve of one simulated run: compare.py's ``topk_curve`` over its results.

    The run keeps only the results that improved their recorded trial's best so far (the others
    cannot change the curve), keyed by recorded trial, so a recorded trial replayed again counts once.
    """
    return topk_curve(np.array(run.times, dtype=float), list(run.keys), np.array(run.values, dtype=float), k, mode,
                      end=run.end)


def as_experiment(label: str, run: SimulatedRun, pool: Pool) -> Experiment:
    """A simulated run as the experiment compare.py's table reads: a summary listing its trials.

    Each trial record is what ``summary.json`` holds (``experiments/core/scores.py``): ``metric`` is
    the trial's score, its best result over the epochs it trained, with the test metric of that
    result. Simulated trials that replayed the same recorded trial for the same epochs are the same
    trial as far as the table goes, so they share one record (named ``<recorded trial>@<epochs>``):
    a cluster-scale run lists millions of trials, but only a few thousand distinct records.
    """
    from experiments.core.scores import best_position

    test_key = pool.test_metric or "test_metric"
    records: dict[tuple[int, int], dict] = {}
    trials = []
    for index, epochs in zip(run.trial_keys, run.trial_epochs, strict=True):
        record = records.get((index, epochs))
        if record is None:
            rec = pool.trials[index]
            best = best_position(rec.values[:epochs], pool.mode) if epochs else None
            record = records[(index, epochs)] = {
                "trial_id": f"{rec.key}@{epochs}", "metric": None if best is None else float(rec.values[best]),
                test_key: None if best is None or rec.tests is None else float(rec.tests[best]),
                "last_metric": float(rec.values[epochs - 1]) if epochs else None,
                "iteration": epochs, "errored": False, "diverged": rec.ends_itself}
        trials.append(record)
    summary = {"name": f"simulated {label} seed {run.seed}", "seed": run.seed, "metric": pool.metric,
               "mode": pool.mode, "model": pool.model, "trials": trials}
    return Experiment(path=Path("simulated"), summary=summary, histories={})


def pool_topk(pool: Pool, k: int) -> float | None:
    """The best any strategy can reach on this pool: the mean of the k best recorded trials' best values
    (trials that ended themselves, diverged or collapsed, never rank)."""
    sign = 1.0 if pool.mode == "min" else -1.0
    best = sorted(sign * float(np.nanmin(sign * t.values)) for t in pool.trials
                  if np.isfinite(t.values).any() and not t.ends_itself)
    return sign * float(np.mean(best[:k])) if len(best) >= k else None


def summarize(results: list[StrategyRuns], pool: Pool, k: int, target: float | None = None,
              baseline: str = RANDOM_SEARCH) -> tuple[list[StrategyResult], float | None]:
    """compare.py's rows (time to target, speed-up, trials, best trial) for the simulated strategies.

    ``target`` must be given (the CLI takes it from :func:`~experiments.simulation.bootstrap.pool_target`
    unless ``--target`` names one); None leaves compare.py's default, the baseline's final value.
    """
    groups = {r.name.label: [as_experiment(r.name.label, run, pool) for run in r.runs] for r in results}
    curves = {r.name.label: [run_curve(run, k, pool.mode) for run in r.runs] for r in results}
    return summarize_strategies(groups, curves, pool.mode, target, baseline)


def trials_finished(run: SimulatedRun, pool: Pool) -> int:
    """compare.py's "trials finished" of one run: trials with a result whose recorded trial did not diverge."""
    return sum(1 for index, epochs in zip(run.trial_keys, run.trial_epochs, strict=True)
               if epochs and not pool.trials[index].ends_itself)


def first_pass_end(run: SimulatedRun, n: int) -> float:
    """When the run started its (n+1)-th trial, the first one of a second pass over an n-curve pool (inf: never)."""
    starts = [start for number, start in zip(run.trial_numbers, run.trial_started, strict=True) if number >= n]
    return min(starts) if starts else math.inf


@dataclass
class Intervals:
    """95 % bootstrap intervals (over curves and seeds) of one strategy's means, see ``bootstrap``."""

    final: tuple[float, float]
    time_to_target: tuple[float, float]
    speedup: tuple[float, float]
    trials: tuple[float, float]
    time_to_target_replicates: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    final_replicates: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def bootstrap_intervals(results: list[StrategyRuns], pool: Pool, k: int, target: float | None,
                        baseline: str = RANDOM_SEARCH, replicates: int = DEFAULT_REPLICATES,
                        seed: int = 0) -> dict[str, Intervals]:
    """Each strategy's intervals; the curve resample is shared by all strategies (paired speed-ups)."""
    weights, seed_draws = draws(pool, [len(r.runs) for r in results], replicates, seed)
    reps = {r.name.label: replicate(r.runs, pool, k, target, weights, d)
            for r, d in zip(results, seed_draws, strict=True)}
    out = {}
    base = reps.get(baseline)
    for r in results:
        rep = reps[r.name.label]
        speedup = (math.nan, math.nan)
        if base is not None and target is not None:
            a, b = base.time_to_target, rep.time_to_target
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(np.isfinite(b), a / np.maximum(b, 1e-9), np.where(np.isfinite(a), 0.0, np.nan))
            speedup = interval(ratio)
        out[r.name.label] = Intervals(
            final=interval(rep.final), time_to_target=interval(rep.time_to_target), speedup=speedup,
            trials=seed_interval([trials_finished(run, pool) for run in r.runs], replicates, seed),
            time_to_target_replicates=rep.time_to_target, final_replicates=rep.final)
    return out


def _ci(bounds: tuple[float, float], spec: str = ".4g", infinite: str = "never") -> str:
    lo, hi = bounds
    if math.isnan(lo):
        return "-"

    def one(x: float) -> str:
        return infinite if math.isinf(x) and x > 0 else format(x, spec)

    return f"[{one(lo)}, {one(hi)}]"


def simulation_rows(results: list[StrategyRuns]) -> list[dict[str, str]]:
    """What only the simulation knows, per strategy: means over seeds with their 95 % seed-bootstrap interval."""
    rows = []
    for r in results:
        def mean(values: list[float]) -> str:
            if not values:
                return "-"
            return f"{np.mean(values):.1f} {_ci(seed_interval(list(values)), '.1f')}" if len(values) > 1 \
                else f"{values[0]:.1f}"

        rows.append({
            "strategy": r.name.label,
            "trials_started": mean([run.num_trials for run in r.runs]),
            "trials_to_max_epochs": mean([sum(f and not s for f, s in zip(run.trial_finished, run.trial_stopped,
                                                                          strict=True)) for run in r.runs]),
            "trials_stopped_early": mean([sum(run.trial_stopped) for run in r.runs]),
            "epochs_trained": mean([run.epochs_trained for run in r.runs]),
            "distinct_recorded_trials": mean(r.distinct),
            "passes_over_pool": mean(r.passes),
            "mean_nearest_distance": f"{np.mean(r.distances):.3f}" if r.distances else "-",
        })
    return rows


def _markdown_table(rows: list[dict[str, str]]) -> list[str]:
    return (["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(row.values()) + " |" for row in rows])


def plot_simulated(rows: list[StrategyResult], pool: Pool, k: int, target: float | None, workers: int,
                   ceiling: float | None) -> Figure:
    """compare.py's figure, labelled as simulated, with the pool's own top-k (the ceiling) drawn in."""
    fig = plot_comparison(rows, pool.metric, k, target)
    ax = fig.axes[0]
    if ceiling is not None:
        ax.axhline(ceiling, color="black", linestyle=":", linewidth=0.8, label=f"pool's top-{k} {ceiling:.4g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("SIMULATED wall-clock time (s of the pool's recorded epochs and overheads)")
    ax.set_title(f"SIMULATED time to solution, {workers} workers: mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def pool_limited(r: StrategyRuns) -> bool:
    """True when a run of the strategy drew the pool more than once: its end is the pool's, not the search's."""
    return max(r.passes, default=0) > 1


def write_report(results: list[StrategyRuns], pool: Pool, out_dir: str | Path, *, k: int, workers: int,
                 budget_s: float, target: float | None = None, baseline: str = RANDOM_SEARCH,
                 command: str = "", elapsed_s: float | None = None, target_quantile: float = DEFAULT_QUANTILE,
                 replicates: int = DEFAULT_REPLICATES) -> tuple[str, list[StrategyResult], Figure]:
    """Write ``simulated_comparison.{png,md,csv}`` (and ``simulated_runs.csv``) to ``out_dir``; return the md text.

    ``target`` defaults to the pool's ``target_quantile`` quantile (:func:`~experiments.simulation.bootstrap.
    pool_target`). Every mean of the table comes with a 95 % bootstrap interval over curves and seeds;
    a strategy with more than one pass over the pool is marked pool-limited, and the printed
    conclusion says what that leaves of its row.
    """
    from experiments.simulation.bootstrap import pool_spread, pool_target

    given = target is not None
    if target is None:
        target = pool_target(pool, target_quantile)
    rows, target = summarize(results, pool, k, target, baseline)
    ceiling = pool_topk(pool, k)
    intervals = bootstrap_intervals(results, pool, k, target, baseline, replicates)
    fig = plot_simulated(rows, pool, k, target, workers, ceiling)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "simulated_comparison.png", dpi=100)
    by_label = {r.name.label: r for r in results}
    table = table_rows(rows)
    n = len(pool.trials)
    for row in table:  # every run named in the table is a simulated one
        r, ci = by_label[row["strategy"]], intervals[row["strategy"]]
        row["best_trial_experiment"] = row["best_trial_experiment"] or "-"
        row["final_topk_mean_ci95"] = _ci(ci.final)
        row["time_to_target_s_ci95"] = _ci(ci.time_to_target, ".1f")
        row["speedup_vs_random_ci95"] = _ci(ci.speedup, ".2f", "inf")
        row["trials_finished_ci95"] = _ci(ci.trials, ".1f")
        row["passes_over_pool"] = f"{np.mean(r.passes):.1f}" if r.passes else "-"
        row["pool_limited"] = "yes" if pool_limited(r) else "no"
    write_csv(out / "simulated_comparison.csv", table)
    extra = simulation_rows(results)
    write_csv(out / "simulated_runs.csv", extra)
    shown = [{
        "strategy": row["strategy"] + (" **POOL-LIMITED**" if row["pool_limited"] == "yes" else ""),
        f"final top-{k} mean [95% CI]": f"{row['final_topk_mean']} {row['final_topk_mean_ci95']}",
        "time to target (s) [95% CI]": f"{row['time_to_target_s']} {row['time_to_target_s_ci95']}",
        "speed-up vs RS [95% CI]": f"{row['speedup_vs_random']} {row['speedup_vs_random_ci95']}".replace("- -", "-"),
        "trials finished [95% CI]": f"{row['trials_finished']} {row['trials_finished_ci95']}",
        "passes over the pool": row["passes_over_pool"],
        "best trial": row["best_trial_metric"],
    } for row in table]
    if target is None:
        target_text = "none (the pool has no curve that ranks; pass --target)"
    elif given:
        target_text = f"{target:.4g} (given)"
    else:
        target_text = (f"{target:.4g}, the {target_quantile:g} quantile of the pool's {n} curves' best values: "
                       f"a top-{k} mean at a top-{target_quantile:.0%} configuration's level, which random search "
                       f"reaches after about {expected_draws(k, target_quantile):.0f} full-length draws (k / q), "
                       f"{expected_draws(k, target_quantile) / n:.0%} of the pool")
    o = pool.overheads
    meta = pool.metadata
    recorded = ", ".join(f"{key} {meta[key]}" for key in ("git_commit", "recorded_utc") if key in meta)
    lines = [
        f"# SIMULATED strategy comparison: {pool.model}, {pool.metric} ({pool.mode}), top-{k} mean", "",
        f"**Simulated, not measured**: {workers} workers, a budget of {budget_s:g} s on a virtual clock, replaying "
        f"{n} recorded {pool.max_epochs}-epoch curves (space {pool.space}"
        f"{'; ' + recorded if recorded else ''}) through Ray Tune's own schedulers. Overheads from the pool's "
        f"timestamps: a slot's first start {o.first_start_s:.2f} s, switch between trials {o.switch_s:.2f} s, "
        f"between results {o.between_results_s:.3f} s.", "",
        f"How much the pool's configurations differ: {pool_spread(pool)}.", "",
        f"Target: {target_text}. Speed-up = time to target of {baseline} / time to target of the strategy. "
        f"The best any strategy can reach on this pool (its own top-{k} mean): "
        f"{'-' if ceiling is None else format(ceiling, '.4g')}. Intervals: 95 % bootstrap over the pool's curves "
        f"and the seeds ({replicates} replicates; experiments/simulation/bootstrap.py).", "",
        *_markdown_table(shown), "",
        "What the simulation adds (means over seeds, 95 % seed-bootstrap interval):", "",
        *_markdown_table(extra), "",
    ]
    if pool.notes:
        lines += ["Pool notes: " + "; ".join(pool.notes) + ".", ""]
    lines += ["**Conclusion.** " + conclusion(results, rows, intervals, pool, k, target, baseline, ceiling), ""]
    if command:
        lines += [f"Command: `{command}`" + (f" ({elapsed_s:.1f} s)" if elapsed_s is not None else ""), ""]
    lines += ["![simulated comparison](simulated_comparison.png)", ""]
    text = "\n".join(lines)
    (out / "simulated_comparison.md").write_text(text)
    return text, rows, fig


def conclusion(results: list[StrategyRuns], rows: list[StrategyResult], intervals: dict[str, Intervals],
               pool: Pool, k: int, target: float | None, baseline: str, ceiling: float | None) -> str:
    """The printed answer: which rows the pool limits, and each strategy's time to target against the baseline's."""
    n = len(pool.trials)
    parts = []
    limited = [r for r in results if pool_limited(r)]
    if limited:
        names = ", ".join(f"{r.name.label} ({np.mean(r.passes):.1f} passes)" for r in limited)
        first = np.median([first_pass_end(run, n) for r in limited for run in r.runs])
        parts.append(
            f"POOL-LIMITED rows: {names} drew the pool's {n} curves more than once, so each run ends with "
            f"(nearly) the same curves and its final top-{k} mean is a property of the pool (at best its own top-{k}, "
            f"{'-' if ceiling is None else format(ceiling, '.4g')}), not of a search this long; their intervals hold "
            f"only the pool's uncertainty. A time to target reached before the first pass ended (median "
            f"{first:.0f} s) is still a simulated search; record a larger pool for the rest.")
    else:
        parts.append("No strategy drew the pool more than once: every row is a search of new curves.")
    by_label = {r.label: r for r in rows}
    base = by_label.get(baseline)
    if target is not None and base is not None:
        base_ci = intervals[baseline].time_to_target
        if base.time_to_target is None:
            parts.append(f"{baseline} does not reach the target ({target:.4g}) on its mean curve within the budget "
                         f"{_ci(base_ci, '.0f')}.")
        else:
            parts.append(f"{baseline} reaches the target ({target:.4g}) at {_fmt_time(base.time_to_target)} "
                         f"{_ci(base_ci, '.0f')}.")
        for row in rows:
            if row.label == baseline:
                continue
            if row.time_to_target is None and base.time_to_target is None:
                parts.append(f"{row.label} does not either {_ci(intervals[row.label].time_to_target, '.0f')}.")
                continue
            lo, hi = intervals[row.label].speedup
            if row.time_to_target is None:
                verdict = "never reaches it on the mean curve"
            elif not math.isnan(lo) and lo > 1:
                verdict = "reaches it sooner"
            elif not math.isnan(hi) and hi < 1:
                verdict = "reaches it later"
            else:
                verdict = "is not distinguishable from it (the speed-up's interval holds 1)"
            # The same curve resample in both: the difference's interval is paired over the pool's curves.
            diff = intervals[row.label].final_replicates - intervals[baseline].final_replicates
            final_diff = "" if row.final is None or base.final is None else (
                f"; final top-{k} minus {baseline}'s: {row.final - base.final:+.3g} {_ci(interval(diff), '+.3g')}")
            parts.append(f"{row.label} {verdict}: {_fmt_time(row.time_to_target)} "
                         f"{_ci(intervals[row.label].time_to_target, '.0f')}, speed-up "
                         f"{'-' if row.speedup is None else format(row.speedup, '.2f')} {_ci((lo, hi), '.2f', 'inf')}"
                         f"{final_diff}.")
    return " ".join(parts)


def _fmt_time(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f} s"


def _spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    return f"{np.mean(values):.4g} ± {np.std(values):.2g}" if len(values) > 1 else f"{values[0]:.4g}"


def validation_rows(results: list[StrategyRuns], pool: Pool, real_dirs: list[str | Path],
                    k: int) -> list[dict[str, str]]:
    """Real vs simulated, per strategy found in both: trials with a result, epochs trained, final top-k mean.

    Each cell is the mean ± standard deviation over seeds (real runs: over the experiment folders).
    """
    from experiments.analysis.comparison import experiment_curve, final_value, load_groups

    real = load_groups(real_dirs)
    rows = []
    for r in results:
        label = r.name.label
        if label not in real:
            continue
        exps = real[label]
        real_curves = [experiment_curve(e, k) for e in exps]
        sim_curves = [run_curve(run, k, pool.mode) for run in r.runs]
        rows.append({
            "strategy": label,
            "runs real / simulated": f"{len(exps)} / {len(r.runs)}",
            "trials with a result, real": _spread([sum(1 for t in e.summary["trials"] if t.get("iteration"))
                                                   for e in exps]),
            "simulated": _spread([sum(1 for e in run.trial_epochs if e) for run in r.runs]),
            "epochs trained, real": _spread([sum(t.get("iteration") or 0 for t in e.summary["trials"]) for e in exps]),
            "simulated ": _spread([run.epochs_trained for run in r.runs]),
            f"final top-{k} mean, real": _spread([final_value(c.times, c.values) for c in real_curves]),
            "simulated  ": _spread([final_value(c.times, c.values) for c in sim_curves]),
        })
    return rows


def validation_table(results: list[StrategyRuns], pool: Pool, real_dirs: list[str | Path], k: int,
                     out_dir: Path) -> str:
    """The real-vs-simulated table as Markdown, also written to ``out_dir/simulated_vs_real.md``."""
    rows = validation_rows(results, pool, real_dirs, k)
    if not rows:
        text = "No strategy of the real experiments is among the simulated ones.\n"
    else:
        text = "\n".join(["# Real vs SIMULATED (mean ± std over seeds)", "", *_markdown_table(rows), ""])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulated_vs_real.md").write_text(text)
    return text
