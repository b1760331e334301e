"""The one place that composes an experiment.

A ``run_<strategy>.py`` script calls :func:`main` with its strategy name. From the resolved
:class:`~experiments.core.config.ExperimentConfig` this module takes the search algorithm and
scheduler of the strategy (:mod:`experiments.core.strategies`), adds resources, checkpoint and
failure policy and callbacks, runs ``tune.Tuner`` on the model's trainable, and writes the
experiment summary and record. :func:`run_experiment` is the public entry for composed
workflows (the two-stage search).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from experiments.core import interrupts
from experiments.core.best_model import (
    TRIAL_MODELS_DIR,
    best_model_entry,
    keep_from_checkpoint,
    keeping_best,
    keeps_model,
    tracks_best,
)
from experiments.core.config import (
    LIMITED_SEARCHERS,
    ConfigError,
    ExperimentConfig,
    build_parser,
    default_cache_dir,
    resolve_config,
)
from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.core.experiment_dir import default_name, discard_unstarted, has_saved_state, open_experiment_dir
from experiments.core.resources import alive_node_resources, check_accumulation, check_cluster
from experiments.core.scheduler_state import SchedulerMemory
from experiments.core.seeding import seed_scheduler_rngs
from experiments.core.startup import FirstResultCallback, StartupTimeline
from experiments.core.strategies import STRATEGIES, build_scheduler, build_search
from experiments.core.summary import format_table, left_to_run, mark_ending, mark_unfinished, summarize, write_summary
from experiments.core.tune_state import saved_trial_statuses
from search_spaces import SearchSpace, SpaceError, load_space


def checkpoint_config(config: ExperimentConfig) -> Any:
    """Minimal checkpointing: none unless asked for (or the scheduler needs it), never at the end.

    ``checkpoint_at_end`` stays off: under successive halving it would write a checkpoint for every
    stopped trial, the overhead the NERSC study removed to finish twice the trials. PBT needs
    checkpoints at each perturbation (the donor's weights): ``PopulationBasedTraining`` saves the
    upper quantile itself at every ``perturbation_interval``, so no periodic checkpoints are added
    for it. Checkpoints keep the two newest per trial, bounding disk use on long runs, PBT included:
    Ray's ``num_to_keep`` is per trial (each trial has its own checkpoint manager) and an exploit
    loads the donor's newest checkpoint, so two per trial cover a donor that saves again before its
    recipient restores (a population-sized retention kept all 40 checkpoints of RoBERTa's 8 x 5 epochs).
    PBT's trials write their best model once, at their end, instead (experiments/core/best_model.py):
    a PBT winner cannot be retrained from a configuration.
    """
    from ray import tune

    pbt = STRATEGIES[config.strategy].scheduler == "pbt"
    return tune.CheckpointConfig(
        checkpoint_frequency=config.checkpoint_frequency,
        checkpoint_at_end=False,
        num_to_keep=2 if pbt or config.checkpoint_frequency else None,
    )


def experiment_name(config: ExperimentConfig) -> str:
    return config.name or default_name(config)


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

    from experiments.core.console import plain_worker_log_prefixes

    plain_worker_log_prefixes()  # the driver prints the workers' lines: it reads the switch as it prints

    if config.address:
        _check_reachable(config.address)
        try:
            ray.init(address=config.address, log_to_driver=True)
        except ConnectionError as err:
            raise ConfigError(f"cannot join the Ray cluster at {config.address}: {str(err).splitlines()[0]}") from None
    else:
        # "local": always a fresh Ray of this run's own, never a cluster someone else started on
        # this machine (a bare ray.init() would join it and share or steal its CPUs). Its workers
        # inherit this variable: Ray 2.60 then empties CUDA_VISIBLE_DEVICES for trials given no GPU
        # (ray issue 54868), a second guard beside trainables/device.py's own.
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
        ray.init(address="local", include_dashboard=False)
    check_cluster(config, alive_node_resources())


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


def build_callbacks(config: ExperimentConfig, exp_dir: Path | None = None) -> list[Any]:
    """Logger callbacks: TensorBoard (Ray's own, as by default, with HParams for every trial) and W&B.

    ``wandb_project`` adds Ray's ``WandbLoggerCallback``. W&B reads its API key itself, from
    ``WANDB_API_KEY`` or ``wandb login``; it is never passed here nor put in a config, where it
    would leak into params.json, result files and dashboards (config.validate checks it is there).
    W&B's local run files (``wandb/run-*``, or ``wandb/offline-run-*`` with ``WANDB_MODE=offline``,
    for a later ``wandb sync``) go into the experiment folder ``exp_dir``: by default they would
    stay in each trial's staging folder in Ray's temp dir, which a Slurm job removes when it ends.
    Ray still adds its default CSV and JSON loggers.
    """
    from ray.tune.logger import TBXLoggerCallback

    callbacks = [_ending_cut_trials(TBXLoggerCallback)()]
    if config.wandb_project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        where = {"dir": str(exp_dir)} if exp_dir is not None else {}
        callbacks.append(_ending_cut_trials(_wandb_without_key_in_runtime_env(WandbLoggerCallback))(
            project=config.wandb_project, **where))
    return callbacks


def _wandb_without_key_in_runtime_env(callback_class: type) -> type:
    """``WandbLoggerCallback`` whose logging actors get no ``WANDB_API_KEY`` in their runtime env.

    Ray's callback copies the key into the actors' ``runtime_env`` env_vars, and Ray writes every runtime
    env it creates into its session log ``runtime_env_agent.log`` (copied to ``slurm-logs/<job>/ray-logs``).
    The actors need no copy: they run on the driver's node (Ray pins them there) in workers started by
    that node's raylet, which inherit its environment: the driver's for a local cluster, the job's under
    Slurm (submit.sbatch starts Ray inside the job, whose environment holds the key on every node).
    Private API, isolated here (Ray 2.60 ``_start_logging_actor``): the remote actor class is built as Ray
    builds it, minus the env_vars; Ray's own method then finds it and reuses it.
    """
    import ray
    from ray.air.integrations.wandb import _force_on_current_node

    class WandbWithoutKeyInRuntimeEnv(callback_class):
        def _start_logging_actor(self, trial: Any, exclude_results: list, **wandb_init_kwargs: Any) -> None:
            if not self._remote_logger_class:
                self._remote_logger_class = ray.remote(num_cpus=0, **_force_on_current_node(), max_restarts=-1,
                                                       max_task_retries=-1)(self._logger_actor_cls)
            super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    return WandbWithoutKeyInRuntimeEnv


def _new_tuner(config: ExperimentConfig, trainable: Any, name: str, storage: Path, searcher: Any,
               scheduler: Any, param_space: dict[str, Any], extra_callbacks: tuple[Any, ...] = ()) -> Any:
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
            # Ray's own generator (random, grid) holds the cap itself (strategies.build_search), and so do the
            # model-based searchers (max_concurrent_search; config.validate refuses a different cap): a second
            # limiter around BOHB would hide the on_pause its scheduler calls on the searcher.
            max_concurrent_trials=None if config.search in ("random", "grid", *LIMITED_SEARCHERS)
            else config.max_concurrent_trials or None,
            reuse_actors=config.reuse_actors,
            time_budget_s=config.time_budget_s or None,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            stop={config.model_spec.time_attr: config.max_epochs},
            checkpoint_config=checkpoint_config(config),
            # Fail-fast (the NERSC advice) unless the user asked for retries, but through the interrupt path
            # (interrupts.TrialErrorPolicy), not Tune's fail_fast, which ends trials a resume cannot finish.
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            callbacks=[*build_callbacks(config, storage / name),
                       interrupts.TrialErrorPolicy(fail_fast=config.max_failures == 0),
                       *([interrupts.TrialTimeout(config.trial_timeout_s)] if config.trial_timeout_s else []),
                       # The scheduler's rungs / perturbation times, saved with Tune's state (Tune saves no scheduler).
                       SchedulerMemory(scheduler),
                       *extra_callbacks, *_console(config, storage / name, param_space)],
            verbose=1 if config.verbose else 0,  # 0: the console below speaks instead of Ray's tables
        ),
    )


def _console(config: ExperimentConfig, exp_dir: Path, param_space: dict[str, Any]) -> list[Any]:
    """The concise console (progress and event lines), unless ``--verbose`` asked for Ray's tables."""
    from ray.tune.search.sample import Domain

    from experiments.core.console import ConsoleReporter  # imports ray.tune: only once a Tuner is built

    if config.verbose:
        return []
    fixed = {k for k, v in param_space.items() if not isinstance(v, Domain) and not isinstance(v, dict)}
    return [ConsoleReporter(config.metric, config.mode, config.max_epochs, config.model_spec.time_attr, fixed,
                            config.time_budget_s, str(exp_dir))]


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
    keep = {k: args[k] for k in ("name", "storage_path", "address", "verbose") if k in args}
    config = resolve_config(strategy, {"config": str(snapshot), **keep}, {"search": chosen.searchers[0]}, chosen.smoke)
    if "max_failures" in args and args["max_failures"] != config.max_failures:
        # Tuner.restore reloads the run settings it saved; a new value would be silently ignored.
        raise ConfigError(f"--max-failures cannot change on --resume: Tune restores the saved run settings, "
                          f"so experiment '{args['name']}' keeps max_failures {config.max_failures}")
    return config


def check_saved_state(exp_dir: Path) -> None:
    """For ``--resume``: Tune's saved state is there and readable, else a ConfigError naming the file.

    Checked before ``Tuner.restore`` (which raises a bare traceback) and before anything is written, so
    an existing ``summary.json`` of the experiment stays as it was.
    """
    states = sorted(exp_dir.glob("experiment_state-*.json"))  # the newest is the one Tune restores
    if not states:
        raise ConfigError(f"no saved Tune state to resume in {exp_dir} (no experiment_state-*.json; "
                          f"the run stopped before Tune saved one): start it again without --resume")
    if not (exp_dir / "tuner.pkl").is_file():
        raise ConfigError(f"cannot resume {exp_dir}: tuner.pkl is missing")
    try:
        data = json.loads(states[-1].read_text())
        if not isinstance(data, dict) or not isinstance(data.get("trial_data"), list):
            raise ValueError("no trial_data list")
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot resume: Tune's saved state {states[-1]} is unreadable or corrupt "
                          f"({type(err).__name__}: {str(err)[:80]}); the finished trials' folders and "
                          f"summary.json are untouched") from None


def check_space_names(config: ExperimentConfig, space: SearchSpace) -> None:
    """A space naming a hyperparameter the model's trainable does not accept fails before any trial."""
    known = config.model_spec.load_hyperparameters()
    if known is None:
        return
    patterns = config.model_spec.load_hyperparameter_patterns()
    unknown = sorted(name for name in set(space.names) | set(space.constants)
                     if name not in known and not any(p.fullmatch(name) for p in patterns.values()))
    if unknown:
        raise SpaceError(f"search space '{space.name}': model {config.model} has no hyperparameter(s) "
                         f"{', '.join(unknown)}; it accepts {', '.join([*known, *patterns])}")


def trial_options(config: ExperimentConfig) -> dict[str, Any]:
    """The model's fixed options as every trial's ``setup`` and the driver's ``prepare`` get them."""
    options = dict(config.model_options)
    options["cache_dir"] = options.get("cache_dir") or default_cache_dir()
    options["cpus_per_trial"] = config.cpus_per_trial
    # The lr schedule's length: the experiment's, never the epoch a scheduler stops a trial at.
    options["max_epochs"] = config.max_epochs
    # The scheduler's kind ("pbt", "asha", ...): under PBT a collapsed RoBERTa trial goes on, to be exploited.
    options["scheduler"] = STRATEGIES[config.strategy].scheduler
    return options


def _prepare_while_ray_starts(config: ExperimentConfig, options: dict[str, Any],
                              timeline: StartupTimeline) -> dict[str, Any]:
    """The model's driver-side ``prepare`` (data checks and cache) in a thread while Ray starts here.

    Both come before any trial, and both are mostly waiting (Ray on its processes, ``prepare`` on
    imports and the disk), so side by side they cost about the longer of the two. A data problem
    or a cluster that cannot run the trials is reported as an input error either way (the entry
    point shuts down a Ray that was started for nothing).
    """
    def timed_prepare() -> dict[str, Any]:
        timeline.mark("prepare_start")
        # Importing the model's module (torch, torch_geometric or transformers) is part of what overlaps.
        result = config.model_spec.load_prepare()(options)
        timeline.mark("prepared")
        return result

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
        prepared = pool.submit(timed_prepare)
        timeline.mark("ray_start")
        ray_error: Exception | None = None
        try:
            _connect_ray(config)  # ray.init belongs in the main thread (it sets the driver's signal handlers)
        except Exception as err:  # noqa: BLE001 - re-raised below, once prepare has finished
            ray_error = err
        timeline.mark("ray_started")
        data_error = prepared.exception()  # waits for prepare
    for err in (data_error, ray_error):  # a data problem is the one to fix first
        if err is not None:
            raise err
    return prepared.result()


def run_experiment(config: ExperimentConfig, resume: bool = False, resume_errored: bool = False,
                   timeline: StartupTimeline | None = None,
                   summary_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one experiment end to end (or resume it) and return its summary (also written to disk).

    ``timeline`` (the entry point's) collects the start-up marks that go into the summary's ``startup``.
    ``summary_fields`` go into the summary over the runner's own, before it and the record are
    written: a workflow's own reproduce and resume commands (the two-stage run's).
    """
    timeline = timeline or StartupTimeline()
    timeline.mark("driver_ready")
    name = experiment_name(config)
    exp_dir, lock = open_experiment_dir(config.storage_path, name, resume)
    try:
        return _run_locked(config, name, exp_dir, resume, resume_errored, timeline, summary_fields or {})
    except BaseException:
        if not resume:  # bad data, a cluster too small...: leave no folder of an experiment that never started
            discard_unstarted(exp_dir)
        raise
    finally:
        lock.release()


def _run_locked(config: ExperimentConfig, name: str, exp_dir: Path, resume: bool,
                resume_errored: bool, timeline: StartupTimeline, summary_fields: dict[str, Any]) -> dict[str, Any]:
    import ray
    from ray import tune

    snapshot = exp_dir / "experiment.yaml"
    if not resume:
        snapshot.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    else:
        check_saved_state(exp_dir)  # before Ray starts; Tune's restore would end in a traceback on a corrupt state
    space = load_space(config.space)
    check_accumulation(config, space)
    spec = config.model_spec
    options = trial_options(config)
    prepared = _prepare_while_ray_starts(config, options, timeline)
    spec.check_space(set(space.names), dict(space.constants), prepared)  # e.g. lr groups vs the checkpoint's depth
    storage = exp_dir.parent
    reproduce = f"python experiments/run_{config.strategy}.py --config {shlex.quote(str(snapshot))}"

    trainable_class = spec.load_trainable()
    if tracks_best(config):  # checkpoints hold the trial's best weights too (PBT keeps its model from them)
        trainable_class = keeping_best(trainable_class, config, name, str((exp_dir / TRIAL_MODELS_DIR).resolve())
                                       if keeps_model(config) else None)
    trainable = tune.with_resources(
        tune.with_parameters(trainable_class, options=options),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    timeline.mark("tuner_start")
    if resume:
        # Finished trials stay as they are; unfinished ones continue from their last checkpoint
        # (or restart, where the policy kept none); errored ones only with --resume-errored.
        tuner = tune.Tuner.restore(
            str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=resume_errored
        )
    else:
        searcher, param_space = build_search(config, space)
        tuner = _new_tuner(config, trainable, name, storage, searcher, build_scheduler(config, space), param_space,
                           (FirstResultCallback(timeline),))
    start = time.monotonic()
    if not resume:  # a resume goes on with the saved random streams (scheduler_state.SchedulerMemory)
        seed_scheduler_rngs(config.seed)  # PBT's explore and AHB's brackets draw from the global generators
    from experiments.core.console import ray_output

    with interrupts.graceful_stop_signals(), ray_output(config.verbose):  # signals stop it as Ctrl-C does
        results = tuner.fit()
    wall_time = time.monotonic() - start
    # A stop signal from here on waits for the summary (interrupts.stop_signals_held).
    with interrupts.stop_signals_held():
        previous = exp_dir / "summary.json"
        if resume and previous.is_file():  # wall time adds up over interrupted sessions
            try:
                wall_time += json.loads(previous.read_text()).get("wall_time_s") or 0.0
            except (OSError, ValueError, AttributeError):
                print(f"warning: {previous} is unreadable; its wall time is not added", file=sys.stderr)
        summary = summarize(config, name, space, results, wall_time, prepared, reproduce)
        # Trials neither finished nor errored mean the run was interrupted (Ctrl-C): Tune saved its
        # state, so the experiment can be resumed where it stopped.
        states = saved_trial_statuses(exp_dir)
        mark_unfinished(summary, states)  # num_unfinished; those trials are interrupted, not stopped early
        summary["num_not_started"] = trials_not_started(config, len(states), wall_time)  # the budget is total
        summary["resume_command"] = resume_command(config, name)
        summary["startup"] = timeline.summary()
        interrupts.mark_interrupted_trials(summary)
        mark_ending(summary, config.time_budget_s)  # ended_by, num_cut
        summary.update(summary_fields)
        try:  # PBT keeps its best model; other runs name the command that makes it (experiments/train_best.py)
            summary["best_model"] = keep_from_checkpoint(config, exp_dir, results, summary)
        except Exception as err:  # noqa: BLE001 - the results stand without the model; the summary says why
            summary["best_model"] = {**(best_model_entry(config, exp_dir, summary) or {}),
                                     "problem": f"{type(err).__name__}: {err}"}
        write_summary(exp_dir, summary)
        if interrupts.held_stop_signal():  # stopping: what can be made later is left for later
            print(f"skipped the analysis report (plots, checks) to stop promptly; make it with: "
                  f"python experiments/analyze.py {exp_dir}", flush=True)
        else:
            _report(exp_dir)  # seconds; a signal that comes during it waits for it
        ray.shutdown()
    return summary


def _report(exp_dir: Path) -> None:
    """The record's checks and plots; a failure here must never lose the summary just written."""
    try:
        from experiments.analysis.record import report  # matplotlib and pandas: imported once the trials are done

        report(exp_dir)
    except Exception as err:  # noqa: BLE001 - any analysis bug is a warning, the experiment is done
        print(f"warning: analysis failed ({type(err).__name__}: {err}); summary.json is intact; retry with "
              f"python experiments/analyze.py {exp_dir}", file=sys.stderr)


def shutdown_ray_if_started() -> None:
    """Shut down a Ray this process started or joined: an entry point's last step, whatever happened.

    A check that fails after Ray started (e.g. too many CPUs per trial) must not leave it running.
    """
    ray = sys.modules.get("ray")  # never imported: nothing to shut down, and no import for nothing
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def main(strategy: str, description: str, argv: list[str] | None = None) -> int:
    """Entry point of every ``run_<strategy>.py``: parse, validate, run, print the summary."""
    timeline = StartupTimeline()
    timeline.mark("driver_ready")  # the driver's imports end here
    parser = build_parser(strategy, description)
    args = vars(parser.parse_args(argv))
    try:
        chosen = STRATEGIES[strategy]
        config = resolve_config(strategy, args, {"search": chosen.searchers[0]}, chosen.smoke)
        if config.search not in chosen.searchers:
            raise ConfigError(
                f"run_{strategy}.py works with search algorithm(s) {', '.join(chosen.searchers)}, not '{config.search}'"
            )
        resume, resume_errored = bool(args.get("resume")), bool(args.get("resume_errored"))
        if args.get("auto_resume") and not resume:
            # A requeued Slurm job: resume its experiment if the first run saved a state, else start it.
            # The name and storage path as resolved: a --config YAML may set them (name:, storage_path:).
            name = experiment_name(config)
            if has_saved_state(Path(config.storage_path).expanduser() / name):
                args["name"], args["storage_path"] = name, config.storage_path
                resume = resume_errored = True  # trials the stop signal killed are recorded as errored
        if resume:
            config = load_snapshot_config(strategy, args)
        check_space_names(config, load_space(config.space))  # a bad space fails here, before any data is built
        summary = run_experiment(config, resume=resume, resume_errored=resume_errored, timeline=timeline)
    except INPUT_ERRORS as err:
        return print_error(err)
    finally:
        shutdown_ray_if_started()
    print(format_table(summary))
    return _report_outcome(summary)


def trials_not_started(config: ExperimentConfig, num_trials: int, session_s: float) -> int:
    """Planned trials that a stop (a signal, Ctrl-C, fail-fast) kept from starting; the resume runs them.

    Tune creates trials one by one as slots free up, so a stop between two trials leaves no
    unfinished trial behind, only fewer trials than the search plans. A run that ends because its
    time budget is spent also has fewer, by design: those are not counted. ``session_s`` is the
    experiment's run time over all its sessions: Tune saves the budget left with its state, so a
    budget is the experiment's total, not each session's.
    """
    planned = interrupts.planned_trials()
    if not planned or (config.time_budget_s and session_s >= config.time_budget_s):
        return 0
    return max(0, planned - num_trials)


def _report_outcome(summary: dict[str, Any]) -> int:
    """Exit status and the one line a user needs when the experiment did not simply finish."""
    failed = [t for t in summary["trials"] if t["errored"]]
    if failed:
        first = failed[0]
        print(f"error: trial {first['trial_id']} failed: {first['error']} (full log: "
              f"{Path(first['path']) / 'error.txt'}); finished trials are in {summary['name']}/summary.json; "
              f"retry the failed ones with: {summary['resume_command']} --resume-errored", file=sys.stderr)
        return 1
    if left_to_run(summary):
        print(f"interrupted with {summary['num_unfinished']} trial(s) unfinished and "
              f"{summary.get('num_not_started', 0)} not started; resume with: {summary['resume_command']}",
              file=sys.stderr)
        return 130
    return 0
