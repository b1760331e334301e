"""Population Based Training: a population trains together; every perturbation interval the worst
copy the weights of the best and continue with perturbed (mutable) hyperparameters.

Use it after ASHA/BO have found a good region, to tune schedule-like hyperparameters (learning
rate, weight decay) during training: it won the W&B BERT/RTE comparison and found a learning-rate
schedule in the NERSC study. Architecture and batch size stay fixed (``mutable: false``).
"""

import sys

from experiments.core.runner import main

if __name__ == "__main__":
    sys.exit(main("pbt", __doc__))
