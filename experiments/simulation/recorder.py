"""Record a pool of full-length curves, resumably: one random-search experiment per curve, each with its own seed.

Each curve is one ``run_random.py`` experiment of a single trial, ``--seed S`` for curve S: the
seed draws the trial's configuration (Ray's random generator over the space, seeded) and its
model initialisation and data shuffle (the trainable's ``seed``). One experiment per curve is the
only way the run scripts give every trial its own seed (within one experiment every trial shares
``--seed``, so every trial sees the same shuffle of the same data and whole epochs are good or
bad together, see docs/performance.md). It costs a Ray start per curve, which the pool's
``first_start_s`` then measures; no actor is reused, so the pool's ``switch_s`` is 0 (the
shipped 200-curve pool measured 0.02 s).

Resumable: a curve whose experiment folder holds a finished full-length trial is kept; any other
folder of a planned seed (a run killed mid-way) is removed and its seed run again. Each finished
curve appends a line to ``recording.jsonl`` in the storage folder: seed, command, git commit
(and whether the working tree differed from it), the built-in data's generator version, machine,
start and end (UTC) and the load average. :func:`finalize` turns a complete recording into a pool
file (``save_pool``) with that metadata; it refuses a recording short of its planned curves.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments.simulation.errors import SimulationError

LOG_NAME = "recording.jsonl"
REPO = Path(__file__).resolve().parents[2]


def curve_name(seed: int) -> str:
    return f"curve_s{seed:05d}"


def curve_command(seed: int, *, space: str, max_epochs: int, storage: Path, extra: list[str]) -> list[str]:
    """The ``run_random.py`` command line recording the curve of ``seed``."""
    return [sys.executable, "experiments/run_random.py", "--space", space, "--num-samples", "1",
            "--max-epochs", str(max_epochs), "--seed", str(seed), "--storage-path", str(storage),
            "--name", curve_name(seed), *extra]


def curve_done(folder: Path, max_epochs: int) -> bool:
    """True when ``folder`` holds a finished experiment whose one trial ran ``max_epochs`` (or ended itself)."""
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    try:
        trials = json.loads(summary.read_text()).get("trials") or []
    except (OSError, ValueError):
        return False
    return len(trials) == 1 and not trials[0].get("errored") and (
        (trials[0].get("iteration") or 0) >= max_epochs or bool(trials[0].get("diverged")))


def machine() -> dict[str, Any]:
    """What the curve's seconds depend on: host, CPU model and count, OS, Python."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": socket.gethostname(), "cpu": cpu, "cpus": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version()}


def git_state() -> dict[str, Any]:
    """The commit the curve was recorded at and whether the code it ran differed from it."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "experiments", "trainables", "search_spaces", "configs")
    return {"git_commit": git("rev-parse", "--short=12", "HEAD") or "unknown", "git_dirty": bool(dirty)}


def generator_version() -> int | None:
    """The built-in CGCNN data's generator version (the data the curves were trained on)."""
    try:
        from trainables.data.adsorption import GENERATOR_VERSION
    except ImportError:
        return None
    return int(GENERATOR_VERSION)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def recorded_seeds(storage: Path) -> dict[int, dict[str, Any]]:
    """The curves ``recording.jsonl`` lists, by seed."""
    log = storage / LOG_NAME
    if not log.is_file():
        return {}
    out = {}
    for line in log.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out[int(entry["seed"])] = entry
    return out


def record(*, space: str, curves: int, first_seed: int, max_epochs: int, storage: Path, jobs: int,
           stop_at: _dt.datetime | None, extra: list[str], command: str, poll_s: float = 2.0) -> int:
    """Record the curves of seeds ``first_seed .. first_seed + curves - 1`` not yet recorded; return how many exist.

    ``jobs`` experiments run at once (each its own Ray), looked at every ``poll_s`` seconds. No new
    curve starts after ``stop_at``; running ones finish. Each experiment's output: ``<storage>/logs/<curve>.log``.
    """
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "logs").mkdir(exist_ok=True)
    done = recorded_seeds(storage)
    todo = [s for s in range(first_seed, first_seed + curves)
            if not (s in done and curve_done(storage / curve_name(s), max_epochs))]
    static = {"space": space, "max_epochs": max_epochs, "recorder_command": command, "machine": machine(),
              "generator_version": generator_version()}
    running: dict[int, tuple[subprocess.Popen, dict[str, Any], Any]] = {}
    failures = 0
    try:
        while todo or running:
            while todo and len(running) < jobs and (stop_at is None or _dt.datetime.now(_dt.timezone.utc) < stop_at):
                seed = todo.pop(0)
                folder = storage / curve_name(seed)
                if folder.exists():  # a run killed mid-way: start the curve again
                    shutil.rmtree(folder)
                cmd = curve_command(seed, space=space, max_epochs=max_epochs, storage=storage, extra=extra)
                entry = {"seed": seed, "name": curve_name(seed),
                         "command": " ".join(shlex.quote(c) for c in ["python", *cmd[1:]]),
                         **git_state(), "started_utc": _now(), "load_start": os.getloadavg()[0]}
                log = (storage / "logs" / f"{curve_name(seed)}.log").open("w")
                running[seed] = (subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), entry, log)
            if not running:
                break  # stop_at passed with nothing in flight
            time.sleep(poll_s)
            for seed, (proc, entry, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[seed]
                if proc.returncode == 0 and curve_done(storage / curve_name(seed), max_epochs):
                    entry.update(static, ended_utc=_now(), load_end=os.getloadavg()[0])
                    with (storage / LOG_NAME).open("a") as f:
                        f.write(json.dumps(entry) + "\n")
                    done[seed] = entry
                    print(f"[{_now()}] curve {len(done)}/{curves}: seed {seed} recorded", flush=True)
                else:
                    failures += 1
                    print(f"[{_now()}] seed {seed} failed (exit {proc.returncode}); see "
                          f"{storage / 'logs' / (curve_name(seed) + '.log')}", flush=True)
                    if failures > max(3, curves // 20):
                        raise SimulationError(f"{failures} curves failed to record; see {storage / 'logs'}")
    finally:
        for proc, _, log in running.values():  # interrupted: end our own children, their folders are redone
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    return sum(1 for s in range(first_seed, first_seed + curves) if s in done)


def finalize(*, storage: Path, curves: int, first_seed: int, max_epochs: int, out: Path, command: str) -> Path:
    """Save the recorded curves as a pool file, with the recording's metadata; refuse an incomplete recording."""
    from experiments.simulation.pool import read_pool, save_pool

    done = recorded_seeds(storage)
    seeds = [s for s in range(first_seed, first_seed + curves) if s in done]
    if len(seeds) < curves:
        raise SimulationError(f"only {len(seeds)} of {curves} curves are recorded in {storage}; "
                              "run the recorder again to continue (it resumes)")
    pool = read_pool([str(storage / curve_name(s)) for s in seeds])
    entries = [done[s] for s in seeds]
    commits = sorted({e["git_commit"] + ("+dirty" if e["git_dirty"] else "") for e in entries})
    metadata = {
        "recorder_command": entries[0]["recorder_command"], "finalize_command": command,
        "curve_command": entries[0]["command"].replace(f"--seed {seeds[0]}", "--seed S").replace(
            curve_name(seeds[0]), "curve_sSSSSS"),
        "seeds": f"{seeds[0]}..{seeds[-1]} (one per curve)", "git_commit": ", ".join(commits),
        "generator_version": sorted({e.get("generator_version") for e in entries}, key=str),
        "machine": entries[0]["machine"],
        "recorded_utc": f"{min(e['started_utc'] for e in entries)} to {max(e['ended_utc'] for e in entries)}",
        "load_average": [min(e["load_start"] for e in entries), max(e["load_end"] for e in entries)],
    }
    return save_pool(pool, out, metadata)
