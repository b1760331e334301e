"""A pool of recorded learning curves: what the simulation replays.

A pool is read from one or more finished experiments whose trials ran full length (random search
or grid: ``scheduler`` fifo in ``summary.json``), or from a saved pool file
(``*.json.gz``, the format :func:`save_pool` writes; ``--pool builtin`` and ``--pool cgcnn_six`` are the ones shipped in
``experiments/simulation/pools/``). Per trial it holds the configuration, the tuned metric and
the held-out test metric after every epoch, and the seconds each epoch took (Ray's
``time_this_iter_s``). A trial that ended itself early (a diverged CGCNN trial reports
``done``) is kept with its shorter curve: that is how such a configuration behaves under any
strategy. Trials cut short by a time budget, an interruption or an error are left out.

The per-trial overheads a real run pays between epochs are measured from the recorded
timestamps (:func:`measure_overheads`), see :class:`Overheads`.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments.simulation.errors import SimulationError

POOL_FORMAT = "hpo-suite-pool/1"
POOLS_DIR = Path(__file__).resolve().parent / "pools"
BUILTIN_POOL = POOLS_DIR / "cgcnn_builtin.json.gz"  # --pool builtin: the default experiment's space
SIX_POOL = POOLS_DIR / "cgcnn_six.json.gz"  # --pool cgcnn_six: the NERSC study's six hyperparameters


@dataclass(frozen=True)
class RecordedTrial:
    """One recorded trial: its configuration and, per epoch, metric, test metric and seconds.

    ``values[e]`` is the metric reported after epoch ``e + 1``; ``seconds[e]`` that epoch's
    ``time_this_iter_s``. ``ends_itself`` marks a curve shorter than the pool's ``max_epochs``
    because the trial reported ``done`` (diverged), not because anything cut it.
    """

    key: str  # unique in the pool: "<experiment>/<trial_id>"
    config: dict[str, Any]
    values: np.ndarray
    seconds: np.ndarray
    tests: np.ndarray | None = None
    ends_itself: bool = False

    @property
    def epochs(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Overheads:
    """Seconds a trial slot spends outside epochs, measured from the recorded timestamps.

    - ``first_start_s``: from the experiment's start to the first epoch of a slot's first trial
      (Tune's start, the actor's process start-up, ``setup`` with its dataset load);
    - ``switch_s``: from a trial's last epoch to the next trial's first epoch in the same actor
      (``reuse_actors``: Tune stopping the one and starting the other, ``reset_config``);
    - ``between_results_s``: from the end of one epoch to the start of the next in one trial
      (result reporting, Tune's scheduling and logging, checkpoints if any).

    Each is the median of its ``samples`` measurements (0 where none could be measured).
    """

    first_start_s: float = 0.0
    switch_s: float = 0.0
    between_results_s: float = 0.0
    samples: dict[str, int] = field(default_factory=dict)


@dataclass
class Pool:
    """Recorded trials that share model, search space, metric, mode and maximum length.

    The pool's ``max_epochs`` is every replayed strategy's: a recorded curve cannot run longer, and
    it cannot be cut shorter either when the recipe depends on the trial length (the CGCNN
    trainable's cosine decay ends at ``max_epochs``), so a pool answers for its own length only.
    """

    model: str
    space: str
    metric: str
    mode: str
    max_epochs: int
    trials: list[RecordedTrial]
    overheads: Overheads
    test_metric: str | None = None
    sources: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else 0.0


def _step_starts(history: pd.DataFrame) -> np.ndarray | None:
    """Unix time each epoch started: the trainable's own stamp, else Ray's (whole-second) timestamp."""
    if "step_started_at" in history and history["step_started_at"].notna().all():
        return history["step_started_at"].to_numpy(dtype=float)
    if {"timestamp", "time_this_iter_s"} <= set(history):
        return (history["timestamp"] - history["time_this_iter_s"]).to_numpy(dtype=float)
    return None


def measure_overheads(histories: list[pd.DataFrame], start_time: float) -> dict[str, list[float]]:
    """Samples of the three overheads of :class:`Overheads` from one experiment's trial histories.

    Epoch ``e`` of a trial runs from its start stamp (``step_started_at``, which the CGCNN
    trainable records; else Ray's ``timestamp`` minus ``time_this_iter_s``, good to a second) for
    ``time_this_iter_s``. Trials are assigned to actors by Ray's ``pid`` field. Then
    ``between_results_s`` samples are the gaps between consecutive epochs of a trial,
    ``switch_s`` samples the gaps between consecutive trials of an actor, and ``first_start_s``
    samples the delay from ``start_time`` (the experiment's start) to the first epoch of the
    earliest actors, as many as trials ever ran at once (the slots; an actor Tune started later
    replaced another and is not a slot's start).
    """
    samples: dict[str, list[float]] = {"first_start_s": [], "switch_s": [], "between_results_s": []}
    spans: dict[Any, list[tuple[float, float]]] = {}
    for history in histories:
        if not len(history) or "time_this_iter_s" not in history:
            continue
        starts = _step_starts(history)
        if starts is None:
            continue
        ends = starts + history["time_this_iter_s"].to_numpy(dtype=float)
        samples["between_results_s"] += [max(0.0, float(g)) for g in starts[1:] - ends[:-1]]
        if "pid" in history:
            spans.setdefault(history["pid"].iloc[0], []).append((float(starts[0]), float(ends[-1])))
    # The slots: as many actors as trials ever ran at once; the earliest-starting ones are the slots' own
    # first starts (an actor Tune started later replaced another and is not a slot's start).
    edges = sorted([(start, 1) for actor in spans.values() for start, _ in actor]
                   + [(end, -1) for actor in spans.values() for _, end in actor])
    running = slots = 0
    for _, step in edges:
        running += step
        slots = max(slots, running)
    firsts = sorted(min(actor)[0] for actor in spans.values())[:slots]
    samples["first_start_s"] += [max(0.0, first - start_time) for first in firsts]
    for actor in spans.values():
        actor.sort()
        samples["switch_s"] += [max(0.0, nxt[0] - prev[1]) for prev, nxt in zip(actor, actor[1:], strict=False)]
    return samples


def _curve(history: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in history:
        return None
    return pd.to_numeric(history[column], errors="coerce").to_numpy(dtype=float)


def _trial_from_history(key: str, config: dict[str, Any], history: pd.DataFrame, metric: str,
                        test_metric: str | None, max_epochs: int) -> RecordedTrial | None:
    """The trial's curve if it ran full length (or ended itself), else None."""
    if not len(history) or metric not in history or "time_this_iter_s" not in history:
        return None
    iterations = history.get("training_iteration")
    if iterations is None or list(iterations) != list(range(1, len(history) + 1)):
        return None  # a restored or reordered trial: its epochs cannot be replayed in order
    done = bool(history["done"].iloc[-1]) if "done" in history else False
    diverged = bool(history["diverged"].iloc[-1]) if "diverged" in history else False
    ends_itself = len(history) < max_epochs and (done or diverged)
    if len(history) < max_epochs and not ends_itself:
        return None
    history = history.iloc[:max_epochs]
    tests = _curve(history, test_metric) if test_metric else None
    return RecordedTrial(key=key, config=config, values=_curve(history, metric),
                         seconds=history["time_this_iter_s"].to_numpy(dtype=float), tests=tests,
                         ends_itself=ends_itself)


def read_experiments(dirs: list[str | Path], test_metric: str | None = None) -> Pool:
    """A pool from finished experiment folders (each holding the runner's ``summary.json``).

    Every folder must have run without early stopping (scheduler ``fifo``: random search, grid or
    a model-based searcher) with the same model, space, metric, mode and ``max_epochs``. A pool
    of early-stopped trials would hold only the survivors' full curves, a biased sample.
    """
    from experiments.analysis.experiment import load_experiment
    from experiments.core.config import ConfigError

    if not dirs:
        raise SimulationError("give at least one experiment folder, or --pool builtin")
    trials: list[RecordedTrial] = []
    samples: dict[str, list[float]] = {"first_start_s": [], "switch_s": [], "between_results_s": []}
    first: dict[str, Any] | None = None
    skipped = 0
    for path in dirs:
        try:
            exp = load_experiment(path)
        except ConfigError as err:
            raise SimulationError(str(err)) from None
        summary = exp.summary
        if summary.get("scheduler", "fifo") != "fifo":
            raise SimulationError(f"{exp.path} ran scheduler '{summary['scheduler']}': a pool needs trials that "
                                  "ran full length (random search or grid, scheduler fifo)")
        if not isinstance(summary.get("max_epochs"), int):
            raise SimulationError(f"{exp.path}/summary.json has no max_epochs; was it written by the runner?")
        if first is None:
            first = summary
        for key in ("model", "space", "metric", "mode", "max_epochs"):
            if summary.get(key) != first.get(key):
                raise SimulationError(f"cannot pool {exp.path} ({key} {summary.get(key)}) with {dirs[0]} "
                                      f"({key} {first.get(key)}): every experiment of a pool must share it")
        spec_test = test_metric or _model_test_metric(summary.get("model"))
        for record in summary["trials"]:
            history = exp.histories.get(record["trial_id"], pd.DataFrame())
            trial = None if record.get("errored") else _trial_from_history(
                f"{summary.get('name', exp.path.name)}/{record['trial_id']}", dict(record.get("config") or {}),
                history, summary["metric"], spec_test, summary["max_epochs"])
            if trial is None:
                skipped += 1
            else:
                trials.append(trial)
        for name, values in measure_overheads(list(exp.histories.values()), exp.start_time()).items():
            samples[name] += values
    assert first is not None
    if not trials:
        raise SimulationError(f"no trial in {', '.join(str(d) for d in dirs)} ran full length "
                              f"({first['max_epochs']} epochs); a pool needs complete curves")
    overheads = Overheads(**{name: round(_median(values), 4) for name, values in samples.items()},
                          samples={name: len(values) for name, values in samples.items()})
    notes = [f"{skipped} trial(s) not full length (cut by a budget, interrupted or errored) left out"] * bool(skipped)
    # What the pool was recorded with (data size, featurisation, resources): experiment.yaml, as the runner wrote it.
    settings = Path(dirs[0]).expanduser() / "experiment.yaml"
    recorded_with = yaml.safe_load(settings.read_text()) if settings.is_file() else None
    return Pool(model=first["model"], space=first["space"], metric=first["metric"], mode=first["mode"],
                max_epochs=first["max_epochs"], trials=trials, overheads=overheads,
                test_metric=_model_test_metric(first["model"]) if test_metric is None else test_metric,
                sources=[str(Path(d).expanduser().resolve()) for d in dirs], notes=notes,
                metadata={"recorded_with": recorded_with} if isinstance(recorded_with, dict) else {})


def _model_test_metric(model: str | None) -> str | None:
    from trainables.registry import MODELS

    return MODELS[model].test_metric if model in MODELS else None


# --- the pool file --------------------------------------------------------------------------

def _numbers(values: np.ndarray | None) -> list[float] | None:
    """Floats to 6 significant digits. Non-finite ones stay (Python's JSON writes Infinity / NaN):
    a diverged trial's ``inf`` must reach the scheduler as the real run's did."""
    if values is None:
        return None
    return [float(f"{v:.6g}") for v in values]


def _array(values: Any, key: str, name: str) -> np.ndarray | None:
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise SimulationError(f"pool trial {key}: '{name}' must be a list of numbers")
    return np.array(values, dtype=float)


def save_pool(pool: Pool, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``pool`` as gzip-compressed JSON (``*.json.gz``) with ``metadata`` (commit, command, date)."""
    meta = {**pool.metadata, **(metadata or {})}
    meta.setdefault("saved_utc", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    data = {
        "format": POOL_FORMAT,
        "model": pool.model, "space": pool.space, "metric": pool.metric, "mode": pool.mode,
        "test_metric": pool.test_metric, "max_epochs": pool.max_epochs,
        "overheads": asdict(pool.overheads), "sources": pool.sources, "metadata": meta, "notes": pool.notes,
        "trials": [{"key": t.key, "config": t.config, "values": _numbers(t.values), "seconds": _numbers(t.seconds),
                    "tests": _numbers(t.tests), "ends_itself": t.ends_itself} for t in pool.trials],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
    return path


def load_pool(path: str | Path) -> Pool:
    """Read a pool file written by :func:`save_pool`; a missing or malformed file is a SimulationError."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise SimulationError(f"pool file not found: {path}") from None
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise SimulationError(f"{path} is not a pool file (gzip-compressed JSON): {err}") from None
    if not isinstance(data, dict) or data.get("format") != POOL_FORMAT:
        raise SimulationError(f"{path} is not a pool file of format {POOL_FORMAT}")
    try:
        trials = [RecordedTrial(key=t["key"], config=t["config"], values=_array(t["values"], t["key"], "values"),
                                seconds=_array(t["seconds"], t["key"], "seconds"),
                                tests=_array(t.get("tests"), t["key"], "tests"), ends_itself=bool(t["ends_itself"]))
                  for t in data["trials"]]
        pool = Pool(model=data["model"], space=data["space"], metric=data["metric"], mode=data["mode"],
                    max_epochs=int(data["max_epochs"]), trials=trials, overheads=Overheads(**data["overheads"]),
                    test_metric=data.get("test_metric"), sources=list(data.get("sources") or []),
                    metadata=dict(data.get("metadata") or {}), notes=list(data.get("notes") or []))
    except (KeyError, TypeError, ValueError) as err:
        raise SimulationError(f"{path}: malformed pool file ({type(err).__name__}: {err})") from None
    if not pool.trials:
        raise SimulationError(f"{path} holds no trials")
    return pool


def shipped_pools() -> dict[str, Path]:
    """The pools shipped with the suite, by the name ``--pool`` takes (docs/simulation.md: how each was recorded)."""
    return {"builtin": BUILTIN_POOL, "cgcnn_six": SIX_POOL}


def load_shipped_pool(name: str = "builtin") -> Pool:
    """A pool shipped with the suite: full-length CGCNN curves on the built-in data (``--pool builtin``,
    ``--pool cgcnn_six``)."""
    path = shipped_pools()[name]
    if not path.is_file():
        raise SimulationError(f"the built-in pool {path} is not in this checkout (docs/simulation.md, "
                              "the shipped pools, says how to record it); give experiment folders or a pool file")
    return load_pool(path)


def read_pool(sources: list[str]) -> Pool:
    """A shipped pool's name (``["builtin"]``, ``["cgcnn_six"]``), pool files (``*.json.gz``) or experiment
    folders, as ``--pool`` / DIR arguments give them."""
    if len(sources) == 1 and sources[0] in shipped_pools():
        return load_shipped_pool(sources[0])
    files = [s for s in sources if str(s).endswith(".json.gz")]
    if files:
        if len(sources) > 1:
            raise SimulationError("give one pool file, or experiment folders, not both")
        return load_pool(files[0])
    return read_experiments(sources)
