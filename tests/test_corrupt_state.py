"""``--resume`` on a folder whose Tune state is corrupt or missing: one ``error:`` line, exit 2, summary kept.

A real finished experiment (Ray, a smoke run), then its ``experiment_state-*.json`` truncated to garbage
(a full disk, a kill mid-write) or deleted.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "experiments" / "run_random.py"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, smoke_cache) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corrupt")
    env = {**os.environ, "HPO_SUITE_CACHE": str(smoke_cache), "RAY_AUTH_MODE": "disabled"}
    proc = run(["--smoke-test", "--num-samples", "1", "--max-epochs", "1", "--storage-path", str(root),
                "--name", "done"], env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root, env


def test_truncated_state_is_one_error_line_naming_it_and_summary_is_untouched(finished):
    root, env = finished
    exp = root / "done"
    summary = (exp / "summary.json").read_bytes()
    state = sorted(exp.glob("experiment_state-*.json"))[-1]
    state.write_text('{"trial_data": [["{\\"status\\": \\"TERMIN')  # cut mid-write
    proc = run(["--resume", "--name", "done", "--storage-path", str(root)], env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert str(state) in proc.stderr and "Traceback" not in proc.stderr
    assert (exp / "summary.json").read_bytes() == summary


def test_missing_state_is_one_error_line_and_summary_is_untouched(finished):
    root, env = finished
    exp = root / "done"
    summary = (exp / "summary.json").read_bytes()
    for state in exp.glob("experiment_state-*.json"):
        state.unlink()
    proc = run(["--resume", "--name", "done", "--storage-path", str(root)], env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: no saved Tune state") and proc.stderr.count("\n") == 1, proc.stderr
    assert (exp / "summary.json").read_bytes() == summary
