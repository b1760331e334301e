"""PBT exploit odds (experiments/benchmarks/pbt_evidence.py) on constructed curves with known answers."""

import numpy as np
import pytest

from experiments.benchmarks.pbt_evidence import default_epochs, exploit_odds, main, quantile_size


def test_quantiles_are_counted_as_ray_counts_them():
    # Ray's PopulationBasedTraining._quantiles: ceil(P * 0.25), at most floor(P / 2), none below 2 members.
    assert [quantile_size(p) for p in (1, 2, 3, 4, 8, 9)] == [0, 1, 1, 1, 2, 3]
    assert quantile_size(4, 0.6) == 2


def test_a_ranking_that_predicts_the_end_is_always_right_and_a_reversed_one_never():
    rng = np.random.default_rng(1)
    final = rng.permutation(40).astype(float)
    # Epoch 1 ranks as the end does; epoch 2 ranks in reverse; every curve ends at its score.
    curves = np.stack([final, -final, final], axis=1)
    assert exploit_odds(curves, final, 1, 8, draws=300).right == 1.0
    assert exploit_odds(curves, final, 2, 8, draws=300).right == 0.0
    # An epoch whose ranking is unrelated to the end: chance.
    final = rng.permutation(2000).astype(float)
    noise = np.stack([rng.normal(size=2000), final], axis=1)
    assert exploit_odds(noise, final, 1, 8, draws=3000).right == pytest.approx(0.5, abs=0.03)


def test_asynchronous_ranking_mistakes_less_training_for_a_worse_model():
    # Every trial improves by 1 per epoch; the offset that decides the end is small. Read at the
    # same epoch (synchronous), the ranking is right. Asynchronously, the others' older results
    # look worse for less training, so the member that just reached the epoch is almost never in
    # the bottom quantile: the exploits that should happen do not.
    offsets = np.linspace(0, 0.5, 30)
    curves = np.stack([offsets + 10 - e for e in range(4)], axis=1)
    scores = curves[:, -1]
    synchronous = exploit_odds(curves, scores, 3, 8)
    assert synchronous.right == 1.0 and synchronous.exploited_share == 2 / 8
    lagged = exploit_odds(curves, scores, 3, 8, synchronous=False, interval=1, draws=500)
    assert lagged.exploited_share < 0.2  # the fresh reading is almost always among the best


def test_default_epochs_stop_before_the_end():
    assert default_epochs(20) == [1, 2, 4, 8, 16]
    assert default_epochs(2) == [1]


def test_bad_input_is_one_line(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.strip() == "error: give experiment folders or --pool, one of them"
    assert main(["--pool", "/nonexistent/pool.json.gz"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
