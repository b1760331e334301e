"""Predict with a model folder (an experiment's ``best_model/``) and write a CSV.

    python experiments/predict.py results/<name>/best_model --data my_cifs/ --out predictions.csv
    python experiments/predict.py results/<name>/best_model --data builtin:val --out val.csv
    python experiments/predict.py results/<name>/best_model --data rte/val.jsonl --split eval --out eval.csv

CGCNN: ``--data`` is a folder of ``<id>.cif`` files (``id_prop.csv`` optional: with it the MAE
is printed), an ASE ``.db``, ``.extxyz``/``.xyz`` or ``.traj`` file (targets optional, under the
model's --target key: with them the MAE is printed) or ``builtin:train|val|test`` (the built-in
data's split, as the experiment made it).
Classifier: a ``.jsonl``, ``.tsv`` or ``.csv`` file with the text fields the model was trained on
(RTE: premise/hypothesis or sentence1/sentence2), labels optional (with them the accuracy is
printed); ``--split eval|test`` takes the experiment's seeded half of a validation file.
The CSV has a header row and one row per input.
"""

import argparse
import sys

from experiments.core.errors import INPUT_ERRORS, print_error
from experiments.workflows.prediction import predict, write_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("model", metavar="MODEL_DIR", help="model folder (e.g. results/<name>/best_model)")
    parser.add_argument("--data", required=True, help="inputs: a CIF folder, a .db/.extxyz/.xyz/.traj file or "
                                                      "builtin:SPLIT (CGCNN); a .jsonl, .tsv or .csv file (classifier)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--split", default=None, help="CGCNN built-in data: train, val or test; classifier: "
                                                      "eval or test, the experiment's seeded half of --data")
    args = parser.parse_args(argv)
    try:
        predictions = predict(args.model, args.data, args.split)
    except INPUT_ERRORS as err:
        return print_error(err)
    write_csv(predictions, args.out)
    print(f"{len(predictions.rows)} prediction(s) written to {args.out}")
    if predictions.metric is not None:
        name, value = predictions.metric
        print(f"{name}: {value:.8g} over {len(predictions.rows)} labelled input(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
