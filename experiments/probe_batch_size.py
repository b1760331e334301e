"""Find the batch size to fix before tuning (the Tuning Playbook's first step).

``python experiments/probe_batch_size.py --model {cgcnn,roberta_rte} [model options]``; the probe
is :mod:`experiments.workflows.batch_size_probe`.
"""

import sys

from experiments.workflows.batch_size_probe import main

if __name__ == "__main__":
    sys.exit(main())
