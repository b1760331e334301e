"""submit.sbatch's default --time-budget-s: the job's remaining time less the signal margin and start-up allowance.

On the real Slurm fixture (tests/slurm_cluster.py) with a stand-in ``run_probe.py`` that only prints the
arguments submit.sbatch gave it; and ray-common.sh's SLURM_JOB_END_TIME fallback, outside any job.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_slurm import Job, _missing, cache_dir, slurm  # noqa: E402, F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
needs_slurm = pytest.mark.skipif(bool(_missing) or os.geteuid() != 0,
                                 reason="needs the throw-away Slurm cluster (slurm/install-test-slurm.sh, root)")
PROBE = 'import json, sys; print("ARGV", json.dumps(sys.argv[1:]), flush=True)\n'


def probe_args(job: Job) -> list[str]:
    info = job.wait(180)
    assert info["JobState"] == "COMPLETED", f"{info}\n{job.report()}"
    return json.loads(re.search(r"^ARGV (.*)$", (job.dir / "driver.log").read_text(), re.M).group(1))


def budget(args: list[str]) -> float | None:
    return float(args[args.index("--time-budget-s") + 1]) if "--time-budget-s" in args else None


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_job_without_a_budget_gets_its_remaining_time_less_margin_and_allowance(slurm, tmp_path, cache_dir):  # noqa: F811
    (tmp_path / "run_probe.py").write_text(PROBE)
    # A time limit in days (squeue's %L then reads 1-00:00:00 style), a custom margin and allowance.
    job = Job(slurm, tmp_path, [str(tmp_path / "run_probe.py"), "--num-samples", "2"], cache_dir,
              ("--time=1-00:00:00",), HPO_SIGNAL_MARGIN_S="300", HPO_STARTUP_ALLOWANCE_S="100")
    args = probe_args(job)
    assert args[:2] == ["--num-samples", "2"]
    assert 86400 - 400 - 240 < budget(args) <= 86400 - 400, args  # the job's start-up took some of the day
    assert "time budget" in job.out.read_text()


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_a_budget_the_user_gave_is_kept(slurm, tmp_path, cache_dir):  # noqa: F811
    (tmp_path / "run_probe.py").write_text(PROBE)
    job = Job(slurm, tmp_path, [str(tmp_path / "run_probe.py"), "--time-budget-s", "33"], cache_dir)
    args = probe_args(job)
    assert args.count("--time-budget-s") == 1 and budget(args) == 33


def test_end_time_is_the_fallback_where_squeue_cannot_answer(tmp_path):
    env = {**os.environ, "HPO_REPO": str(REPO), "HPO_VENV": str(Path(sys.executable).parents[1]),
           "SLURM_JOB_ID": "999999", "SLURM_CONF": str(tmp_path / "none.conf"),  # no controller to ask
           "SLURM_JOB_END_TIME": str(int(time.time()) + 1000), "HPO_SIGNAL_MARGIN_S": "120"}
    env.pop("HPO_STARTUP_ALLOWANCE_S", None)
    proc = subprocess.run(["bash", "-c", 'set -euo pipefail; source "$HPO_REPO/slurm/ray-common.sh"; '
                           'hpo_job_time_budget_s; SLURM_JOB_END_TIME=$(( $(date +%s) + 100 )) hpo_job_time_budget_s; '
                           'echo end'], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    # 1000 - 120 - 60, less the seconds squeue took to give up (10 at most); too little left: no budget
    assert 790 <= int(lines[0]) <= 820 and lines[1:] == ["end"]
