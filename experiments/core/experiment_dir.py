"""The experiment folder: its default name, its creation before any data is built, its lock.

One experiment, one folder (``<storage path>/<name>``), one driver at a time:

- The default name is unique per run: ``<model>_<strategy>_<search>_<tag>``, where the tag is
  ``$HPO_EXPERIMENT_TAG`` (slurm/submit.sbatch sets it to ``job<id>`` or ``job<array id>_<task>``,
  so a requeued job finds its own folder again) or a timestamp plus the process id.
- The folder is created, and a file written in it, before the dataset is built: a storage path
  that cannot hold it fails in a second with one line, whatever ``os.access`` would say (root
  passes every ``os.access`` check, even for ``/proc``).
- A name that already holds an experiment (saved Tune state or a summary) is refused unless
  resumed; a folder with only ``experiment.yaml`` is a start that never got going and is reused.
- While a driver uses the folder it holds an exclusive ``fcntl`` lock on ``<folder>/.lock``;
  a second driver on the same folder is refused with the first one's host and pid. The kernel
  drops the lock when the process dies, so a killed or requeued job never leaves a stale lock.
  A file system without locks (Lustre mounted ``noflock``, some NFS setups) is named as such,
  with the ways on: another ``--storage-path``, a mount with locks, or ``HPO_EXPERIMENT_LOCK=off``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from experiments.core.config import ConfigError, ExperimentConfig

LOCK_FILE = ".lock"
# lockf errors that mean "someone holds the lock"; any other error means the file system cannot lock.
_HELD = (errno.EAGAIN, errno.EACCES)


def default_name(config: ExperimentConfig) -> str:
    """The experiment name when ``--name`` is not given (unique per job, array task or process)."""
    tag = os.environ.get("HPO_EXPERIMENT_TAG") or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return f"{config.model}_{config.strategy}_{config.search}_{tag}"


def has_saved_state(exp_dir: Path) -> bool:
    """Whether Tune saved an experiment state in ``exp_dir`` (what ``Tuner.restore`` needs)."""
    return any(exp_dir.glob("experiment_state-*.json"))


def _holds_experiment(exp_dir: Path) -> bool:
    return has_saved_state(exp_dir) or (exp_dir / "summary.json").exists()


class ExperimentLock:
    """An exclusive lock on an experiment folder for the life of this driver (released at exit)."""

    def __init__(self, exp_dir: Path):
        self.path = exp_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.environ.get("HPO_EXPERIMENT_LOCK", "").lower() == "off":  # the user's call, on a lockless file system
            self._fd = fd
            return self
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno not in _HELD:
                raise ConfigError(
                    f"cannot lock {self.path}: the file system of {self.path.parent} does not support file locks "
                    f"({err.strerror or err}; e.g. Lustre mounted noflock); use a --storage-path on a file system "
                    "with locks, ask for it to be mounted with flock, or set HPO_EXPERIMENT_LOCK=off if you make "
                    "sure yourself that one driver at a time uses the experiment") from None
            raise ConfigError(f"experiment folder {self.path.parent} is in use by {holder}; wait for it to end "
                              "or choose another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def open_experiment_dir(storage_path: str, name: str, resume: bool) -> tuple[Path, ExperimentLock]:
    """Create (or, to resume, find) the experiment folder, prove it writable and lock it.

    Every failure is a one-line :class:`ConfigError`: a storage path that is not a writable
    folder, an existing experiment of that name when not resuming, no experiment to resume,
    or a folder another driver is using.
    """
    storage = Path(storage_path).expanduser().absolute()
    exp_dir = storage / name
    if resume:
        if not exp_dir.is_dir():
            raise ConfigError(f"no experiment to resume at {exp_dir}")
    elif _holds_experiment(exp_dir):
        raise ConfigError(f"experiment '{name}' already exists in {storage}; resume it with --resume "
                          "or choose another --name")
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        lock = ExperimentLock(exp_dir).acquire()  # writes the lock file: the folder is writable
    except ConfigError:
        raise
    except OSError as err:
        raise ConfigError(f"storage path {storage_path} cannot hold the experiment folder {exp_dir}: "
                          f"{err.strerror or err}") from None
    if os.environ.get("HPO_JOB_DIR"):  # slurm/submit.sbatch: where to write a summary if the driver dies
        try:
            (Path(os.environ["HPO_JOB_DIR"]) / "experiment-dir").write_text(f"{exp_dir}\n")
        except OSError:
            pass  # only the post-mortem summary needs it
    return exp_dir, lock


def discard_unstarted(exp_dir: Path) -> None:
    """Remove a folder this run created if the experiment never started (an input error before Tune ran).

    Only ``experiment.yaml`` and the lock are removed, and the folder only when that empties it; a
    folder with saved Tune state or a summary is never touched.
    """
    if _holds_experiment(exp_dir):
        return
    for name in ("experiment.yaml", LOCK_FILE):
        (exp_dir / name).unlink(missing_ok=True)
    try:
        exp_dir.rmdir()
    except OSError:  # something else is in it: keep it
        pass
