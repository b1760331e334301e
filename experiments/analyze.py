"""Analyse finished experiments: the Tuning Playbook record, plots and checks.

``python experiments/analyze.py DIR [DIR ...]`` rewrites each DIR's ``summary.md`` and saves its
plots; the work is done by :mod:`experiments.analysis.record`.
"""

import sys

from experiments.analysis.record import main

if __name__ == "__main__":
    sys.exit(main())
