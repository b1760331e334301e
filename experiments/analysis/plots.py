"""The plots of one experiment's record: score against each hyperparameter, all hyperparameters at
once (parallel coordinates), learning curves of the best trials, and the best score so far against
the experiment's running time (scores and "best" as :mod:`experiments.core.scores` defines them)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from experiments.analysis.experiment import Experiment, best_so_far, result_times
from search_spaces import SearchSpace
from search_spaces.compile import to_unit_cube


def plot_metric_vs_params(exp: Experiment, space: SearchSpace | None) -> dict[str, Figure]:
    """One figure per hyperparameter: each counting trial's score (its best result) against its value.

    Log-scale parameters get a log x axis, choices a categorical axis (one tick per value, in the
    spec's order). Colour is the number of epochs a trial ran (early-stopped trials are darker);
    the best trial is a red star; dashed lines mark the search-space bounds.
    """
    trials = exp.ranked_trials()
    names = space.names if space is not None else list(exp.summary.get("space_params") or [])
    figures = {}
    for name in names:
        param = space[name] if space is not None else None
        points = [(t["config"][name], exp.score(t), t.get("iteration", 0)) for t in trials if name in t["config"]]
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


def plot_parallel_coordinates(exp: Experiment, space: SearchSpace | None) -> Figure | None:
    """Every counting trial as one line across the space's hyperparameters, coloured by its score.

    Each axis is the parameter's position in the search space's unit cube (its own scale: log for
    log parameters, one cell per integer or choice; ``search_spaces.compile.to_unit_cube``), so
    the bounds are 0 and 1 on every axis. Better trials are drawn last and darker; the best one is
    red. This is the reading the layer-wise RoBERTa write-up used for its per-group learning rates
    (which groups want a low lr, which a high one). None without a space of at least two parameters.
    """
    if space is None or len(space.params) < 2:
        return None
    trials = [t for t in exp.ranked_trials() if all(n in t["config"] for n in space.names)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(space.params) + 2), 4))
    cmap = plt.get_cmap("viridis_r")
    count = len(trials)
    for rank, trial in reversed(list(enumerate(trials))):  # the best last, on top
        ys = to_unit_cube(space, trial["config"])
        best = rank == 0
        ax.plot(range(len(ys)), ys, color="red" if best else cmap(1 - rank / max(1, count - 1)),
                linewidth=2.2 if best else 1.0, alpha=1.0 if best else 0.7, marker="o", markersize=2.5,
                label=f"best ({exp.score(trial):.4g})" if best else None, zorder=3 if best else 2)
    labels = [f"{p.name}\n(log)" if getattr(p, "log", False) else p.name for p in space.params]
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(-0.03, 1.03)
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title(f"{count} trials, darker = better {exp.metric}", fontsize=10)
    if trials:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_learning_curves(exp: Experiment, k: int = 5) -> Figure:
    """The metric per epoch (training_iteration) of the best ``k`` trials, with the baseline if any."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for trial in exp.ranked_trials()[:k]:
        history = exp.histories.get(trial["trial_id"], pd.DataFrame())
        if exp.metric not in history:
            continue
        ax.plot(history["training_iteration"], history[exp.metric], marker="o", markersize=3,
                label=f"{trial['trial_id']} ({exp.score(trial):.4g})")
    baseline = exp.summary.get("baseline_val_mae")
    if baseline is not None and exp.metric == "val_mae":
        ax.axhline(baseline, color="grey", linestyle="--", label=f"baseline {baseline:.4g}")
    ax.set_xlabel("epoch (training_iteration)")
    ax.set_ylabel(exp.metric)
    ax.set_title(f"learning curves of the best {k} trials", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig



def plot_best_so_far(exp: Experiment) -> Figure:
    """The best score so far against the experiment's running time, over every result of the counting trials."""
    table = result_times(exp)
    times, best = best_so_far(exp)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table["elapsed_s"], table["value"], s=6, color="lightgrey", label="each result")
    ax.step(times, best, where="post", color="C0", label="best so far")
    ax.set_xlabel("experiment time (s; pauses between resumed sessions left out)")
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

