"""After an experiment: its data, plots, Playbook checks and record; strategy comparison; the PBT schedule.

Matplotlib draws to files only (never a window: this runs on clusters and in CI). The backend is
chosen here, before any module of this package imports ``pyplot``.
"""

import matplotlib

matplotlib.use("Agg")
