"""Smoke test of the benchmarks in experiments/benchmarks/: they run and print their ratio lines.

The two throughput benchmarks run their ``--smoke-test`` (no Ray, tiny data, tens of seconds); the
two that run whole Ray experiments (trial_overhead, time_to_solution: minutes even in smoke mode)
are only checked to start and describe themselves (``--help``). Timings are never asserted.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"


def _run(script: str, *flags: str, tmp_path: Path) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *flags], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_benchmarks_smoke(tmp_path, monkeypatch, smoke_cache):
    monkeypatch.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    out = _run("throughput_gpu.py", "--smoke-test", tmp_path=tmp_path)
    assert "hardware:" in out and "RATIO fast / eager" in out and "concurrent trials" in out

    out = _run("throughput_gpu.py", "--model", "cgcnn", "--smoke-test", tmp_path=tmp_path)
    assert "THROUGHPUT old path" in out and "RATIO new / old path, epoch time" in out

    out = _run("throughput_cpu.py", "--smoke-test", tmp_path=tmp_path)
    assert "hardware:" in out and "RATIO two concurrent 1-CPU trials / one trial" in out
    assert "RATIO new / old path, epoch time" in out and "RATIO batch gathering / epoch" in out

    for script in ("trial_overhead.py", "time_to_solution.py"):
        assert "--smoke-test" in _run(script, "--help", tmp_path=tmp_path)
