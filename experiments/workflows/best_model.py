"""The best model of an experiment: ``results/<name>/best_model/``, kept by the run or retrained.

Minimal checkpointing stays the default during a search (the NERSC study's advice): trials save no
weights, so after an ASHA, HyperBand, random or grid experiment no trained model exists.
:func:`train_best` makes it: it retrains the best trial's configuration, with its seed, in this
process (no Ray), for the experiment's ``max_epochs`` (or more, for a longer final run), scores
every epoch as the search scored trials (:mod:`experiments.core.scores`: the first result that
reached the best value of the tuned metric) and writes the weights of that epoch as a model folder
(:mod:`trainables.model_folder`). Training is deterministic on the CPU for a given seed and thread
count, so with the experiment's ``max_epochs`` the retrained model reproduces the trial's metrics.

PBT's winners cannot be retrained from a configuration: their hyperparameters change during
training and their weights come from other trials. PBT writes checkpoints anyway, so its runs keep
the model themselves (:func:`keep_from_checkpoint`, called by the runner at the end of the run).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.core.best_model import (
    BEST_MODEL_DIR,
    better,
    cpu_state,
    keeps_model,
    model_description,
    model_info,
    write_model_folder,
)
from experiments.core.config import ConfigError, ExperimentConfig, resolve_config
from experiments.core.runner import trial_options
from experiments.core.strategies import STRATEGIES
from experiments.core.summary import no_best_reason
from trainables.registry import bind_options


@dataclass
class FinishedExperiment:
    """An experiment folder's summary and the configuration it ran with."""

    path: Path
    summary: dict[str, Any]
    config: ExperimentConfig


def open_experiment(exp_dir: str | Path) -> FinishedExperiment:
    """Read ``summary.json`` and ``experiment.yaml`` of an experiment folder (ConfigError if it is none)."""
    path = Path(exp_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{path}: experiment folder not found")
    if not (path / "summary.json").is_file():
        hint = ""
        if (path / "two_stage.json").is_file():
            hint = f"; a two-stage run: its model is in {path / 'stage2_pbt' / BEST_MODEL_DIR}"
        raise ConfigError(f"{path}: no summary.json (not an experiment folder, or its run never finished){hint}")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path / 'summary.json'}: unreadable ({err})") from None
    snapshot = path / "experiment.yaml"
    if not snapshot.is_file():
        raise ConfigError(f"{path}: no experiment.yaml (the configuration the experiment ran with)")
    strategy = summary.get("strategy")
    if strategy not in STRATEGIES:
        raise ConfigError(f"{path / 'summary.json'}: unknown strategy {strategy!r}")
    chosen = STRATEGIES[strategy]
    config = resolve_config(strategy, {"config": str(snapshot)}, {"search": chosen.searchers[0]}, chosen.smoke)
    return FinishedExperiment(path, summary, config)


def train_best(exp_dir: str | Path, max_epochs: int | None = None, out: str | Path | None = None,
               log: Any = print) -> dict[str, Any]:
    """Retrain the best trial of ``exp_dir`` and write the model folder; returns its ``hpo_model.json``.

    ``max_epochs`` (default the experiment's) is also the lr schedule's length, as in the search.
    ``out`` defaults to ``<exp_dir>/best_model``; the folder is replaced only once the new one is complete.
    """
    import torch

    exp = open_experiment(exp_dir)
    config, summary = exp.config, exp.summary
    if keeps_model(config):
        raise ConfigError(f"{exp.path}: a PBT experiment's winner cannot be retrained from a configuration (its "
                          f"hyperparameters changed during training and its weights came from other trials); "
                          f"the run keeps its model in {exp.path / BEST_MODEL_DIR}")
    best = summary.get("best")
    if not best:
        raise ConfigError(f"{exp.path}: no best trial to retrain: {no_best_reason(summary)}")
    epochs = int(max_epochs or config.max_epochs)
    if epochs < 1:
        raise ConfigError(f"--max-epochs must be at least 1, got {epochs}")
    spec = config.model_spec
    options = trial_options(config)  # the options every trial got, as the runner builds them
    options["max_epochs"] = epochs
    spec.load_prepare()(options)  # checks the data and model source; fills the cache as before the search
    time_attr = spec.time_attr
    log(f"train_best: retraining trial {best['trial_id']} of {summary['name']} ({config.model}) for {epochs} "
        f"epoch(s) in this process")
    trainable = bind_options(spec.load_trainable(), options)(dict(best["config"]))
    log(f"train_best: {torch.get_num_threads()} CPU thread(s), as each trial had")
    started = time.perf_counter()
    best_value, best_result, best_state, iteration, history = None, None, None, 0, []
    try:
        while True:
            result = trainable.step()
            iteration += 1
            result["training_iteration"] = iteration
            history.append({k: result.get(k) for k in (time_attr, config.metric, spec.test_metric)})
            if better(result.get(config.metric), best_value, config.mode) and not result.get("diverged"):
                best_value, best_result, best_state = float(result[config.metric]), result, cpu_state(trainable.model)
            log(f"  {time_attr} {result.get(time_attr)}: {config.metric} {result.get(config.metric)}, "
                f"{spec.test_metric} {result.get(spec.test_metric)}")
            if result.get("done") or float(result.get(time_attr, iteration)) >= epochs:
                break
        if best_state is None:
            raise ConfigError(f"retraining trial {best['trial_id']} gave no finite {config.metric}")
        target = Path(out) if out is not None else exp.path / BEST_MODEL_DIR
        info = model_info(model_description(config, summary["name"]), options, "train_best", best["trial_id"],
                          best["config"], best_result)
        info.update({"experiment_path": str(exp.path.resolve()), "history": history,
                     "train_seconds": round(time.perf_counter() - started, 2)})
        write_model_folder(trainable, best_state, info, target)
    finally:
        trainable.cleanup()
    if out is None:
        _record_in_summary(exp.path, info)
    return info


def _record_in_summary(exp_dir: Path, info: dict[str, Any]) -> None:
    """Add the model's numbers to summary.json's ``best_model`` entry and refresh summary.md."""
    from experiments.core.summary import write_summary

    summary = json.loads((exp_dir / "summary.json").read_text())
    entry = dict(summary.get("best_model") or {"path": str(exp_dir / BEST_MODEL_DIR), "kept_by_run": False})
    entry.update({"exists": True, "made_by": info["made_by"], "metric": info.get(info["metric"]),
                  "test_metric": info.get(info["test_metric"]), "training_iteration": info["training_iteration"],
                  "max_epochs": info["max_epochs"]})
    summary["best_model"] = entry
    write_summary(exp_dir, summary)
    try:  # the record's checks and plots come back into summary.md; the summary is written already
        from experiments.analysis.record import analyze

        analyze(exp_dir)
    except Exception as err:  # noqa: BLE001 - the model is written; the record is a convenience
        print(f"warning: summary.md written without the analysis ({type(err).__name__}: {err}); "
              f"rerun python experiments/analyze.py {exp_dir}")
