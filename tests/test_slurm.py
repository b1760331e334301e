"""slurm/submit.sbatch on a real Slurm: two slurmd "nodes" on this machine, no mocks.

The fixture (tests/slurm_cluster.py) starts munged, slurmctld and two slurmd with a private
configuration; ``slurm/install-test-slurm.sh`` installs the Debian packages (``.ci/run`` calls
it). Without them, or without root, these tests skip. Each Ray node gets one CPU.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import time
from itertools import pairwise
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from saved_results import SNAPSHOT_EVERY_S, wait_for_a_terminated_trial  # noqa: E402
from saved_results import terminated_progress as _terminated  # noqa: E402
from slurm_cluster import SlurmCluster, missing_slurm_binaries, processes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN_ASHA = REPO / "experiments" / "run_asha.py"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

_missing = missing_slurm_binaries()
if _missing:
    pytestmark.append(pytest.mark.skip(
        reason=f"Slurm is not installed ({', '.join(_missing)} missing): run slurm/install-test-slurm.sh"))
elif os.geteuid() != 0:
    pytestmark.append(pytest.mark.skip(
        reason="the throw-away Slurm cluster needs root (slurmd runs as root)"))

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}

# A driver that needs nothing but Ray: it runs one task pinned to each node, then sleeps.
STAND_IN_DRIVER = textwrap.dedent("""
    import argparse, sys, time
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--sleep", type=float, default=0)
    a = p.parse_args()
    ray.init(address=a.address)

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    ids = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
                   for n in nodes])
    print("NODE IDS", sorted(set(ids)), flush=True)
    time.sleep(a.sleep)
""")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cache_dir(smoke_cache) -> str:
    return str(smoke_cache)


class Job:
    """One submission of slurm/submit.sbatch and where its files go."""

    def __init__(self, slurm: SlurmCluster, root: Path, command: list[str], cache: str,
                 sbatch_args: tuple[str, ...] = (), export_all: bool = True, **env: str):
        self.slurm, self.root = slurm, root
        self.logs = root / "slurm-logs"
        environment = {
            "HPO_VENV": sys.prefix,  # the environment running the tests
            "HPO_SLURM_LOG_ROOT": str(self.logs),
            "HPO_SUITE_CACHE": cache,
            # Two Ray nodes share this machine: keep each one's object store small.
            "HPO_RAY_START_ARGS": "--object-store-memory=150000000",
            **env,
        }
        # export_all=False: only these variables (and Slurm's own), as an explicit --export list does.
        export = ("ALL," if export_all else "") + ",".join(f"{k}={v}" for k, v in environment.items())
        res = slurm.run("sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1",
                        "--time=10", f"--output={root}/job-%j.out", f"--export={export}", *sbatch_args,
                        "slurm/submit.sbatch", *command, cwd=REPO)
        self.id = res.stdout.strip().split(";")[0]
        self.dir = self.logs / self.id
        self.out = root / f"job-{self.id}.out"

    def info(self) -> dict[str, str]:
        res = self.slurm.run("scontrol", "show", "job", "-o", self.id, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", res.stdout))

    def wait(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.info()
            if info.get("JobState") in TERMINAL:
                return info
            time.sleep(1)
        self.slurm.run("scancel", self.id, check=False)
        pytest.fail(f"job {self.id} did not finish within {timeout:.0f}s\n{self.report()}")

    def report(self) -> str:
        parts = [f"--- {self.out}", self.out.read_text(errors="replace") if self.out.exists() else "(none)"]
        for log in sorted(self.dir.glob("*.log")):
            parts += [f"--- {log}", "\n".join(log.read_text(errors="replace").splitlines()[-30:])]
        return "\n".join(parts) + "\n" + self.slurm.logs()

    def wait_for_file(self, path: Path, timeout: float, pattern: str = "") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and pattern in (text := path.read_text(errors="replace")):
                return text
            if self.info().get("JobState") in TERMINAL:
                break
            time.sleep(0.5)
        pytest.fail(f"{path} did not show {pattern!r} within {timeout:.0f}s\n{self.report()}")

    def leftovers(self, timeout: float = 20) -> list[str]:
        """Processes still running for this job (srun, Ray), after up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = _job_processes(self.id)
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _job_processes(job_id: str) -> list[str]:
    """Processes started by job ``job_id``: Slurm puts SLURM_JOB_ID in all of their environments
    (Ray's processes inherit it), and Ray's temp dir of the job is named after it."""
    marker = f"SLURM_JOB_ID={job_id}".encode()
    return [f"{pid}: {cmdline[:160]}" for pid, cmdline in
            processes(lambda environ, cmdline: marker in environ or f"/hpo-ray-{job_id}-" in cmdline)]


def _gcs_check(address: str, env_changes: dict[str, str | None], home: Path) -> subprocess.CompletedProcess:
    """Ask the GCS at ``address`` for its node list from a fresh client process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(home)  # no ~/.ray/auth_token to fall back on
    for key, value in env_changes.items():
        if value is not None:
            env[key] = value
    code = ("import sys; from ray._raylet import GcsClient; "
            "c = GcsClient(address=sys.argv[1]); print(len(c.get_all_node_info(timeout=10)), 'nodes')")
    return subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True,
                          timeout=90, stdin=subprocess.DEVNULL)


def _trial_node_ids(experiment: Path) -> set[str]:
    ids = set()
    for result in experiment.rglob("result.json"):
        for line in result.read_text().splitlines():
            if line.strip() and (node := json.loads(line).get("node_id")):
                ids.add(node)
    return ids


@pytest.mark.skipif(not RUN_ASHA.exists(), reason="experiments/run_asha.py does not exist yet")
def test_asha_experiment_runs_across_two_slurm_nodes(slurm, tmp_path, cache_dir):
    storage = tmp_path / "results"
    # Each Ray node has one CPU, so two trials at a time means one per node. But smoke-test
    # epochs take ~0.1 s while an actor needs several seconds to start, and with reused actors
    # Tune hands the next trial to the first actor whenever it is free before the second
    # node's actor is up (it then stops that actor): the first trial has to outlast that
    # start-up. The first trial is the small model that ASHA never stops, so more epochs
    # lengthen it and cost little elsewhere.
    job = Job(slurm, tmp_path, [
        "experiments/run_asha.py", "--smoke-test", "--num-samples", "4", "--max-epochs", "120",
        "--cpus-per-trial", "1", "--storage-path", str(storage), "--name", "slurm_smoke",
    ], cache_dir)

    # While the cluster is up: the job's token works, a wrong one or none is refused.
    address = job.wait_for_file(job.dir / "ray-address", 60, ":").strip()
    job.wait_for_file(job.out, 90, "Ray head is up")
    token = (job.dir / "ray-auth-token").read_text().strip()
    assert (job.dir / "ray-auth-token").stat().st_mode & 0o777 == 0o600
    home = tmp_path / "home"
    home.mkdir()
    good = _gcs_check(address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, home)
    assert good.returncode == 0, f"the job's own token was refused:\n{good.stderr[-2000:]}\n{job.report()}"
    for changes in ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}, {}):
        bad = _gcs_check(address, changes, home)
        assert bad.returncode != 0, f"a client with {changes or 'no token'} was let in: {bad.stdout}"
        assert "InvalidAuthToken" in bad.stderr or "Authentication" in bad.stderr, bad.stderr[-2000:]

    info = job.wait(240)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{job.report()}"

    experiment = storage / "slurm_smoke"
    assert (experiment / "summary.json").exists(), job.report()
    node_ids = _trial_node_ids(experiment)
    assert len(node_ids) == 2, f"trials ran on Ray nodes {node_ids}, expected both nodes\n{job.report()}"

    for name in ("head.log", "worker-hpo-n2.log", "driver.log"):
        assert (job.dir / name).exists(), name
    assert not (job.dir / "ray-auth-token").exists()  # deleted at the job's end
    # Owner-only files (submit.sbatch's umask 077): results and logs on a shared file system.
    assert all(p.stat().st_mode & 0o077 == 0 for p in (experiment / "summary.json", job.dir / "driver.log"))
    assert token not in job.out.read_text() and token not in json.dumps(info)
    assert job.leftovers() == []
    assert not list(Path("/tmp").glob(f"hpo-ray-{job.id}-*")), "Ray temp dirs of the job were left behind"


def test_stand_in_driver_sees_both_nodes_and_scancel_cleans_up(slurm, tmp_path, cache_dir):
    driver = tmp_path / "stand_in_driver.py"
    driver.write_text(STAND_IN_DRIVER)
    job = Job(slurm, tmp_path, [str(driver), "--sleep", "300"], cache_dir)

    log = job.wait_for_file(job.dir / "driver.log", 120, "NODE IDS")
    ids = re.search(r"NODE IDS \[(.*)\]", log).group(1).split(",")
    assert len(ids) == 2, log
    assert job.info()["JobState"] == "RUNNING"

    slurm.run("scancel", job.id)
    info = job.wait(60)
    assert info["JobState"] == "CANCELLED", info
    assert job.leftovers() == [], job.report()
    assert not list(Path("/tmp").glob(f"hpo-ray-{job.id}-*"))


def test_a_taken_port_ends_the_job_quickly_with_a_clear_message(slurm, tmp_path, cache_dir):
    # Someone else holds the port this job's GCS would use: HPO_RAY_PORT_SLOTS=1 makes the
    # job's only port block start exactly at HPO_RAY_PORT_BASE, so there is no other block to take.
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        start = time.monotonic()
        job = Job(slurm, tmp_path, ["experiments/run_asha.py", "--smoke-test"], cache_dir,
                  HPO_RAY_PORT_BASE=str(port), HPO_RAY_PORT_SLOTS="1", HPO_RAY_PORT_BLOCK="60")
        info = job.wait(90)
        elapsed = time.monotonic() - start
    finally:
        blocker.close()
    assert info["JobState"] == "FAILED", f"{info}\n{job.report()}"
    assert elapsed < 60, f"the job took {elapsed:.0f}s to fail"
    out = job.out.read_text()
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1, job.report()
    assert f"port {port}" in errors[0] and "already in use" in errors[0] and "All 1 port blocks" in errors[0]
    assert job.leftovers() == []


def test_failing_head_ends_the_job_quickly_with_a_clear_message(slurm, tmp_path, cache_dir):
    start = time.monotonic()
    job = Job(slurm, tmp_path, ["experiments/run_asha.py", "--smoke-test"], cache_dir,
              HPO_RAY_HEAD_START_ARGS="--no-such-ray-flag")
    info = job.wait(90)
    assert info["JobState"] == "FAILED", f"{info}\n{job.report()}"
    assert time.monotonic() - start < 60
    out = job.out.read_text()
    assert "did not come up" in out and "no-such-ray-flag" in out, job.report()  # with the head log's tail
    assert job.leftovers() == []


def test_worker_that_cannot_start_is_named_and_ends_the_job(slurm, tmp_path, cache_dir):
    start = time.monotonic()
    job = Job(slurm, tmp_path, ["experiments/run_asha.py", "--smoke-test"], cache_dir,
              HPO_RAY_WORKER_START_ARGS="--num-cpus=not-a-number")
    info = job.wait(120)
    elapsed = time.monotonic() - start
    assert info["JobState"] == "FAILED", f"{info}\n{job.report()}"
    assert elapsed < 90, f"the job took {elapsed:.0f}s to fail"
    out = job.out.read_text()
    assert "node hpo-n2 did not come up (its srun step exited)" in out, job.report()
    assert not (job.dir / "driver.log").exists(), "the experiment must not start on a partial cluster"
    assert job.leftovers() == []


# -- graceful stops, requeue and privacy with the real run_asha.py driver ---------------------------

def _wait_for_a_finished_trial(job: Job, experiment: Path, timeout: float) -> None:
    if not wait_for_a_terminated_trial(experiment, timeout, lambda: job.info().get("JobState") not in TERMINAL):
        pytest.fail(f"no trial of {experiment.name} finished within {timeout:.0f}s\n{job.report()}")


# Long enough that a scancel or requeue sent once the first trial has finished always meets a running
# trial: a quiet machine trains the smoke CGCNN at about 10 epochs/s, so 60 epochs (all 4 trials took 8 s)
# let the whole sweep finish while the signal was on its way (CI, 2026-12-04), and so did 150 (about 15 s,
# a clean-clone run the same day).
ASHA_LONG = ["experiments/run_asha.py", "--smoke-test", "--num-samples", "4", "--max-epochs", "300",
             "--checkpoint-frequency", "5", "--cpus-per-trial", "1"]


def test_scancel_mid_run_writes_the_summary_and_resume_finishes(slurm, tmp_path, cache_dir):
    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, [*ASHA_LONG, "--storage-path", str(storage), "--name", "cancelled"], cache_dir,
              **SNAPSHOT_EVERY_S)
    experiment = storage / "cancelled"
    _wait_for_a_finished_trial(job, experiment, 300)
    slurm.run("scancel", job.id)
    info = job.wait(90)
    assert info["JobState"] == "CANCELLED", f"{info}\n{job.report()}"
    assert (experiment / "summary.json").exists(), job.report()
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["num_unfinished"] > 0, f"{summary}\n{job.report()}"
    assert "resume with: " in job.out.read_text(), job.report()
    assert job.leftovers() == [], job.report()
    before = _terminated(experiment)
    assert before

    env = {**os.environ, "HPO_SUITE_CACHE": cache_dir, "RAY_AUTH_MODE": "disabled"}
    # The resume command the job printed (trials the scancel killed are retried: --resume-errored).
    command = shlex.split(re.findall(r"resume with: (.*)", job.out.read_text())[-1])
    assert command[:2] == ["python", "experiments/run_asha.py"] and "--resume" in command, command
    res = subprocess.run([sys.executable, *command[1:]], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0, \
        f"{summary}\n{res.stdout[-3000:]}\n{job.report()}"
    after = _terminated(experiment)
    assert {k: after.get(k) for k in before} == before, f"{before}\n{after}\n{res.stdout[-3000:]}"


def _start_requeued_job_now(job: Job, timeout: float = 120) -> None:
    """Let a requeued job start as soon as it is pending again.

    Slurm gives a requeued batch job a begin time about two minutes ahead (it pends with reason
    BeginTime); a real queue waits that out. The test moves the begin time to now, which changes
    nothing about what runs, only when.
    """
    deadline, pending_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        info = job.info()
        if info.get("JobState") == "PENDING":
            pending_since = pending_since or time.monotonic()
            if time.monotonic() - pending_since < 3:  # slurmd refuses a job whose credential was revoked this second
                time.sleep(0.5)
                continue
            if info.get("Reason") == "BeginTime":
                job.slurm.run("scontrol", "update", f"JobId={job.id}", "StartTime=now", check=False)
            return
        if info.get("JobState") == "RUNNING" and info.get("Restarts") == "1":
            return
        time.sleep(0.5)


def test_requeued_job_resumes_its_own_experiment(slurm, tmp_path, cache_dir):
    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, [*ASHA_LONG, "--storage-path", str(storage)], cache_dir, **SNAPSHOT_EVERY_S)
    experiment = storage / f"cgcnn_asha_random_job{job.id}"  # named after the job, found again after the requeue
    _wait_for_a_finished_trial(job, experiment, 300)
    before = _terminated(experiment)
    slurm.run("scontrol", "requeue", job.id)
    _start_requeued_job_now(job)
    info = job.wait(600)
    assert info["JobState"] == "COMPLETED" and info.get("Restarts") == "1", f"{info}\n{job.report()}"
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0, summary
    after = _terminated(experiment)
    assert {k: after[k] for k in before} == before, "a trial finished before the requeue ran again"
    assert [p.name for p in storage.iterdir()] == [experiment.name]


OTHER_USER = "hpo-other"
PROBE_AS_OTHER = textwrap.dedent("""
    import glob, os, socket, sys
    for d in glob.glob(f"/tmp/hpo-ray-{sys.argv[1]}-*"):
        try:
            os.listdir(d)
            print("LISTED", d)
        except PermissionError:
            print("DENIED list", d)
        for sock in ("raylet", "plasma_store"):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(os.path.join(d, "r", "session_latest", "sockets", sock))
                print("CONNECTED", sock)
            except PermissionError:
                print("DENIED connect", sock)
            except OSError as e:
                print("FAILED connect", sock, e)
""")


def _as_other_user(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` with the system python as an unprivileged user created for the test."""
    if subprocess.run(["id", OTHER_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER], check=True)
    return subprocess.run(["/usr/bin/python3", "-c", code, *args], user=OTHER_USER, cwd="/",
                          capture_output=True, text=True, timeout=60)


def test_another_user_cannot_read_the_temp_dir_or_reach_the_sockets(slurm, tmp_path, cache_dir):
    driver = tmp_path / "stand_in_driver.py"
    driver.write_text(STAND_IN_DRIVER)
    job = Job(slurm, tmp_path, [str(driver), "--sleep", "300"], cache_dir)
    job.wait_for_file(job.dir / "driver.log", 120, "NODE IDS")
    dirs = sorted(Path("/tmp").glob(f"hpo-ray-{job.id}-*"))
    assert len(dirs) == 2, dirs  # one per node
    for d in dirs:
        assert d.stat().st_mode & 0o777 == 0o700 and d.stat().st_uid == os.geteuid()
        assert (d / "r" / "session_latest" / "sockets" / "raylet").exists()  # root sees Ray's socket there
    token = (job.dir / "ray-auth-token").read_text().strip()  # deleted when the job ends
    probe = _as_other_user(PROBE_AS_OTHER, job.id)
    slurm.run("scancel", job.id)
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert sum(line.startswith("DENIED list") for line in lines) == 2, probe.stdout
    assert sum(line.startswith("DENIED connect") for line in lines) == 4, probe.stdout
    assert not any(line.startswith(("LISTED", "CONNECTED")) for line in lines), probe.stdout
    job.wait(60)
    assert not (job.dir / "ray-auth-token").exists()
    leaked = [str(p) for p in job.dir.rglob("*") if p.is_file()
              and token in p.read_text(errors="replace")]
    assert leaked == [], f"the job's Ray token is in {leaked}"


def test_the_token_and_a_fake_wandb_key_are_in_no_file_of_the_job(slurm, tmp_path, cache_dir):
    fake_key = "fake-wandb-key-0123456789abcdef"
    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, ["experiments/run_random.py", "--smoke-test", "--num-samples", "1", "--max-epochs",
                                "2", "--cpus-per-trial", "1", "--wandb", "proj", "--storage-path", str(storage),
                                "--name", "wk"], cache_dir, WANDB_MODE="offline", WANDB_API_KEY=fake_key)
    job.wait_for_file(job.out, 120, "Ray head is up")
    token = (job.dir / "ray-auth-token").read_text().strip()  # the job deletes it when it ends
    info = job.wait(240)
    assert info["JobState"] == "COMPLETED", f"{info}\n{job.report()}"
    assert list((job.dir / "ray-logs").rglob("runtime_env_agent.log")), job.report()  # Ray's logs were kept
    # W&B ran for the trial, and its offline run survived the job: in the experiment folder, not in
    # the trial's staging folder under the job's private temp dir, which the job removes.
    assert list((storage / "wk").glob("wandb/offline-run-*/run-*.wandb")), job.report()
    files = [p for root in (job.dir, storage, tmp_path) for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    leaked_key = sorted({str(p) for p in files if fake_key.encode() in p.read_bytes()})
    leaked_token = sorted({str(p) for p in files if token.encode() in p.read_bytes()})
    assert leaked_key == [] and leaked_token == []
    assert not list(Path("/tmp").glob(f"hpo-ray-{job.id}-*"))  # the job's private temp dirs are gone


def test_array_tasks_run_one_experiment_each_with_the_task_id_as_seed(slurm, tmp_path, cache_dir):
    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, ["experiments/run_asha.py", "--smoke-test", "--num-samples", "2", "--max-epochs", "2",
                                "--cpus-per-trial", "1", "--storage-path", str(storage)], cache_dir,
              sbatch_args=("--array=0-1", f"--output={tmp_path}/job-%A_%a.out"))
    deadline = time.monotonic() + 400
    names = [f"cgcnn_asha_random_job{job.id}_{task}" for task in (0, 1)]
    while time.monotonic() < deadline and not all((storage / n / "summary.json").exists() for n in names):
        time.sleep(2)
    outs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("job-*.out"))
    assert all((storage / n / "summary.json").exists() for n in names), f"{sorted(storage.glob('*'))}\n{outs}"
    seeds = [json.loads((storage / n / "summary.json").read_text())["seed"] for n in names]
    assert seeds == [0, 1]


def _run_through_requeues(job: Job, timeout: float) -> tuple[dict[str, str], list[str]]:
    """Wait for ``job`` to end, starting each requeued allocation at once; return its last state and
    the output of every allocation (each one writes the output file anew)."""
    deadline, outputs, pending_since = time.monotonic() + timeout, [], None
    while time.monotonic() < deadline:
        info = job.info()
        state = info.get("JobState")
        if state == "PENDING" and pending_since is None and job.out.exists():
            outputs.append(job.out.read_text(errors="replace"))  # before the next allocation overwrites it
        pending_since = (pending_since or time.monotonic()) if state == "PENDING" else None
        # Not in the second of the requeue: slurmd refuses a job whose credential was revoked in the same second.
        if pending_since and time.monotonic() - pending_since > 3 and info.get("Reason") == "BeginTime":
            job.slurm.run("scontrol", "update", f"JobId={job.id}", "StartTime=now", check=False)
        if state in TERMINAL:
            return info, outputs + [job.out.read_text(errors="replace")]
        time.sleep(0.5)
    job.slurm.run("scancel", job.id, check=False)
    pytest.fail(f"job {job.id} did not finish within {timeout:.0f}s\n{job.report()}")


def test_a_sweep_longer_than_its_time_limit_requeues_itself_until_every_trial_is_full_length(
        slurm, tmp_path, cache_dir):
    """A real Slurm time limit: 16 trials that need about two 2-minute allocations.

    Slurm sends the warning (USR1, 60 s before the limit), the experiment stops and saves, the job
    requeues itself and the next allocation resumes the sweep (--auto-resume, which finds the
    experiment by the ``name:`` of the --config YAML) until every trial has trained its full length.
    The issue asked for --time=4 and 16 x 150 epochs; 2 minutes and 16 x 70 smoke epochs (about 1.7
    allocations on a 2-core machine) exercise the same path in half the time.
    """
    storage = tmp_path / "results"
    config = tmp_path / "sweep.yaml"
    config.write_text("name: timed\n")
    job = Job(slurm, tmp_path, ["experiments/run_random.py", "--config", str(config), "--smoke-test",
                                "--num-samples", "16", "--max-epochs", "70", "--checkpoint-frequency", "5",
                                "--cpus-per-trial", "1", "--storage-path", str(storage)],
              cache_dir, sbatch_args=("--time=2", "--signal=B:USR1@60"))
    info, outputs = _run_through_requeues(job, 720)
    report = "\n".join(outputs) + job.report()
    assert info["JobState"] == "COMPLETED" and int(info.get("Restarts", 0)) >= 1, f"{info}\n{report}"
    first = outputs[0]
    assert "received SIGUSR1" in first and "experiment exited with status 130" in first, report
    assert "requeueing job" in first, report
    assert all("--auto-resume" in out for out in outputs[1:]), report
    experiment = storage / "timed"
    assert [p.name for p in storage.iterdir()] == ["timed"]  # the YAML's name, found again after each restart
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["num_trials"] == 16 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0, summary
    assert summary["ended_by"] == "completed" and summary["num_cut"] == 0, summary
    assert all(t["iteration"] == 70 for t in summary["trials"]), [t["iteration"] for t in summary["trials"]]
    rows = _progress_rows(experiment)
    assert len(rows) == 16 and all(sorted(set(r)) == list(range(1, 71)) for r in rows.values()), rows
    restarted = {name: r.count(1) for name, r in rows.items() if r.count(1) > 1}
    # Every restart continues from a checkpoint (epoch 0, 5, 10, ...) and trains at most 5 epochs again:
    # a trial the warning stopped before its first checkpoint starts over, as minimal checkpointing
    # intends, and a save still in flight when the stop came is dropped by Tune (its STOP clears
    # ``saving_to``), so the trial goes on from the checkpoint before it.
    resumes = {name: _resumes(r) for name, r in rows.items()}
    assert all((epoch - 1) % 5 == 0 and 0 < lost <= 5 for r in resumes.values() for epoch, lost in r), resumes
    assert len(restarted) <= 2 * int(info["Restarts"]), restarted


# -- sweeps that span allocations, and what a shared or strict cluster changes -----------------------


def _resumes(epochs: list[int]) -> list[tuple[int, int]]:
    """(first epoch after a restart, epochs trained again) for each restart in one trial's logged epochs."""
    return [(cur, prev - cur + 1) for prev, cur in pairwise(epochs) if cur <= prev]


def _progress_rows(experiment: Path) -> dict[str, list[int]]:
    import pandas as pd

    return {p.parent.name: pd.read_csv(p)["training_iteration"].tolist() for p in experiment.glob("*/progress.csv")}


def test_warning_then_late_term_requeues_a_two_stage_search_and_the_next_allocation_finishes_it(
        slurm, tmp_path, cache_dir):
    """The time-limit warning (USR1) then Slurm's TERM before the driver finished saving: still requeued.

    The experiment is a two-stage seed search stopped in its first stage: the requeued job resumes it
    (--auto-resume), finishes stage 1 without training a finished trial again, and runs stage 2.
    The test sends both signals to the batch script as Slurm does at a time limit (scancel --batch), so
    the job needs no minutes-long --time.
    """
    from experiments.workflows.two_stage import RECORD, STAGE1, STAGE2

    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, ["experiments/run_two_stage.py", "--smoke-test", "--max-epochs", "30",
                                "--checkpoint-frequency", "5", "--cpus-per-trial", "1", "--storage-path",
                                str(storage)], cache_dir)
    parent = storage / f"cgcnn_two_stage_job{job.id}"
    _wait_for_a_finished_trial(job, parent / STAGE1, 300)
    slurm.run("scancel", "--batch", "--signal=USR1", job.id)
    time.sleep(1)
    slurm.run("scancel", "--batch", "--signal=TERM", job.id)  # the limit, while the driver still saves
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.info().get("JobState") != "PENDING":
        time.sleep(0.5)
    first = job.out.read_text(errors="replace")  # before the next allocation writes the file anew
    assert "--time-budget-s" not in first  # the job adds no budget of its own
    assert "requeueing job" in first and "the time limit came before the experiment finished saving" in first, \
        job.report()
    before = _terminated(parent / STAGE1)
    assert before
    _start_requeued_job_now(job)
    info = job.wait(420)
    assert info["JobState"] == "COMPLETED" and int(info.get("Restarts", 0)) >= 1, f"{info}\n{job.report()}"
    assert "--auto-resume" in job.out.read_text(errors="replace"), job.report()
    record = json.loads((parent / RECORD).read_text())
    assert record["status"] == "complete", record
    stage1 = json.loads((parent / STAGE1 / "summary.json").read_text())
    assert stage1["num_errored"] == 0 and stage1["num_unfinished"] == 0, stage1
    after = _terminated(parent / STAGE1)
    assert {k: after[k] for k in before} == before, "a stage-1 trial finished before the requeue ran again"
    rows = _progress_rows(parent / STAGE1)
    assert all(r.count(1) == 1 for name, r in rows.items() if name in before), rows
    stage2 = json.loads((parent / STAGE2 / "summary.json").read_text())
    assert stage2["num_trials"] > 0 and stage2["num_errored"] == 0 and stage2["num_unfinished"] == 0, stage2
    assert not (job.dir / "ray-auth-token").exists()


def test_budget_is_the_experiments_total_and_summary_says_it_ended_it(slurm, tmp_path, cache_dir):
    """A --time-budget-s smaller than the work ends the sweep, exit 0; no budget of the job's own is added.

    With an explicit --export list (not ALL) the Ray steps still get what they need (HPO_JOB_DIR, the token path).
    """
    storage = tmp_path / "results"
    job = Job(slurm, tmp_path, ["experiments/run_random.py", "--smoke-test", "--num-samples", "4", "--max-epochs",
                                "2000", "--cpus-per-trial", "1", "--time-budget-s", "20", "--storage-path",
                                str(storage), "--name", "budget"], cache_dir, export_all=False)
    info = job.wait(300)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{job.report()}"
    summary = json.loads((storage / "budget" / "summary.json").read_text())
    assert summary["ended_by"] == "time_budget" and summary["num_cut"] >= 2, summary  # the two running ones
    assert summary["num_cut"] == sum(t["cut"] for t in summary["trials"])
    assert not any(t["done"] for t in summary["trials"] if t["cut"])
    assert summary["wall_time_s"] < 120, summary
    assert "experiments/run_random.py" in (job.dir / "driver.log").read_text()
    assert "--time-budget-s 20" in job.out.read_text() and job.out.read_text().count("--time-budget-s") == 1

