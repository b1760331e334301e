"""Searchers across an interruption, and how they meet Ray: Dragonfly save -> restore -> suggest,
HyperOpt integers through Ray's HyperOptSearch (points_to_evaluate, restore), the Sobol count warning."""

import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.hyperopt import HyperOptSearch
from scipy.stats import qmc

from experiments.searchers.quasirandom import QuasiRandomSearch, sobol_count_warning
from search_spaces.compile import from_unit_cube, to_hyperopt
from search_spaces.spec import parse_space

REPO = Path(__file__).resolve().parents[1]
SPACE = parse_space("resume", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "layers": {"type": "int", "low": 1, "high": 3},
    "width": {"type": "int", "low": 4, "high": 64, "log": True},
    "act": {"type": "choice", "values": ["relu", "gelu"]},
    "batch": {"type": "discrete", "values": [16, 32, 64]},
}})


def objective(config: dict) -> float:
    return abs(math.log(config["lr"] / 3e-3)) + config["layers"] / 3 + abs(math.log(config["width"] / 16))


def dragonfly_limited(seed: int, max_concurrent: int = 3) -> ConcurrencyLimiter:
    """The Dragonfly searcher as the runner builds it: behind Ray's ConcurrencyLimiter."""
    from experiments.searchers.dragonfly import DragonflySearch

    return ConcurrencyLimiter(DragonflySearch(SPACE, "val_mae", "min", seed=seed), max_concurrent=max_concurrent)


def test_resumed_dragonfly_proposes_new_points_and_learns_the_trials_live_at_the_interruption(tmp_path):
    first = dragonfly_limited(seed=4)
    proposed = {f"t{i}": first.suggest(f"t{i}") for i in range(3)}
    first.on_trial_complete("t0", {"val_mae": objective(proposed["t0"])})
    first.save_to_dir(str(tmp_path))  # what Tune does at each experiment checkpoint

    resumed = dragonfly_limited(seed=99)  # the seed comes from the saved state
    resumed.restore_from_dir(str(tmp_path))
    # The trials running at the interruption finish in the resumed experiment: their results count.
    for trial in ("t1", "t2"):
        resumed.on_trial_complete(trial, {"val_mae": objective(proposed[trial])})
    searcher = resumed.searcher
    assert [config for config, _ in searcher.history] == [proposed["t0"], proposed["t1"], proposed["t2"]]
    assert [value for _, value in searcher.history] == pytest.approx([-objective(proposed[t]) for t in proposed])

    # The next proposals are new points (a rebuilt optimiser used to start its initial design over),
    # and the same ones the uninterrupted searcher proposes from the same results.
    for trial in ("t1", "t2"):
        first.on_trial_complete(trial, {"val_mae": objective(proposed[trial])})
    for i in range(3, 9):
        config = resumed.suggest(f"t{i}")
        assert config not in proposed.values(), i
        assert config == first.suggest(f"t{i}")
        assert SPACE.contains(config)
        proposed[f"t{i}"] = config
        for limiter in (resumed, first):
            limiter.on_trial_complete(f"t{i}", {"val_mae": objective(config)})
    assert len(searcher.history) == 9


@pytest.mark.slow  # 23 Dragonfly asks with a GP (a few s each on 2 shared cores)
def test_dragonfly_refits_its_kernel_as_results_come_and_a_resumed_searcher_proposes_what_the_uninterrupted_does():
    from experiments.searchers.dragonfly import DragonflySearch

    first = DragonflySearch(SPACE, "val_mae", "min", seed=5)
    proposals, snapshot = {}, None
    # 24 rounds: the re-fit is due once 17 more results than at the first fit are told (at round 23).
    for i in range(24):  # two trials in flight: each is proposed while the previous one is pending
        proposals[f"t{i}"] = first.suggest(f"t{i}")
        if i >= 1:
            first.on_trial_complete(f"t{i - 1}", {"val_mae": objective(proposals[f"t{i - 1}"])})
        if i == 7:
            snapshot = pickle.dumps(first.get_state())  # past the 6-point initial design, t7 live
    # The kernel was fitted after the initial design and re-fitted on everything told since
    # (Dragonfly's build_new_model_every, 17), not kept from the first few results.
    design = 6  # the first fit comes at the first ask after it, with its last point still running
    assert first.model_builds == [design - 1, design - 1 + 17]
    assert len(first._opt.gp_processor.gp_fitter.Y) == first.model_builds[-1]

    resumed = DragonflySearch(SPACE, "val_mae", "min", seed=99)  # seed and events come from the state
    resumed.set_state(pickle.loads(snapshot))
    assert resumed._live.keys() == {"t7"} and resumed.model_builds == [design - 1]
    for i in range(8, 11):  # the same asks and tells, in the same order, as the uninterrupted run
        assert resumed.suggest(f"t{i}") == proposals[f"t{i}"], i
        resumed.on_trial_complete(f"t{i - 1}", {"val_mae": objective(proposals[f"t{i - 1}"])})


def test_dragonfly_sees_the_pending_points_only_while_it_proposes():
    from experiments.searchers.dragonfly import DragonflySearch, _pending

    searcher = DragonflySearch(SPACE, "val_mae", "min", seed=0)
    opt = searcher._opt
    live = [searcher.suggest("a"), searcher.suggest("b")]  # configs; the raw points are the searcher's
    raw = list(searcher._live.values())
    assert len(live) == 2 and opt.eval_points_in_progress == []
    with _pending(opt, raw):
        assert len(opt.eval_points_in_progress) == 2 == len(opt.eval_idxs_in_progress)
        assert opt.options.handle_parallel == "halluc"  # Dragonfly's acquisitions hallucinate them
    assert opt.eval_points_in_progress == [] and opt.eval_idxs_in_progress == []


def test_the_one_private_dragonfly_read_counts_the_initial_design_down():
    # _initial_design_left reads Dragonfly's first_qinfos (no public API says how much of its
    # initial design is left); if an upgrade renames it, this fails before any resume does.
    from experiments.searchers.dragonfly import DragonflySearch, _initial_design_left

    searcher = DragonflySearch(SPACE, "val_mae", "min", seed=0)
    left = _initial_design_left(searcher._opt)
    assert left >= 5
    searcher.suggest("t0")
    assert _initial_design_left(searcher._opt) == left - 1


def test_dragonfly_concurrency_cap_survives_a_resume(tmp_path):
    first = dragonfly_limited(seed=1, max_concurrent=2)
    running = {trial: first.suggest(trial) for trial in ("a", "b")}
    assert all(running.values())
    assert first.suggest("c") is None  # two unfinished: wait
    first.save_to_dir(str(tmp_path))
    resumed = dragonfly_limited(seed=1, max_concurrent=2)
    resumed.restore_from_dir(str(tmp_path))
    assert resumed.suggest("c") is None  # "a" and "b" are still running after the resume
    resumed.on_trial_complete("a", {"val_mae": 1.0})
    assert resumed.searcher.history == [(running["a"], -1.0)]
    assert resumed.suggest("c") not in (None, running["a"], running["b"])


def test_resumable_limiter_keeps_the_trials_live_at_the_interruption_for_hyperopt(tmp_path):
    from experiments.searchers import ResumableConcurrencyLimiter

    def limited(cls):
        return cls(HyperOptSearch(space=to_hyperopt(SPACE), metric="val_mae", mode="min", random_state_seed=0),
                   max_concurrent=2)

    def done(limiter) -> int:  # HyperOpt trials with a result (what TPE learns from)
        trials = limiter.searcher.get_state()["hyperopt_trials"].trials
        return sum(1 for t in trials if t["result"].get("status") == "ok")

    first = limited(ResumableConcurrencyLimiter)
    configs = {t: first.suggest(t) for t in ("t0", "t1")}
    first.on_trial_complete("t0", {"val_mae": objective(configs["t0"])})
    first.save_to_dir(str(tmp_path))
    resumed = limited(ResumableConcurrencyLimiter)
    resumed.restore_from_dir(str(tmp_path))
    assert resumed.live_trials == {"t1"}
    assert resumed.suggest("t2") is not None and resumed.suggest("t3") is None  # t1 still counts
    resumed.on_trial_complete("t1", {"val_mae": objective(configs["t1"])})
    assert done(resumed) == 2
    # Ray's own limiter, saved and restored the same way, forgets t1: its result is dropped.
    plain = limited(ConcurrencyLimiter)
    for t in ("t0", "t1"):
        plain.suggest(t)
    plain.on_trial_complete("t0", {"val_mae": 1.0})
    (tmp_path / "plain").mkdir()
    plain.save_to_dir(str(tmp_path / "plain"))
    forgetful = limited(ConcurrencyLimiter)
    forgetful.restore_from_dir(str(tmp_path / "plain"))
    forgetful.on_trial_complete("t1", {"val_mae": 0.5})
    assert done(forgetful) == 1
    # A checkpoint Ray's limiter wrote still restores (the searcher's state alone).
    compatible = limited(ResumableConcurrencyLimiter)
    compatible.restore_from_dir(str(tmp_path / "plain"))
    assert done(compatible) == 1 and compatible.live_trials == set()


def test_hyperopt_integers_through_rays_hyperoptsearch_points_to_evaluate_and_restore(tmp_path):
    # The floored draws keep Ray's HyperOptSearch paths working: a given point (the integers' upper
    # bounds) comes back as given, as Python ints; a restored searcher goes on proposing ints in bounds.
    start = {"lr": 1e-3, "layers": 3, "width": 64, "act": "gelu", "batch": 64}

    def searcher() -> HyperOptSearch:
        return HyperOptSearch(space=to_hyperopt(SPACE), metric="val_mae", mode="min", points_to_evaluate=[dict(start)],
                              n_initial_points=3, random_state_seed=0)

    first = searcher()
    configs = [first.suggest("t0")]
    assert configs[0] == start and type(configs[0]["layers"]) is int and type(configs[0]["width"]) is int
    first.on_trial_complete("t0", {"val_mae": objective(configs[0])})
    for i in range(1, 5):
        configs.append(first.suggest(f"t{i}"))
        first.on_trial_complete(f"t{i}", {"val_mae": objective(configs[-1])})
    first.save(str(tmp_path / "hyperopt.pkl"))
    resumed = searcher()
    resumed.restore(str(tmp_path / "hyperopt.pkl"))
    for i in range(5, 12):  # past n_initial_points: TPE proposals
        config = resumed.suggest(f"t{i}")
        assert SPACE.contains(config), config
        assert type(config["layers"]) is int and type(config["width"]) is int
        resumed.on_trial_complete(f"t{i}", {"val_mae": objective(config)})
        configs.append(config)
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


@pytest.mark.parametrize(("count", "message"), [
    (20, "num_samples 20, not a power of two: its points are balanced only in counts 2^k; use 16 or 32"),
    (24, "use 16 or 32"), (30, "use 16 or 32"), (100, "use 64 or 128"), (16, None), (1, None), (64, None)])
def test_sobol_count_warning_names_the_count_and_the_nearest_powers_of_two(count, message):
    warning = sobol_count_warning(count)
    if message is None:
        assert warning is None
    else:
        assert warning.startswith("warning: quasi-random Sobol search with num_samples") and message in warning
        assert "\n" not in warning


def test_quasirandom_warns_once_when_tune_sets_a_sobol_count_that_is_not_a_power_of_two(capsys):
    # Tune hands every searcher the experiment's num_samples through set_search_properties.
    QuasiRandomSearch(SPACE, seed=0).set_search_properties("val_mae", "min", {"seed": 0}, num_samples=24)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "num_samples 24" in lines[0] and "use 16 or 32" in lines[0]
    QuasiRandomSearch(SPACE, seed=0).set_search_properties("val_mae", "min", {"seed": 0}, num_samples=32)
    QuasiRandomSearch(SPACE, sampler="halton", seed=0).set_search_properties("val_mae", "min", {}, num_samples=24)
    assert capsys.readouterr().err == ""


def test_quasirandom_points_are_scipys_sequence_drawn_one_at_a_time_without_warnings():
    searcher = QuasiRandomSearch(SPACE, "val_mae", "min", seed=3)
    with np.testing.suppress_warnings() as sup:
        record = sup.record(UserWarning)
        configs = [searcher.suggest(str(i)) for i in range(40)]
    assert not record
    expected = qmc.Sobol(d=len(SPACE.params), scramble=True, seed=3).random(64)[:40]
    assert configs == [from_unit_cube(SPACE, u) for u in expected]
    assert searcher.get_state()["drawn"] == 40  # nothing drawn ahead of what was proposed


@pytest.mark.slow
def test_tune_passes_num_samples_to_the_quasirandom_searcher_and_the_warning_reaches_the_user(tmp_path, capfd):
    # A real Tuner on a real local Ray: the count reaches set_search_properties from Tune itself.
    import ray
    from ray import tune

    def trainable(config):  # self-contained: the workers cannot import this test module
        tune.report({"val_mae": config["lr"]})

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(trainable, param_space={"seed": 0},
                           tune_config=tune.TuneConfig(search_alg=QuasiRandomSearch(SPACE, seed=0), metric="val_mae",
                                                       mode="min", num_samples=3),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), name="q", verbose=0))
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 3 and not results.errors
    warnings = [line for line in capfd.readouterr().err.splitlines() if "quasi-random Sobol" in line]
    assert warnings == [sobol_count_warning(3)] and "use 2 or 4" in warnings[0]


# Phase 1 runs 6 Dragonfly trials, two at a time, and the third trial to start interrupts the
# driver (SIGINT: Tune saves the experiment and stops, trials still running); phase 2 resumes it
# with Tuner.restore, as `--resume` does.
RESUME_SCRIPT = """
import os, signal, sys, time
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from experiments.searchers.dragonfly import DragonflySearch
from search_spaces.spec import parse_space

storage, phase = sys.argv[1], sys.argv[2]
space = parse_space("r", {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                                     "layers": {"type": "int", "low": 1, "high": 3}}})

def trainable(config):
    starts = os.path.join(storage, "starts")
    os.makedirs(starts, exist_ok=True)
    open(os.path.join(starts, tune.get_context().get_trial_id()), "w").close()
    if len(os.listdir(starts)) == 3:
        try:  # once: the first trial to see three starts interrupts the driver
            os.close(os.open(os.path.join(storage, "interrupted"), os.O_CREAT | os.O_EXCL))
            os.kill(config["driver_pid"], signal.SIGINT)
        except FileExistsError:
            pass
    for i in range(3):
        time.sleep(0.3)
        tune.report({"val_mae": config["lr"] + config["layers"]})

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
trainable = tune.with_resources(trainable, {"cpu": 1})
if phase == "1":
    searcher = ConcurrencyLimiter(DragonflySearch(space, "val_mae", "min", seed=3), max_concurrent=2)
    tuner = tune.Tuner(trainable, param_space={"driver_pid": os.getpid()},
                       tune_config=tune.TuneConfig(search_alg=searcher, metric="val_mae", mode="min", num_samples=6),
                       run_config=tune.RunConfig(storage_path=storage, name="df", verbose=0))
else:
    tuner = tune.Tuner.restore(os.path.join(storage, "df"), trainable=trainable, resume_unfinished=True)
results = tuner.fit()
print("RESULT", sum(1 for r in results if r.metrics and r.metrics.get("training_iteration") == 3))
"""


@pytest.mark.slow
def test_dragonfly_experiment_interrupted_and_resumed_with_tune_asks_once_per_trial_and_learns_every_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}

    def phase(number: str) -> tuple[int, dict]:
        proc = subprocess.run([sys.executable, str(script), str(tmp_path), number], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        finished = int(proc.stdout.split("RESULT")[-1])
        # What Tune saved of the searcher at the end of the phase (Searcher.save_to_dir).
        newest = sorted((tmp_path / "df").glob("searcher-state-*.pkl"))[-1]
        with open(newest, "rb") as f:
            return finished, pickle.load(f)

    finished, state = phase("1")
    assert (tmp_path / "interrupted").exists() and finished < 6
    assert state["live"], "the interruption should leave trials running"
    finished, state = phase("2")  # an unpickled searcher used to fail here on Dragonfly's numpy names
    assert finished == 6
    # One proposal per trial (a restored optimiser used to propose its initial design again),
    # and every trial's result told, those running at the interruption included.
    assert state["asked"] == 6 and len(state["told"]) == 6 and state["live"] == {}
    assert len(list((tmp_path / "starts").iterdir())) >= 6
