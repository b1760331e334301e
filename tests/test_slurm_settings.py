"""slurm/ray-common.sh and submit.sbatch settings for real clusters, by running their bash directly.

Ray's memory from the job's allocation (capped by /dev/shm), the open-file limit, the export list
the srun steps get, the owner-only umask and the node-join timeout. The real-Slurm tests
(tests/test_slurm*.py) run them end to end on the two-node fixture.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def bash(script: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` after sourcing ray-common.sh, under ``set -euo pipefail`` as the Slurm scripts run."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HPO_"))}
    full.update({"HPO_REPO": str(REPO), "HPO_VENV": str(Path(sys.executable).parents[1]), **env})
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "$HPO_REPO/slurm/ray-common.sh"; {script}'],
                          env=full, capture_output=True, text=True, timeout=60)


def _split(out: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"--([\w-]+)=(\d+)", out)}


def test_memory_comes_from_the_job_per_node_or_per_cpu():
    proc = bash("hpo_job_memory_bytes; echo; SLURM_MEM_PER_NODE= SLURM_MEM_PER_CPU=2000 HPO_NUM_CPUS=4 "
                "hpo_job_memory_bytes; echo; SLURM_MEM_PER_NODE=0 hpo_job_memory_bytes; echo end",
                SLURM_MEM_PER_NODE="16000")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(16000 * MiB), str(8000 * MiB), "end"]  # --mem=0 gives no figure


@pytest.mark.parametrize(("total", "shm", "store"), [
    (16000 * MiB, 64000 * MiB, int(16000 * MiB * 0.3)),  # 30 % of the job's memory
    (16000 * MiB, 1000 * MiB, int(1000 * MiB * 0.9)),  # a small /dev/shm caps it
])
def test_object_store_is_a_share_of_the_job_capped_by_shm_and_the_rest_is_memory(total, shm, store):
    proc = bash(f"hpo_ray_memory_split {total} {shm}")
    assert proc.returncode == 0, proc.stderr
    got = _split(proc.stdout)
    assert abs(got["object-store-memory"] - store) <= 1 and got["memory"] + got["object-store-memory"] == total


def test_no_memory_arguments_below_rays_minimum_or_when_the_user_gave_them():
    assert bash(f"hpo_ray_memory_split {100 * MiB} {64000 * MiB}").stdout == ""  # 30 MiB store: Ray decides
    given = bash("hpo_ray_memory_args; echo end", SLURM_MEM_PER_NODE="16000",
                 HPO_RAY_START_ARGS="--object-store-memory=150000000")
    assert given.returncode == 0 and given.stdout.split() == ["end"], given.stderr
    sized = bash("hpo_ray_memory_args", SLURM_MEM_PER_NODE="16000")
    assert sized.returncode == 0 and sum(_split(sized.stdout).values()) == 16000 * MiB, sized.stderr


def test_open_file_limit_is_raised_to_what_ray_asks_or_to_the_hard_limit_with_a_line():
    hard = subprocess.run(["bash", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
    if hard != "unlimited" and int(hard) < 4096:
        pytest.skip(f"hard open-file limit {hard} is too low to test with")
    raised = bash("ulimit -Sn 1024; hpo_raise_open_files; ulimit -Sn", HPO_NOFILE="4096")
    assert raised.returncode == 0 and raised.stdout.split() == ["4096"], raised.stderr
    capped = bash("ulimit -Sn 1024; ulimit -Hn 2048; hpo_raise_open_files; ulimit -Sn", HPO_NOFILE="4096")
    assert capped.returncode == 0 and capped.stdout.split()[-1] == "2048", capped.stderr
    assert "hard limit 2048" in capped.stdout


def test_submit_script_gives_the_steps_its_whole_environment_and_keeps_files_owner_only():
    """--export=NONE or an explicit list would leave the srun steps without HPO_JOB_DIR and the token path."""
    text = (REPO / "slurm" / "submit.sbatch").read_text()
    body = text[text.index("set -euo pipefail"):]
    assert re.search(r"^export SLURM_EXPORT_ENV=ALL$", body, re.M)
    assert body.index('umask "${HPO_UMASK:-077}"') < body.index("mkdir -p")  # before anything is written
    assert 'rm -f "$RAY_AUTH_TOKEN_PATH"' in body
    assert "--time-budget-s" not in body.split("#SBATCH")[-1].replace("# --time-budget-s", "")


def test_umask_default_makes_new_files_owner_only(tmp_path):
    script = f'umask "${{HPO_UMASK:-077}}"; touch {tmp_path}/a; HPO_UMASK=022; umask "$HPO_UMASK"; touch {tmp_path}/b'
    assert subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]}).returncode == 0
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600 and (tmp_path / "b").stat().st_mode & 0o777 == 0o644
