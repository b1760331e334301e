"""TensorBoard's HParams tab and W&B logging, read back with their own readers on a real run.

One experiment serves both: random search with a wall-clock budget that cuts the trials mid-run
(the case where Tune never tells its loggers a trial ended), logged to W&B in offline mode with
a fake API key in the environment.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "0123456789abcdef0123456789abcdef" + "fa4e4e7c"  # 40 characters, like a real W&B key


def hparams_sessions(logdir: Path) -> dict[str, dict]:
    """What TensorBoard's HParams tab lists: its own backend, over the real data provider.

    Returns {session (run) name: {"hparams": {...}, "metrics": {tag: value}}}.
    """
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                                            data_provider=provider))
    request_context = context.RequestContext()
    experiment = get_experiment.Handler(request_context, backend, "", api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                          api_pb2.STATUS_RUNNING])
    for info in experiment.hparam_infos:
        request.col_params.add(hparam=info.name)
    for info in experiment.metric_infos:
        request.col_params.add(metric=info.name)
    response = list_session_groups.Handler(request_context, backend, "", request).run()
    sessions = {}
    for group in response.session_groups:
        hparams = {k: (v.number_value if v.HasField("number_value") else v.string_value)
                   for k, v in group.hparams.items()}
        metrics = {m.name.tag: m.value for m in group.metric_values}
        sessions[group.name] = {"hparams": hparams, "metrics": metrics}
    return sessions


@pytest.fixture(scope="module")
def tracked_experiment(tmp_path_factory, smoke_cache) -> Path:
    root = tmp_path_factory.mktemp("tracking")
    env = {**os.environ, "HPO_SUITE_CACHE": str(smoke_cache), "RAY_AUTH_MODE": "disabled",
           "WANDB_MODE": "offline", "WANDB_API_KEY": FAKE_KEY, "TUNE_MAX_PENDING_TRIALS_PG": "4"}
    # 100000 epochs cannot finish in the budget (500 did, on a quiet machine): the running trials are cut by it.
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run_random.py"), "--smoke-test", "--num-samples", "6",
         "--max-epochs", "100000", "--time-budget-s", "45", "--wandb", "hpo-suite-test",
         "--storage-path", str(root), "--name", "tracked"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,  # a logger left waiting hangs ~30 min
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root / "tracked"


@pytest.mark.slow
def test_hparams_tab_lists_every_trial_with_its_hyperparameters_and_final_metrics(tracked_experiment):
    summary = json.loads((tracked_experiment / "summary.json").read_text())
    ran = [t for t in summary["trials"] if t["iteration"] > 0]
    assert ran and all(t["iteration"] < 100000 for t in ran)  # every trial that ran was cut by the budget
    sessions = hparams_sessions(tracked_experiment)
    assert len(sessions) == len(ran)
    by_trial = {Path(t["path"]).name: t for t in ran}
    for session, data in sessions.items():
        trial = by_trial[Path(session).parts[0]]
        params = json.loads((Path(trial["path"]) / "params.json").read_text())
        for name in summary["space_params"]:
            assert data["hparams"][name] == pytest.approx(params[name])
        last = pd.read_csv(Path(trial["path"]) / "progress.csv").iloc[-1]
        assert data["metrics"]["ray/tune/val_mae"] == pytest.approx(last["val_mae"], rel=1e-6)
        assert data["metrics"]["ray/tune/test_mae"] == pytest.approx(last["test_mae"], rel=1e-6)


@pytest.mark.slow
def test_wandb_offline_runs_log_each_trial_and_the_key_is_written_nowhere(tracked_experiment):
    summary = json.loads((tracked_experiment / "summary.json").read_text())
    ran = [t for t in summary["trials"] if t["iteration"] > 0]
    run_files = sorted(tracked_experiment.glob("wandb/offline-run-*/run-*.wandb"))  # in the experiment folder
    assert len(run_files) == len(ran)
    for run_file in run_files:
        data = run_file.read_bytes()
        assert b"val_mae" in data and b"hpo-suite-test" in data  # metrics and project were logged
    assert (tracked_experiment / "experiment.yaml").read_text().count("wandb_project: hpo-suite-test") == 1
    leaked = [path for path in tracked_experiment.rglob("*")
              if path.is_file() and FAKE_KEY.encode() in path.read_bytes()]
    assert leaked == []


def test_wandb_without_a_key_fails_before_anything_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"HOME": str(tmp_path), "NETRC": str(tmp_path / "none"), "HPO_SUITE_CACHE": str(tmp_path / "c")})
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run_asha.py"), "--smoke-test", "--wandb", "p",
         "--storage-path", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --wandb needs a W&B API key") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob("cgcnn_*"))  # no data, no experiment
