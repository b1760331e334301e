"""Per-trial overhead on the default CGCNN experiment: the share of trial time spent outside training and evaluation.

Runs the default experiment (``configs/cgcnn/asha.yaml``, ASHA + random search, CGCNN on the
built-in data) through the real runner in three variants, interleaved and repeated:

- ``reuse``: ``reuse_actors: true`` and minimal checkpointing (the suite's default);
- ``no-reuse``: ``reuse_actors: false`` (a new actor, hence a new setup, for every trial);
- ``ckpt-every-epoch``: reuse, plus a checkpoint every epoch (``checkpoint_frequency: 1``).

The trainable reports its own seconds of training (``time_train_s``) and evaluation
(``time_eval_s``) in every result. A trial slot (one CPU here) is busy for the experiment's wall
time (``Tuner.fit``, actor starts included); everything in it that is not training or evaluation
is overhead: actor start, ``setup`` (dataset load), ``reset_config``, checkpoints, result
reporting and scheduling. The figures:

- overhead share = 1 - sum(train + eval) / (slots x wall), where the idle tail (slots with no
  trial left to run while the last trials finish, which no per-trial saving can shorten) is
  taken out of the slot time; the share with the tail left in is printed too;
- in-step share: (Ray's ``time_this_iter_s`` - train - eval) / ``time_this_iter_s``, the cost of
  Ray's own step wrapper and result handling inside the actor;
- where the overhead went: the gaps between a trial's consecutive steps (the trainable stamps
  each step's start: ``step_started_at``), i.e. result reporting, Tune's scheduling and logging
  and checkpoints, and the rest, spent starting trials, with the actor start-up (process start to
  ``setup``, reported as ``time_actor_start_s``) and ``setup`` / ``reset_config`` seconds
  (``time_setup_s``) shown inside it.

Trial starts and results are timed in the driver by a Tune callback added to the runner's own
(``build_callbacks`` is wrapped; nothing else in the runner changes).

    python experiments/benchmarks/trial_overhead.py     # the default experiment, 24 trials x 20 epochs (~8 min)
    python experiments/benchmarks/trial_overhead.py --rounds 3 --num-samples 8 --max-epochs 6      # shorter, repeated
    python experiments/benchmarks/trial_overhead.py --smoke-test
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from experiments.benchmarks.hardware import describe_hardware, median

VARIANTS: dict[str, dict[str, Any]] = {
    "reuse": {"reuse_actors": True, "checkpoint_frequency": 0},
    "no-reuse": {"reuse_actors": False, "checkpoint_frequency": 0},
    "ckpt-every-epoch": {"reuse_actors": True, "checkpoint_frequency": 1},
}


class TrialClock(Callback):
    """Driver-side wall-clock times of each trial's start, results and completion."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.completed: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.completed[trial.trial_id] = time.time()  # the last result ends the trial's useful time


@dataclass
class Overhead:
    """The overhead figures of one experiment."""

    variant: str
    wall_s: float
    slots: int
    busy_s: float  # sum of train + eval seconds over all results
    actor_start_s: float  # sum over actors of process start -> setup (imports, Ray worker start-up)
    setup_s: float  # sum of setup and reset_config seconds
    between_steps_s: float  # sum of gaps between consecutive steps of the same trial
    tail_idle_s: float
    in_step_share: float
    trials: int
    results: int

    @property
    def share(self) -> float:
        """Overhead share of the slot time, idle tail excluded."""
        return 1.0 - self.busy_s / (self.slots * self.wall_s - self.tail_idle_s)

    @property
    def share_with_tail(self) -> float:
        return 1.0 - self.busy_s / (self.slots * self.wall_s)

    @property
    def per_trial_s(self) -> float:
        """Overhead seconds per trial (slot time outside train+eval, idle tail excluded)."""
        return (self.slots * self.wall_s - self.tail_idle_s - self.busy_s) / max(1, self.trials)


def run_variant(variant: str, args: argparse.Namespace, storage: Path, round_: int) -> Overhead:
    """Run the experiment once with ``variant``'s settings and measure its overhead."""
    import experiments.core.runner as runner
    from experiments.analysis.experiment import load_experiment
    from experiments.core.config import resolve_config
    from experiments.core.strategies import STRATEGIES

    flags: dict[str, Any] = {"storage_path": str(storage), "name": f"{variant}_round{round_}", "seed": args.seed}
    flags.update({k: v for k, v in (("num_samples", args.num_samples), ("max_epochs", args.max_epochs)) if v})
    if args.smoke_test:
        flags["smoke_test"] = True
    smoke = STRATEGIES["asha"].smoke
    config = resolve_config("asha", flags, {"search": "random"}, smoke)
    for key, value in VARIANTS[variant].items():
        setattr(config, key, value)
    if args.grace_period is not None:
        config.grace_period = args.grace_period
    if args.dataset_size is not None:
        config.model_options["dataset_size"] = args.dataset_size

    clock = TrialClock()
    original = runner.build_callbacks
    runner.build_callbacks = lambda cfg, exp_dir=None: [*original(cfg, exp_dir), clock]
    try:
        summary = runner.run_experiment(config)
    finally:
        runner.build_callbacks = original
    exp = load_experiment(storage / config.name)

    busy, step, actor_start, setup, between, results = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for history in exp.histories.values():
        busy += float(history["time_train_s"].sum() + history["time_eval_s"].sum())
        step += float(history["time_this_iter_s"].sum())
        actor_start += float(history["time_actor_start_s"].sum()) if "time_actor_start_s" in history else 0.0
        setup += float(history["time_setup_s"].sum()) if "time_setup_s" in history else 0.0
        results += len(history)
        if "step_started_at" in history and len(history) > 1:
            ordered = history.sort_values("step_started_at")
            ends = ordered["step_started_at"] + ordered["time_train_s"] + ordered["time_eval_s"]
            between += float((ordered["step_started_at"].to_numpy()[1:] - ends.to_numpy()[:-1]).sum())
    wall = float(summary["wall_time_s"])
    start = float(summary["start_time"])
    slots = max(1, min(config.num_samples, int(args.cpus // config.cpus_per_trial)))
    ends = sorted(clock.completed.values())
    tail = sum(max(0.0, wall - (end - start)) for end in ends[-slots:])
    return Overhead(variant, wall, slots, busy, actor_start, setup, between, tail,
                    (step - busy) / step if step else float("nan"), len(summary["trials"]), results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-samples", type=int, help="trials per experiment (default: the config's, 24)")
    parser.add_argument("--max-epochs", type=int, help="epochs per trial at most (default: the config's, 20)")
    parser.add_argument("--grace-period", type=int, help="ASHA grace period (default: the config's)")
    parser.add_argument("--dataset-size", type=int, help="built-in dataset size (default: the config's)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all variants")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, help="CPUs Ray has (default: this machine's; sets the slot count)")
    parser.add_argument("--storage-path", help="where the experiments go (default: a temporary folder)")
    parser.add_argument("--smoke-test", action="store_true", help="the runner's smoke sizes, one round")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.num_samples, args.max_epochs, args.rounds = 4, 2, 1
    args.cpus = args.cpus or os.cpu_count() or 1

    print(describe_hardware(torch_threads=1))
    sizes = f"{args.num_samples or 'its'} trials x {args.max_epochs or 'its'} epochs"
    print(f"configs/cgcnn/asha.yaml with {sizes}, "
          f"{args.rounds} round(s) of {', '.join(args.variants)}", flush=True)
    measured: dict[str, list[Overhead]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="trial_overhead_") as tmp:
        storage = Path(args.storage_path or tmp).resolve()
        for round_ in range(args.rounds):
            for variant in args.variants:
                o = run_variant(variant, args, storage, round_)
                measured[variant].append(o)
                print(f"round {round_ + 1} {variant}: wall {o.wall_s:.1f} s x {o.slots} slots, train+eval "
                      f"{o.busy_s:.1f} s over {o.results} results of {o.trials} trials, idle tail "
                      f"{o.tail_idle_s:.1f} s; overhead {100 * o.share:.1f} % ({100 * o.share_with_tail:.1f} % "
                      f"with the tail), {o.per_trial_s:.2f} s per trial, in-step {100 * o.in_step_share:.2f} %",
                      flush=True)
                starts = o.slots * o.wall_s - o.tail_idle_s - o.busy_s - o.between_steps_s
                print(f"  where it went (s, all trials): between a trial's steps (result reporting, Tune's "
                      f"scheduling and logging, checkpoints) {o.between_steps_s:.1f}; trial starts {starts:.1f}, "
                      f"of which actor start-up (process start to setup) {o.actor_start_s:.1f} and setup / "
                      f"reset_config {o.setup_s:.1f}; overhead without actor start-up "
                      f"{100 * (1 - o.busy_s / (o.slots * o.wall_s - o.tail_idle_s - o.actor_start_s)):.1f} %",
                      flush=True)
    for variant, runs in measured.items():
        share = median([o.share for o in runs])
        tail = median([o.share_with_tail for o in runs])
        target = " (target <= 5 %)" if variant == "reuse" else ""
        per_trial = median([o.per_trial_s for o in runs])
        print(f"OVERHEAD {variant}: {100 * share:.1f} % of trial time outside train+eval{target}; "
              f"{100 * tail:.1f} % with the idle tail; {per_trial:.2f} s per trial; median of {len(runs)}")
    if "reuse" in measured:
        base = median([o.per_trial_s for o in measured["reuse"]])
        for variant in measured:
            if variant != "reuse" and base > 0:
                other = median([o.per_trial_s for o in measured[variant]])
                print(f"RATIO overhead seconds per trial, {variant} / reuse: {other / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
