"""RoBERTa training-step throughput and MFU, and N trials sharing one device vs one trial; CGCNN with --model cgcnn.

A RoBERTa sequence classifier (roberta-base's shape by default; random weights, so no download)
is trained on random token ids with RTE-like lengths (log-normal around 60 tokens, cut at
``--max-seq-length``), each batch padded to its longest row rounded up to a multiple of 8
(dynamic padding). Model FLOPs per step are 6 x parameters x real (unpadded) tokens; MFU is that
over the step time and the device's peak (bf16 dense; ``--peak-tflops`` or a table of known GPUs).

Variants, measured interleaved in the same process and repeated (median reported):

- ``eager``: fp32, ``torch.optim.AdamW`` with its default (foreach) implementation;
- ``fast``: bf16 autocast and fused AdamW;
- ``fast+compile``: the same under ``torch.compile`` (with ``--compile``).

Then ``--gpus-per-trial 0.25`` packs 1/0.25 = 4 trial processes onto the device (what Ray's
fractional GPUs do: the processes share it) and compares their summed tokens/s with one trial's,
interleaved over ``--rounds``.

Without a GPU (this suite's CI and laptops) the script runs on CPU: ``--smoke-test`` uses a tiny
RoBERTa (2 layers, hidden 64, a 1,000-token vocabulary) and 2 trials of 1 CPU each; MFU is printed only with
``--peak-tflops``. The GPU figures are left to a run on a machine that has one.

``--model cgcnn`` (issue 30) measures CGCNN epochs (training + validation and test MAE) of the
throughput_cpu.py configuration at batch 32 on the device: the old input path (host collation per
step, experiments/benchmarks/cgcnn_input.py) against the trainable's own (packed data gathered on
the device), epochs interleaved; then the new path's epoch on the device against one CPU thread
(target >= 5x at 0.25 GPU); then 1/``--gpus-per-trial`` trial processes sharing the device against
one (aggregate training graphs/s).

    python experiments/benchmarks/throughput_gpu.py --compile                 # on a GPU machine
    python experiments/benchmarks/throughput_gpu.py --model cgcnn             # CGCNN, on a GPU machine
    python experiments/benchmarks/throughput_gpu.py --smoke-test              # CPU, tiny model
    python experiments/benchmarks/throughput_gpu.py --model cgcnn --smoke-test
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from typing import Any

from experiments.benchmarks.hardware import describe_hardware, format_ratios, median

# bf16 dense peak TFLOP/s by device-name fragment (first match wins).
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0))


@dataclass
class Settings:
    """What one measurement runs."""

    layers: int
    hidden: int
    batch_size: int
    max_seq_length: int
    steps: int
    warmup: int
    device: str
    threads: int
    vocab_size: int = 50265  # roberta-base's


def build_model(settings: Settings) -> Any:
    """A randomly initialised RoBERTa classifier of the given size (roberta-base: 12 layers, hidden 768)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=settings.vocab_size, hidden_size=settings.hidden, num_hidden_layers=settings.layers,
        num_attention_heads=max(1, settings.hidden // 64), intermediate_size=4 * settings.hidden,
        max_position_embeddings=settings.max_seq_length + 2, num_labels=2,
    )
    return RobertaForSequenceClassification(config)


def make_batches(settings: Settings, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Batches of random ids with RTE-like lengths, dynamically padded (to a multiple of 8)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        lengths = np.clip(rng.lognormal(np.log(60), 0.4, settings.batch_size).astype(int), 8, settings.max_seq_length)
        width = min(settings.max_seq_length, int(np.ceil(lengths.max() / 8) * 8))
        ids = torch.ones(settings.batch_size, width, dtype=torch.long)  # <pad> is 1 in RoBERTa
        mask = torch.zeros(settings.batch_size, width, dtype=torch.long)
        for row, length in enumerate(lengths):
            ids[row, :length] = torch.from_numpy(rng.integers(3, settings.vocab_size, length))
            mask[row, :length] = 1
        labels = torch.from_numpy(rng.integers(0, 2, settings.batch_size))
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels, "tokens": int(lengths.sum())})
    return batches


def time_variant(model: Any, batches: list[dict[str, Any]], variant: str, settings: Settings) -> tuple[float, int]:
    """Seconds and real tokens of ``settings.steps`` training steps (after ``warmup`` untimed ones)."""
    import torch

    fast = variant.startswith("fast")
    on_gpu = settings.device.startswith("cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True if fast else None)
    step_model = torch.compile(model) if variant == "fast+compile" else model
    device_batches = [{k: v.to(settings.device) for k, v in b.items() if k != "tokens"} for b in batches]

    def one_step(batch: dict[str, Any]) -> None:
        with torch.autocast(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=fast):
            loss = step_model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for i in range(settings.warmup):
        one_step(device_batches[i % len(device_batches)])
    if on_gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = 0
    for i in range(settings.steps):
        one_step(device_batches[i % len(device_batches)])
        tokens += batches[i % len(batches)]["tokens"]
    if on_gpu:
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def _trial_process(settings: Settings, variant: str, barrier: Any, out: Any) -> None:
    """One trial sharing the device: build, warm up, wait for the others, then time its steps."""
    import torch

    torch.set_num_threads(settings.threads)
    model = build_model(settings).to(settings.device)
    batches = make_batches(settings, 16)
    time_variant(model, batches, variant, Settings(**{**settings.__dict__, "steps": 0}))  # warm-up only
    barrier.wait()
    seconds, tokens = time_variant(model, batches, variant, Settings(**{**settings.__dict__, "warmup": 0}))
    out.put(tokens / seconds)


def concurrent_tokens_per_s(settings: Settings, variant: str, trials: int) -> float:
    """Summed tokens/s of ``trials`` processes training at once on the same device."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(trials), ctx.Queue()
    procs = [ctx.Process(target=_trial_process, args=(settings, variant, barrier, out)) for _ in range(trials)]
    for proc in procs:
        proc.start()
    rates = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return sum(rates)


def peak_tflops(device: str, given: float | None) -> float | None:
    """The bf16 peak: ``given``, else from the GPU's name; None on CPU unless given."""
    import torch

    if given:
        return given
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        return next((peak for fragment, peak in PEAK_BF16_TFLOPS if fragment in name), None)
    return None


def cgcnn_main(args: argparse.Namespace) -> int:
    """The ``--model cgcnn`` measurements (see the module docstring)."""
    import torch

    from experiments.benchmarks.cgcnn_input import compare_paths, epoch_seconds, format_paths
    from experiments.benchmarks.throughput_cpu import CONFIG, dataset_options
    from experiments.benchmarks.throughput_cpu import measure as concurrent_graphs_per_s
    from trainables.cgcnn import prepare

    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = 240 if args.smoke_test else args.dataset_size
    rounds = 1 if args.smoke_test else args.repeats
    config = {**CONFIG, "batch_size": args.batch_size}
    options = dataset_options(size, args.cache_dir)
    prepare(options)  # build the cache once, in this process, as the runner's driver does
    on_device = {**options, "device": device, "gpu_share": args.gpus_per_trial if device == "cuda" else None}
    torch.set_num_threads(1)
    print(describe_hardware(torch_threads=1))
    print(f"CGCNN {config}, {size} structures; device {device}"
          f"{f' ({args.gpus_per_trial:g} of it per trial)' if device == 'cuda' else ''}", flush=True)
    records = compare_paths(on_device, config, rounds)
    for line in format_paths(records):
        print(line, flush=True)
    if device == "cuda":
        cpu = compare_paths({**options, "device": "cpu"}, config, rounds)["new"]
        ratios = [epoch_seconds(c) / epoch_seconds(g) for c, g in zip(cpu, records["new"], strict=True)]
        print(f"RATIO one CPU thread / {args.gpus_per_trial:g} GPU, new path epoch time (speed-up of the GPU): "
              f"{format_ratios(ratios)} (target >= 5x at 0.25 GPU, batch 32)")
    if args.smoke_test:  # the concurrency part is throughput_cpu.py's measure, smoke-tested there
        return 0
    trials = max(1, round(1 / args.gpus_per_trial))
    if device == "cpu":
        trials = min(trials, mp.cpu_count())
    ratios = []
    for _ in range(args.rounds):
        one, _ = concurrent_graphs_per_s(on_device, 1, 2, config)
        many, _ = concurrent_graphs_per_s(on_device, trials, 2, config)
        ratios.append(many / one)
    share = f"{args.gpus_per_trial:g} GPU" if device == "cuda" else "1 CPU thread"
    print(f"RATIO {trials} concurrent CGCNN trials ({share} each) / 1 trial, aggregate training graphs/s: "
          f"{format_ratios(ratios)}")
    if device == "cpu":
        print("note: no GPU here; these are CPU figures of the benchmark, the GPU targets need a GPU run")
    return 0


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=("roberta", "cgcnn"), default="roberta", help="what to measure")
    parser.add_argument("--dataset-size", type=int, default=2000, help="cgcnn: built-in dataset size (structures)")
    parser.add_argument("--cache-dir", help="cgcnn: dataset cache (default $HPO_SUITE_CACHE or ~/.cache/hpo-suite)")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (roberta-base: 12)")
    parser.add_argument("--hidden", type=int, default=768, help="hidden size (roberta-base: 768)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=50265, help="vocabulary (roberta-base: 50265)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the variants")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved (one trial, N trials) rounds")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--gpus-per-trial", type=float, default=0.25, help="share of the device per trial")
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak of the device (default: known GPUs)")
    parser.add_argument("--smoke-test", action="store_true", help="tiny RoBERTa on CPU, few steps")
    args = parser.parse_args(argv)
    if args.model == "cgcnn":
        return cgcnn_main(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trials = max(1, round(1 / args.gpus_per_trial))
    cores = mp.cpu_count()
    if args.smoke_test:
        args.layers, args.hidden, args.batch_size, args.steps, args.warmup = 2, 64, 8, 4, 1
        args.repeats, args.rounds, args.max_seq_length, args.vocab_size = 1, 1, 64, 1000
    if device == "cpu":
        trials = min(trials, cores)  # one CPU per trial: no more trials than cores
    settings = Settings(args.layers, args.hidden, args.batch_size, args.max_seq_length, args.steps, args.warmup,
                        device, threads=cores, vocab_size=args.vocab_size)
    torch.set_num_threads(settings.threads)
    print(describe_hardware(torch_threads=settings.threads))
    model = build_model(settings).to(device)
    params = sum(p.numel() for p in model.parameters())
    peak = peak_tflops(device, args.peak_tflops)
    print(f"RoBERTa {args.layers} layers, hidden {args.hidden}: {params / 1e6:.1f} M parameters; batch "
          f"{args.batch_size}, dynamic padding up to {args.max_seq_length}; device {device}; "
          f"peak {peak if peak else 'unknown'} TFLOP/s", flush=True)

    batches = make_batches(settings, 16)
    variants = ["eager", "fast"] + (["fast+compile"] if args.compile else [])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:
            seconds, tokens = time_variant(model, batches, variant, settings)
            rates[variant].append(tokens / seconds)
    for variant in variants:
        tokens_per_s = median(rates[variant])
        tflops = 6 * params * tokens_per_s / 1e12
        mfu = f", MFU {100 * tflops / peak:.1f} % (target >= 40 %)" if peak else ""
        print(f"THROUGHPUT {variant}: {tokens_per_s:.0f} tokens/s, {tflops:.3g} TFLOP/s model FLOPs{mfu}")
    for variant in variants[1:]:
        print(f"RATIO {variant} / eager step throughput: "
              f"{format_ratios([f / e for f, e in zip(rates[variant], rates['eager'], strict=True)])}")

    best = max(variants, key=lambda v: median(rates[v]))
    per_trial = Settings(**{**settings.__dict__, "threads": max(1, cores // trials) if device == "cpu" else 1})
    ratios = []
    for _ in range(args.rounds):
        one = concurrent_tokens_per_s(per_trial, best, 1)
        many = concurrent_tokens_per_s(per_trial, best, trials)
        ratios.append(many / one)
    share = f"{args.gpus_per_trial:g} GPU" if device == "cuda" else f"{per_trial.threads} CPU thread(s)"
    target = " (target >= 2.5x)" if device == "cuda" and trials == 4 else ""
    print(f"RATIO {trials} concurrent trials ({share} each) / 1 trial, aggregate tokens/s ({best}): "
          f"{format_ratios(ratios)}{target}")
    if device == "cpu":
        print("note: no GPU here; these are CPU figures of the benchmark, the GPU targets need a GPU run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
