"""BOHB: HyperBand's early stopping with a model that proposes the next configurations (Falkner et al., 2018).

Use it when a model-based search should learn from every rung, not only from trials that ran to the
end: BOHB fits a kernel density model per budget (epochs) on the results seen at that budget and
proposes from the largest budget with enough of them; HyperBand (Ray's HyperBandForBOHB) pauses
trials at each rung and promotes the best. Ray's TuneBOHB needs hpbandster and ConfigSpace.
"""

import sys

from experiments.core.runner import main

if __name__ == "__main__":
    sys.exit(main("bohb", __doc__))
