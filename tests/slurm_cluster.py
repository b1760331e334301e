"""A real, throw-away Slurm cluster on this one machine, for the Slurm tests.

It runs munged, slurmctld and two slurmd daemons (``slurmd -N <name>``) that pose as two
nodes, all with their configuration, state, sockets and logs in one temporary directory:
nothing under /etc or /var is touched, and the system's own munge/slurm services (if any)
are left alone. Runs as root, without cgroups (``proctrack/linuxproc``, ``task/none``).

The packages come from Debian (``slurm/install-test-slurm.sh``). Usable from pytest (see
``tests/test_slurm.py``) or by hand for debugging::

    python tests/slurm_cluster.py /tmp/myslurm     # starts it, prints SLURM_CONF, waits for Ctrl-C
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "srun", "scancel")
NODE_NAMES = ("hpo-n1", "hpo-n2")


def missing_slurm_binaries() -> list[str]:
    """Names of the Slurm/munge programs this machine lacks (empty when all are there)."""
    found = {name: shutil.which(name) or _sbin(name) for name in DAEMONS}
    return [name for name, path in found.items() if not path]


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


def _exe(name: str) -> str:
    path = shutil.which(name) or _sbin(name)
    if not path:
        raise FileNotFoundError(name)
    return path


def processes(match: Callable[[list[bytes], str], bool]) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes other than this one for which ``match(environment entries,
    command line)`` holds (zombies left out)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and match(environ, cmdline):
            found.append((int(proc.name), cmdline))
    return found


def _free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (all held open together, so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """munged + slurmctld + one slurmd per node name, configured under ``root``."""

    def __init__(self, root: Path, nodes: tuple[str, ...] = NODE_NAMES, cpus_per_node: int = 1):
        self.root = Path(root)
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.partition = "hpotest"
        self._procs: list[tuple[str, subprocess.Popen]] = []

    # -- environment for clients (sbatch, scontrol, ...) --------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        # The munge client library honours no env var for its socket; Slurm's auth plugin
        # reads AuthInfo=socket=... from slurm.conf, which is all the Slurm commands need.
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm command against this cluster (``kwargs`` go to subprocess.run)."""
        return subprocess.run(
            [_exe(args[0]), *args[1:]], env=self.env, check=check, timeout=timeout,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs,
        )

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 60) -> SlurmCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._start_munge()
        self._write_conf()
        self._spawn("slurmctld", [_exe("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0,
                   timeout, "slurmctld did not answer 'scontrol ping'")
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", [_exe("slurmd"), "-D", "-N", node, "-f", str(self.conf)])
        self._wait(self._nodes_idle, timeout, "the slurmd nodes did not become idle")
        return self

    def stop(self) -> None:
        """Cancel all jobs, then stop the daemons (TERM, then KILL), newest first."""
        if self._procs and any(p.poll() is None for _, p in self._procs):
            self.run("scancel", "--full", "--partition", self.partition, check=False)
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()
        killed = self._kill_job_leftovers()
        if killed:  # a job's `ray start` daemons leave their step's process group: scancel misses them
            print(f"slurm test cluster: killed what its jobs left running: {killed}", file=sys.stderr)

    def _kill_job_leftovers(self) -> list[str]:
        """SIGKILL every process a job of this cluster started that is still running (found by the
        SLURM_CONF and SLURM_JOB_ID in its environment); returns their pids and command lines."""
        conf = f"SLURM_CONF={self.conf}".encode()
        killed = []
        for pid, cmdline in processes(lambda environ, _: conf in environ
                                      and any(var.startswith(b"SLURM_JOB_ID=") for var in environ)):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{pid}: {cmdline[:120]}")
            except OSError:
                pass
        return killed

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self) -> str:
        """The tails of the daemon logs, for assertion messages."""
        out = []
        for log in sorted(self.root.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(out)

    # -- internals ----------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.stderr.log", "w")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self._procs.append((name, proc))
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({proc.returncode}):\n{self.logs()}")

    def _start_munge(self) -> None:
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o700, exist_ok=True)
        key = mdir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._spawn("munged", [
            _exe("munged"), "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={mdir / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={mdir / 'munged.seed'}",
        ])
        self._wait(self.munge_socket.exists, 15, "munged did not create its socket")

    def _write_conf(self) -> None:
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        host = socket.gethostname().split(".")[0]
        (self.root / "state").mkdir(exist_ok=True)
        (self.root / "spool").mkdir(exist_ok=True)
        r = self.root
        lines = [
            "ClusterName=hpotest",
            # Job ids differ from run to run, so nothing of an earlier (crashed) run can be
            # mistaken for this run's jobs.
            f"FirstJobId={random.randint(1000, 9_000_000)}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "KillWait=30",  # Slurm's default: the time a job has to stop after scancel
            "MinJobAge=600",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"PlugStackConfig={r / 'plugstack.conf'}",
        ]
        for node, port in zip(self.nodes, node_ports, strict=True):
            lines.append(f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} Port={port} "
                         f"CPUs={self.cpus_per_node} RealMemory=2000 State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes={','.join(self.nodes)} Default=YES "
                     "MaxTime=INFINITE State=UP")
        (r / "plugstack.conf").write_text("")
        self.conf.write_text("\n".join(lines) + "\n")

    def _nodes_idle(self) -> bool:
        res = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False)
        states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
        return all(states.get(n, "").startswith("idle") for n in self.nodes)

    def _wait(self, cond, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} died ({proc.returncode}):\n{self.logs()}")
            if cond():
                return
            time.sleep(0.3)
        raise TimeoutError(f"{message} within {timeout:.0f}s:\n{self.logs()}")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hpo-slurm")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    cluster = SlurmCluster(root).start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
