"""RTE data: both file formats, label and file errors, the eval/test halves, cached tokenisation,
driver-side checks of the model source, and layer-wise parameter groups (no Ray; tiny local model)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data import DataError
from trainables.data.rte import (
    load_folder,
    load_rte,
    majority_accuracy,
    read_jsonl,
    read_tsv,
    split_validation,
    tokenize_rte,
)
from trainables.errors import ModelConfigError as ConfigError
from trainables.registry import MODELS
from trainables.roberta.layerwise import group_lrs, parameter_groups
from trainables.roberta.settings import parse_settings
from trainables.roberta_rte import prepare

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def options(tiny_model: Path, cache: Path, **overrides) -> dict:
    opts = dict(MODELS["roberta_rte"].options)
    opts.update(model_name_or_path=str(tiny_model), data=str(FIXTURES / "superglue"), cache_dir=str(cache))
    opts.update(overrides)
    return opts


def test_jsonl_and_tsv_fixtures_give_the_same_pairs():
    superglue, glue = load_folder(FIXTURES / "superglue"), load_folder(FIXTURES / "glue")
    assert (len(superglue.train), len(superglue.validation)) == (40, 26)
    for a, b in ((superglue.train, glue.train), (superglue.validation, glue.validation)):
        assert a.premises == b.premises and a.hypotheses == b.hypotheses
        assert np.array_equal(a.labels, b.labels)
    assert set(superglue.train.labels.tolist()) == {0, 1}
    # The GLUE file keeps a sentence with a double quote intact (no csv quoting).
    assert any('"Pete"' in p for p in glue.train.premises)
    assert superglue.fingerprint() == glue.fingerprint()
    assert load_rte(str(FIXTURES / "glue")).source == str((FIXTURES / "glue").resolve())


def test_labels_accept_names_and_integers(tmp_path):
    rows = [
        {"premise": "A cat sat.", "hypothesis": "A cat.", "label": label}
        for label in ("entailment", "not_entailment", 0, 1, "1")
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_jsonl(path).labels.tolist() == [0, 1, 0, 1, 1]


@pytest.mark.parametrize("bad", ["contradiction", 2, True, None])
def test_bad_jsonl_label_names_file_line_and_value(tmp_path, bad):
    path = tmp_path / "val.jsonl"
    good = json.dumps({"premise": "It rained.", "hypothesis": "It was wet.", "label": "entailment"})
    path.write_text(
        good + "\n" + good + "\n" + json.dumps({"premise": "a", "hypothesis": "b", "label": bad}) + "\n"
    )
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    message = str(err.value)
    assert f"{path}:3" in message and repr(bad) in message and "\n" not in message


def test_bad_tsv_label_and_missing_column(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tneutral\n")
    with pytest.raises(DataError, match=rf"{path}:3: label 'neutral'"):
        read_tsv(path)
    path.write_text("index\tsentence1\tlabel\n0\tA.\tentailment\n")
    with pytest.raises(DataError, match="lacks column.*sentence2"):
        read_tsv(path)
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\tA.\tentailment\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected 4 tab-separated fields, got 3"):
        read_tsv(path)


def test_missing_files_fields_and_folders(tmp_path):
    with pytest.raises(DataError, match="no RTE files"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "train.jsonl").write_text((FIXTURES / "superglue" / "train.jsonl").read_text())
    with pytest.raises(DataError, match=r"val\.jsonl: file not found"):
        load_folder(tmp_path)
    (tmp_path / "val.jsonl").write_text('{"premise": "A.", "label": 0}\n')
    with pytest.raises(DataError, match=r"val\.jsonl:1: missing field\(s\) hypothesis"):
        load_folder(tmp_path)
    (tmp_path / "val.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match=r"val\.jsonl:1: invalid JSON"):
        load_folder(tmp_path)


def test_eval_test_halves_are_disjoint_seeded_halves():
    halves = split_validation(277, seed=0)
    eval_idx, test_idx = halves["eval"], halves["test"]
    assert (len(eval_idx), len(test_idx)) == (139, 138)
    assert not set(eval_idx) & set(test_idx)
    assert sorted(set(eval_idx) | set(test_idx)) == list(range(277))
    again = split_validation(277, seed=0)
    assert np.array_equal(again["eval"], eval_idx) and np.array_equal(again["test"], test_idx)
    assert not np.array_equal(split_validation(277, seed=1)["eval"], eval_idx)
    with pytest.raises(DataError):
        split_validation(1, seed=0)


def test_majority_baseline():
    assert majority_accuracy(np.array([0, 0, 1]), np.array([0, 1, 1, 1])) == 0.25
    assert majority_accuracy(np.array([1, 1, 0]), np.array([0, 1, 1, 1])) == 0.75


def test_tokenisation_is_cached_and_keyed_by_length_and_data(tmp_path, tokenizer):
    data = load_folder(FIXTURES / "superglue")
    first = tokenize_rte(data, tokenizer, 32, tmp_path)
    second = tokenize_rte(data, tokenizer, 32, tmp_path)
    assert not first.from_cache and second.from_cache and first.path == second.path
    for a, b in zip(first.train.input_ids, second.train.input_ids, strict=True):
        assert np.array_equal(a, b)
    assert max(len(ids) for ids in first.train.input_ids) <= 32
    assert np.array_equal(first.validation.labels, data.validation.labels)
    # Pairs are encoded as <s> premise </s></s> hypothesis </s> with the tokenizer's real ids.
    ids = first.train.input_ids[0].tolist()
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenize_rte(data, tokenizer, 64, tmp_path).path != first.path
    glue = load_folder(FIXTURES / "glue")
    assert tokenize_rte(glue, tokenizer, 32, tmp_path).from_cache  # same pairs, same key
    short = type(data)(
        data.train,
        type(data.validation)(
            data.validation.premises[:4], data.validation.hypotheses[:4], data.validation.labels[:4]
        ),
        data.source,
    )
    assert tokenize_rte(short, tokenizer, 32, tmp_path).path != first.path


def test_prepare_reports_baseline_and_fills_the_cache(tmp_path, tiny_model):
    prepared = prepare(options(tiny_model, tmp_path))
    assert prepared["dataset_sizes"] == {"train": 40, "eval": 13, "test": 13}
    data = load_folder(FIXTURES / "superglue")
    halves = split_validation(26, 0)
    assert prepared["baseline_eval_acc"] == majority_accuracy(
        data.train.labels, data.validation.labels[halves["eval"]]
    )
    assert Path(prepared["token_cache"]).is_file()


def test_prepare_rejects_bad_model_sources_and_options(tmp_path, tiny_model):
    with pytest.raises(DataError, match="neither a save_pretrained folder nor loadable"):
        prepare(options(tiny_model, tmp_path, model_name_or_path=str(tmp_path / "no-such-model")))
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(DataError, match="no weights"):
        prepare(options(tiny_model, tmp_path, model_name_or_path=str(empty)))
    with pytest.raises(ConfigError, match="max_seq_length 512 exceeds the tokenizer's limit of 128"):
        prepare(options(tiny_model, tmp_path, max_seq_length=512))
    with pytest.raises(ConfigError, match="eval_every_steps"):
        prepare(options(tiny_model, tmp_path, eval_every_steps=-1))
    with pytest.raises(DataError, match="no RTE files"):
        prepare(options(tiny_model, tmp_path, data=str(tmp_path)))


def test_settings_validation():
    settings = parse_settings({"lr": 2e-5, "batch_size": 16.0, "epochs": 3, "seed": 4})
    assert settings.batch_size == 16 and settings.classifier_lr == 2e-5 and settings.max_grad_norm == 1.0
    with pytest.raises(ValueError, match="unknown RoBERTa/RTE hyperparameter.*learning_rate"):
        parse_settings({"learning_rate": 1e-5, "batch_size": 16})
    with pytest.raises(ValueError, match="lacks required.*lr"):
        parse_settings({"batch_size": 16})
    assert parse_settings({"lr": 1e-5}).batch_size == 32  # rte_sweep tunes only lr and epochs
    with pytest.raises(ValueError, match="not both"):
        parse_settings({"lr": 1e-5, "batch_size": 16, "warmup_steps": 10, "warmup_ratio": 0.1})
    with pytest.raises(ValueError, match="not both"):  # declared together, even where one drew 0
        parse_settings({"lr": 1e-5, "warmup_steps": 0, "warmup_ratio": 0.1})
    assert parse_settings({"lr": 1e-5, "warmup_steps": 40}).warmup_steps == 40  # still works on its own


def test_layerwise_groups_cover_every_parameter_once_with_increasing_lrs(tiny_model):
    from transformers import AutoModelForSequenceClassification

    from search_spaces import load_space

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=2)
    space = load_space("rte_layerwise")
    config = {
        **space.constants,
        "lr": 3e-5,
        "layer_lr_decay": 0.8,
        "classifier_lr": 2e-4,
        "batch_size": 16,
        "weight_decay": 0.1,
    }
    settings = parse_settings(config)
    groups = parameter_groups(model, settings)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))
    by_name = {g["name"]: g for g in groups}
    # The shipped space: 4 encoder groups of the 4 layers, one each, plus embeddings and classifier.
    order = ["embeddings", "layer_0-1", "layer_1-2", "layer_2-3", "layer_3-4", "classifier"]
    lrs = [by_name[f"{name}/decay"]["lr"] for name in order]
    assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs)
    assert lrs == list(group_lrs(model, settings).values()) and lrs[-2] == 3e-5 and lrs[-1] == 2e-4
    embedding_weight = model.base_model.embeddings.word_embeddings.weight
    assert any(p is embedding_weight for p in by_name["embeddings/decay"]["params"])
    top_layer = set(map(id, model.base_model.encoder.layer[3].parameters()))
    assert top_layer == {
        id(p) for name in ("layer_3-4/decay", "layer_3-4/no_decay") for p in by_name[name]["params"]
    }
    assert {id(p) for p in model.classifier.parameters()} == {
        id(p) for name in ("classifier/decay", "classifier/no_decay") for p in by_name[name]["params"]
    }
    assert all(g["weight_decay"] == (0.1 if g["name"].endswith("/decay") else 0.0) for g in groups)
    assert all(p.ndim == 1 for g in groups if g["name"].endswith("no_decay") for p in g["params"])
    with pytest.raises(ValueError, match="layer_groups \\(5\\) must lie between 1 and the model's 4 encoder layers"):
        parameter_groups(model, parse_settings({**config, "layer_groups": 5}))


def test_every_shipped_rte_space_names_only_known_hyperparameters_and_a_typo_fails_early(tmp_path):
    from experiments.core.config import resolve_config
    from experiments.core.runner import check_space_names
    from search_spaces import SpaceError, available_spaces, load_space

    config = resolve_config("asha", {"model": "roberta_rte"}, {}, {})
    for name in available_spaces():
        if name.startswith("rte_"):
            check_space_names(config, load_space(name))
    typo = tmp_path / "typo.yaml"
    typo.write_text("params:\n  learning_rate: {type: float, low: 1.0e-5, high: 5.0e-5, log: true}\n")
    with pytest.raises(SpaceError, match="roberta_rte has no hyperparameter.*learning_rate; it accepts lr"):
        check_space_names(config, load_space(str(typo)))


def test_asha_and_ahb_spaces_fix_the_schedule_and_every_warmup_ends_before_the_first_rung():
    """Issue 21 item 12: under ASHA/AHB epochs is not searched (the schedule is max_epochs long), and
    warmup is a share of it (0..0.1), so no trial reaches a rung still warming up."""
    import math

    import yaml

    from search_spaces import load_space
    from search_spaces.compile import to_ray
    from trainables.roberta.optimization import linear_schedule

    configs = Path(__file__).resolve().parents[1] / "configs" / "roberta_rte"
    for strategy in ("asha", "ahb"):
        config = yaml.safe_load((configs / f"{strategy}.yaml").read_text())
        space = load_space(config["space"])
        assert "epochs" not in space.names and "epochs" not in space.constants, strategy
        rng = np.random.RandomState(0)
        for _ in range(200):
            sample = {k: d.sample(random_state=rng) if hasattr(d, "sample") else d for k, d in to_ray(space).items()}
            settings = parse_settings({**sample, "seed": 0}, default_epochs=config["max_epochs"])
            steps_per_epoch = math.ceil(2490 / settings.batch_size)  # SuperGLUE RTE's training pairs
            schedule = linear_schedule(settings, steps_per_epoch)
            assert schedule.total_steps == steps_per_epoch * config["max_epochs"]
            assert schedule.warmup_steps < steps_per_epoch * config["grace_period"], (strategy, sample)
    ahb = load_space("rte_hyperopt_ahb")
    assert "warmup_steps" not in ahb.names
    assert (ahb["warmup_ratio"].kind, ahb["warmup_ratio"].low, ahb["warmup_ratio"].high) == ("float", 0.0, 0.1)
    for name in ("rte_layerwise", "rte_layerwise_groups", "rte_sweep"):  # the write-ups' HyperBand spaces
        assert "epochs" not in load_space(name).names, name
