"""Random search, no early stopping: every trial runs all its epochs.

The baseline every comparison needs (the NERSC study's RS). Use it to calibrate: how good is a
configuration drawn at random, and how much do ASHA, AHB, PBT or BO gain over it on the same
budget. ``--search quasirandom`` covers the space more evenly (the Tuning Playbook's choice for
exploration); ``--search hyperopt`` or ``dragonfly`` makes it Bayesian optimisation.
"""

import sys

from experiments.core.runner import main

if __name__ == "__main__":
    sys.exit(main("random", __doc__))
