"""Bad input: one line on stderr naming the problem, exit status 2, no traceback, nothing started.

Each case runs the real entry point (`experiments.core.runner.main`, what every run script calls);
two of them also run as subprocesses to show the user sees no traceback.
"""

import os
import subprocess
import sys
from pathlib import Path

import ase.io
import pytest
from ase.build import bulk

from experiments.core.runner import main

REPO = Path(__file__).resolve().parents[1]


def write_space(tmp_path: Path, body: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(body)
    return str(path)


def write_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(body)
    return str(path)


def cif_folder(tmp_path: Path, rows: list[str], cifs: dict[str, str] | None = None) -> str:
    folder = tmp_path / "cifs"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        ase.io.write(folder / f"{name}.cif", bulk("Cu", "fcc", a=3.6 + 0.01 * ord(name)))
    for name, text in (cifs or {}).items():
        (folder / f"{name}.cif").write_text(text)
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return str(folder)


# (id, argv builder, fragment expected in the one-line message)
CASES = [
    ("unknown model", lambda t: ["--model", "bert"], "unknown model 'bert'"),
    ("unknown searcher", lambda t: ["--search", "bayes"], "unknown search algorithm 'bayes'"),
    ("unknown space", lambda t: ["--space", "nope"], "unknown search space 'nope'"),
    ("missing config file", lambda t: ["--config", str(t / "none.yaml")], "config file not found"),
    ("unreadable config", lambda t: ["--config", str(t)], "cannot read config file"),
    ("invalid YAML", lambda t: ["--config", write_config(t, "seed: 1\nnum_samples: [2\n")], "invalid YAML"),
    ("unknown config key", lambda t: ["--config", write_config(t, "grace_periods: 2\n")],
     "unknown config key 'grace_periods'; did you mean 'grace_period'?"),
    ("wrong value type", lambda t: ["--config", write_config(t, "max_epochs: ten\n")], "'max_epochs' must be int"),
    ("reversed bounds", lambda t: ["--space", write_space(t, "params: {lr: {type: float, low: 1, high: 0.1}}\n")],
     "parameter 'lr': lower bound 1 must be below upper bound 0.1"),
    ("non-positive log bound",
     lambda t: ["--space", write_space(t, "params: {lr: {type: float, low: 0, high: 1, log: true}}\n")],
     "log scale needs positive bounds"),
    ("empty choices", lambda t: ["--space", write_space(t, "params: {batch_size: {type: choice, values: []}}\n")],
     "'values' must be a non-empty list"),
    ("zero samples", lambda t: ["--num-samples", "0"], "num-samples must be a positive integer"),
    ("negative epochs", lambda t: ["--max-epochs", "-2"], "max-epochs must be a positive integer"),
    ("grace period above max epochs", lambda t: ["--max-epochs", "2"], "must not exceed max-epochs (2)"),
    ("non-positive cpus", lambda t: ["--cpus-per-trial", "0"], "cpus-per-trial must be positive"),
    ("unwritable storage", lambda t: ["--storage-path", str(t / "config.yaml" / "x")], "is not a writable directory"),
    ("resume without name", lambda t: ["--resume"], "--resume needs --name"),
    ("resume of nothing", lambda t: ["--resume", "--name", "ghost", "--storage-path", str(t)],
     "no experiment to resume at"),
    ("missing data folder", lambda t: ["--data", str(t / "nowhere")], "data folder not found"),
    ("missing id_prop.csv", lambda t: ["--data", str(t)], "id_prop.csv: file not found"),
    ("id without CIF", lambda t: ["--data", cif_folder(t, ["a,1.0", "b,2.0", "zz,3.0", "c,1"])],
     "id_prop.csv:3: no CIF file for id 'zz'"),
    ("non-numeric target", lambda t: ["--data", cif_folder(t, ["a,1.0", "b,high", "c,1"])],
     "id_prop.csv:2: target 'high' for id 'b' is not a number"),
    ("unreadable CIF", lambda t: ["--data", cif_folder(t, ["a,1", "b,2", "c,3", "e,4"], {"e": "not a cif\n"})],
     "e.cif"),
    ("too few structures", lambda t: ["--data", cif_folder(t, ["a,1.0", "b,2.0"])], "at least 3 are needed"),
    ("unreachable address", lambda t: ["--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    ("malformed address", lambda t: ["--address", "somewhere"], "--address must be HOST:PORT"),
]


@pytest.mark.parametrize(("case", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HPO_SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "config.yaml").write_text("")  # a plain file, used as a non-directory path
    args = argv(tmp_path)
    if "--config" not in args:
        args += ["--storage-path", str(tmp_path)] if "--storage-path" not in args else []
    code = main("asha", "test", ["--smoke-test", *args] if "--max-epochs" not in args else args)
    stderr = capsys.readouterr().err.strip()
    assert code == 2, stderr
    assert "Traceback" not in stderr
    # The error is one line (a featurisation progress bar may precede it when a CIF fails to parse).
    err = stderr.splitlines()[-1]
    assert err.startswith("error: ") and [line for line in stderr.splitlines() if "error" in line] == [err], stderr
    assert fragment in err
    # Nothing started: no experiment folder was created.
    assert not [p for p in tmp_path.iterdir() if (p / "experiment.yaml").exists()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["--cpus-per-trial", "64"], "asks for 64 CPU(s) but its largest node has"),
     (["--gpus-per-trial", "1"], "asks for 1 GPU(s) but its largest node has 0; a trial runs on one node")],
)
def test_more_resources_per_trial_than_the_cluster_has(argv, fragment, tmp_path, capsys, monkeypatch, smoke_cache):
    monkeypatch.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    code = main("asha", "test", ["--smoke-test", "--storage-path", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the dataset's progress bar
    assert code == 2 and err.startswith("error: ") and fragment in err, err
    assert not list(tmp_path.glob("*/experiment.yaml"))
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize("argv", [["--num-samples", "0"], ["--space", "nope"]])
def test_the_user_sees_no_traceback(argv, tmp_path):
    env = {**os.environ, "HPO_SUITE_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "run_asha.py"), *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
