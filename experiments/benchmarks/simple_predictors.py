"""How much of the built-in adsorption energies simple predictors explain: least-squares fits on metadata.

Each predictor is an additive least-squares model: one-hot (metal, adsorbate) groups (the baseline
every run prints) plus one more one-hot term (site name, facet or dopant), or plus a quadratic in the
binding atom's distance to its nearest metal atom. For each it prints the share of the energy
variance it explains and its MAE, fitted on all structures, and fitted on the training split and
measured on the validation split (the default random split every run uses).

    python -m experiments.benchmarks.simple_predictors              # the built-in 2,000 structures
    python -m experiments.benchmarks.simple_predictors --num-structures 240 --seed 0
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Sequence

import numpy as np

from experiments.benchmarks.hardware import describe_hardware


def one_hot(values: Sequence[str]) -> np.ndarray:
    """One column per distinct value (sorted), 1.0 where the row has it."""
    levels = sorted(set(values))
    index = {v: i for i, v in enumerate(levels)}
    out = np.zeros((len(values), len(levels)))
    out[np.arange(len(values)), [index[v] for v in values]] = 1.0
    return out


def design_matrices(metadata: list[dict]) -> dict[str, np.ndarray]:
    """Predictor name -> design matrix (rows: structures); every one holds the baseline's group columns."""
    groups = one_hot([f"{m['metal']}|{m['adsorbate']}" for m in metadata])
    distance = np.array([float(m["binding_distance"]) for m in metadata])
    centred = distance - distance.mean()
    return {
        "mean of each (metal, adsorbate) group (the baseline)": groups,
        "group + site name": np.hstack([groups, one_hot([m["site"] for m in metadata])]),
        "group + facet": np.hstack([groups, one_hot([m["facet"] for m in metadata])]),
        "group + dopant": np.hstack([groups, one_hot([m["dopant"] or "none" for m in metadata])]),
        "group + quadratic in the binding atom's nearest-metal distance":
            np.hstack([groups, centred[:, None], centred[:, None] ** 2]),
    }


def fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least squares on (x_fit, y_fit), predicted at ``x``.

    Fitted around the mean of ``y_fit`` with the minimum-norm solution: a level never seen in the fit
    (a group missing from the training split) predicts that mean, as the runs' baseline does.
    """
    mean = float(np.mean(y_fit))
    coef, *_ = np.linalg.lstsq(x_fit, y_fit - mean, rcond=None)
    return x @ coef + mean


def evaluate(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> dict[str, float]:
    """Share of variance and MAE fitted on everything; MAE on ``val`` fitted on ``train``."""
    everywhere = fit_predict(x, y, x)
    on_val = fit_predict(x[train], y[train], x[val])
    return {"share": 1.0 - float(np.var(y - everywhere) / np.var(y)),
            "mae": float(np.mean(np.abs(y - everywhere))),
            "val_mae": float(np.mean(np.abs(y[val] - on_val)))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="simple_predictors.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-structures", type=int, default=2000, help="size of the built-in dataset")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in dataset and of its split")
    p.add_argument("--cache-dir", help="where the featurised data is cached (default: the suite's cache)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from trainables.data import load_dataset
    from trainables.data.adsorption import GENERATOR_VERSION

    dataset = load_dataset(num_structures=args.num_structures, seed=args.seed, cache_dir=args.cache_dir,
                           progress=False)
    y = np.array([float(g.y.reshape(-1)[0]) for g in dataset.graphs])
    train, val = dataset.splits["train"], dataset.splits["val"]
    print(f"# simple predictors on the built-in data (generator {GENERATOR_VERSION}, {len(y)} structures, "
          f"seed {args.seed}), {_dt.date.today().isoformat()}; {describe_hardware()}")
    print("| predictor | share of the variance | MAE (eV), fit on all | val MAE (eV), fit on train |")
    print("|---|---|---|---|")
    for name, x in design_matrices(dataset.metadata).items():
        r = evaluate(x, y, train, val)
        print(f"| {name} | {100 * r['share']:.0f} % | {r['mae']:.3f} | {r['val_mae']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
