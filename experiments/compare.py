"""Compare search strategies by time to solution over experiment folders.

``python experiments/compare.py DIR [DIR ...]`` writes comparison.png/.md/.csv; the model is in
:mod:`experiments.analysis.comparison`.
"""

import sys

from experiments.analysis.comparison import main

if __name__ == "__main__":
    sys.exit(main())
