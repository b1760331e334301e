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


def test_simple_predictors_fit_what_they_model_and_the_baseline_row_is_the_runs_baseline(smoke_cache, capsys):
    import numpy as np

    from experiments.benchmarks import simple_predictors as sp
    from trainables.data import baseline_mae, load_dataset

    rng = np.random.default_rng(0)
    metadata = [{"metal": m, "adsorbate": a, "site": s, "facet": "111", "dopant": "", "binding_distance": d}
                for m, a, s, d in zip(rng.choice(["Cu", "Pt"], 200), rng.choice(["O", "H"], 200),
                                      rng.choice(["ontop", "fcc", "hcp"], 200), rng.uniform(1.8, 2.2, 200),
                                      strict=True)]
    site_effect = {"ontop": 1.0, "fcc": -1.0, "hcp": 0.0}
    y = np.array([(m["metal"] == "Cu") * 0.5 + (m["adsorbate"] == "O") * 1.0 + site_effect[m["site"]]
                  for m in metadata])
    x = sp.design_matrices(metadata)
    train, val = np.arange(150), np.arange(150, 200)
    assert sp.evaluate(x["group + site name"], y, train, val)["share"] == pytest.approx(1.0)
    assert sp.evaluate(x["group + site name"], y, train, val)["val_mae"] == pytest.approx(0.0, abs=1e-9)
    assert sp.evaluate(next(iter(x.values())), y, train, val)["share"] < 0.9

    assert sp.main(["--num-structures", "240", "--cache-dir", str(smoke_cache)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mean of each")]
    dataset = load_dataset(num_structures=240, cache_dir=str(smoke_cache), progress=False)
    assert float(rows[0].split("|")[4]) == pytest.approx(baseline_mae(dataset, "val"), abs=5e-5)
