"""CGCNNTrainable on a tiny built-in dataset: one epoch, checkpoint round trip, reset_config."""

import math

import numpy as np
import pytest
import torch

import trainables.cgcnn as cgcnn_module
from trainables.cgcnn import MIN_LR_FRACTION, CGCNNTrainable, lr_factor
from trainables.models.cgcnn import CGCNN
from trainables.registry import MODELS

CONFIG = {"lr": 3e-3, "batch_size": 16, "atom_embedding_size": 16, "num_graph_conv_layers": 2,
          "fc_feat_size": 32, "num_fc_layers": 2, "seed": 0}


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    opts = dict(MODELS["cgcnn"].options)
    opts.update(dataset_size=80, cache_dir=str(tmp_path_factory.mktemp("cache")), cpus_per_trial=1)
    cgcnn_module.prepare(opts)  # build the cache once, as the runner's driver does
    return opts


@pytest.fixture(scope="module")
def trainable_cls(options):
    """The trainable exactly as the runner hands it to Ray: options bound with tune.with_parameters."""
    import ray
    from ray import tune

    ray.init(address="local", num_cpus=2, include_dashboard=False)  # validate_save_restore runs two actors
    yield tune.with_parameters(CGCNNTrainable, options=options)
    ray.shutdown()


def test_model_shapes():
    model = CGCNN(10, 5, atom_embedding_size=8, num_graph_conv_layers=2, fc_feat_size=6, num_fc_layers=3)
    from torch_geometric.data import Batch, Data

    graphs = [Data(x=torch.randn(n, 10), edge_index=torch.randint(0, n, (2, 3 * n)), edge_attr=torch.randn(3 * n, 5))
              for n in (4, 7)]
    assert model(Batch.from_data_list(graphs)).shape == (2,)
    assert sum(isinstance(m, torch.nn.Linear) for m in model.head) == 4  # 3 fc layers + output


def test_step_reports_metrics_and_learns(trainable_cls):
    trainable = trainable_cls(config=CONFIG)
    try:
        first = trainable.train()
        for _ in range(4):
            last = trainable.train()
        for key in ("train_loss", "val_mae", "test_mae", "baseline_val_mae", "node_id"):
            assert key in last
        assert math.isfinite(last["val_mae"]) and last["training_iteration"] == 5
        assert last["train_loss"] < first["train_loss"]
    finally:
        trainable.stop()


def test_checkpoint_round_trip_with_ray(trainable_cls):
    from ray.tune.utils import validate_save_restore

    assert validate_save_restore(trainable_cls, config={**CONFIG}, num_gpus=0) is True


def test_checkpoint_restores_weights_and_epoch_but_keeps_own_lr(trainable_cls, tmp_path):
    donor = trainable_cls(config=CONFIG)
    donor.train()
    donor.train()
    ckpt = donor.save(str(tmp_path / "ckpt"))
    receiver = trainable_cls(config={**CONFIG, "lr": 1e-4})
    receiver.restore(ckpt)
    for a, b in zip(donor.model.state_dict().values(), receiver.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert receiver.epoch == 2
    # PBT's mutated lr, not the donor's, at the point of the schedule the donor had reached.
    assert receiver.base_lr == 1e-4
    expected = 1e-4 * lr_factor(2 * receiver.steps_per_epoch, receiver.warmup_steps, receiver.total_steps)
    assert receiver.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    donor.stop()
    receiver.stop()


def test_reset_config_rebuilds_model_without_reloading_data(trainable_cls, monkeypatch):
    trainable = trainable_cls(config=CONFIG)
    trainable.train()
    calls = []
    monkeypatch.setattr(cgcnn_module, "load_dataset", lambda *a, **k: calls.append(1))
    dataset = trainable.dataset
    new = {**CONFIG, "atom_embedding_size": 8, "num_graph_conv_layers": 1, "lr": 1e-3}
    assert trainable.reset(new) is True
    assert calls == [] and trainable.dataset is dataset
    assert trainable.model.embedding.out_features == 8 and len(trainable.model.convs) == 1
    assert trainable.base_lr == 1e-3
    result = trainable.train()
    assert result["training_iteration"] == 1 and result["epoch"] == 1
    trainable.stop()


def test_lr_factor_warms_up_then_decays_to_the_floor():
    warmup, total = 10, 110
    assert [lr_factor(k, warmup, total) for k in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, warmup, total) == pytest.approx(1.0)
    assert lr_factor(60, warmup, total) == pytest.approx(MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) / 2)
    assert lr_factor(110, warmup, total) == pytest.approx(MIN_LR_FRACTION)
    assert lr_factor(500, warmup, total) == pytest.approx(MIN_LR_FRACTION)  # past max_epochs (PBT): the floor
    factors = [lr_factor(k, warmup, total) for k in range(warmup, total)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    assert lr_factor(50, warmup, total, "constant") == 1.0
    assert lr_factor(0, 0, total) == pytest.approx(1.0)  # no warm-up


def test_schedule_length_is_max_epochs_not_when_a_trial_stops(options):
    from ray import tune

    short = tune.with_parameters(CGCNNTrainable, options={**options, "max_epochs": 3})(config=CONFIG)
    long = tune.with_parameters(CGCNNTrainable, options={**options, "max_epochs": 30})(config=CONFIG)
    try:
        assert short.total_steps == 3 * short.steps_per_epoch and long.total_steps == 30 * long.steps_per_epoch
        assert short.warmup_steps == short.steps_per_epoch  # warmup_epochs defaults to 1
        last = [short.train()["lr"] for _ in range(3)][-1]
        # The third epoch's last step is one before the end of a 3-epoch schedule: near the floor.
        step = 3 * short.steps_per_epoch - 1
        assert last == pytest.approx(CONFIG["lr"] * lr_factor(step, short.warmup_steps, short.total_steps))
        assert last < 0.05 * CONFIG["lr"]
        # The same epochs of a 30-epoch schedule are still near the peak.
        assert [long.train()["lr"] for _ in range(3)][-1] > 0.9 * CONFIG["lr"]
    finally:
        short.stop()
        long.stop()


def test_restore_continues_the_run_it_was_saved_from(trainable_cls, tmp_path):
    """Issue 21 item 14: after a restore the shuffle continues from (seed, epoch), not epoch 1's order."""
    straight = trainable_cls(config=CONFIG)
    interrupted = trainable_cls(config=CONFIG)
    resumed = trainable_cls(config=CONFIG)
    try:
        assert not (straight._epoch_order(0) == straight._epoch_order(1)).all()
        np.testing.assert_array_equal(straight._epoch_order(2), resumed._epoch_order(2))
        expected = [straight.train() for _ in range(3)]
        interrupted.train()
        checkpoint = interrupted.save(str(tmp_path / "ckpt"))
        resumed.restore(checkpoint)
        results = [resumed.train() for _ in range(2)]
        assert [r["epoch"] for r in results] == [2, 3]
        for key in ("train_loss", "val_mae", "lr"):
            assert [r[key] for r in results] == pytest.approx([e[key] for e in expected[1:]], rel=1e-6)
        for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b)
    finally:
        for trainable in (straight, interrupted, resumed):
            trainable.stop()


def test_packed_input_path_trains_as_the_reference_path(options, capsys):
    """Issue 30: three epochs give the old path's train_loss / val_mae / test_mae curve.

    The old path (host collation per step, blocking copies, a float per step, the concatenated
    convolution) is kept once, in experiments/benchmarks/cgcnn_input.py, which the throughput
    benchmarks time against the new one; at the commit that replaced it, it reproduced the old
    trainable's curve bit for bit.
    """
    from experiments.benchmarks.cgcnn_input import ReferencePath
    from trainables.registry import bind_options

    trainable_cls = bind_options(CGCNNTrainable, {**options, "max_epochs": 3})
    packed, old_input, old_path = (trainable_cls(dict(CONFIG)) for _ in range(3))
    try:
        assert "data on the CPU" in capsys.readouterr().out  # the device line says where the data lives
        # The same seed gave all three the same initial weights.
        for a, b in zip(packed.model.state_dict().values(), old_path.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        got = [packed.step() for _ in range(3)]
        reference = ReferencePath(old_input, old_convolution=False)
        same_model = [reference.step() for _ in range(3)]
        reference = ReferencePath(old_path)
        old = [reference.step() for _ in range(3)]
        for key in ("train_loss", "val_mae", "test_mae"):
            # Only the input path differs: the same inputs, the same float64 sums, so the same curve.
            assert [r[key] for r in got] == pytest.approx([r[key] for r in same_model], rel=1e-6, abs=1e-9)
            # The convolution's other summation order differs by float rounding (~1e-7) per step;
            # Adam, which divides each gradient by its own running scale, carries that into the weights,
            # to a few 1e-4 of the MAE after three epochs.
            assert [r[key] for r in got] == pytest.approx([r[key] for r in old], rel=2e-3)
        assert len({r["val_mae"] for r in got}) == 3  # the model trained: three different points
    finally:
        for trainable in (packed, old_input, old_path):
            trainable.stop()
