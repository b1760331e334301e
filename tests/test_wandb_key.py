"""The W&B API key is written nowhere: not in results, not in Ray's session logs (runtime_env_agent.log).

Ray's ``WandbLoggerCallback`` puts ``WANDB_API_KEY`` into its logging actor's runtime env, which Ray
records in its session logs (copied to ``slurm-logs/<job>/ray-logs`` under Slurm). A real run with a
fake key in the environment, W&B offline, and Ray's temp dir inside the test's own folder.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "fake-key-1234567890abcdef"


def test_fake_wandb_key_is_in_no_file_under_results_or_rays_temp_dir(tmp_path, smoke_cache):
    # Ray's socket paths must stay under 107 bytes: a short private dir in /tmp, not pytest's tmp_path.
    ray_tmp = Path(tempfile.mkdtemp(prefix="hpo-wk-", dir="/tmp"))
    try:
        env = {**os.environ, "HPO_SUITE_CACHE": str(smoke_cache), "RAY_AUTH_MODE": "disabled",
               "WANDB_MODE": "offline", "WANDB_API_KEY": FAKE_KEY, "RAY_TMPDIR": str(ray_tmp)}
        proc = subprocess.run(
            [sys.executable, str(REPO / "experiments" / "run_random.py"), "--smoke-test", "--num-samples", "1",
             "--max-epochs", "2", "--wandb", "proj", "--storage-path", str(tmp_path / "results"), "--name", "wk"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        results = tmp_path / "results" / "wk"
        # W&B ran for the trial; its offline run is in the experiment folder, for a later `wandb sync`.
        assert list(results.glob("wandb/offline-run-*/run-*.wandb"))
        sessions = list(ray_tmp.rglob("runtime_env_agent.log"))
        assert sessions  # Ray's session (and its runtime-env log) really lived under ray_tmp
        files = [p for root in (results, ray_tmp) for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        leaked = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
        assert leaked == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
