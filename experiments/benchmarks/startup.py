"""Time to first result: where the default experiment's fixed cost goes, against the in-process floor.

Each round runs, one after the other, in fresh processes:

- **ray**: the default experiment (``python experiments/run_asha.py``: CGCNN, the built-in data,
  ``cgcnn_default``, two concurrent one-CPU trials) cut to ``--num-samples 2 --max-epochs 2``; the
  runner's start-up marks (``summary.json`` -> ``startup``) give the breakdown from the process
  launch to the first result the driver sees;
- **floor**: the same trainable class, with the configuration that produced that first result,
  run in one process without Ray: import the trainable, the model's ``prepare`` (the cached data),
  ``setup``, one ``train()``. Nothing a tuner adds can make a first result come sooner.

The ratio (ray / floor, both from their own process launch) is taken per round, then the
median over rounds; every phase is shown as its median too. The dataset cache is built before
the first round, so neither side pays for it.

    python experiments/benchmarks/startup.py              # 3 rounds (~2 min on 2 cores)
    python experiments/benchmarks/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: the repository's packages first
    sys.path.insert(0, str(REPO))

from experiments.benchmarks.hardware import describe_hardware, median  # noqa: E402
from experiments.core.startup import PHASES  # noqa: E402

# Two epochs: ASHA refuses a grace period equal to max_epochs (it would never stop a trial); only the
# first result is timed.
RAY_ARGS = ("--num-samples", "2", "--max-epochs", "2", "--grace-period", "1")


def run_ray_round(storage: Path, round_index: int) -> dict[str, Any]:
    """One real ``run_asha.py`` run; its ``startup`` marks and the first result's trial config."""
    name = f"startup-{round_index}"
    cmd = [sys.executable, str(REPO / "experiments" / "run_asha.py"), *RAY_ARGS,
           "--storage-path", str(storage), "--name", name]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    summary = json.loads((storage / name / "summary.json").read_text())
    startup = summary.get("startup") or {}
    trial_id = startup.get("first_trial_id")
    params = [p for p in (storage / name).glob("*/params.json") if trial_id and trial_id in p.parent.name]
    if not params:
        raise SystemExit(f"error: no params.json for the first trial ({trial_id}) under {storage / name}")
    return {"startup": startup, "config": json.loads(params[0].read_text())}


def run_floor_round(config: dict[str, Any]) -> dict[str, float]:
    """The in-process floor, in a fresh interpreter (this script with ``--floor``)."""
    cmd = [sys.executable, __file__, "--floor", json.dumps(config)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"error: the in-process floor exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def floor(config: dict[str, Any]) -> dict[str, float]:
    """Launch -> first ``train()`` result of the default model's trainable, in this process, no Ray."""
    import psutil

    launch = psutil.Process().create_time()
    from experiments.core.config import resolve_config
    from experiments.core.runner import STRATEGIES, trial_options
    from trainables.registry import bind_options

    experiment = resolve_config("asha", {}, {}, STRATEGIES["asha"].smoke)
    spec = experiment.model_spec
    trainable_class = spec.load_trainable()
    imported = time.time()
    options = trial_options(experiment)
    spec.load_prepare()(options)
    prepared = time.time()

    trainable = bind_options(trainable_class, options)(config=config)
    set_up = time.time()
    trainable.train()
    done = time.time()
    trainable.stop()
    return {"imports_s": imported - launch, "prepare_s": prepared - imported, "setup_s": set_up - prepared,
            "first_step_s": done - set_up, "first_result_at_s": done - launch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (the median is reported)")
    parser.add_argument("--floor", metavar="CONFIG_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor is not None:
        print(json.dumps(floor(json.loads(args.floor))))
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    print(describe_hardware())
    rays, floors, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="hpo-startup-") as tmp:
        run_ray_round(Path(tmp), -1)  # warm-up: builds the dataset cache and the OS file cache
        for r in range(args.rounds):
            ray_round = run_ray_round(Path(tmp), r)
            floor_round = run_floor_round(ray_round["config"])
            rays.append(ray_round["startup"])
            floors.append(floor_round)
            ratios.append(ray_round["startup"]["first_result_at_s"] / floor_round["first_result_at_s"])
            print(f"round {r + 1}: first result {ray_round['startup']['first_result_at_s']:.1f} s with Ray, "
                  f"{floor_round['first_result_at_s']:.1f} s in-process ({ratios[-1]:.2f}x)")

    print(f"\nTime to first result, median of {args.rounds} round(s), seconds (python experiments/run_asha.py "
          f"{' '.join(RAY_ARGS)}):\n")
    print("| phase | seconds | what it covers |\n|---|---:|---|")
    for phase, what in PHASES:
        values = [r[f"{phase}_s"] for r in rays if f"{phase}_s" in r]
        shown = f"{median(values):.2f}" if values else "n/a"
        print(f"| {phase} | {shown} | {what} |")
    print(f"| **first result seen by the driver** | **{median([r['first_result_at_s'] for r in rays]):.2f}** "
          f"| from the process launch |")
    print("\nIn-process floor (same trainable class and configuration, no Ray):\n")
    print("| phase | seconds |\n|---|---:|")
    for key in ("imports_s", "prepare_s", "setup_s", "first_step_s"):
        print(f"| {key[:-2]} | {median([f[key] for f in floors]):.2f} |")
    print(f"| **first result** | **{median([f['first_result_at_s'] for f in floors]):.2f}** |")
    print(f"\nratio (Ray / in-process), median of per-round ratios: {median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
