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

from experiments.analysis.comparison import compare, mean_curve, time_to_target, topk_curve
from experiments.core.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
START = 1_000_000.0  # the experiments' start time (Unix seconds)


def write_experiment(root: Path, name: str, searcher: str, scheduler: str, seed: int,
                     results: list[tuple[float, str, float]], metric: str = "val_mae",
                     wall_time: float = 120.0) -> Path:
    """An experiment folder as the runner leaves it: summary.json plus one progress.csv per trial.

    ``results`` are (seconds since start, trial id, metric) triples; each trial's results are its epochs.
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
        trials.append({"trial_id": trial_id, "config": {"lr": 0.01}, "metric": rows[-1][2],
                       "test_mae": rows[-1][2] + 0.01, "iteration": len(rows), "errored": False,
                       "diverged": False, "collapsed": False, "path": str(trial_dir)})
    summary = {"name": name, "model": "cgcnn", "searcher": searcher, "scheduler": scheduler, "seed": seed,
               "metric": metric, "mode": "min", "space": "cgcnn_default", "wall_time_s": wall_time,
               "start_time": START, "trials": trials}
    (exp / "summary.json").write_text(json.dumps(summary))
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
    exp = write_experiment(tmp_path, "random_random_seed0", "random", "fifo", 0, results)
    lines = rung_evidence([exp], epochs=(1, 2, 4), k=6)
    assert lines[0].startswith("rung evidence from 12 complete random-search trials")
    assert "epoch 1: rank correlation with the final metric 1.00; of the 6 best, 6 in the top half, 3 in" in lines[1]
    assert "epoch 2: rank correlation with the final metric -1.00; of the 6 best, 0 in the top half, 0 in" in lines[2]
    assert len(lines) == 3  # no trial has an epoch 4
    assert "only 12 complete random-search trials; need 14" in rung_evidence([exp], k=7)[0]


@pytest.mark.slow
def test_benchmark_runs_strategies_with_the_same_budget_and_compares_them(tmp_path):
    env = {**os.environ, "HPO_SUITE_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "benchmarks" / "strategies.py"), "--smoke-test",
         "--strategies", "random", "asha", "--seeds", "0", "--time-budget-s", "20", "--grace-period", "1",
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
