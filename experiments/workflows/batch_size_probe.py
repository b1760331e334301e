"""Find the batch size to fix before tuning (the Tuning Playbook's first step).

``python experiments/probe_batch_size.py --model {cgcnn,roberta_rte} [model options]`` builds the
model, optimiser and batches with the model's own trainable (``trainables/<model>.py``, the same
data loading, model building and ``train_batch`` step a trial runs), on the device a trial would
get: the GPU if there is one and ``--gpus-per-trial`` is above 0, else the CPU with
``--cpus-per-trial`` threads. From ``--start`` it doubles the batch size and times at least
``--steps`` training steps and ``--min-seconds`` at each (after ``--warmup-steps`` untimed ones;
throughput is the batch size over the median step time), until

- the step runs out of memory: on a GPU a real CUDA out-of-memory error inside
  ``--gpus-per-trial`` of the card's memory (the process is capped there, so 0.25 probes what a
  quarter-GPU trial has), caught and freed; on the CPU the memory budget ``--memory-budget-mb``
  (measured, or predicted for the next doubling from the last two rows);
- throughput (examples per second) has not improved by more than ``--margin`` over the best so
  far for ``--patience`` doublings;
- the batch would exceed the training set or ``--max-batch-size``.

Memory is measured as: on a GPU, ``torch.cuda.max_memory_allocated`` (weights, optimiser state,
gradients and activations: all the trial's tensors); on the CPU, the peak resident set size of
this process during the steps (the kernel's high-water mark, reset before each batch size through
``/proc/self/clear_refs``; a 2 ms RSS sampler where that is unavailable) minus the resident size
before the first step, i.e. the optimiser state, gradients and activations on top of the loaded
data and model.

The recommendation is the largest batch size before throughput stops improving by more than the
margin (:func:`recommend`); batch sizes that ran out of memory never count. It is printed with the
table and written to ``--output`` as YAML (``batch_size: N``, the table as comments), a mapping
``run_two_stage.py --hyperparameters`` reads and a search space's ``constants`` can take.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.core.config import CONFIGS_DIR, ConfigError, default_cache_dir, read_yaml_config, resolve_config
from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.workflows.process_memory import CPUPeakMemory, release_cpu_memory, rss_bytes
from trainables.registry import MODELS

MIB = 1024 * 1024


@dataclass
class ProbeRow:
    """One batch size: its throughput and peak memory, or why it did not fit (``status``)."""

    batch_size: int
    examples_per_s: float | None
    peak_memory_mb: float | None
    status: str = "ok"  # "ok", "out of memory" (CUDA) or "over budget" (the CPU memory budget)

    @property
    def fits(self) -> bool:
        return self.status == "ok"


@dataclass
class Recommendation:
    """The batch size to fix, with the row it comes from and a one-line reason."""

    batch_size: int
    row: ProbeRow
    reason: str


def recommend(rows: list[ProbeRow], margin: float = 0.05, patience: int = 1) -> Recommendation | None:
    """The largest batch size before throughput stops improving by more than ``margin``.

    Rows are taken in increasing batch size; only those that fit count. A row improves when its
    throughput exceeds the best so far by more than ``margin`` (0.05: 5 %); it then becomes the
    best. The walk ends after ``patience`` rows in a row that do not improve (the point where the
    probe stops doubling), so a later, noisy gain does not count. None when no row fits.
    """
    best: ProbeRow | None = None
    misses = 0
    for row in sorted((r for r in rows if r.fits), key=lambda r: r.batch_size):
        if best is None or row.examples_per_s > best.examples_per_s * (1 + margin):
            best, misses = row, 0
            continue
        misses += 1
        if misses >= patience:
            break
    if best is None:
        return None
    larger = [r for r in rows if r.batch_size > best.batch_size]
    if not larger:
        reason = "the largest batch size probed"
    elif all(not r.fits for r in larger):
        reason = f"the next doubling ran {larger[0].status}"
    else:
        reason = f"larger batch sizes gave at most {margin:.0%} more examples/s"
    return Recommendation(best.batch_size, best, reason)


def throughput_stalled(rows: list[ProbeRow], margin: float, patience: int) -> bool:
    """Whether the last ``patience`` fitting rows all failed to improve on the recommendation."""
    chosen = recommend(rows, margin, patience)
    return chosen is not None and sum(1 for r in rows if r.fits and r.batch_size > chosen.batch_size) >= patience


# --- the model's own training step ----------------------------------------------------------------

class ModelProbe:
    """A trial's trainable, built in this process, stepping on batches of a given size."""

    def __init__(self, model: str, options: dict[str, Any], hyperparameters: dict[str, Any], seed: int = 0) -> None:
        spec = MODELS[model]
        base = spec.load_trainable()

        class Bound(base):  # the options bound as tune.with_parameters does, without Ray
            def setup(self, config: dict) -> None:
                super().setup(config, options)

        self.model = model
        self.hyperparameters = dict(hyperparameters)
        self.rng = np.random.default_rng(seed)
        try:
            self.trainable = Bound(dict(self.hyperparameters))
        except (ValueError, TypeError) as err:  # a hyperparameter the trainable refuses
            raise ConfigError(f"hyperparameters: {err}") from None
        except KeyError as err:  # one the model needs and the hyperparameters lack
            raise ConfigError(f"hyperparameters lack {err}, which {model} needs (see --hyperparameters)") from None
        self.device = self.trainable.device

    def config(self, batch_size: int) -> dict[str, Any]:
        return {**self.hyperparameters, "batch_size": batch_size}

    @property
    def train_size(self) -> int:
        if self.model == "cgcnn":
            return len(self.trainable.train_index)
        return len(self.trainable.train_split)

    def rebuild(self, batch_size: int) -> None:
        """Fresh model and optimiser for ``batch_size`` (the trainable's own reset_config)."""
        self.trainable.reset_config(self.config(batch_size))

    def make_batch(self, batch_size: int) -> Any:
        """``batch_size`` random training examples (with replacement when the split is smaller)."""
        indices = self.rng.choice(self.train_size, size=batch_size, replace=batch_size > self.train_size)
        if self.model == "cgcnn":  # gathered as training gathers its batches, on the trial's device
            return self.trainable.data.batch(self.trainable.train_index[indices])
        return indices

    def step(self, batch: Any) -> None:
        self.trainable.train_batch(batch)

    def free(self) -> None:
        """Drop gradients and optimiser state (after an out-of-memory error) and cached GPU blocks."""
        import torch

        self.trainable.optimizer = None
        self.trainable.model.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.trainable.stop()


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


def _step_times(probe: ModelProbe, batches: list[Any], warmup_steps: int, steps: int, min_seconds: float,
                sync: Any) -> list[float]:
    """Seconds per timed step: ``warmup_steps`` untimed, then at least ``steps`` steps and ``min_seconds``."""
    for batch in batches[:warmup_steps]:
        probe.step(batch)
    timed = batches[warmup_steps:]
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        sync()
        start = time.perf_counter()
        probe.step(timed[len(times) % len(timed)])
        sync()
        times.append(time.perf_counter() - start)
    return times


def measure(probe: ModelProbe, batch_size: int, steps: int, warmup_steps: int, min_seconds: float = 0.0) -> ProbeRow:
    """Time training steps at ``batch_size``; peak memory as described in the module doc.

    Throughput is the batch size over the median step time: on a shared machine the median shrugs
    off the steps another process slowed down, where a mean would not.
    """
    import torch

    probe.rebuild(batch_size)
    batches = [probe.make_batch(batch_size) for _ in range(warmup_steps + steps)]
    out_of_memory = False
    try:
        if probe.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(probe.device)
            times = _step_times(probe, batches, warmup_steps, steps, min_seconds,
                                lambda: torch.cuda.synchronize(probe.device))
            peak = torch.cuda.max_memory_allocated(probe.device)
        else:
            release_cpu_memory()
            before = rss_bytes()
            with CPUPeakMemory() as memory:
                times = _step_times(probe, batches, warmup_steps, steps, min_seconds, lambda: None)
            peak = max(0, memory.peak - before)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_out_of_memory(err):
            raise
        out_of_memory = True  # freed below, outside the handler: its traceback holds the tensors
    if out_of_memory:
        del batches
        probe.free()
        return ProbeRow(batch_size, None, None, "out of memory")
    return ProbeRow(batch_size, batch_size / float(np.median(times)), peak / MIB)


def _predicted_mb(rows: list[ProbeRow], next_size: int) -> float | None:
    """Memory of ``next_size`` extrapolated linearly in the batch size from the last two fitting rows."""
    fitting = [r for r in rows if r.fits]
    if len(fitting) < 2:
        return None
    a, b = fitting[-2], fitting[-1]
    slope = (b.peak_memory_mb - a.peak_memory_mb) / (b.batch_size - a.batch_size)
    return b.peak_memory_mb + max(slope, 0.0) * (next_size - b.batch_size)


@dataclass
class ProbeResult:
    rows: list[ProbeRow]
    recommendation: Recommendation | None
    stop_reason: str
    device: str
    memory_method: str
    budget_mb: float | None


def run_probe(probe: ModelProbe, start: int, max_batch_size: int, steps: int, warmup_steps: int, margin: float,
              patience: int, budget_mb: float | None, min_seconds: float = 0.0) -> ProbeResult:
    """Double the batch size from ``start`` until it runs out of memory, stops paying, or hits a limit."""
    from trainables.device import describe

    rows: list[ProbeRow] = []
    # One untimed, unrecorded round first: the process's one-time costs (thread pools, kernel
    # selection, allocator arenas) would otherwise land in the first row's time and memory.
    measure(probe, start, 1, warmup_steps)
    size = start
    while True:
        if size > max_batch_size:
            stop = f"reached --max-batch-size {max_batch_size}"
            break
        if size > probe.train_size and rows:
            stop = f"batch size {size} exceeds the {probe.train_size} training examples"
            break
        predicted = _predicted_mb(rows, size) if budget_mb is not None else None
        if predicted is not None and predicted > budget_mb:
            stop = f"batch size {size} would need about {predicted:.0f} MB, over the {budget_mb:.0f} MB budget"
            break
        row = measure(probe, size, steps, warmup_steps, min_seconds)
        if row.fits and budget_mb is not None and row.peak_memory_mb > budget_mb:
            row.status = "over budget"
        rows.append(row)
        print(f"  batch {size:>6}: " + (f"{row.examples_per_s:,.1f} examples/s, {row.peak_memory_mb:,.1f} MB"
                                        if row.examples_per_s is not None else "-")
              + ("" if row.fits else f" ({row.status})"), flush=True)
        if not row.fits:
            stop = f"batch size {size} ran {row.status}" + (f" ({budget_mb:.0f} MB)" if budget_mb is not None else "")
            break
        if throughput_stalled(rows, margin, patience):
            stop = f"throughput stopped improving by more than {margin:.0%}"
            break
        size *= 2
    if probe.device.type == "cuda":
        method = "torch.cuda.max_memory_allocated (all tensors of the step)"
    else:
        method = "peak RSS during the steps minus RSS before them (optimiser state, gradients, activations)"
    return ProbeResult(rows, recommend(rows, margin, patience), stop, describe(probe.device), method, budget_mb)


# --- output ---------------------------------------------------------------------------------------

def format_table(rows: list[ProbeRow]) -> list[str]:
    """The table as text lines: batch size, examples/s, peak memory, status."""
    lines = [f"{'batch_size':>10}  {'examples/s':>12}  {'peak_MB':>10}  status"]
    for r in rows:
        tput = f"{r.examples_per_s:,.1f}" if r.examples_per_s is not None else "-"
        mem = f"{r.peak_memory_mb:,.1f}" if r.peak_memory_mb is not None else "-"
        lines.append(f"{r.batch_size:>10}  {tput:>12}  {mem:>10}  {r.status}")
    return lines


def format_report(model: str, result: ProbeResult, margin: float) -> list[str]:
    lines = [f"batch-size probe: {model} on {result.device}",
             f"memory: {result.memory_method}" + (f"; budget {result.budget_mb:.0f} MB" if result.budget_mb else ""),
             *format_table(result.rows), f"stopped: {result.stop_reason}"]
    rec = result.recommendation
    if rec is not None:
        lines.append(f"recommended batch_size: {rec.batch_size} ({rec.row.examples_per_s:,.1f} examples/s, "
                     f"{rec.row.peak_memory_mb:,.1f} MB; {rec.reason}; margin {margin:.0%})")
    return lines


def to_yaml(model: str, result: ProbeResult, margin: float, command: str) -> str:
    """``batch_size: N`` with the whole report as comments: a mapping a config can include."""
    header = [f"written by: {command}", f"on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
              *format_report(model, result, margin)]
    return "\n".join(f"# {line}" for line in header) + "\n" + yaml.safe_dump(
        {"batch_size": result.recommendation.batch_size}, sort_keys=False)


# --- command line ---------------------------------------------------------------------------------

def build_probe_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probe_batch_size.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="cgcnn", help="model: " + ", ".join(MODELS))
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="YAML config for the model's options and resources (default configs/<model>/asha.yaml)")
    p.add_argument("--hyperparameters", default=None,
                   help="YAML mapping of the trial hyperparameters to build the model with (architecture, lr); "
                        "default the 'hyperparameters' of configs/<model>/two_stage.yaml")
    p.add_argument("--start", type=int, default=8, help="first batch size")
    p.add_argument("--max-batch-size", type=int, default=4096, help="never probe above this")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per batch size, at least")
    p.add_argument("--min-seconds", type=float, default=2.0, help="time each batch size for at least this long")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first (allocator, kernels)")
    p.add_argument("--margin", type=float, default=0.05, help="relative throughput gain that still counts")
    p.add_argument("--patience", type=int, default=1, help="doublings without such a gain before stopping")
    p.add_argument("--memory-budget-mb", type=float, default=None,
                   help="CPU: stop doubling above this training memory (default: half the memory available now)")
    p.add_argument("--gpus-per-trial", type=float, default=argparse.SUPPRESS,
                   help="GPU share a trial gets (0.25: probe within a quarter of the card); 0: the CPU")
    p.add_argument("--cpus-per-trial", type=float, default=argparse.SUPPRESS, help="torch threads (the trial's CPUs)")
    p.add_argument("--output", default=None, help="YAML to write (default results/batch_size_<model>.yaml)")
    p.add_argument("--smoke-test", action="store_true", default=argparse.SUPPRESS,
                   help="the model's smoke-test data (tiny dataset, short sequences)")
    seen: set[str] = set()
    for spec in MODELS.values():  # the model options, as the run scripts take them
        for option in spec.cli_options:
            if option not in seen:
                seen.add(option)
                default = spec.options[option]
                p.add_argument("--" + option.replace("_", "-"), dest=option, default=argparse.SUPPRESS,
                               type=type(default) if default is not None else str, help=f"model option {option}")
    return p


def load_hyperparameters(model: str, path: str | None) -> dict[str, Any]:
    """The trial hyperparameters to probe with: the model's two-stage defaults, overlaid by ``path``."""
    default = CONFIGS_DIR / model / "two_stage.yaml"
    values = dict(read_yaml_config(default).get("hyperparameters") or {}) if default.is_file() else {}
    if path is not None:
        values.update(read_yaml_config(Path(path)))
    return values


_PROBE_KEYS = ("hyperparameters", "start", "max_batch_size", "steps", "min_seconds", "warmup_steps", "margin",
               "patience", "memory_budget_mb", "output")


def main(argv: list[str] | None = None) -> int:
    """Entry point: probe, print the table and recommendation, write the YAML; exit 2 on bad input."""
    args = vars(build_probe_parser().parse_args(argv))
    try:
        for name, low in (("start", 1), ("max_batch_size", 1), ("steps", 1), ("warmup_steps", 0), ("patience", 1),
                          ("min_seconds", 0)):
            if args[name] < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {args[name]}")
        if args["margin"] < 0:
            raise ConfigError(f"--margin must be 0 or more, got {args['margin']}")
        if args["memory_budget_mb"] is not None and args["memory_budget_mb"] <= 0:
            raise ConfigError(f"--memory-budget-mb must be positive, got {args['memory_budget_mb']}")
        settings = {k: v for k, v in args.items() if k not in _PROBE_KEYS}
        config = resolve_config("asha", settings, {}, {})  # the model's config: options, resources, smoke data
        if config.gpus_per_trial == 0:
            # A trial that asks for no GPU sees none; set before the trainable imports torch.
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        hyperparameters = load_hyperparameters(config.model, args["hyperparameters"])
        options = dict(config.model_options)
        options["cache_dir"] = options.get("cache_dir") or default_cache_dir()
        options["cpus_per_trial"] = config.cpus_per_trial
        config.model_spec.load_prepare()(options)  # checks and caches the data, as the runner's driver does
        result, probe_device = _probe(config, options, hyperparameters, args)
    except INPUT_ERRORS as err:
        return print_error(err)
    for line in format_report(config.model, result, args["margin"]):
        print(line)
    if result.recommendation is None:
        print(f"error: even batch size {args['start']} does not fit ({result.stop_reason}); lower --start"
              + (" or raise --memory-budget-mb" if probe_device == "cpu" else ""), file=sys.stderr)
        return 2
    output = Path(args["output"] or Path("results") / f"batch_size_{config.model}.yaml")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = "python experiments/probe_batch_size.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    output.write_text(to_yaml(config.model, result, args["margin"], command))
    print(f"wrote {output} (use it with: python experiments/run_two_stage.py --model {config.model} "
          f"--hyperparameters {output})")
    return 0


def _probe(config: Any, options: dict[str, Any], hyperparameters: dict[str, Any],
           args: dict[str, Any]) -> tuple[ProbeResult, str]:
    """Pick the trial's device, cap its memory, and run the doubling."""
    import psutil
    import torch

    use_gpu = config.gpus_per_trial > 0 and torch.cuda.is_available()
    budget = args["memory_budget_mb"]
    if use_gpu:
        share = min(config.gpus_per_trial, 1.0)
        torch.cuda.set_per_process_memory_fraction(share, 0)  # allocations past the share raise OOM
        budget = None
    elif budget is None:
        budget = psutil.virtual_memory().available / MIB / 2
    # Outside Ray nothing assigns a device: the probe names the one a trial of these settings would get.
    options = {**options, "device": "cuda" if use_gpu else "cpu"}
    probe = ModelProbe(config.model, options, {**hyperparameters, "batch_size": args["start"]}, seed=config.seed)
    try:
        result = run_probe(probe, args["start"], args["max_batch_size"], args["steps"], args["warmup_steps"],
                           args["margin"], args["patience"], budget, args["min_seconds"])
    finally:
        probe.close()
    if use_gpu:
        total = torch.cuda.get_device_properties(0).total_memory / 1024**3
        result.memory_method += f"; the process capped at {share:g} x {total:.1f} GiB"
    return result, probe.device.type


if __name__ == "__main__":
    sys.exit(main())
