"""Two-stage seed search: ASHA over many seeds, then PBT from the best of them.

``python experiments/run_two_stage.py [--model cgcnn|roberta_rte] [flags]``; the workflow is
:mod:`experiments.workflows.two_stage`.
"""

import sys

from experiments.workflows.two_stage import main

if __name__ == "__main__":
    sys.exit(main())
