"""The experiment's best model folder, ``<experiment>/best_model/``: who makes it and what it holds.

A model folder (:mod:`trainables.model_folder`) holds the best trial's model at its best epoch, in
its ecosystem's format, plus ``hpo_model.json`` (model name, trial configuration, the metrics of
that epoch, provenance).

- Runs with minimal checkpointing (the default for random, grid, ASHA and HyperBand searches)
  keep no weights: ``python experiments/train_best.py <experiment>`` retrains the best
  configuration with its seed and keeps its best epoch (:mod:`experiments.workflows.best_model`).
- PBT winners cannot be retrained from a configuration (their hyperparameters changed during
  training and their weights came from other trials), and PBT writes checkpoints anyway. Its
  trainable is wrapped by :func:`keeping_best`: each trial keeps the weights of its best result so
  far (the trial's score as :mod:`experiments.core.scores` defines it) and every checkpoint holds
  them as a model folder, ``<checkpoint>/best_model/``, beside the trainable's own resume state;
  PBT trials also write their best model once, at their last epoch, to
  ``<experiment>/trial_models/<trial_id>/``; after the run :func:`keep_from_checkpoint` copies the
  best trial's to ``<experiment>/best_model/``. ``--checkpoint-frequency``
  checkpoints of other strategies hold their trial's best model the same way: ``predict.py``
  reads ``<checkpoint>/best_model`` as it is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from experiments.core.config import ExperimentConfig
from experiments.core.scores import is_number, sign
from experiments.core.strategies import STRATEGIES
from trainables.model_folder import load_weights, read_info, write_info

BEST_MODEL_DIR = "best_model"
TRIAL_MODELS_DIR = "trial_models"


def keeps_model(config: ExperimentConfig) -> bool:
    """Whether the run keeps its best model itself (PBT), rather than leaving it to train_best.py."""
    return STRATEGIES[config.strategy].scheduler == "pbt"


def tracks_best(config: ExperimentConfig) -> bool:
    """Whether the trials keep their best weights in their checkpoints (any run that writes checkpoints)."""
    return keeps_model(config) or bool(config.checkpoint_frequency)


def better(value: Any, best: float | None, mode: str) -> bool:
    """Strictly better and finite: the first result that reached the best value is the one kept (scores.py)."""
    return is_number(value) and (best is None or sign(mode) * float(value) < sign(mode) * best)


def cpu_state(model: Any) -> dict[str, Any]:
    """A copy of ``model``'s weights on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def keeping_best(trainable: type, config: ExperimentConfig, experiment: str | None = None,
                 keep_dir: str | None = None) -> type:
    """``trainable`` whose trials keep the weights of their best result and checkpoint them as a model folder.

    The copy is made on the trial's device when a result improves on the trial's best score (one
    copy of the weights in memory); ``save_checkpoint`` adds it to the checkpoint as a model folder
    ``best_model/`` whose ``hpo_model.json`` names the trial and the result. A restore of the
    trial's own checkpoint (a resume) takes its best back; a PBT exploit restores a donor's
    checkpoint, after which the trial keeps its own best so far (the donor's weights count once
    they improve on it). An actor that moves on to another trial (``reuse_actors``) starts that
    trial's best afresh. With ``keep_dir``, a trial also writes its best model to
    ``keep_dir/<trial_id>`` at its last epoch (``max_epochs``, or a result that ends it): PBT never
    stops a trial from outside, so every trial's end is one of these.
    """
    describe = model_description(config, experiment)
    metric, mode, max_epochs = config.metric, config.mode, config.max_epochs

    class KeepingBest(trainable):
        def _best_tracker(self) -> dict[str, Any]:
            tracker = getattr(self, "_kept_best", None)
            if tracker is None or tracker["trial_id"] != self.trial_id:
                tracker = self._kept_best = {"trial_id": self.trial_id, "value": None, "result": None, "state": None,
                                             "config": None}
            return tracker

        def step(self) -> dict[str, Any]:
            result = super().step()
            tracker = self._best_tracker()
            if better(result.get(metric), tracker["value"], mode) and not result.get("diverged"):
                tracker["value"] = float(result[metric])
                tracker["result"] = {**result, "training_iteration": self.iteration + 1}  # Tune counts it after step()
                tracker["state"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                tracker["config"] = dict(self.config)  # PBT may mutate it later: the one these weights trained with
            epochs = result.get(describe["time_attr"], self.iteration + 1)
            if keep_dir and tracker["state"] is not None and (result.get("done") or float(epochs) >= max_epochs):
                info = model_info(describe, self.options, "run", tracker["trial_id"], tracker["config"],
                                  tracker["result"])
                write_model_folder(self, tracker["state"], info, Path(keep_dir) / tracker["trial_id"])
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> Any:
            saved = super().save_checkpoint(checkpoint_dir)
            tracker = self._best_tracker()
            if tracker["state"] is not None:
                folder = os.path.join(checkpoint_dir, BEST_MODEL_DIR)
                self.export_model(folder, tracker["state"], tracker["config"])
                write_info(folder, model_info(describe, self.options, "checkpoint", tracker["trial_id"],
                                              tracker["config"], tracker["result"]))
            return saved

        def load_checkpoint(self, checkpoint: Any) -> None:
            super().load_checkpoint(checkpoint)
            folder = os.path.join(str(checkpoint), BEST_MODEL_DIR)
            if isinstance(checkpoint, str) and os.path.isdir(folder):
                kept = read_info(folder)
                if kept["trial_id"] == self.trial_id:  # its own checkpoint (a resume): its own best comes back
                    self._kept_best = {"trial_id": kept["trial_id"], "value": kept.get(metric),
                                       "result": kept["result"], "state": load_weights(folder),
                                       "config": kept["config"]}

    KeepingBest.__name__ = KeepingBest.__qualname__ = trainable.__name__
    return KeepingBest


def best_model_entry(config: ExperimentConfig, exp_dir: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
    """summary.json's ``best_model``: where the model is (or will be), how to make it and how to use it.

    None when no trial counts (summary.md then says why there is no best trial).
    """
    if not summary.get("best"):
        return None
    folder = exp_dir / BEST_MODEL_DIR
    kept = keeps_model(config)
    return {
        "path": str(folder),
        "kept_by_run": kept,
        "exists": False,
        "train_command": None if kept else f"python experiments/train_best.py {shlex.quote(str(exp_dir))}",
        "predict_command": f"python experiments/predict.py {shlex.quote(str(folder))} --data PATH "
                           "--out predictions.csv",
    }


def write_model_folder(trainable: Any, state: dict[str, Any], info: dict[str, Any], target: Path) -> None:
    """The trainable's model with ``state``'s weights and ``info`` into ``target``, replacing it atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    trainable.export_model(str(staging), state, info.get("config"))
    write_info(staging, info)
    _replace_folder(staging, target)


def model_description(config: ExperimentConfig, experiment: str | None) -> dict[str, Any]:
    """The experiment's facts a model folder records (plain values: trial actors get a copy)."""
    spec = config.model_spec
    return {"model": config.model, "experiment": experiment, "metric": config.metric, "mode": config.mode,
            "test_metric": spec.test_metric, "time_attr": spec.time_attr}


def model_info(describe: dict[str, Any], options: dict[str, Any], made_by: str, trial_id: str,
               trial_config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``hpo_model.json``: what the folder holds, the metrics of its epoch and where it came from."""
    import torch

    metric, test_metric = describe["metric"], describe["test_metric"]
    return {
        "model": describe["model"],
        "made_by": made_by,
        "experiment": describe.get("experiment"),
        "trial_id": trial_id,
        "config": trial_config,
        "metric": metric,
        "mode": describe["mode"],
        "test_metric": test_metric,
        metric: result.get(metric),
        test_metric: result.get(test_metric),
        "training_iteration": result.get("training_iteration"),
        "epoch": result.get(describe["time_attr"]),
        "max_epochs": options.get("max_epochs"),
        # The model options prediction needs (data settings, maximum length), without the cache folder.
        "options": {k: v for k, v in options.items() if k != "cache_dir"},
        "torch_threads": torch.get_num_threads(),
        # The epoch's numeric and text results (metrics, losses, lr), for the record.
        "result": {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) and k != "config"},
    }


def copy_model_folder(source: Path, target: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Copy a model folder to ``target`` (replacing it atomically) with ``changes`` in its hpo_model.json."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    info = {**read_info(staging), **changes}
    write_info(staging, info)
    _replace_folder(staging, target)
    return info


def _replace_folder(staging: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def keep_from_checkpoint(config: ExperimentConfig, exp_dir: Path, results: Any,
                         summary: dict[str, Any]) -> dict[str, Any] | None:
    """PBT: ``best_model/`` copied from the best trial's last checkpoint; returns the summary's ``best_model``.

    Other strategies get the entry that names train_best.py. A best trial whose last checkpoint
    holds no model leaves the entry saying so: the run's results stand without the model.
    """
    entry = best_model_entry(config, exp_dir, summary)
    if entry is None or not keeps_model(config):
        return entry
    started = time.perf_counter()
    best = summary["best"]
    path = next((t["path"] for t in summary["trials"] if t["trial_id"] == best["trial_id"]), None)
    result = next((r for r in results if r.path == path), None)  # (summary.json's trial ids are Tune's saved ones)
    checkpoint = getattr(result, "checkpoint", None) if result is not None else None
    source = exp_dir / TRIAL_MODELS_DIR / best["trial_id"]
    if not source.is_dir() and checkpoint is not None:  # an interrupted trial: its last checkpoint's best so far
        source = Path(checkpoint.path) / BEST_MODEL_DIR
    if not source.is_dir():
        entry["problem"] = f"trial {best['trial_id']} left no model (it never reached its end nor a checkpoint)"
        return entry
    info = copy_model_folder(source, exp_dir / BEST_MODEL_DIR,
                             {"made_by": "run", "experiment": exp_dir.name, "experiment_path": str(exp_dir.resolve())})
    metric = config.metric
    entry.update({"exists": True, "made_by": "run", "metric": info[metric],
                  "test_metric": info[config.model_spec.test_metric], "training_iteration": info["training_iteration"],
                  "seconds": round(time.perf_counter() - started, 3)})
    if info[metric] != best["metric"]:
        # A PBT exploit replaced the trial's weights on an actor that had not kept its earlier best.
        entry["problem"] = (f"the kept epoch's {metric} {info[metric]:.6g} is not the trial's best "
                            f"{best['metric']:.6g}: that result's weights were replaced before a checkpoint held them")
    return entry
