"""Grid search over the spec's grid values, every point once, no early stopping.

Use it to reproduce a published grid (e.g. the BERT/RTE authors' batch size x lr x epochs) or to
sweep two or three parameters exhaustively for a clean plot. Grids grow multiplicatively, so a
grid above ``max_grid_size`` trials is refused unless ``--force``; for more than a few
parameters prefer quasi-random search.
"""

import sys

from experiments.core.runner import main

if __name__ == "__main__":
    sys.exit(main("grid", __doc__))
