"""RobertaRTETrainable on a tiny local RoBERTa and the RTE fixture: steps and schedule, reset_config
without re-tokenising or reloading, collapse detection, checkpoint round trip (the last through Ray)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data.rte import load_folder, split_validation
from trainables.registry import MODELS, bind_options
from trainables.roberta_rte import RobertaRTETrainable, prepare

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402

CONFIG = {"lr": 1e-3, "batch_size": 8, "epochs": 2, "seed": 0, "weight_decay": 0.01}


@pytest.fixture(scope="module")
def options(tmp_path_factory) -> dict:
    opts = dict(MODELS["roberta_rte"].options)
    opts.update(
        model_name_or_path=str(build_tiny_roberta(tmp_path_factory.mktemp("tiny"))),
        data=str(FIXTURES / "superglue"),
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        cpus_per_trial=1,
    )
    prepare(opts)  # fills the token cache, as the runner's driver does before any trial
    return opts


def bound(options: dict) -> type:
    """The trainable with its fixed options bound, as ``tune.with_parameters`` does, without Ray."""
    return bind_options(RobertaRTETrainable, options)


def test_epochs_schedule_and_done(options):
    trainable = bound(options)({**CONFIG, "warmup_steps": 3})
    try:
        assert trainable.steps_per_epoch == 5 and trainable.tokens_from_cache
        first = trainable.train()
        for key in (
            "train_loss",
            "eval_acc",
            "test_acc",
            "eval_loss",
            "baseline_eval_acc",
            "collapsed",
            "node_id",
        ):
            assert key in first
        assert first["epoch"] == 1.0 and 0 <= first["eval_acc"] <= 1 and np.isfinite(first["train_loss"])
        assert first["pairs_trained"] == 40 and first["time_train_s"] > 0 and first["time_setup_s"] > 0
        # Linear warmup over 3 steps, then linear decay to zero at the end of the trial's own 2 epochs.
        assert first["lr"] == pytest.approx(1e-3 * 5 / 7)
        second = trainable.train()
        assert second["epoch"] == 2.0 and second["done"] and second["lr"] == 0.0
        assert second["time_setup_s"] == 0.0  # reported with a trial's first result only
    finally:
        trainable.stop()


def test_eval_every_steps_reports_fractional_epochs(options):
    trainable = bound({**options, "eval_every_steps": 3})(CONFIG)
    try:
        results = [trainable.train()]
        while not results[-1]["done"]:
            results.append(trainable.train())
        epochs = [r["epoch"] for r in results]
        # 5 steps per epoch, 10 in all: results after steps 3, 5 (epoch end), 8 and 10 (collapse may
        # end it sooner).
        assert epochs == [0.6, 1.0, 1.6, 2.0][: len(epochs)]
        assert epochs[-1] == 2.0 or results[-1]["collapsed"]
        assert [r["training_iteration"] for r in results] == list(range(1, len(results) + 1))
    finally:
        trainable.stop()


def test_reset_config_never_retokenises_or_reloads(options, monkeypatch):
    import transformers

    import trainables.roberta.pretrained as module

    trainable = bound(options)(CONFIG)
    try:
        model = trainable.model
        trainable.train()
        embedding = trainable.model.base_model.embeddings.word_embeddings.weight
        assert not torch.equal(
            embedding.detach().cpu(), trainable.pretrained_state["roberta.embeddings.word_embeddings.weight"]
        )

        def forbidden(*args, **kwargs):
            raise AssertionError("reset_config must not tokenise or load anything")

        monkeypatch.setattr(type(trainable.tokenizer), "__call__", forbidden)
        monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", forbidden)
        monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", forbidden)
        monkeypatch.setattr(module, "tokenize_rte", forbidden)
        monkeypatch.setattr(module, "load_rte", forbidden)

        new_config = {**CONFIG, "lr": 5e-4, "batch_size": 16, "seed": 3}
        assert trainable.reset_config(new_config)
        trainable.config = new_config
        assert trainable.model is model  # weights copied back in place: no second model in memory
        for name, value in trainable.model.state_dict().items():
            if not name.startswith("classifier."):
                assert torch.equal(value.cpu(), trainable.pretrained_state[name]), name
        assert trainable.epoch == 0 and trainable.steps_per_epoch == 3
        assert {g["lr"] for g in trainable.optimizer.param_groups} == {5e-4}
        result = trainable.train()
        assert result["epoch"] == 1.0 and np.isfinite(result["train_loss"])
    finally:
        trainable.stop()


def test_fresh_classifier_head_follows_the_trial_seed(options):
    trainable = bound(options)(CONFIG)
    try:

        def head():
            return trainable.model.classifier.out_proj.weight.detach().clone()

        # roberta-base style checkpoint: the head is missing and initialised per trial.
        assert trainable.fresh_modules
        seed0 = head()
        trainable.reset_config({**CONFIG, "seed": 1})
        seed1 = head()
        trainable.reset_config({**CONFIG, "seed": 0})
        assert torch.equal(head(), seed0) and not torch.equal(seed1, seed0)
        assert float(seed0.std()) == pytest.approx(0.02, rel=0.5)  # the config's initializer_range
    finally:
        trainable.stop()


def test_fresh_head_uses_torch_init_at_the_configs_initializer_range(options, monkeypatch):
    trainable = bound(options)(CONFIG)
    try:
        model = trainable.model

        def private(*args, **kwargs):
            raise AssertionError("the head is initialised with torch.nn.init, not transformers' private _init_weights")

        monkeypatch.setattr(type(model), "_init_weights", private)
        monkeypatch.setattr(model.config, "initializer_range", 0.3)
        torch.manual_seed(987)  # the global generator's state must not matter
        assert trainable.reset_config(CONFIG)
        for module in trainable.fresh_modules:
            assert not module.bias.detach().any()
            assert float(module.weight.detach().std()) == pytest.approx(0.3, rel=0.25)
        first = model.classifier.out_proj.weight.detach().clone()
        torch.manual_seed(5)
        trainable.reset_config(CONFIG)
        assert torch.equal(model.classifier.out_proj.weight.detach(), first)
    finally:
        trainable.stop()


def test_no_private_torch_or_transformers_attributes_in_the_roberta_trainable():
    # Replaced by public APIs (issue 21): transformers' _init_weights / _is_hf_initialized for the
    # fresh head, LambdaLR's base_lrs / lr_lambdas / _last_lr for the schedule after a restore.
    private = ("_init_weights", "_is_hf_initialized", "_last_lr", "base_lrs", "lr_lambdas")
    root = Path(__file__).resolve().parents[1] / "trainables"
    for path in [root / "roberta_rte.py", *sorted((root / "roberta").glob("*.py"))]:
        text = path.read_text()
        assert not [name for name in private if name in text], path


def test_collapse_stops_the_trial(options, tmp_path):
    collapsed_model = build_tiny_roberta(tmp_path / "constant", constant_class=1)
    trainable = bound({**options, "model_name_or_path": str(collapsed_model)})(
        {**CONFIG, "lr": 0.0, "epochs": 5}
    )
    try:
        assert not trainable.fresh_modules  # the checkpoint has its (constant) head
        first = trainable.train()
        assert not first["collapsed"] and not first["done"]
        second = trainable.train()
        assert second["collapsed"] and second["done"] and second["epoch"] == 2.0
        validation = load_folder(FIXTURES / "superglue").validation
        eval_labels = validation.labels[split_validation(len(validation), 0)["eval"]]
        assert second["eval_acc"] == pytest.approx(float(np.mean(eval_labels == 1)))  # the class rate
    finally:
        trainable.stop()


def test_checkpoint_restores_state_but_keeps_own_hyperparameters(options, tmp_path):
    cls = bound(options)
    donor = cls({**CONFIG, "epochs": 3})
    receiver = cls({**CONFIG, "epochs": 3, "lr": 2e-4, "weight_decay": 0.2})
    try:
        donor.train()
        donor.save_checkpoint(str(tmp_path))
        built = receiver.scheduler
        receiver.load_checkpoint(str(tmp_path))
        for (name, a), b in zip(
            donor.model.state_dict().items(), receiver.model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
        assert (receiver.epoch, receiver.batch_index) == (1, 0)
        # PBT's mutated lr and weight decay, at the donor's point in the schedule (5 of 15 steps).
        for group in receiver.optimizer.param_groups:
            assert group["lr"] == pytest.approx(2e-4 * 10 / 15)
            assert group["weight_decay"] == (0.2 if group["name"].endswith("/decay") else 0.0)
        assert receiver.optimizer.state_dict()["state"].keys() == donor.optimizer.state_dict()["state"].keys()
        # The schedule is rebuilt at the donor's step (torch's last_epoch), not edited in place.
        assert receiver.scheduler is not built and receiver.scheduler.last_epoch == 5
        assert receiver.scheduler.get_last_lr() == [g["lr"] for g in receiver.optimizer.param_groups]
        assert receiver.train()["epoch"] == 2.0
    finally:
        donor.stop()
        receiver.stop()


def test_checkpoint_into_a_trial_with_another_batch_size_continues_its_own_schedule(options, tmp_path):
    cls = bound(options)
    donor = cls({**CONFIG, "epochs": 3, "warmup_ratio": 0.2})
    receiver = cls({**CONFIG, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.2})
    try:
        donor.train()
        donor.save_checkpoint(str(tmp_path))
        receiver.load_checkpoint(str(tmp_path))
        # One epoch is 3 of the receiver's 9 steps (2 of them warmup): lr at 1 - (3 - 2) / (9 - 2).
        assert receiver.steps_done == 3 and receiver.scheduler.last_epoch == 3
        for group in receiver.optimizer.param_groups:
            assert group["lr"] == pytest.approx(1e-3 * 6 / 7)
        result = receiver.train()
        assert result["epoch"] == 2.0 and result["lr"] == pytest.approx(1e-3 * 3 / 7)
    finally:
        donor.stop()
        receiver.stop()


def test_schedule_length_is_max_epochs_when_the_config_has_no_epochs(options):
    """ASHA/AHB spaces do not search epochs: every trial's schedule is the experiment's max_epochs long."""
    config = {key: value for key, value in CONFIG.items() if key != "epochs"}
    short, long = bound({**options, "max_epochs": 2})(config), bound({**options, "max_epochs": 4})(config)
    own = bound({**options, "max_epochs": 4})(CONFIG)  # grid, PBT: the trial's own epochs (2) win
    try:
        assert (short.settings.epochs, long.settings.epochs, own.settings.epochs) == (2, 4, 2)
        first_short, first_long = short.train(), long.train()
        # After 5 of 10 steps the 2-epoch schedule is half-way down, the 4-epoch one (20 steps) a quarter.
        assert first_short["lr"] == pytest.approx(1e-3 * 5 / 10) and first_long["lr"] == pytest.approx(1e-3 * 15 / 20)
        assert (short.schedule.total_steps, long.schedule.total_steps) == (10, 20)
        last_short = short.train()
        assert last_short["epoch"] == 2.0 and last_short["done"] and last_short["lr"] == 0.0
        assert own.train()["lr"] == pytest.approx(first_short["lr"])
    finally:
        for trainable in (short, long, own):
            trainable.stop()


@pytest.mark.slow
def test_checkpoint_round_trip_through_ray(options):
    import ray
    from ray import tune
    from ray.tune.utils import validate_save_restore

    ray.init(address="local", num_cpus=2, include_dashboard=False)  # validate_save_restore runs two actors
    try:
        trainable = tune.with_parameters(RobertaRTETrainable, options=options)
        assert validate_save_restore(trainable, config={**CONFIG, "epochs": 3}, num_gpus=0) is True
    finally:
        ray.shutdown()


def test_non_finite_loss_ends_the_trial_as_diverged(options):
    trainable = bound(options)({**CONFIG, "lr": 1e30, "epochs": 3})
    try:
        result = trainable.train()
        while not result["done"]:
            result = trainable.train()
        assert result["diverged"] and result["epoch"] < 3
        assert 0 <= result["eval_acc"] <= 1  # the last finite weights were evaluated
    finally:
        trainable.stop()


def test_half_precision_checkpoint_with_another_head_trains_in_fp32(options, tmp_path):
    from transformers import AutoTokenizer, RobertaForSequenceClassification

    # Like roberta-large-mnli: a 3-class head, here saved in fp16.
    source = options["model_name_or_path"]
    three_class = RobertaForSequenceClassification.from_pretrained(source, num_labels=3).to(torch.float16)
    three_class.save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(tmp_path))
    trainable = bound({**options, "model_name_or_path": str(tmp_path)})(CONFIG)
    try:
        assert all(p.dtype == torch.float32 for p in trainable.model.parameters())
        assert trainable.model.classifier.out_proj.weight.shape == (2, 32)
        assert trainable.model.classifier.out_proj in trainable.fresh_modules
        assert np.isfinite(trainable.train()["train_loss"])
    finally:
        trainable.stop()


@pytest.mark.slow
def test_torch_compile_trains_like_eager_and_survives_reset_config(options, monkeypatch):
    """``torch_compile: true`` compiles once per actor; a reused actor's next trial runs the same code."""
    # Dropout draws from the process-wide RNG, and Inductor would otherwise generate its own random
    # numbers: with eager's RNG and the same seed before each epoch, both draw the same masks.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)

    def epoch(trainable) -> dict:
        torch.manual_seed(1234)
        return trainable.train()

    eager = bound(options)(CONFIG)
    compiled = bound({**options, "torch_compile": True})(CONFIG)
    try:
        assert compiled.forward_model is not compiled.model and eager.forward_model is eager.model
        first_eager, first_compiled = epoch(eager), epoch(compiled)
        # Same weights, batches and dropout masks: the compiled graph computes the same losses up to
        # rounding.
        assert first_compiled["train_loss"] == pytest.approx(first_eager["train_loss"], rel=1e-3)
        assert first_compiled["eval_acc"] == first_eager["eval_acc"]
        forward = compiled.forward_model
        new_config = {**CONFIG, "lr": 5e-4, "seed": 1}
        assert eager.reset_config(new_config) and compiled.reset_config(new_config)
        assert compiled.forward_model is forward  # not recompiled from scratch for the new trial
        assert epoch(compiled)["train_loss"] == pytest.approx(epoch(eager)["train_loss"], rel=1e-3)
    finally:
        eager.stop()
        compiled.stop()


def test_torch_compile_option_must_be_a_boolean(options):
    from trainables.errors import ModelConfigError as ConfigError

    with pytest.raises(ConfigError, match="torch_compile must be true or false"):
        prepare({**options, "torch_compile": "yes"})
