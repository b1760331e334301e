"""Two Slurm jobs at once on the same two nodes, both starting from the same port block: the second
takes the next free block, and both Ray clusters come up and span both nodes (the real Slurm fixture,
with 2 CPUs per node so that the jobs run side by side)."""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import SlurmCluster  # noqa: E402
from test_slurm import STAND_IN_DRIVER, Job, _missing, cache_dir  # noqa: E402, F401 - fixture

pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(bool(_missing) or os.geteuid() != 0,
                                 reason="needs the throw-away Slurm cluster (slurm/install-test-slurm.sh, root)")]


@pytest.fixture(scope="module")
def slurm_two_cpus(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm2"), cpus_per_node=2)
    cluster.start()
    yield cluster
    cluster.stop()


def test_two_jobs_on_the_same_nodes_and_block_do_not_clash(slurm_two_cpus, tmp_path, cache_dir):  # noqa: F811
    driver = tmp_path / "stand_in_driver.py"
    driver.write_text(STAND_IN_DRIVER)
    # Both jobs start from block 0 of 2 (as two job ids equal mod 25 would).
    same_block = {"HPO_RAY_PORT_SLOT": "0", "HPO_RAY_PORT_SLOTS": "2"}
    first = Job(slurm_two_cpus, tmp_path, [str(driver), "--sleep", "20"], cache_dir, **same_block)
    first.wait_for_file(first.dir / "driver.log", 150, "NODE IDS")
    second = Job(slurm_two_cpus, tmp_path, [str(driver), "--sleep", "1"], cache_dir, **same_block)
    log = second.wait_for_file(second.dir / "driver.log", 150, "NODE IDS")
    assert len(re.search(r"NODE IDS \[(.*)\]", log).group(1).split(",")) == 2, second.report()
    out = second.out.read_text()
    assert "head: port block 0 is taken on this node" in out and "using block 1" in out, second.report()
    addresses = [(job.dir / "ray-address").read_text().strip() for job in (first, second)]
    assert addresses[0] != addresses[1]
    for job in (first, second):
        info = job.wait(120)
        assert info["JobState"] == "COMPLETED", f"{info}\n{job.report()}"
        assert job.leftovers() == [], job.report()
