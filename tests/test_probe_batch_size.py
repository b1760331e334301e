"""Batch-size probe: the recommendation rule on constructed tables, and real probes of the tiny
models on the CPU (memory grows with the batch size, a memory budget stops the doubling; marked
slow: they train the real models, about a minute on two cores)."""

import sys
from pathlib import Path

import pytest
import yaml

from experiments.workflows.batch_size_probe import (
    ModelProbe,
    ProbeResult,
    ProbeRow,
    _predicted_mb,
    main,
    measure,
    recommend,
    run_probe,
    throughput_stalled,
    to_yaml,
)
from trainables.registry import MODELS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402


def table(*points: tuple) -> list[ProbeRow]:
    """Rows from (batch size, examples/s) pairs; examples/s None marks an out-of-memory row."""
    return [ProbeRow(b, t, float(b), "ok" if t is not None else "out of memory") for b, t in points]


# --- the recommendation rule ----------------------------------------------------------------------------

def test_recommends_the_last_batch_size_that_improved_by_more_than_the_margin():
    rows = table((8, 100.0), (16, 190.0), (32, 300.0), (64, 310.0), (128, 400.0))
    chosen = recommend(rows, margin=0.05)
    assert chosen.batch_size == 32  # 64 is only 3.3 % faster: doubling stops there
    assert "at most 5%" in chosen.reason
    # With more patience the later, real gain at 128 counts.
    assert recommend(rows, margin=0.05, patience=2).batch_size == 128
    # A larger margin stops earlier: 32 is 58 % faster than 16, but 16 is not 100 % faster than 8.
    assert recommend(rows, margin=1.0).batch_size == 8


def test_the_margin_is_strict():
    assert recommend(table((8, 100.0), (16, 105.0)), margin=0.05).batch_size == 8
    assert recommend(table((8, 100.0), (16, 105.5)), margin=0.05).batch_size == 16


def test_rows_that_did_not_fit_never_count_and_order_does_not_matter():
    rows = table((32, None), (16, 200.0), (8, 100.0))
    chosen = recommend(rows, margin=0.05)
    assert chosen.batch_size == 16 and "out of memory" in chosen.reason
    assert recommend(table((8, None)), margin=0.05) is None
    assert recommend(table((8, 100.0)), margin=0.05).reason == "the largest batch size probed"


def test_throughput_stalled_and_memory_prediction():
    assert not throughput_stalled(table((8, 100.0), (16, 200.0)), margin=0.05, patience=1)
    assert throughput_stalled(table((8, 100.0), (16, 200.0), (32, 201.0)), margin=0.05, patience=1)
    assert not throughput_stalled(table((8, 100.0), (16, 200.0), (32, 201.0)), margin=0.05, patience=2)
    rows = [ProbeRow(8, 1.0, 10.0), ProbeRow(16, 1.0, 18.0)]
    assert _predicted_mb(rows, 32) == pytest.approx(34.0)  # 1 MB per example on top of 16 MB
    assert _predicted_mb(rows[:1], 16) is None


def test_yaml_output_is_a_mapping_with_the_batch_size():
    rows = table((8, 100.0), (16, 190.0), (32, 195.0))
    result = ProbeResult(rows, recommend(rows), "throughput stopped improving", "cpu (1 threads)", "RSS", 1000.0)
    text = to_yaml("cgcnn", result, 0.05, "python experiments/probe_batch_size.py")
    assert yaml.safe_load(text) == {"batch_size": 16}
    assert "#         32         195.0" in text  # the table travels as comments


@pytest.mark.parametrize("argv, message", [
    (["--start", "0"], "--start must be at least 1"),
    (["--margin", "-0.1"], "--margin must be 0 or more"),
    (["--memory-budget-mb", "0"], "--memory-budget-mb must be positive"),
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--model", "cgcnn", "--max-seq-length", "64"], "applies to model roberta_rte"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


# --- real probes of the tiny models on the CPU -----------------------------------------------------------

@pytest.fixture(scope="module")
def cache(smoke_cache) -> str:
    return str(smoke_cache)


@pytest.fixture(scope="module")
def cgcnn_probe(cache):
    from trainables.cgcnn import prepare

    options = {**MODELS["cgcnn"].options, "dataset_size": 240, "cache_dir": cache, "cpus_per_trial": 1}
    prepare(options)
    probe = ModelProbe("cgcnn", options, {"lr": 3e-3, "batch_size": 32, "atom_embedding_size": 32,
                                          "num_graph_conv_layers": 3, "fc_feat_size": 64, "num_fc_layers": 2})
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def roberta_probe(cache, tmp_path_factory):
    from trainables.roberta_rte import prepare

    options = {**MODELS["roberta_rte"].options, "data": str(FIXTURES / "superglue"), "cache_dir": cache,
               "model_name_or_path": str(build_tiny_roberta(tmp_path_factory.mktemp("tiny"))), "cpus_per_trial": 1}
    prepare(options)
    probe = ModelProbe("roberta_rte", options, {"lr": 1e-3, "batch_size": 8, "epochs": 2})
    yield probe
    probe.close()


def _check_monotone_table(result: ProbeResult, sizes: list[int]) -> None:
    assert [r.batch_size for r in result.rows] == sizes
    assert all(r.fits and r.examples_per_s > 0 for r in result.rows)
    peaks = [r.peak_memory_mb for r in result.rows]
    assert peaks == sorted(peaks) and peaks[-1] > peaks[0], peaks  # memory grows with the batch
    assert result.recommendation.batch_size == recommend(result.rows, 0.05, patience=10).batch_size


@pytest.mark.slow
def test_cgcnn_table_is_monotone_in_memory(cgcnn_probe):
    # patience 10: keep doubling whatever the (noisy, shared-CPU) throughput does, up to the 192
    # training graphs of the 240-structure dataset (168).
    result = run_probe(cgcnn_probe, start=32, max_batch_size=1024, steps=2, warmup_steps=1, margin=0.05,
                       patience=10, budget_mb=None)
    _check_monotone_table(result, [32, 64, 128])
    assert f"exceeds the {cgcnn_probe.train_size} training examples" in result.stop_reason


@pytest.mark.slow
def test_roberta_table_is_monotone_in_memory(roberta_probe):
    result = run_probe(roberta_probe, start=8, max_batch_size=32, steps=2, warmup_steps=1, margin=0.05,
                       patience=10, budget_mb=None)
    _check_monotone_table(result, [8, 16, 32])
    assert "max-batch-size 32" in result.stop_reason


@pytest.mark.slow
def test_memory_budget_stops_the_doubling(cgcnn_probe):
    measure(cgcnn_probe, 32, 1, 1)  # warm the process up, as run_probe does
    budget = measure(cgcnn_probe, 32, 1, 1).peak_memory_mb * 1.3  # batch 32 fits, twice that does not
    result = run_probe(cgcnn_probe, start=32, max_batch_size=1024, steps=1, warmup_steps=1, margin=0.05,
                       patience=10, budget_mb=budget)
    assert "budget" in result.stop_reason
    assert max(r.batch_size for r in result.rows) <= 64  # stopped before doubling on to 128
    assert all(r.peak_memory_mb <= budget for r in result.rows if r.fits)
    assert result.recommendation.batch_size == 32


@pytest.mark.slow
def test_command_writes_the_yaml(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("HPO_SUITE_CACHE", cache)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # main sets it for a CPU trial; restored after the test
    output = tmp_path / "batch.yaml"
    assert main(["--model", "cgcnn", "--smoke-test", "--start", "16", "--max-batch-size", "32", "--steps", "1",
                 "--min-seconds", "0", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "recommended batch_size:" in out and "batch_size    examples/s     peak_MB" in out
    assert yaml.safe_load(output.read_text())["batch_size"] in (16, 32)
