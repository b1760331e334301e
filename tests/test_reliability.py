"""Reliability on a real Ray: crashes, divergence, a killed driver, a lost worker node."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from saved_results import SNAPSHOT_EVERY_S, progress_rows, wait_for_a_terminated_trial

from experiments.core.runner import main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def summary_of(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_crashed_trial_resumes_from_its_checkpoint(faulty_models, tmp_path, capsys):
    code = main("random", "test", ["--model", "cgcnn_fail_once", "--smoke-test", "--num-samples", "2",
                                   "--max-epochs", "5", "--checkpoint-frequency", "1", "--max-failures", "1",
                                   "--storage-path", str(tmp_path), "--name", "crash"])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = summary_of(tmp_path / "crash")
    assert summary["num_errored"] == 0 and summary["num_trials"] == 2
    for trial in summary["trials"]:
        assert trial["iteration"] == 5
        rows = pd.read_csv(Path(trial["path"]) / "progress.csv")
        # The crash at epoch 3 restored the checkpoint of epoch 2: the restored run starts counting again.
        restored = rows[rows["training_iteration"] >= 3]
        assert restored["iterations_since_restore"].iloc[0] == 1
        assert list(rows["training_iteration"])[-3:] == [3, 4, 5]


def test_fail_fast_stops_with_the_trials_own_error_and_keeps_the_summary(faulty_models, tmp_path, capsys):
    code = main("random", "test", ["--model", "cgcnn_fail_once", "--smoke-test", "--num-samples", "2",
                                   "--max-epochs", "5", "--storage-path", str(tmp_path), "--name", "failfast"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert err.startswith("error: trial ") and "injected crash at epoch 3" in err and "error.txt" in err
    assert "--resume-errored" in err
    summary = summary_of(tmp_path / "failfast")
    assert summary["num_errored"] >= 1


def test_diverged_trials_end_themselves_and_the_experiment_goes_on(faulty_models, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: choice, values: [0.001, 0.05]}\n"
                     "constants: {batch_size: 32, atom_embedding_size: 8, num_graph_conv_layers: 1,"
                     " fc_feat_size: 16, num_fc_layers: 1}\n")
    code = main("random", "test", ["--model", "cgcnn_poisoned", "--smoke-test", "--num-samples", "4",
                                   "--max-epochs", "4", "--space", str(space), "--seed", "1",
                                   "--storage-path", str(tmp_path), "--name", "nan"])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = summary_of(tmp_path / "nan")
    diverged = [t for t in summary["trials"] if t["diverged"]]
    healthy = [t for t in summary["trials"] if not t["diverged"]]
    assert summary["num_errored"] == 0 and summary["num_diverged"] == len(diverged)
    assert diverged and healthy, summary["trials"]
    assert all(t["config"]["lr"] == 0.05 and t["iteration"] == 2 for t in diverged)
    assert all(t["iteration"] == 4 for t in healthy)
    assert summary["best"]["config"]["lr"] == 0.001


def test_a_hung_trial_is_ended_by_the_trial_timeout_and_the_experiment_goes_on(faulty_models, tmp_path, capsys):
    started = time.monotonic()
    code = main("random", "test", ["--model", "cgcnn_hang_once", "--smoke-test", "--num-samples", "3",
                                   "--max-epochs", "3", "--trial-timeout-s", "15", "--storage-path", str(tmp_path),
                                   "--name", "hang"])
    captured = capsys.readouterr()
    assert time.monotonic() - started < 300  # the hung step sleeps 600 s
    summary = summary_of(tmp_path / "hang")
    hung_id = (tmp_path / "cache" / "hung-once").read_text()
    [hung] = [t for t in summary["trials"] if t["trial_id"] == hung_id]
    assert hung["errored"] and hung["timed_out"] and hung["iteration"] == 1
    assert hung["error"] == "reported nothing for 15 s: ended by the trial timeout"
    assert summary["num_timed_out"] == 1 and summary["num_errored"] == 1
    # Fail-fast did not stop for it: the other trials ran their planned epochs.
    others = [t for t in summary["trials"] if t["trial_id"] != hung_id]
    assert len(others) == 2 and all(t["iteration"] == 3 and not t["errored"] for t in others)
    assert f"Trial {hung_id} reported nothing for 15 s (trial timeout)" in captured.out
    assert code == 1 and "ended by the trial timeout" in captured.err.strip().splitlines()[-1]


def _run_script(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "run_random.py"), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_driver_killed_with_sigkill_resumes_without_losing_finished_trials(tmp_path, smoke_cache):
    env = {**os.environ, "HPO_SUITE_CACHE": str(smoke_cache), "RAY_AUTH_MODE": "disabled"}
    epochs = 20  # one trial at a time: the kill lands while three are unfinished
    args = ["--smoke-test", "--num-samples", "4", "--max-epochs", str(epochs), "--checkpoint-frequency", "5",
            "--max-concurrent-trials", "1", "--storage-path", str(tmp_path), "--name", "killed"]
    exp = tmp_path / "killed"
    proc = _run_script(args, {**env, **SNAPSHOT_EVERY_S})  # the kill meets the sweep unfinished
    assert wait_for_a_terminated_trial(exp, 240, lambda: proc.poll() is None), "no trial finished before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)  # driver and the Ray it started, as a crash would
    proc.wait()
    # The kill can stop a snapshot's copy of a trial folder half-way (an empty progress.csv): trials counted
    # here are those whose copied rows reach the last epoch.
    rows = {trial_dir.name: progress_rows(trial_dir / "progress.csv") for trial_dir in exp.glob("CGCNNTrainable_*")}
    finished_before = {name: r for name, r in rows.items() if r and r[-1][0] == epochs}
    assert finished_before

    resumed = _run_script(["--resume", "--name", "killed", "--storage-path", str(tmp_path)], env)
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out[-3000:]
    summary = summary_of(exp)
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0
    assert all(t["iteration"] == epochs for t in summary["trials"])
    assert {name: progress_rows(exp / name / "progress.csv") for name in finished_before} == finished_before


def test_losing_a_worker_node_does_not_lose_the_experiment(tmp_path, monkeypatch, capsys, smoke_cache):
    """A real two-node Ray cluster on one machine; the worker node dies mid-experiment."""
    import threading

    from ray.cluster_utils import Cluster

    monkeypatch.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    exp = tmp_path / "nodeloss"

    def kill_worker_once_it_runs_a_trial():
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            node_ids = {json.loads(line).get("node_id") for f in exp.glob("*/result.json")
                        for line in f.read_text().splitlines() if line.strip()}
            if worker.node_id in node_ids:
                cluster.remove_node(worker, allow_graceful=False)
                killed.set()
                return
            time.sleep(0.3)

    killed = threading.Event()
    killer = threading.Thread(target=kill_worker_once_it_runs_a_trial, daemon=True)
    killer.start()
    try:
        code = main("random", "test", ["--smoke-test", "--num-samples", "4", "--max-epochs", "30",
                                       "--checkpoint-frequency", "2", "--max-failures", "3",
                                       "--address", cluster.address, "--storage-path", str(tmp_path),
                                       "--name", "nodeloss"])
    finally:
        killer.join(timeout=5)
        cluster.shutdown()
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = summary_of(exp)
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert all(t["iteration"] == 30 for t in summary["trials"])
    assert killed.is_set()
    nodes_per_trial = [[json.loads(line)["node_id"] for line in f.read_text().splitlines()]
                       for f in exp.glob("*/result.json")]
    # A trial interrupted by the node's death continued on the surviving node from its checkpoint.
    moved = [nodes for nodes in nodes_per_trial if worker.node_id in nodes and nodes[-1] != worker.node_id]
    assert moved, nodes_per_trial
