"""Does PBT's exploit step pick better donors than chance? Evidence from full-length learning curves.

At a perturbation point Ray's ``PopulationBasedTraining`` ranks the live members by their last
reported metric; each member in the bottom quantile (``quantile_fraction``, 0.25; at least one,
at most half the members) copies the weights of a member drawn uniformly from the top quantile.
That pays only if the ranking at that epoch predicts which model ends better. Whether it does is a
property of the benchmark, and it can be read off random-search curves of fixed configurations
(a pool: ``experiments/simulate.py``'s input, e.g. ``--pool builtin``):

- **synchronous** exploit at epoch t (``synch: true``: every member has reached t): draw a
  population of P recorded trials, rank them by their metric at epoch t, pair each bottom-quantile
  member with a donor drawn from the top quantile; the exploit is **right** when the donor's score
  (its best result over its whole run, :mod:`experiments.core.scores`) beats the recipient's.
  Chance is 0.5: the fraction right over many draws says how much better than chance the donors are;
- **asynchronous** exploit with fewer slots than members (Ray's default, ``synch: false``): the
  member that reaches t is compared with the others' *last* results, taken earlier (here: each
  other member's metric at an epoch drawn uniformly from [t - interval, t]); a member one interval
  behind looks worse only because it trained less.

``python -m experiments.benchmarks.pbt_evidence --pool builtin`` prints the table for a population
of 8 (and 2: asynchronous PBT on 2 slots compares pairs) at epochs 1, 2, 4, 8, ...; docs/strategies.md's
PBT section gives the figures behind the shipped PBT defaults. A curve of fixed
hyperparameters is what a member follows until its first exploit; later members carry perturbed
hyperparameters, which this does not model.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np

from experiments.core.scores import sign, trial_score
from experiments.simulation.errors import SimulationError
from experiments.simulation.pool import Pool, read_pool


@dataclass(frozen=True)
class ExploitOdds:
    """How often an exploit at ``epoch`` picks a donor that ends better than its recipient."""

    epoch: int
    population: int
    synchronous: bool
    right: float  # fraction of exploits whose donor's score beats the recipient's (chance: 0.5)
    exploits: int  # exploits drawn
    draws: int  # perturbation rounds drawn

    @property
    def exploited_share(self) -> float:
        """Exploits per member and perturbation: quantile / population when synchronous; the chance
        that the member reaching the epoch is in the bottom quantile when asynchronous."""
        return self.exploits / (self.draws * (self.population if self.synchronous else 1))


def quantile_size(population: int, quantile_fraction: float = 0.25) -> int:
    """Members in each of PBT's quantiles, as Ray's ``PopulationBasedTraining._quantiles`` counts them."""
    if population < 2:
        return 0
    size = int(math.ceil(population * quantile_fraction))
    return int(math.floor(population / 2)) if size > population / 2 else size


def exploit_odds(curves: np.ndarray, scores: np.ndarray, epoch: int, population: int, *,
                 synchronous: bool = True, interval: int = 1, quantile_fraction: float = 0.25,
                 draws: int = 4000, seed: int = 0) -> ExploitOdds:
    """The fraction of exploits at ``epoch`` (1-based) whose donor's score beats the recipient's.

    ``curves[i, e]`` is trial i's metric after epoch e + 1 and ``scores[i]`` its score, both signed
    so that lower is better. Each draw takes ``population`` distinct trials; synchronous ranking
    reads every member at ``epoch``; asynchronous ranking reads the member that just reached
    ``epoch`` there and every other member at an epoch drawn from [epoch - interval, epoch] (at
    least 1), and only the member that reached ``epoch`` acts (exploits when it is bottom).
    Ties in the final scores count half.
    """
    n, length = curves.shape
    if not 1 <= epoch <= length:
        raise ValueError(f"epoch {epoch} is outside the curves' 1..{length}")
    if not 2 <= population <= n:
        raise ValueError(f"population {population} needs 2..{n} trials")
    rng = np.random.default_rng(seed)
    q = quantile_size(population, quantile_fraction)
    right = exploits = 0.0
    for _ in range(draws):
        members = rng.choice(n, size=population, replace=False)
        reads = np.full(population, epoch - 1)
        if not synchronous:
            low = max(1, epoch - interval)
            reads[1:] = rng.integers(low, epoch + 1, size=population - 1) - 1
        order = np.argsort(curves[members, reads], kind="stable")
        top, bottom = order[:q], order[population - q:]
        recipients = bottom if synchronous else [m for m in bottom if m == 0]
        for recipient in recipients:
            donor = top[rng.integers(q)]
            a, b = scores[members[donor]], scores[members[recipient]]
            right += 1.0 if a < b else 0.5 if a == b else 0.0
            exploits += 1
    return ExploitOdds(epoch, population, synchronous, right / exploits if exploits else float("nan"), int(exploits),
                       draws)


def pool_curves(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """The pool's full-length curves and scores, signed so that lower is better.

    Trials that ended themselves (diverged) or reported a non-finite value are left out: they never
    rank (:mod:`experiments.core.scores`), and PBT would not pick them as donors either way.
    """
    s = sign(pool.mode)
    rows = [t.values for t in pool.trials if len(t.values) == pool.max_epochs and np.all(np.isfinite(t.values))]
    if len(rows) < 4:
        raise SimulationError(f"the pool holds {len(rows)} full-length finite curves; at least 4 are needed")
    curves = s * np.asarray(rows, dtype=float)
    scores = np.array([s * trial_score(s * row, pool.mode) for row in curves])
    return curves, scores


def default_epochs(max_epochs: int) -> list[int]:
    """1, 2, 4, 8, ... up to the last epoch before the end (an exploit at the end changes nothing)."""
    epochs, e = [], 1
    while e < max_epochs:
        epochs.append(e)
        e *= 2
    return epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", help="finished full-length experiments (random search or grid)")
    parser.add_argument("--pool", default=None, help="'builtin' or a pool file (*.json.gz), instead of DIRs")
    parser.add_argument("--populations", type=int, nargs="+", default=[8, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=None, help="default: 1 2 4 8 ... below max_epochs")
    parser.add_argument("--interval", type=int, default=2, help="asynchronous lag: the others' last results are "
                        "up to this many epochs old (the perturbation interval)")
    parser.add_argument("--quantile-fraction", type=float, default=0.25)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if bool(args.dirs) == bool(args.pool):
            raise SimulationError("give experiment folders or --pool, one of them")
        pool = read_pool([args.pool] if args.pool else args.dirs)
        curves, scores = pool_curves(pool)
        epochs = args.epochs or default_epochs(pool.max_epochs)
        rows = [exploit_odds(curves, scores, e, p, synchronous=sync, interval=args.interval,
                             quantile_fraction=args.quantile_fraction, draws=args.draws, seed=args.seed)
                for p in args.populations for sync in (True, False) for e in epochs]
    except (SimulationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"PBT exploit odds on {len(curves)} full-length curves of {pool.model}/{pool.space} "
          f"({pool.metric}, {pool.mode}, {pool.max_epochs} epochs): the fraction of exploits whose donor "
          f"ends better than its recipient (chance 0.50); asynchronous: the others read up to "
          f"{args.interval} epochs earlier")
    print("(in brackets: the share of members that exploit at a perturbation)")
    print(f"| population | ranking | {' | '.join(f'epoch {e}' for e in epochs)} |")
    print(f"|---|---|{'---|' * len(epochs)}")
    for p in args.populations:
        for sync in (True, False):
            cells = [f"{r.right:.2f} ({r.exploited_share:.2f})" for r in rows
                     if r.population == p and r.synchronous == sync]
            print(f"| {p} | {'synchronous' if sync else 'asynchronous'} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
