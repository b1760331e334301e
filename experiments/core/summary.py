"""The experiment summary: ``summary.json`` (a contract other tools read), ``summary.md`` and a table.

summary.json fields: name, strategy, model, searcher, scheduler, space, metric, mode, num_trials,
num_terminated, num_errored, wall_time_s, baseline_val_mae, best {trial_id, config, metric,
test_mae, iteration, best_iteration}, config_file, reproduce_command, ray_version; plus extensions
(early-stopped, diverged, collapsed and out-of-memory counts: ``num_oom``; per-trial records with
``oom`` and ``oom_error``; the model's reference numbers, start_time; ``best_model``: where the
best model folder is or the command that makes it, and the command that predicts with it).

A trial record's ``metric`` is the trial's score, its best reported result, with the test metric
and ``best_iteration`` of that result; ``last_metric`` is its last reported value and ``iteration``
the iterations it trained. ``best`` is the best non-errored trial. The definitions are in
:mod:`experiments.core.scores`.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from experiments.core.config import ExperimentConfig
from experiments.core.scores import best_position, is_number, rank_trials
from experiments.core.strategies import STRATEGIES
from experiments.core.tune_state import saved_trial_ids, unfinished_ids
from search_spaces import SearchSpace


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None (strict JSON has no NaN/Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def _best_result(result: Any, metric: str, mode: str) -> dict[str, Any] | None:
    """The trial's best result (see :mod:`experiments.core.scores`) from its reported history, if any."""
    history = getattr(result, "metrics_dataframe", None)
    if history is None or metric not in history:
        return None
    position = best_position(history[metric].to_numpy(dtype=float), mode)
    return None if position is None else history.iloc[position].to_dict()


def _trial_record(result: Any, config: ExperimentConfig, ids: dict[str, str]) -> dict[str, Any]:
    """One trial of summary.json; ``ids``: trial folder name -> trial id (``tune_state.saved_trial_ids``)."""
    metrics = result.metrics or {}
    test_metric = config.model_spec.test_metric
    # The trial's score is its best reported result, and the test metric is the one reported with it
    # (experiments/core/scores.py); a trial without a readable history falls back to its last result.
    best = _best_result(result, config.metric, config.mode)
    if best is None:
        best = metrics if is_number(metrics.get(config.metric)) else {}
    return {
        # Before a trial's first report its metrics may carry another trial's id (tune_state.saved_trial_ids).
        "trial_id": ids.get(Path(result.path).name) or metrics.get("trial_id") or Path(result.path).name,
        "config": {k: v for k, v in (result.config or {}).items()},
        "metric": best.get(config.metric),
        test_metric: best.get(test_metric),
        "best_iteration": best.get("training_iteration"),
        "last_metric": metrics.get(config.metric),
        "iteration": metrics.get("training_iteration", 0),
        # Epochs trained (the model's time_attr: RoBERTa's --eval-every-steps makes iterations
        # finer than epochs) and the epochs this trial was meant to train: its own `epochs`
        # hyperparameter where the space has one, else max_epochs.
        "epochs": metrics.get(config.model_spec.time_attr, metrics.get("training_iteration", 0)),
        "planned_epochs": min(config.max_epochs, (result.config or {}).get("epochs", config.max_epochs)),
        "errored": result.error is not None,
        "error": str(result.error).strip().splitlines()[-1] if result.error is not None else None,
        "diverged": bool(metrics.get("diverged", False)),
        "collapsed": bool(metrics.get("collapsed", False)),
        # Out of GPU memory (trainables/oom.py): where (setup or a step) and the error's first line.
        "oom": bool(metrics.get("oom", False)),
        "oom_error": metrics.get("oom_error") if metrics.get("oom") else None,
        "node_id": metrics.get("node_id"),
        "path": result.path,
        # Tune marks the last result `done` when the trial ends by a stop condition (max_epochs) or its
        # scheduler; a trial stopped by the time budget, or interrupted, ends without it (see mark_ending).
        "done": bool(metrics.get("done", False)),
    }


def summarize(
    config: ExperimentConfig,
    name: str,
    space: SearchSpace,
    results: Any,
    wall_time_s: float,
    prepared: dict[str, Any],
    reproduce_command: str,
) -> dict[str, Any]:
    """Build the summary dict of a finished (or stopped) experiment from Ray's ``ResultGrid``."""
    import ray

    results = list(results)
    ids = saved_trial_ids(Path(results[0].path).parent) if results else {}
    trials = [_trial_record(r, config, ids) for r in results]
    ranked = rank_trials(trials, config.mode)  # the one definition of "best": experiments/core/scores.py
    test_metric = config.model_spec.test_metric
    best = None
    if ranked:
        top = ranked[0]
        best = {"trial_id": top["trial_id"], "config": top["config"], "metric": top["metric"],
                test_metric: top[test_metric], "iteration": top["iteration"], "best_iteration": top["best_iteration"]}
    finished = [t for t in trials if not t["errored"]]
    summary = {
        "name": name,
        "strategy": config.strategy,
        "model": config.model,
        "searcher": config.search,
        "scheduler": STRATEGIES[config.strategy].scheduler,
        "space": config.space,
        "metric": config.metric,
        "mode": config.mode,
        "num_trials": len(trials),
        "num_terminated": len(finished),
        "num_errored": len(trials) - len(finished),
        # Trials a time budget ended before their first result were not stopped by the scheduler.
        "num_not_started": sum(1 for t in finished if not t["iteration"]),
        "num_early_stopped": count_early_stopped(trials),
        "num_diverged": sum(1 for t in trials if t["diverged"]),
        "num_collapsed": sum(1 for t in trials if t["collapsed"]),
        "num_oom": sum(1 for t in trials if t["oom"]),
        "wall_time_s": round(wall_time_s, 2),
        # Unix time the Tuner started (summarize runs right after it returns): the origin of the
        # wall-clock axes in experiments/analyze.py and compare.py.
        "start_time": round(time.time() - wall_time_s, 3),
        "baseline_val_mae": prepared.get("baseline_val_mae"),
        "best": best,
        "config_file": config.config_file,
        "reproduce_command": reproduce_command,
        "ray_version": ray.__version__,
        "seed": config.seed,
        "num_samples": config.num_samples,
        "max_epochs": config.max_epochs,
        "space_params": space.names,
        "prepared": {k: v for k, v in prepared.items() if k != "baseline_val_mae"},
        "trials": trials,
    }
    return _clean(summary)


ENDINGS = ("completed", "time_budget", "interrupted", "trial_error")


def count_early_stopped(trials: list[dict[str, Any]]) -> int:
    """Trials the scheduler or the time budget stopped before their planned epochs (not errored,
    diverged, collapsed or out of memory, and not ``interrupted``: a resume continues those)."""
    return sum(1 for t in trials if not t["errored"] and not t.get("interrupted") and 0 < t["iteration"]
               and t["epochs"] < t["planned_epochs"] and not t["diverged"] and not t["collapsed"] and not t["oom"])


def mark_unfinished(summary: dict[str, Any], saved_statuses: dict[str, str]) -> None:
    """``num_unfinished`` from Tune's saved trial statuses (trial id -> status, ``tune_state.saved_trial_statuses``).

    A stop signal leaves running and pending trials unfinished in the saved state (in memory Tune shows
    them stopped): each is marked ``interrupted`` and no longer counts as stopped early.
    """
    unfinished = unfinished_ids(saved_statuses)
    summary["num_unfinished"] = len(unfinished)
    for trial in summary["trials"]:
        if trial["trial_id"] in unfinished and not trial["errored"]:
            trial["interrupted"] = True
    summary["num_early_stopped"] = count_early_stopped(summary["trials"])


def mark_ending(summary: dict[str, Any], time_budget_s: float | None) -> None:
    """Set ``ended_by`` (what ended this session of the experiment) and ``num_cut`` (trials the time budget cut).

    ``ended_by``: ``trial_error`` (fail-fast stopped it, trials are left to run), ``interrupted`` (a
    signal, Ctrl-C or a Slurm time-limit warning stopped it: resume runs the rest), ``time_budget``
    (``time_budget_s``, total over every session, ran out: Tune stopped the running trials and started no
    more), ``completed`` (every planned trial finished or was stopped by its scheduler). A trial is
    ``cut`` when the budget ended it before it finished: neither errored nor ``done`` (never started
    ones included); ``num_cut`` counts them. They stay in ``num_terminated`` (Tune's status), so the
    existing fields keep their meaning, but they are not finished trials.
    """
    left = left_to_run(summary)
    not_done = [t for t in summary["trials"] if not t["errored"] and not t.get("interrupted") and not t.get("done")]
    if left and summary.get("num_errored"):
        ended = "trial_error"
    elif left:
        ended = "interrupted"
    elif not_done and time_budget_s:
        ended = "time_budget"
    else:
        ended = "completed"
    for trial in summary["trials"]:
        trial["cut"] = ended == "time_budget" and trial in not_done
    summary["ended_by"] = ended
    summary["num_cut"] = sum(1 for t in summary["trials"] if t["cut"])


def left_to_run(summary: dict[str, Any]) -> int:
    """Trials a resume would still run: unfinished ones, and planned ones a stop kept from starting."""
    return int(summary.get("num_unfinished") or 0) + int(summary.get("num_not_started") or 0)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(exp_dir: Path, summary: dict[str, Any]) -> None:
    """Write summary.json and summary.md into the experiment folder (atomically)."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(exp_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    _atomic_write(exp_dir / "summary.md", format_markdown(summary))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _test_key(summary: dict[str, Any]) -> str:
    best = summary.get("best") or {}
    return next((k for k in best if k.startswith("test_")), "test_mae")


def _reached(best: dict[str, Any]) -> str:
    """Where the best trial's score came from: "reached at iteration 3 of 4" (older summaries: "4 iterations")."""
    if best.get("best_iteration") is None:
        return f"{best['iteration']} iterations"
    return f"reached at iteration {best['best_iteration']} of {best['iteration']}"


def format_table(summary: dict[str, Any], top: int = 5) -> str:
    """A short plain-text table of the best trials and the best configuration."""
    test_key = _test_key(summary)
    rows = rank_trials(summary["trials"], summary["mode"])  # errored trials are not ranked
    lines = [
        f"Experiment {summary['name']}: {summary['model']} / {summary['searcher']} + {summary['scheduler']}, "
        f"{summary['num_trials']} trials ({summary['num_early_stopped']} stopped early, "
        f"{summary['num_errored']} errored, {summary['num_diverged']} diverged"
        + (f", {summary['num_oom']} out of memory" if summary.get("num_oom") else "")
        + f") in {summary['wall_time_s']:.0f} s",
        f"{'trial':<14}{summary['metric']:>12}{test_key:>12}{'epochs':>8}",
    ]
    lines += [f"{t['trial_id']:<14}{_fmt(t['metric']):>12}{_fmt(t.get(test_key)):>12}{t['iteration']:>8}"
              for t in rows[:top]]
    if summary.get("baseline_val_mae") is not None:
        lines.append(f"baseline_val_mae (per-group mean predictor): {_fmt(summary['baseline_val_mae'])}")
    best = summary.get("best")
    if best:
        lines.append(f"best {summary['metric']} {_fmt(best['metric'])} (trial {best['trial_id']}, "
                     f"{_reached(best)}), config:")
        lines += [f"  {k}: {_fmt(v)}" for k, v in best["config"].items()]
    else:
        lines.append(no_best_reason(summary))
    lines.append(f"reproduce: {summary['reproduce_command']}")
    return "\n".join(lines)


def no_best_reason(summary: dict[str, Any]) -> str:
    """Why an experiment has no best trial: none reported a finite metric, or every one that did
    errored, diverged or collapsed (such trials never rank: core/scores.py)."""
    broken = {what: summary.get(f"num_{what}", 0) for what in ("errored", "diverged", "collapsed", "oom")}
    if any(broken.values()):
        parts = ", ".join(f"{n} {'out of memory' if what == 'oom' else what}" for what, n in broken.items() if n)
        return (f"no trial counts ({parts} of {summary['num_trials']}; errored, diverged, collapsed and "
                "out-of-memory trials never rank)")
    return "no trial produced a finite metric"


def _oom_section(summary: dict[str, Any]) -> list[str]:
    """summary.md's list of the configurations that ran out of GPU memory (none: no section)."""
    oom = [t for t in summary.get("trials", []) if t.get("oom")]
    if not oom:
        return []
    lines = ["", "## Out of GPU memory", "",
             f"{len(oom)} trial(s) ran out of their GPU memory share; they do not rank, and model-based "
             "searchers were told the worst value seen so far for them. Their configurations:", ""]
    lines += [f"- {t['trial_id']}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in t["config"].items())
              + (f" ({t['oom_error']})" if t.get("oom_error") else "") for t in oom]
    return lines


def best_model_lines(summary: dict[str, Any]) -> list[str]:
    """summary.md's lines on the best model: where it is or the command that makes it, and how to predict."""
    entry = summary.get("best_model")
    if not entry:
        return [f"- none: {no_best_reason(summary)}"]
    lines = []
    if entry.get("exists"):
        made = "kept by the run" if entry.get("made_by") == "run" else "made by experiments/train_best.py"
        lines.append(f"- `{entry['path']}`: the best trial's model at its best epoch ({made}; "
                     f"{summary['metric']} {_fmt(entry.get('metric'))}, test {_fmt(entry.get('test_metric'))})")
    elif entry.get("train_command"):
        lines.append("- not kept by the run (minimal checkpointing); make it (retrains the best configuration with "
                     f"its seed and keeps its best epoch in `{entry['path']}`): `{entry['train_command']}`")
    if entry.get("problem"):
        lines.append(f"- problem: {entry['problem']}")
    lines.append(f"- predict: `{entry['predict_command']}`")
    return lines


def format_markdown(
    summary: dict[str, Any],
    findings: list[str] | None = None,
    plots: list[str] | None = None,
    extra_sections: list[str] | None = None,
) -> str:
    """summary.md: the experiment record (Tuning Playbook) in Markdown.

    The runner first writes it from the summary alone; ``experiments/analyze.py`` rewrites it with
    the checks' ``findings``, links to its ``plots`` (PNG file names next to summary.md) and any
    ``extra_sections`` (Markdown lines, e.g. the PBT schedule).
    """
    test_key = _test_key(summary)
    best = summary.get("best") or {}
    lines = [
        f"# Experiment {summary['name']}",
        "",
        f"- model: {summary['model']}; strategy: {summary['strategy']} "
        f"({summary['searcher']} search, {summary['scheduler']} scheduler); space: {summary['space']}; "
        f"seed: {_fmt(summary.get('seed'))}",
        f"- config file: {summary['config_file'] or '(built-in defaults)'}",
        f"- trials: {summary['num_trials']} ({summary['num_terminated']} terminated, of which "
        f"{summary.get('num_early_stopped', 0)} stopped early by the scheduler or the time budget and "
        f"{summary.get('num_not_started', 0)} never started; {summary['num_errored']} errored; "
        f"{summary.get('num_diverged', 0)} diverged; {summary.get('num_collapsed', 0)} collapsed; "
        f"{summary.get('num_oom', 0)} out of memory)",
        f"- wall time: {summary['wall_time_s']:.1f} s; Ray {summary['ray_version']}",
        f"- metric: {summary['metric']} ({summary['mode']})",
    ]
    if summary.get("baseline_val_mae") is not None:
        lines.append(f"- baseline_val_mae: {_fmt(summary['baseline_val_mae'])}")
    if best:
        lines += [f"- best {summary['metric']}: {_fmt(best['metric'])} (trial {best['trial_id']}, "
                  f"{_reached(best)}; a trial's score is its best reported result, errored trials not ranked)",
                  f"- test metric of the best trial: {test_key} {_fmt(best.get(test_key))}"]
    else:
        lines.append(f"- best: {no_best_reason(summary)}")
    if summary.get("ended_by") == "time_budget":
        lines.append(f"- ended by the time budget: {summary.get('num_cut', 0)} trial(s) cut before they finished")
    if left_to_run(summary):
        lines.append(f"- unfinished trials: {summary.get('num_unfinished', 0)}, planned trials not started: "
                     f"{summary.get('num_not_started', 0)}; resume with `{summary.get('resume_command')}`")
    if best:
        lines += ["", "## Best configuration", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in best["config"].items()]
    lines += _oom_section(summary)
    if findings is not None:
        lines += ["", "## Checks", ""]
        lines += [f"- {finding}" for finding in findings]
    lines += ["", "## Reproduce", "", "```", summary["reproduce_command"], "```"]
    if "best_model" in summary:
        lines += ["", "## Best model", "", *best_model_lines(summary)]
    if extra_sections:
        lines += ["", *extra_sections]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in plots]
    lines.append("")
    return "\n".join(lines)
