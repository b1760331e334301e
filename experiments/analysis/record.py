"""Analyse one finished experiment: the Tuning Playbook record, plots and checks.

``python experiments/analyze.py DIR`` (DIR is ``<storage>/<name>``, the folder holding
``summary.json``) rewrites ``summary.md`` as the full experiment record and saves PNG plots next
to it:

- ``metric_vs_<param>.png`` for every hyperparameter: the tuned metric of each trial against the
  parameter (log axis for log-scale parameters, categorical axis for choices, the search-space
  bounds drawn as dashed lines);
- ``learning_curves.png``: the metric per epoch of the best k trials;
- ``best_so_far.png``: the best metric found so far against wall-clock time;
- for PBT experiments, ``pbt_schedule.png`` (see ``experiments/analysis/pbt_schedule.py``).

It also runs the Playbook's checks (best point near a bound, too few trials, failed or diverged
trials, best trials still improving) and prints them. The runner calls :func:`analyze` at the end
of every experiment.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window: runs on clusters and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from experiments.core.config import ConfigError  # noqa: E402
from search_spaces import SearchSpace, SpaceError, load_space  # noqa: E402

BOUNDARY_FRACTION = 0.05  # "near a bound": within 5 % of the range (in log space for log parameters)
MIN_TRIALS_PER_PARAM = 5
MAX_FAILED_SHARE = 0.1
IMPROVING_WINDOW = 3  # epochs
IMPROVING_SHARE = 0.1  # share of a curve's improvement made in its last epochs that means "still improving"


@dataclass
class Experiment:
    """One experiment folder: its summary and each trial's per-epoch results (oldest first)."""

    path: Path
    summary: dict[str, Any]
    histories: dict[str, pd.DataFrame]

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def sign(self) -> int:
        """+1 when lower is better, -1 when higher is better: ``sign * value`` sorts best first."""
        return 1 if self.summary["mode"] == "min" else -1

    def start_time(self) -> float:
        """Unix time the experiment's trials started from: recorded by the runner, else estimated."""
        if self.summary.get("start_time") is not None:
            return float(self.summary["start_time"])
        starts = [float(h["timestamp"].iloc[0] - h["time_this_iter_s"].iloc[0])
                  for h in self.histories.values() if len(h) and {"timestamp", "time_this_iter_s"} <= set(h)]
        return min(starts) if starts else 0.0

    def ranked_trials(self) -> list[dict[str, Any]]:
        """Trials with a finite final metric, best first."""
        good = [t for t in self.summary["trials"] if not t.get("errored") and _finite(t.get("metric"))]
        return sorted(good, key=lambda t: self.sign * t["metric"])


@dataclass
class Finding:
    """The outcome of one check: ``ok`` or a problem with the advice that goes with it."""

    check: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'warn'}] {self.check}: {self.message}"


@dataclass
class Analysis:
    """What :func:`analyze` produced: findings, figures (by file name) and PBT results, if any."""

    findings: list[Finding]
    plots: dict[str, Figure] = field(default_factory=dict)
    pbt: Any = None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_history(trial_dir: Path) -> pd.DataFrame:
    """A trial's results: progress.csv, else result.json (one JSON object per line), else empty."""
    progress = trial_dir / "progress.csv"
    if progress.is_file() and progress.stat().st_size > 0:
        try:
            return pd.read_csv(progress)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            pass
    result = trial_dir / "result.json"
    if result.is_file():
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        return pd.DataFrame([{k: v for k, v in r.items() if k != "config"} for r in rows])
    return pd.DataFrame()


def load_experiment(exp_dir: str | Path) -> Experiment:
    """Read ``summary.json`` and every trial's history from an experiment folder.

    Trial folders are found by name next to ``summary.json``, so a results folder that was moved
    or copied from a cluster still loads.
    """
    path = Path(exp_dir).expanduser().resolve()
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise ConfigError(f"{path} has no summary.json; give the folder of one experiment (<storage>/<name>)")
    try:
        summary = json.loads(summary_file.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{summary_file} line {err.lineno}: not valid JSON ({err.msg})") from None
    for key in ("metric", "mode", "trials"):
        if key not in summary:
            raise ConfigError(f"{summary_file} has no '{key}' field; was it written by experiments/core/summary.py?")
    histories = {}
    for trial in summary["trials"]:
        trial_dir = path / Path(trial.get("path") or "").name if trial.get("path") else None
        history = _read_history(trial_dir) if trial_dir is not None else pd.DataFrame()
        if len(history) and "timestamp" in history:
            history = history.sort_values("timestamp", kind="stable").reset_index(drop=True)
        histories[trial["trial_id"]] = history
    return Experiment(path, summary, histories)


def _space_of(exp: Experiment) -> SearchSpace | None:
    try:
        return load_space(exp.summary["space"])
    except (SpaceError, KeyError, TypeError) as err:
        print(f"analyze: search space not available ({err}); plotting without its bounds and scales")
        return None


# --- plots -----------------------------------------------------------------------------------


def plot_metric_vs_params(exp: Experiment, space: SearchSpace | None) -> dict[str, Figure]:
    """One figure per hyperparameter: each trial's final metric against the trial's value.

    Log-scale parameters get a log x axis, choices a categorical axis (one tick per value, in the
    spec's order). Colour is the number of epochs a trial ran (early-stopped trials are darker);
    the best trial is a red star; dashed lines mark the search-space bounds.
    """
    trials = exp.ranked_trials()
    names = space.names if space is not None else list(exp.summary.get("space_params") or [])
    figures = {}
    for name in names:
        param = space[name] if space is not None else None
        points = [(t["config"][name], t["metric"], t.get("iteration", 0)) for t in trials if name in t["config"]]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        categorical = param.kind == "choice" if param is not None else not all(
            isinstance(v, (int, float)) for v, _, _ in points)
        if categorical:
            categories = list(param.values) if param is not None else sorted({str(v) for v, _, _ in points})
            keys = [repr(c) if param is not None else c for c in categories]
            xs = [keys.index(repr(v) if param is not None else str(v)) for v, _, _ in points]
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            ax.set_xlim(-0.5, len(categories) - 0.5)
        else:
            xs = [float(v) for v, _, _ in points]
            if param is not None and param.log:
                ax.set_xscale("log")
            if param is not None:
                low, high = (param.values[0], param.values[-1]) if param.kind == "discrete" else (param.low, param.high)
                # The whole range with a margin, so a best point near a bound shows as such.
                if param.log:
                    ax.set_xlim(low / (high / low) ** 0.05, high * (high / low) ** 0.05)
                elif high > low:
                    ax.set_xlim(low - 0.05 * (high - low), high + 0.05 * (high - low))
                for bound in (low, high):
                    ax.axvline(bound, color="grey", linestyle="--", linewidth=0.8)
        ys = [m for _, m, _ in points]
        scatter = ax.scatter(xs, ys, c=[it for _, _, it in points], cmap="viridis", s=22,
                             vmin=0, vmax=max(1, exp.summary.get("max_epochs") or 1))
        if points:
            ax.scatter([xs[0]], [ys[0]], marker="*", s=160, color="red", label="best", zorder=3)
            ax.legend(loc="best", fontsize=8)
        fig.colorbar(scatter, ax=ax, label="epochs trained")
        scale = " (log)" if param is not None and param.log else ""
        ax.set_xlabel(f"{name}{scale}")
        ax.set_ylabel(f"{exp.metric} ({exp.summary['mode']})")
        ax.set_title(f"{exp.metric} vs {name}: {len(points)} trials", fontsize=10)
        fig.tight_layout()
        figures[f"metric_vs_{name}.png"] = fig
    return figures


def plot_learning_curves(exp: Experiment, k: int = 5) -> Figure:
    """The metric per epoch (training_iteration) of the best ``k`` trials, with the baseline if any."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for trial in exp.ranked_trials()[:k]:
        history = exp.histories.get(trial["trial_id"], pd.DataFrame())
        if exp.metric not in history:
            continue
        ax.plot(history["training_iteration"], history[exp.metric], marker="o", markersize=3,
                label=f"{trial['trial_id']} ({trial['metric']:.4g})")
    baseline = exp.summary.get("baseline_val_mae")
    if baseline is not None and exp.metric == "val_mae":
        ax.axhline(baseline, color="grey", linestyle="--", label=f"baseline {baseline:.4g}")
    ax.set_xlabel("epoch (training_iteration)")
    ax.set_ylabel(exp.metric)
    ax.set_title(f"learning curves of the best {k} trials", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def result_times(exp: Experiment) -> pd.DataFrame:
    """Every reported result of every trial with its wall-clock time since the experiment started.

    Columns ``elapsed_s``, ``trial_id``, ``value`` (the tuned metric), sorted by time. Ray stamps
    results with whole seconds (``timestamp``), so times are good to about a second.
    """
    start = exp.start_time()
    frames = []
    for trial_id, history in exp.histories.items():
        if exp.metric not in history or "timestamp" not in history:
            continue
        frames.append(pd.DataFrame({
            "elapsed_s": np.maximum(history["timestamp"].astype(float) - start, 0.0),
            "trial_id": trial_id,
            "value": history[exp.metric].astype(float),
        }))
    if not frames:
        return pd.DataFrame(columns=["elapsed_s", "trial_id", "value"])
    table = pd.concat(frames, ignore_index=True)
    table = table[np.isfinite(table["value"])]
    return table.sort_values("elapsed_s", kind="stable").reset_index(drop=True)


def best_so_far(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock times (s) and the best metric reported by any trial up to each of them."""
    table = result_times(exp)
    values = table["value"].to_numpy() * exp.sign
    return table["elapsed_s"].to_numpy(), np.minimum.accumulate(values) * exp.sign if len(values) else values


def plot_best_so_far(exp: Experiment) -> Figure:
    """The best metric so far against wall-clock time, over every result of every trial."""
    table = result_times(exp)
    times, best = best_so_far(exp)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table["elapsed_s"], table["value"], s=6, color="lightgrey", label="each result")
    ax.step(times, best, where="post", color="C0", label="best so far")
    ax.set_xlabel("wall-clock time since start (s)")
    ax.set_ylabel(exp.metric)
    ax.set_title(f"best {exp.metric} so far", fontsize=10)
    if len(best):
        spread = table["value"]
        low, high = float(spread.min()), float(spread.quantile(0.9))
        if high > low:  # keep the early outliers from flattening the curve
            pad = 0.05 * (high - low)
            ax.set_ylim(low - pad, high + pad)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- checks ----------------------------------------------------------------------------------


def check_boundary(best_config: dict[str, Any], space: SearchSpace, fraction: float = BOUNDARY_FRACTION) -> Finding:
    """Is the best configuration within ``fraction`` of a bound of a numeric parameter?

    Distances are measured in log space for log-scale parameters and by position in the list
    for discrete ones; unordered choices have no boundary.
    """
    near = []
    for param in space.params:
        if param.name not in best_config or param.kind == "choice":
            continue
        value = best_config[param.name]
        if param.kind == "discrete":
            position = param.values.index(value) / max(1, len(param.values) - 1) if value in param.values else 0.5
            low, high = param.values[0], param.values[-1]
        elif param.log:
            low, high = param.low, param.high
            position = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            low, high = param.low, param.high
            position = (value - low) / (high - low)
        if position <= fraction:
            near.append(f"{param.name} = {value:.4g} is within {fraction:.0%} of its lower bound {low:g}"
                        f"{' (log scale)' if param.log else ''}: widen {param.name}'s lower bound")
        elif position >= 1 - fraction:
            near.append(f"{param.name} = {value:.4g} is within {fraction:.0%} of its upper bound {high:g}"
                        f"{' (log scale)' if param.log else ''}: widen {param.name}'s upper bound")
    if near:
        return Finding("boundary", False, "; ".join(near))
    return Finding("boundary", True, f"the best configuration is not within {fraction:.0%} of any bound")


def check_sample_size(num_trials: int, num_params: int, per_param: int = MIN_TRIALS_PER_PARAM) -> Finding:
    """Enough trials for the number of tuned hyperparameters (``per_param`` each)?"""
    if num_trials < per_param * num_params:
        return Finding("sample size", False,
                       f"{num_trials} trials with a result for {num_params} hyperparameters (< {per_param} per "
                       "hyperparameter): the plots are sparse; run more trials or tune fewer hyperparameters "
                       "(Playbook: with under 10 trials tune only the learning rate)")
    return Finding("sample size", True, f"{num_trials} trials for {num_params} hyperparameters")


def check_failures(summary: dict[str, Any], max_share: float = MAX_FAILED_SHARE) -> Finding:
    """Share of trials that errored, diverged or collapsed to a constant prediction."""
    trials = summary["trials"]
    bad = [t for t in trials if t.get("errored") or t.get("diverged") or t.get("collapsed")]
    share = len(bad) / len(trials) if trials else 0.0
    text = (f"{len(bad)} of {len(trials)} trials ({share:.0%}) errored ({summary.get('num_errored', 0)}), "
            f"diverged ({summary.get('num_diverged', 0)}) or collapsed ({summary.get('num_collapsed', 0)})")
    if share > max_share:
        return Finding("failures", False, text + f", above {max_share:.0%}: lower the learning rate's upper bound or "
                       "add a stabiliser (warmup, gradient clipping); read the errored trials' error.txt")
    return Finding("failures", True, text)


def check_still_improving(exp: Experiment, k: int = 5, window: int = IMPROVING_WINDOW,
                          share: float = IMPROVING_SHARE) -> Finding:
    """Were the best trials that ran the full budget still improving over their last epochs?

    A trial counts as still improving when its last epoch is its best and its last ``window``
    epochs made more than ``share`` of its whole improvement since epoch 1 (a saturated curve
    makes almost none of it at the end; a straight line over 12 epochs makes a quarter).
    """
    max_epochs = exp.summary.get("max_epochs")
    improving, considered = [], 0
    for trial in exp.ranked_trials()[:k]:
        history = exp.histories.get(trial["trial_id"], pd.DataFrame())
        if exp.metric not in history or len(history) <= window:
            continue
        planned = trial.get("planned_epochs", max_epochs)  # a trial's own `epochs` hyperparameter, if any
        if planned is not None and trial.get("epochs", trial.get("iteration", 0)) < planned:
            continue  # stopped early by the scheduler or the budget: its curve was cut on purpose
        considered += 1
        values = history[exp.metric].to_numpy(dtype=float) * exp.sign
        total, recent = values[0] - values[-1], values[-1 - window] - values[-1]
        if values[-1] <= values.min() and total > 0 and recent / total > share:
            improving.append((trial["trial_id"], recent / total))
    if improving and len(improving) * 2 >= considered:
        shares = ", ".join(f"{tid} {part:.0%}" for tid, part in improving)
        return Finding("still improving", False,
                       f"{len(improving)} of the best {considered} full-length trials were still improving "
                       f"at their last epoch (share of their improvement made in the last {window} epochs: "
                       f"{shares}): train longer (raise max_epochs)")
    if considered == 0:
        return Finding("still improving", True, "no best trial ran the full budget with enough epochs to judge")
    return Finding("still improving", True,
                   f"{len(improving)} of the best {considered} full-length trials were still improving at the end")


def run_checks(exp: Experiment, space: SearchSpace | None) -> list[Finding]:
    """All the Playbook checks on one experiment."""
    summary = exp.summary
    findings = []
    best = summary.get("best")
    if best and space is not None:
        findings.append(check_boundary(best["config"], space))
    num_params = len(space.params) if space is not None else len(summary.get("space_params") or [])
    if num_params:
        findings.append(check_sample_size(len(exp.ranked_trials()), num_params))
    findings.append(check_failures(summary))
    findings.append(check_still_improving(exp))
    return findings


# --- the record ------------------------------------------------------------------------------


def analyze(exp_dir: str | Path, save: bool = True, top_k: int = 5) -> Analysis:
    """Analyse one experiment folder: checks, plots and (with ``save``) the record and PNGs."""
    from experiments.core.summary import format_markdown

    exp = load_experiment(exp_dir)
    space = _space_of(exp)
    findings = run_checks(exp, space)
    plots = plot_metric_vs_params(exp, space)
    plots["learning_curves.png"] = plot_learning_curves(exp, top_k)
    plots["best_so_far.png"] = plot_best_so_far(exp)
    analysis = Analysis(findings, plots)
    if (exp.path / "pbt_global.txt").is_file() and exp.summary.get("best"):
        from experiments.analysis.pbt_schedule import analyze_pbt

        analysis.pbt = analyze_pbt(exp)
        if analysis.pbt is not None:
            plots["pbt_schedule.png"] = analysis.pbt.figure
    if save:
        for file_name, fig in plots.items():
            fig.savefig(exp.path / file_name, dpi=100)
        pbt_lines = analysis.pbt.markdown() if analysis.pbt is not None else None
        text = format_markdown(exp.summary, findings=[str(f) for f in findings], plots=list(plots),
                               extra_sections=pbt_lines)
        tmp = exp.path / "summary.md.tmp"
        tmp.write_text(text)
        tmp.replace(exp.path / "summary.md")
    for fig in plots.values():
        plt.close(fig)
    return analysis


def report(exp_dir: str | Path, top_k: int = 5) -> Analysis:
    """:func:`analyze` and print the checks (and the PBT schedule) for the user."""
    analysis = analyze(exp_dir, top_k=top_k)
    print(f"checks ({Path(exp_dir).resolve() / 'summary.md'}):")
    for finding in analysis.findings:
        print(f"  {finding}")
    if analysis.pbt is not None:
        print("  " + analysis.pbt.describe().replace("\n", "\n  "))
    return analysis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("experiments", nargs="+", metavar="DIR", help="experiment folder(s) with a summary.json")
    parser.add_argument("--top-k", type=int, default=5, help="learning curves of this many best trials")
    args = parser.parse_args(argv)
    try:
        if args.top_k < 1:
            raise ConfigError(f"--top-k must be a positive integer, got {args.top_k}")
        for exp_dir in args.experiments:
            report(exp_dir, top_k=args.top_k)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
