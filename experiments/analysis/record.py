"""Analyse one finished experiment: the Tuning Playbook record, plots and checks.

``python experiments/analyze.py DIR`` (DIR is ``<storage>/<name>``, the folder holding
``summary.json``) rewrites ``summary.md`` as the full experiment record and saves PNG plots next
to it:

- ``metric_vs_<param>.png`` for every hyperparameter: each trial's score (its best result) against
  the parameter (log axis for log-scale parameters, categorical axis for choices, the search-space
  bounds drawn as dashed lines);
- ``learning_curves.png``: the metric per epoch of the best k trials;
- ``best_so_far.png``: the best score so far against the experiment's running time (pauses between
  resumed sessions left out);
- for PBT experiments, ``pbt_schedule.png`` (see ``experiments/analysis/pbt_schedule.py``).

For classifiers (metric ``eval_acc``) the record adds the evaluation and test pair counts, each
accuracy's 95 % Wilson interval (139 pairs make one pair 0.7 points) and the best trial's
final-epoch accuracies beside its best-epoch ones.

It also runs the Playbook's checks (best point near a bound that can move, too few trials, failed
or diverged trials, best trials still improving) and prints them. Scores and "best" are those of
:mod:`experiments.core.scores`: errored trials are never ranked. The runner calls :func:`analyze` at the end
of every experiment.
"""


from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from experiments.analysis.checks import Finding, run_checks
from experiments.analysis.experiment import Experiment, load_experiment
from experiments.analysis.pbt_schedule import analyze_pbt
from experiments.analysis.plots import (
    plot_best_so_far,
    plot_learning_curves,
    plot_metric_vs_params,
    plot_parallel_coordinates,
)
from experiments.core.config import ConfigError
from experiments.core.summary import format_markdown
from search_spaces import SearchSpace, SpaceError, load_space


@dataclass
class Analysis:
    """What :func:`analyze` produced: findings, figures (by file name) and PBT results, if any."""

    findings: list[Finding]
    plots: dict[str, Figure] = field(default_factory=dict)
    pbt: Any = None


def _space_of(exp: Experiment) -> SearchSpace | None:
    try:
        return load_space(exp.summary["space"])
    except (SpaceError, KeyError, TypeError) as err:
        print(f"analyze: search space not available ({err}); plotting without its bounds and scales")
        return None



def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (``z`` 1.96) Wilson score interval of an accuracy measured on ``n`` examples."""
    if n <= 0 or not math.isfinite(accuracy):
        return math.nan, math.nan
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_lines(exp: Experiment) -> list[str] | None:
    """Markdown: pair counts, Wilson intervals and best- vs final-epoch accuracy (classifiers only)."""
    best = exp.summary.get("best") or {}
    sizes = (exp.summary.get("prepared") or {}).get("dataset_sizes") or {}
    if exp.metric != "eval_acc" or not best or not {"eval", "test"} <= set(sizes):
        return None
    n = {"eval": int(sizes["eval"]), "test": int(sizes["test"])}

    def cell(value: Any, split: str) -> str:
        if value is None or not math.isfinite(float(value)):
            return "-"
        low, high = wilson_interval(float(value), n[split])
        return f"{float(value):.4f} [{low:.4f}, {high:.4f}]"

    rows = [("best epoch", best.get("metric"), best.get("test_acc"))]
    history = exp.histories.get(best.get("trial_id"))
    if history is not None and len(history) and {"eval_acc", "test_acc"} <= set(history.columns):
        last = history.iloc[-1]
        rows.append((f"final epoch ({last.get('epoch', '?')})", last["eval_acc"], last["test_acc"]))
    prepared = exp.summary.get("prepared") or {}
    rows.append(("majority class", prepared.get("baseline_eval_acc"), prepared.get("baseline_test_acc")))
    lines = ["## Accuracy and its uncertainty", "",
             f"{n['eval']} eval and {n['test']} test examples: one example is {100 / n['eval']:.2f} and "
             f"{100 / n['test']:.2f} points; brackets are 95 % Wilson intervals.", "",
             "| best trial | eval_acc | test_acc |", "|---|---|---|"]
    lines += [f"| {name} | {cell(e, 'eval')} | {cell(t, 'test')} |" for name, e, t in rows]
    return lines


def analyze(exp_dir: str | Path, save: bool = True, top_k: int = 5) -> Analysis:
    """Analyse one experiment folder: checks, plots and (with ``save``) the record and PNGs."""
    exp = load_experiment(exp_dir)
    space = _space_of(exp)
    findings = run_checks(exp, space)
    plots = plot_metric_vs_params(exp, space)
    if (parallel := plot_parallel_coordinates(exp, space)) is not None:
        plots["parallel_coordinates.png"] = parallel
    plots["learning_curves.png"] = plot_learning_curves(exp, top_k)
    plots["best_so_far.png"] = plot_best_so_far(exp)
    analysis = Analysis(findings, plots)
    if (exp.path / "pbt_global.txt").is_file() and exp.summary.get("best"):
        analysis.pbt = analyze_pbt(exp)
        if analysis.pbt is not None:
            plots["pbt_schedule.png"] = analysis.pbt.figure
    if save:
        for file_name, fig in plots.items():
            fig.savefig(exp.path / file_name, dpi=100)
        pbt_lines = analysis.pbt.markdown() if analysis.pbt is not None else None
        extra = [*(accuracy_lines(exp) or []), *([""] if pbt_lines and accuracy_lines(exp) else []), *(pbt_lines or [])]
        text = format_markdown(exp.summary, findings=[str(f) for f in findings], plots=list(plots),
                               extra_sections=extra or None)
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

