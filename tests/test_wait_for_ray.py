"""slurm/wait_for_ray.py against a real Ray head started with `ray start --head --block`, as the Slurm
scripts start it (its temp dir named like ray-common.sh's private dirs), never with `ray stop`."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "slurm"))
import wait_for_ray  # noqa: E402

JOB = "4242"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A real Ray head on 127.0.0.1; yields (address, pid of `ray start`, its log)."""
    private = Path(tempfile.mkdtemp(prefix=f"hpo-ray-{JOB}-nodeA.", dir="/tmp"))  # short: Ray's socket paths
    log = private / "head.log"
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1",
             f"--port={port}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={private / 'r'}",
             "--disable-usage-stats", "--block"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield f"127.0.0.1:{port}", proc.pid, log
    finally:
        family = [proc, *psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=30)
        shutil.rmtree(private, ignore_errors=True)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, str(REPO / "slurm" / "wait_for_ray.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_head_readiness_waits_for_the_heads_raylet_and_nodes_finds_the_jobs_node(head):
    address, pid, log = head
    started = time.monotonic()
    proc = run("head", "--address", address, "--timeout", "90", "--step", f"nodeA:{pid}:{log}")
    assert proc.returncode == 0, proc.stderr + log.read_text()
    assert f"Ray head is up at {address}" in proc.stdout
    # Ready means the head's own node is registered ALIVE, through the one isolated private call.
    assert wait_for_ray.head_alive(address)
    [info] = [i for i in wait_for_ray.node_table(address) if i.state == wait_for_ray.ALIVE]
    assert info.is_head_node and Path(info.temp_dir).parent.name.startswith(f"hpo-ray-{JOB}-nodeA.")
    assert time.monotonic() - started < 90

    proc = run("nodes", "--address", address, "--timeout", "30", "--job-id", JOB, "--step", f"nodeA:{pid}:{log}")
    assert proc.returncode == 0, proc.stderr
    assert "All 1 Ray nodes joined (nodeA; 0 GPUs)" in proc.stdout
    # A GPU count the node does not have is reported by name at the timeout.
    proc = run("nodes", "--address", address, "--timeout", "2", "--job-id", JOB, "--gpus-per-node", "1",
               "--step", f"nodeA:{pid}:{log}")
    assert proc.returncode == 1 and "node nodeA joined with 0 GPUs, expected 1" in proc.stderr
    # Each node is held to the GPU count its own Slurm step recorded (uneven --gpus spreads), which
    # wins over the batch node's --gpus-per-node either way.
    gpus = log.parent / "gpus"
    gpus.mkdir(exist_ok=True)
    (gpus / "gpus-nodeA").write_text("0\n")
    proc = run("nodes", "--address", address, "--timeout", "10", "--job-id", JOB, "--gpus-per-node", "4",
               "--gpus-dir", str(gpus), "--step", f"nodeA:{pid}:{log}")
    assert proc.returncode == 0, proc.stderr
    (gpus / "gpus-nodeA").write_text("2\n")
    proc = run("nodes", "--address", address, "--timeout", "2", "--job-id", JOB, "--gpus-dir", str(gpus),
               "--step", f"nodeA:{pid}:{log}")
    assert proc.returncode == 1 and "node nodeA joined with 0 GPUs, expected 2" in proc.stderr

    # One srun step starts every worker: a worker whose Ray start ended says so in exited-<node>
    # (its step's pid lives on). Fails fast by default; with --min-nodes the job goes on without it.
    (gpus / "gpus-nodeA").write_text("0\n")
    (gpus / "exited-nodeB").write_text("1\n")
    workers = subprocess.Popen(["sleep", "60"])  # the shared worker step, still running
    try:
        both = ["--step", f"nodeA:{pid}:{log}", "--step", f"nodeB:{workers.pid}:{log}"]
        proc = run("nodes", "--address", address, "--timeout", "30", "--job-id", JOB, "--gpus-dir", str(gpus), *both)
        assert proc.returncode == 1 and "exited before the cluster was complete" in proc.stderr
        assert "node nodeB did not come up (its srun step exited)" in proc.stderr
        proc = run("nodes", "--address", address, "--timeout", "30", "--job-id", JOB, "--gpus-dir", str(gpus),
                   "--min-nodes", "1", *both)
        assert proc.returncode == 0 and "starting with 1 of 2 Ray nodes" in proc.stderr, proc.stderr
        (gpus / "exited-nodeB").unlink()  # nodeB still starting: the minimum is enough at the timeout
        proc = run("nodes", "--address", address, "--timeout", "2", "--job-id", JOB, "--gpus-dir", str(gpus),
                   "--min-nodes", "1", *both)
        assert proc.returncode == 0 and "node nodeB did not come up (it has not joined yet)" in proc.stderr
        proc = run("nodes", "--address", address, "--timeout", "2", "--job-id", JOB, "--gpus-dir", str(gpus),
                   "--min-nodes", "2", *both)
        assert proc.returncode == 1 and "did not all join within 2s" in proc.stderr
    finally:
        workers.kill()


def test_a_head_whose_step_exited_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "head.log"
    log.write_text("ray start: something went wrong\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    started = time.monotonic()
    proc = run("head", "--address", f"127.0.0.1:{_free_port()}", "--timeout", "60", "--step",
               f"nodeA:{dead.pid}:{log}")
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert "the Ray head on nodeA exited before it was up" in proc.stderr
    assert "ray start: something went wrong" in proc.stderr
