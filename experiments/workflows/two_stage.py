"""Two-stage seed search: ASHA over many seeds, then PBT from the best of them.

The W&B and Simple Transformers write-ups on RTE both found that the random seed moves accuracy
noticeably, and suggested: stage 1, an early-stopping search over many seeds with sensible fixed
hyperparameters; stage 2, Population Based Training starting from the best seed(s).

``python experiments/run_two_stage.py [--model cgcnn|roberta_rte] [flags]`` runs both as two
ordinary experiments of the runner (``experiments/core/runner.py``) under one parent folder
``<storage>/<name>/``:

- ``stage1_asha/``: ASHA over the seeds ``first_seed .. first_seed + num_seeds - 1``, one trial
  each (a grid over the seed), every trial with the config's ``hyperparameters``;
- ``stage2_pbt/``: PBT with ``population_per_seed`` trials for each of the ``top_seeds`` best
  seeds of stage 1 (a grid over those seeds, repeated), every member starting from the same
  hyperparameters; PBT perturbs the mutable parameters of ``pbt_space`` within its bounds.

Stage 1's seeds are ranked as successive halving ranks them: first by how far a trial got
(ASHA promoted it), then by its metric. ``two_stage.json`` and ``two_stage.md`` in the parent
folder link both stages, the seeds passed on and the best configuration, with the command that
reproduces the whole run. After an interruption, ``--resume --name NAME`` continues where it
stopped: a stage whose ``summary.json`` shows every trial finished is not run again.

Settings come from ``configs/<model>/two_stage.yaml`` (or ``--config``): the two-stage keys
(``num_seeds``, ``first_seed``, ``top_seeds``, ``population_per_seed``, ``pbt_space``,
``hyperparameters``) and any runner setting or model option, which both stages share; flags
override them (``--space`` names the PBT space, ``--hyperparameters FILE`` overlays a YAML
mapping such as the output of ``experiments/probe_batch_size.py``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from experiments.core.config import (
    CONFIGS_DIR,
    ConfigError,
    ExperimentConfig,
    build_parser,
    check_setting,
    read_yaml_config,
    resolve_config,
)
from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.core.runner import run_experiment, shutdown_ray_if_started
from experiments.core.summary import format_table, left_to_run
from search_spaces import SearchSpace, SpaceError, load_space
from search_spaces.spec import Param
from trainables.registry import MODELS

STAGE1, STAGE2 = "stage1_asha", "stage2_pbt"
RECORD = "two_stage.json"
SNAPSHOT = "two_stage.yaml"
# The two-stage keys and their types; every other key is a runner setting or a model option.
TWO_STAGE_KEYS: dict[str, type] = {
    "num_seeds": int, "first_seed": int, "top_seeds": int, "population_per_seed": int, "pbt_space": str,
    "hyperparameters": dict,
}
# Runner keys the two stages set themselves (a user value would be silently wrong).
_OWN_KEYS = {"strategy", "config_file", "model_options", "search", "space", "num_samples", "max_grid_size",
             "force"}
_RUNNER_KEYS = {f.name for f in fields(ExperimentConfig)} - _OWN_KEYS
SMOKE: dict[str, Any] = {"num_seeds": 4, "top_seeds": 2, "population_per_seed": 2, "max_epochs": 2,
                         "grace_period": 1, "reduction_factor": 2, "perturbation_interval": 1,
                         "burn_in_period": 0}


@dataclass
class TwoStageConfig:
    """The resolved settings of a two-stage run."""

    model: str
    num_seeds: int
    first_seed: int
    top_seeds: int
    population_per_seed: int
    pbt_space: str
    hyperparameters: dict[str, Any]
    shared: dict[str, Any] = field(default_factory=dict)  # runner settings and model options of both stages
    name: str | None = None
    storage_path: str = "./results"
    address: str | None = None
    config_file: str | None = None

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.num_seeds))

    @property
    def mode(self) -> str:
        return self.shared.get("mode") or MODELS[self.model].mode

    def to_yaml_dict(self) -> dict[str, Any]:
        """The flat mapping ``--config`` reads back (name and address are per invocation)."""
        return {"model": self.model, **{k: getattr(self, k) for k in TWO_STAGE_KEYS},
                "storage_path": self.storage_path, **self.shared}


# --- configuration ------------------------------------------------------------------------------------

def _check_key(key: str, known: set[str], source: str) -> None:
    if key in _OWN_KEYS:
        raise ConfigError(f"{source}: '{key}' is set by the two-stage run itself (stage 1: one trial per seed, "
                          "stage 2: top_seeds x population_per_seed); remove it")
    if key not in known:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: unknown config key '{key}'{hint}")


def resolve_two_stage(args: dict[str, Any]) -> TwoStageConfig:
    """Merge ``configs/<model>/two_stage.yaml`` (or ``--config``), ``--smoke-test`` and flags; validate."""
    path = Path(args["config"]) if "config" in args else None
    data: dict[str, Any] = read_yaml_config(path) if path else {}
    model = args.get("model") or data.get("model") or "cgcnn"
    if model not in MODELS:
        raise ConfigError(f"unknown model '{model}'; available: {', '.join(MODELS)}")
    if path is None:
        path = CONFIGS_DIR / model / "two_stage.yaml"
        data = read_yaml_config(path) if path.is_file() else {}
    source = f"config file {path}"
    if data.get("model", model) != model:
        raise ConfigError(f"{source} is for model '{data['model']}' but --model is '{model}'")
    spec = MODELS[model]
    known = set(TWO_STAGE_KEYS) | _RUNNER_KEYS | set(spec.options) | {"model"}
    for key in data:
        _check_key(key, known, source)
    values = {k: v for k, v in data.items() if k != "model"}
    if not isinstance(values.get("hyperparameters") or {}, dict):
        raise ConfigError(f"{source}: 'hyperparameters' must be a mapping of name to value")
    values["hyperparameters"] = dict(values.get("hyperparameters") or {})
    if args.get("smoke_test") or values.get("smoke_test"):
        values.update(SMOKE)
        values.update(spec.smoke_options)
    values["smoke_test"] = False  # reductions applied here; the stage configs must not apply the runner's
    for key, value in args.items():
        if key in ("config", "model", "resume", "resume_errored", "auto_resume", "smoke_test"):
            continue
        if key == "num_samples":
            raise ConfigError("--num-samples does not apply: stage 1 runs --num-seeds trials, stage 2 "
                              "--top-seeds x --population-per-seed")
        if key == "space":
            values["pbt_space"] = value
        elif key == "hyperparameters":
            values["hyperparameters"].update(read_yaml_config(Path(value)))
        elif key in TWO_STAGE_KEYS or key in _RUNNER_KEYS or key in spec.options:
            values[key] = value
        else:
            owners = [m.name for m in MODELS.values() if key in m.cli_options]
            raise ConfigError(f"--{key.replace('_', '-')} applies to model {'/'.join(owners)}, not '{model}'")
    for key in [k for k in values if k in _RUNNER_KEYS]:  # the runner's own types, as it checks a YAML file
        values[key] = check_setting(key, values[key], source)
    for key, kind in TWO_STAGE_KEYS.items():
        if key not in values:
            raise ConfigError(f"{source}: missing two-stage key '{key}'")
        if not isinstance(values[key], kind) or isinstance(values[key], bool):
            raise ConfigError(f"{source}: '{key}' must be {kind.__name__}, got {values[key]!r}")
    config = TwoStageConfig(
        model=model, **{k: values.pop(k) for k in TWO_STAGE_KEYS},
        name=values.pop("name", None), storage_path=values.pop("storage_path", "./results"),
        address=values.pop("address", None), config_file=str(path), shared=values,
    )
    validate(config)
    return config


def validate(config: TwoStageConfig) -> SearchSpace:
    """Checks that need no cluster: counts, hyperparameters against the PBT space. Returns that space."""
    for key, low in (("num_seeds", 1), ("top_seeds", 1), ("population_per_seed", 2), ("first_seed", 0)):
        if getattr(config, key) < low:
            raise ConfigError(f"{key.replace('_', '-')} must be at least {low}, got {getattr(config, key)}")
    if config.top_seeds > config.num_seeds:
        raise ConfigError(f"top-seeds ({config.top_seeds}) cannot exceed num-seeds ({config.num_seeds})")
    # The runner's checks of the shared settings (counts, resources, storage, grace period vs epochs),
    # now rather than when stage 1 or 2 starts, after the run's folder exists.
    resolve_config("asha", {"model": config.model, "storage_path": config.storage_path, **config.shared}, {}, {})
    hp = config.hyperparameters
    if "seed" in hp:
        raise ConfigError("hyperparameters must not fix 'seed': it is what stage 1 searches")
    space = load_space(config.pbt_space)
    if "seed" in space.names:
        raise ConfigError(f"pbt space '{space.name}' must not search 'seed': stage 2 takes the seeds from stage 1")
    for p in space.params:
        if p.name not in hp:
            raise ConfigError(f"hyperparameters lack '{p.name}', a parameter of pbt space '{space.name}'; give "
                              "the value every trial starts from")
        value = hp[p.name]
        if p.kind in ("float", "int") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"hyperparameter {p.name} must be a number, got {value!r}")
        if p.mutable and not p.contains(value):
            raise ConfigError(f"hyperparameter {p.name}={hp[p.name]!r} lies outside pbt space '{space.name}' "
                              f"({_describe_range(p)}), where PBT perturbs it")
    if not any(p.mutable for p in space.params):
        raise ConfigError(f"pbt space '{space.name}' has no mutable parameter for PBT to perturb")
    return space


def _describe_range(p: Param) -> str:
    return f"{p.low}..{p.high}" if p.kind in ("float", "int") else f"one of {list(p.values)}"


# --- the two stages -------------------------------------------------------------------------------------

def stage1_space(config: TwoStageConfig) -> dict[str, Any]:
    """Stage 1's search space: the seed is the one parameter (a grid: each seed once), the rest fixed."""
    # The seed is a label, not a quantity: a choice keeps the order given and gets no boundary check.
    return {
        "description": f"two-stage seed search, stage 1: seeds {config.first_seed}..{config.seeds[-1]} with fixed "
                       "hyperparameters",
        "params": {"seed": {"type": "choice", "values": config.seeds, "mutable": False}},
        "constants": dict(config.hyperparameters),
    }


def _param_entry(p: Param, start: Any) -> dict[str, Any]:
    """A spec entry for ``p`` whose grid is the single starting value (PBT moves it from there)."""
    if p.kind in ("float", "int"):
        return {"type": p.kind, "low": p.low, "high": p.high, "log": p.log, "grid": [start]}
    return {"type": p.kind, "values": list(p.values), "grid": [start]}


def stage2_space(config: TwoStageConfig, seeds: list[int], pbt_space: SearchSpace) -> dict[str, Any]:
    """Stage 2's search space: a grid over the top ``seeds``; the PBT space's mutable parameters start
    at the fixed hyperparameters and keep their bounds (PBT's mutations); everything else is constant."""
    mutable = [p for p in pbt_space.params if p.mutable]
    params: dict[str, Any] = {"seed": {"type": "choice", "values": list(seeds), "mutable": False}}
    params.update({p.name: _param_entry(p, config.hyperparameters[p.name]) for p in mutable})
    names = {p.name for p in mutable}
    return {
        "description": f"two-stage seed search, stage 2: PBT from seeds {seeds}, perturbing "
                       f"{', '.join(sorted(names))} within pbt space '{pbt_space.name}'",
        "params": params,
        "constants": {k: v for k, v in config.hyperparameters.items() if k not in names},
    }


def stage_config(config: TwoStageConfig, parent: Path, stage: str, space: dict[str, Any],
                 num_samples: int) -> ExperimentConfig:
    """One stage as an ordinary runner config: its space and runner YAML are written to ``parent``."""
    strategy = "asha" if stage == STAGE1 else "pbt"
    space_file = parent / f"{stage}.space.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    grid_points = len(space["params"]["seed"]["values"])
    runner_yaml = {"model": config.model, **config.shared, "search": "grid", "space": str(space_file),
                   "num_samples": num_samples, "max_grid_size": max(100, grid_points * num_samples)}
    config_file = parent / f"{stage}.config.yaml"
    config_file.write_text(yaml.safe_dump(runner_yaml, sort_keys=False))
    args: dict[str, Any] = {"config": str(config_file), "name": stage, "storage_path": str(parent)}
    if config.address:
        args["address"] = config.address
    try:
        return resolve_config(strategy, args, {}, {})
    except SpaceError as err:
        raise ConfigError(f"{stage}: {err}") from None


def rank_seeds(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Stage 1's trials, best first, as successive halving ranks them: first by how far a trial got
    (how many rungs ASHA promoted it through), then by its last metric. Trials that diverged or
    collapsed to one class come after every healthy one (their metric says nothing about the seed);
    errored trials and trials without a finite metric are left out; each seed appears once."""
    sign = 1 if summary["mode"] == "min" else -1
    finished = [t for t in summary["trials"]
                if not t["errored"] and isinstance(t["metric"], (int, float)) and math.isfinite(t["metric"])]
    ranked = sorted(finished, key=lambda t: (bool(t.get("diverged") or t.get("collapsed")), -t["iteration"],
                                             sign * t["metric"]))
    seen: set[int] = set()
    rows = []
    for t in ranked:
        seed = int(t["config"]["seed"])
        if seed not in seen:
            seen.add(seed)
            rows.append({"seed": seed, "metric": t["metric"], "iteration": t["iteration"], "trial_id": t["trial_id"],
                         "collapsed": bool(t.get("collapsed")), "diverged": bool(t.get("diverged")),
                         **{k: v for k, v in t.items() if k.startswith("test_")}})
    return rows


def top_seeds(summary: dict[str, Any], k: int) -> list[int]:
    """The ``k`` best seeds of stage 1 (see :func:`rank_seeds`); a ConfigError if fewer finished."""
    ranked = rank_seeds(summary)
    if len(ranked) < k:
        raise ConfigError(f"stage 1 finished only {len(ranked)} seed(s) with a finite metric; stage 2 needs "
                          f"top-seeds {k}")
    return [row["seed"] for row in ranked[:k]]


def completed_summary(exp_dir: Path, retry_errored: bool = False) -> dict[str, Any] | None:
    """A stage's summary if the stage is over (every trial finished; errored ones count as over
    unless ``retry_errored``), else None: it has not run, or it was interrupted."""
    path = exp_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if left_to_run(summary) or (retry_errored and summary.get("num_errored")):
        return None
    return summary


def run_stage(stage: ExperimentConfig, exp_dir: Path, retry_errored: bool,
              links: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """Run a stage, resume it, or (if it is over) read its summary. Returns the summary and whether it ran.

    ``links`` point the stage's summary at the two-stage run: its own run_<strategy> command cannot
    rerun a stage whose seeds come from another experiment, so the reproduce and resume commands
    are the two-stage ones (the runner writes them into the summary and the record).
    """
    done = completed_summary(exp_dir, retry_errored)
    if done is not None:
        print(f"{exp_dir.name}: already complete ({exp_dir / 'summary.json'}); not run again", flush=True)
        return done, False
    started = (exp_dir / "experiment.yaml").is_file() and any(exp_dir.glob("experiment_state-*.json"))
    print(f"{exp_dir.name}: {'resuming' if started else 'starting'} ({stage.strategy}, {stage.num_samples} "
          f"trial(s) per grid point)", flush=True)
    return run_experiment(stage, resume=started, resume_errored=started and retry_errored, summary_fields=links), True


# --- the record -------------------------------------------------------------------------------------------

def _stage_entry(exp_dir: Path, summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {"name": summary["name"], "path": str(exp_dir), "summary": str(exp_dir / "summary.json"),
            "strategy": summary["strategy"], "num_trials": summary["num_trials"],
            "num_early_stopped": summary.get("num_early_stopped"), "num_errored": summary["num_errored"],
            "num_unfinished": summary.get("num_unfinished", 0), "wall_time_s": summary["wall_time_s"],
            "best": summary.get("best")}


def build_record(config: TwoStageConfig, parent: Path, status: str, stage1: dict[str, Any] | None,
                 seeds: list[int] | None, stage2: dict[str, Any] | None, reproduce: str,
                 resume: str) -> dict[str, Any]:
    """two_stage.json: both stages, the seeds passed from one to the other, the best result, the commands."""
    spec = MODELS[config.model]
    best = (stage2 or {}).get("best")
    return {
        "name": parent.name,
        "model": config.model,
        "status": status,
        "metric": config.shared.get("metric") or spec.metric,
        "mode": config.mode,
        "config_file": config.config_file,
        "snapshot": str(parent / SNAPSHOT),
        "hyperparameters": config.hyperparameters,
        "pbt_space": config.pbt_space,
        "seeds_searched": config.seeds,
        "top_seeds": seeds,
        "population_per_seed": config.population_per_seed,
        "seed_ranking": rank_seeds(stage1) if stage1 else None,
        "stage1": _stage_entry(parent / STAGE1, stage1),
        "stage2": _stage_entry(parent / STAGE2, stage2),
        "best": best,
        "wall_time_s": round(sum(s["wall_time_s"] for s in (stage1, stage2) if s), 2),
        "reproduce_command": reproduce,
        "resume_command": resume,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def format_record(record: dict[str, Any], top: int = 10) -> str:
    """two_stage.md: the record in Markdown."""
    metric, test_key = record["metric"], MODELS[record["model"]].test_metric
    lines = [f"# Two-stage seed search {record['name']}", "",
             f"- model: {record['model']}; status: {record['status']}; metric: {metric} ({record['mode']})",
             f"- config: {record['config_file']} (resolved: {record['snapshot']})",
             "- fixed hyperparameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in record["hyperparameters"].items()),
             f"- stage 1 (ASHA over seeds): {len(record['seeds_searched'])} seeds "
             f"({record['seeds_searched'][0]}..{record['seeds_searched'][-1]})"
             + (f", [summary]({STAGE1}/summary.md)" if record["stage1"] else ", not run yet"),
             f"- stage 2 (PBT, space {record['pbt_space']}): seeds {record['top_seeds'] or '-'} x "
             f"{record['population_per_seed']} trials"
             + (f", [summary]({STAGE2}/summary.md)" if record["stage2"] else ", not run yet"),
             f"- wall time: {record['wall_time_s']:.1f} s"]
    if record["seed_ranking"]:
        lines += ["", "## Stage 1: seeds, best first", "", f"| seed | {metric} | {test_key} | epochs |",
                  "|---|---|---|---|"]
        lines += [f"| {r['seed']} | {_fmt(r['metric'])} | {_fmt(r.get(test_key))} | {r['iteration']} |"
                  for r in record["seed_ranking"][:top]]
    for label, key in (("Stage 1 best", "stage1"), ("Stage 2 best (the result)", "stage2")):
        best = (record[key] or {}).get("best")
        if best:
            lines += ["", f"## {label}", "", f"{metric} {_fmt(best['metric'])}, {test_key} {_fmt(best.get(test_key))} "
                      f"(trial {best['trial_id']}, {best['iteration']} iterations)", "",
                      "| parameter | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in best["config"].items()]
    lines += ["", "## Reproduce", "", "```", record["reproduce_command"], "```", "",
              "Resume after an interruption (a finished stage is not run again):", "", "```",
              record["resume_command"], "```", ""]
    return "\n".join(lines)


def write_record(parent: Path, record: dict[str, Any]) -> None:
    for name, text in ((RECORD, json.dumps(record, indent=2) + "\n"), ("two_stage.md", format_record(record))):
        tmp = parent / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(parent / name)


# --- entry point ------------------------------------------------------------------------------------------

def run_two_stage(config: TwoStageConfig, retry_errored: bool = False) -> tuple[dict[str, Any], int]:
    """Run (or resume) both stages under ``<storage_path>/<name>``; returns the record and an exit status."""
    pbt_space = validate(config)
    name = config.name or default_two_stage_name(config)
    storage = Path(config.storage_path).expanduser().resolve()
    parent = storage / name
    parent.mkdir(parents=True, exist_ok=True)
    snapshot = parent / SNAPSHOT
    if not snapshot.is_file():
        snapshot.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    reproduce = f"python experiments/run_two_stage.py --config {shlex.quote(str(snapshot))}"
    resume = (f"python experiments/run_two_stage.py --resume --name {shlex.quote(name)} "
              f"--storage-path {shlex.quote(str(storage))}")

    links = {"reproduce_command": reproduce, "resume_command": resume, "two_stage_record": str(parent / RECORD)}

    def finish(status: str, stage1: Any, seeds: Any, stage2: Any, code: int) -> tuple[dict[str, Any], int]:
        record = build_record(config, parent, status, stage1, seeds, stage2, reproduce, resume)
        write_record(parent, record)
        return record, code

    stage1_cfg = stage_config(config, parent, STAGE1, stage1_space(config), num_samples=1)
    stage1, _ = run_stage(stage1_cfg, parent / STAGE1, retry_errored, links)
    problem = _stage_problem(stage1, "stage 1", resume)
    if problem:
        print(problem[0], file=sys.stderr)
        return finish(problem[1], stage1, None, None, problem[2])
    seeds = top_seeds(stage1, config.top_seeds)
    ranking = ", ".join(f"{r['seed']} ({_fmt(r['metric'])}, {r['iteration']} ep)" for r in rank_seeds(stage1)[:8])
    print(f"stage 1: seeds by {stage1['metric']}, best first: {ranking}\n"
          f"stage 1: best seeds {seeds} (of {len(config.seeds)}); stage 2 starts PBT from them", flush=True)

    space2 = stage2_space(config, seeds, pbt_space)
    stage2_cfg = stage_config(config, parent, STAGE2, space2, num_samples=config.population_per_seed)
    stage2, _ = run_stage(stage2_cfg, parent / STAGE2, retry_errored, links)
    print(format_table(stage2))
    problem = _stage_problem(stage2, "stage 2", resume)
    if problem:
        print(problem[0], file=sys.stderr)
        return finish(problem[1], stage1, seeds, stage2, problem[2])
    record, code = finish("complete", stage1, seeds, stage2, 0)
    print(f"two-stage record: {parent / 'two_stage.md'} (stage 1 best {_fmt((stage1.get('best') or {}).get('metric'))}"
          f", stage 2 best {_fmt((stage2.get('best') or {}).get('metric'))} {stage2['metric']})")
    return record, code


def _stage_problem(summary: dict[str, Any], label: str, resume: str) -> tuple[str, str, int] | None:
    """The line to print, record status and exit status of a stage that did not simply finish."""
    if left_to_run(summary):
        return (f"interrupted in {label} with {summary.get('num_unfinished', 0)} trial(s) unfinished and "
                f"{summary.get('num_not_started', 0)} not started; resume with: {resume}",
                f"interrupted in {label}", 130)
    if summary.get("num_errored"):
        failed = next(t for t in summary["trials"] if t["errored"])
        return (f"error: {label}: trial {failed['trial_id']} failed: {failed['error']} (full log: "
                f"{Path(failed['path']) / 'error.txt'}); retry with: {resume} --resume-errored",
                f"failed in {label}", 1)
    return None


def load_snapshot(args: dict[str, Any]) -> TwoStageConfig:
    """For ``--resume``: the settings the run ``--name`` under ``--storage-path`` started with."""
    if "name" not in args:
        raise ConfigError("--resume needs --name, the two-stage run to resume (a folder under --storage-path)")
    storage = Path(args.get("storage_path", "./results")).expanduser()
    snapshot = storage / args["name"] / SNAPSHOT
    if not snapshot.is_file():
        raise ConfigError(f"no two-stage run to resume at {storage / args['name']} (no {SNAPSHOT} there)")
    keep = {k: args[k] for k in ("name", "storage_path", "address", "max_failures") if k in args}
    return resolve_two_stage({"config": str(snapshot), **keep})


def build_two_stage_parser() -> argparse.ArgumentParser:
    """The runner's shared CLI (``--space`` names the PBT space) plus the two-stage flags."""
    own_help = {"--config": "YAML config (default configs/<model>/two_stage.yaml)",
                "--space": "stage 2: the search space whose mutable parameters PBT perturbs (default from the config)",
                "--num-samples": "does not apply (use --num-seeds, --top-seeds, --population-per-seed)"}
    p = build_parser("pbt", "Two-stage seed search: ASHA over many seeds, then PBT from the best of them.",
                     prog="run_two_stage.py", flag_help=own_help)
    p.add_argument("--num-seeds", type=int, help="stage 1: seeds to try (one ASHA trial each)")
    p.add_argument("--first-seed", type=int, help="stage 1: the first seed")
    p.add_argument("--top-seeds", type=int, help="stage 2: how many of the best seeds PBT starts from")
    p.add_argument("--population-per-seed", type=int, help="stage 2: PBT trials per seed (at least 2)")
    p.add_argument("--hyperparameters", metavar="YAML",
                   help="YAML mapping over the config's fixed hyperparameters (e.g. probe_batch_size.py output)")
    return p


def default_two_stage_name(config: TwoStageConfig) -> str:
    """``<model>_two_stage_<tag>``: the tag is ``$HPO_EXPERIMENT_TAG`` (a Slurm job's id, so a requeued job
    finds its run again, as the runner's default names do) or the start time."""
    return f"{config.model}_two_stage_{os.environ.get('HPO_EXPERIMENT_TAG') or time.strftime('%Y%m%d-%H%M%S')}"


def main(argv: list[str] | None = None) -> int:
    args = vars(build_two_stage_parser().parse_args(argv))
    try:
        if args.get("auto_resume") and not args.get("resume"):
            # A requeued Slurm job: resume the run if the first allocation started it, else start it.
            config = resolve_two_stage(args)
            name = config.name or default_two_stage_name(config)
            if (Path(config.storage_path).expanduser() / name / SNAPSHOT).is_file():
                args.update(resume=True, resume_errored=True, name=name, storage_path=config.storage_path)
            else:
                args["name"] = name  # resolved again below, with this name
        if args.get("resume"):
            config = load_snapshot(args)
        else:
            config = resolve_two_stage(args)
            if (config.name and not args.get("auto_resume")
                    and (Path(config.storage_path).expanduser() / config.name / SNAPSHOT).is_file()):
                raise ConfigError(f"two-stage run '{config.name}' already exists under {config.storage_path}; "
                                  "continue it with --resume or choose another --name")
        _, code = run_two_stage(config, retry_errored=bool(args.get("resume_errored")))
    except INPUT_ERRORS as err:
        return print_error(err)
    finally:  # as the runner does: never leave a Ray started by a failed check running
        shutdown_ray_if_started()
    return code


if __name__ == "__main__":
    sys.exit(main())
