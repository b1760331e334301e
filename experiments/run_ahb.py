"""Async HyperBand: ASHA's early stopping run in several brackets of different aggressiveness.

Use it when ASHA's single grace period may be too short to judge configurations (slow starters):
later brackets wait longer before their first stop. The NERSC study found it finished about half
as many trials as ASHA in the same time, so start with ASHA and switch when early epochs mislead.
"""

import sys

from experiments.core.runner import main

if __name__ == "__main__":
    sys.exit(main("ahb", __doc__))
