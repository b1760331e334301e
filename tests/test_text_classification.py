"""Any classification task in local files for the transformer: csv/tsv/jsonl, text and label fields,
labels from the training file, num_labels and label names in the model config, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data import DataError
from trainables.data.rte import load_rte, majority_accuracy, read_token_cache, tokenize_rte
from trainables.data.text_classification import parse_text_fields, read_examples
from trainables.registry import MODELS, bind_options
from trainables.roberta_rte import RobertaRTETrainable, prepare

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402

THREE = ("maybe", "no", "yes")


def fixture_pairs(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "superglue" / name).read_text().splitlines()]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def three_label_pairs(folder: Path) -> Path:
    """The fixture's pairs as a CSV task with its own field names and three string labels."""
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in (("train.jsonl", "train.csv"), ("val.jsonl", "dev.csv")):
        rows = [{"claim": r["premise"], "evidence": r["hypothesis"], "verdict": THREE[i % 3]}
                for i, r in enumerate(fixture_pairs(source))]
        write_csv(folder / target, rows)
    return folder


def one_field_sentences(folder: Path) -> Path:
    """Single sentences (the fixture's premises) with two labels, as sentence + label (the defaults)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in (("train.jsonl", "train.csv"), ("val.jsonl", "validation.csv")):
        write_csv(folder / target, [{"sentence": r["premise"], "label": ("neg", "pos")[r["label"] == "entailment"]}
                                    for r in fixture_pairs(source)])
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


def test_three_label_pairs_and_single_sentences(tmp_path: Path) -> None:
    data = load_rte(str(three_label_pairs(tmp_path / "three")), "claim,evidence", "verdict")
    assert data.label_names == THREE
    assert (len(data.train), len(data.validation)) == (40, 26)
    assert data.train.labels.tolist()[:4] == [0, 1, 2, 0]  # maybe, no, yes, maybe: ids in sorted-name order
    assert data.train.hypotheses is not None and data.train.premises[0] == fixture_pairs("train.jsonl")[0]["premise"]
    assert 0 < majority_accuracy(data.train.labels, data.validation.labels) < 1  # any number of labels
    single = load_rte(str(one_field_sentences(tmp_path / "one")))  # default fields: sentence, label
    assert single.label_names == ("neg", "pos") and single.train.hypotheses is None
    # Integer labels sort as numbers; RTE's folders without flags still read as RTE.
    rows = [{"text": f"sentence {i}", "label": i % 11} for i in range(22)]
    (tmp_path / "ints").mkdir()
    (tmp_path / "ints" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ints" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    assert load_rte(str(tmp_path / "ints")).label_names == tuple(str(i) for i in range(11))
    assert load_rte(str(FIXTURES / "superglue")).label_names == ("entailment", "not_entailment")
    assert parse_text_fields(["a", "b"]) == ("a", "b") and parse_text_fields("a") == ("a",)


def test_token_cache_keeps_the_label_names(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    data = load_rte(str(one_field_sentences(tmp_path / "one")))
    tokens = tokenize_rte(data, tokenizer, 64, tmp_path / "cache")
    assert tokens.label_names == ("neg", "pos") and not tokens.from_cache
    assert read_token_cache(tokens.path).label_names == ("neg", "pos")
    # A single sentence: <s> sentence </s>, no second segment.
    assert tokens.train.input_ids[0].tolist() == tokenizer(data.train.premises[0])["input_ids"]


def one_line_error(call, *parts: str) -> None:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_errors(tmp_path: Path) -> None:
    folder = three_label_pairs(tmp_path / "three")
    one_line_error(lambda: load_rte(str(folder), "claim,proof", "verdict"),
                   "train.csv: no field(s) proof (the file's fields: claim, evidence, verdict)")
    one_line_error(lambda: load_rte(str(folder), "claim,evidence"),
                   "train.csv: no label field 'label' (the file's fields: claim, evidence, verdict)")
    one_line_error(lambda: load_rte(str(folder)), "train.csv: none of the default text fields")
    one_line_error(lambda: load_rte(str(folder), "a,b,c"), "give one field")
    dev = (folder / "dev.csv").read_text().splitlines()
    (folder / "dev.csv").write_text("\n".join(dev + ["A claim.,Some evidence.,unsure"]) + "\n")
    one_line_error(lambda: load_rte(str(folder), "claim,evidence", "verdict"),
                   "dev.csv: label(s) 'unsure' not in the training file", "(its labels: maybe, no, yes)")
    (folder / "dev.csv").write_text("")
    one_line_error(lambda: load_rte(str(folder), "claim,evidence", "verdict"), "dev.csv: empty file")
    (folder / "dev.csv").unlink()
    one_line_error(lambda: load_rte(str(folder), "claim,evidence", "verdict"), "train.csv but no evaluation file")
    (folder / "dev.csv").write_text("claim,evidence,verdict\nA.,B.,yes\n")
    (folder / "train.csv").write_text("claim,evidence,verdict\nA.,B.,yes\nC.,,no\n")
    one_line_error(lambda: load_rte(str(folder), "claim,evidence", "verdict"),
                   "train.csv:3: 'evidence' must be a non-empty string")
    (folder / "train.csv").write_text("claim,evidence,verdict\nA.,B.,yes\nC.,D.,yes\n")
    one_line_error(lambda: load_rte(str(folder), "claim,evidence", "verdict"), "one label ('yes')")
    one_line_error(lambda: load_rte(None, "sentence"), "need --data FOLDER")
    # Prediction reads files without labels.
    unlabelled = read_examples(folder / "dev.csv", ("claim", "evidence"), "missing", require_label=False)
    assert unlabelled.labels is None and unlabelled.texts == [("A.", "B.")]


def test_one_field_task_trains_and_its_model_folder_has_two_labels(tmp_path: Path, tiny_model: Path) -> None:
    """The trainable on single sentences (in-process, no Ray): num_labels and names in the saved config."""
    options = dict(MODELS["roberta_rte"].options)
    options.update(model_name_or_path=str(tiny_model), data=str(one_field_sentences(tmp_path / "one")),
                   cache_dir=str(tmp_path / "cache"), cpus_per_trial=1)
    reference = prepare(options)
    assert reference["label_names"] == ["neg", "pos"]
    trainable = bind_options(RobertaRTETrainable, options)({"lr": 1e-3, "batch_size": 16, "epochs": 1, "seed": 0})
    try:
        result = trainable.train()
        assert result["done"] and 0 <= result["eval_acc"] <= 1
        trainable.export_model(str(tmp_path / "model"))
    finally:
        trainable.stop()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert len(config["id2label"]) == 2


@pytest.mark.slow
def test_three_label_csv_pairs_in_a_smoke_experiment(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_random.py on a three-label CSV task (one trial): the record's accuracy section, and the
    best model's config with num_labels 3 and the label names."""
    folder = three_label_pairs(tmp_path / "three")
    monkeypatch.setenv("HPO_SUITE_CACHE", str(tmp_path / "cache"))  # the in-process retraining's cache too
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run_random.py"), "--model", "roberta_rte",
         "--model-name-or-path", str(tiny_model), "--data", str(folder), "--text-fields", "claim,evidence",
         "--label-field", "verdict", "--smoke-test", "--gpus-per-trial", "0", "--num-samples", "1",
         "--max-epochs", "1", "--storage-path", str(tmp_path), "--name", "three"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["num_trials"] == 1 and summary["num_errored"] == 0
    assert summary["prepared"]["label_names"] == list(THREE)
    # Random search keeps no weights: retrain the best configuration into best_model/ (in-process, no Ray).
    from experiments.workflows.best_model import train_best

    train_best(tmp_path / "three")
    config = json.loads((tmp_path / "three" / "best_model" / "config.json").read_text())
    assert config["id2label"] == {"0": "maybe", "1": "no", "2": "yes"}
    assert np.isfinite(summary["best"]["metric"])
    record = (tmp_path / "three" / "summary.md").read_text()
    assert "## Accuracy and its uncertainty" in record and "| final epoch (1" in record
    assert f"{summary['prepared']['dataset_sizes']['eval']} eval and" in record


def test_wilson_interval() -> None:
    from experiments.analysis.record import wilson_interval

    low, high = wilson_interval(0.8, 10)  # 8 of 10: the textbook 0.490 to 0.943
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson_interval(1.0, 139)[1] == 1.0 and np.isnan(wilson_interval(0.5, 0)[0])
