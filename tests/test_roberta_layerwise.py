"""Independent per-group learning rates as the Simple Transformers write-up tuned them
(``layer_<start>-<end>``, ``params_<name>``): names from ``layer_groups`` and the model's depth, every
parameter in exactly one group (RoBERTa's naming here, BERT's in test_roberta_pretrained.py), clear
errors for names that do not fit the model, the shipped ``rte_layerwise_groups`` space, training and
a PBT-style restore with them (tiny local RoBERTa, no Ray)."""

import sys
from pathlib import Path

import pytest
import torch

from search_spaces import load_space
from search_spaces.compile import to_ray
from trainables.errors import ModelConfigError
from trainables.registry import MODELS
from trainables.roberta.layerwise import group_lrs, layer_group_names, parameter_groups
from trainables.roberta.settings import parse_settings, unknown_hyperparameters
from trainables.roberta_rte import RobertaRTETrainable, prepare

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402

# The tiny RoBERTa has 4 encoder layers: 2 groups of 2, each head parameter named on its own.
GROUPS = {
    "lr": 1e-5,
    "layer_groups": 2,
    "layer_0-2": 2e-5,
    "layer_2-4": 4e-5,
    "params_classifier.out_proj.weight": 3e-4,
    "params_classifier.out_proj.bias": 2e-4,
    "classifier_lr": 1e-4,
    "weight_decay": 0.1,
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="module")
def model(tiny_model):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=2)


def owners(groups: list[dict]) -> dict[int, str]:
    """Parameter id -> its group's name, failing if a parameter is in two groups."""
    seen: dict[int, str] = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in seen, f"in {seen.get(id(p))} and {group['name']}"
            seen[id(p)] = group["name"].split("/")[0]
    return seen


def test_group_names_follow_layer_groups_and_depth():
    assert layer_group_names(24, 4) == ["layer_0-6", "layer_6-12", "layer_12-18", "layer_18-24"]  # the write-up's
    assert layer_group_names(12, 4) == ["layer_0-3", "layer_3-6", "layer_6-9", "layer_9-12"]
    assert layer_group_names(6, 4) == ["layer_0-2", "layer_2-3", "layer_3-5", "layer_5-6"]
    assert layer_group_names(4, 1) == ["layer_0-4"]
    with pytest.raises(ModelConfigError, match=r"layer_groups \(5\) must lie between 1 and the model's 4"):
        layer_group_names(4, 5)


def test_independent_group_lrs_cover_every_parameter_once(model):
    settings = parse_settings(GROUPS)
    groups = parameter_groups(model, settings)
    owner = owners(groups)
    assert set(owner) == {id(p) for p in model.parameters()}
    lrs = {g["name"].split("/")[0]: g["lr"] for g in groups}
    assert lrs == {
        "embeddings": 1e-5,  # outside every group: lr
        "layer_0-2": 2e-5,
        "layer_2-4": 4e-5,
        "params_classifier.out_proj.weight": 3e-4,
        "params_classifier.out_proj.bias": 2e-4,
        "classifier": 1e-4,  # the head's unnamed parameters (classifier.dense): classifier_lr
    }
    assert lrs == group_lrs(model, settings)
    layers = model.roberta.encoder.layer
    for index, name in ((0, "layer_0-2"), (1, "layer_0-2"), (2, "layer_2-4"), (3, "layer_2-4")):
        assert {owner[id(p)] for p in layers[index].parameters()} == {name}
    assert {owner[id(p)] for p in model.roberta.embeddings.parameters()} == {"embeddings"}
    assert owner[id(model.classifier.out_proj.weight)] == "params_classifier.out_proj.weight"
    assert {owner[id(p)] for p in model.classifier.dense.parameters()} == {"classifier"}
    assert all(g["weight_decay"] == (0.1 if g["name"].endswith("/decay") else 0.0) for g in groups)


def test_group_names_that_do_not_fit_the_model_are_one_clear_error(model):
    # The write-up's 24-layer names on this 4-layer model.
    large = {"lr": 1e-5, **{f"layer_{s}-{s + 6}": 1e-5 for s in range(0, 24, 6)}}
    with pytest.raises(ModelConfigError, match=(
            r"layer groups layer_0-6, layer_6-12, layer_12-18, layer_18-24 do not fit this model's 4 encoder "
            r"layers; in 4 groups they are layer_0-1, layer_1-2, layer_2-3, layer_3-4")):
        parameter_groups(model, parse_settings(large))
    with pytest.raises(ModelConfigError, match=r"in 2 groups they are layer_0-2, layer_2-4"):
        parameter_groups(model, parse_settings({"lr": 1e-5, "layer_0-1": 1e-5, "layer_1-4": 1e-5}))
    with pytest.raises(ModelConfigError, match=r"no parameter 'classifier.weight'; its head's are classifier.dense"):
        parameter_groups(model, parse_settings({"lr": 1e-5, "params_classifier.weight": 1e-4}))  # BERT's name


def test_settings_refuse_inconsistent_groups():
    with pytest.raises(ValueError, match="cover the encoder layers from 0 without gaps or overlaps"):
        parse_settings({"lr": 1e-5, "layer_0-2": 1e-5, "layer_3-4": 1e-5})
    with pytest.raises(ValueError, match="cover the encoder layers from 0 without gaps or overlaps"):
        parse_settings({"lr": 1e-5, "layer_0-3": 1e-5, "layer_2-4": 1e-5})
    with pytest.raises(ValueError, match="layer_groups is 3 but the config names 2 layer groups"):
        parse_settings({"lr": 1e-5, "layer_groups": 3, "layer_0-2": 1e-5, "layer_2-4": 1e-5})
    with pytest.raises(ValueError, match="layer_lr_decay or independent"):
        parse_settings({"lr": 1e-5, "layer_lr_decay": 0.8, "layer_0-2": 1e-5, "layer_2-4": 1e-5})
    with pytest.raises(ValueError, match="layer_0-2 is a learning rate"):
        parse_settings({"lr": 1e-5, "layer_0-2": -1.0, "layer_2-4": 1e-5})
    assert parse_settings({"lr": 1e-5, "layer_0-2": 1e-5, "layer_2-4": 2e-5}).layer_groups == 2  # from the names
    assert unknown_hyperparameters(["lr", "layer_0-6", "params_classifier.dense.bias", "layer_6", "lrate"]) == [
        "layer_6", "lrate"]


def test_shipped_rte_layerwise_groups_fits_a_24_layer_roberta():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    space = load_space("rte_layerwise_groups")
    large = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=24, num_attention_heads=2, intermediate_size=8,
        max_position_embeddings=20, num_labels=2))  # roberta-large's depth and head, tiny widths
    head = [n for n, _ in large.named_parameters() if n.startswith("classifier.")]
    assert space.names == layer_group_names(24, 4) + [f"params_{n}" for n in head]
    assert space.constants["layer_groups"] == 4
    sample = {name: domain.sample() if hasattr(domain, "sample") else domain for name, domain in to_ray(space).items()}
    groups = parameter_groups(large, parse_settings(sample))
    assert set(owners(groups)) == {id(p) for p in large.parameters()}
    assert {g["name"].split("/")[0]: g["lr"] for g in groups}["layer_18-24"] == sample["layer_18-24"]


def test_runner_accepts_the_group_names_and_still_rejects_a_typo(tmp_path):
    from experiments.core.config import resolve_config
    from experiments.core.runner import check_space_names
    from search_spaces import SpaceError

    config = resolve_config("asha", {"model": "roberta_rte"}, {}, {})
    check_space_names(config, load_space("rte_layerwise_groups"))
    typo = tmp_path / "typo.yaml"
    typo.write_text("params:\n  layers_0-6: {type: float, low: 1.0e-6, high: 1.0e-4, log: true}\n")
    with pytest.raises(SpaceError, match="no hyperparameter.*layers_0-6; it accepts .*layer_<start>-<end>"):
        check_space_names(config, load_space(str(typo)))


def test_trainable_trains_and_restores_with_independent_group_lrs(tiny_model, tmp_path):
    options = dict(MODELS["roberta_rte"].options)
    options.update(model_name_or_path=str(tiny_model), data=str(FIXTURES / "superglue"),
                   cache_dir=str(tmp_path / "cache"), cpus_per_trial=1, max_epochs=2)
    prepare(options)

    class Bound(RobertaRTETrainable):
        def setup(self, config):
            super().setup(config, options)

    config = {**GROUPS, "batch_size": 8, "seed": 0}
    donor = Bound(config)
    receiver = Bound({**config, "layer_0-2": 1e-6, "params_classifier.out_proj.bias": 5e-3})
    try:
        result = donor.train()  # 5 of the schedule's 10 steps (max_epochs 2): half-way down
        assert result["epoch"] == 1.0 and torch.isfinite(torch.tensor(result["train_loss"]))
        lrs = {g["name"]: g["lr"] for g in donor.optimizer.param_groups}
        assert lrs["layer_0-2/decay"] == pytest.approx(2e-5 * 0.5)
        assert lrs["params_classifier.out_proj.weight/decay"] == pytest.approx(3e-4 * 0.5)
        donor.save_checkpoint(str(tmp_path))
        receiver.load_checkpoint(str(tmp_path))
        lrs = {g["name"]: g["lr"] for g in receiver.optimizer.param_groups}
        assert lrs["layer_0-2/no_decay"] == pytest.approx(1e-6 * 0.5)  # the receiver's own group lrs
        assert lrs["params_classifier.out_proj.bias/no_decay"] == pytest.approx(5e-3 * 0.5)
        assert lrs["layer_2-4/decay"] == pytest.approx(4e-5 * 0.5)
        # A new trial on the reused actor: back to one geometric decay over 4 groups.
        assert receiver.reset_config({"lr": 3e-5, "layer_groups": 4, "layer_lr_decay": 0.5, "batch_size": 8})
        names = [g["name"] for g in receiver.optimizer.param_groups if g["name"].endswith("/decay")]
        assert names == ["embeddings/decay", "layer_0-1/decay", "layer_1-2/decay", "layer_2-3/decay",
                         "layer_3-4/decay", "classifier/decay"]
    finally:
        donor.stop()
        receiver.stop()


def test_a_space_whose_groups_do_not_fit_the_checkpoint_fails_on_the_driver_before_any_trial(tiny_model, tmp_path):
    options = {**MODELS["roberta_rte"].options, **MODELS["roberta_rte"].smoke_options,
               "model_name_or_path": str(tiny_model), "data": str(FIXTURES / "glue"), "cache_dir": str(tmp_path)}
    prepared = prepare(options)
    assert prepared["encoder_layers"] == 4
    space = load_space("rte_layerwise_groups")  # 4 groups of roberta-large's 24 layers
    with pytest.raises(ModelConfigError, match=r"layer groups layer_0-6, layer_6-12, layer_12-18, layer_18-24 do "
                                               r"not fit this model's 4 encoder layers; in 4 groups they are "
                                               r"layer_0-1, layer_1-2, layer_2-3, layer_3-4"):
        MODELS["roberta_rte"].check_space(set(space.names), dict(space.constants), prepared)
    fitting = {k for k in GROUPS if k.startswith("layer_") and k != "layer_groups"}
    MODELS["roberta_rte"].check_space(fitting, {"layer_groups": 2}, prepared)
    MODELS["roberta_rte"].check_space({"lr"}, {}, prepared)  # no groups: nothing to check


@pytest.mark.slow
def test_run_asha_with_such_a_space_is_one_line_and_exit_2(tiny_model, tmp_path, capsys, monkeypatch):
    from experiments.core.runner import main

    monkeypatch.setenv("HPO_SUITE_CACHE", str(tmp_path / "cache"))
    code = main("asha", "test", ["--model", "roberta_rte", "--model-name-or-path", str(tiny_model), "--data",
                                 str(FIXTURES / "glue"), "--space", "rte_layerwise_groups", "--smoke-test",
                                 "--gpus-per-trial", "0", "--storage-path", str(tmp_path), "--name", "groups"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: the search space's layer groups layer_0-6"), err[-3:]
    assert not (tmp_path / "groups").exists()  # no experiment folder: nothing started
