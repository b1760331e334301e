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

It also runs the Playbook's checks (best point near a bound that can move, too few trials, failed
or diverged trials, best trials still improving) and prints them. Scores and "best" are those of
:mod:`experiments.core.scores`: errored trials are never ranked. The runner calls :func:`analyze` at the end
of every experiment.
"""


from __future__ import annotations

import argparse
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

