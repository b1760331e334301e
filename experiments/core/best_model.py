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
  them (``best_model_state.pt``) beside the trainable's own resume state; PBT runs also checkpoint
  each trial at its end. After the run, :func:`keep_from_checkpoint` turns the best trial's last
  checkpoint into ``best_model/``. ``--checkpoint-frequency`` checkpoints of other strategies hold
  the best weights the same way.
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
from trainables.model_folder import write_info
from trainables.registry import bind_options

BEST_MODEL_DIR = "best_model"
BEST_STATE_FILE = "best_model_state.pt"


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


def keeping_best(trainable: type, metric: str, mode: str) -> type:
    """``trainable`` whose trials keep the weights of their best ``metric`` result and checkpoint them.

    The copy is made on the trial's device when a result improves on the trial's best (a few
    milliseconds for CGCNN, one copy of the weights in memory); ``save_checkpoint`` adds it to the
    checkpoint as ``best_model_state.pt`` {trial_id, result, state_dict}. A restore of the trial's own
    checkpoint takes its best back; a PBT exploit restores a donor's checkpoint, after which the trial
    keeps its own best so far (the donor's weights only count once they improve on it). An actor that
    moves on to another trial (``reuse_actors``) starts that trial's best afresh.
    """
    import torch

    class KeepingBest(trainable):
        def _best_tracker(self) -> dict[str, Any]:
            tracker = getattr(self, "_kept_best", None)
            if tracker is None or tracker["trial_id"] != self.trial_id:
                tracker = self._kept_best = {"trial_id": self.trial_id, "value": None, "result": None, "state": None}
            return tracker

        def step(self) -> dict[str, Any]:
            result = super().step()
            tracker = self._best_tracker()
            if better(result.get(metric), tracker["value"], mode) and not result.get("diverged"):
                tracker["value"] = float(result[metric])
                tracker["result"] = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
                tracker["result"]["training_iteration"] = self.iteration + 1  # Tune counts this result after step()
                tracker["state"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> Any:
            saved = super().save_checkpoint(checkpoint_dir)
            tracker = self._best_tracker()
            if tracker["state"] is not None:
                torch.save({"trial_id": tracker["trial_id"], "value": tracker["value"], "result": tracker["result"],
                            "state_dict": {k: v.to("cpu") for k, v in tracker["state"].items()}},
                           os.path.join(checkpoint_dir, BEST_STATE_FILE))
            return saved

        def load_checkpoint(self, checkpoint: Any) -> None:
            super().load_checkpoint(checkpoint)
            path = os.path.join(str(checkpoint), BEST_STATE_FILE)
            if isinstance(checkpoint, str) and os.path.isfile(path):
                kept = torch.load(path, map_location="cpu", weights_only=True)
                if kept["trial_id"] == self.trial_id:  # its own checkpoint (a resume): its own best comes back
                    self._kept_best = {"trial_id": kept["trial_id"], "value": kept["value"],
                                       "result": kept["result"], "state": kept["state_dict"]}

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
    trainable.export_model(str(staging), state)
    write_info(staging, info)
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def model_info(config: ExperimentConfig, options: dict[str, Any], made_by: str, experiment: Path,
               trial_id: str, trial_config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """``hpo_model.json``: what the folder holds, the metrics of its epoch and where it came from."""
    import torch

    spec = config.model_spec
    return {
        "model": config.model,
        "made_by": made_by,
        "experiment": experiment.name,
        "experiment_path": str(experiment.resolve()),
        "trial_id": trial_id,
        "config": trial_config,
        "metric": config.metric,
        "mode": config.mode,
        "test_metric": spec.test_metric,
        config.metric: result.get(config.metric),
        spec.test_metric: result.get(spec.test_metric),
        "training_iteration": result.get("training_iteration"),
        "epoch": result.get(spec.time_attr),
        "max_epochs": int(options.get("max_epochs") or config.max_epochs),
        # The model options prediction needs (data settings, maximum length), without the cache folder.
        "options": {k: v for k, v in options.items() if k != "cache_dir"},
        "torch_threads": torch.get_num_threads(),
    }


def keep_from_checkpoint(config: ExperimentConfig, exp_dir: Path, results: Any, summary: dict[str, Any],
                         options: dict[str, Any]) -> dict[str, Any] | None:
    """PBT: ``best_model/`` from the best trial's last checkpoint; returns the summary's ``best_model`` entry.

    The model is written by the trainable built in this process for the trial's last configuration
    (data from the cache the trials used, no weights trained). Any failure leaves the summary
    saying so: the run's results stand without the model.
    """
    import torch

    entry = best_model_entry(config, exp_dir, summary)
    if entry is None or not keeps_model(config):
        return entry
    started = time.perf_counter()
    best = summary["best"]
    result = next((r for r in results if Path(r.path).name == best["trial_id"]
                   or (r.metrics or {}).get("trial_id") == best["trial_id"]), None)
    checkpoint = getattr(result, "checkpoint", None) if result is not None else None
    path = Path(checkpoint.path) / BEST_STATE_FILE if checkpoint is not None else None
    if path is None or not path.is_file():
        entry["problem"] = f"trial {best['trial_id']} left no checkpoint with its best weights"
        return entry
    kept = torch.load(path, map_location="cpu", weights_only=True)
    trial_config = dict(result.config or best["config"])
    trainable = bind_options(config.model_spec.load_trainable(), options)(dict(trial_config))
    try:
        info = model_info(config, options, "run", exp_dir, best["trial_id"], trial_config, kept["result"])
        write_model_folder(trainable, kept["state_dict"], info, exp_dir / BEST_MODEL_DIR)
    finally:
        trainable.cleanup()
    entry.update({"exists": True, "made_by": "run", "metric": info[config.metric],
                  "test_metric": info[config.model_spec.test_metric], "training_iteration": info["training_iteration"],
                  "seconds": round(time.perf_counter() - started, 3)})
    if info[config.metric] != best["metric"]:
        # A PBT exploit replaced the trial's weights on an actor that had not kept its earlier best.
        entry["problem"] = (f"the kept epoch's {config.metric} {info[config.metric]:.6g} is not the trial's best "
                            f"{best['metric']:.6g}: that result's weights were replaced before a checkpoint held them")
    return entry
