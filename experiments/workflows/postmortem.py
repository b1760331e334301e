"""summary.json from an experiment's saved state, for a driver that could not write it itself.

``scancel`` and preemption send SIGTERM to every process of a Slurm job at once: the driver starts
its graceful stop, but Ray's processes on its node stop too, and Ray's core worker ends the driver
process as soon as its local object store is gone ("The connection to the plasma store is failed.
Terminate the process."), often before the summary is written. Tune's own state (saved every few
seconds, each trial's results on disk) survives, so slurm/submit.sbatch then runs

    python -m experiments.workflows.postmortem <strategy> <experiment folder>

which writes summary.json and summary.md from that state without Ray. ``two_stage`` (run_two_stage.py)
names the stage folder it was in (``stage1_asha`` or ``stage2_pbt``); its resume command is the
two-stage run's. An existing summary newer
than the saved state (the driver wrote it) is left alone; so is a folder without saved state.
Exit status 0 when a summary is in place, 2 (one ``error:`` line) otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.core.errors import INPUT_ERRORS, print_error


def summarize_saved_state(strategy: str, exp_dir: Path) -> dict | None:
    """Write the summary of ``exp_dir`` from its saved state; None if the driver's own summary is current."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from experiments.core.config import ConfigError
    from experiments.core.runner import load_snapshot_config, resume_command
    from experiments.core.summary import mark_ending, mark_unfinished, summarize, write_summary
    from experiments.core.tune_state import saved_trial_statuses
    from search_spaces import load_space

    run_resume = None
    if strategy == "two_stage":  # the driver was in one stage of a two-stage run
        from experiments.workflows.two_stage import STAGE1, STAGE2

        stages = {STAGE1: "asha", STAGE2: "pbt"}
        if exp_dir.name not in stages:
            raise ConfigError(f"{exp_dir} is not a stage of a two-stage run ({', '.join(stages)})")
        strategy = stages[exp_dir.name]
        run_resume = (f"python experiments/run_two_stage.py --resume --name {exp_dir.parent.name} "
                      f"--storage-path {exp_dir.parent.parent}")

    states = sorted(exp_dir.glob("experiment_state-*.json"))
    if not states:
        raise ConfigError(f"no saved experiment state in {exp_dir}")
    summary_file = exp_dir / "summary.json"
    if summary_file.exists() and summary_file.stat().st_mtime >= states[-1].stat().st_mtime:
        return None
    config = load_snapshot_config(strategy, {"name": exp_dir.name, "storage_path": str(exp_dir.parent)})
    space = load_space(config.space)
    results = ResultGrid(ExperimentAnalysis(str(exp_dir)))
    wall_time = max(((r.metrics or {}).get("time_total_s") or 0.0 for r in results), default=0.0)
    reproduce = f"python experiments/run_{strategy}.py --config {exp_dir / 'experiment.yaml'}"
    summary = summarize(config, exp_dir.name, space, results, wall_time, {}, reproduce)
    mark_unfinished(summary, saved_trial_statuses(exp_dir))
    # The driver died mid-stop: trials that errored with it cannot be told from real failures, so the
    # resume retries errored trials too.
    summary["resume_command"] = (run_resume or resume_command(config, exp_dir.name)) + " --resume-errored"
    summary["written_after_the_driver_died"] = True
    mark_ending(summary, config.time_budget_s)
    write_summary(exp_dir, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.workflows.postmortem STRATEGY EXPERIMENT_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m experiments.workflows.postmortem STRATEGY EXPERIMENT_DIR"
    if args in (["--help"], ["-h"]):
        print(f"{usage}\n\nWrite summary.json from Tune's saved state of an experiment whose driver was killed "
              "(what slurm/submit.sbatch runs after a killed driver).")
        return 0
    if len(args) != 2:
        print(usage, file=sys.stderr)
        return 2
    try:
        summary = summarize_saved_state(args[0], Path(args[1]))
    except INPUT_ERRORS as err:
        return print_error(err)
    if summary is not None:
        print(f"wrote {Path(args[1]) / 'summary.json'} from the saved state ({summary['num_unfinished']} trial(s) "
              f"unfinished); resume with: {summary['resume_command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
