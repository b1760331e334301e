"""Retrain an experiment's best configuration and keep the model of its best epoch.

    python experiments/train_best.py results/<name>                 # the experiment's max_epochs
    python experiments/train_best.py results/<name> --max-epochs 50 # a longer final run

Retrains the best trial's configuration with its seed, in this process (no Ray), on the
experiment's data and thread count, scores each epoch as the search scored trials and writes the
weights of the best epoch to ``results/<name>/best_model/`` (a Hugging Face ``save_pretrained``
folder for RoBERTa, a self-contained CGCNN file for CGCNN). PBT runs keep their model themselves.
Then: ``python experiments/predict.py results/<name>/best_model --data PATH --out predictions.csv``.
"""

import argparse
import sys

from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.workflows.best_model import BEST_MODEL_DIR, train_best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("experiment", metavar="DIR", help="experiment folder (with summary.json)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epochs to train (and the lr schedule's length); default: the experiment's")
    parser.add_argument("--out", default=None, help=f"model folder to write; default DIR/{BEST_MODEL_DIR}")
    args = parser.parse_args(argv)
    try:
        info = train_best(args.experiment, max_epochs=args.max_epochs, out=args.out)
    except INPUT_ERRORS as err:
        return print_error(err)
    metric, test = info["metric"], info["test_metric"]
    where = args.out or f"{args.experiment.rstrip('/')}/{BEST_MODEL_DIR}"
    print(f"best epoch: iteration {info['training_iteration']} of {info['max_epochs']} epochs, {metric} "
          f"{info[metric]:.6g}, {test} {info[test]:.6g}; model in {where}")
    print(f"predict: python experiments/predict.py {where} --data PATH --out predictions.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
