"""The one place that composes an experiment.

A ``run_<strategy>.py`` script calls :func:`main` with its strategy name. From the resolved
:class:`~experiments.config.ExperimentConfig` this module builds the search algorithm (from the
declarative search space), the scheduler, resources, checkpoint and failure policy and
callbacks, runs ``tune.Tuner`` on the model's trainable, and writes the experiment summary.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from experiments.config import ConfigError, ExperimentConfig, build_parser, resolve_config
from search_spaces import SearchSpace, SpaceError, load_space
from search_spaces.compile import to_grid, to_ray
from trainables.data import DataError


@dataclass(frozen=True)
class Strategy:
    """A run script's fixed choices: its scheduler and the settings ``--smoke-test`` shrinks."""

    scheduler: str  # "fifo", "asha", "ahb" or "pbt"
    searchers: tuple[str, ...]  # the first is the default
    smoke: dict[str, Any]


_BO_AND_RANDOM = ("random", "quasirandom", "hyperopt", "dragonfly")
STRATEGIES: dict[str, Strategy] = {
    "random": Strategy("fifo", _BO_AND_RANDOM, {"num_samples": 3, "max_epochs": 2}),
    "grid": Strategy("fifo", ("grid",), {"num_samples": 1, "max_epochs": 2}),
    "asha": Strategy("asha", _BO_AND_RANDOM,
                     {"num_samples": 4, "max_epochs": 3, "grace_period": 1, "reduction_factor": 2}),
    "ahb": Strategy("ahb", _BO_AND_RANDOM,
                    {"num_samples": 6, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 2}),
}


def default_cache_dir() -> str:
    """Where datasets and tokenisations are cached: ``$HPO_SUITE_CACHE`` or ``~/.cache/hpo-suite``."""
    return str(Path(os.environ.get("HPO_SUITE_CACHE", "~/.cache/hpo-suite")).expanduser().resolve())


def build_search(config: ExperimentConfig, space: SearchSpace) -> tuple[Any, dict[str, Any]]:
    """The search algorithm and the ``param_space`` it samples, both from the one spec."""
    from ray.tune.search import BasicVariantGenerator

    constants = {"seed": config.seed}
    if config.search == "grid":
        return BasicVariantGenerator(random_state=config.seed), {**constants, **to_grid(space)}
    if config.search == "random":
        return BasicVariantGenerator(random_state=config.seed), {**constants, **to_ray(space)}
    raise ConfigError(f"search algorithm '{config.search}' is not available in this version of the suite")


def build_scheduler(config: ExperimentConfig, space: SearchSpace) -> Any:
    """The trial scheduler of the strategy: FIFO (none), ASHA, async HyperBand."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    kind = STRATEGIES[config.strategy].scheduler
    if kind == "fifo":
        return FIFOScheduler()
    if kind in ("asha", "ahb"):
        # ASHA is async HyperBand with one bracket; AHB runs several (config.brackets).
        return AsyncHyperBandScheduler(
            time_attr="training_iteration",
            max_t=config.max_epochs,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            brackets=1 if kind == "asha" else config.brackets,
        )
    raise ConfigError(f"scheduler '{kind}' is not available in this version of the suite")


def checkpoint_config(config: ExperimentConfig) -> Any:
    """Minimal checkpointing: none unless asked for (or the scheduler needs it), never at the end.

    ``checkpoint_at_end`` stays off: under successive halving it would write a checkpoint for every
    stopped trial, the overhead the NERSC study removed to finish twice the trials.
    """
    from ray import tune

    return tune.CheckpointConfig(
        checkpoint_frequency=config.checkpoint_frequency,
        checkpoint_at_end=False,
        num_to_keep=2 if config.checkpoint_frequency else None,
    )


def experiment_name(config: ExperimentConfig) -> str:
    return config.name or f"{config.model}_{config.strategy}_{config.search}_{time.strftime('%Y%m%d-%H%M%S')}"


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on an address nothing listens at (ray.init would otherwise retry for minutes)."""
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT (or 'auto'), got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one (see slurm/) or drop --address"
        ) from None


def _connect_ray(config: ExperimentConfig) -> None:
    import ray

    if config.address:
        _check_reachable(config.address)
        try:
            ray.init(address=config.address, log_to_driver=True)
        except ConnectionError as err:
            raise ConfigError(f"cannot join the Ray cluster at {config.address}: {str(err).splitlines()[0]}") from None
    else:
        ray.init(include_dashboard=False)
    available = ray.cluster_resources()
    for resource, per_trial in (("CPU", config.cpus_per_trial), ("GPU", config.gpus_per_trial)):
        if per_trial > available.get(resource, 0):
            raise ConfigError(
                f"each trial asks for {per_trial:g} {resource}(s) but the Ray cluster has "
                f"{available.get(resource, 0):g}; lower --{resource.lower()}s-per-trial"
            )


def _new_tuner(config: ExperimentConfig, trainable: Any, name: str, storage: Path, searcher: Any,
               scheduler: Any, param_space: dict[str, Any]) -> Any:
    """The Tuner of a fresh experiment: reuse_actors, fail_fast, minimal checkpoints, stop at max_epochs."""
    from ray import tune

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=config.num_samples,
            max_concurrent_trials=config.max_concurrent_trials or None,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            stop={"training_iteration": config.max_epochs},
            checkpoint_config=checkpoint_config(config),
            failure_config=tune.FailureConfig(max_failures=config.max_failures, fail_fast=True),
            verbose=1,
        ),
    )


def resume_command(config: ExperimentConfig, name: str) -> str:
    storage = shlex.quote(str(Path(config.storage_path).expanduser().resolve()))
    return f"python experiments/run_{config.strategy}.py --resume --name {shlex.quote(name)} --storage-path {storage}"


def load_snapshot_config(strategy: str, args: dict[str, Any]) -> ExperimentConfig:
    """For ``--resume``: the configuration the experiment ``--name`` under ``--storage-path`` ran with."""
    if "name" not in args:
        raise ConfigError("--resume needs --name, the experiment to resume (a folder under --storage-path)")
    storage = Path(args.get("storage_path", "./results")).expanduser()
    snapshot = storage / args["name"] / "experiment.yaml"
    if not snapshot.is_file():
        raise ConfigError(f"no experiment to resume at {storage / args['name']} (no experiment.yaml there)")
    chosen = STRATEGIES[strategy]
    keep = {k: args[k] for k in ("name", "storage_path", "address", "max_failures") if k in args}
    return resolve_config(strategy, {"config": str(snapshot), **keep}, {"search": chosen.searchers[0]}, chosen.smoke)


def run_experiment(config: ExperimentConfig, resume: bool = False, resume_errored: bool = False) -> dict[str, Any]:
    """Run one experiment end to end (or resume it) and return its summary (also written to disk)."""
    import ray
    from ray import tune

    from experiments.summary import summarize, write_summary

    space = load_space(config.space)
    spec = config.model_spec
    options = dict(config.model_options)
    options["cache_dir"] = options.get("cache_dir") or default_cache_dir()
    options["cpus_per_trial"] = config.cpus_per_trial
    # Data problems surface here, in the driver, before any trial or Ray process starts.
    prepared = spec.load_prepare()(options)

    name = experiment_name(config)
    storage = Path(config.storage_path).expanduser().resolve()
    exp_dir = storage / name
    snapshot = exp_dir / "experiment.yaml"
    if not resume:
        exp_dir.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    reproduce = f"python experiments/run_{config.strategy}.py --config {shlex.quote(str(snapshot))}"

    _connect_ray(config)
    trainable = tune.with_resources(
        tune.with_parameters(spec.load_trainable(), options=options),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    if resume:
        # Finished trials stay as they are; unfinished ones continue from their last checkpoint
        # (or restart, where the policy kept none); errored ones only with --resume-errored.
        tuner = tune.Tuner.restore(
            str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=resume_errored
        )
    else:
        searcher, param_space = build_search(config, space)
        tuner = _new_tuner(config, trainable, name, storage, searcher, build_scheduler(config, space), param_space)
    start = time.monotonic()
    results = tuner.fit()
    wall_time = time.monotonic() - start
    previous = exp_dir / "summary.json"
    if resume and previous.is_file():  # wall time adds up over interrupted sessions
        wall_time += json.loads(previous.read_text()).get("wall_time_s") or 0.0
    summary = summarize(config, name, space, results, wall_time, prepared, reproduce)
    # Trials neither finished nor errored mean the run was interrupted (Ctrl-C): Tune saved its
    # state, so the experiment can be resumed where it stopped.
    trial_states = [t.status for t in results._experiment_analysis.trials]
    summary["num_unfinished"] = sum(1 for status in trial_states if status not in ("TERMINATED", "ERROR"))
    summary["resume_command"] = resume_command(config, name)
    write_summary(exp_dir, summary)
    ray.shutdown()
    return summary


def main(strategy: str, description: str, argv: list[str] | None = None) -> int:
    """Entry point of every ``run_<strategy>.py``: parse, validate, run, print the summary."""
    from experiments.summary import format_table

    parser = build_parser(strategy, description)
    args = vars(parser.parse_args(argv))
    try:
        chosen = STRATEGIES[strategy]
        config = resolve_config(strategy, args, {"search": chosen.searchers[0]}, chosen.smoke)
        if config.search not in chosen.searchers:
            raise ConfigError(
                f"run_{strategy}.py works with search algorithm(s) {', '.join(chosen.searchers)}, not '{config.search}'"
            )
        if args.get("resume"):
            config = load_snapshot_config(strategy, args)
        load_space(config.space)  # a bad space fails here, before any data is built
        summary = run_experiment(config, resume=bool(args.get("resume")),
                                 resume_errored=bool(args.get("resume_errored")))
    except (ConfigError, SpaceError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(summary))
    return _report_outcome(summary)


def _report_outcome(summary: dict[str, Any]) -> int:
    """Exit status and the one line a user needs when the experiment did not simply finish."""
    failed = [t for t in summary["trials"] if t["errored"]]
    if failed:
        first = failed[0]
        print(f"error: trial {first['trial_id']} failed: {first['error']} (full log: "
              f"{Path(first['path']) / 'error.txt'}); finished trials are in {summary['name']}/summary.json; "
              f"retry the failed ones with: {summary['resume_command']} --resume-errored", file=sys.stderr)
        return 1
    if summary["num_unfinished"]:
        print(f"interrupted with {summary['num_unfinished']} trial(s) unfinished; resume with: "
              f"{summary['resume_command']}", file=sys.stderr)
        return 130
    return 0
