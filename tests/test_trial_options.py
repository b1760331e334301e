"""What the runner hands every trial's setup: the experiment's max_epochs sets the lr schedule's length."""

from experiments.core.config import resolve_config
from experiments.core.runner import trial_options
from experiments.core.strategies import STRATEGIES
from trainables.registry import bind_options


def test_trial_options_carry_the_experiments_max_epochs_to_the_trainable(tmp_path):
    import trainables.cgcnn as cgcnn_module

    config = resolve_config("asha", {"max_epochs": 7, "grace_period": 1}, {}, STRATEGIES["asha"].smoke)
    options = trial_options(config)
    assert options["max_epochs"] == 7
    assert options["cpus_per_trial"] == config.cpus_per_trial

    options.update(dataset_size=60, cache_dir=str(tmp_path))
    cgcnn_module.prepare(options)

    config = {"lr": 1e-3, "batch_size": 16, "atom_embedding_size": 8, "num_graph_conv_layers": 1,
              "fc_feat_size": 8, "num_fc_layers": 1, "seed": 0}
    trainable = bind_options(cgcnn_module.CGCNNTrainable, options)(config=config)
    try:
        # The cosine ends at the experiment's 7th epoch, not at the trainable's stand-alone default.
        assert trainable.total_steps == 7 * trainable.steps_per_epoch
    finally:
        trainable.stop()


def test_a_config_file_can_ask_for_the_by_slab_split(tmp_path):
    config_file = tmp_path / "by_slab.yaml"
    config_file.write_text("model: cgcnn\nsplit: by_slab\n")
    config = resolve_config("asha", {"config": str(config_file)}, {}, STRATEGIES["asha"].smoke)
    assert trial_options(config)["split"] == "by_slab"
    assert trial_options(resolve_config("asha", {}, {}, STRATEGIES["asha"].smoke))["split"] == "random"
