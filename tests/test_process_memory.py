"""The probe's CPU memory measurement: a real allocation inside the block shows in its peak."""

import numpy as np

from experiments.workflows.process_memory import CPUPeakMemory, release_cpu_memory, rss_bytes


def test_peak_memory_sees_an_allocation_freed_inside_the_block():
    release_cpu_memory()
    before = rss_bytes()
    with CPUPeakMemory() as memory:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched so it is resident
        del block
    grown_mib = (memory.peak - before) / 2**20
    assert memory.method in ("VmHWM", "sampled RSS")
    assert 60 <= grown_mib < 200, grown_mib
    release_cpu_memory()
    assert rss_bytes() - before < 32 * 2**20  # freed and handed back: the block is gone
