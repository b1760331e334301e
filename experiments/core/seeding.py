"""Seeding what Ray's schedulers draw from the process-global random generators.

``--seed`` seeds the searchers (their own generators) and every trial's model initialisation,
but two schedulers draw from global state that nothing seeds: ``PopulationBasedTraining``
explores and picks donors with the ``random`` module, and ``AsyncHyperBandScheduler`` assigns
each new trial its bracket with ``np.random``. Neither takes a generator, so the driver seeds
the globals from the experiment's seed just before the Tuner runs. With the same seed and the
same order of events two runs then make the same choices (asynchronous schedulers see results
in arrival order, so runs with several trials at once can still differ in timing). A resumed
experiment is not seeded again: it goes on with the generator states saved with its Tune state
(:class:`experiments.core.scheduler_state.SchedulerMemory`), as an uninterrupted run would.
"""

from __future__ import annotations

import random

import numpy as np


def seed_scheduler_rngs(seed: int) -> None:
    """Seed the global ``random`` and ``np.random`` generators PBT and async HyperBand draw from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
