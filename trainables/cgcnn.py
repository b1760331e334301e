"""Ray Tune trainable for CGCNN on adsorption energies (one ``step`` = one epoch).

Training recipe (as practitioners train CGCNN: txie-93/cgcnn decays its lr with MultiStepLR,
OC20's baselines warm up then decay): AdamW, a linear lr warm-up over ``warmup_epochs``, then a
cosine decay to ``MIN_LR_FRACTION`` of ``lr`` at ``max_epochs``. The schedule's length is the
experiment's ``max_epochs`` (the runner passes it in ``options``), never the epoch a scheduler
stops a trial at: at an ASHA rung every trial is at the same point of the same schedule, so
early results rank configurations by how they train, not by how far their lr has decayed.
The shuffle of each epoch derives from (seed, epoch), so a trial restored from a checkpoint
continues with the order it would have had.

Input path (trainables/data/packed.py): the dataset lives on the trial's device as a few flat
tensors; each batch is gathered there by index, its edge lengths expanded on Gaussians there, and
the epoch's loss summed there and read once, so a GPU step never waits for the host. A dataset too
large for the trial's GPU memory share stays in host memory, with pinned, non-blocking batch copies.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from trainables import checkpoint_origin
from trainables.data import GraphDataset, baseline_mae, load_dataset
from trainables.data.packed import GraphBatch, PackedGraphs, choose_residence, trial_memory_bytes
from trainables.device import cap_gpu_memory, describe, free_gpu_memory, trial_device
from trainables.errors import ModelConfigError
from trainables.models.cgcnn import CGCNN
from trainables.oom import oom_guarded, setup_completed

CHECKPOINT_FILE = "cgcnn.pt"
EVAL_BATCH_SIZE = 512
# Schedule length when the runner passes no max_epochs (a trainable used on its own): the
# default experiment's (configs/cgcnn/asha.yaml).
DEFAULT_SCHEDULE_EPOCHS = 20
# The cosine ends here rather than at 0, so a trial run past max_epochs (PBT) still learns.
MIN_LR_FRACTION = 0.01
LR_SCHEDULES = ("cosine", "constant")


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str = "cosine") -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based): linear warm-up, then cosine or constant.

    Warm-up rises to 1 at step ``warmup_steps - 1``; the cosine then falls to ``MIN_LR_FRACTION``
    at ``total_steps`` and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _load(options: dict, progress: bool) -> GraphDataset:
    return load_dataset(
        options.get("data"),
        num_structures=options["dataset_size"],
        seed=options["data_seed"],
        radius=options["radius"],
        max_neighbors=options["max_neighbors"],
        gaussian_step=options["gaussian_step"],
        cache_dir=options.get("cache_dir"),
        progress=progress,
        split=options.get("split", "random"),
        target=options.get("target"),
        split_key=options.get("split_key"),
    )


def _process_age_s() -> float:
    """Seconds since this process started (NaN where psutil, which Ray installs, is missing)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    return time.time() - psutil.Process().create_time()


def prepare(options: dict) -> dict[str, Any]:
    """Driver side, before any trial: build (or load) the dataset once and report its baseline."""
    dataset = _load(options, progress=True)
    return {
        "baseline_val_mae": baseline_mae(dataset, "val"),
        "dataset": dataset.source,
        "dataset_sizes": {split: len(idx) for split, idx in dataset.splits.items()},
    }


class CGCNNTrainable(tune.Trainable):
    """CGCNN regressor of adsorption energies; reports ``train_loss``, ``val_mae``, ``test_mae`` (eV).

    Hyperparameters (the trial config): ``lr`` (peak), ``batch_size``, ``atom_embedding_size``,
    ``num_graph_conv_layers``, ``fc_feat_size``, ``num_fc_layers``; optional ``seed`` (0),
    ``weight_decay`` (0: AdamW's decoupled decay), ``warmup_epochs`` (1) and ``lr_schedule``
    ("cosine" or "constant" after warm-up). Fixed ``options`` (data, featurisation, the
    experiment's ``max_epochs``) come from the runner. Every epoch ends with the MAE on the full
    validation and test sets (eval-mode batch norm), the numbers schedulers decide on.
    """

    @oom_guarded
    def setup(self, config: dict, options: dict | None = None) -> None:
        started = time.perf_counter()
        # Seconds from the actor's process start to here (interpreter, imports, Ray worker start-up),
        # reported once with the first result, like the setup time below.
        self.time_actor_start_s = _process_age_s()
        self.options = dict(options or {})
        torch.set_num_threads(max(1, int(self.options.get("cpus_per_trial", 1))))
        # The device Ray assigned (or, outside Ray, the one the caller names), capped at its share.
        placed = trial_device(self.options.get("device"), self.options.get("gpu_share"))
        self.device = placed.device
        memory = cap_gpu_memory(placed)
        # CGCNN trains in fp32 (its scatter sums and normaliser are precision-sensitive); TF32 matmuls
        # on Ampere+ cards only when the option asks (not measured against fp32's val_mae yet).
        self.tf32 = bool(self.options.get("tf32", False)) and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32
        precision = "fp32 with TF32 matmuls" if self.tf32 else "fp32"
        where = f"{placed.source}{'; ' + memory if memory else ''}"
        # Data is loaded once per actor (from the disk cache the driver filled); reset_config
        # reuses it for every later trial this actor runs.
        self.dataset = _load(self.options, progress=False)
        self.data_loads = 1
        train_y = np.array([float(self.dataset.graphs[i].y) for i in self.dataset.splits["train"]])
        self.y_mean, self.y_std = float(train_y.mean()), float(train_y.std() or 1.0)
        self.train_index = self.dataset.splits["train"]
        self.data, residence = self._pack(placed.gpu_share)
        self.baseline_val_mae = baseline_mae(self.dataset, "val")
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        print(f"CGCNNTrainable: device {describe(self.device)} ({where}), {precision}, "
              f"{len(self.dataset.graphs)} graphs from {self.dataset.source}, {residence}", flush=True)
        self._build(config)
        self.time_setup_s = time.perf_counter() - started

    def _pack(self, gpu_share: float) -> tuple[PackedGraphs, str]:
        """The dataset as flat tensors where batches are gathered, and the words for the device line.

        On a GPU they stay there while they take at most ``packed.DEVICE_DATA_FRACTION`` of the
        trial's memory (``gpu_share`` of the card), else in host memory (``choose_residence``).
        """
        graphs = self.dataset.graphs
        memory = trial_memory_bytes(self.device, gpu_share)
        storage, residence = choose_residence(PackedGraphs.estimate_bytes(graphs), self.device, memory)
        data = PackedGraphs(graphs, self.options["radius"], self.options["gaussian_step"], self.device, storage)
        return data, residence

    def _build(self, config: dict) -> None:
        """Model, optimiser and lr schedule for ``config``; the data stays as loaded."""
        self.restored_from = checkpoint_origin.NONE  # (trial, epoch) this model continues from
        self.seed = int(config.get("seed", 0))
        torch.manual_seed(self.seed)
        self.model = CGCNN(
            self.dataset.node_feature_dim,
            self.dataset.edge_feature_dim,
            atom_embedding_size=int(config["atom_embedding_size"]),
            num_graph_conv_layers=int(config["num_graph_conv_layers"]),
            fc_feat_size=int(config["fc_feat_size"]),
            num_fc_layers=int(config["num_fc_layers"]),
        ).to(self.device)
        self.base_lr = float(config["lr"])
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.base_lr, weight_decay=float(config.get("weight_decay", 0.0))
        )
        self.batch_size = int(config["batch_size"])
        self.lr_schedule = str(config.get("lr_schedule", "cosine"))
        if self.lr_schedule not in LR_SCHEDULES:
            raise ModelConfigError(f"lr_schedule {self.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
        self.steps_per_epoch = math.ceil(len(self.train_index) / self.batch_size)
        schedule_epochs = int(self.options.get("max_epochs") or DEFAULT_SCHEDULE_EPOCHS)
        self.total_steps = schedule_epochs * self.steps_per_epoch
        self.warmup_steps = round(float(config.get("warmup_epochs", 1.0)) * self.steps_per_epoch)
        self.epoch = 0

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Training order of ``epoch`` (0-based): a function of (seed, epoch) only, so a restore continues it."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.train_index))

    def _set_lr(self, step: int) -> float:
        lr = self.base_lr * lr_factor(step, self.warmup_steps, self.total_steps, self.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @oom_guarded
    def step(self) -> dict[str, Any]:
        """One epoch of training, then validation and test MAE.

        ``time_train_s`` (batches, their gathering included) and ``time_eval_s`` are this step's own
        seconds: experiments/benchmarks/trial_overhead.py subtracts them from a trial's wall time
        to measure what Ray, setup and checkpoints cost.
        """
        started, started_at = time.perf_counter(), time.time()
        self.model.train()
        # Summed on the device and read once, after the epoch: reading each step's loss would make
        # the host wait for a GPU every step. Float64, like the Python float it replaces.
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        order = self.train_index[self._epoch_order(self.epoch)]
        for k, batch in enumerate(self.data.batches(order, self.batch_size)):
            lr = self._set_lr(self.epoch * self.steps_per_epoch + k)
            total += self.train_batch(batch).double() * batch.num_graphs
            count += batch.num_graphs
        self.epoch += 1
        train_loss = float(total) / count
        trained = time.perf_counter()
        result = {
            "train_loss": train_loss,
            "epoch": self.epoch,
            "lr": lr,  # at the epoch's last step
            "baseline_val_mae": self.baseline_val_mae,
            "node_id": self.node_id,
            "graphs_trained": count,
            # The trial (and epoch) whose checkpoint this model last came from: the PBT donor; "" and 0
            # if none (trainables/checkpoint_origin.py).
            "restored_from_trial": self.restored_from[0],
            "restored_from_epoch": self.restored_from[1],
            "time_train_s": trained - started,
            "step_started_at": started_at,  # Unix time: the gaps between steps are Ray's and Tune's share
            # Setup (or reset_config) and actor start-up seconds, in this trial's first result only.
            "time_setup_s": self.time_setup_s,
            "time_actor_start_s": self.time_actor_start_s,
        }
        self.time_setup_s = self.time_actor_start_s = 0.0
        if not math.isfinite(train_loss):
            # A diverged trial ends itself instead of crashing the experiment.
            return {**result, "val_mae": float("inf"), "test_mae": float("inf"), "diverged": True,
                    "time_eval_s": 0.0, tune.result.DONE: True}
        val_mae, test_mae = self._mae("val"), self._mae("test")
        return {**result, "val_mae": val_mae, "test_mae": test_mae, "diverged": False,
                "time_eval_s": time.perf_counter() - trained}

    def train_batch(self, batch: GraphBatch) -> torch.Tensor:
        """One optimiser step on ``batch`` (from ``self.data``, on the trial's device).

        Returns the loss on normalised targets as a device scalar, not a float: reading it waits for
        the device, so the caller decides when. Public so that ``experiments/probe_batch_size.py``
        times exactly the step training runs.
        """
        target = (batch.y - self.y_mean) / self.y_std
        loss = torch.nn.functional.mse_loss(self.model(batch), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def _mae(self, split: str) -> float:
        self.model.eval()
        indices = self.dataset.splits[split]
        errors = torch.zeros((), dtype=torch.float64, device=self.device)  # read once, at the end
        for batch in self.data.batches(indices, EVAL_BATCH_SIZE):
            pred = self.model(batch) * self.y_std + self.y_mean
            errors += (pred - batch.y).abs().sum().double()
        return float(errors) / len(indices)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # With the trial's config, these determine the rest of the run: the shuffle and the lr
        # schedule are functions of (seed, epoch); Adam's moments and batch-norm statistics are here.
        torch.save(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
             "saved_by": self.trial_id, "restored_from": list(self.restored_from)},
            os.path.join(checkpoint_dir, CHECKPOINT_FILE),
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(os.path.join(checkpoint_dir, CHECKPOINT_FILE), map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # PBT restores a donor's checkpoint into a trial whose config it has just mutated:
        # the optimiser must run with this trial's lr, not the donor's saved one.
        self.base_lr = float(self.config["lr"])
        for group in self.optimizer.param_groups:
            group["weight_decay"] = float(self.config.get("weight_decay", 0.0))
        self.epoch = state["epoch"]
        self.restored_from = checkpoint_origin.origin_after_load(state, self.trial_id, int(self.epoch))
        self._set_lr(self.epoch * self.steps_per_epoch)

    def release_training_state(self) -> None:
        """Drop the optimiser state and gradients (after an out-of-memory error, before a new trial)."""
        self.optimizer = None
        if getattr(self, "model", None) is not None:
            self.model.zero_grad(set_to_none=True)
        free_gpu_memory(self.device)

    def oom_result(self) -> dict[str, Any]:
        """The result of a trial ending on an out-of-memory error (trainables/oom.py): no metric to rank."""
        nan = float("nan")
        return {"val_mae": nan, "test_mae": nan, "train_loss": nan, "epoch": getattr(self, "epoch", 0),
                "baseline_val_mae": getattr(self, "baseline_val_mae", nan), "node_id": getattr(self, "node_id", None)}

    def reset_config(self, new_config: dict) -> bool:
        if not setup_completed(self):  # setup ran out of memory: Ray starts a fresh actor instead
            return False
        started = time.perf_counter()
        # The previous trial's model and optimiser state go before the next is built: cached GPU
        # blocks are returned, so a packed card does not keep the largest trial's memory.
        self.model = None
        self.release_training_state()
        self._build(new_config)
        self.time_actor_start_s, self.time_setup_s = 0.0, time.perf_counter() - started
        return True

    def export_model(self, directory: str, state_dict: dict[str, torch.Tensor] | None = None,
                     config: dict | None = None) -> None:
        """Write the model (``state_dict``'s weights, default the current ones) as a self-contained
        CGCNN file into ``directory`` (trainables/models/cgcnn_io.py): weights, architecture, target
        normaliser, featurisation and atom features. ``config`` is the configuration those weights
        trained with (default the trial's own: a PBT exploit may since have changed the architecture).
        ``hpo_model.json`` is the caller's to write."""
        config = self.config if config is None else config
        from trainables.models.cgcnn_io import save_cgcnn

        save_cgcnn(
            directory,
            self.model.state_dict() if state_dict is None else state_dict,
            {"node_feature_dim": self.dataset.node_feature_dim, "edge_feature_dim": self.dataset.edge_feature_dim,
             **{key: int(config[key]) for key in
                ("atom_embedding_size", "num_graph_conv_layers", "fc_feat_size", "num_fc_layers")}},
            self.y_mean,
            self.y_std,
            {key: self.options[key] for key in ("radius", "max_neighbors", "gaussian_step")},
            _atom_features(self.dataset, self.options),
        )


def _atom_features(dataset: GraphDataset, options: dict) -> np.ndarray:
    """The atom feature table the dataset was featurised with (its own, where the data layer keeps one)."""
    table = getattr(dataset, "atom_table", None)
    if table is not None:
        return np.asarray(table)
    from trainables.data import cif_folder
    from trainables.data.graphs import default_atom_feature_table

    return cif_folder.atom_feature_table(options["data"]) if options.get("data") else default_atom_feature_table()
