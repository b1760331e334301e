"""Graceful stops, experiment folders and failure policy, with the real run scripts on a real local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from saved_results import SNAPSHOT_EVERY_S, terminated_progress, wait_for_a_terminated_trial

from experiments.core.config import resolve_config
from experiments.core.experiment_dir import ExperimentLock
from experiments.core.interrupts import graceful_stop_signals
from experiments.core.runner import main
from experiments.core.strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]


def _script(strategy: str, args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / f"run_{strategy}.py"), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "HPO_SUITE_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}


# -- bad input: one line, exit 2, before any data is built ------------------------------------------

def _run_quick(args: list[str], tmp_path: Path, strategy: str = "asha") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "experiments" / f"run_{strategy}.py"), *args], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_unwritable_storage_path_is_one_line_before_any_data_is_built(tmp_path):
    # As root os.access says yes to anything; creating the folder is the only honest check.
    start = time.monotonic()
    res = _run_quick(["--storage-path", "/proc/nope"], tmp_path)
    elapsed = time.monotonic() - start
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "/proc/nope" in lines[0], res.stderr
    assert not (tmp_path / "cache").exists(), "the dataset was built before the storage path was checked"
    assert elapsed < 60, elapsed


def test_existing_experiment_name_without_resume_is_refused(tmp_path):
    exp = tmp_path / "results" / "taken"
    exp.mkdir(parents=True)
    (exp / "summary.json").write_text("{}")
    res = _run_quick(["--smoke-test", "--storage-path", str(tmp_path / "results"), "--name", "taken"], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "--resume" in lines[0], res.stderr
    assert (exp / "summary.json").read_text() == "{}"
    assert not (tmp_path / "cache").exists()


def _snapshot(exp: Path, **changes) -> None:
    """An experiment.yaml as the runner writes it (the smoke-test random experiment)."""
    from experiments.core.config import resolve_config
    from experiments.core.runner import STRATEGIES

    config = resolve_config("random", {"smoke_test": True, **changes}, {"search": "random"},
                            STRATEGIES["random"].smoke)
    exp.mkdir(parents=True)
    (exp / "experiment.yaml").write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))


def test_folder_in_use_by_another_driver_is_refused(tmp_path):
    exp = tmp_path / "results" / "busy"
    _snapshot(exp)
    lock = ExperimentLock(exp).acquire()  # this test process plays the first driver
    try:
        res = _run_quick(["--resume", "--storage-path", str(tmp_path / "results"), "--name", "busy"], tmp_path,
                         strategy="random")
    finally:
        lock.release()
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by pid" in lines[0], res.stderr


@pytest.mark.parametrize("code", ["ENOLCK", "EOPNOTSUPP", "ENOSYS"])
def test_a_file_system_without_locks_is_named_as_such_not_as_in_use(tmp_path, monkeypatch, code):
    import errno
    import fcntl

    from experiments.core.config import ConfigError

    def lockless(fd, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(fcntl, "lockf", lockless)
    with pytest.raises(ConfigError) as caught:
        ExperimentLock(tmp_path).acquire()
    message = str(caught.value)
    assert "does not support file locks" in message and "in use" not in message
    assert "--storage-path" in message and "HPO_EXPERIMENT_LOCK=off" in message
    monkeypatch.setenv("HPO_EXPERIMENT_LOCK", "off")  # the way on the message offers
    ExperimentLock(tmp_path).acquire().release()


def test_a_lock_held_elsewhere_is_in_use(tmp_path, monkeypatch):
    import errno
    import fcntl

    from experiments.core.config import ConfigError

    def held(fd, op):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(fcntl, "lockf", held)
    with pytest.raises(ConfigError, match="is in use by"):
        ExperimentLock(tmp_path).acquire()


def test_auto_resume_finds_the_experiment_a_config_yaml_names(tmp_path, monkeypatch):
    """A requeued job given --config with name: and storage_path: resumes that experiment (it used to start it anew)."""
    import experiments.core.runner as runner

    storage = tmp_path / "elsewhere"
    exp = storage / "named_in_yaml"
    _snapshot(exp, storage_path=str(storage))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    user_config = tmp_path / "sweep.yaml"
    user_config.write_text((exp / "experiment.yaml").read_text() + "name: named_in_yaml\n")
    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda config, **kw: calls.append((config, kw)) or {})
    monkeypatch.setattr(runner, "format_table", lambda summary: "")
    monkeypatch.setattr(runner, "_report_outcome", lambda summary: 0)
    assert main("random", "test", ["--config", str(user_config), "--auto-resume"]) == 0
    (config, kw), = calls
    assert kw["resume"] and kw["resume_errored"]
    assert config.name == "named_in_yaml" and Path(config.storage_path) == storage


def test_max_failures_that_resume_cannot_apply_is_refused(tmp_path):
    exp = tmp_path / "results" / "mf"
    _snapshot(exp, max_failures=0)
    res = _run_quick(["--resume", "--max-failures", "3", "--storage-path", str(tmp_path / "results"),
                      "--name", "mf"], tmp_path, strategy="random")
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--max-failures" in lines[0], res.stderr


def test_default_names_are_unique_per_process_and_per_job(monkeypatch):
    from experiments.core.config import resolve_config
    from experiments.core.experiment_dir import default_name
    from experiments.core.runner import STRATEGIES

    config = resolve_config("asha", {}, {"search": "random"}, STRATEGIES["asha"].smoke)
    monkeypatch.delenv("HPO_EXPERIMENT_TAG", raising=False)
    assert str(os.getpid()) in default_name(config)
    monkeypatch.setenv("HPO_EXPERIMENT_TAG", "job42_3")
    assert default_name(config) == "cgcnn_asha_random_job42_3"


# -- graceful stops -------------------------------------------------------------------------------

def _sigterm_after_a_finished_trial(strategy: str, args: list[str], env: dict, exp: Path) -> tuple[int, str]:
    """Run ``run_<strategy>.py``, send its driver SIGTERM (as `kill PID` does) once Tune has saved a trial as
    TERMINATED (finished or stopped by its scheduler); return its exit status and output.

    Tune snapshots the polled state every second (``SNAPSHOT_EVERY_S``), so the signal meets the sweep unfinished.
    """
    proc = _script(strategy, args, {**env, **SNAPSHOT_EVERY_S})
    if not wait_for_a_terminated_trial(exp, 240, lambda: proc.poll() is None):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"no trial of {exp.name} finished or was stopped within 240 s:\n{proc.communicate()[0][-3000:]}")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


@pytest.mark.slow
def test_sigterm_mid_run_saves_the_summary_and_resume_keeps_finished_trials(tmp_path, smoke_cache):
    """The real run_asha.py driver: SIGTERM (what kill, scancel and preemption send) stops it like Ctrl-C."""
    env = {**_env(tmp_path), "HPO_SUITE_CACHE": str(smoke_cache)}
    # One trial at a time, six of them, each trained for at least 5 epochs: after the first ends, several
    # seconds of work are left for the signal to meet (with 4 trials and ASHA's default grace period of
    # 1 epoch the last three were each stopped after one epoch, and the whole sweep ended within a second
    # of the first trial: CI and a clean-clone run, 2026-12-04).
    args = ["--smoke-test", "--num-samples", "6", "--max-epochs", "20", "--grace-period", "5",
            "--checkpoint-frequency", "5", "--max-concurrent-trials", "1", "--storage-path", str(tmp_path),
            "--name", "sigterm"]
    exp = tmp_path / "sigterm"
    code, out = _sigterm_after_a_finished_trial("asha", args, env, exp)
    assert code == 130, out[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    # The signal lands in a trial (it is unfinished) or between two (the next ones never started).
    assert summary["num_unfinished"] + summary["num_not_started"] > 0, summary
    assert f"resume with: {summary['resume_command']}" in out
    # Each trial under its own id: a pending trial's metrics may carry its reused actor's previous id.
    assert len({t["trial_id"] for t in summary["trials"]}) == summary["num_trials"], summary["trials"]
    # Trials the stop left unfinished are interrupted, not stopped early (in memory Tune shows them stopped).
    assert sum(1 for t in summary["trials"] if t.get("interrupted")) == summary["num_unfinished"], summary
    # A trial ASHA stopped while it saved its checkpoint (grace period = checkpoint frequency = 5) reports `done`,
    # but Tune holds the stop until the save returns: a signal in between leaves it saved as RUNNING, so it is
    # interrupted, not stopped early, and a resume judges it at that rung again (scheduler_state; CI, 2026-12-05).
    ended_early = [t for t in summary["trials"]
                   if t["done"] and t["iteration"] < 20 and not t["diverged"] and not t.get("interrupted")]
    assert summary["num_early_stopped"] == len(ended_early), summary
    assert "all done" not in out and "stopped unfinished" in out, out[-3000:]
    finished_before = terminated_progress(exp)
    assert finished_before

    resumed = _script("asha", ["--resume", "--name", "sigterm", "--storage-path", str(tmp_path)], env)
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 6 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0
    after = terminated_progress(exp)
    assert {name: after[name] for name in finished_before} == finished_before


@pytest.mark.slow
def test_bohb_interrupted_after_a_rung_resumes_and_finishes(tmp_path, smoke_cache):
    """BOHB's brackets are not saved: a resumed run rebuilds them from the unfinished trials and finishes
    (Ray's scheduler put the finished trials in the new brackets too, and waited for them forever)."""
    env = {**_env(tmp_path), "HPO_SUITE_CACHE": str(smoke_cache)}
    args = ["--smoke-test", "--num-samples", "6", "--max-epochs", "9", "--reduction-factor", "3",
            "--checkpoint-frequency", "3", "--storage-path", str(tmp_path), "--name", "bohb"]
    exp = tmp_path / "bohb"
    code, out = _sigterm_after_a_finished_trial("bohb", args, env, exp)
    first = json.loads((exp / "summary.json").read_text())
    if code == 0:  # the signal came as the last bracket ended: nothing left to resume
        assert first["num_unfinished"] == 0, first
        pytest.skip("the run finished before the stop signal reached it")
    assert code == 130 and first["num_unfinished"] > 0, out[-3000:]
    resumed = _script("bohb", ["--resume", "--name", "bohb", "--storage-path", str(tmp_path)], env)
    try:
        out, _ = resumed.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(resumed.pid, signal.SIGKILL)
        out, _ = resumed.communicate()
        pytest.fail(f"the resumed BOHB run did not finish in 300 s:\n{out[-3000:]}")
    assert resumed.returncode == 0, out[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 6 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0, summary
    assert summary["best"] is not None and max(t["iteration"] for t in summary["trials"]) == 9, summary["trials"]


@pytest.mark.slow
def test_fail_fast_then_advised_resume_completes_every_planned_trial(faulty_models, tmp_path, capsys):
    """Fail-fast stops through the interrupt path, so `--resume --resume-errored` runs the plan to its end."""
    args = ["--model", "cgcnn_fail_once_in_all", "--smoke-test", "--num-samples", "4", "--max-epochs", "5",
            "--max-concurrent-trials", "1", "--storage-path", str(tmp_path), "--name", "ff"]
    assert main("random", "test", args) == 1
    err = capsys.readouterr().err
    assert "--resume-errored" in err.strip().splitlines()[-1], err[-2000:]
    first = json.loads((tmp_path / "ff" / "summary.json").read_text())
    assert first["num_errored"] == 1 and first["num_trials"] < 4, first  # it stopped at the first failure

    code = main("random", "test", ["--resume", "--resume-errored", "--name", "ff", "--storage-path", str(tmp_path)])
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((tmp_path / "ff" / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0, summary
    assert [t["iteration"] for t in summary["trials"]] == [5] * 4, summary["trials"]


@pytest.mark.slow
def test_max_concurrent_trials_caps_random_search(tmp_path, monkeypatch, capsys, smoke_cache):
    monkeypatch.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    code = main("random", "test", ["--smoke-test", "--num-samples", "3", "--max-epochs", "15",
                                   "--max-concurrent-trials", "1", "--cpus-per-trial", "0.5",
                                   "--storage-path", str(tmp_path), "--name", "cap"])
    assert code == 0, capsys.readouterr().err[-2000:]
    pids = {json.loads(line)["pid"] for result in (tmp_path / "cap").glob("CGCNNTrainable_*/result.json")
            for line in result.read_text().splitlines() if line.strip()}
    # Room for six trials at once (0.5 CPU each): without the cap the three trials start together, each in
    # its own actor; with it they run one after another in one reused actor.
    assert len(pids) == 1, pids


def _trial_configs(exp: Path) -> list[tuple]:
    """Per trial, in trial order: the configs of its results (PBT changes them) and the epochs it trained."""
    out = []
    for result in sorted(exp.glob("CGCNNTrainable_*/result.json"), key=lambda p: p.parent.name.split("_")[2]):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        out.append((tuple(json.dumps(r["config"], sort_keys=True) for r in rows), rows[-1]["training_iteration"]))
    return out


@pytest.mark.slow
def test_one_seed_gives_the_same_ahb_trials_twice(tmp_path, smoke_cache):
    """AHB draws each trial's bracket from np.random, which --seed now seeds: two runs stop the same trials."""
    runs = []
    for run in ("a", "b"):
        proc = _script("ahb", ["--smoke-test", "--seed", "5", "--max-concurrent-trials", "1",
                               "--storage-path", str(tmp_path), "--name", run],
                       {**_env(tmp_path), "HPO_SUITE_CACHE": str(smoke_cache)})
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out[-3000:]
        runs.append(_trial_configs(tmp_path / run))
    assert runs[0] == runs[1]
    # Two brackets stop trials at different rungs: the runs above really depended on the bracket draws.
    assert len({epochs for _, epochs in runs[0]}) > 1, runs[0]


def test_planned_trials_a_stop_kept_from_starting_are_left_to_run_but_not_after_the_time_budget():
    """Tune creates trials as slots free up: a stop between two trials leaves fewer trials, none unfinished."""
    from experiments.core.interrupts import TrialErrorPolicy
    from experiments.core.runner import trials_not_started
    from experiments.core.summary import left_to_run

    config = resolve_config("asha", {}, {"search": "random"}, STRATEGIES["asha"].smoke)
    with graceful_stop_signals():
        TrialErrorPolicy(fail_fast=True).setup(total_num_samples=4)  # as Tune calls it when the run starts
        assert trials_not_started(config, num_trials=2, session_s=10.0) == 2
        assert trials_not_started(config, num_trials=4, session_s=10.0) == 0
        budgeted = replace(config, time_budget_s=5)
        assert trials_not_started(budgeted, num_trials=2, session_s=6.0) == 0  # the budget ended it: done
        assert trials_not_started(budgeted, num_trials=2, session_s=4.0) == 2  # stopped before the budget
        TrialErrorPolicy(fail_fast=True).setup(total_num_samples=-1)  # open-ended (num_samples=-1)
        assert trials_not_started(config, num_trials=2, session_s=10.0) == 0
    assert left_to_run({"num_unfinished": 0, "num_not_started": 2}) == 2
    assert left_to_run({"num_unfinished": 1}) == 1 and left_to_run({}) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_a_stop_signal_while_the_summary_is_written_is_held_and_the_handlers_come_back(sig, capsys):
    """After the Tuner returned, Ray's SIGTERM handler exits at once and SIGUSR1 kills the process: held."""
    from experiments.core import interrupts

    seen = []
    previous = signal.signal(sig, lambda signum, frame: seen.append(signum))
    try:
        with interrupts.stop_signals_held():
            os.kill(os.getpid(), sig)
            time.sleep(0.1)  # the handler runs in the main thread between bytecodes
            assert interrupts.held_stop_signal() == sig.name
        assert "the trials are over; writing the summary" in capsys.readouterr().out
        os.kill(os.getpid(), sig)  # after the block the handler before it applies again
        time.sleep(0.1)
        assert seen == [sig]
        with interrupts.stop_signals_held():  # each block starts with none held
            assert interrupts.held_stop_signal() is None
    finally:
        signal.signal(sig, previous)


@pytest.mark.slow
def test_the_batch_scripts_stop_signal_after_the_last_trial_still_gives_the_summary(tmp_path, monkeypatch, capsys,
                                                                                    smoke_cache):
    """SIGUSR1 (the time-limit warning) arriving as the runner summarises a finished experiment: exit 0 with
    summary.json, the report left for analyze.py (CI, 2026-12-04: a SIGTERM there exited with Ray's status 15)."""
    import experiments.core.runner as runner

    monkeypatch.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    summarize = runner.summarize

    def signalled_then_summarize(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.1)
        return summarize(*args, **kwargs)

    monkeypatch.setattr(runner, "summarize", signalled_then_summarize)
    code = main("random", "test", ["--smoke-test", "--num-samples", "2", "--max-epochs", "3",
                                   "--storage-path", str(tmp_path), "--name", "late"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    summary = json.loads((tmp_path / "late" / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["num_unfinished"] == 0 and summary["best"] is not None
    assert "Received SIGUSR1: the trials are over" in out
    assert f"make it with: python experiments/analyze.py {tmp_path / 'late'}" in out
