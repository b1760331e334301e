"""GPU nodes (issue 25), on a CPU machine with the GPU parts mocked at the narrowest point.

- device: from Ray's accelerator ids (a fake runtime context), never from what CUDA shows;
- memory cap and precision: ``torch.cuda``'s capability and memory calls mocked;
- the driver's checks from Ray's node resources (GPUs per node, accelerator types);
- gradient accumulation: one step over micro-batches equals one step over the whole batch;
- out-of-memory: a real ``torch.OutOfMemoryError`` inside a real Ray experiment ends one trial as
  ``oom`` and the experiment goes on, with torch made to report CUDA in every process.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import trainables.device as device_module
from experiments.core.config import ConfigError, resolve_config
from experiments.core.resources import check_accumulation, check_cluster
from search_spaces import load_space
from trainables.accelerators import precision_problem
from trainables.device import CONTEXT_RESERVE_BYTES, cap_gpu_memory, choose_precision, trial_device
from trainables.errors import ModelConfigError
from trainables.registry import MODELS, bind_options

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "rte"


class FakeRayContext:
    """What ``ray.get_runtime_context()`` tells a trial: its accelerator ids and assigned resources."""

    def __init__(self, gpu_ids: list[str], gpus: float):
        self.gpu_ids, self.gpus = gpu_ids, gpus

    def get_accelerator_ids(self) -> dict:
        return {"GPU": self.gpu_ids, "neuron_cores": []}

    def get_assigned_resources(self) -> dict:
        return {"CPU": 1.0, **({"GPU": self.gpus} if self.gpus else {})}


def test_a_trial_given_no_gpu_trains_on_the_cpu_and_cannot_see_the_nodes_gpus(monkeypatch):
    monkeypatch.setattr(device_module, "_ray_actor_context", lambda: FakeRayContext([], 0.0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what Ray 2.60 leaves a zero-GPU actor
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    placed = trial_device()
    assert placed.device == torch.device("cpu") and placed.gpu_share == 0
    assert placed.source == "Ray assigned no GPU"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_trial_given_a_quarter_gpu_trains_on_its_gpu_with_that_share(monkeypatch):
    monkeypatch.setattr(device_module, "_ray_actor_context", lambda: FakeRayContext(["3"], 0.25))
    placed = trial_device()
    assert placed.device == torch.device("cuda:0") and placed.gpu_share == 0.25
    assert placed.source == "Ray assigned GPU 3"


def test_outside_ray_the_caller_names_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device().device == torch.device("cpu")  # nothing requested: the CPU, said so
    assert trial_device().source == "outside Ray, no device requested"
    assert trial_device("cuda", 0.5).device == torch.device("cuda:0")
    assert trial_device("cuda", 0.5).gpu_share == 0.5
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelConfigError, match="torch sees no CUDA device"):
        trial_device("cuda")


def _fake_card(monkeypatch, total_gib: float, capability: tuple[int, int], name: str = "Tesla V100") -> list:
    calls: list = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(total_memory=int(total_gib * 2**30)))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device: calls.append((f, device)))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: name)
    return calls


def test_a_packed_trial_caps_its_memory_at_its_share_less_the_context(monkeypatch):
    calls = _fake_card(monkeypatch, 16, (7, 0))
    placed = device_module.TrialDevice(torch.device("cuda:0"), 0.25, "Ray assigned GPU 0")
    text = cap_gpu_memory(placed)
    [(fraction, device)] = calls
    assert fraction == pytest.approx(0.25 - CONTEXT_RESERVE_BYTES / (16 * 2**30))
    assert device == torch.device("cuda:0") and "memory cap 3.0 GiB (0.25 of 16 GiB)" in text
    calls.clear()
    assert cap_gpu_memory(device_module.TrialDevice(torch.device("cuda:0"), 1.0, "")) == "whole card" and not calls
    with pytest.raises(ModelConfigError, match="raise --gpus-per-trial"):
        cap_gpu_memory(device_module.TrialDevice(torch.device("cuda:0"), 0.05, ""))  # 0.8 GiB < the context


def test_precision_follows_the_cards_native_support(monkeypatch):
    cuda = torch.device("cuda:0")
    _fake_card(monkeypatch, 16, (7, 0))  # V100: bf16 only emulated
    assert choose_precision("auto", cuda) == "fp16"
    assert choose_precision("fp32", cuda) == "fp32"
    with pytest.raises(ModelConfigError, match="no native bf16"):
        choose_precision("bf16", cuda)
    _fake_card(monkeypatch, 80, (8, 0), "A100")
    assert choose_precision("auto", cuda) == "bf16" and choose_precision("fp16", cuda) == "fp16"
    assert choose_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ModelConfigError, match="needs a GPU"):
        choose_precision("bf16", torch.device("cpu"))
    with pytest.raises(ModelConfigError, match="expected one of"):
        choose_precision("fp8", cuda)


def test_the_driver_checks_precision_from_rays_accelerator_types():
    assert precision_problem("bf16", 0.25, [["H200"], ["H100"]]) is None
    assert "V100" in precision_problem("bf16", 0.25, [["H100"], ["V100"]])
    assert "needs a GPU" in precision_problem("fp16", 0, [])
    assert precision_problem("auto", 0.25, [["V100"]]) is None
    assert precision_problem("bf16", 1, [["Some-Future-Card"]]) is None  # unknown: the trial checks


def _config(*flags: str, model: str = "roberta_rte", strategy: str = "asha"):
    from experiments.core.config import build_parser

    args = vars(build_parser(strategy, "test").parse_args(["--model", model, *flags]))
    return resolve_config(strategy, args, {"search": "random"}, {})


def test_gpus_per_trial_must_fit_on_one_node_and_precision_on_its_card():
    two_nodes = [{"CPU": 8.0, "GPU": 1.0, "accelerator_type:V100": 1.0}] * 2
    with pytest.raises(ConfigError, match=r"its largest node has 1 \(2 in all\); a trial runs on one node"):
        check_cluster(_config("--gpus-per-trial", "2"), two_nodes)
    with pytest.raises(ConfigError, match="V100"):
        check_cluster(_config("--gpus-per-trial", "0.5", "--precision", "bf16"), two_nodes)
    with pytest.raises(ConfigError, match="needs a GPU"):
        check_cluster(_config("--precision", "fp16", "--gpus-per-trial", "0"), [{"CPU": 8.0}])
    check_cluster(_config("--gpus-per-trial", "0.5", "--precision", "fp16"), two_nodes)


def test_an_accumulation_count_must_divide_every_batch_size_of_the_space():
    with pytest.raises(ConfigError, match=r"does not divide every batch size \(batch_size's values \[16, 32, 64\]"):
        check_accumulation(_config("--gradient-accumulation-steps", "32", strategy="pbt"), load_space("rte_pbt"))
    check_accumulation(_config("--gradient-accumulation-steps", "16", strategy="pbt"), load_space("rte_pbt"))
    with pytest.raises(ConfigError, match="range 16..64"):
        check_accumulation(_config("--gradient-accumulation-steps", "4"), load_space("rte_hyperopt_ahb"))


# -- gradient accumulation on the tiny RoBERTa --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_options(tmp_path_factory) -> dict:
    sys.path.insert(0, str(FIXTURES))
    from tiny_roberta import build_tiny_roberta

    from trainables.roberta_rte import prepare

    opts = dict(MODELS["roberta_rte"].options)
    opts.update(model_name_or_path=str(build_tiny_roberta(tmp_path_factory.mktemp("tiny"))),
                data=str(FIXTURES / "superglue"), cache_dir=str(tmp_path_factory.mktemp("cache")), cpus_per_trial=1)
    prepare(opts)
    return opts


def _one_step(options: dict, accumulation: int, indices: np.ndarray) -> dict[str, torch.Tensor]:
    from trainables.roberta_rte import RobertaRTETrainable

    config = {"lr": 1e-3, "batch_size": 32, "seed": 0, "max_grad_norm": 0.0, "epochs": 1}
    trainable = bind_options(RobertaRTETrainable, {**options, "gradient_accumulation_steps": accumulation})(config)
    try:
        trainable.model.eval()  # dropout off: micro-batches and the whole batch see the same network
        loss = trainable.train_batch(indices)
        grads = {n: p.grad.detach().clone() for n, p in trainable.model.named_parameters() if p.grad is not None}
        return {"loss": torch.tensor(loss), **grads,
                **{f"param:{n}": p.detach().clone() for n, p in trainable.model.named_parameters()}}
    finally:
        trainable.stop()


@pytest.mark.parametrize("size", [32, 13])  # 4 x 8; and an uneven last batch: 4 + 3 + 3 + 3
def test_one_step_over_micro_batches_equals_one_step_over_the_batch(tiny_options, size):
    indices = np.random.default_rng(0).permutation(40)[:size]
    whole, micro = _one_step(tiny_options, 1, indices), _one_step(tiny_options, 4, indices)
    assert whole.keys() == micro.keys() and len(whole) > 3
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_accumulation_must_divide_the_trials_batch_size(tiny_options):
    from trainables.roberta_rte import RobertaRTETrainable

    with pytest.raises(ModelConfigError, match="does not divide batch_size 30"):
        bind_options(RobertaRTETrainable, {**tiny_options, "gradient_accumulation_steps": 4})(
            {"lr": 1e-3, "batch_size": 30})


def test_trials_read_the_drivers_snapshot_and_token_cache_not_the_data(tiny_options, monkeypatch):
    import trainables.roberta_rte as roberta

    assert tiny_options["prepared"]["token_cache"].endswith(".npz")
    assert tiny_options["prepared"]["model_snapshot"] == tiny_options["model_name_or_path"]  # a local folder
    monkeypatch.setattr(roberta, "load_tokens", lambda *a: pytest.fail("a trial loaded the raw data"))
    trainable = bind_options(roberta.RobertaRTETrainable, tiny_options)({"lr": 1e-3, "batch_size": 8})
    trainable.stop()
    # Options changed after prepare (another checkpoint): prepare's files are not used for them.
    assert roberta._prepared_inputs({**tiny_options, "max_seq_length": 32}) is None


# -- out-of-memory --------------------------------------------------------------------------------------


def test_out_of_memory_in_setup_ends_the_trial_as_oom_and_the_actor_is_not_reused(smoke_cache):
    sys.path.insert(0, str(TESTS))
    from faulty_trainables import OOMInSetupCGCNN

    spec = MODELS["cgcnn"]
    options = {**spec.options, **spec.smoke_options, "cache_dir": str(smoke_cache), "cpus_per_trial": 1}
    config = {"lr": 0.01, "batch_size": 32, "atom_embedding_size": 8, "num_graph_conv_layers": 1,
              "fc_feat_size": 16, "num_fc_layers": 1}
    trainable = bind_options(OOMInSetupCGCNN, options)(config)
    try:
        result = trainable.train()
        assert result["oom"] and result["oom_where"] == "setup" and result["done"]
        assert "injected in setup" in result["oom_error"] and np.isnan(result["val_mae"])
        assert trainable.reset_config(config) is False  # Ray starts a fresh actor for the next trial
    finally:
        trainable.stop()


@pytest.mark.slow
def test_an_oom_trial_ends_alone_on_a_node_where_torch_reports_cuda_in_every_process(
        faulty_models, tmp_path, monkeypatch, capfd):
    """One real Ray experiment: torch reports CUDA in the driver and every worker (tests/fake_cuda),
    trials ask for no GPU, and one trial's step raises a real torch.OutOfMemoryError."""
    from experiments.core.runner import main

    markers = tmp_path / "fake-cuda"
    markers.mkdir()
    monkeypatch.setenv("FAKE_CUDA_MARKERS", str(markers))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS / "fake_cuda"), os.environ["PYTHONPATH"]]))
    driver_cuda_calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: driver_cuda_calls.append("is_available") or True)
    code = main("asha", "test", ["--model", "cgcnn_oom_once", "--smoke-test", "--num-samples", "4",
                                 "--max-epochs", "4", "--gpus-per-trial", "0", "--storage-path", str(tmp_path),
                                 "--name", "oom"])
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    workers = [p.read_text() for p in markers.iterdir()]
    assert any("default_worker.py" in argv for argv in workers), workers  # Ray's workers saw CUDA "available"
    assert not driver_cuda_calls  # the driver never asked CUDA anything
    device_lines = [line for line in out.splitlines() if "CGCNNTrainable: device" in line]
    assert device_lines and all("device cpu (" in line and "Ray assigned no GPU" in line for line in device_lines)

    summary = json.loads((tmp_path / "oom" / "summary.json").read_text())
    oom_id = (tmp_path / "cache" / "oom-once").read_text()
    [oom] = [t for t in summary["trials"] if t["oom"]]
    assert oom["trial_id"] == oom_id and "injected" in oom["oom_error"] and not oom["errored"]
    assert summary["num_oom"] == 1 and summary["num_errored"] == 0 and summary["num_trials"] == 4
    assert summary["best"]["trial_id"] != oom_id
    others = [t for t in summary["trials"] if not t["oom"]]
    assert all(t["iteration"] >= 1 and t["metric"] is not None for t in others)
    assert "ran out of GPU memory" in out
    markdown = (tmp_path / "oom" / "summary.md").read_text()
    assert "## Out of GPU memory" in markdown and oom_id in markdown
