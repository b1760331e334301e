"""Record a pool of full-length curves for ``experiments/simulate.py``, resumably, one seed per curve.

``python -m experiments.benchmarks.record_pool --space cgcnn_six --curves 400 --storage-path results/pool_six``
runs one single-trial ``run_random.py`` experiment per seed (``--first-seed`` .. + ``--curves`` - 1),
``--jobs`` at once; run it again with the same arguments to continue where it stopped (a curve cut
mid-way is recorded again). ``--stop-at HH:MM`` (UTC) starts no new curve after that time. Once
every curve is recorded, ``--save FILE.json.gz`` writes the pool with the recording's command,
commit, machine and times (see experiments/simulation/recorder.py). Arguments after ``--`` go to
every ``run_random.py`` (e.g. ``-- --smoke-test``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from experiments.core.errors import print_error
    from experiments.simulation.errors import SimulationError
    from experiments.simulation.recorder import finalize, record

    argv = sys.argv[1:] if argv is None else list(argv)
    # Started in the background (nohup ... &) a process inherits SIGINT ignored, and SIGTERM would end
    # it without ending its runs: both stop it through KeyboardInterrupt, which ends the runs it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(prog="record_pool.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", default="cgcnn_six", help="search space of the curves")
    p.add_argument("--curves", type=int, default=400, help="curves to record (seeds first-seed ..)")
    p.add_argument("--first-seed", type=int, default=1000, help="seed of the first curve")
    p.add_argument("--max-epochs", type=int, default=20, help="epochs of every curve (the pool's length)")
    p.add_argument("--storage-path", default="results/pool_six", help="folder of the curves' experiments")
    p.add_argument("--jobs", type=int, default=2, help="experiments at once (each a one-CPU trial)")
    p.add_argument("--stop-at", help="HH:MM UTC: start no new curve after it (running ones finish)")
    p.add_argument("--save", metavar="FILE", help="once all curves are recorded: write the pool (.json.gz)")
    args = p.parse_args(argv)
    command = "python -m experiments.benchmarks.record_pool " + " ".join(
        shlex.quote(a) for a in (argv + (["--", *extra] if extra else [])))
    try:
        if args.curves < 1 or args.jobs < 1:
            raise SimulationError("--curves and --jobs must be positive integers")
        stop_at = None
        if args.stop_at:
            try:
                hour, minute = (int(x) for x in args.stop_at.split(":"))
                stop_at = _dt.datetime.now(_dt.timezone.utc).replace(hour=hour, minute=minute, second=0,
                                                                      microsecond=0)
            except ValueError:
                raise SimulationError(f"--stop-at takes HH:MM (UTC), got '{args.stop_at}'") from None
        storage = Path(args.storage_path).resolve()
        if args.save:
            path = finalize(storage=storage, curves=args.curves, first_seed=args.first_seed,
                            max_epochs=args.max_epochs, out=Path(args.save), command=command)
            print(f"saved the pool of {args.curves} curves to {path} ({path.stat().st_size / 1024:.0f} KiB)")
            return 0
        n = record(space=args.space, curves=args.curves, first_seed=args.first_seed, max_epochs=args.max_epochs,
                   storage=storage, jobs=args.jobs, stop_at=stop_at, extra=extra, command=command)
    except SimulationError as err:
        return print_error(err)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {command}", file=sys.stderr)
        return 130
    print(f"{n} of {args.curves} curves recorded in {storage}"
          + ("" if n >= args.curves else f"; continue with: {command}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
