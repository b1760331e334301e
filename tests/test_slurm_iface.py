"""slurm/ray-common.sh's head address and ``ray start`` arguments, by running its bash functions directly.

``HPO_RAY_IFACE`` picks the head's IPv4 address by interface name (``lo`` here; ``ib0`` on a cluster); a
missing interface, one without IPv4 and a wrong ``HPO_RAY_HEAD_IP`` are each one clear line. The extra
``ray start`` arguments are split on blanks, never glob-expanded.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bash(script: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``script`` after sourcing ray-common.sh, under ``set -euo pipefail`` as the Slurm scripts run."""
    full = {**os.environ, "HPO_REPO": str(REPO), "HPO_VENV": str(Path(sys.executable).parents[1]), **env}
    for name in ("HPO_RAY_IFACE", "HPO_RAY_HEAD_IP"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "$HPO_REPO/slurm/ray-common.sh"; {script}'],
                          env=full, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_iface_lo_gives_its_ipv4_address():
    proc = bash('hpo_find_python; hpo_choose_head_ip; echo "ip=$HPO_RAY_HEAD_IP"', HPO_RAY_IFACE="lo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ip=127.0.0.1"


def test_missing_iface_is_one_line_and_stops_the_script():
    proc = bash('hpo_find_python; hpo_choose_head_ip; echo "went on"', HPO_RAY_IFACE="nosuch9")
    assert proc.returncode == 1 and "went on" not in proc.stdout
    assert proc.stderr.count("\n") == 1 and "HPO_RAY_IFACE=nosuch9: no such network interface" in proc.stderr
    assert "lo" in proc.stderr  # names the interfaces there are


def test_iface_without_ipv4_is_one_line():
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(": ")[1].split("@")[0] for line in links.splitlines()]
    bare = [n for n in names if not subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", n],
                                                   capture_output=True, text=True).stdout.strip()]
    if not bare:
        pytest.skip("every interface of this machine has an IPv4 address")
    proc = bash("hpo_find_python; hpo_choose_head_ip", HPO_RAY_IFACE=bare[0])
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and f"HPO_RAY_IFACE={bare[0]} has no IPv4 address" in proc.stderr


def test_wrong_head_ip_is_reported_as_such_not_as_a_port_in_use():
    proc = bash("hpo_find_python; hpo_choose_head_ip", HPO_RAY_HEAD_IP="192.0.2.77")  # TEST-NET-1, nobody's
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "HPO_RAY_HEAD_IP=192.0.2.77 is not an IPv4 address of this node" in proc.stderr
    assert "in use" not in proc.stderr and "127.0.0.1 (lo)" in proc.stderr


def test_given_head_ip_of_this_node_is_kept():
    proc = bash('hpo_find_python; hpo_choose_head_ip; echo "ip=$HPO_RAY_HEAD_IP"', HPO_RAY_HEAD_IP="127.0.0.1",
                HPO_RAY_IFACE="nosuch9")  # an explicit address wins over the interface
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ip=127.0.0.1"


def test_extra_start_args_are_split_on_blanks_and_never_glob_expanded(tmp_path):
    (tmp_path / "--object-store-memory=GLOBBED").touch()  # what an unquoted * would expand to here
    script = ('hpo_find_python; HPO_RAY=(printf "<%s>\\n"); '
              'hpo_stop_ray_node() { rm -rf "$HPO_RAY_NODE_PRIVATE"; exit 0; }; '  # only the private dir to clean
              'hpo_run_ray_node worker --address=x')
    proc = bash(script, cwd=tmp_path, SLURM_JOB_ID="1", HPO_RAY_TMPDIR="/tmp",
                HPO_RAY_START_ARGS="--object-store-memory=*  --foo=a", HPO_RAY_WORKER_START_ARGS="--bar")
    assert proc.returncode == 0, proc.stderr
    args = [line for line in proc.stdout.splitlines() if line.startswith("<")]
    assert args[:5] == ["<start>", "<--address=x>", "<--object-store-memory=*>", "<--foo=a>", "<--bar>"]


# --- the same on the real Slurm fixture (tests/slurm_cluster.py): submit.sbatch's batch node picks the head IP.
sys.path.insert(0, str(Path(__file__).parent))
from test_slurm import STAND_IN_DRIVER, Job, _missing, cache_dir, slurm  # noqa: E402, F401 - fixtures

needs_slurm = pytest.mark.skipif(bool(_missing) or os.geteuid() != 0,
                                 reason="needs the throw-away Slurm cluster (slurm/install-test-slurm.sh, root)")


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_slurm_job_with_a_missing_iface_fails_at_once_with_one_line(slurm, tmp_path, cache_dir):  # noqa: F811
    job = Job(slurm, tmp_path, ["experiments/run_asha.py", "--smoke-test"], cache_dir, HPO_RAY_IFACE="nosuch9")
    info = job.wait(60)
    assert info["JobState"] == "FAILED", f"{info}\n{job.report()}"
    lines = [line for line in job.out.read_text().splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "HPO_RAY_IFACE=nosuch9: no such network interface" in lines[0], job.report()


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_slurm_job_with_iface_lo_runs_its_ray_cluster_on_that_address(slurm, tmp_path, cache_dir):  # noqa: F811
    driver = tmp_path / "stand_in_driver.py"
    driver.write_text(STAND_IN_DRIVER)
    job = Job(slurm, tmp_path, [str(driver)], cache_dir, HPO_RAY_IFACE="lo")
    info = job.wait(240)
    assert info["JobState"] == "COMPLETED", f"{info}\n{job.report()}"
    assert (job.dir / "ray-address").read_text().startswith("127.0.0.1:")
    log = (job.dir / "driver.log").read_text()
    assert len(re.search(r"NODE IDS \[(.*)\]", log).group(1).split(",")) == 2, log  # the worker joined at lo


def _held(count: int) -> list:
    """``count`` listening sockets on 127.0.0.1 at consecutive free ports (the caller closes them)."""
    import socket

    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        start = probe.getsockname()[1]
        probe.close()
        try:
            return _held_at(start, count)
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


def _ports_env(base: int, slots: int = 1) -> dict:
    # Blocks of 60 ports: GCS at +0, client +1, dashboard +2, agents +3 (head) and +4 (workers),
    # head worker ports +10..+34, worker-node worker ports +35..+59.
    return {"SLURM_JOB_ID": "0", "HPO_RAY_PORT_BASE": str(base), "HPO_RAY_PORT_BLOCK": "60",
            "HPO_RAY_PORT_SLOTS": str(slots)}


def test_a_held_fixed_port_is_named_and_the_job_moves_to_the_next_free_block():
    held = _held(4)
    first = held[0].getsockname()[1]
    try:
        proc = bash("hpo_find_python; hpo_ports; hpo_check_ports head 127.0.0.1; echo went on", **_ports_env(first))
        assert proc.returncode == 1 and "went on" not in proc.stdout
        assert proc.stderr.count("\n") == 1
        assert f"head: port {first} on 127.0.0.1" in proc.stderr and "already in use" in proc.stderr
        # Another job holds this job's block: the head takes the next free one, and says so.
        proc = bash('hpo_find_python; hpo_pick_ports head 127.0.0.1; echo "slot=$HPO_RAY_PORT_SLOT gcs=$HPO_GCS_PORT"',
                    **_ports_env(first, slots=3))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith(f"slot=1 gcs={first + 60}")
        assert f"head: port block 0 is taken on this node (head: port {first} on 127.0.0.1" in proc.stdout
        # With a single block there is nowhere to go: one line naming the port.
        proc = bash("hpo_find_python; hpo_pick_ports head 127.0.0.1", **_ports_env(first))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1
        assert f"port {first} on 127.0.0.1" in proc.stderr and "All 1 port blocks" in proc.stderr
    finally:
        for s in held:
            s.close()


def test_a_few_held_worker_ports_are_skipped_and_most_of_them_held_is_refused():
    held = _held(13)
    first = held[0].getsockname()[1]
    base = first - 35  # the worker nodes' worker ports start at the first held port
    try:
        for s in held[3:]:
            s.close()
        for ip in ("127.0.0.1", ""):  # "" checks every address of the node
            proc = bash("hpo_find_python; hpo_ports; hpo_check_ports worker '" + ip + "'; echo went on",
                        **_ports_env(base))
            assert proc.returncode == 0 and "went on" in proc.stdout, proc.stderr
            assert f"worker ports in use on {ip or 'every address'}" in proc.stdout
            assert f"Ray skips them: {first} {first + 1} {first + 2}" in proc.stdout
        held = held[:3] + _held_at(first + 3, 10)
        proc = bash("hpo_find_python; hpo_ports; hpo_check_ports worker 127.0.0.1", **_ports_env(base))
        assert proc.returncode == 1 and f"13 of the worker ports {first}-{first + 24}" in proc.stderr
    finally:
        for s in held:
            s.close()


def _held_at(start: int, count: int) -> list:
    """Listening sockets on 127.0.0.1 at ports start..start+count-1 (OSError, none left open, if one is taken)."""
    import socket

    held = []
    try:
        for port in range(start, start + count):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", port))
            s.listen()
    except OSError:
        for s in held:
            s.close()
        raise
    return held
