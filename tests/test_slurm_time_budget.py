"""submit.sbatch adds no time budget of its own: a budget would end a sweep as finished inside its first
allocation, and nothing would requeue it (the time-limit warning stops it instead, and the job requeues).

On the real Slurm fixture (tests/slurm_cluster.py) with a stand-in ``run_probe.py`` that only prints the
arguments submit.sbatch gave it.
"""

import json
import os
import re
import sys
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


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_job_gets_no_time_budget_of_its_own(slurm, tmp_path, cache_dir):  # noqa: F811
    (tmp_path / "run_probe.py").write_text(PROBE)
    job = Job(slurm, tmp_path, [str(tmp_path / "run_probe.py"), "--num-samples", "2"], cache_dir,
              ("--time=1-00:00:00",))
    args = probe_args(job)
    assert args[:2] == ["--num-samples", "2"] and "--time-budget-s" not in args, args
    assert not (job.dir / "ray-auth-token").exists()  # deleted at the job's end
