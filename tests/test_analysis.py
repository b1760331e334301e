"""Per-experiment analysis: plots from real small experiments (asserting on the plotted data), the
Playbook checks, the record the runner writes, and PBT schedule reconstruction and fitting."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.analysis.checks import check_boundary, check_failures, check_sample_size, check_still_improving
from experiments.analysis.experiment import best_so_far, load_experiment
from experiments.analysis.pbt_schedule import fit_multistep, read_policy, reconstruct_schedule, schedule_values
from experiments.analysis.plots import (
    plot_best_so_far,
    plot_learning_curves,
    plot_metric_vs_params,
    plot_parallel_coordinates,
)
from experiments.analysis.record import analyze
from search_spaces import load_space
from search_spaces.spec import parse_space

REPO = Path(__file__).resolve().parents[1]


def run_script(strategy: str, *args: str, storage: Path, name: str, cache: Path) -> Path:
    """Run a real experiment through its run script; return its folder."""
    env = {**os.environ, "HPO_SUITE_CACHE": str(cache), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / f"run_{strategy}.py"), "--smoke-test",
         "--storage-path", str(storage), "--name", name, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return storage / name


@pytest.fixture(scope="module")
def cache(smoke_cache) -> Path:
    return smoke_cache


@pytest.fixture(scope="module")
def random_experiment(tmp_path_factory, cache) -> Path:
    """Random search, no early stopping: 6 trials x 4 epochs of the six-hyperparameter space on the tiny data."""
    storage = tmp_path_factory.mktemp("results")
    return run_script("random", "--num-samples", "6", "--max-epochs", "4", "--space", "cgcnn_six", storage=storage,
                      name="rs", cache=cache)


# --- plots from a real experiment ------------------------------------------------------------


def test_parallel_coordinates_draw_each_trial_at_its_unit_cube_position_best_in_red(tmp_path):
    from experiments.analysis.experiment import Experiment
    from search_spaces.compile import to_unit_cube

    space = parse_space("p", {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                         "depth": {"type": "int", "low": 1, "high": 4},
                                         "act": {"type": "choice", "values": ["relu", "gelu"]}}})
    configs = [{"lr": 1e-3, "depth": 2, "act": "gelu"}, {"lr": 1e-4, "depth": 4, "act": "relu"},
               {"lr": 1e-2, "depth": 1, "act": "relu"}]
    trials = [{"trial_id": str(i), "config": c, "metric": m, "errored": False}
              for i, (c, m) in enumerate(zip(configs, [0.3, 0.1, 0.2], strict=True))]
    trials.append({"trial_id": "bad", "config": configs[0], "metric": 0.01, "errored": True})  # never drawn
    exp = Experiment(tmp_path, {"metric": "val_mae", "mode": "min", "trials": trials}, {})
    ax = plot_parallel_coordinates(exp, space).axes[0]
    lines = [line for line in ax.get_lines()]
    assert len(lines) == 3
    best = lines[-1]  # drawn last, on top
    assert best.get_color() == "red" and list(best.get_ydata()) == pytest.approx(to_unit_cube(space, configs[1]))
    assert list(best.get_ydata()) == pytest.approx([0.0, 0.875, 0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr\n(log)", "depth", "act"]
    one = parse_space("one", {"params": {"lr": {"type": "float", "low": 0, "high": 1}}})
    assert plot_parallel_coordinates(exp, one) is None  # one axis is no parallel-coordinates plot


@pytest.mark.slow
def test_metric_vs_param_plots_show_each_trial_on_the_right_axes(random_experiment):
    exp = load_experiment(random_experiment)
    space = load_space(exp.summary["space"])
    figures = plot_metric_vs_params(exp, space)
    assert set(figures) == {f"metric_vs_{name}.png" for name in space.names}
    trials = [t for t in exp.summary["trials"] if t["metric"] is not None]
    assert len(trials) == 6

    ax = figures["metric_vs_lr.png"].axes[0]
    assert ax.get_xscale() == "log"  # lr is log-uniform in cgcnn_six
    points = ax.collections[0].get_offsets()
    expected = sorted((t["config"]["lr"], t["metric"]) for t in trials)
    assert np.allclose(sorted(map(tuple, points)), expected)
    # The best trial is marked with its own star at its (lr, metric).
    best = exp.summary["best"]
    assert np.allclose(ax.collections[1].get_offsets()[0], [best["config"]["lr"], best["metric"]])

    ax = figures["metric_vs_batch_size.png"].axes[0]  # a choice: categorical axis in the spec's order
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "32", "64"]
    xs = sorted(ax.collections[0].get_offsets()[:, 0])
    assert xs == sorted(float([16, 32, 64].index(t["config"]["batch_size"])) for t in trials)

    assert figures["metric_vs_atom_embedding_size.png"].axes[0].get_xscale() == "log"  # int, log
    assert figures["metric_vs_num_fc_layers.png"].axes[0].get_xscale() == "linear"


@pytest.mark.slow
def test_learning_curves_and_best_so_far_plot_the_recorded_results(random_experiment):
    exp = load_experiment(random_experiment)
    ranked = sorted((t for t in exp.summary["trials"] if t["metric"] is not None), key=lambda t: t["metric"])

    ax = plot_learning_curves(exp, k=3).axes[0]
    curves = [line for line in ax.lines if line.get_label() != "_nolegend_" and "baseline" not in line.get_label()]
    assert len(curves) == 3
    for line, trial in zip(curves, ranked[:3], strict=True):
        progress = pd.read_csv(Path(trial["path"]) / "progress.csv")
        assert list(line.get_xdata()) == list(progress["training_iteration"]) == [1, 2, 3, 4]
        assert np.allclose(line.get_ydata(), progress["val_mae"])

    # Best so far: the running minimum of every result of every trial, in wall-clock order.
    rows = pd.concat([pd.read_csv(Path(t["path"]) / "progress.csv") for t in exp.summary["trials"]])
    rows = rows.sort_values("timestamp", kind="stable")
    times, best = best_so_far(exp)
    assert len(times) == len(rows) == 6 * 4
    assert np.all(np.diff(times) >= 0) and np.all(np.diff(best) <= 0)
    # The origin is the Tune session's start (experiment_state-*.json), just after the runner's start_time.
    (start, _), = exp.sessions()
    assert exp.summary["start_time"] <= start < exp.summary["start_time"] + 30
    assert np.allclose(times, np.maximum(rows["timestamp"] - start, 0))
    for t in np.unique(times):  # at every time, the best of all results reported up to then
        assert best[times <= t][-1] == pytest.approx(rows.loc[rows["timestamp"] - start <= t + 1e-9, "val_mae"].min())
    assert 0 <= times[0] and times[-1] <= exp.summary["wall_time_s"] + 1.0  # whole-second timestamps
    step = plot_best_so_far(exp).axes[0].lines[0]
    assert np.allclose(step.get_ydata(), best)


@pytest.mark.slow
def test_the_runner_writes_the_record_with_checks_and_plots(random_experiment):
    record = (random_experiment / "summary.md").read_text()
    summary = json.loads((random_experiment / "summary.json").read_text())
    assert record.startswith("# Experiment rs")
    assert f"- test metric of the best trial: test_mae {summary['best']['test_mae']:.4g}" in record
    assert "- trials: 6 (6 terminated" in record and summary["reproduce_command"] in record
    checks = record.split("## Checks")[1].split("##")[0]
    for check in ("boundary", "sample size", "failures", "still improving"):
        assert f"{check}:" in checks
    # 6 trials for 6 hyperparameters is too few, and the record says so.
    assert "[warn] sample size: 6 trials with a result for 6 hyperparameters" in checks
    for name in ["learning_curves.png", "best_so_far.png", "metric_vs_lr.png"]:
        assert f"]({name})" in record and (random_experiment / name).stat().st_size > 1000


# --- the boundary check on real experiments and on constructed configurations --------------------


def _grid_space(tmp_path: Path, name: str, low: float, high: float, grid: list[float]) -> Path:
    spec = {"params": {"lr": {"type": "float", "low": low, "high": high, "log": True, "grid": grid}},
            "constants": {"batch_size": 32, "atom_embedding_size": 16, "num_graph_conv_layers": 2,
                          "fc_feat_size": 32, "num_fc_layers": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_boundary_check_fires_at_an_edge_and_stays_quiet_when_central(tmp_path, cache):
    # Two epochs with Adam: lr 1e-3 beats 1e-5 by far, so the best point is the grid's top, lr's upper bound.
    edge = _grid_space(tmp_path, "edge", 1e-5, 1e-3, [1e-5, 1e-3])
    exp_dir = run_script("grid", "--space", str(edge), "--max-epochs", "2", storage=tmp_path, name="edge",
                         cache=cache)
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert summary["best"]["config"]["lr"] == 1e-3
    boundary = {f.check: f for f in analyze(exp_dir, save=False).findings}["boundary"]
    assert not boundary.ok and "widen lr's upper bound" in boundary.message
    assert "widen lr's upper bound" in (exp_dir / "summary.md").read_text()  # the runner's record
    # The same trials judged in a space four decades wide: 1e-3 is central, and the check is quiet.
    central = tmp_path / "central"
    central.mkdir()
    for trial in summary["trials"]:
        (central / Path(trial["path"]).name).symlink_to(trial["path"])
    summary["space"] = str(_grid_space(tmp_path, "central", 1e-5, 1e-1, [1e-5, 1e-3]))
    (central / "summary.json").write_text(json.dumps(summary))
    boundary = {f.check: f for f in analyze(central, save=False).findings}["boundary"]
    assert boundary.ok, boundary.message


SPACE = parse_space("t", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "choice", "values": [16, 32, 64]},
    "width": {"type": "discrete", "values": [40, 61, 79, 102]},
}})


def test_boundary_check_measures_log_parameters_in_log_space():
    central = {"lr": 3e-3, "dropout": 0.25, "batch_size": 64, "width": 61}
    assert check_boundary(central, SPACE).ok  # 64 is the last choice, but choices have no order
    # 4e-3 sits at 4 % of the linear range but mid-way in log space: not a boundary.
    assert check_boundary({**central, "lr": 4e-3}, SPACE).ok
    low = check_boundary({**central, "lr": 1.2e-4}, SPACE)
    assert not low.ok and "widen lr's lower bound" in low.message and "log scale" in low.message
    high = check_boundary({**central, "dropout": 0.49, "width": 102}, SPACE)
    assert "widen dropout's upper bound (e.g. to 0.75)" in high.message
    assert "add values above 102 to width's list (e.g. 133)" in high.message
    assert "lr" not in high.message


BOUNDS = parse_space("bounds", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "layers": {"type": "int", "low": 1, "high": 5},
    "width": {"type": "int", "low": 16, "high": 64},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.3},
    "warmup_steps": {"type": "int", "low": 0, "high": 500},
    "keep": {"type": "float", "low": 0.5, "high": 1.0},
    "eps": {"type": "float", "low": 1e-8, "high": 1e-4, "log": True},
}})
CENTRAL = {"lr": 3e-3, "layers": 3, "width": 40, "weight_decay": 0.1, "warmup_steps": 200, "keep": 0.75, "eps": 1e-6}


def test_boundary_check_gives_only_advice_that_can_be_followed():
    # Issue 21 item 17: one layer, weight decay 0, zero warm-up steps and a keep probability of 1 are
    # bounds that cannot move: information, not a warning, and never "widen".
    for name, value in (("layers", 1), ("weight_decay", 0.0), ("warmup_steps", 0), ("keep", 1.0)):
        finding = check_boundary({**CENTRAL, name: value}, BOUNDS)
        assert finding.ok and finding.info and str(finding).startswith("[info] boundary:"), finding
        assert f"{name} = {value:.4g} is within 5% of its" in finding.message and "cannot move" in finding.message
        assert "widen" not in finding.message
    # Where a bound can move, the warning says how; a fixed bound beside it stays information.
    both = check_boundary({**CENTRAL, "lr": 1.1e-4, "layers": 1}, BOUNDS)
    assert not both.ok and "widen lr's lower bound (e.g. to 1e-05)" in both.message
    assert "layers = 1 is within 5% of its lower bound 1, which cannot move" in both.message
    assert "widen layers" not in both.message
    assert "widen layers's upper bound (e.g. to 7)" in check_boundary({**CENTRAL, "layers": 5}, BOUNDS).message
    assert "widen width's lower bound (e.g. to 8)" in check_boundary({**CENTRAL, "width": 16}, BOUNDS).message
    assert "widen weight_decay's upper bound (e.g. to 0.45)" in check_boundary({**CENTRAL, "weight_decay": 0.3},
                                                                                BOUNDS).message
    assert "widen eps's lower bound (e.g. to 1e-09)" in check_boundary({**CENTRAL, "eps": 1e-8}, BOUNDS).message
    quiet = check_boundary(CENTRAL, BOUNDS)
    assert quiet.ok and not quiet.info and str(quiet).startswith("[ok] boundary:")

    # The default experiment's own space: its best point at one graph convolution (the smallest a
    # network can have) drew "widen the lower bound"; now it is information.
    default = load_space("cgcnn_default")
    at_low = {p.name: (p.low if p.kind == "int" and p.low == 1 else p.values[len(p.values) // 2] if p.values
                       else (p.low * p.high) ** 0.5 if p.log else (p.low + p.high) / 2) for p in default.params}
    assert 1 in at_low.values()
    finding = check_boundary(at_low, default)
    assert finding.ok and finding.info and "widen" not in finding.message


def test_sample_size_and_failure_checks():
    assert not check_sample_size(10, 6).ok and check_sample_size(30, 6).ok
    trials = [{"errored": i < 2, "diverged": i == 2, "collapsed": False} for i in range(10)]
    finding = check_failures({"trials": trials, "num_errored": 2, "num_diverged": 1, "num_collapsed": 0})
    assert not finding.ok and "3 of 10 trials (30%)" in finding.message
    assert check_failures({"trials": trials[3:], "num_errored": 0}).ok


def test_still_improving_check_on_constructed_curves(tmp_path):
    from experiments.analysis.experiment import Experiment

    def exp_with(curves):
        trials = [{"trial_id": f"t{i}", "metric": c[-1], "iteration": len(c), "config": {}}
                  for i, c in enumerate(curves)]
        histories = {f"t{i}": pd.DataFrame({"training_iteration": range(1, len(c) + 1), "val_mae": c})
                     for i, c in enumerate(curves)}
        return Experiment(tmp_path, {"metric": "val_mae", "mode": "min", "max_epochs": 6, "trials": trials}, histories)

    falling = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3]
    flat = [1.0, 0.5, 0.41, 0.4, 0.4, 0.4]
    assert not check_still_improving(exp_with([falling, falling, flat])).ok
    assert check_still_improving(exp_with([flat, flat])).ok
    # Trials stopped early by a scheduler are not judged: their curves were cut on purpose.
    assert check_still_improving(exp_with([falling[:3], flat])).ok


# --- a real Tune experiment that errored and was resumed (issue 21 items 15 and 16) --------------


@pytest.fixture(scope="module")
def resumed_experiment(tmp_path_factory) -> dict:
    """Three trials through real Tune in two sessions with a pause between them.

    x=0 reports 0.5, 0.3, 0.4 (best at iteration 2, worse at its end); x=1 reports 0.45, fails in
    session 1, and reruns from scratch to 0.45, 0.35, 0.35 after ``Tuner.restore(resume_errored=True)``; x=2
    reports 0.1, the best value of all, then errors in both sessions. The summary is written by the
    runner's own summarize() from Tune's ResultGrid, with the wall time summed over the sessions.
    """
    import ray
    from ray import tune

    from experiments.core.config import ExperimentConfig
    from experiments.core.summary import summarize, write_summary

    root = tmp_path_factory.mktemp("resumed")
    fail_once = root / "fail_once"
    fail_once.write_text("")
    curves = {0: [0.5, 0.3, 0.4], 1: [0.45, 0.35, 0.35], 2: [0.1, 0.2, 0.3]}

    def train(config):  # defined here so Ray pickles it by value
        for i, value in enumerate(curves[config["x"]]):
            time.sleep(0.6)
            tune.report({"val_mae": value, "test_mae": value + 0.01 * (i + 1)})
            if config["x"] == 2 or (config["x"] == 1 and fail_once.exists()):
                raise RuntimeError("fails after its first result")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t1 = time.time()
        tune.Tuner(train, param_space={"x": tune.grid_search([0, 1, 2])},
                   run_config=tune.RunConfig(name="resumed", storage_path=str(root), verbose=0)).fit()
        t1_end = time.time()
        fail_once.unlink()
        time.sleep(8)  # the pause between the sessions (a requeued job waiting, say)
        t2 = time.time()
        results = tune.Tuner.restore(str(root / "resumed"), trainable=train, resume_errored=True).fit()
        t2_end = time.time()
    finally:
        ray.shutdown()
    config = ExperimentConfig(strategy="random", model="cgcnn", metric="val_mae", mode="min", max_epochs=3,
                              space="cgcnn_default")
    wall = (t1_end - t1) + (t2_end - t2)
    summary = summarize(config, "resumed", load_space("cgcnn_default"), results, wall, {}, "python x")
    write_summary(root / "resumed", summary)
    return {"path": root / "resumed", "summary": summary, "sessions": [(t1, t1_end), (t2, t2_end)]}


@pytest.mark.slow
def test_the_summary_ranks_by_each_trials_best_result_and_never_an_errored_one(resumed_experiment):
    summary = resumed_experiment["summary"]
    by_x = {t["config"]["x"]: t for t in summary["trials"]}
    assert by_x[2]["errored"] and by_x[2]["metric"] == 0.1  # its result is recorded, but it is not ranked
    assert not by_x[1]["errored"] and by_x[1]["metric"] == 0.35 and by_x[1]["best_iteration"] == 2
    assert (by_x[0]["metric"], by_x[0]["last_metric"], by_x[0]["best_iteration"]) == (0.3, 0.4, 2)
    best = summary["best"]
    assert best["trial_id"] == by_x[0]["trial_id"] and best["metric"] == 0.3
    assert best["test_mae"] == pytest.approx(0.32) and (best["best_iteration"], best["iteration"]) == (2, 3)
    exp = load_experiment(resumed_experiment["path"])
    assert [t["config"]["x"] for t in exp.ranked_trials()] == [0, 1]  # the analysis ranks the same way


@pytest.mark.slow
def test_tune_sessions_and_the_time_axis_of_a_real_resumed_experiment(resumed_experiment):
    from experiments.analysis.experiment import result_times, tune_sessions

    (t1, t1_end), (t2, t2_end) = resumed_experiment["sessions"]
    sessions = tune_sessions(resumed_experiment["path"])
    assert len(sessions) == 2
    (s1, last1), (s2, last2) = sessions
    assert t1 <= s1 <= t1_end and t2 <= s2 <= t2_end  # each session's controller started inside its fit()
    assert s1 < last1 <= t1_end and s2 < last2 <= t2_end

    exp = load_experiment(resumed_experiment["path"])
    table = result_times(exp)
    raw = pd.concat([pd.read_csv(Path(t["path"]) / "progress.csv").assign(trial_id=t["trial_id"])
                     for t in exp.summary["trials"] if not t["errored"]])
    # x=0's 3 results and x=1's first from session 1, x=1's rerun (3) from session 2 (Tune appends to
    # progress.csv); x=2 errored: its results are not on the axis.
    assert len(table) == len(raw) == 7
    raw = raw.sort_values("timestamp", kind="stable")  # one trial per session: the same order as the table
    assert list(raw["trial_id"]) == list(table["trial_id"])
    first = (raw["timestamp"] < t2).to_numpy()
    assert first.sum() == 4
    # Session 1's results: seconds since it started (they were clamped to 0 when the axis's origin was
    # the end minus the summed wall time). Session 2's: session 1's length (to its last result, which
    # Tune recorded), then seconds since session 2 started; the 8 s pause is left out.
    ts = raw["timestamp"].to_numpy(dtype=float)
    elapsed = table["elapsed_s"].to_numpy()
    # (> 0, not clamped: Ray's result timestamps are whole seconds, so the first can sit under 1 s.)
    assert np.allclose(elapsed[first], np.maximum(ts[first] - s1, 0)) and np.all(elapsed[first] > 0)
    end1 = max(last1, ts[first].max())
    assert np.allclose(elapsed[~first], (end1 - s1) + np.maximum(ts[~first] - s2, 0))
    # Against the test's own clock: never more than the time spent inside the two fit() calls.
    assert np.all(elapsed[first] <= ts[first] - t1 + 1.0)
    assert np.all(elapsed[~first] <= (t1_end - t1) + (ts[~first] - t2) + 1.0)
    assert np.all(elapsed[~first] < ts[~first] - t1 - (t2 - t1_end) + 1.0)  # the pause is not on the axis
    assert table["elapsed_s"].max() <= exp.summary["wall_time_s"] + 1.0
    assert np.all(np.diff(table["elapsed_s"]) >= 0)


# --- PBT ----------------------------------------------------------------------------------------


def test_multistep_fit_recovers_a_known_schedule():
    schedule = np.array([1e-2] * 10 + [1e-3] * 10 + [1e-4] * 10)
    fit = fit_multistep(schedule)
    assert fit.milestones == [10, 20]
    assert fit.gamma == pytest.approx(0.1) and fit.initial == pytest.approx(1e-2)
    # PBT-like multiplicative noise on every epoch: the same schedule comes back.
    noisy = schedule * np.exp(np.random.default_rng(0).normal(0, 0.05, len(schedule)))
    fit = fit_multistep(noisy)
    assert fit.milestones == [10, 20]
    assert fit.gamma == pytest.approx(0.1, rel=0.1) and fit.initial == pytest.approx(1e-2, rel=0.1)
    assert np.allclose(fit.values(30), [1e-2] * 10 + [1e-3] * 10 + [1e-4] * 10, rtol=0.15)
    # A constant schedule needs no milestone; a single increase is a gamma above 1.
    assert fit_multistep([3e-3] * 8).milestones == []
    up = fit_multistep([1e-3] * 4 + [1.2e-3] * 4)
    assert up.milestones == [4] and up.gamma == pytest.approx(1.2)


def test_schedule_reconstruction_follows_the_clone_chain(tmp_path):
    # Trial 2 cloned trial 0 at epoch 2 (lr 0.01 -> 0.012); later trial 1 cloned trial 2 at epoch 4.
    lines = [
        ["2_lr=0.1", "0_lr=0.01", 2, 2, {"lr": 0.01, "seed": 0}, {"lr": 0.012, "seed": 0}],
        ["1_lr=0.05", "2_lr=0.1", 3, 4, {"lr": 0.012, "seed": 0}, {"lr": 0.0096, "seed": 0}],
    ]
    policy = tmp_path / "pbt_policy_x_00001.txt"
    policy.write_text("".join(json.dumps(line) + "\n" for line in lines))
    segments = reconstruct_schedule(read_policy(policy))
    assert [(s.start, s.tag, s.config["lr"]) for s in segments] == [
        (0, "0_lr=0.01", 0.01), (2, "2_lr=0.1", 0.012), (4, "1_lr=0.05", 0.0096)]
    assert list(schedule_values(segments, "lr", 6)) == [0.01, 0.01, 0.012, 0.012, 0.0096, 0.0096]


@pytest.mark.slow
def test_pbt_lineage_matches_rays_replay_on_a_real_pbt_run(tmp_path, cache):
    from ray.tune.schedulers import PopulationBasedTrainingReplay

    exp_dir = run_script("pbt", "--max-epochs", "6", storage=tmp_path, name="pbt", cache=cache)
    summary = json.loads((exp_dir / "summary.json").read_text())
    policies = sorted(exp_dir.glob("pbt_policy_*.txt"))
    assert (exp_dir / "pbt_global.txt").is_file() and policies  # a population of 4 exploits every epoch
    final_configs = {t["trial_id"]: t["config"] for t in summary["trials"]}
    for policy in policies:
        segments = reconstruct_schedule(read_policy(policy))
        replay = PopulationBasedTrainingReplay(str(policy))  # Ray's own reading of the same file
        assert segments[0].config == replay.config
        assert [(s.start, s.config) for s in segments[1:]] == [tuple(p) for p in replay._policy]
        trial_id = policy.stem.removeprefix("pbt_policy_")
        assert segments[-1].config["lr"] == pytest.approx(final_configs[trial_id]["lr"])

    analysis = analyze(exp_dir, save=True)
    report = analysis.pbt
    assert report is not None and report.trial_id == summary["best"]["trial_id"]
    assert report.lineage[-1] == report.trial_id
    lr = report.schedules["lr"]
    assert len(lr) == summary["best"]["iteration"]
    assert lr[-1] == pytest.approx(summary["best"]["config"]["lr"])
    assert report.fit is not None and np.all(np.isfinite(report.fit.values(len(lr))))
    # The plotted schedule is the reconstructed one, and the record carries the fit.
    plotted = next(line for ax in report.figure.axes for line in ax.lines if line.get_label() == "lr (PBT)")
    assert np.allclose(plotted.get_ydata(), lr)
    record = (exp_dir / "summary.md").read_text()
    assert "## PBT schedule of the best trial" in record and "MultiStepLR" in record
    assert math.isfinite(report.fit.gamma)
