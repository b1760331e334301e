"""Compare search strategies by time to solution (the NERSC study's analysis, automated).

``python experiments/compare.py DIR [DIR ...]`` reads experiment folders (each with a
``summary.json``), groups them by strategy (searcher + scheduler) and repeated seed, and for each
strategy draws the mean of the top-k scores so far (k = 6, as the NERSC study) against the
experiment's running time: the mean over seeds with a ± one standard deviation band, one figure
for all strategies. A table (Markdown and CSV next to the figure) gives for each strategy the time
to reach a target (default: what random search reaches at the end of its budget), the speed-up
over random search, the trials finished, the best single trial and the strategy's own settings.

Scores follow :mod:`experiments.core.scores`: a trial's score at a time is its best result so far,
and errored trials do not count. Experiments are compared only when they ran the same model,
metric, space, max_epochs, budget, resources and model options, and the seeds pooled into one
strategy with the same strategy settings; ``--allow-mixed`` compares them anyway as groups whose
labels name the differing values.

The curves are step functions: the top-k mean changes only when a trial reports, so every
quantity here is evaluated exactly at the reported results' times.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import yaml
from matplotlib.figure import Figure

from experiments.analysis.experiment import Experiment, load_experiment, result_times
from experiments.core.config import ConfigError, ExperimentConfig
from experiments.core.scores import counts
from experiments.core.scores import sign as score_sign

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
    """Mean of the best ``k`` scores so far after each result (a trial's score: its best value so far).

    Undefined (NaN) until ``k`` trials have reported (see :mod:`experiments.core.scores`).
    """
    sign = float(score_sign(mode))
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
    settings: str = ""  # the group's own strategy settings, e.g. "grace_period=4 reduction_factor=2"


def summarize_strategies(groups: dict[str, list[Experiment]], curves: dict[str, list[Curve]], mode: str,
                         target: float | None = None, baseline: str = RANDOM_SEARCH,
                         settings: dict[str, str] | None = None) -> tuple[list[StrategyResult], float | None]:
    """Rows of the table and the target used: time to target, speed-up over ``baseline``, trials, best trial.

    The target defaults to the baseline's final mean top-k value; without a baseline and without
    ``target`` the time-to-target columns stay empty. ``settings`` (label -> text) fills each row's
    strategy settings. "Trials finished" counts the trials with a result that did not error.
    """
    sign = 1 if mode == "min" else -1
    rows = []
    for label, exps in groups.items():
        times, mean, std = mean_curve(curves[label])
        # Each experiment's best trial by the suite's one definition (experiments/core/scores.py),
        # then the best of those: errored trials never count.
        candidates = [(e.score(ranked[0]), ranked[0], e) for e in exps if (ranked := e.ranked_trials())]
        best_score, best, where = min(candidates, key=lambda c: sign * c[0]) if candidates else (None, None, None)
        test_key = next((key for key in (best or {}) if key.startswith("test_")), None)
        rows.append(StrategyResult(
            label=label, seeds=[e.summary.get("seed") for e in exps], times=times, mean=mean, std=std,
            final=final_value(times, mean),
            trials_finished=float(np.mean([sum(1 for t in e.summary["trials"] if counts(t) and t.get("iteration"))
                                           for e in exps])),
            best_metric=best_score,
            best_test=best.get(test_key) if best and test_key else None,
            best_where=where.summary["name"] if where is not None else "",
            settings=settings.get(label, "") if settings else "",
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
    ax.set_xlabel("experiment time (s; pauses between resumed sessions left out)")
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
        "settings": r.settings or "-",
    } for r in rows]


# Settings that decide what a result means. These must be the same in every experiment compared:
# the model, metric and mode always (the curves share one axis); the rest unless --allow-mixed.
SAME_AXIS = ("model", "metric", "mode")
SHARED = ("space", "max_epochs", "time_budget_s", "cpus_per_trial", "gpus_per_trial", "max_concurrent_trials",
          "checkpoint_frequency", "reuse_actors")
# Settings of a strategy itself: they may differ between strategies (the table shows them) but not
# between the seeds pooled into one strategy's curve.
SCHEDULER_SETTINGS = {"asha": ("grace_period", "reduction_factor"),
                      "ahb": ("grace_period", "reduction_factor", "brackets"),
                      "pbt": ("perturbation_interval", "synch", "burn_in_period", "quantile_fraction",
                              "resample_probability"),
                      "bohb": ("reduction_factor",)}  # HyperBandForBOHB: brackets from max_epochs and eta
SEARCHER_SETTINGS = {"hyperopt": ("n_initial_points", "max_concurrent_search"), "dragonfly": ("max_concurrent_search",),
                     "optuna": ("n_initial_points", "max_concurrent_search"), "bohb": ("max_concurrent_search",),
                     "quasirandom": ("quasirandom_sampler",)}
_RUNNER_FIELDS = {f.name for f in fields(ExperimentConfig)}
_NOT_SETTINGS = ("searcher", "scheduler", "cache_dir")  # cache_dir: where prepared data is kept, not what it is


def experiment_settings(exp: Experiment) -> dict[str, Any]:
    """What an experiment ran with: its ``experiment.yaml`` snapshot, with the summary's resolved values on top.

    A folder without a snapshot (a hand-made one) has only the summary's fields.
    """
    settings: dict[str, Any] = {}
    snapshot = exp.path / "experiment.yaml"
    if snapshot.is_file():
        try:
            settings = yaml.safe_load(snapshot.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{snapshot} is not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(settings, dict):
            raise ConfigError(f"{snapshot} is not a mapping of settings")
    for key in (*SAME_AXIS, "space", "max_epochs", "num_samples", "searcher", "scheduler"):
        if exp.summary.get(key) is not None:
            settings[key] = exp.summary[key]
    settings.setdefault("searcher", settings.get("search"))
    return settings


def _strategy_keys(settings: dict[str, Any]) -> tuple[str, ...]:
    """The settings of the experiment's own strategy (its num_samples is one where it is no budget)."""
    keys = SCHEDULER_SETTINGS.get(settings.get("scheduler"), ()) + SEARCHER_SETTINGS.get(settings.get("searcher"), ())
    if settings.get("scheduler") == "pbt" or settings.get("searcher") == "grid":
        keys += ("num_samples",)  # PBT's population, the grid's repeats
    return keys


def _shared_keys(settings: dict[str, Any]) -> tuple[str, ...]:
    """The settings every compared experiment must share: SHARED, the budget and the model's options."""
    options = tuple(sorted(k for k in settings if k not in _RUNNER_FIELDS and k not in _NOT_SETTINGS))
    budget = () if "num_samples" in _strategy_keys(settings) else ("num_samples",)
    return SHARED + budget + options


def _differences(exps: list[Experiment], settings: dict[Path, dict[str, Any]], keys_of) -> dict[str, str]:
    """Per setting on which ``exps`` disagree: "12 (a, b); 20 (c)".

    A setting is compared among the experiments whose ``keys_of(settings)`` name it (PBT's
    num_samples is no budget) and that recorded it.
    """
    out = {}
    for key in sorted({k for e in exps for k in keys_of(settings[e.path])}):
        by_value: dict[str, list[str]] = {}
        for exp in exps:
            if key in settings[exp.path] and key in keys_of(settings[exp.path]):
                by_value.setdefault(repr(settings[exp.path][key]), []).append(exp.path.name)
        if len(by_value) > 1:
            out[key] = "; ".join(f"{value} ({', '.join(names)})" for value, names in by_value.items())
    return out


def _setting_text(settings: dict[str, Any], keys: Any) -> str:
    return " ".join(f"{key}={settings[key]:g}" if isinstance(settings[key], float) else f"{key}={settings[key]}"
                    for key in keys if key in settings)


@dataclass
class Groups:
    """Experiments grouped by strategy label, with what the table says about their settings."""

    experiments: dict[str, list[Experiment]]
    settings: dict[str, str]  # label -> the group's own strategy settings
    common: str  # the settings every experiment shares
    mixed: dict[str, str]  # setting -> how it differs (only with allow_mixed)


def group_experiments(dirs: list[str | Path], allow_mixed: bool = False) -> Groups:
    """Group experiment folders by strategy, refusing to compare what differs in more than the strategy.

    All must share model, metric and mode. Unless ``allow_mixed``, they must also share the search
    space, max_epochs, the budget (time_budget_s; num_samples where it is a budget), resources and
    the model's options, and the seeds of one strategy its own settings (grace period, reduction
    factor, brackets, PBT's interval and population, HyperOpt's initial points...): otherwise a
    ConfigError names every difference. With ``allow_mixed`` the experiments are grouped by those
    settings too, and each group's label names its values.
    """
    experiments = [load_experiment(d) for d in dirs]
    settings = {e.path: experiment_settings(e) for e in experiments}
    for key in SAME_AXIS:
        values = {e.path: e.summary.get(key) for e in experiments}
        if len(set(values.values())) > 1:
            a, b = experiments[0], next(e for e in experiments if values[e.path] != values[experiments[0].path])
            raise ConfigError(f"cannot compare {b.path} ({key} {values[b.path]}) with "
                              f"{a.path} ({key} {values[a.path]})")
    by_strategy: dict[str, list[Experiment]] = {}
    for exp in experiments:
        by_strategy.setdefault(strategy_label(exp.summary), []).append(exp)
    shared = _differences(experiments, settings, _shared_keys)
    within = {}
    for label, exps in by_strategy.items():
        for key, text in _differences(exps, settings, _strategy_keys).items():
            within[key] = within.get(key, []) + [f"{label}: {text}"]
    if (shared or within) and not allow_mixed:
        parts = [f"{key} {text}" for key, text in shared.items()]
        parts += [f"{key} within {' / '.join(texts)}" for key, texts in within.items()]
        raise ConfigError("cannot compare: settings differ: " + "; ".join(parts)
                          + "; rerun with the same settings, or pass --allow-mixed to compare them as separately "
                            "labelled groups")
    mixed_keys = [*shared, *within]
    groups: dict[str, list[Experiment]] = {}
    for exp in experiments:
        label = strategy_label(exp.summary)
        own = settings[exp.path]
        tag = _setting_text(own, [k for k in mixed_keys if k in _shared_keys(own) or k in _strategy_keys(own)])
        groups.setdefault(f"{label} [{tag}]" if tag else label, []).append(exp)
    for label, exps in groups.items():
        seeds = [e.summary.get("seed") for e in exps]
        if len(set(seeds)) != len(seeds):
            print(f"compare: note: strategy '{label}' has repeated seed(s) {seeds}; each run counts once")
    own = {label: _setting_text(settings[exps[0].path], _strategy_keys(settings[exps[0].path]))
           for label, exps in groups.items()}
    first = settings[experiments[0].path]
    common_keys = [k for k in ("space", "max_epochs", "time_budget_s", "num_samples") if k not in mixed_keys
                   and all(k in settings[e.path] and k in _shared_keys(settings[e.path]) for e in experiments)]
    mixed = {**shared, **{key: " / ".join(texts) for key, texts in within.items()}}
    return Groups(groups, own, _setting_text(first, common_keys), mixed)


def load_groups(dirs: list[str | Path], allow_mixed: bool = False) -> dict[str, list[Experiment]]:
    """Experiments grouped by strategy label (see :func:`group_experiments`, which refuses incomparable ones)."""
    return group_experiments(dirs, allow_mixed).experiments


def resolve_baseline(baseline: str, labels: list[str]) -> str:
    """The group label ``baseline`` names: the label itself, or the one group of that strategy."""
    if baseline in labels:
        return baseline
    matches = [label for label in labels if label.split(" [")[0] == baseline]
    if len(matches) > 1:
        raise ConfigError(f"--baseline '{baseline}' matches {len(matches)} groups ({', '.join(matches)}); "
                          "give one of these labels")
    return matches[0] if matches else baseline



def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys, at least one) as a CSV file with a header line."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

def compare(dirs: list[str | Path], out_dir: str | Path, k: int = 6, target: float | None = None,
            baseline: str = RANDOM_SEARCH, allow_mixed: bool = False) -> tuple[list[StrategyResult], Figure]:
    """Compare experiment folders; write ``comparison.png``, ``comparison.md`` and ``comparison.csv``.

    Refuses experiments whose settings differ in more than their strategy unless ``allow_mixed``
    (:func:`group_experiments`).
    """
    if k < 1:
        raise ConfigError(f"--top-k must be a positive integer, got {k}")
    grouped = group_experiments(dirs, allow_mixed)
    groups = grouped.experiments
    baseline = resolve_baseline(baseline, list(groups))
    first = next(iter(groups.values()))[0].summary
    curves = {label: [experiment_curve(e, k) for e in exps] for label, exps in groups.items()}
    rows, target = summarize_strategies(groups, curves, first["mode"], target, baseline, grouped.settings)
    fig = plot_comparison(rows, first["metric"], k, target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "comparison.png", dpi=100)
    table = table_rows(rows)
    write_csv(out / "comparison.csv", table)
    if target is not None:
        source = f"the final top-{k} mean of {baseline}" if baseline in groups else "given"
        target_text = f"{target:.4g} ({source})"
    elif baseline in groups:
        target_text = f"none ({baseline} never had {k} trials with a result; pass --target)"
    else:
        target_text = f"none (no {baseline} experiment among these; pass --target)"
    lines = [f"# Strategy comparison: {first['model']}, {first['metric']} ({first['mode']}), top-{k} mean", "",
             f"Target: {target_text}. Speed-up = time to target of {baseline} / time to target of the strategy.", "",
             f"Shared by every run: {grouped.common or 'settings not recorded'}. A trial's score at a time is its best "
             "result so far; errored trials do not count; time is the experiments' own running time "
             "(pauses between resumed sessions left out).", "",
             *(["**Mixed settings** (--allow-mixed; each group's label names its values): "
                + "; ".join(f"{key} {text}" for key, text in grouped.mixed.items()), ""] if grouped.mixed else []),
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
    parser.add_argument("--allow-mixed", action="store_true",
                        help="compare experiments whose space, max_epochs, budget, resources, model options or "
                             "(within a strategy) strategy settings differ, as separately labelled groups")
    args = parser.parse_args(argv)
    try:
        out = args.out or _common_parent(args.experiments)
        rows, fig = compare(args.experiments, out, args.top_k, args.target, args.baseline, args.allow_mixed)
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
