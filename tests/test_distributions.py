"""The same space, the same distribution, on every backend.

Many draws from each backend's compiled space (Ray's sampling space, HyperOpt's space, Dragonfly's
domain through its own sampler, the quasi-random unit-cube mapping), compared per parameter with
the distribution the spec means: uniform for a float, uniform on the log axis for a log float,
equal mass for every integer, mass proportional to its share of the log range ``[low, high + 1)``
for a log integer, equal mass for every choice or discrete value. Chi-square for finite kinds,
Kolmogorov-Smirnov for continuous ones, each with a fixed seed: the tests are deterministic, and
at 10,000 draws a real bias (a bound at half mass, a log parameter searched linearly) gives
p-values far below the threshold while a faithful backend stays far above it.
"""

import math
from collections import Counter

import numpy as np
import pytest
from hyperopt.pyll import stochastic
from scipy import stats

from search_spaces.compile import from_dragonfly_point, from_unit_cube, to_dragonfly_domain, to_hyperopt, to_ray
from search_spaces.spec import Param, parse_space

N = 10_000
P_MIN = 1e-3  # a faithful backend gives p ~ 0.1-0.9 here; the biases this guards against give p < 1e-10

# One parameter of every kind; the discrete list holds a negative number and an exponent.
SPACE = parse_space("every_kind", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "wd": {"type": "float", "low": 0.0, "high": 0.3},
    "layers": {"type": "int", "low": 1, "high": 3},
    "offset": {"type": "int", "low": -2, "high": 2},
    "width": {"type": "int", "low": 4, "high": 64, "log": True},
    "act": {"type": "choice", "values": ["relu", "gelu", "silu"]},
    "shift": {"type": "discrete", "values": [-1, 1e-05, 0.5, 2]},
}})


def intended_pmf(p: Param) -> dict:
    """The probability the spec means for each value of a finite parameter."""
    if p.kind in ("choice", "discrete"):
        return {v: 1 / len(p.values) for v in p.values}
    low, high = int(p.low), int(p.high)
    if p.log:
        total = math.log((high + 1) / low)
        return {k: math.log((k + 1) / k) / total for k in range(low, high + 1)}
    return {k: 1 / (high - low + 1) for k in range(low, high + 1)}


def intended_cdf(p: Param):
    """The CDF the spec means for a float parameter."""
    if p.log:
        return lambda x: (np.log(x) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    return lambda x: (np.asarray(x) - p.low) / (p.high - p.low)


def check_matches_spec(configs: list[dict], backend: str) -> None:
    """Every parameter's sample frequencies (or quantiles) agree with the spec's distribution."""
    assert len(configs) == N
    for p in SPACE.params:
        values = [c[p.name] for c in configs]
        assert all(p.contains(v) for v in values), (backend, p.name)
        if p.kind == "float":
            result = stats.kstest(values, intended_cdf(p))
            assert result.pvalue > P_MIN, f"{backend} {p.name}: KS statistic {result.statistic:.4f}"
            continue
        if p.kind == "int":  # a trial gets a Python int, as Ray's own sampling gives it
            assert {type(v) for v in values} == {int}, (backend, p.name, {type(v) for v in values})
        pmf = intended_pmf(p)
        counts = Counter(values)
        assert set(counts) <= set(pmf), (backend, p.name, set(counts) - set(pmf))
        observed = [counts.get(v, 0) for v in pmf]
        expected = [N * q for q in pmf.values()]
        result = stats.chisquare(observed, expected)
        shares = {v: round(counts.get(v, 0) / N, 3) for v in list(pmf)[:4]}
        assert result.pvalue > P_MIN, f"{backend} {p.name}: chi2 {result.statistic:.1f}, first shares {shares}"


def test_ray_sampling_space_draws_the_spec_distribution():
    rng = np.random.RandomState(0)
    domains = to_ray(SPACE)
    check_matches_spec([{name: d.sample(random_state=rng) for name, d in domains.items()} for _ in range(N)], "ray")


def test_hyperopt_space_draws_the_spec_distribution():
    # Rounded integers (quniform) gave int 1..3 shares 25/50/25 % and log int 4..64 P(4) = 0.041.
    space = to_hyperopt(SPACE)
    rng = np.random.default_rng(0)
    check_matches_spec([stochastic.sample(space, rng=rng) for _ in range(N)], "hyperopt")


def test_dragonfly_domain_sampled_by_dragonfly_maps_to_the_spec_distribution():
    # Dragonfly's own random sampler over the compiled domain, turned into raw points by its
    # function caller (what its ask() returns), then mapped by the adapter. Its native int type
    # never reaches the upper bound, and log ints were searched linearly.
    from experiments.searchers.dragonfly import import_dragonfly

    df = import_dragonfly()
    from dragonfly.exd.cp_domain_utils import sample_from_cp_domain

    config = df.load_config({"domain": to_dragonfly_domain(SPACE)})
    caller = df.CPFunctionCaller(None, config.domain, domain_orderings=config.domain_orderings)
    outer = np.random.get_state()
    np.random.seed(0)  # Dragonfly samples from numpy's global state
    try:
        processed = sample_from_cp_domain(config.domain, N)
    finally:
        np.random.set_state(outer)
    raw = [caller.get_raw_domain_point_from_processed(point) for point in processed]
    check_matches_spec([from_dragonfly_point(SPACE, point) for point in raw], "dragonfly")


def test_unit_cube_mapping_of_uniform_points_draws_the_spec_distribution():
    rng = np.random.default_rng(0)
    points = rng.random((N, len(SPACE.params)))
    check_matches_spec([from_unit_cube(SPACE, u) for u in points], "unit cube")


@pytest.mark.parametrize("sampler", ["sobol", "halton"])
def test_quasirandom_searcher_draws_the_spec_distribution(sampler):
    from experiments.searchers.quasirandom import QuasiRandomSearch

    searcher = QuasiRandomSearch(SPACE, "val_mae", "min", sampler=sampler, seed=0)
    check_matches_spec([searcher.suggest(str(i)) for i in range(N)], f"quasirandom {sampler}")


def test_the_check_rejects_a_rounded_integer_and_a_linear_log_integer():
    # The test must be able to fail: the two biases it exists for, built by hand.
    rng = np.random.default_rng(0)
    rounded = np.round(rng.uniform(1, 3, N)).astype(int)  # HyperOpt's old quniform for int 1..3
    linear = np.floor(rng.uniform(4, 65, N)).astype(int)  # a log int 4..64 searched linearly
    good = from_unit_cube  # everything else drawn faithfully
    configs = [good(SPACE, u) for u in rng.random((N, len(SPACE.params)))]
    with pytest.raises(AssertionError, match="layers: chi2"):
        check_matches_spec([{**c, "layers": int(r)} for c, r in zip(configs, rounded, strict=True)], "rounded")
    with pytest.raises(AssertionError, match="width: chi2"):
        check_matches_spec([{**c, "width": int(w)} for c, w in zip(configs, linear, strict=True)], "linear")
