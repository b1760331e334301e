"""Integration: run_asha.py --smoke-test through a real local Ray, read back summary and TensorBoard."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACT_FIELDS = {
    "name", "strategy", "model", "searcher", "scheduler", "space", "metric", "mode", "num_trials",
    "num_terminated", "num_errored", "wall_time_s", "baseline_val_mae", "best", "config_file",
    "reproduce_command", "ray_version",
}


def run_script(script: str, *args: str, cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HPO_SUITE_CACHE": str(cache), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, str(REPO / "experiments" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_run_asha_smoke_test_writes_summary_and_tensorboard(tmp_path, smoke_cache):
    proc = run_script("run_asha.py", "--smoke-test", "--storage-path", str(tmp_path), "--name", "smoke",
                      cache=smoke_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "smoke" / "summary.json").read_text())
    assert CONTRACT_FIELDS <= set(summary)
    assert summary["strategy"] == "asha" and summary["scheduler"] == "asha" and summary["searcher"] == "random"
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert summary["baseline_val_mae"] > 0
    best = summary["best"]
    assert {"trial_id", "config", "metric", "test_mae", "iteration"} <= set(best)
    assert set(best["config"]) >= {"lr", "batch_size", "atom_embedding_size"}
    assert "best val_mae" in proc.stdout and summary["reproduce_command"] in proc.stdout
    assert (tmp_path / "smoke" / "summary.md").read_text().startswith("# Experiment smoke")

    # TensorBoard event files, read back with TensorBoard's own reader.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted((tmp_path / "smoke").rglob("events.out.tfevents.*"))
    assert len(event_files) == summary["num_trials"]
    steps_seen = []
    for path in event_files:
        acc = EventAccumulator(str(path.parent))
        acc.Reload()
        tag = next(t for t in acc.Tags()["scalars"] if t.endswith("val_mae"))
        values = acc.Scalars(tag)
        assert values and all(v.value > 0 for v in values)
        steps_seen.append(len(values))
    assert max(steps_seen) == 3  # max_epochs of the smoke test

    # The reproduce command's config snapshot reads back to the same experiment.
    snapshot = tmp_path / "smoke" / "experiment.yaml"
    assert str(snapshot) in summary["reproduce_command"]
