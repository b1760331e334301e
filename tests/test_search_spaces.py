"""Search-space specs: validation at load time and compilation to Ray Tune."""

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from search_spaces import SpaceError, available_spaces, load_space
from search_spaces.compile import grid_size, to_grid, to_ray
from search_spaces.spec import parse_space


def test_shipped_spaces_load_and_compile():
    names = available_spaces()
    assert {"cgcnn_default", "cgcnn_nersc"} <= set(names)
    for name in names:
        space = load_space(name)
        compiled = to_ray(space)
        assert set(space.names) <= set(compiled)


def test_cgcnn_nersc_is_the_dragonfly_domain_as_written():
    space = load_space("cgcnn_nersc")
    assert (space["atom_embedding_size"].low, space["atom_embedding_size"].high) == (1, 100)
    assert (space["num_graph_conv_layers"].low, space["num_graph_conv_layers"].high) == (1, 40)
    assert (space["fc_feat_size"].low, space["fc_feat_size"].high) == (1, 150)
    assert (space["num_fc_layers"].low, space["num_fc_layers"].high) == (1, 40)
    assert (space["lr"].low, space["lr"].high) == (0.001, 0.1)
    assert space["batch_size"].kind == "discrete"
    assert space["batch_size"].values == (40, 61, 79, 102, 120, 141, 163, 183, 201, 210, 225, 238)


def test_ray_compilation_samples_inside_the_spec():
    # Its own space: the shipped ones change with the models they serve.
    space = parse_space("r", {"params": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "batch_size": {"type": "choice", "values": [16, 32, 64]},
        "num_fc_layers": {"type": "int", "low": 1, "high": 3},
    }})
    compiled = to_ray(space)
    assert isinstance(compiled["lr"], Float) and isinstance(compiled["batch_size"], Categorical)
    assert isinstance(compiled["num_fc_layers"], Integer)
    samples = [{k: d.sample() for k, d in compiled.items()} for _ in range(400)]
    for config in samples:
        assert space.contains(config), config
    # Inclusive integer bounds: Ray's randint excludes its upper bound, the spec does not.
    assert {c["num_fc_layers"] for c in samples} == {1, 2, 3}
    lrs = sorted(c["lr"] for c in samples)
    assert lrs[0] < 1e-3 and lrs[-1] > 1e-2  # log-uniform covers the decades


def test_grid_compilation_is_the_full_product():
    space = parse_space("g", {"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 5e-5, "grid": [2e-5, 3e-5, 5e-5]},
        "batch_size": {"type": "choice", "values": [16, 32]},
        "epochs": {"type": "int", "low": 2, "high": 4, "grid": [2, 3, 4]},
    }})
    assert grid_size(space) == 18
    grid = to_grid(space)
    assert grid["batch_size"] == {"grid_search": [16, 32]}
    assert grid["lr"] == {"grid_search": [2e-5, 3e-5, 5e-5]}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "lower bound 0.1 must be below upper bound 0.01"),
        ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log scale needs positive bounds"),
        ({"bs": {"type": "choice", "values": []}}, "'values' must be a non-empty list"),
        ({"bs": {"type": "discrete", "values": [1, "a"]}}, "discrete values must be numbers"),
        ({"n": {"type": "int", "low": 1.5, "high": 4}}, "int bounds must be whole numbers"),
        ({"n": {"type": "integer", "low": 1, "high": 4}}, "type must be one of"),
        ({"n": {"type": "int", "low": 1, "hihg": 4}}, "unknown key(s) ['hihg']"),
        ({"n": {"type": "int", "low": 1, "high": 4, "grid": [0, 2]}}, "grid values [0, 2] fall outside"),
    ],
)
def test_bad_specs_fail_with_one_line_naming_space_and_parameter(params, fragment):
    with pytest.raises(SpaceError) as info:
        parse_space("myspace", {"params": params})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"search space 'myspace', parameter '{next(iter(params))}'")
    assert fragment in message


def test_unknown_space_names_the_shipped_ones(tmp_path):
    with pytest.raises(SpaceError, match="unknown search space 'nope'.*cgcnn_default"):
        load_space("nope")
    bad = tmp_path / "broken.yaml"
    bad.write_text("params: {lr: {type: float, low: 1\n")
    with pytest.raises(SpaceError, match="broken.yaml line .*invalid YAML"):
        load_space(str(bad))
