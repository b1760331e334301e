"""Ray Tune trainable for CGCNN on adsorption energies (one ``step`` = one epoch)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import ray
import torch
from ray import tune
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from trainables.data import GraphDataset, baseline_mae, load_dataset
from trainables.device import describe, select_device
from trainables.models.cgcnn import CGCNN

CHECKPOINT_FILE = "cgcnn.pt"
EVAL_BATCH_SIZE = 512


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

    Hyperparameters (the trial config): ``lr``, ``batch_size``, ``atom_embedding_size``,
    ``num_graph_conv_layers``, ``fc_feat_size``, ``num_fc_layers``, optional ``seed`` and
    ``weight_decay``. Fixed ``options`` (data, featurisation) come from the runner.
    """

    def setup(self, config: dict, options: dict | None = None) -> None:
        started = time.perf_counter()
        # Seconds from the actor's process start to here (interpreter, imports, Ray worker start-up),
        # reported once with the first result, like the setup time below.
        self.time_actor_start_s = _process_age_s()
        self.options = dict(options or {})
        torch.set_num_threads(max(1, int(self.options.get("cpus_per_trial", 1))))
        self.device = select_device()
        # Data is loaded once per actor (from the disk cache the driver filled); reset_config
        # reuses it for every later trial this actor runs.
        self.dataset = _load(self.options, progress=False)
        self.data_loads = 1
        train_y = np.array([float(self.dataset.graphs[i].y) for i in self.dataset.splits["train"]])
        self.y_mean, self.y_std = float(train_y.mean()), float(train_y.std() or 1.0)
        self.train_graphs = self.dataset.subset("train")
        self.eval_batches = {
            split: [
                Batch.from_data_list(graphs[i : i + EVAL_BATCH_SIZE]).to(self.device)
                for i in range(0, len(graphs), EVAL_BATCH_SIZE)
            ]
            for split, graphs in (("val", self.dataset.subset("val")), ("test", self.dataset.subset("test")))
        }
        self.baseline_val_mae = baseline_mae(self.dataset, "val")
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        print(f"CGCNNTrainable: device {describe(self.device)}, {len(self.dataset.graphs)} graphs "
              f"from {self.dataset.source}", flush=True)
        self._build(config)
        self.time_setup_s = time.perf_counter() - started

    def _build(self, config: dict) -> None:
        """Model, optimiser and loader for ``config``; the data stays as loaded."""
        torch.manual_seed(int(config.get("seed", 0)))
        self.model = CGCNN(
            self.dataset.node_feature_dim,
            self.dataset.edge_feature_dim,
            atom_embedding_size=int(config["atom_embedding_size"]),
            num_graph_conv_layers=int(config["num_graph_conv_layers"]),
            fc_feat_size=int(config["fc_feat_size"]),
            num_fc_layers=int(config["num_fc_layers"]),
        ).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=float(config["lr"]), weight_decay=float(config.get("weight_decay", 0.0))
        )
        self.loader = DataLoader(
            self.train_graphs,
            batch_size=int(config["batch_size"]),
            shuffle=True,
            generator=torch.Generator().manual_seed(int(config.get("seed", 0))),
        )
        self.epoch = 0

    def step(self) -> dict[str, Any]:
        """One epoch of training, then validation and test MAE.

        ``time_train_s`` (batches, collation included) and ``time_eval_s`` are this step's own
        seconds: experiments/benchmarks/trial_overhead.py subtracts them from a trial's wall time
        to measure what Ray, setup and checkpoints cost.
        """
        started, started_at = time.perf_counter(), time.time()
        self.model.train()
        total, count = 0.0, 0
        for batch in self.loader:
            total += self.train_batch(batch) * batch.num_graphs
            count += batch.num_graphs
        self.epoch += 1
        train_loss = total / count
        trained = time.perf_counter()
        result = {
            "train_loss": train_loss,
            "epoch": self.epoch,
            "baseline_val_mae": self.baseline_val_mae,
            "node_id": self.node_id,
            "graphs_trained": count,
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

    def train_batch(self, batch: Batch) -> float:
        """One optimiser step on ``batch`` (a batch of graphs); returns its loss on normalised targets.

        Public so that ``experiments/probe_batch_size.py`` times exactly the step training runs.
        """
        batch = batch.to(self.device)
        target = (batch.y.view(-1) - self.y_mean) / self.y_std
        loss = torch.nn.functional.mse_loss(self.model(batch), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def _mae(self, split: str) -> float:
        self.model.eval()
        errors, count = 0.0, 0
        for batch in self.eval_batches[split]:
            pred = self.model(batch) * self.y_std + self.y_mean
            errors += float((pred - batch.y.view(-1)).abs().sum())
            count += batch.num_graphs
        return errors / count

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch},
            os.path.join(checkpoint_dir, CHECKPOINT_FILE),
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(os.path.join(checkpoint_dir, CHECKPOINT_FILE), map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # PBT restores a donor's checkpoint into a trial whose config it has just mutated:
        # the optimiser must run with this trial's lr, not the donor's saved one.
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.config["lr"])
            group["weight_decay"] = float(self.config.get("weight_decay", 0.0))
        self.epoch = state["epoch"]

    def reset_config(self, new_config: dict) -> bool:
        started = time.perf_counter()
        self._build(new_config)
        self.time_actor_start_s, self.time_setup_s = 0.0, time.perf_counter() - started
        return True
