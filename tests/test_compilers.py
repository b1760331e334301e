"""Compilers from one spec to HyperOpt, Dragonfly, the quasi-random unit cube, grid values and PBT mutations."""

import math
import random
from collections import Counter

import numpy as np
import pytest
from hyperopt.pyll import stochastic
from ray.tune.search.variant_generator import generate_variants

from search_spaces import SpaceError, load_space
from search_spaces.compile import (
    from_dragonfly_point,
    from_unit_cube,
    grid_size,
    to_dragonfly_domain,
    to_dragonfly_point,
    to_grid,
    to_hyperopt,
    to_pbt_mutations,
)
from search_spaces.spec import parse_space


def ray_pbt_explore(config: dict, mutations: dict, explore) -> tuple[dict, dict]:
    """One PBT exploration step as Ray's ``PopulationBasedTraining`` takes it (resample 0.25, factors 1.2/0.8).

    Ray has no public function for this step: the scheduler's ``_get_new_config`` calls the
    private module function ``ray.tune.schedulers.pbt._explore`` (Ray 2.60). This helper is the
    one place the tests reach it; ``test_rays_pbt_explore_step_has_the_signature_these_tests_use``
    fails first, and clearly, if an upgrade moves it.
    """
    from ray.tune.schedulers import pbt

    return pbt._explore(config, mutations, 0.25, (1.2, 0.8), explore)


# Every kind of parameter, with small integer ranges so inclusive bounds are visible.
MIXED = parse_space("mixed", {"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "wd": {"type": "float", "low": 0.0, "high": 0.3},
    "layers": {"type": "int", "low": 1, "high": 3},
    "width": {"type": "int", "low": 4, "high": 64, "log": True},
    "act": {"type": "choice", "values": ["relu", "gelu", "silu"]},
    "batch": {"type": "discrete", "values": [40, 61, 79, 102]},
}})


def test_hyperopt_space_samples_inside_the_spec_with_inclusive_bounds():
    space = to_hyperopt(MIXED)
    rng = np.random.default_rng(0)
    samples = [stochastic.sample(space, rng=rng) for _ in range(600)]
    for config in samples:
        assert MIXED.contains(config), config
        assert isinstance(config["layers"], int) and isinstance(config["width"], int)
    assert {c["layers"] for c in samples} == {1, 2, 3}
    assert {c["batch"] for c in samples} == {40, 61, 79, 102}
    assert {c["act"] for c in samples} == {"relu", "gelu", "silu"}
    widths = sorted(c["width"] for c in samples)
    assert widths[0] <= 5 and widths[-1] >= 60
    assert 10 < np.median(widths) < 22  # log-uniform: the median is near sqrt(4 * 64) = 16
    lrs = sorted(c["lr"] for c in samples)
    assert lrs[0] < 3e-4 and lrs[-1] > 3e-2


def test_dragonfly_domain_of_cgcnn_nersc_holds_the_domain_as_written():
    domain = {d["name"]: d for d in to_dragonfly_domain(load_space("cgcnn_nersc"))}
    assert domain["batch_size"] == {"name": "batch_size", "type": "discrete_numeric",
                                    "items": [40, 61, 79, 102, 120, 141, 163, 183, 201, 210, 225, 238]}
    # Integers are searched as floats over [low, high + 1) and floored (Dragonfly's own int type
    # never proposes its upper bound): int 1..100 is the float range 1..101.
    assert domain["atom_embedding_size"] == {"name": "atom_embedding_size", "type": "float", "min": 1.0, "max": 101.0}
    assert domain["num_graph_conv_layers"]["max"] == 41 and domain["fc_feat_size"]["max"] == 151
    assert domain["lr"] == {"name": "lr", "type": "float", "min": 0.001, "max": 0.1}


def test_dragonfly_points_round_trip_and_log_parameters_use_log_coordinates():
    domain = {d["name"]: d for d in to_dragonfly_domain(MIXED)}
    assert domain["lr"]["min"] == pytest.approx(math.log(1e-4)) and domain["lr"]["max"] == pytest.approx(math.log(0.1))
    # A log int 4..64: log-uniform over [4, 65), so 4 gets log(5/4) of the log range, as under Ray.
    assert (domain["width"]["min"], domain["width"]["max"]) == pytest.approx((math.log(4), math.log(65)))
    assert domain["layers"] == {"name": "layers", "type": "float", "min": 1.0, "max": 4.0}
    assert domain["act"] == {"name": "act", "type": "discrete", "items": ["relu", "gelu", "silu"]}
    config = {"lr": 3e-3, "wd": 0.1, "layers": 2, "width": 17, "act": "gelu", "batch": 79}
    point = to_dragonfly_point(MIXED, config)
    assert point[0] == pytest.approx(math.log(3e-3)) and point[5] == 79.0
    assert point[2] == 2.5 and math.exp(point[3]) == pytest.approx(math.sqrt(17 * 18))  # the integers' cell centres
    back = from_dragonfly_point(MIXED, point)
    assert back["lr"] == pytest.approx(3e-3) and {k: v for k, v in back.items() if k != "lr"} == {
        "wd": 0.1, "layers": 2, "width": 17, "act": "gelu", "batch": 79}
    # Anywhere in an integer's cell maps to it, its upper edge (high + 1) to the upper bound;
    # Dragonfly hands discrete numbers back as floats: the spec's own value comes out.
    edge = from_dragonfly_point(MIXED, [math.log(0.1), 0.3, 4.0, math.log(65), "silu", 102.0])
    assert (edge["layers"], edge["width"], edge["batch"]) == (3, 64, 102)
    assert type(edge["layers"]) is int and type(edge["width"]) is int
    assert from_dragonfly_point(MIXED, [math.log(0.1), 0.3, 1.999, math.log(4.999), "silu", 40.0])["width"] == 4


def test_dragonfly_loads_discrete_numbers_that_a_dash_joined_string_cannot_hold():
    from experiments.searchers.dragonfly import import_dragonfly

    space = parse_space("d", {"params": {"shift": {"type": "discrete", "values": [-1, 1e-05, 0.5]}}})
    config = import_dragonfly().load_config({"domain": to_dragonfly_domain(space)})
    # "-1-1e-05-0.5" split on "-" was ['', '1', '1e', '05', '0.5']: a crash, or wrong numbers.
    assert config.domain.list_of_domains[0].list_of_list_of_items == [[-1, 1e-05, 0.5]]
    assert from_dragonfly_point(space, [np.float64(1e-05)]) == {"shift": 1e-05}
    assert from_dragonfly_point(space, [np.float64(-1.0)]) == {"shift": -1}


def test_unit_cube_corners_are_the_bounds_and_log_scale_is_respected():
    low = from_unit_cube(MIXED, [0.0] * 6)
    assert low == {"lr": pytest.approx(1e-4), "wd": 0.0, "layers": 1, "width": 4, "act": "relu", "batch": 40}
    high = from_unit_cube(MIXED, [1.0] * 6)
    assert high == {"lr": pytest.approx(0.1), "wd": pytest.approx(0.3), "layers": 3, "width": 64, "act": "silu",
                    "batch": 102}
    mid = from_unit_cube(MIXED, [0.5] * 6)
    assert mid["lr"] == pytest.approx(math.sqrt(1e-4 * 1e-1))  # geometric, not arithmetic, midpoint
    assert mid["wd"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="has 2 coordinates"):
        from_unit_cube(MIXED, [0.5, 0.5])


def test_unit_cube_gives_every_integer_and_value_an_equal_share():
    # An evenly spaced sweep of one coordinate at a time: equal cells mean equal counts.
    sweep = (np.arange(3000) + 0.5) / 3000
    configs = [from_unit_cube(MIXED, [u] * 6) for u in sweep]
    assert set(Counter(c["layers"] for c in configs).values()) == {1000}
    assert set(Counter(c["act"] for c in configs).values()) == {1000}
    assert set(Counter(c["batch"] for c in configs).values()) == {750}
    widths = Counter(c["width"] for c in configs)
    assert set(widths) == set(range(4, 65))
    # Log integers: a cell's share is its width on the log axis, so 4 gets ~ log(5/4)/log(65/4).
    assert widths[4] / 3000 == pytest.approx(math.log(5 / 4) / math.log(65 / 4), abs=0.002)
    assert widths[4] > widths[32]


def test_grid_of_rte_grid_is_the_full_product_exactly_once():
    space = load_space("rte_grid")
    assert grid_size(space) == 18
    configs = [config for _, config in generate_variants(to_grid(space))]
    points = [(c["batch_size"], c["lr"], c["epochs"]) for c in configs]
    assert len(points) == 18 and len(set(points)) == 18
    assert set(points) == {(b, lr, e) for b in (16, 32) for lr in (2e-5, 3e-5, 5e-5) for e in (2, 3, 4)}


def test_grid_of_a_space_without_grid_values_names_space_and_parameter():
    with pytest.raises(SpaceError, match="search space 'cgcnn_default': parameter 'lr' .* has no 'grid' values"):
        grid_size(load_space("cgcnn_default"))


def test_pbt_mutations_cover_only_mutable_parameters():
    space = parse_space("p", {"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 5e-5, "log": True},
        "wd": {"type": "float", "low": 0.0, "high": 0.3},
        "bs": {"type": "choice", "values": [16, 32, 64], "mutable": False},
        "epochs": {"type": "discrete", "values": [2, 3, 4, 5], "mutable": False},
        "warmup": {"type": "int", "low": 0, "high": 500},
        "drop": {"type": "discrete", "values": [0.0, 0.1, 0.2]},
    }})
    mutations, _ = to_pbt_mutations(space)
    # Lists (resample or shift) and log domains go to Ray; linear ranges to the explore function.
    assert set(mutations) == {"lr", "drop"}
    assert mutations["drop"] == [0.0, 0.1, 0.2]


def test_pbt_exploration_through_rays_explore_stays_in_bounds_and_is_log_scale_for_log_params():
    space = load_space("rte_pbt")
    mutations, explore = to_pbt_mutations(space, seed=1)
    random.seed(0)
    base = {"batch_size": 32, "weight_decay": 0.29, "lr": 4.9e-5}
    lr_ratios, wd_steps = [], []
    for _ in range(400):
        # Ray's own perturbation step (what PopulationBasedTraining calls), with our explore function.
        new, _ = ray_pbt_explore(base, mutations, explore)
        assert space.contains(new), new
        assert new["batch_size"] == 32  # mutable: false
        lr_ratios.append(new["lr"] / base["lr"])
        wd_steps.append(round(new["weight_decay"] - base["weight_decay"], 10))
    # Log parameter: multiplied by 0.8, or by 1.2 and clipped to the upper bound, or resampled.
    assert sum(r == pytest.approx(0.8) for r in lr_ratios) > 100
    assert sum(r == pytest.approx(5e-5 / 4.9e-5) for r in lr_ratios) > 100
    # Linear parameter: additive steps of 0.2 * range / 2 = 0.03, clipped at 0.3, or resampled.
    assert sum(s == pytest.approx(-0.03) for s in wd_steps) > 100
    assert sum(s == pytest.approx(0.01) for s in wd_steps) > 100


def test_rays_pbt_explore_step_has_the_signature_these_tests_use():
    import inspect

    from ray.tune.schedulers import pbt

    assert list(inspect.signature(pbt._explore).parameters) == [
        "config", "mutations", "resample_probability", "perturbation_factors", "custom_explore_fn"]
    assert "_explore(" in inspect.getsource(pbt.PopulationBasedTraining._get_new_config)


def test_pbt_resamples_a_choice_and_never_moves_it_to_a_neighbour():
    space = parse_space("c", {"params": {"act": {"type": "choice", "values": ["relu", "gelu", "silu", "tanh"]}}})
    mutations, explore = to_pbt_mutations(space, seed=0)
    assert mutations == {}  # a list would make Ray shift it to a neighbour in the list
    random.seed(0)
    n = 4000
    moves = Counter(ray_pbt_explore({"act": "gelu"}, mutations, explore)[0]["act"] for _ in range(n))
    # Kept unless resampled (p = 0.25), and a resample picks any of the 4 values: gelu stays with
    # 0.75 + 0.25 / 4, every other value, neighbour in the list or not, comes with 0.25 / 4.
    assert moves["gelu"] / n == pytest.approx(0.8125, abs=0.02)
    for value in ("relu", "silu", "tanh"):
        assert moves[value] / n == pytest.approx(0.0625, abs=0.012), moves


def test_pbt_linear_int_steps_by_at_least_one():
    space = parse_space("p", {"params": {"warmup": {"type": "int", "low": 0, "high": 4}}})
    _, explore = to_pbt_mutations(space, resample_probability=0.0, seed=0)
    values = {explore({"warmup": 2})["warmup"] for _ in range(50)}
    assert values == {1, 3}


def test_rte_spaces_are_the_write_ups_numbers():
    grid = load_space("rte_grid")
    assert grid["batch_size"].values == (16, 32)
    assert grid["lr"].grid == (2e-5, 3e-5, 5e-5) and grid["epochs"].grid == (2, 3, 4)
    ahb = load_space("rte_hyperopt_ahb")
    assert [(p.name, p.kind, p.low, p.high) for p in ahb.params] == [
        ("batch_size", "int", 16, 64), ("weight_decay", "float", 0.0, 0.3), ("lr", "float", 1e-5, 5e-5),
        # The write-up's warmup_steps 0..500 (about half the trials ended inside warm-up) is a ratio of the
        # schedule, and its epochs 2..5 is the schedule's fixed length under ASHA/AHB (issue 21 item 12).
        ("warmup_ratio", "float", 0.0, 0.1)]
    pbt = load_space("rte_pbt")
    assert pbt["batch_size"].values == (16, 32, 64) and not pbt["batch_size"].mutable
    assert "epochs" not in pbt.names  # one schedule length for every member: the experiment's max_epochs
    assert (pbt["lr"].low, pbt["lr"].high) == (1e-5, 5e-5) and pbt["lr"].mutable
    assert (pbt["weight_decay"].low, pbt["weight_decay"].high) == (0.0, 0.3) and pbt["weight_decay"].mutable
    sweep = load_space("rte_sweep")
    assert (sweep["lr"].low, sweep["lr"].high, sweep["lr"].log) == (0.0, 4e-4, False)
    assert sweep.names == ["lr"]  # the write-up's epochs 1..40 is the schedule's length: --max-epochs 40
    for space in (grid, ahb, pbt, sweep):
        assert set(space.names) <= {"lr", "batch_size", "weight_decay", "warmup_ratio", "epochs"}


def test_hyperopt_searches_a_discrete_list_as_an_ordered_index_that_tpe_learns():
    """An ordered discrete list is one uniform draw floored to an index (ordered for TPE), not a category."""
    from hyperopt import Domain
    from ray.tune.search.hyperopt import HyperOptSearch

    domain = Domain(lambda config: 0.0, to_hyperopt(MIXED))
    kinds = {label: node.name for label, node in domain.params.items()}
    assert kinds["batch"] == "uniform"  # hp.choice would be a randint over unrelated categories
    assert kinds["act"] == "randint"  # an unordered choice stays categorical
    searcher = HyperOptSearch(space=to_hyperopt(MIXED), metric="loss", mode="min", n_initial_points=4,
                              random_state_seed=0)
    proposed = []
    for i in range(12):  # past the initial random points: TPE proposes from the told losses
        config = searcher.suggest(str(i))
        assert MIXED.contains(config), config
        proposed.append(config["batch"])
        searcher.on_trial_complete(str(i), {"loss": abs(config["batch"] - 61) + 0.0})
    assert set(proposed) <= {40, 61, 79, 102}
    told = [t["misc"]["vals"]["batch"][0] for t in searcher._hpopt_trials.trials]
    assert all(0 <= draw < 4 for draw in told)  # the trials database holds the index draw
    # A point to evaluate names the discrete value; Ray turns a switch's value into its index, the draw.
    start = {"lr": 1e-3, "wd": 0.1, "layers": 2, "width": 8, "act": "gelu", "batch": 61}
    given = HyperOptSearch(space=to_hyperopt(MIXED), metric="loss", mode="min", points_to_evaluate=[dict(start)],
                           random_state_seed=0)
    assert given.suggest("0") == start
