"""Readiness checks for the Ray cluster of a Slurm job (used by submit.sbatch).

    python slurm/wait_for_ray.py head  --address IP:PORT --timeout S --step NODE:PID:LOG
    python slurm/wait_for_ray.py nodes --address IP:PORT --timeout S --job-id ID \
        [--gpus-per-node G] [--gpus-dir DIR] [--min-nodes K] --step NODE:PID:LOG [--step ...]

Each ``--step`` names a Slurm node, the pid of the srun step that starts Ray there (one step may
start several nodes), and that node's log. ``head`` returns once the head's GCS answers an
authenticated request and lists the head's own Ray node (its raylet) ALIVE, so workers that join
next find a complete head; ``nodes`` once every named node has a live Ray node with its GPUs: the
count its own Slurm task was given, which it writes to ``DIR/gpus-<node>`` (``--gpus-dir``; Slurm
may spread ``--gpus=N`` unevenly over the nodes), else ``--gpus-per-node``. With ``--min-nodes K``
it also returns once at least K nodes are up and every other one has failed or the timeout has
passed, with a warning naming the nodes left out. Both fail fast, naming what is missing, when
the Ray start that should bring it up has ended (its srun step exited, or its task wrote
``DIR/exited-<node>``), and fail at the timeout otherwise. Exit status 0 when ready, 1 otherwise;
messages go to stderr.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"    ({path} is missing)"
    return "\n".join("    " + line for line in text)


def _fail(message: str) -> int:
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    return 1


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


ALIVE = 0  # GcsNodeInfo.GcsNodeState.ALIVE


def node_table(address: str) -> list:
    """Every node the GCS at ``address`` knows (Ray's ``GcsNodeInfo`` records: ``state``,
    ``is_head_node``, ``temp_dir``, ``resources_total``).

    The one private Ray API of the Slurm scripts, isolated here (tests/test_wait_for_ray.py runs it
    on a real head): ``ray._raylet.GcsClient`` is what ``ray status`` itself uses. The public
    ``ray.nodes()`` needs a driver connected with ``ray.init``, which blocks while the head is not up
    and registers a job on the user's cluster at every poll.
    """
    from ray._raylet import GcsClient

    return list(GcsClient(address=address).get_all_node_info(timeout=5).values())


def head_alive(address: str) -> bool:
    """Whether the head's own Ray node (its raylet) is registered ALIVE with the GCS at ``address``."""
    return any(info.state == ALIVE and info.is_head_node for info in node_table(address))


def wait_head(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    (node, pid, log), = args.step
    probe: dict[str, object] = {}

    def ask_gcs() -> None:
        # The GCS client blocks for up to ~40 s when something else listens on the port, so it
        # runs in a thread while the loop below keeps watching the head's srun step.
        from ray.exceptions import AuthenticationError

        try:
            if head_alive(args.address):
                probe["ok"] = True
            else:
                probe["error"] = "the GCS answers but the head's raylet is not registered yet"
        except AuthenticationError as e:
            probe["auth"] = e
        except Exception as e:  # still starting: the loop tries again
            probe["error"] = e

    thread = None
    while time.monotonic() < deadline:
        if not _alive(pid):
            return _fail(f"the Ray head on {node} exited before it was up at {args.address}. "
                         f"Last lines of {log}:\n{_tail(log)}")
        if probe.get("ok"):
            print(f"Ray head is up at {args.address}", flush=True)
            return 0
        if "auth" in probe:
            return _fail(f"the Ray head at {args.address} rejected this job's token: {probe['auth']}")
        if (thread is None or not thread.is_alive()) and _port_open(args.address):
            probe.pop("error", None)
            thread = threading.Thread(target=ask_gcs, daemon=True)
            thread.start()
        time.sleep(0.5)
    why = f" ({probe['error']})" if isinstance(probe.get("error"), str) else ""
    return _fail(f"the Ray head on {node} was not up at {args.address} within {args.timeout:.0f}s{why}. "
                 f"Last lines of {log}:\n{_tail(log)}")


def _joined(address: str, job_id: str) -> dict[str, float]:
    """Slurm node name -> GPUs, for each live Ray node started by this job."""
    prefix = f"hpo-ray-{job_id}-"
    joined = {}
    for info in node_table(address):
        # Ray's temp dir is <private dir>/r, the private dir hpo-ray-<job>-<node>.XXXXXX (ray-common.sh).
        name = os.path.basename(os.path.dirname(info.temp_dir.rstrip("/"))).rpartition(".")[0]
        if info.state == ALIVE and name.startswith(prefix):
            joined[name[len(prefix):]] = float(info.resources_total.get("GPU", 0))
    return joined


def expected_gpus(node: str, args: argparse.Namespace) -> float:
    """GPUs node ``node`` should join with: what its Slurm step recorded, else ``--gpus-per-node``."""
    if args.gpus_dir is not None:
        try:
            return float((args.gpus_dir / f"gpus-{node}").read_text().strip())
        except (OSError, ValueError):
            pass
    return args.gpus_per_node


def step_exited(node: str, pid: int, args: argparse.Namespace) -> bool:
    """Whether the Ray start of ``node`` has ended: its srun step is gone, or (one step runs every
    worker node) its task wrote ``DIR/exited-<node>`` (``--gpus-dir``; ray-common.sh, as it exits)."""
    return not _alive(pid) or (args.gpus_dir is not None and (args.gpus_dir / f"exited-{node}").exists())


def wait_nodes(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    joined: dict[str, float] = {}
    # --min-nodes: the job may start without nodes that failed, as long as this many (head included) are up.
    needed = min(args.min_nodes or len(args.step), len(args.step))

    def ready(node: str) -> bool:
        return node in joined and joined[node] >= expected_gpus(node, args)

    def report(nodes) -> str:
        parts = []
        for node, pid, log in nodes:
            if node not in joined:
                why = "its srun step exited" if step_exited(node, pid, args) else "it has not joined yet"
                parts.append(f"node {node} did not come up ({why}); last lines of {log}:\n{_tail(log)}")
            elif joined[node] < expected_gpus(node, args):
                parts.append(f"node {node} joined with {joined[node]:g} GPUs, "
                             f"expected {expected_gpus(node, args):g}")
        return "\n".join(parts)

    while True:
        try:
            joined = _joined(args.address, args.job_id)
        except Exception as e:  # the GCS went away: the head's step check below says why
            print(f"(could not list Ray nodes: {e})", file=sys.stderr)
        up = [s for s in args.step if ready(s[0])]
        if len(up) == len(args.step):
            gpus = sum(joined[node] for node, _, _ in args.step)
            print(f"All {len(args.step)} Ray nodes joined ({', '.join(n for n, _, _ in args.step)}; "
                  f"{gpus:g} GPUs)", flush=True)
            return 0
        dead = [s for s in args.step if not ready(s[0]) and step_exited(s[0], s[1], args)]
        waiting = len(args.step) - len(up) - len(dead)
        if (dead and len(up) + waiting < needed) or (time.monotonic() > deadline and len(up) < needed):
            what = "exited before the cluster was complete" if dead else f"did not all join within {args.timeout:.0f}s"
            return _fail(f"Ray node(s) of job {args.job_id} {what} ({len(up)} of {len(args.step)} up, "
                         f"--min-nodes {needed}).\n{report(args.step)}")
        if len(up) >= needed and (waiting == 0 or time.monotonic() > deadline):
            gpus = sum(joined[node] for node, _, _ in up)
            print(f"WARNING: starting with {len(up)} of {len(args.step)} Ray nodes ({gpus:g} GPUs; --min-nodes "
                  f"{needed}); left out:\n{report(args.step)}", file=sys.stderr, flush=True)
            return 0
        time.sleep(1)


def _step(text: str) -> tuple[str, int, Path]:
    node, pid, log = text.split(":", 2)
    return node, int(pid), Path(log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("head", "nodes"):
        p = sub.add_parser(name)
        p.add_argument("--address", required=True, help="the head's GCS address, IP:PORT")
        p.add_argument("--timeout", type=float, required=True, help="seconds to wait at most")
        p.add_argument("--step", type=_step, action="append", required=True,
                       help="NODE:PID:LOG of an srun step that starts Ray on NODE (repeatable)")
    nodes = sub.choices["nodes"]
    nodes.add_argument("--job-id", required=True)
    nodes.add_argument("--gpus-per-node", type=float, default=0)
    nodes.add_argument("--gpus-dir", type=Path, default=None,
                       help="folder where each node's step wrote gpus-<node> (its own GPU count) and, "
                            "when its Ray start ended, exited-<node>")
    nodes.add_argument("--min-nodes", type=int, default=0,
                       help="go on once this many nodes (head included) are up and the rest failed or "
                            "timed out (default: every node)")
    args = parser.parse_args(argv)
    if args.what == "head" and len(args.step) != 1:
        parser.error("head takes exactly one --step")
    return wait_head(args) if args.what == "head" else wait_nodes(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for a GCS probe thread that may still be blocked
