"""The one place that composes an experiment.

A ``run_<strategy>.py`` script calls :func:`main` with its strategy name. From the resolved
:class:`~experiments.core.config.ExperimentConfig` this module builds the search algorithm (from the
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

from experiments.core.config import ConfigError, ExperimentConfig, build_parser, resolve_config
from search_spaces import SearchSpace, SpaceError, load_space
from search_spaces.compile import to_grid, to_hyperopt, to_pbt_mutations, to_ray
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
    "grid": Strategy("fifo", ("grid",), {"num_samples": 1, "max_epochs": 1}),
    "asha": Strategy("asha", _BO_AND_RANDOM,
                     {"num_samples": 4, "max_epochs": 3, "grace_period": 1, "reduction_factor": 2}),
    "ahb": Strategy("ahb", _BO_AND_RANDOM,
                    {"num_samples": 6, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 2}),
    "pbt": Strategy("pbt", ("random",), {"num_samples": 4, "max_epochs": 4, "perturbation_interval": 1}),
}


def default_cache_dir() -> str:
    """Where datasets and tokenisations are cached: ``$HPO_SUITE_CACHE`` or ``~/.cache/hpo-suite``."""
    return str(Path(os.environ.get("HPO_SUITE_CACHE", "~/.cache/hpo-suite")).expanduser().resolve())


def build_search(config: ExperimentConfig, space: SearchSpace) -> tuple[Any, dict[str, Any]]:
    """The search algorithm and the ``param_space`` it samples, both from the one spec.

    Ray's own generator samples (random) or enumerates (grid) a ``param_space`` of Tune domains.
    The other searchers hold their space themselves (compiled from the same spec), so their
    ``param_space`` carries only the constants every trial gets. The model-based ones (HyperOpt,
    Dragonfly) run behind a ``ConcurrencyLimiter``: a BO proposal made while many trials are still
    unfinished learns from little, so ``max_concurrent_search`` bounds how far ahead they propose.
    """
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    constants = {**space.constants, "seed": config.seed}
    if config.search == "grid":  # its size limit is checked with the config (experiments/core/config.py)
        return BasicVariantGenerator(random_state=config.seed), {**constants, **to_grid(space)}
    if config.search == "random":
        return BasicVariantGenerator(random_state=config.seed), {**constants, **to_ray(space)}
    if config.search == "quasirandom":
        from experiments.searchers.quasirandom import QuasiRandomSearch

        searcher = QuasiRandomSearch(space, config.metric, config.mode, sampler=config.quasirandom_sampler,
                                     seed=config.seed)
        return searcher, constants
    if config.search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        searcher = HyperOptSearch(space=to_hyperopt(space), metric=config.metric, mode=config.mode,
                                  n_initial_points=config.n_initial_points, random_state_seed=config.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=config.max_concurrent_search), constants
    if config.search == "dragonfly":
        from experiments.searchers.dragonfly import DragonflySearch

        searcher = DragonflySearch(space, config.metric, config.mode, seed=config.seed)
        return ConcurrencyLimiter(searcher, max_concurrent=config.max_concurrent_search), constants
    raise ConfigError(f"unknown search algorithm '{config.search}'")


def build_scheduler(config: ExperimentConfig, space: SearchSpace) -> Any:
    """The trial scheduler of the strategy: FIFO (none), ASHA, async HyperBand or PBT."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, PopulationBasedTraining

    kind = STRATEGIES[config.strategy].scheduler
    if kind == "fifo":
        return FIFOScheduler()
    if kind in ("asha", "ahb"):
        # ASHA is async HyperBand with one bracket; AHB runs several (config.brackets).
        return AsyncHyperBandScheduler(
            time_attr=config.model_spec.time_attr,  # the result field counting epochs
            max_t=config.max_epochs,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            brackets=1 if kind == "asha" else config.brackets,
        )
    if kind == "pbt":
        if config.num_samples < 2:
            raise ConfigError(f"PBT needs a population of at least 2 trials, got num-samples {config.num_samples}")
        mutations, explore = to_pbt_mutations(space, seed=config.seed)
        if not any(p.mutable for p in space.params):
            raise ConfigError(f"search space '{space.name}' has no mutable parameter for PBT to perturb")
        # Perturb once per perturbation_interval epochs (per-batch perturbation destabilised
        # training in the write-ups). Exploitation happens in the same actor: Ray calls the
        # trainable's reset_config with the mutated config, then load_checkpoint with the donor's.
        return PopulationBasedTraining(
            time_attr=config.model_spec.time_attr,  # the result field counting epochs
            perturbation_interval=config.perturbation_interval,
            hyperparam_mutations=mutations,
            custom_explore_fn=explore,
            log_config=True,
        )
    raise ConfigError(f"scheduler '{kind}' is not available in this version of the suite")


def checkpoint_config(config: ExperimentConfig) -> Any:
    """Minimal checkpointing: none unless asked for (or the scheduler needs it), never at the end.

    ``checkpoint_at_end`` stays off: under successive halving it would write a checkpoint for every
    stopped trial, the overhead the NERSC study removed to finish twice the trials. PBT needs
    checkpoints at each perturbation (the donor's weights): ``PopulationBasedTraining`` saves the
    upper quantile itself at every ``perturbation_interval``, so no periodic checkpoints are added
    for it; only the two newest per trial are kept, bounding disk use on long runs.
    """
    from ray import tune

    pbt = STRATEGIES[config.strategy].scheduler == "pbt"
    return tune.CheckpointConfig(
        checkpoint_frequency=config.checkpoint_frequency,
        checkpoint_at_end=False,
        num_to_keep=2 if config.checkpoint_frequency or pbt else None,
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
        # "local": always a fresh Ray of this run's own, never a cluster someone else started on
        # this machine (a bare ray.init() would join it and share or steal its CPUs).
        ray.init(address="local", include_dashboard=False)
    available = ray.cluster_resources()
    for resource, per_trial in (("CPU", config.cpus_per_trial), ("GPU", config.gpus_per_trial)):
        if per_trial > available.get(resource, 0):
            raise ConfigError(
                f"each trial asks for {per_trial:g} {resource}(s) but the Ray cluster has "
                f"{available.get(resource, 0):g}; lower --{resource.lower()}s-per-trial"
            )


def _ending_cut_trials(logger_class: type) -> type:
    """``logger_class`` that also ends the logs of trials Tune stopped without completing them.

    When ``time_budget_s`` runs out, Tune stops the running trials without calling the callbacks'
    ``on_trial_complete``: TensorBoard would never get their HParams, and W&B's logging actors would
    never finish (its callback then waits out its upload timeout, 30 minutes by default). Their logs
    are ended at the end of the step that stopped them, before Tune's final sync copies the trial
    folders to the storage path (files written in ``on_experiment_end`` would miss it).
    """

    class EndingCutTrials(logger_class):
        def log_trial_start(self, trial: Any) -> None:
            self._open_trials = getattr(self, "_open_trials", set()) | {trial}
            super().log_trial_start(trial)

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            if trial in getattr(self, "_open_trials", set()):  # once per start: W&B's end is not idempotent
                self._open_trials.discard(trial)
                super().log_trial_end(trial, failed=failed)

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            for trial in list(getattr(self, "_open_trials", ())):
                if trial.status in ("TERMINATED", "ERROR"):
                    self.log_trial_end(trial, failed=trial.status == "ERROR")
            super().on_step_end(iteration, trials, **info)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            for trial in list(getattr(self, "_open_trials", ())):  # e.g. still running at Ctrl-C
                self.log_trial_end(trial)
            super().on_experiment_end(trials, **info)

    EndingCutTrials.__name__ = logger_class.__name__
    return EndingCutTrials


def build_callbacks(config: ExperimentConfig) -> list[Any]:
    """Logger callbacks: TensorBoard (Ray's own, as by default, with HParams for every trial) and W&B.

    ``wandb_project`` adds Ray's ``WandbLoggerCallback``. W&B reads its API key itself, from
    ``WANDB_API_KEY`` or ``wandb login``; it is never passed here nor put in a config, where it
    would leak into params.json, result files and dashboards (config.validate checks it is there).
    Ray still adds its default CSV and JSON loggers.
    """
    from ray.tune.logger import TBXLoggerCallback

    callbacks = [_ending_cut_trials(TBXLoggerCallback)()]
    if config.wandb_project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(_ending_cut_trials(WandbLoggerCallback)(project=config.wandb_project))
    return callbacks


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
            reuse_actors=config.reuse_actors,
            time_budget_s=config.time_budget_s or None,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            stop={config.model_spec.time_attr: config.max_epochs},
            checkpoint_config=checkpoint_config(config),
            # fail_fast (the NERSC advice) unless the user asked for retries: Ray allows only one of them.
            failure_config=tune.FailureConfig(max_failures=config.max_failures, fail_fast=config.max_failures == 0),
            callbacks=build_callbacks(config),
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


def saved_trial_states(exp_dir: Path) -> list[str]:
    """Trial statuses as Tune last saved them (the in-memory ones are all stopped after a Ctrl-C)."""
    states = sorted(exp_dir.glob("experiment_state-*.json"))  # named by start time; a resume adds one
    if not states:
        return []
    trial_data = json.loads(states[-1].read_text()).get("trial_data", [])
    return [(json.loads(t[0]) if isinstance(t, list) else t).get("status", "") for t in trial_data]


def check_space_names(config: ExperimentConfig, space: SearchSpace) -> None:
    """A space naming a hyperparameter the model's trainable does not accept fails before any trial."""
    known = config.model_spec.load_hyperparameters()
    unknown = sorted((set(space.names) | set(space.constants)) - set(known or ()))
    if known is not None and unknown:
        raise SpaceError(f"search space '{space.name}': model {config.model} has no hyperparameter(s) "
                         f"{', '.join(unknown)}; it accepts {', '.join(known)}")


def run_experiment(config: ExperimentConfig, resume: bool = False, resume_errored: bool = False) -> dict[str, Any]:
    """Run one experiment end to end (or resume it) and return its summary (also written to disk)."""
    import ray
    from ray import tune

    from experiments.core.summary import summarize, write_summary

    space = load_space(config.space)
    spec = config.model_spec
    options = dict(config.model_options)
    options["cache_dir"] = options.get("cache_dir") or default_cache_dir()
    options["cpus_per_trial"] = config.cpus_per_trial
    # Data problems surface here, in the driver, before any trial or Ray process starts.
    prepared = spec.load_prepare()(options)

    _connect_ray(config)  # before anything is written: a cluster that cannot run the trials is an input error
    name = experiment_name(config)
    storage = Path(config.storage_path).expanduser().resolve()
    exp_dir = storage / name
    snapshot = exp_dir / "experiment.yaml"
    if not resume:
        exp_dir.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    reproduce = f"python experiments/run_{config.strategy}.py --config {shlex.quote(str(snapshot))}"

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
    states = saved_trial_states(exp_dir)
    summary["num_unfinished"] = sum(1 for status in states if status not in ("TERMINATED", "ERROR"))
    summary["resume_command"] = resume_command(config, name)
    write_summary(exp_dir, summary)
    try:  # the record's checks and plots; a failure here must never lose the summary just written
        from experiments.analysis.record import report

        report(exp_dir)
    except Exception as err:  # noqa: BLE001 - any analysis bug is a warning, the experiment is done
        print(f"warning: analysis failed ({type(err).__name__}: {err}); summary.json is intact; retry with "
              f"python experiments/analyze.py {exp_dir}", file=sys.stderr)
    ray.shutdown()
    return summary


def main(strategy: str, description: str, argv: list[str] | None = None) -> int:
    """Entry point of every ``run_<strategy>.py``: parse, validate, run, print the summary."""
    from experiments.core.summary import format_table

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
        check_space_names(config, load_space(config.space))  # a bad space fails here, before any data is built
        summary = run_experiment(config, resume=bool(args.get("resume")),
                                 resume_errored=bool(args.get("resume_errored")))
    except (ConfigError, SpaceError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:  # a check that fails after Ray started (e.g. too many CPUs per trial) must not leave it running
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
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
