"""CGCNNTrainable on a tiny built-in dataset: one epoch, checkpoint round trip, reset_config."""

import math

import pytest
import torch

import trainables.cgcnn as cgcnn_module
from trainables.cgcnn import CGCNNTrainable
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
    assert receiver.optimizer.param_groups[0]["lr"] == 1e-4  # PBT's mutated lr, not the donor's
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
    assert trainable.optimizer.param_groups[0]["lr"] == 1e-3
    result = trainable.train()
    assert result["training_iteration"] == 1 and result["epoch"] == 1
    trainable.stop()
