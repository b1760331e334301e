"""PBT: the lineage and hyperparameter schedule of the best final trial, and a multistep fit.

Ray's ``PopulationBasedTraining`` (with its default ``log_config=True``) appends one JSON line per
exploitation to ``<experiment>/pbt_global.txt`` and keeps ``pbt_policy_<trial_id>.txt`` per trial:
``[target_tag, clone_tag, target_iteration, clone_iteration, clone_config, new_config]``. When a
trial clones another, it first copies the donor's policy file, so the file of the best final trial
holds the whole chain of ancestors. Walking it (as ``PopulationBasedTrainingReplay`` does) gives
the config the final model was trained with at every epoch and the trial that trained it.

The learning-rate schedule is then fitted with a multistep decay (``torch.optim.lr_scheduler.MultiStepLR``:
``lr = lr0 * gamma ** (number of milestones <= epoch)``), the schedule the NERSC study found PBT
discovering, so a plain run can reuse it.

``python -m experiments.analysis.pbt_schedule DIR`` prints the schedule and the fit and saves
``pbt_schedule.png``; ``experiments/analyze.py`` does the same for every PBT experiment.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from experiments.analysis.experiment import Experiment, load_experiment
from experiments.core.config import ConfigError

# Below this RMS error (natural-log units, about 1 %) two fits count as equally good, so BIC does
# not reward extra milestones for fitting rounding noise exactly.
_LOG_NOISE_FLOOR = 0.01


@dataclass(frozen=True)
class PolicyStep:
    """One exploitation: ``target`` resumed from ``clone``'s state at ``clone_iteration`` with ``new_config``."""

    target_tag: str
    clone_tag: str
    target_iteration: int
    clone_iteration: int
    clone_config: dict[str, Any]
    new_config: dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """From ``start`` completed epochs on, the lineage trained in trial ``tag`` with ``config``."""

    start: int
    tag: str
    config: dict[str, Any]


@dataclass
class MultiStepFit:
    """``lr(epoch) = initial * gamma ** (number of milestones <= epoch)``, epochs counted from 0."""

    initial: float
    gamma: float
    milestones: list[int]
    rms_log10: float  # RMS error of the fit in decades

    def values(self, num_epochs: int) -> np.ndarray:
        steps = np.array([sum(1 for m in self.milestones if m <= e) for e in range(num_epochs)])
        return self.initial * self.gamma ** steps

    def describe(self, name: str = "lr") -> str:
        return (f"MultiStepLR fit of {name}: initial {self.initial:.4g}, milestones {self.milestones}, "
                f"gamma {self.gamma:.4g} (RMS error {self.rms_log10:.3f} decades)")


def read_policy(path: str | Path) -> list[PolicyStep]:
    """Parse a ``pbt_policy_*.txt`` / ``pbt_global.txt`` file (one JSON list per line)."""
    steps = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            target, clone, target_it, clone_it, clone_config, new_config = row
        except (json.JSONDecodeError, ValueError, TypeError):
            raise ConfigError(f"{path} line {number}: not a PBT policy entry") from None
        steps.append(PolicyStep(str(target), str(clone), int(target_it), int(clone_it), clone_config, new_config))
    return steps


def reconstruct_schedule(steps: list[PolicyStep], final_tag: str | None = None,
                         initial_config: dict[str, Any] | None = None) -> list[Segment]:
    """The chain of segments that produced the final model, oldest first.

    ``steps`` is the policy file of the final trial. Walking back from its last entry, each earlier
    entry belongs to the chain when its target is the trial the later entry cloned (the rule of
    Ray's ``PopulationBasedTrainingReplay``). With no steps, the trial was never exploited and
    trained with ``initial_config`` throughout.
    """
    chain: list[PolicyStep] = []
    for step in reversed(steps):
        if chain and step.target_tag != chain[-1].clone_tag:
            break
        chain.append(step)
    chain.reverse()
    if not chain:
        return [Segment(0, final_tag or "", dict(initial_config or {}))]
    segments = [Segment(0, chain[0].clone_tag, dict(chain[0].clone_config))]
    segments += [Segment(step.clone_iteration, step.target_tag, dict(step.new_config)) for step in chain]
    return segments


def schedule_values(segments: list[Segment], name: str, num_epochs: int) -> np.ndarray:
    """The value of hyperparameter ``name`` the lineage used in each epoch ``0 .. num_epochs-1``."""
    values = np.empty(num_epochs)
    for epoch in range(num_epochs):
        active = [s for s in segments if s.start <= epoch][-1]
        values[epoch] = float(active.config[name])
    return values


def fit_multistep(values: np.ndarray | list[float], max_milestones: int = 3) -> MultiStepFit:
    """Fit ``initial * gamma ** k(epoch)`` to a positive per-epoch schedule, in log space.

    Milestones are searched among the epochs where the value changes (a least-squares optimum
    of a piecewise-constant fit to piecewise-constant data lies there); the number of
    milestones is chosen by BIC with a noise floor of about 1 %.
    """
    y = np.log(np.asarray(values, dtype=float))
    if len(y) == 0 or not np.all(np.isfinite(y)):
        raise ValueError("the schedule must be a non-empty list of positive numbers")
    n = len(y)
    candidates = [e for e in range(1, n) if not math.isclose(y[e], y[e - 1], abs_tol=1e-12)]
    best: tuple[float, float, float, tuple[int, ...], float] | None = None  # (bic, a, b, milestones, sse)
    for m in range(0, min(max_milestones, len(candidates)) + 1):
        for milestones in itertools.combinations(candidates, m):
            k = np.searchsorted(np.array(milestones), np.arange(n), side="right") if m else np.zeros(n)
            if m:
                b, a = np.polyfit(k, y, 1)
            else:
                a, b = float(y.mean()), 0.0
            sse = float(np.sum((y - (a + b * k)) ** 2))
            bic = n * math.log(sse / n + _LOG_NOISE_FLOOR**2) + (1 + 2 * (m > 0) + m) * math.log(n)
            if best is None or bic < best[0] - 1e-9:
                best = (bic, a, b, milestones, sse)
    _, a, b, milestones, sse = best
    return MultiStepFit(initial=math.exp(a), gamma=math.exp(b), milestones=list(milestones),
                        rms_log10=math.sqrt(sse / n) / math.log(10))


def tag_index(tag: str) -> int | None:
    """The trial's index from Ray's experiment tag (``"3_lr=0.01,..."`` -> 3)."""
    head = tag.split("_", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass
class PBTReport:
    """The best final trial's lineage, its schedule per mutated hyperparameter, the lr fit and plot."""

    trial_id: str
    segments: list[Segment]
    lineage: list[str]  # trial ids along the chain, oldest first
    schedules: dict[str, np.ndarray]
    fit: MultiStepFit | None
    fit_param: str | None
    figure: Figure

    def describe(self) -> str:
        lines = [f"PBT lineage of the best trial {self.trial_id}: {' -> '.join(self.lineage)}"]
        for seg, trial_id in zip(self.segments, self.lineage, strict=True):
            params = ", ".join(f"{k}={_short(self.segments, seg, k)}" for k in self.schedules)
            lines.append(f"  from epoch {seg.start}: trial {trial_id}, {params}")
        if self.fit is not None:
            lines.append(self.fit.describe(self.fit_param or "lr"))
        return "\n".join(lines)

    def markdown(self) -> list[str]:
        lines = ["## PBT schedule of the best trial", "", "```", *self.describe().splitlines(), "```"]
        if self.fit is not None:
            lines += ["", "Reuse it in a plain run: `torch.optim.lr_scheduler.MultiStepLR(optimizer, "
                      f"milestones={self.fit.milestones}, gamma={self.fit.gamma:.4g})` with initial "
                      f"{self.fit_param} {self.fit.initial:.4g}."]
        return lines


def _short(segments: list[Segment], seg: Segment, key: str) -> str:
    value = seg.config.get(key)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _mutated(segments: list[Segment]) -> list[str]:
    """Hyperparameters that take more than one value along the lineage (numeric ones only)."""
    keys = [k for k, v in segments[0].config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [k for k in keys if len({repr(s.config.get(k)) for s in segments}) > 1]


def analyze_pbt(exp: Experiment, fit_param: str = "lr") -> PBTReport | None:
    """Lineage, schedules, fit and figure for the best trial of a PBT experiment."""
    best = exp.summary.get("best")
    if not best:
        return None
    trial_id = best["trial_id"]
    by_index = {int(t["trial_id"].rsplit("_", 1)[1]): t["trial_id"] for t in exp.summary["trials"]
                if t["trial_id"].rsplit("_", 1)[-1].isdigit()}
    policy = exp.path / f"pbt_policy_{trial_id}.txt"
    steps = read_policy(policy) if policy.is_file() else []
    segments = reconstruct_schedule(steps, final_tag=trial_id, initial_config=best["config"])
    lineage = [by_index.get(tag_index(s.tag), s.tag) if s.tag != trial_id else trial_id for s in segments]
    num_epochs = int(best.get("iteration") or 0) or max(s.start for s in segments) + 1
    mutated = _mutated(segments)
    if fit_param in segments[0].config and fit_param not in mutated:
        mutated = [fit_param, *mutated]  # show the (constant) lr too: a flat schedule is a finding
    schedules = {k: schedule_values(segments, k, num_epochs) for k in mutated}
    fit = None
    if fit_param in schedules and np.all(schedules[fit_param] > 0):
        fit = fit_multistep(schedules[fit_param])
    figure = plot_schedule(exp, segments, lineage, schedules, fit, fit_param)
    return PBTReport(trial_id, segments, lineage, schedules, fit, fit_param if fit else None, figure)


def _lineage_curve(exp: Experiment, segments: list[Segment], lineage: list[str], num_epochs: int) -> list[tuple]:
    """(epoch, metric, trial id) along the lineage, from each ancestor's results in its segment.

    A trial's result.json can hold several lives (it restarts from a donor at each exploitation);
    the rows of a segment are those whose config matches the segment's config.
    """
    points = []
    bounds = [s.start for s in segments[1:]] + [num_epochs]
    for seg, end, trial_id in zip(segments, bounds, lineage, strict=True):
        trial = next((t for t in exp.summary["trials"] if t["trial_id"] == trial_id), None)
        if trial is None or not trial.get("path"):
            continue
        result_file = exp.path / Path(trial["path"]).name / "result.json"
        if not result_file.is_file():
            continue
        for line in result_file.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            it = row.get("training_iteration", 0)
            config = row.get("config", {})
            if seg.start < it <= end and all(config.get(k) == v for k, v in seg.config.items() if k in config):
                points.append((it, row.get(exp.metric), trial_id))
    # One point per epoch: the last matching row wins (a later life overwrote an earlier one).
    return sorted({p[0]: p for p in points}.values())


def plot_schedule(exp: Experiment, segments: list[Segment], lineage: list[str], schedules: dict[str, np.ndarray],
                  fit: MultiStepFit | None, fit_param: str) -> Figure:
    """Top: the metric along the lineage, coloured by ancestor; below: each mutated hyperparameter."""
    num_epochs = len(next(iter(schedules.values()))) if schedules else max(s.start for s in segments) + 1
    fig, axes = plt.subplots(1 + len(schedules), 1, figsize=(6.5, 2.4 * (1 + len(schedules))), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    curve = _lineage_curve(exp, segments, lineage, num_epochs)
    colours = {tid: f"C{i % 10}" for i, tid in enumerate(dict.fromkeys(lineage))}
    for tid in colours:
        pts = [(e, v) for e, v, t in curve if t == tid]
        if pts:
            axes[0].plot(*zip(*pts, strict=True), marker="o", markersize=3, color=colours[tid], label=tid)
    for seg in segments[1:]:
        for ax in axes:
            ax.axvline(seg.start + 0.5, color="grey", linestyle=":", linewidth=0.8)
    axes[0].set_ylabel(exp.metric)
    axes[0].set_title("PBT lineage of the best final trial (dotted: exploitations)", fontsize=10)
    axes[0].legend(fontsize=7)
    epochs = np.arange(1, num_epochs + 1)  # epoch e (0-based) is reported as training_iteration e+1
    for ax, (name, values) in zip(axes[1:], schedules.items(), strict=True):
        ax.step(epochs, values, where="mid", label=f"{name} (PBT)")
        if fit is not None and name == fit_param:
            ax.step(epochs, fit.values(num_epochs), where="mid", linestyle="--", label="MultiStepLR fit")
        if np.all(values > 0) and values.max() / values.min() > 3:
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    axes[-1].set_xlabel("epoch (training_iteration)")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", metavar="DIR", help="a PBT experiment folder (with summary.json)")
    parser.add_argument("--param", default="lr", help="the hyperparameter to fit a multistep schedule to")
    args = parser.parse_args(argv)
    try:
        exp = load_experiment(args.experiment)
        if not (exp.path / "pbt_global.txt").is_file():
            raise ConfigError(f"{exp.path} has no pbt_global.txt: not a PBT experiment, or PBT ran with "
                              "log_config=False")
        report = analyze_pbt(exp, args.param)
        if report is None:
            raise ConfigError(f"{exp.path}: no trial produced a finite metric")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.describe())
    report.figure.savefig(exp.path / "pbt_schedule.png", dpi=100)
    print(f"saved {exp.path / 'pbt_schedule.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
