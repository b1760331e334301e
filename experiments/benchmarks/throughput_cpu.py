"""CPU training throughput of CGCNN: old vs new input path, two concurrent 1-CPU trials vs one, an epoch's profile.

Input paths (issue 30): the trainable's own ``step`` (batches gathered from flat tensors,
trainables/data/packed.py) against the input path it replaced (``Batch.from_data_list`` per step, a
float read per step), kept as the reference in experiments/benchmarks/cgcnn_input.py. Both train
the same configuration with one torch thread in this process, epochs interleaved; epoch time is
training plus evaluation, the figure the median of the per-round ratios (target <= 0.7x).

Each "trial" is the suite's own ``CGCNNTrainable`` (setup, then ``step`` = one epoch of training
and evaluation) in its own process with one torch thread, as a 1-CPU Ray trial runs it. Throughput
is training graphs per second from the trainable's own ``graphs_trained`` and ``time_train_s``;
the aggregate of N concurrent trials is the sum over them (they start together at a barrier and
run the same epochs). Single and pair measurements are interleaved and repeated, and the
figure is the median of the per-round ratios, because other work on a shared machine moves both.
Each trial also reports its CPU share (CPU seconds / wall seconds): on a machine other work
loads, two trials may get less than two cores, so the script prints the ratio per CPU-second
received too (x2: what two trials would give on two free cores).

The profile runs ``step`` under cProfile (after a warm-up epoch) and splits the epoch into
batch gathering (packed data), forward, backward, optimiser step and evaluation, and compares it
with the one-off featurisation + dataset load that ``setup`` does per actor. cProfile adds a
per-call cost that falls mostly on the Python-heavy parts, so its shares overstate them slightly.

    python experiments/benchmarks/throughput_cpu.py                   # 2,000 graphs, all parts (~6 min on 2 cores)
    python experiments/benchmarks/throughput_cpu.py --parts paths     # old vs new input path only
    python experiments/benchmarks/throughput_cpu.py --smoke-test
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import pstats
import sys
import time
from typing import Any

from experiments.benchmarks.cgcnn_input import compare_paths, format_paths, local_trainable
from experiments.benchmarks.hardware import describe_hardware, format_ratios

PARTS = ("paths", "concurrency", "profile")
# A mid-sized configuration of the cgcnn_default space (its centre on every axis).
CONFIG = {"lr": 3e-3, "batch_size": 32, "atom_embedding_size": 16, "num_graph_conv_layers": 2,
          "fc_feat_size": 32, "num_fc_layers": 2, "seed": 0}


def dataset_options(dataset_size: int, cache_dir: str | None) -> dict[str, Any]:
    """The CGCNN model options the runner would pass (built-in data of ``dataset_size`` structures)."""
    from experiments.core.config import default_cache_dir
    from trainables.registry import MODELS

    options = dict(MODELS["cgcnn"].options)
    options.update(dataset_size=dataset_size, cache_dir=cache_dir or default_cache_dir(), cpus_per_trial=1)
    return options


def _trial_process(options: dict[str, Any], config: dict[str, Any], epochs: int, barrier: Any, out: Any) -> None:
    """One 1-CPU trial: setup, wait for the others, ``epochs`` steps; sends (graphs, train seconds)."""
    trainable = local_trainable(options, config)
    if str(options.get("device") or "cpu").startswith("cuda"):
        trainable.step()  # untimed: CUDA's lazy initialisation and kernel loading (throughput_gpu.py)
    barrier.wait()
    graphs, seconds = 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        result = trainable.step()
        graphs += result["graphs_trained"]
        seconds += result["time_train_s"]
    out.put((graphs, seconds, (time.process_time() - cpu) / (time.perf_counter() - wall)))
    trainable.stop()


def measure(options: dict[str, Any], concurrent: int, epochs: int,
            config: dict[str, Any] | None = None) -> tuple[float, float]:
    """Aggregate training graphs/s of ``concurrent`` trials running at once, and their mean CPU share.

    The CPU share (process CPU seconds / wall seconds while stepping) is 1.0 for a trial that had
    its core to itself; on a machine other work loads, it says how much of a core each trial got.
    """
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(concurrent), ctx.Queue()
    procs = [ctx.Process(target=_trial_process, args=(options, config or CONFIG, epochs, barrier, out))
             for _ in range(concurrent)]
    for proc in procs:
        proc.start()
    reports = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f"a trial process failed (exit {proc.exitcode})")
    return sum(graphs / seconds for graphs, seconds, _ in reports), sum(r[2] for r in reports) / len(reports)


# (label, file suffix, function name) of the parts of an epoch the profile reports.
PROFILE_PARTS = (
    ("batch gathering (packed data, training and evaluation)", "trainables/data/packed.py", "_gather"),
    ("train_batch (forward, loss, backward, optimiser)", "trainables/cgcnn.py", "train_batch"),
    ("  backward", "torch/_tensor.py", "backward"),
    ("  optimiser step (Adam)", "torch/optim/adam.py", "step"),
    ("evaluation (val + test MAE)", "trainables/cgcnn.py", "_mae"),
)


def profile_epoch(options: dict[str, Any]) -> list[tuple[str, float]]:
    """Seconds per part of one epoch (``step``) under cProfile, plus setup's dataset load."""
    import torch

    from trainables.cgcnn import _load

    torch.set_num_threads(1)
    start = time.perf_counter()
    _load(options, progress=False)  # what setup pays once per actor: read the cache, featurise
    load_s = time.perf_counter() - start
    trainable = local_trainable(options, CONFIG)
    trainable.step()  # warm-up
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    trainable.step()
    profiler.disable()
    epoch_s = time.perf_counter() - start
    trainable.stop()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    parts = [("epoch (step: train + eval)", epoch_s)]
    for label, suffix, name in PROFILE_PARTS:
        cumulative = sum(v[3] for (file, _, func), v in stats.items()
                         if func == name and file.replace("\\", "/").endswith(suffix))
        parts.append((label, cumulative))
    train = dict(parts)["train_batch (forward, loss, backward, optimiser)"]
    backward = dict(parts)["  backward"]
    optimiser = dict(parts)["  optimiser step (Adam)"]
    parts.insert(3, ("  forward + loss + zero_grad (train_batch minus the two below)", train - backward - optimiser))
    parts.append(("dataset load + featurisation (once per actor, in setup)", load_s))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset-size", type=int, default=2000, help="built-in dataset size (structures)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved (single, pair) rounds")
    parser.add_argument("--cache-dir", help="dataset cache (default $HPO_SUITE_CACHE or ~/.cache/hpo-suite)")
    parser.add_argument("--path-rounds", type=int, default=5, help="interleaved (old, new) input-path epochs")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--smoke-test", action="store_true", help="240 structures, 1 epoch, 1 round")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.dataset_size, args.epochs, args.rounds, args.path_rounds = 240, 1, 1, 1
    options = dataset_options(args.dataset_size, args.cache_dir)
    from trainables.cgcnn import prepare

    prepare(options)  # build the cache once, in this process, as the runner's driver does
    print(describe_hardware(torch_threads=1))
    print(f"config {CONFIG}, {args.dataset_size} structures, {args.epochs} epoch(s) per measurement, "
          f"{args.rounds} round(s)", flush=True)
    if "paths" in args.parts:
        import torch

        torch.set_num_threads(1)
        print(f"input paths: {args.path_rounds} epoch(s) each, interleaved, one torch thread, after a warm-up epoch",
              flush=True)
        for line in format_paths(compare_paths(options, CONFIG, args.path_rounds)):
            print(line, flush=True)
        print("  (target: new / old epoch time <= 0.70x)")
    if "concurrency" in args.parts:
        measure_concurrency(options, args.epochs, args.rounds)
    if "profile" in args.parts:
        report_profile(options)
    return 0


def measure_concurrency(options: dict[str, Any], epochs: int, rounds: int) -> None:
    """Print the (one trial, two concurrent trials) rounds and their ratios."""
    ratios, per_cpu = [], []
    for round_ in range(rounds):
        single, single_share = measure(options, 1, epochs)
        pair, pair_share = measure(options, 2, epochs)
        ratios.append(pair / single)
        # Graphs per CPU-second: equal for one and two trials means the code itself scales, and
        # the wall-clock ratio is set by how much CPU the machine gave the trials.
        per_cpu.append(2 * (pair / (2 * pair_share)) / (single / single_share))
        print(f"round {round_ + 1}: one trial {single:.0f} graphs/s ({single_share:.2f} of a core), two "
              f"concurrent trials {pair:.0f} graphs/s in sum ({pair_share:.2f} of a core each), ratio "
              f"{pair / single:.2f}x", flush=True)
    print(f"RATIO two concurrent 1-CPU trials / one trial (training graphs/s): {format_ratios(ratios)} "
          f"(target >= 1.8x)")
    print(f"RATIO the same per CPU-second received, x2 (two trials on two free cores): {format_ratios(per_cpu)}")


def report_profile(options: dict[str, Any]) -> None:
    """Print where one epoch's time goes."""
    parts = profile_epoch(options)
    epoch_s = parts[0][1]
    print("profile of one epoch (cProfile, 1 torch thread):")
    for label, seconds in parts:
        print(f"  {label:<70s} {seconds:8.3f} s  {100 * seconds / epoch_s:5.1f} % of the epoch")
    loading = dict(parts)["batch gathering (packed data, training and evaluation)"]
    print(f"RATIO batch gathering / epoch: {loading / epoch_s:.3f} (target: never dominant, < 0.5)")


if __name__ == "__main__":
    sys.exit(main())
