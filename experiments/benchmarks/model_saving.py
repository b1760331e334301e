"""What keeping the best model during a CGCNN run would cost: seconds per save, summed over a run.

Times, in this process on the CPU, for CGCNN models of the default space (``cgcnn_default``: fc 64 x 2
fixed; the smallest, a middle and the largest atom_embedding_size / num_graph_conv_layers):

- ``checkpoint``: the trainable's own ``save_checkpoint`` (weights, Adam state, epoch), what a
  checkpoint at each trial's end (``checkpoint_at_end``) writes;
- ``model folder``: ``export_model`` + ``hpo_model.json``, the best_model/ folder that each
  checkpoint of a run that keeps its model holds beside it (experiments/core/best_model.py).

and projects the summed seconds for the default experiment (24 trials, 248 epochs in the README's
run): one save per trial (at its end) and one per epoch (a save whenever a result could be the
best), as a share of that experiment's wall time (``--wall-time-s``, or a ``--summary`` file's).

    python experiments/benchmarks/model_saving.py
    python experiments/benchmarks/model_saving.py --summary results/<name>/summary.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from trainables.model_folder import write_info
from trainables.registry import MODELS, bind_options

SIZES = ((4, 1), (16, 3), (64, 8))  # (atom_embedding_size, num_graph_conv_layers) of cgcnn_default
DEFAULT_TRIALS, DEFAULT_EPOCHS, DEFAULT_WALL_S = 24, 248, 1303.0  # README: the default run on 2 CPUs


def _median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _time_saves(trainable, repeats: int) -> tuple[float, float]:
    """Median seconds of the trainable's checkpoint and of the model folder."""
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = _median_seconds(lambda: trainable.save_checkpoint(scratch), repeats)
        state = {k: v.detach().clone() for k, v in trainable.model.state_dict().items()}

        def folder() -> None:
            trainable.export_model(str(Path(scratch) / "model"), state)
            write_info(Path(scratch) / "model", {"model": "cgcnn"})

        return checkpoint, _median_seconds(folder, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dataset-size", type=int, default=240, help="built-in structures (model size does not "
                                                                       "depend on it)")
    parser.add_argument("--wall-time-s", type=float, default=DEFAULT_WALL_S)
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs trained in the whole run")
    parser.add_argument("--summary", help="a summary.json: its wall time, trials and epochs instead")
    args = parser.parse_args(argv)
    wall, trials, epochs = args.wall_time_s, args.trials, args.epochs
    if args.summary:
        summary = json.loads(Path(args.summary).read_text())
        wall, trials = summary["wall_time_s"], summary["num_trials"]
        epochs = sum(int(t.get("iteration") or 0) for t in summary["trials"])
    import torch

    spec = MODELS["cgcnn"]
    options = {**spec.options, "dataset_size": args.dataset_size, "cpus_per_trial": 1, "max_epochs": 20}
    spec.load_prepare()(options)
    print(f"torch {torch.__version__}, 1 thread; default experiment: {trials} trials, {epochs} epochs, "
          f"wall {wall:.0f} s")
    print(f"{'model (emb, convs)':<20}{'checkpoint':>12}{'model folder':>14}"
          f"{'per trial':>12}{'share':>8}{'per epoch':>12}{'share':>8}")
    for embedding, convs in SIZES:
        config = {"lr": 1e-3, "batch_size": 32, "fc_feat_size": 64, "num_fc_layers": 2,
                  "atom_embedding_size": embedding, "num_graph_conv_layers": convs, "seed": 0}
        trainable = bind_options(spec.load_trainable(), options)(config)
        trainable.step()  # Adam's moments exist, as in any checkpoint after the first epoch
        checkpoint, model_folder = _time_saves(trainable, args.repeats)
        per_save = checkpoint + model_folder
        name = f"({embedding}, {convs})"
        print(f"{name:<20}{checkpoint * 1e3:>10.2f}ms{model_folder * 1e3:>12.2f}ms"
              f"{per_save * trials:>11.2f}s{100 * per_save * trials / wall:>7.2f}%"
              f"{per_save * epochs:>11.2f}s{100 * per_save * epochs / wall:>7.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
