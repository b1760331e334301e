"""Predict strategy rankings at cluster scale in seconds: replay recorded learning curves through Ray Tune's schedulers.

``python experiments/simulate.py DIR [DIR ...]`` reads finished experiments whose trials ran full
length (random search or grid), or a shipped CGCNN pool (``--pool builtin``, ``--pool cgcnn_six``), and
replays strategies (``--strategies random:fifo random:asha random:ahb quasirandom:asha``) on ``--workers``
slots for ``--budget-s`` simulated seconds, ``--seeds`` times each: Ray Tune's own
``AsyncHyperBandScheduler`` makes every stopping decision, on a virtual clock that advances by
the recorded seconds of each epoch plus the overheads measured in the pool. It prints and writes
compare.py's time-to-solution table and top-k plot, labelled as simulated
(``simulated_comparison.{md,csv,png}`` under ``--out``). See experiments/simulation/.
"""

import sys

from experiments.simulation.cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__.split("\n\n")[0]))
