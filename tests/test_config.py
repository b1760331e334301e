"""Config resolution: defaults < YAML < --smoke-test < CLI flags; clear one-line errors."""

import pytest

from experiments.core.config import ConfigError, build_parser, resolve_config
from experiments.core.strategies import STRATEGIES


def resolve(argv, strategy="asha"):
    args = vars(build_parser(strategy, "test").parse_args(argv))
    chosen = STRATEGIES[strategy]
    return resolve_config(strategy, args, {"search": chosen.searchers[0]}, chosen.smoke)


def test_default_config_file_is_used_and_cli_overrides_it(tmp_path):
    config = resolve([])
    assert config.config_file.endswith("configs/cgcnn/asha.yaml")
    assert config.model == "cgcnn" and config.space == "cgcnn_default" and config.metric == "val_mae"
    assert config.grace_period >= 3
    config = resolve(["--num-samples", "7", "--seed", "3", "--data", str(tmp_path)])
    assert config.num_samples == 7 and config.seed == 3
    assert config.model_options["data"] == str(tmp_path)


def test_smoke_test_shrinks_but_explicit_flags_win():
    config = resolve(["--smoke-test"])
    assert config.num_samples == STRATEGIES["asha"].smoke["num_samples"]
    assert config.model_options["dataset_size"] < 2000
    config = resolve(["--smoke-test", "--num-samples", "5"])
    assert config.num_samples == 5


def test_yaml_snapshot_round_trips(tmp_path):
    import yaml

    config = resolve(["--smoke-test", "--num-samples", "5", "--seed", "9"])
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config.to_yaml_dict()))
    again = resolve(["--config", str(path)])
    assert again.to_yaml_dict() == config.to_yaml_dict()


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("num_sample: 4\n", "unknown config key 'num_sample'; did you mean 'num_samples'?"),
        ("num_samples: many\n", "'num_samples' must be int"),
        ("num_samples: 3\nseed: [1\n", "line 3: invalid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("num_samples: 0\n", "num-samples must be a positive integer"),
        ("max_epochs: -1\n", "max-epochs must be a positive integer"),
        ("search: hyperopts\n", "did you mean 'hyperopt'"),
        ("grace_period: 20\nmax_epochs: 5\n", "grace_period (20) must not exceed max-epochs (5)"),
        ("model: bert\n", "unknown model 'bert'; available: cgcnn"),
    ],
)
def test_bad_yaml_is_one_clear_line(tmp_path, yaml_text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        resolve(["--config", str(path)])
    assert "\n" not in str(info.value)
    assert fragment in str(info.value)


def test_bad_flags(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'bert'"):
        resolve(["--model", "bert"])
    with pytest.raises(ConfigError, match="cpus-per-trial must be positive"):
        resolve(["--cpus-per-trial", "0"])
    with pytest.raises(ConfigError, match="config file not found"):
        resolve(["--config", "/nonexistent/x.yaml"])
    with pytest.raises(ConfigError, match="storage path .* is not a writable directory"):
        (tmp_path / "afile").write_text("")
        resolve(["--storage-path", str(tmp_path / "afile" / "results")])
