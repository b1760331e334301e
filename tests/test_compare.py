"""Strategy comparison: top-k curves, time to target and speed-up on constructed experiments with a
known answer, and the benchmark launcher end to end on a real local Ray."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.analysis.comparison import compare, mean_curve, time_to_target, topk_curve
from experiments.core.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
START = 1_000_000.0  # the experiments' start time (Unix seconds)


def write_experiment(root: Path, name: str, searcher: str, scheduler: str, seed: int,
                     results: list[tuple[float, str, float]], metric: str = "val_mae",
                     wall_time: float = 120.0, errored: tuple[str, ...] = (), settings: dict | None = None) -> Path:
    """An experiment folder as the runner leaves it: summary.json plus one progress.csv per trial.

    ``results`` are (seconds since start, trial id, metric) triples; each trial's results are its epochs.
    Trials in ``errored`` failed after their results. ``settings`` are written as the
    experiment.yaml snapshot (model options and runner settings, as ``to_yaml_dict`` writes them).
    """
    exp = root / name
    trials = []
    for trial_id in dict.fromkeys(r[1] for r in results):
        rows = [r for r in results if r[1] == trial_id]
        trial_dir = exp / f"Trainable_{trial_id}"
        trial_dir.mkdir(parents=True)
        with open(trial_dir / "progress.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([metric, "test_mae", "training_iteration", "timestamp", "time_this_iter_s", "trial_id"])
            for epoch, (t, _, value) in enumerate(rows, start=1):
                writer.writerow([value, value + 0.01, epoch, int(START + t), 1.0, trial_id])
        trials.append({"trial_id": trial_id, "config": {"lr": 0.01}, "metric": min(r[2] for r in rows),
                       "test_mae": min(r[2] for r in rows) + 0.01, "iteration": len(rows),
                       "errored": trial_id in errored, "diverged": False, "collapsed": False, "path": str(trial_dir)})
    summary = {"name": name, "model": "cgcnn", "searcher": searcher, "scheduler": scheduler, "seed": seed,
               "metric": metric, "mode": "min", "space": "cgcnn_default", "wall_time_s": wall_time,
               "start_time": START, "trials": trials}
    summary.update({k: v for k, v in (settings or {}).items() if k in ("space", "max_epochs", "num_samples")})
    (exp / "summary.json").write_text(json.dumps(summary))
    if settings is not None:
        (exp / "experiment.yaml").write_text(yaml.safe_dump({"model": "cgcnn", "search": searcher, **settings}))
    return exp


def test_topk_curve_averages_each_trials_best_so_far():
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    trials = ["a", "b", "c", "a", "b"]
    values = np.array([5.0, 4.0, 1.0, 0.5, 6.0])  # b gets worse later: its best (4.0) still counts
    curve = topk_curve(times, trials, values, k=2, mode="min")
    assert np.isnan(curve.values[0])  # only one trial so far
    assert list(curve.values[1:]) == [4.5, 2.5, 0.75, 0.75]
    up = topk_curve(times, trials, values, k=2, mode="max")
    assert list(up.values[1:]) == [4.5, 4.5, 4.5, 5.5]
    assert list(curve.at(np.array([0.5, 2.5, 10.0]))[1:]) == [4.5, 0.75]


def test_time_to_target_and_seed_mean_on_constructed_curves():
    a = topk_curve(np.array([10.0, 100.0]), ["x", "y"], np.array([10.0, 6.0]), k=1, mode="min", end=120)
    b = topk_curve(np.array([10.0, 100.0]), ["x", "y"], np.array([8.0, 4.0]), k=1, mode="min", end=120)
    times, mean, std = mean_curve([a, b])
    assert list(times) == [10.0, 100.0, 120.0]
    assert list(mean) == [9.0, 5.0, 5.0] and list(std) == [1.0, 1.0, 1.0]
    assert time_to_target(times, mean, 5.0, "min") == 100.0
    assert time_to_target(times, mean, 4.0, "min") is None
    assert time_to_target(times, mean, 9.0, "max") == 10.0


def test_speedup_over_random_search_on_constructed_experiments(tmp_path):
    # Random search (2 seeds): top-1 means 9 at 10 s, 5 at 100 s: the target is 5, reached at 100 s.
    dirs = [write_experiment(tmp_path, "rs0", "random", "fifo", 0, [(10, "r0a", 10.0), (100, "r0b", 6.0)]),
            write_experiment(tmp_path, "rs1", "random", "fifo", 1, [(10, "r1a", 8.0), (100, "r1b", 4.0)])]
    # ASHA (2 seeds): means 7 at 5 s, 5 at 20 s (target reached), then 4 at 50 s: 100 / 20 = 5x faster.
    dirs += [write_experiment(tmp_path, "asha0", "random", "asha", 0,
                              [(5, "a0a", 7.0), (20, "a0b", 5.0), (50, "a0c", 3.0)]),
             write_experiment(tmp_path, "asha1", "random", "asha", 1,
                              [(5, "a1a", 7.0), (20, "a1b", 5.0), (50, "a1b", 5.0)])]
    # HyperOpt never gets below 6: no time to target, no speed-up.
    dirs += [write_experiment(tmp_path, "bo0", "hyperopt", "asha", 0, [(30, "b0a", 6.0)])]
    rows, fig = compare(dirs, tmp_path / "cmp", k=1)
    by_label = {r.label: r for r in rows}
    assert by_label["random + fifo"].time_to_target == 100.0 and by_label["random + fifo"].speedup == 1.0
    assert by_label["random + asha"].time_to_target == 20.0
    assert by_label["random + asha"].speedup == pytest.approx(5.0)
    assert by_label["hyperopt + asha"].time_to_target is None and by_label["hyperopt + asha"].speedup is None
    assert by_label["random + asha"].best_metric == 3.0 and by_label["random + asha"].best_where == "asha0"
    assert by_label["random + asha"].trials_finished == 2.5  # 3 trials with seed 0, 2 with seed 1

    # The figure plots exactly these means; the table files carry the same numbers.
    ax = fig.axes[0]
    line = next(line for line in ax.lines if line.get_label().startswith("random + asha"))
    assert list(line.get_xdata()) == [5.0, 20.0, 50.0, 120.0] and list(line.get_ydata()) == [7.0, 5.0, 4.0, 4.0]
    table = list(csv.DictReader(open(tmp_path / "cmp" / "comparison.csv")))
    asha = next(r for r in table if r["strategy"] == "random + asha")
    assert asha["time_to_target_s"] == "20.0" and asha["speedup_vs_random"] == "5.00" and asha["seeds"] == "0 1"
    assert "| random + asha | 0 1 |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_an_explicit_target_and_mismatched_experiments(tmp_path):
    a = write_experiment(tmp_path, "a", "random", "asha", 0, [(5, "t1", 7.0), (20, "t2", 5.0)])
    rows, _ = compare([a], tmp_path / "cmp", k=1, target=6.0)
    assert rows[0].time_to_target == 20.0 and rows[0].speedup is None  # no random search to compare with
    b = write_experiment(tmp_path, "b", "random", "fifo", 0, [(5, "t1", 7.0)], metric="val_loss")
    with pytest.raises(ConfigError, match="metric"):
        compare([a, b], tmp_path / "cmp", k=1)
    with pytest.raises(ConfigError, match="no summary.json"):
        compare([tmp_path / "nothing"], tmp_path / "cmp")


def test_compare_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "compare.py"), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "benchmarks" / "strategies.py"),
                           "--strategies", "asha:grid"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "asha" in proc.stderr and proc.stderr.count("\n") == 1


def test_rung_evidence_measures_how_early_epochs_rank_the_final_best(tmp_path):
    from experiments.benchmarks.time_to_solution import rung_evidence

    # 12 complete trials of 3 epochs: epoch 1 ranks them exactly as their best value does,
    # epoch 2 in reverse; one trial stopped after 1 epoch does not count.
    results = []
    for i in range(12):
        final = 0.1 + 0.01 * i
        t = 10.0 * i
        results += [(t + 1, f"t{i}", final + 1.0), (t + 2, f"t{i}", 2.0 - final), (t + 3, f"t{i}", final)]
    results.append((200.0, "short", 0.05))
    # An errored trial that ran every epoch, with the best values of all, is no evidence either.
    results += [(210.0, "crashed", 0.01), (211.0, "crashed", 0.01), (212.0, "crashed", 0.01)]
    exp = write_experiment(tmp_path, "random_random_seed0", "random", "fifo", 0, results, errored=("crashed",))
    lines = rung_evidence([exp], epochs=(1, 2, 4), k=6)
    assert lines[0].startswith("rung evidence from 12 complete random-search trials")
    assert "epoch 1: rank correlation with the trial's score 1.00; of the 6 best, 6 in the top half, 3 in" in lines[1]
    assert "epoch 2: rank correlation with the trial's score -1.00; of the 6 best, 0 in the top half, 0 in" in lines[2]
    assert len(lines) == 3  # no trial has an epoch 4
    assert "only 12 complete random-search trials; need 14" in rung_evidence([exp], k=7)[0]


@pytest.mark.slow
def test_benchmark_runs_strategies_with_the_same_budget_and_compares_them(tmp_path, smoke_cache):
    env = {**os.environ, "HPO_SUITE_CACHE": str(smoke_cache), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "benchmarks" / "strategies.py"), "--smoke-test",
         "--strategies", "random", "asha", "--seeds", "0", "--time-budget-s", "20", "--max-epochs", "3",
         "--grace-period", "1",
         "--reduction-factor", "4",
         "--storage-path", str(tmp_path / "bench")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("random_random_seed0", "asha_random_seed0"):
        summary = json.loads((tmp_path / "bench" / name / "summary.json").read_text())
        assert summary["seed"] == 0
        # The budget, not the trial count (unbounded here), ended the run.
        assert summary["num_samples"] == 1000 and 20 <= summary["wall_time_s"] < 90
        assert yaml_value(tmp_path / "bench" / name / "experiment.yaml", "time_budget_s") == 20.0
    # ASHA's rungs as given; random search has none to set.
    asha = tmp_path / "bench" / "asha_random_seed0" / "experiment.yaml"
    assert (yaml_value(asha, "grace_period"), yaml_value(asha, "reduction_factor")) == (1, 4.0)
    table = list(csv.DictReader(open(tmp_path / "bench" / "comparison.csv")))
    assert [r["strategy"] for r in table] == ["random + fifo", "random + asha"]
    assert "comparison.png" in (tmp_path / "bench" / "comparison.md").read_text()


def yaml_value(path: Path, key: str):
    import yaml

    return yaml.safe_load(path.read_text())[key]


# --- one definition of "best" (issue 21 item 15) -------------------------------------------------


def test_errored_trials_count_nowhere_and_each_trial_counts_with_its_best_result(tmp_path):
    # "bad" reports the best value of all (1.0) at 10 s, then errors: it never counts. "late" is
    # best at 20 s (2.0) and worse at its last result (9.0): its score stays 2.0.
    rs = write_experiment(tmp_path, "rs", "random", "fifo", 0,
                          [(10, "bad", 1.0), (20, "late", 2.0), (30, "other", 3.0), (40, "late", 9.0)],
                          errored=("bad",))
    rows, fig = compare([rs], tmp_path / "cmp", k=1)
    row = rows[0]
    assert list(row.times) == [20.0, 30.0, 40.0, 120.0] and list(row.mean) == [2.0, 2.0, 2.0, 2.0]
    assert row.best_metric == 2.0 and row.best_test == pytest.approx(2.01)  # the test metric of that result
    assert row.trials_finished == 2  # "bad" errored
    k2, _ = compare([rs], tmp_path / "cmp", k=2)
    assert np.isnan(k2[0].mean[0]) and list(k2[0].mean[1:]) == [2.5, 2.5, 2.5]

    from experiments.analysis.experiment import load_experiment

    exp = load_experiment(rs)
    assert [t["trial_id"] for t in exp.ranked_trials()] == ["late", "other"]
    assert exp.score(exp.summary["trials"][1]) == 2.0


def test_rank_and_score_functions_on_known_values():
    from experiments.core.scores import best_position, rank_trials, score_so_far, trial_score

    values = [3.0, float("nan"), 1.0, 2.0, float("inf"), 1.0]
    assert np.allclose(score_so_far(values, "min"), [3, 3, 1, 1, 1, 1])
    assert np.allclose(score_so_far(values, "max"), [3, 3, 3, 3, 3, 3])  # inf never counts
    assert best_position(values, "min") == 2 and trial_score(values, "min") == 1.0  # the first to reach it
    assert trial_score([float("nan")], "min") is None and np.isnan(score_so_far([float("nan")], "min")[0])
    trials = [{"trial_id": "a", "metric": 0.5}, {"trial_id": "b", "metric": 0.1, "errored": True},
              {"trial_id": "c", "metric": None}, {"trial_id": "d", "metric": 0.2, "interrupted": True}]
    assert [t["trial_id"] for t in rank_trials(trials, "min")] == ["d", "a"]
    assert [t["trial_id"] for t in rank_trials(trials, "max")] == ["a", "d"]


def test_the_summary_table_ranks_as_the_analysis_does():
    from experiments.core.summary import format_markdown, format_table

    summary = {"name": "x", "model": "cgcnn", "searcher": "random", "scheduler": "fifo", "strategy": "random",
               "space": "cgcnn_default", "metric": "val_mae", "mode": "min", "num_trials": 2, "num_terminated": 1,
               "num_errored": 1, "num_early_stopped": 0, "num_diverged": 0, "wall_time_s": 10.0, "config_file": None,
               "ray_version": "2.60.0", "reproduce_command": "python experiments/run_random.py",
               "best": {"trial_id": "ok", "config": {"lr": 0.1}, "metric": 0.3, "test_mae": 0.31, "iteration": 4,
                        "best_iteration": 2},
               "trials": [{"trial_id": "crash", "metric": 0.1, "test_mae": 0.1, "iteration": 1, "errored": True},
                          {"trial_id": "ok", "metric": 0.3, "test_mae": 0.31, "iteration": 4, "errored": False}]}
    table = format_table(summary).splitlines()
    assert table[2].startswith("ok") and not any(line.startswith("crash") for line in table)
    assert "reached at iteration 2 of 4" in table[3]
    assert "reached at iteration 2 of 4" in format_markdown(summary)


CGCNN = {"space": "cgcnn_default", "max_epochs": 12, "time_budget_s": 60.0, "num_samples": 1000, "cpus_per_trial": 1.0,
         "gpus_per_trial": 0.0, "max_concurrent_trials": 0, "checkpoint_frequency": 0, "reuse_actors": True,
         "grace_period": 3, "reduction_factor": 2.0, "brackets": 1, "seed": 0, "storage_path": "./results",
         "data": None, "dataset_size": 2000, "data_seed": 0}


def test_compare_refuses_runs_with_different_settings_unless_allowed(tmp_path):
    def run(name, scheduler, seed, **changes):
        return write_experiment(tmp_path, name, "random", scheduler, seed,
                                [(10, f"{name}a", 5.0), (20, f"{name}b", 4.0)], settings={**CGCNN, **changes})

    rs = [run("rs0", "fifo", 0, grace_period=7), run("rs1", "fifo", 1)]  # a grace period random search never uses
    asha = [run("asha0", "asha", 0, grace_period=4), run("asha1", "asha", 1, grace_period=4)]
    ahb = [run("ahb0", "ahb", 0, grace_period=2, brackets=3)]
    rows, _ = compare(rs + asha + ahb, tmp_path / "cmp", k=1)  # the strategies' own settings may differ
    assert {r.label: r.settings for r in rows} == {"random + fifo": "",
                                                   "random + asha": "grace_period=4 reduction_factor=2",
                                                   "random + ahb": "grace_period=2 reduction_factor=2 brackets=3"}
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Shared by every run: space=cgcnn_default max_epochs=12 time_budget_s=60 num_samples=1000." in md

    longer = run("asha2", "asha", 2, grace_period=4, max_epochs=20)
    with pytest.raises(ConfigError, match=r"settings differ: max_epochs 12 \(rs0, rs1, asha0, asha1\); 20 \(asha2\); "
                                          r"rerun with the same settings, or pass --allow-mixed"):
        compare(rs + asha + [longer], tmp_path / "cmp", k=1)
    pooled = run("asha3", "asha", 3, grace_period=8)
    with pytest.raises(ConfigError, match=r"grace_period within random \+ asha: 4 \(asha0, asha1\); 8 \(asha3\)"):
        compare(rs + asha + [pooled], tmp_path / "cmp", k=1)
    for change in ({"time_budget_s": 30.0}, {"space": "cgcnn_six"}, {"dataset_size": 200}, {"num_samples": 20},
                   {"gpus_per_trial": 1.0}):
        other = run("x" + "".join(change), "fifo", 5, **change)
        with pytest.raises(ConfigError, match=f"settings differ: {next(iter(change))} "):
            compare(rs + [other], tmp_path / "cmp", k=1)

    # PBT's num_samples is its population, not a budget.
    pbt = run("pbt0", "pbt", 0, num_samples=8, perturbation_interval=2)
    rows, _ = compare(rs + [pbt], tmp_path / "cmp", k=1)
    assert {r.label: r.settings for r in rows}["random + pbt"] == "perturbation_interval=2 num_samples=8"

    # --allow-mixed: compared, as groups whose labels name the differing values.
    rows, _ = compare(rs + asha + [longer, pooled], tmp_path / "cmp", k=1, allow_mixed=True)
    assert [r.label for r in rows] == ["random + fifo [max_epochs=12]", "random + asha [max_epochs=12 grace_period=4]",
                                       "random + asha [max_epochs=20 grace_period=4]",
                                       "random + asha [max_epochs=12 grace_period=8]"]
    assert rows[0].speedup == 1.0  # the baseline is the one random-search group
    assert "**Mixed settings**" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_compare_cli_refuses_mixed_settings_in_one_line_and_allow_mixed_compares(tmp_path):
    a = write_experiment(tmp_path, "a", "random", "fifo", 0, [(10, "t", 5.0)], settings=CGCNN)
    b = write_experiment(tmp_path, "b", "random", "asha", 0, [(10, "t", 5.0)], settings={**CGCNN, "max_epochs": 20})
    script = [sys.executable, str(REPO / "experiments" / "compare.py"), str(a), str(b), "--top-k", "1"]
    proc = subprocess.run(script, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: cannot compare: settings differ: max_epochs 12 (a); 20 (b)")
    proc = subprocess.run(script + ["--allow-mixed"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| random + asha [max_epochs=20] |" in proc.stdout


# --- the time axis of a resumed experiment (issue 21 item 16) -------------------------------------


def write_sessions(exp: Path, sessions: list[tuple[float, list[float]]]) -> None:
    """Tune's per-session experiment state, as Ray 2.60 writes it: ``stats.start_time`` and, per trial,
    runtime metadata holding ``last_result_time`` (a JSON string inside ``trial_data``)."""
    for i, (start, last_times) in enumerate(sessions):
        trial_data = [[json.dumps({"trial_id": f"t{j}"}), json.dumps({"last_result_time": t, "num_failures": 0})]
                      for j, t in enumerate(last_times)]
        state = {"trial_data": trial_data, "runner_data": {"_start_time": start}, "stats": {"start_time": start}}
        (exp / f"experiment_state-2026-01-0{i + 1}_00-00-00.json").write_text(json.dumps(state))


def test_a_resumed_experiments_time_axis_leaves_the_pause_out(tmp_path):
    from experiments.analysis.experiment import best_so_far, load_experiment, result_times

    # Session 1 runs 0..25 s (its last result at 20 s was overwritten by a restart, but Tune's state
    # recorded it at 25 s); a pause of 1000 s; session 2 runs from 1025 s and reports at +5 and +15 s.
    s1, s2 = START, START + 1025.0
    results = [(10, "a", 5.0), (20, "a", 4.0), (1030, "b", 3.0), (1040, "b", 2.0)]
    # The runner's summary of the resumed run: wall time 25 + 16 s, start_time = end - wall time.
    exp_dir = write_experiment(tmp_path, "resumed", "random", "fifo", 0, results, wall_time=41.0)
    summary = json.loads((exp_dir / "summary.json").read_text())
    summary["start_time"] = s2 + 16.0 - 41.0
    (exp_dir / "summary.json").write_text(json.dumps(summary))
    write_sessions(exp_dir, [(s1, [START + 20.0, START + 25.0]), (s2, [START + 20.0, START + 1040.0])])

    exp = load_experiment(exp_dir)
    assert exp.sessions() == [(s1, START + 25.0), (s2, START + 1040.0)]
    table = result_times(exp)
    assert list(table["elapsed_s"]) == [10.0, 20.0, 30.0, 40.0]
    times, best = best_so_far(exp)
    assert list(times) == [10.0, 20.0, 30.0, 40.0] and list(best) == [5.0, 4.0, 3.0, 2.0]
    rows, _ = compare([exp_dir], tmp_path / "cmp", k=1)
    assert list(rows[0].times) == [10.0, 20.0, 30.0, 40.0, 41.0]  # the curve ends at the summed wall time

    # Without a recorded last result, session 1 ends at its last result on disk (20 s).
    write_sessions(exp_dir, [(s1, []), (s2, [])])
    assert list(result_times(load_experiment(exp_dir))["elapsed_s"]) == [10.0, 20.0, 25.0, 35.0]


def test_bohb_and_optuna_runs_pool_only_with_their_own_settings_equal(tmp_path):
    def run(name, searcher, scheduler, seed, **changes):
        return write_experiment(tmp_path, name, searcher, scheduler, seed,
                                [(10, f"{name}a", 5.0), (20, f"{name}b", 4.0)], settings={**CGCNN, **changes})

    rs = [run("rs0", "random", "fifo", 0)]
    optuna = [run("op0", "optuna", "asha", 0, n_initial_points=4), run("op1", "optuna", "asha", 1, n_initial_points=4)]
    bohb = [run("bohb0", "bohb", "bohb", 0, max_concurrent_search=2)]
    rows, _ = compare(rs + optuna + bohb, tmp_path / "cmp", k=1)
    settings = {r.label: r.settings for r in rows}
    assert "n_initial_points=4" in settings["optuna + asha"] and "max_concurrent_search=2" in settings["bohb + bohb"]
    assert "reduction_factor=2" in settings["bohb + bohb"]
    other = run("op2", "optuna", "asha", 2, n_initial_points=8)
    with pytest.raises(ConfigError, match=r"n_initial_points within optuna \+ asha: 4 \(op0, op1\); 8 \(op2\)"):
        compare(rs + optuna + [other], tmp_path / "cmp", k=1)
    eta = run("bohb1", "bohb", "bohb", 1, max_concurrent_search=2, reduction_factor=3.0)
    with pytest.raises(ConfigError, match=r"reduction_factor within bohb \+ bohb"):
        compare(rs + bohb + [eta], tmp_path / "cmp", k=1)
