"""The Tuning Playbook's checks after an experiment: is the best point near a bound of the
space that could be widened, were there enough trials, how many failed or diverged, were the
best trials still improving. Each returns a :class:`Finding` with the advice that goes with a
problem; advice is always something the user can do (a bound that cannot move is no warning)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from experiments.analysis.experiment import Experiment
from search_spaces import Param, SearchSpace

BOUNDARY_FRACTION = 0.05  # "near a bound": within 5 % of the range (in log space for log parameters)
MIN_TRIALS_PER_PARAM = 5
MAX_FAILED_SHARE = 0.1
IMPROVING_WINDOW = 3  # epochs
IMPROVING_SHARE = 0.1  # share of a curve's improvement made in its last epochs that means "still improving"


@dataclass
class Finding:
    """The outcome of one check: ``ok`` or a problem with the advice that goes with it.

    ``info`` marks an ok finding that is still worth reading (e.g. the best point sits at a bound
    that cannot move): printed as ``[info]``.
    """

    check: str
    ok: bool
    message: str
    info: bool = False

    def __str__(self) -> str:
        return f"[{'warn' if not self.ok else 'info' if self.info else 'ok'}] {self.check}: {self.message}"


def fixed_bound(param: Param, side: str) -> str | None:
    """Why a bound of ``param`` cannot move (None when it can), inferred from the parameter's kind.

    The spec has no field for it, so the kind and the value say it: an integer's lower bound of 1
    or less (counts and sizes: layers, widths, epochs, warm-up steps; below 1 there is nothing, and
    a lower bound of 0 cannot go negative); a linear float's lower bound of 0 (non-negative
    quantities: weight decay, dropout, a learning rate searched from 0); a linear float's upper
    bound of 1 over a range within [0, 1] (a probability or fraction). Log-scale floats have no
    fixed bound: their lower bound can always move towards 0.
    """
    values = param.values if param.kind == "discrete" else (param.low, param.high)
    low, high = min(values), max(values)
    integral = param.kind == "int" or (param.kind == "discrete" and all(float(v).is_integer() for v in values))
    if side == "lower":
        if integral and 0 <= low <= 1:
            return f"an integer count cannot go below {low:g}"
        if not integral and not param.log and low == 0:
            return "a non-negative parameter cannot go below 0"
    elif not integral and not param.log and high == 1 and low >= 0:
        return "a fraction cannot exceed 1"
    return None


def _widened(param: Param, side: str) -> str:
    """A concrete wider bound to suggest: a decade further for log floats, twice as far for log ints,
    half the range further for linear ones; never across 0 (or 1 for integers) from a bound above it."""
    values = param.values if param.kind == "discrete" else (param.low, param.high)
    low, high = min(values), max(values)
    integral = param.kind == "int" or (param.kind == "discrete" and all(float(v).is_integer() for v in values))
    if param.log:
        if integral:
            return str(max(1, int(low) // 2)) if side == "lower" else str(int(high) * 2)
        return f"{low / 10:g}" if side == "lower" else f"{high * 10:g}"
    step = (high - low) / 2
    if side == "upper":
        wider = high + step
        if not integral and low >= 0 and high < 1:
            wider = min(wider, 1.0)  # a range inside [0, 1] stays a fraction
        return str(math.ceil(wider)) if integral else f"{wider:.4g}"
    floor = (1 if low > 1 else 0) if integral else 0
    wider = low - step
    if low > floor:  # a positive quantity: half-way to the floor at most, never across it
        wider = max(wider, (low + floor) / 2)
    return str(math.floor(wider)) if integral else f"{wider:.4g}"


def check_boundary(best_config: dict[str, Any], space: SearchSpace, fraction: float = BOUNDARY_FRACTION) -> Finding:
    """Is the best configuration within ``fraction`` of a bound of a numeric parameter it could move?

    Distances are measured in log space for log-scale parameters and by position in the list
    for discrete ones; unordered choices have no boundary. A best value at a bound that cannot
    move (:func:`fixed_bound`) is no warning, only information: there is nothing to widen.
    """
    near, fixed = [], []
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
        for side, bound, close in (("lower", low, position <= fraction), ("upper", high, position >= 1 - fraction)):
            if not close:
                continue
            where = (f"{param.name} = {value:.4g} is within {fraction:.0%} of its {side} bound {bound:g}"
                     f"{' (log scale)' if param.log else ''}")
            reason = fixed_bound(param, side)
            if reason is not None:
                fixed.append(f"{where}, which cannot move ({reason})")
            elif param.kind == "discrete":
                near.append(f"{where}: add values {'below' if side == 'lower' else 'above'} {bound:g} to "
                            f"{param.name}'s list (e.g. {_widened(param, side)})")
            else:
                near.append(f"{where}: widen {param.name}'s {side} bound (e.g. to {_widened(param, side)})")
    if near:
        return Finding("boundary", False, "; ".join(near + fixed))
    if fixed:
        return Finding("boundary", True, "; ".join(fixed) + "; no search-space change needed", info=True)
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

