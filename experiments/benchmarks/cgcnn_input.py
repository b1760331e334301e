"""CGCNN's training path as it was before issue 30, kept only as the reference benchmarks and tests compare with.

Training now gathers batches from flat tensors on the trial's device (trainables/data/packed.py).
Before, each training step collated its batch on the host from Python ``Data`` objects
(``Batch.from_data_list``), copied it with a blocking ``.to`` and read its loss with ``float`` (a
device-host synchronisation per step); evaluation batches were collated once per actor and kept on
the device with their 41 Gaussian features per edge; and each convolution multiplied the
concatenation ``[v_i, v_j, u_ij]`` per edge by ``fc_full`` (:func:`concatenated_conv`), where it
now projects the atom terms per atom. :class:`ReferencePath` runs epochs that way on a
``CGCNNTrainable``'s own model, optimiser and lr schedule, so both paths can be timed on one
configuration in one process (experiments/benchmarks/throughput_cpu.py, throughput_gpu.py) and
their metrics compared (tests/test_cgcnn_trainable.py).

    paths = compare_paths(options, config, rounds=5)    # {"old": [...], "new": [...]}: per-epoch records
"""

from __future__ import annotations

import time
from typing import Any

EVAL_BATCH_SIZE = 512  # trainables.cgcnn.EVAL_BATCH_SIZE when the old path was current


def concatenated_conv(conv: Any, x: Any, edge_index: Any, edge_attr: Any) -> Any:
    """``CGCNNConv.forward`` as it was: ``fc_full`` on ``[v_i, v_j, u_ij]`` per edge, summed by a scatter."""
    import torch
    from torch_geometric.utils import scatter

    neighbour, centre = edge_index
    gated = conv.bn1(conv.fc_full(torch.cat([x.index_select(0, centre), x.index_select(0, neighbour), edge_attr], -1)))
    gate, core = gated.chunk(2, dim=-1)
    messages = torch.sigmoid(gate) * torch.nn.functional.softplus(core)
    summed = scatter(messages, centre, 0, dim_size=x.shape[0], reduce="sum")
    return torch.nn.functional.softplus(x + conv.bn2(summed))


class ReferencePath:
    """Epochs of ``trainable`` (a set-up ``CGCNNTrainable``) through the old path.

    ``old_convolution``: its convolutions compute as they did (:func:`concatenated_conv`); False
    keeps today's, so only the input path differs.
    """

    def __init__(self, trainable: Any, old_convolution: bool = True) -> None:
        from types import MethodType

        from torch_geometric.data import Batch

        self.trainable = trainable
        if old_convolution:
            for conv in trainable.model.convs:
                conv.forward = MethodType(concatenated_conv, conv)
        self.train_graphs = trainable.dataset.subset("train")
        # Collated once, as the old setup did, and kept on the device.
        self.eval_batches = {
            split: [Batch.from_data_list(graphs[i : i + EVAL_BATCH_SIZE]).to(trainable.device)
                    for i in range(0, len(graphs), EVAL_BATCH_SIZE)]
            for split, graphs in (("val", trainable.dataset.subset("val")), ("test", trainable.dataset.subset("test")))
        }

    def step(self) -> dict[str, Any]:
        """One epoch of training, then validation and test MAE; the fields of ``CGCNNTrainable.step`` it times."""
        import torch
        from torch_geometric.data import Batch

        t = self.trainable
        started = time.perf_counter()
        t.model.train()
        total, count = 0.0, 0
        order = t._epoch_order(t.epoch)
        for k, start in enumerate(range(0, len(order), t.batch_size)):
            lr = t._set_lr(t.epoch * t.steps_per_epoch + k)
            batch = Batch.from_data_list([self.train_graphs[i] for i in order[start : start + t.batch_size]])
            batch = batch.to(t.device)
            target = (batch.y.view(-1) - t.y_mean) / t.y_std
            loss = torch.nn.functional.mse_loss(t.model(batch), target)
            t.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t.optimizer.step()
            total += float(loss.detach()) * batch.num_graphs
            count += batch.num_graphs
        t.epoch += 1
        trained = time.perf_counter()
        result = {"train_loss": total / count, "epoch": t.epoch, "lr": lr, "graphs_trained": count,
                  "time_train_s": trained - started}
        t.model.eval()
        with torch.no_grad():
            for split, batches in self.eval_batches.items():
                errors, graphs = 0.0, 0
                for batch in batches:
                    pred = t.model(batch) * t.y_std + t.y_mean
                    errors += float((pred - batch.y.view(-1)).abs().sum())
                    graphs += batch.num_graphs
                result[f"{split}_mae"] = errors / graphs
        result["time_eval_s"] = time.perf_counter() - trained
        return result


def local_trainable(options: dict[str, Any], config: dict[str, Any]) -> Any:
    """A ``CGCNNTrainable`` outside Ray, with ``options`` bound as ``tune.with_parameters`` binds them."""
    from trainables.cgcnn import CGCNNTrainable
    from trainables.registry import bind_options

    return bind_options(CGCNNTrainable, options)(dict(config))


def compare_paths(options: dict[str, Any], config: dict[str, Any], rounds: int,
                  warmup: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch results of the old and the new input path, ``rounds`` epochs each, interleaved.

    Two trainables of ``config`` (same seed, so the same weights and data order): one steps
    through ``ReferencePath``, the other through its own ``step``. ``warmup`` epochs of each
    first, untimed (allocator and kernel caches). Each record has ``time_train_s``,
    ``time_eval_s``, ``graphs_trained`` and ``cpu_s``, the process's CPU seconds in the epoch: on
    a machine other work loads, wall time includes waiting for a core and CPU time does not.
    """
    old_trainable, new = local_trainable(options, config), local_trainable(options, config)
    old = ReferencePath(old_trainable)
    records: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    try:
        for _ in range(warmup):
            old.step()
            new.step()
        for _ in range(rounds):
            for path, trainable in (("old", old), ("new", new)):
                cpu = time.process_time()
                result = trainable.step()
                records[path].append({**result, "cpu_s": time.process_time() - cpu})
    finally:
        old_trainable.stop()
        new.stop()
    return records


def epoch_seconds(record: dict[str, Any]) -> float:
    """An epoch's training plus evaluation seconds."""
    return record["time_train_s"] + record["time_eval_s"]


def format_paths(records: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Lines: median epoch seconds and training graphs/s per path, and the per-round ratio new / old."""
    from experiments.benchmarks.hardware import format_ratios, median

    lines = []
    for path, label in (("old", "old path (Batch.from_data_list per step)"), ("new", "new path (packed data)")):
        runs = records[path]
        rate = median([r["graphs_trained"] / r["time_train_s"] for r in runs])
        train, evaluate = median([r["time_train_s"] for r in runs]), median([r["time_eval_s"] for r in runs])
        lines.append(f"THROUGHPUT {label}: epoch {median([epoch_seconds(r) for r in runs]):.3f} s (train "
                     f"{train:.3f} s + eval {evaluate:.3f} s; CPU {median([r['cpu_s'] for r in runs]):.3f} s), "
                     f"{rate:.0f} training graphs/s")
    pairs = list(zip(records["old"], records["new"], strict=True))
    wall = [epoch_seconds(n) / epoch_seconds(o) for o, n in pairs]
    lines.append(f"RATIO new / old path, epoch time: {format_ratios(wall)}")
    lines.append(f"RATIO new / old path, epoch CPU time: {format_ratios([n['cpu_s'] / o['cpu_s'] for o, n in pairs])}")
    return lines
