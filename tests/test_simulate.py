"""The strategy simulator: the event loop on hand-made curves with a known answer, Ray's schedulers
driven through their interface, pools read from experiment folders, the shipped pool, and bad input."""

import csv
import gzip
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from experiments.simulation.engine import SimController, SimTrial, simulate
from experiments.simulation.errors import SimulationError
from experiments.simulation.pool import (
    BUILTIN_POOL,
    SIX_POOL,
    Overheads,
    Pool,
    RecordedTrial,
    load_pool,
    load_shipped_pool,
    read_experiments,
    read_pool,
    save_pool,
)
from experiments.simulation.replay import replay_strategy
from experiments.simulation.report import pool_topk, run_curve, validation_rows, write_report
from experiments.simulation.rungs import SortedRewards, fast_rungs
from experiments.simulation.strategies import (
    NearestRecorded,
    StrategyName,
    build_scheduler,
    parse_strategy,
    strategy_config,
)
from search_spaces import load_space
from search_spaces.compile import from_unit_cube, to_unit_cube

REPO = Path(__file__).resolve().parents[1]
START = 1_000_000.0  # the constructed experiments' start time (Unix seconds)

# Four hand-made 4-epoch curves (val_mae, lower is better), 10 s per epoch.
CURVES = {"A": [0.5, 0.4, 0.3, 0.2], "B": [0.6, 0.5, 0.45, 0.4], "C": [0.4, 0.35, 0.1, 0.05],
          "D": [0.7, 0.2, 0.15, 0.1]}


def hand_pool() -> Pool:
    space = load_space("cgcnn_default")
    config = from_unit_cube(space, [0.5] * len(space.params))
    trials = [RecordedTrial(key, dict(config), np.array(values), np.full(4, 10.0), np.array(values) + 0.01)
              for key, values in CURVES.items()]
    return Pool("cgcnn", "cgcnn_default", "val_mae", "min", 4, trials, Overheads(5.0, 1.0, 0.5), test_metric="test_mae")


class InOrder:
    """The search side of a test: the given recorded trials, in order, then nothing."""

    def __init__(self, trials):
        self.trials = list(trials)
        self.finished = False
        self.completed = []

    def propose(self, trial_id):
        if not self.trials:
            self.finished = True
            return None
        return self.trials.pop(0)

    def on_result(self, trial_id, result):
        pass

    def on_complete(self, trial_id, result):
        self.completed.append((trial_id, result["training_iteration"]))


def asha(pool: Pool, fast: bool = True, **settings):
    name = StrategyName("random", "asha")
    config = strategy_config(name, pool, {"grace_period": 1, "reduction_factor": 2, **settings})
    return build_scheduler(config, load_space(pool.space), fast=fast)


@pytest.mark.parametrize("fast", [True, False])
def test_asha_on_four_hand_made_curves_one_worker(fast):
    # ASHA, grace 1, reduction factor 2, max 4 epochs: rungs at epochs 1, 2 and 4; a trial stops at a
    # rung when its val_mae is worse than the median of those recorded there before it.
    # A (first): nothing recorded, runs all 4 epochs (5 s start, 10 s epochs, 0.5 s between): 15 .. 46.5 s.
    # B starts at 47.5 (1 s switch); epoch 1 (0.6) is worse than A's 0.5: stopped at 57.5 s.
    # C starts at 58.5; 0.4 beats the median of 0.5 and 0.6, 0.35 beats A's 0.4 at epoch 2: runs to 100 s.
    # D starts at 101; 0.7 is worse than the median (0.5) of 0.5, 0.6, 0.4: stopped at 111 s.
    pool = hand_pool()
    proposer = InOrder(pool.trials)
    run = simulate(pool, asha(pool, fast), proposer, workers=1, budget_s=1000)
    outcomes = run.outcomes()
    assert [(o.key, o.epochs, o.stopped_by_scheduler, o.started_at) for o in outcomes] == [
        ("A", 4, False, 5.0), ("B", 1, True, 47.5), ("C", 4, False, 58.5), ("D", 1, True, 101.0)]
    assert run.end == 111.0 and run.epochs_trained == 10 and run.results == 10
    assert [o.value for o in outcomes] == [0.2, 0.6, 0.05, 0.7]
    assert proposer.completed == [("sim_000000", 4), ("sim_000001", 1), ("sim_000002", 4), ("sim_000003", 1)]
    # The top-2 curve: defined once two recorded trials reported (B at 57.5 s: A 0.2, B 0.6), each
    # with its best value so far; C brings 0.4 (68.5 s), then 0.05 (100 s).
    curve = run_curve(run, 2, "min")
    assert list(curve.at(np.array([57.4, 57.5, 68.5, 100.0, 200.0]))[1:]) == pytest.approx(
        [0.4, 0.3, 0.125, 0.125])


def test_budget_cuts_trials_in_flight_and_fifo_fills_every_worker():
    # FIFO on 2 workers, 35 s: A and B start at 5 s (each slot's first start), report at 15, 25.5, 36 s:
    # two epochs each within the budget; C and D never start.
    pool = hand_pool()
    scheduler = build_scheduler(strategy_config(StrategyName("random", "fifo"), pool, {}), load_space(pool.space))
    run = simulate(pool, scheduler, InOrder(pool.trials), workers=2, budget_s=35.0)
    assert [(o.key, o.epochs, o.finished) for o in run.outcomes()] == [("A", 2, False), ("B", 2, False)]
    assert run.end == 35.0 and run.epochs_trained == 4
    # num_samples caps the trials created, as Tune's num_samples does.
    run = simulate(pool, build_scheduler(strategy_config(StrategyName("random", "fifo"), pool, {}),
                                         load_space(pool.space)),
                   InOrder(pool.trials), workers=1, budget_s=1000, num_samples=2)
    assert [o.key for o in run.outcomes()] == ["A", "B"] and run.end == 5 + 4 * 10 + 3 * 0.5 + 1 + 4 * 10 + 1.5


def test_sim_trial_stands_in_for_ray_trial_in_asha():
    """The stand-in exposes Ray's Trial attribute names, and ASHA decides alike for real Trials and stand-ins."""
    from ray.tune.experiment import Trial
    from ray.tune.registry import register_trainable

    register_trainable("sim_probe", lambda config: None)
    real_trials = [Trial("sim_probe", config={"k": i}) for i in range(6)]
    for name in SimTrial.__slots__[:4]:  # trial_id, status, config, last_result: Ray's own names
        assert hasattr(real_trials[0], name)
    pool = hand_pool()
    rng = np.random.default_rng(3)
    rewards = rng.random((6, 4))
    decisions = []
    for trials in (real_trials, [SimTrial(t.trial_id, pool.trials[0]) for t in real_trials]):
        scheduler = asha(pool, fast=False)
        np.random.seed(0)
        made = []
        for trial in trials:
            scheduler.on_trial_add(None, trial)
        for epoch in range(1, 4):
            for trial, reward in zip(trials, rewards, strict=True):
                made.append(scheduler.on_trial_result(None, trial, {"val_mae": reward[epoch - 1],
                                                                    "training_iteration": epoch}))
        decisions.append(made)
    assert decisions[0] == decisions[1] and TrialScheduler.STOP in decisions[0]
    controller = SimController()
    stand_in = SimTrial("x", pool.trials[0])
    controller.add(stand_in)
    assert asha(pool).choose_trial_to_run(controller) is stand_in  # FIFO's choice: the pending trial


def test_fast_rung_cutoffs_equal_numpys_nanpercentile():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(size=6), [np.inf, -np.inf, np.nan, 0.5, 0.5]])
    for case in range(400):
        rewards = SortedRewards()
        size = int(rng.integers(1, 30))
        draws = rng.choice(values, size) if case % 2 else rng.normal(size=size)  # ties, infinities, NaN
        for i, value in enumerate(draws):
            rewards[str(i)] = float(value)
            for rf in (2, 3, 4, 2.5):
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")  # all-NaN rungs: NumPy warns, Ray takes the NaN
                    expected = float(np.nanpercentile(list(rewards.values()), (1 - 1 / rf) * 100))
                got = rewards.percentile((1 - 1 / rf) * 100)
                assert got == expected or (math.isnan(got) and math.isnan(expected))


def random_pool(n: int = 60, epochs: int = 8, seed: int = 0) -> Pool:
    """Random learning curves over the default space (for equivalence and scale checks, not answers)."""
    rng = np.random.default_rng(seed)
    space = load_space("cgcnn_default")
    trials = []
    for i in range(n):
        final = rng.uniform(0.05, 0.4)
        values = final + (0.5 - final) * np.exp(-np.arange(1, epochs + 1) / rng.uniform(1, 4))
        values = values + rng.normal(0, 0.01, epochs)
        trials.append(RecordedTrial(f"t{i}", from_unit_cube(space, rng.random(len(space.params))), values,
                                    rng.uniform(0.5, 1.5, epochs), values + 0.01))
    return Pool("cgcnn", "cgcnn_default", "val_mae", "min", epochs, trials, Overheads(3.0, 0.2, 0.05),
                test_metric="test_mae")


def test_fast_rungs_change_no_decision_of_ray_async_hyperband():
    pool = random_pool()
    space = load_space(pool.space)
    runs = []
    for fast in (True, False):
        config = strategy_config(StrategyName("random", "ahb"), pool,
                                 {"grace_period": 1, "reduction_factor": 2, "brackets": 3, "seed": 4})
        from experiments.simulation.strategies import PoolShuffle

        runs.append(simulate(pool, build_scheduler(config, space, fast=fast), PoolShuffle(pool, 4), workers=3,
                             budget_s=400, seed=4))
    fast_run, ray_run = runs
    assert fast_run.outcomes() == ray_run.outcomes() and fast_run.times == ray_run.times
    assert sum(fast_run.trial_stopped) > 10  # the brackets did stop trials
    assert fast_rungs(build_scheduler(strategy_config(StrategyName("random", "fifo"), pool, {}), space)) is not None


def test_random_search_replays_the_pool_without_replacement_then_passes_again():
    pool = random_pool(n=10, epochs=2)
    result = replay_strategy(parse_strategy("random:fifo"), pool, workers=2, budget_s=60, seeds=[0, 1])
    for run, passes, distinct in zip(result.runs, result.passes, result.distinct, strict=True):
        first_ten = run.trial_keys[:10]
        assert sorted(first_ten) == list(range(10))  # one pass: every recorded trial once
        assert passes == math.ceil(run.num_trials / 10) and distinct == 10
    assert result.runs[0].trial_keys != result.runs[1].trial_keys  # the seed changes the order


def test_unit_cube_mapping_inverts_from_unit_cube_and_nearest_finds_recorded_configs():
    space = load_space("cgcnn_default")
    rng = np.random.default_rng(0)
    for _ in range(200):
        config = from_unit_cube(space, rng.random(len(space.params)))
        assert from_unit_cube(space, to_unit_cube(space, config)) == pytest.approx(config)

    class Replaying:  # a searcher proposing exactly the recorded configurations, in reverse
        def __init__(self, configs):
            self.configs = list(configs)

        def suggest(self, trial_id):
            return self.configs.pop()

    pool = random_pool(n=5)
    nearest = NearestRecorded(Replaying([t.config for t in pool.trials]), space, pool)
    assert [nearest.propose(str(i)).key for i in range(5)] == ["t4", "t3", "t2", "t1", "t0"]
    assert max(nearest.distances) == pytest.approx(0.0)
    nearest.searcher = Replaying([pool.trials[0].config])
    assert nearest.propose("5").key == "t0" and nearest.passes == 2  # pool used up: a second pass


def test_strategy_names_in_either_order_and_pbt_refused():
    assert parse_strategy("random:asha") == parse_strategy("asha:random") == StrategyName("random", "asha")
    assert parse_strategy("hyperopt:ahb") == parse_strategy("ahb:hyperopt") == StrategyName("hyperopt", "ahb")
    assert parse_strategy("random") == parse_strategy("random:fifo") == StrategyName("random", "fifo")
    assert parse_strategy("asha").label == "random + asha"
    with pytest.raises(SimulationError, match="PBT cannot be replayed"):
        parse_strategy("random:pbt")
    with pytest.raises(SimulationError, match="unknown strategy"):
        parse_strategy("random:hyperband")


def test_scheduler_settings_come_from_the_yaml_configs_and_flags():
    pool = random_pool(epochs=12)
    ahb_yaml = strategy_config(StrategyName("random", "ahb"), pool, {})
    assert (ahb_yaml.grace_period, ahb_yaml.reduction_factor, ahb_yaml.brackets, ahb_yaml.max_epochs) == (3, 2, 3, 12)
    flags = strategy_config(StrategyName("random", "asha"), pool, {"grace_period": 2, "reduction_factor": 3})
    scheduler = build_scheduler(flags, load_space(pool.space))
    assert isinstance(scheduler, AsyncHyperBandScheduler) and len(scheduler._brackets) == 1
    assert scheduler._max_t == 12 and [m for m, _ in scheduler._brackets[0]._rungs] == [6, 2]


# --- pools from experiment folders ----------------------------------------------------------

def write_pool_experiment(root: Path, name: str, trials: dict[str, list[float]], *, max_epochs: int = 4,
                          metric: str = "val_mae", scheduler: str = "fifo", epoch_s: float = 10.0,
                          layout: list[list[str]] | None = None, ended: tuple[str, ...] = ()) -> Path:
    """An experiment folder as the runner leaves it (summary.json, one progress.csv per trial).

    ``layout`` lists, per actor (pid), the trials it ran in order; the actor starts its first epoch
    5 s after the experiment's start, epochs take ``epoch_s`` and are 0.5 s apart, trials 1 s apart.
    As in Tune's files, ``done`` is true in the last row of a trial stopped at ``max_epochs`` or ended by
    itself (``ended``), not in that of a trial a time budget cut.
    """
    exp = root / name
    layout = layout or [list(trials)]
    records = []
    for pid, actor in enumerate(layout, start=100):
        t = START + 5.0
        for trial_id in actor:
            values = trials[trial_id]
            trial_dir = exp / f"CGCNNTrainable_{trial_id}"
            trial_dir.mkdir(parents=True)
            with open(trial_dir / "progress.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([metric, "test_mae", "training_iteration", "timestamp", "time_this_iter_s",
                                 "step_started_at", "pid", "done", "trial_id"])
                for epoch, value in enumerate(values, start=1):
                    writer.writerow([value, value + 0.01, epoch, int(t + epoch_s), epoch_s, t, pid,
                                     epoch == max_epochs or (trial_id in ended and epoch == len(values)),
                                     trial_id])
                    t += epoch_s + (0.5 if epoch < len(values) else 0.0)
            t += 1.0
            records.append({"trial_id": trial_id, "config": {"lr": 0.01, "atom_embedding_size": 16,
                                                             "num_graph_conv_layers": 2},
                            "metric": values[-1], "iteration": len(values), "errored": False,
                            "path": str(trial_dir)})
    summary = {"name": name, "model": "cgcnn", "searcher": "random", "scheduler": scheduler, "seed": 0,
               "metric": metric, "mode": "min", "space": "cgcnn_default", "max_epochs": max_epochs,
               "wall_time_s": 100.0, "start_time": START, "trials": records}
    (exp / "summary.json").write_text(json.dumps(summary))
    return exp


def test_pool_from_experiment_folders_with_overheads_measured_from_timestamps(tmp_path):
    # Two actors: (a, b) and (c); d was cut by the budget after 2 epochs and is left out.
    curves = {"a": CURVES["A"], "b": CURVES["B"], "c": CURVES["C"], "d": CURVES["D"][:2]}
    exp = write_pool_experiment(tmp_path, "rs", curves, layout=[["a", "b"], ["c", "d"]])
    pool = read_experiments([exp])
    assert [t.key for t in pool.trials] == ["rs/a", "rs/b", "rs/c"]
    assert list(pool.trials[2].values) == CURVES["C"] and list(pool.trials[0].seconds) == [10.0] * 4
    assert list(pool.trials[1].tests) == pytest.approx([v + 0.01 for v in CURVES["B"]])
    o = pool.overheads
    assert (o.first_start_s, o.switch_s, o.between_results_s) == (5.0, 1.0, 0.5)
    assert o.samples == {"first_start_s": 2, "switch_s": 2, "between_results_s": 10}
    assert pool.notes == ["1 trial(s) not full length (cut by a budget, interrupted or errored) left out"]
    # The round trip through the pool file keeps everything, metadata included.
    path = save_pool(pool, tmp_path / "pool.json.gz", {"git_commit": "abc", "command": "run_random.py"})
    again = load_pool(path)
    assert [list(t.values) for t in again.trials] == [list(t.values) for t in pool.trials]
    assert again.overheads == pool.overheads and again.metadata["git_commit"] == "abc"


def test_a_diverged_trial_that_ended_itself_stays_in_the_pool(tmp_path):
    exp = write_pool_experiment(tmp_path, "rs", {"a": CURVES["A"], "z": [0.3, math.inf]}, ended=("z",))
    pool = read_experiments([exp])
    short = pool.trials[1]
    assert short.ends_itself and short.epochs == 2 and short.values[-1] == math.inf
    run = simulate(pool, asha(pool), InOrder(pool.trials), workers=1, budget_s=1000)
    assert [(o.key, o.epochs, o.stopped_by_scheduler) for o in run.outcomes()] == [("rs/a", 4, False),
                                                                                  ("rs/z", 2, False)]
    # Its epoch-1 value (0.3) would be the best top-2 member, but a diverged trial never ranks
    # (experiments/core/scores.py): not in the curve, not in the pool's ceiling.
    assert run.keys == [0, 0, 0, 0]
    assert pool_topk(pool, 1) == 0.2 and pool_topk(pool, 2) is None


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "experiments/simulate.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(capsys, args: list[str], fragment: str) -> None:
    """``simulate.py ARGS`` (in this process: Ray imports once) exits 2 with one ``error:`` line."""
    from experiments.simulation.cli import main

    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_bad_pools_and_strategies_are_one_line_errors(tmp_path, capsys):
    cut = write_pool_experiment(tmp_path, "cut", {"a": CURVES["A"][:2], "b": CURVES["B"][:3]})
    assert_one_line_error(capsys, [str(cut), "--workers", "2"], "ran full length")
    full = write_pool_experiment(tmp_path, "full", {"a": CURVES["A"]})
    other_metric = write_pool_experiment(tmp_path, "loss", {"a": CURVES["A"]}, metric="train_loss")
    assert_one_line_error(capsys, [str(full), str(other_metric)], "metric")
    longer = write_pool_experiment(tmp_path, "longer", {"a": CURVES["A"] + [0.1]}, max_epochs=5)
    assert_one_line_error(capsys, [str(full), str(longer)], "max_epochs")
    early = write_pool_experiment(tmp_path, "asha", {"a": CURVES["A"]}, scheduler="asha")
    assert_one_line_error(capsys, [str(early)], "scheduler 'asha'")
    assert_one_line_error(capsys, [str(full), "--strategies", "random:pbt"], "PBT cannot be replayed")
    assert_one_line_error(capsys, [str(full), "--strategies", "random:asha", "--grace-period", "9"],
                          "grace_period (9)")
    assert_one_line_error(capsys, ["--pool", str(tmp_path / "missing.json.gz")], "pool file not found")
    assert_one_line_error(capsys, [str(full), "--workers", "0"], "--workers")
    assert_one_line_error(capsys, [str(full), "--target-quantile", "1.5"], "--target-quantile")
    assert_one_line_error(capsys, [str(full), "--bootstrap", "0"], "--bootstrap")
    assert_one_line_error(capsys, [], "--pool builtin")
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(b'{"format": "other"}'))
    assert_one_line_error(capsys, ["--pool", str(tmp_path / "bad.json.gz")], "not a pool file")
    # And as a user runs it: a separate process, one line on stderr, no traceback.
    proc = run_cli(str(full), "--strategies", "asha:pbt")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: PBT cannot be replayed from recorded curves: it copies weights between trials and changes their "
        "hyperparameters mid-run, so no recorded curve shows what an exploited trial would do"]


def test_report_writes_the_simulated_table_and_plot_and_real_vs_simulated(tmp_path):
    pool = hand_pool()
    names = [parse_strategy("random:fifo"), parse_strategy("random:asha")]
    results = [replay_strategy(n, pool, workers=1, budget_s=1000, seeds=[0, 1], settings={"grace_period": 1})
               for n in names]
    text, rows, fig = write_report(results, pool, tmp_path, k=2, workers=1, budget_s=1000)
    assert text.startswith("# SIMULATED") and "Simulated, not measured" in text
    for name in ("simulated_comparison.md", "simulated_comparison.csv", "simulated_comparison.png",
                 "simulated_runs.csv"):
        assert (tmp_path / name).is_file()
    assert fig.axes[0].get_title().startswith("SIMULATED")
    by_label = {r.label: r for r in rows}
    # Random search over four recorded trials ends with the two best (C 0.05, D 0.1): the pool's own top-2.
    assert by_label["random + fifo"].final == pytest.approx(0.075) == pool_topk(pool, 2)
    # Real vs simulated: a constructed "real" ASHA run of the four curves (A, C full; B, D stopped at 1).
    real = write_pool_experiment(tmp_path, "real_asha", {"a": CURVES["A"], "b": CURVES["B"][:1],
                                                         "c": CURVES["C"], "d": CURVES["D"][:1]},
                                 scheduler="asha")
    rows = validation_rows(results, pool, [real], 2)
    assert len(rows) == 1 and rows[0]["strategy"] == "random + asha"
    assert rows[0]["trials with a result, real"] == "4" and rows[0]["epochs trained, real"] == "10"
    assert rows[0]["final top-2 mean, real"] == "0.125"  # A (0.2) and C (0.05) ran full length


# --- the shipped pools -----------------------------------------------------------------------

BUILTIN_MISSING = pytest.mark.skipif(not BUILTIN_POOL.is_file(), reason="the built-in pool is not in this checkout")
VALIDATION_POOL = REPO / "experiments/simulation/pools/cgcnn_smoke_validation.json.gz"


def check_recorded_pool(pool: Pool, minimum: int) -> None:
    assert len(pool.trials) >= minimum and pool.model == "cgcnn"
    assert all(t.epochs == pool.max_epochs or t.ends_itself for t in pool.trials)
    assert all(np.all(t.seconds > 0) for t in pool.trials)
    for key in ("git_commit", "command", "recorded_utc"):
        assert pool.metadata.get(key), key
    assert pool.metadata["recorded_with"]["max_epochs"] == pool.max_epochs
    assert pool.overheads.samples["first_start_s"] >= 1 and pool.overheads.first_start_s > 0


@BUILTIN_MISSING
def test_builtin_pool_loads_with_its_recording_facts():
    pool = load_shipped_pool()
    check_recorded_pool(pool, 100)
    assert BUILTIN_POOL.stat().st_size < 3 * 2**20
    space = load_space(pool.space)
    assert all(space.contains({k: v for k, v in t.config.items() if k in space.names}) for t in pool.trials)


@BUILTIN_MISSING
def test_simulate_builtin_pool_end_to_end(tmp_path):
    proc = run_cli("--pool", "builtin", "--workers", "4", "--budget-s", "900", "--seeds", "2",
                   "--strategies", "random:fifo", "random:asha", "random:ahb", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "SIMULATED" in proc.stdout and "random + asha" in proc.stdout
    assert (tmp_path / "simulated_comparison.png").stat().st_size > 0
    with open(tmp_path / "simulated_comparison.csv") as fh:
        assert [row["strategy"] for row in csv.DictReader(fh)] == ["random + fifo", "random + asha", "random + ahb"]


@pytest.mark.parametrize("name,attribute", [("builtin", "BUILTIN_POOL"), ("cgcnn_six", "SIX_POOL")])
def test_without_a_shipped_pool_its_absence_is_one_line(tmp_path, capsys, monkeypatch, name, attribute):
    import experiments.simulation.pool as pool_module

    monkeypatch.setattr(pool_module, attribute, tmp_path / "absent.json.gz")
    assert_one_line_error(capsys, ["--pool", name], "built-in pool")


SIX_MISSING = pytest.mark.skipif(not SIX_POOL.is_file(), reason="the cgcnn_six pool is not in this checkout")


@SIX_MISSING
def test_the_cgcnn_six_pool_holds_400_seeded_curves_recorded_on_the_final_built_in_data():
    from trainables.data.adsorption import GENERATOR_VERSION

    pool = read_pool(["cgcnn_six"])
    assert pool.model == "cgcnn" and pool.space == "cgcnn_six" and pool.max_epochs == 20
    assert len(pool.trials) >= 400 and all(t.epochs == pool.max_epochs or t.ends_itself for t in pool.trials)
    assert SIX_POOL.stat().st_size < 2 * 2**20
    meta = pool.metadata
    assert meta["generator_version"] == [GENERATOR_VERSION], meta["generator_version"]  # after the de-duplication
    assert meta["seeds"].startswith("1000..") and "dirty" not in meta["git_commit"]
    assert all(meta[key] for key in ("recorder_command", "curve_command", "recorded_utc", "machine"))
    # one seed per curve: every curve its own configuration, inside the space it names
    assert len({json.dumps(t.config, sort_keys=True) for t in pool.trials}) == len(pool.trials)
    space = load_space(pool.space)
    assert all(space.contains({k: v for k, v in t.config.items() if k in space.names}) for t in pool.trials)


def test_the_shipped_validation_pool_replays(tmp_path, capsys):
    """The real recorded pool of the README's validation: read, replayed as the README says."""
    from experiments.simulation.cli import main

    check_recorded_pool(load_pool(VALIDATION_POOL), 80)
    assert main(["--pool", str(VALIDATION_POOL), "--workers", "2", "--budget-s", "120", "--seeds", "2",
                 "--strategies", "random:asha", "random:ahb", "--grace-period", "1", "--reduction-factor", "2",
                 "--brackets", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "random + ahb" in out and (tmp_path / "simulated_comparison.png").is_file()


@pytest.mark.slow
def test_pool_from_a_real_random_search_experiment(tmp_path):
    """A real smoke random search (real Ray, real trainable), read as a pool and replayed."""
    proc = subprocess.run([sys.executable, "experiments/run_random.py", "--smoke-test", "--num-samples", "4",
                           "--storage-path", str(tmp_path), "--name", "rs"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pool = read_experiments([tmp_path / "rs"])
    assert len(pool.trials) == 4 and pool.max_epochs == 2
    assert pool.overheads.first_start_s > 0 and pool.overheads.samples["between_results_s"] == 4
    proc = run_cli(str(tmp_path / "rs"), "--workers", "2", "--budget-s", "60", "--seeds", "2", "--top-k", "2",
                   "--strategies", "random:fifo", "random:asha", "--grace-period", "1", "--out", str(tmp_path / "sim"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sim" / "simulated_comparison.md").read_text().startswith("# SIMULATED")


# --- trustworthy rankings: passes, intervals, the searcher told what ran ---------------------

def late_bloomer_pool(n_normal: int = 58) -> Pool:
    """Curves with a closed-form ASHA answer once the pool is drawn over and over.

    Normal curve i: 0.05 + 0.005 i + 0.2 / epoch, 1 s per epoch: its rank never changes, so the rung
    cut-offs (grace 2, rf 2: rungs at 2 and 4) always pass the best ones. Two late bloomers: 0.9 for
    four epochs, then 0.01 (the pool's best), 3 s per epoch: they reach rung 2 after several normal
    curves have, are the worst there, and ASHA stops them every time. So ASHA's final top-6 is the six
    best normal curves at epoch 8, (0.075 + 0.08 + ... + 0.1) / 6 = 0.0875, in every seed.
    """
    space = load_space("cgcnn_default")
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 9)
    trials = []
    for i in range(n_normal):
        values = 0.05 + 0.005 * i + 0.2 / epochs
        trials.append(RecordedTrial(f"n{i}", from_unit_cube(space, rng.random(3)), values, np.ones(8), values))
    for j in range(2):
        values = np.array([0.9] * 4 + [0.01] * 4)
        trials.append(RecordedTrial(f"late{j}", from_unit_cube(space, rng.random(3)), values, np.full(8, 3.0), values))
    return Pool("cgcnn", "cgcnn_default", "val_mae", "min", 8, trials, Overheads(1.0, 0.0, 0.0), test_metric="test_mae")


def test_passes_pool_limited_mark_and_bootstrap_interval_hold_the_closed_form_asha_answer(tmp_path):
    from experiments.simulation.bootstrap import draws, replicate
    from experiments.simulation.report import summarize

    pool = late_bloomer_pool()
    settings = {"grace_period": 2, "reduction_factor": 2}
    names = [parse_strategy("random:fifo"), parse_strategy("random:asha")]
    long = [replay_strategy(n, pool, workers=4, budget_s=3000, seeds=[0, 1, 2, 3], settings=settings) for n in names]
    text, rows, _ = write_report(long, pool, tmp_path, k=6, workers=4, budget_s=3000, replicates=400)
    with open(tmp_path / "simulated_comparison.csv") as fh:
        table = {row["strategy"]: row for row in csv.DictReader(fh)}
    for r in long:  # 60 curves, 8-24 s each on 4 slots for 3000 s: drawn over many times
        assert all(p == math.ceil(run.num_trials / 60) for p, run in zip(r.passes, r.runs, strict=True))
        assert table[r.name.label]["passes_over_pool"] == f"{np.mean(r.passes):.1f}" and np.mean(r.passes) > 10
        assert table[r.name.label]["pool_limited"] == "yes"
    assert "random + asha **POOL-LIMITED**" in text and "POOL-LIMITED rows: random + fifo" in text
    closed_form = np.mean(0.05 + 0.005 * np.arange(6) + 0.2 / 8)  # 0.0875
    by_label = {r.label: r for r in rows}
    assert by_label["random + asha"].final == pytest.approx(closed_form)
    assert by_label["random + fifo"].final == pytest.approx(pool_topk(pool, 6)) == pytest.approx(0.35 / 6)
    lo, hi = (float(x) for x in table["random + asha"]["final_topk_mean_ci95"].strip("[]").split(", "))
    # The bound (experiments/simulation/bootstrap.py): within [x_(1), x_(3k)] of the values the runs end
    # with; here x_(1) = 0.075 (normal curve 0), x_(18) = 0.16 (normal 17: the top half runs to epoch 8).
    assert lo <= closed_form <= hi and hi - lo < 0.16 - 0.075 and lo >= 0.075
    assert hi - lo > 0  # the curve level is all that is left, and it is not nothing
    # One replicate with every curve counted once and the seeds as they are is the table itself.
    weights, seed_draws = draws(pool, [4], replicates=1)
    same = replicate(long[1].runs, pool, 6, 0.1, np.ones_like(weights), np.arange(4)[None, :])
    rows_at, _ = summarize(long[1:], pool, 6, 0.1)
    assert same.final[0] == pytest.approx(rows_at[0].final) and rows_at[0].time_to_target is not None
    assert same.time_to_target[0] == rows_at[0].time_to_target
    # A budget inside the first pass: the same strategies are not pool-limited, and the report says so.
    short = [replay_strategy(n, pool, workers=4, budget_s=40, seeds=[0, 1], settings=settings) for n in names]
    text, _, _ = write_report(short, pool, tmp_path / "short", k=6, workers=4, budget_s=40, replicates=100)
    with open(tmp_path / "short" / "simulated_comparison.csv") as fh:
        assert {row["pool_limited"] for row in csv.DictReader(fh)} == {"no"}
    assert "POOL-LIMITED" not in text and "No strategy drew the pool more than once" in text


def test_the_default_target_is_the_pools_quantile_not_random_searchs_end():
    from experiments.simulation.bootstrap import pool_target

    pool = late_bloomer_pool()
    bests = sorted([0.05 + 0.005 * i + 0.025 for i in range(58)] + [0.01, 0.01])
    assert pool_target(pool, 0.1) == pytest.approx(np.quantile(bests, 0.1))


def test_the_report_says_how_much_the_pools_configurations_differ():
    from experiments.simulation.bootstrap import pool_spread

    pool = late_bloomer_pool()  # best values: 0.01 twice, 0.075 + 0.005 i for i < 58
    text = pool_spread(pool)
    assert "60 ranking curves" in text and "best 0.01," in text and "median 0.2125" in text, text
    assert "3% end within 2x of the best, 97% beyond 4x" in text and "diverged" not in text, text
    diverged = np.array([0.5, np.inf])
    pool.trials.append(RecordedTrial("nan", pool.trials[0].config, diverged, np.ones(2), diverged, ends_itself=True))
    assert "60 ranking curves" in pool_spread(pool) and "1 curve(s) ended themselves" in pool_spread(pool)


class TellMe:
    """A Ray Searcher standing in for a model-based one: uniform proposals, and it records what it is told."""

    def __new__(cls, space, adaptive: bool):
        from ray.tune.search import Searcher

        class Told(Searcher):
            def __init__(self):
                super().__init__(metric="val_mae", mode="min")
                self.rng = np.random.default_rng(1)
                self.completed, self.results, self.points = [], [], []

            def suggest(self, trial_id):
                return from_unit_cube(space, self.rng.random(len(space.params)))

            def on_trial_result(self, trial_id, result):
                self.results.append((trial_id, result))

            def on_trial_complete(self, trial_id, result=None, error=False):
                self.completed.append((trial_id, result, error))

        if adaptive:
            Told.add_evaluated_point = lambda self, parameters, value, **kw: self.points.append((parameters, value))
        return Told()


def test_the_searcher_is_told_the_configuration_that_was_replayed(capsys):
    from experiments.simulation.strategies import tells_evaluated_points

    pool = random_pool(n=30, epochs=4)
    space = load_space(pool.space)
    fifo = build_scheduler(strategy_config(StrategyName("random", "fifo"), pool, {}), space)
    adaptive = TellMe(space, adaptive=True)
    assert tells_evaluated_points(adaptive) and not tells_evaluated_points(TellMe(space, adaptive=False))
    nearest = NearestRecorded(adaptive, space, pool, "val_mae", adaptive=True)
    run = simulate(pool, fifo, nearest, workers=2, budget_s=60, seed=0)
    finished = [o for o in run.outcomes() if o.finished]
    assert len(finished) >= 5 and len(adaptive.points) == len(finished)
    by_key = {t.key: t for t in pool.trials}
    for (config, value), outcome in zip(adaptive.points, finished, strict=True):
        recorded = by_key[outcome.key]
        assert config == {name: recorded.config[name] for name in space.names}  # what ran, not what it proposed
        assert value == pytest.approx(recorded.values[-1])
    assert max(nearest.distances) > 0.05  # the proposals were elsewhere
    assert all(error for _, _, error in adaptive.completed) and not adaptive.results  # proposals withdrawn
    # A searcher that learns nothing from results hears them as Tune hands them over, config included.
    plain = TellMe(space, adaptive=False)
    run = simulate(pool, build_scheduler(strategy_config(StrategyName("random", "fifo"), pool, {}), space),
                   NearestRecorded(plain, space, pool), workers=2, budget_s=60, seed=0)
    finished = [o for o in run.outcomes() if o.finished]
    assert [result["config"] for _, result, _ in plain.completed] == [by_key[o.key].config for o in finished]
    # HyperOpt cannot be told: refused before anything is simulated.
    assert_one_line_error(capsys, ["--pool", "builtin", "--strategies", "random:fifo", "hyperopt:asha"],
                          "hyperopt cannot be replayed from a pool")


def test_weighted_topk_counts_each_curve_as_often_as_it_was_drawn():
    from experiments.simulation.bootstrap import weighted_topk

    rng = np.random.default_rng(3)
    rows = rng.random((200, 120))
    rows[rng.random(rows.shape) < 0.4] = np.inf  # curves without a result yet
    weights = rng.multinomial(120, np.full(120, 1 / 120), size=200).astype(float)
    weights[:3] = 0.0  # nothing drawn: undefined
    got = weighted_topk(rows, weights, 6)
    for row, w, value in zip(rows, weights, got, strict=True):
        units = np.sort(np.repeat(row[np.isfinite(row)], w[np.isfinite(row)].astype(int)))
        assert value == (pytest.approx(units[:6].mean()) if len(units) >= 6 else np.inf)


def test_pool_recorder_resumes_redoes_a_cut_curve_and_refuses_an_incomplete_pool(tmp_path, monkeypatch):
    """The recorder's bookkeeping, with a stand-in for run_random.py that writes a one-trial summary."""
    import experiments.simulation.recorder as recorder

    fake = tmp_path / "fake_run.py"
    fake.write_text(
        "import json, sys, pathlib\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "folder = pathlib.Path(args['--storage-path']) / args['--name']\n"
        "folder.mkdir(parents=True)\n"
        "(folder / 'summary.json').write_text(json.dumps({'trials': [{'iteration': int(args['--max-epochs']), "
        "'errored': False}]}))\n")
    launched = []

    def command(seed, *, space, max_epochs, storage, extra):
        launched.append(seed)
        return [sys.executable, str(fake), "--seed", str(seed), "--max-epochs", str(max_epochs),
                "--storage-path", str(storage), "--name", recorder.curve_name(seed)]

    monkeypatch.setattr(recorder, "curve_command", command)
    monkeypatch.setattr(recorder, "generator_version", lambda: 8)  # importing the data layer takes seconds
    storage = tmp_path / "pool"
    kw = dict(space="cgcnn_six", first_seed=5, max_epochs=3, storage=storage, jobs=2, stop_at=None, extra=[],
              command="record", poll_s=0.05)
    assert recorder.record(curves=2, **kw) == 2 and sorted(launched) == [5, 6]
    (storage / recorder.curve_name(7)).mkdir()  # a curve killed mid-way: a folder without a summary
    launched.clear()
    assert recorder.record(curves=3, **kw) == 3 and launched == [7]  # only the missing one, its folder redone
    entries = recorder.recorded_seeds(storage)
    assert sorted(entries) == [5, 6, 7] and all(e["git_commit"] and e["machine"]["cpus"] for e in entries.values())
    assert all(e["generator_version"] == 8 and "--seed" in e["command"] for e in entries.values())
    with pytest.raises(SimulationError, match="only 3 of 4 curves"):
        recorder.finalize(storage=storage, curves=4, first_seed=5, max_epochs=3, out=tmp_path / "p.json.gz",
                          command="save")
