"""Experiment configuration: defaults, YAML config files and the one CLI parser every script shares.

Precedence, lowest first: the built-in defaults below and the model's own option defaults
(``trainables/registry.py``), then the YAML file (``--config``, default
``configs/<model>/<strategy>.yaml``), then ``--smoke-test`` reductions, then explicit CLI flags.
"""

from __future__ import annotations

import argparse
import difflib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from trainables.cache import default_cache_dir as trainables_cache_dir
from trainables.registry import MODELS, ModelSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "configs"
SEARCHERS = ("random", "grid", "quasirandom", "hyperopt", "dragonfly", "optuna", "bohb")
# Searchers that limit their own proposals to max_concurrent_search (Ray's ConcurrencyLimiter).
LIMITED_SEARCHERS = ("hyperopt", "dragonfly", "optuna", "bohb")


def default_cache_dir() -> str:
    """Where datasets and tokenisations are cached (``trainables.cache``), as the string a config holds."""
    return str(trainables_cache_dir())


class ConfigError(ValueError):
    """A configuration a run cannot start with; the message is one line saying what to fix."""


@dataclass
class ExperimentConfig:
    """Everything that defines one experiment; every field is also a YAML key."""

    strategy: str
    model: str = "cgcnn"
    search: str = "random"
    space: str | None = None  # None: the model's default space
    metric: str | None = None  # None: the model's metric (val_mae for CGCNN)
    mode: str | None = None
    num_samples: int = 20
    max_epochs: int = 12
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0  # 0: as many as the cluster's resources allow
    grace_period: int = 3  # ASHA / async HyperBand: epochs before the first stopping decision
    reduction_factor: float = 3.0
    brackets: int = 1
    perturbation_interval: int = 1  # PBT: epochs between perturbations
    burn_in_period: int = 0  # PBT: epochs before a member's first perturbation
    synch: bool = False  # PBT: perturb when every member has reached the interval (Ray's synchronous PBT)
    n_initial_points: int = 15  # HyperOpt: random trials before TPE (the W&B write-up: 15 of 60)
    max_concurrent_search: int = 4  # HyperOpt / Dragonfly: proposals outstanding at once
    quasirandom_sampler: str = "sobol"  # quasirandom: "sobol" or "halton" (scrambled, seeded)
    max_grid_size: int = 100  # grid: refuse more trials than this unless force
    force: bool = False  # grid: run even above max_grid_size
    checkpoint_frequency: int = 0  # epochs between checkpoints; 0: only where the scheduler needs them
    reuse_actors: bool = True  # run later trials in finished trials' actors (reset_config: no re-setup)
    max_failures: int = 0  # restarts of a crashed trial (from its last checkpoint) before it counts as errored
    time_budget_s: float = 0.0  # wall-clock budget of the whole experiment (Tune stops it there); 0: none
    trial_timeout_s: float = 0.0  # end a trial that reports nothing for this long as errored; 0: never
    wandb_project: str | None = None  # log to W&B too; the API key comes only from WANDB_API_KEY / `wandb login`
    storage_path: str = "./results"
    name: str | None = None
    seed: int = 0
    address: str | None = None
    smoke_test: bool = False
    verbose: bool = False  # Ray's full per-trial tables instead of the concise console (experiments/core/console.py)
    config_file: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    @property
    def model_spec(self) -> ModelSpec:
        return MODELS[self.model]

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved configuration as a flat mapping that ``--config`` reads back."""
        data = asdict(self)
        data.update(data.pop("model_options"))
        for key in ("strategy", "config_file", "address", "name", "verbose"):
            data.pop(key)
        # The smoke-test reductions are already applied to the values; applying them again on
        # read-back would override flags the user gave on top of --smoke-test.
        data["smoke_test"] = False
        return data


# Keys a YAML file may set: every field except the bookkeeping ones, plus each model's options.
_RUNNER_KEYS = {f.name for f in fields(ExperimentConfig)} - {"strategy", "config_file", "model_options"}
_FIELD_TYPES = {
    "num_samples": int, "max_epochs": int, "max_concurrent_trials": int, "grace_period": int,
    "brackets": int, "perturbation_interval": int, "burn_in_period": int, "synch": bool, "n_initial_points": int,
    "max_concurrent_search": int,
    "max_grid_size": int, "force": bool, "checkpoint_frequency": int, "seed": int, "max_failures": int,
    "cpus_per_trial": float, "gpus_per_trial": float, "reduction_factor": float, "smoke_test": bool,
    "time_budget_s": float, "trial_timeout_s": float, "reuse_actors": bool, "verbose": bool,
}


def _check_type(key: str, value: Any, expected: type, source: str) -> Any:
    if value is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool or isinstance(value, bool):
        if not isinstance(value, bool) or expected is not bool:
            raise ConfigError(f"{source}: '{key}' must be {expected.__name__}, got {value!r}")
        return value
    if not isinstance(value, expected):
        raise ConfigError(f"{source}: '{key}' must be {expected.__name__}, got {value!r}")
    return value


def check_setting(key: str, value: Any, source: str) -> Any:
    """A runner setting read from a file, checked against the type of its field (ConfigError naming ``source``)."""
    return _check_type(key, value, _FIELD_TYPES.get(key, str), source)


def _unknown_key(key: str, known: set[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"{source}: unknown config key '{key}'{hint}")


def read_yaml_config(path: Path) -> dict[str, Any]:
    """Read one YAML config file; a missing, unreadable or non-mapping file is a ConfigError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def build_parser(strategy: str, description: str, prog: str | None = None,
                 flag_help: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The CLI every ``run_<strategy>.py`` shares. Flags left out keep the YAML / default value.

    A workflow composed of several experiments (the two-stage run) reuses it with its own ``prog``
    and ``flag_help``: new help texts for the flags that mean something else there.
    """
    p = argparse.ArgumentParser(
        prog=prog or f"run_{strategy}.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    reworded = flag_help or {}

    def add(flag: str, **kwargs: Any) -> None:
        p.add_argument(flag, **{**kwargs, "help": reworded.get(flag, kwargs.get("help"))})

    add("--model", help="model to tune: " + ", ".join(MODELS) + " (default cgcnn)")
    add("--config", help=f"YAML config (default configs/<model>/{strategy}.yaml)")
    add("--space", help="search space: a name in search_spaces/ or a .yaml path")
    if strategy not in ("grid", "pbt", "bohb"):
        add("--search", help="search algorithm: " + ", ".join(s for s in SEARCHERS if s not in ("grid", "bohb")))
    if strategy == "grid":
        add("--force", action="store_true", help="run a grid larger than max_grid_size")
    add("--num-samples", type=int, help="number of trials (grid: repeats of the full grid)")
    add("--max-epochs", type=int, help="epochs (training iterations) per trial at most")
    if strategy == "pbt":
        add("--perturbation-interval", type=int, help="epochs between a member's perturbations")
        add("--burn-in-period", type=int, help="epochs before a member's first perturbation")
        add("--synch", action=argparse.BooleanOptionalAction,
            help="perturb only once every member has reached the interval (compare at one epoch)")
    if strategy in ("asha", "ahb"):
        add("--grace-period", type=int, help="epochs before the first stopping decision")
    if strategy in ("asha", "ahb", "bohb"):
        add("--reduction-factor", type=float, help="1 / the share of trials promoted at each rung")
    if strategy == "ahb":
        add("--brackets", type=int, help="async HyperBand brackets (1 is ASHA)")
    add("--cpus-per-trial", type=float, help="CPUs reserved per trial (also torch threads)")
    add("--gpus-per-trial", type=float, help="GPUs per trial; 0.25 packs four trials per GPU")
    add("--max-concurrent-trials", type=int, help="cap on trials running at once (0: no cap)")
    add("--storage-path", help="where experiment folders go (default ./results)")
    add("--name", help="experiment name (default <model>_<strategy>_<search>_<timestamp>)")
    add("--seed", type=int, help="seed of the search algorithm and of every trial's model init")
    add("--address", help="join a running Ray cluster (e.g. 10.0.0.1:6379 or 'auto')")
    add("--smoke-test", action="store_true", help="a complete tiny run in well under a minute")
    add("--verbose", action="store_true", help="Ray's full per-trial tables instead of one progress line and events")
    add("--max-failures", type=int, help="restarts of a crashed trial before it counts as errored")
    add("--time-budget-s", type=float, help="wall-clock budget of the experiment in seconds (0: none)")
    add("--trial-timeout-s", type=float,
        help="end a trial that reports nothing for this many seconds (hung) as errored and go on (0: never)")
    add("--wandb", dest="wandb_project", metavar="PROJECT",
        help="also log to this W&B project (API key from WANDB_API_KEY or `wandb login`; "
             "WANDB_MODE=offline needs none)")
    add("--checkpoint-frequency", type=int, help="epochs between checkpoints (0: only if needed)")
    add("--resume", action="store_true",
        help="resume the experiment --name under --storage-path after an interruption")
    add("--resume-errored", action="store_true", help="with --resume: also retry errored trials")
    add("--auto-resume", action="store_true",
        help="resume the experiment if its folder holds saved state, else start it (what a requeued "
             "Slurm job does; also retries errored trials)")
    seen: set[str] = set()
    for spec in MODELS.values():
        for option in spec.cli_options:
            if option in seen:
                continue
            seen.add(option)
            default = spec.options[option]
            kind = type(default) if default is not None else str
            users = [m.name for m in MODELS.values() if option in m.cli_options]
            add("--" + option.replace("_", "-"), type=kind, dest=option,
                help=f"{option} for {'/'.join(users)} (default from the config: {default})")
    return p


def resolve_config(
    strategy: str, args: dict[str, Any], defaults: dict[str, Any], smoke_overrides: dict[str, Any]
) -> ExperimentConfig:
    """Merge defaults (the dataclass's, then the strategy's ``defaults``), the YAML file,
    smoke-test reductions and CLI flags into one validated config."""
    model = args.get("model")
    config_path = args.get("config")
    yaml_data: dict[str, Any] = {}
    if config_path is not None:
        yaml_data = read_yaml_config(Path(config_path))
    else:
        default_path = CONFIGS_DIR / (model or "cgcnn") / f"{strategy}.yaml"
        if default_path.is_file():
            config_path = str(default_path)
            yaml_data = read_yaml_config(default_path)
    source = f"config file {config_path}" if config_path else "config"
    model = model or yaml_data.get("model", "cgcnn")
    if model not in MODELS:
        raise ConfigError(f"unknown model '{model}'; available: {', '.join(MODELS)}")
    spec = MODELS[model]
    if yaml_data.get("model", model) != model:
        raise ConfigError(f"{source} is for model '{yaml_data['model']}' but --model is '{model}'")

    known = _RUNNER_KEYS | set(spec.options)
    values: dict[str, Any] = dict(defaults)
    options = dict(spec.options)
    for key, value in yaml_data.items():
        if key not in known:
            raise _unknown_key(key, known, source)
        if key in spec.options:
            options[key] = value
        else:
            values[key] = check_setting(key, value, source)

    smoke = bool(args.get("smoke_test", values.get("smoke_test", False)))
    if smoke:
        for key, value in {**smoke_overrides, **spec.smoke_options}.items():
            (options if key in spec.options else values)[key] = value

    for key, value in args.items():
        if key in ("config", "resume", "resume_errored", "auto_resume"):  # actions, not settings
            continue
        if key in spec.options:
            options[key] = value
        elif key in _RUNNER_KEYS:
            values[key] = value
        else:  # a flag of another model's options
            owners = [m.name for m in MODELS.values() if key in m.cli_options]
            raise ConfigError(f"--{key.replace('_', '-')} applies to model {'/'.join(owners)}, not '{model}'")

    values["model"] = model
    values["smoke_test"] = smoke
    config = ExperimentConfig(strategy=strategy, config_file=config_path, model_options=options, **values)
    config.space = config.space or spec.default_space
    config.metric = config.metric or spec.metric
    config.mode = config.mode or spec.mode
    validate(config)
    return config


def _wandb_credentials() -> bool:
    """Whether W&B can authenticate: offline mode, WANDB_API_KEY, or a `wandb login` entry in ~/.netrc."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def max_brackets(max_epochs: int, grace_period: int, reduction_factor: float) -> int:
    """How many brackets of Ray's ``AsyncHyperBandScheduler`` have a rung: s_max + 1.

    Bracket ``s`` has ``int(log(max_t / grace) / log(eta) - s + 1)`` rungs (Ray 2.60's ``_Bracket``,
    computed here the same way, float rounding included), so brackets beyond s_max have none and
    never stop a trial; the last one that has a rung holds only max_t: Hyperband's no-stopping bracket.
    """
    import numpy as np

    return int(np.log(max_epochs / grace_period) / np.log(reduction_factor)) + 1


def _check_brackets(config: ExperimentConfig) -> None:
    """ASHA / async HyperBand settings that would silently run random search: one-line ConfigErrors."""
    if config.grace_period == config.max_epochs:
        raise ConfigError(
            f"grace_period ({config.grace_period}) equals max-epochs: {config.strategy.upper()} would never stop a "
            f"trial early (its only rung is the last epoch); lower --grace-period or use run_random.py")
    allowed = max_brackets(config.max_epochs, config.grace_period, config.reduction_factor)
    if config.strategy == "ahb" and config.brackets > allowed:
        raise ConfigError(
            f"brackets {config.brackets} is more than max-epochs {config.max_epochs}, grace-period "
            f"{config.grace_period} and reduction-factor {config.reduction_factor:g} allow ({allowed}, the last of "
            f"them never stopping a trial); brackets beyond it have no rungs and run plain random search")


def _check_bohb_budgets(config: ExperimentConfig) -> None:
    """HyperBandForBOHB's smallest budget, ``int(max_t / eta^s_max)``, must be at least one epoch.

    Ray 2.60 rounds s_max (``round(log(max_t) / log(eta))``), so max_t 20 with eta 3 gives a
    bracket whose trials would get 0 epochs.
    """
    import numpy as np

    s_max = int(np.round(np.log(config.max_epochs) / np.log(config.reduction_factor)))
    if s_max < 1 or int(config.max_epochs * config.reduction_factor ** -s_max) < 1:
        raise ConfigError(
            f"BOHB with max-epochs {config.max_epochs} and reduction-factor {config.reduction_factor:g} gives "
            f"HyperBand budgets below one epoch (or a single bracket); use a max-epochs that is a power of "
            f"the reduction factor, e.g. {int(round(config.reduction_factor ** max(s_max, 1)))}")


def validate(config: ExperimentConfig) -> None:
    """Checks that need no cluster and no data: each failure is a one-line ConfigError."""
    if config.search not in SEARCHERS:
        close = difflib.get_close_matches(config.search, SEARCHERS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown search algorithm '{config.search}'{hint}; available: {', '.join(SEARCHERS)}")
    if config.quasirandom_sampler not in ("sobol", "halton"):
        raise ConfigError(f"quasirandom_sampler must be 'sobol' or 'halton', got '{config.quasirandom_sampler}'")
    if config.n_initial_points < 0:
        raise ConfigError(f"n_initial_points must be 0 or more, got {config.n_initial_points}")
    if config.search == "dragonfly":
        from experiments.searchers.dragonfly import import_dragonfly

        import_dragonfly()  # a missing optional extra fails here, before any data is built or Ray starts
    if config.search == "bohb":
        from experiments.searchers.bohb import check_bohb_installed

        check_bohb_installed()
    if config.search == "grid" and not config.force:
        from search_spaces import load_space
        from search_spaces.compile import grid_size

        points = grid_size(load_space(config.space))
        if points * config.num_samples > config.max_grid_size:
            raise ConfigError(
                f"the grid of search space '{config.space}' has {points} points x {config.num_samples} repeat(s) = "
                f"{points * config.num_samples} trials, above max_grid_size {config.max_grid_size}; "
                "shrink the grid, raise max_grid_size or pass --force"
            )
    if config.mode not in ("min", "max"):
        raise ConfigError(f"mode must be 'min' or 'max', got '{config.mode}'")
    if config.wandb_project and not _wandb_credentials():
        raise ConfigError("--wandb needs a W&B API key: set WANDB_API_KEY or run `wandb login` "
                          "(or WANDB_MODE=offline to log locally); never put the key in a config")
    for key in ("num_samples", "max_epochs", "grace_period", "brackets", "perturbation_interval",
                "max_concurrent_search", "max_grid_size"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key.replace('_', '-')} must be a positive integer, got {getattr(config, key)}")
    for key in ("max_concurrent_trials", "checkpoint_frequency", "max_failures", "time_budget_s", "burn_in_period",
                "trial_timeout_s"):
        if getattr(config, key) < 0:
            raise ConfigError(f"{key.replace('_', '-')} must be 0 or more, got {getattr(config, key)}")
    if config.cpus_per_trial <= 0:
        raise ConfigError(f"cpus-per-trial must be positive, got {config.cpus_per_trial}")
    if config.gpus_per_trial < 0:
        raise ConfigError(f"gpus-per-trial must be 0 or more, got {config.gpus_per_trial}")
    if config.gpus_per_trial > 1 and config.gpus_per_trial != int(config.gpus_per_trial):
        raise ConfigError(f"gpus-per-trial above 1 must be a whole number, got {config.gpus_per_trial}")
    if config.reduction_factor <= 1:
        raise ConfigError(f"reduction_factor must be above 1, got {config.reduction_factor}")
    first_perturbation = max(config.burn_in_period, config.perturbation_interval)
    if config.strategy == "pbt" and first_perturbation >= config.max_epochs:
        raise ConfigError(
            f"PBT would never perturb: its first perturbation comes at epoch {first_perturbation} "
            f"(max of burn-in-period {config.burn_in_period} and perturbation-interval "
            f"{config.perturbation_interval}), not before max-epochs {config.max_epochs}")
    if config.strategy in ("asha", "ahb") and config.grace_period > config.max_epochs:
        raise ConfigError(
            f"grace_period ({config.grace_period}) must not exceed max-epochs ({config.max_epochs})"
        )
    if config.strategy in ("asha", "ahb"):
        _check_brackets(config)
    if config.strategy == "bohb":
        _check_bohb_budgets(config)
    if config.max_concurrent_trials and config.search in LIMITED_SEARCHERS \
            and config.max_concurrent_trials != config.max_concurrent_search:
        # Ray raises a bare ValueError at fit for a limiter and a different max_concurrent_trials.
        raise ConfigError(
            f"--max-concurrent-trials {config.max_concurrent_trials} with search {config.search}: its proposals are "
            f"already held to max_concurrent_search {config.max_concurrent_search}; set max_concurrent_search "
            f"to {config.max_concurrent_trials} instead (or leave --max-concurrent-trials 0)")
    storage = Path(config.storage_path).expanduser()
    existing = next((p for p in [storage, *storage.absolute().parents] if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ConfigError(f"storage path {config.storage_path} is not a writable directory")
