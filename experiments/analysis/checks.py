"""The Tuning Playbook's checks after an experiment: is the best point near a bound of the
space, were there enough trials, how many failed or diverged, were the best trials still
improving. Each returns a :class:`Finding` with the advice that goes with a problem."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from experiments.analysis.experiment import Experiment
from search_spaces import SearchSpace

BOUNDARY_FRACTION = 0.05  # "near a bound": within 5 % of the range (in log space for log parameters)
MIN_TRIALS_PER_PARAM = 5
MAX_FAILED_SHARE = 0.1
IMPROVING_WINDOW = 3  # epochs
IMPROVING_SHARE = 0.1  # share of a curve's improvement made in its last epochs that means "still improving"


@dataclass
class Finding:
    """The outcome of one check: ``ok`` or a problem with the advice that goes with it."""

    check: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'warn'}] {self.check}: {self.message}"



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

