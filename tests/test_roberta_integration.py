"""Integration: run_asha.py and run_pbt.py --model roberta_rte --smoke-test on a tiny local RoBERTa
and the RTE fixture (SuperGLUE jsonl and GLUE tsv), as subprocesses through a real local Ray."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.data.rte import load_folder, majority_accuracy, split_validation

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "rte"
sys.path.insert(0, str(FIXTURES))  # the tiny-checkpoint builder lives beside the fixture data
from tiny_roberta import build_tiny_roberta  # noqa: E402

HYPERPARAMETERS = {"lr", "batch_size", "seed"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


def run_script(script: str, *args: str, cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HPO_SUITE_CACHE": str(cache), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def trial_rows(experiment: Path) -> list[list[dict]]:
    rows = []
    for progress in sorted(experiment.glob("*/progress.csv")):
        with open(progress, newline="") as handle:
            rows.append(list(csv.DictReader(handle)))
    return rows


def expected_baseline(data_dir: Path) -> float:
    data = load_folder(data_dir)
    halves = split_validation(len(data.validation), 0)
    return majority_accuracy(data.train.labels, data.validation.labels[halves["eval"]])


@pytest.mark.slow
def test_run_asha_roberta_smoke_on_jsonl_with_eval_every_steps(tmp_path, tiny_model):
    # The ASHA config's space with batches small enough for several steps per epoch on the 40
    # fixture pairs (3 or 5), so --eval-every-steps 2 reports within epochs whatever the draw.
    import yaml

    space = yaml.safe_load((REPO / "search_spaces" / "rte_hyperopt_ahb.yaml").read_text())
    space["params"]["batch_size"] = {"type": "choice", "values": [8, 16], "mutable": False}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    # Relative data path on purpose: trials run in their own working directories.
    proc = run_script(
        "run_asha.py",
        "--model",
        "roberta_rte",
        "--model-name-or-path",
        str(tiny_model),
        "--data",
        "tests/fixtures/rte/superglue",
        "--smoke-test",
        "--gpus-per-trial",
        "0",
        "--eval-every-steps",
        "2",
        "--space",
        str(tmp_path / "space.yaml"),
        "--storage-path",
        str(tmp_path),
        "--name",
        "asha",
        cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "asha" / "summary.json").read_text())
    assert (summary["model"], summary["metric"], summary["mode"], summary["scheduler"]) == (
        "roberta_rte",
        "eval_acc",
        "max",
        "asha",
    )
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert summary["prepared"]["baseline_eval_acc"] == pytest.approx(
        expected_baseline(FIXTURES / "superglue")
    )
    best = summary["best"]
    # rte_hyperopt_ahb: warmup as a share of the schedule, and no epochs under ASHA (issue 21 item 12).
    assert HYPERPARAMETERS | {"weight_decay", "warmup_ratio"} <= set(best["config"])
    assert "epochs" not in best["config"] and "warmup_steps" not in best["config"]
    assert 0 <= best["metric"] <= 1 and 0 <= best["test_acc"] <= 1
    assert "RobertaRTETrainable: device cpu" in proc.stdout + proc.stderr
    # transformers' load report (the fresh head) goes to each actor's first trial's trial.log, not the console.
    assert "LOAD REPORT" not in proc.stdout + proc.stderr
    logs = [p.read_text() for p in (tmp_path / "asha").glob("*/trial.log")]
    assert logs and any("LOAD REPORT" in text for text in logs), logs

    # Every trial stops at the smoke test's 3 epochs at the latest, counted in (fractional) epochs
    # although --eval-every-steps 2 reports more often than once per epoch for small batches.
    # Results fall on every whole epoch, so the stop lands exactly on it.
    trials = trial_rows(tmp_path / "asha")
    assert len(trials) == 4
    for rows in trials:
        epochs = [float(r["epoch"]) for r in rows]
        assert epochs == sorted(epochs) and epochs[-1] <= 3.0
        assert {1.0, 2.0, 3.0} & set(epochs) >= {e for e in (1.0, 2.0, 3.0) if e <= epochs[-1]}
        assert all(0 <= float(r["eval_acc"]) <= 1 for r in rows)
        # Every schedule is max_epochs (3) long: a trial that got there has decayed to 0 there, and
        # never before (it would have if the schedule were shorter).
        lrs = {float(r["epoch"]): float(r["lr"]) for r in rows}
        assert all(lr > 0 for epoch, lr in lrs.items() if epoch < 3.0) and lrs.get(3.0, 0.0) == 0.0
    assert any(len(rows) > float(rows[-1]["epoch"]) for rows in trials)  # more results than epochs

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(sorted((tmp_path / "asha").rglob("events.out.tfevents.*"))[0].parent))
    acc.Reload()
    assert any(tag.endswith("eval_acc") for tag in acc.Tags()["scalars"])


@pytest.mark.slow
def test_run_pbt_roberta_smoke_on_tsv(tmp_path, tiny_model):
    proc = run_script(
        "run_pbt.py",
        "--model",
        "roberta_rte",
        "--model-name-or-path",
        str(tiny_model),
        "--data",
        str(FIXTURES / "glue"),
        "--smoke-test",
        "--gpus-per-trial",
        "0",
        "--storage-path",
        str(tmp_path),
        "--name",
        "pbt",
        cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "pbt" / "summary.json").read_text())
    assert (summary["model"], summary["scheduler"], summary["space"]) == ("roberta_rte", "pbt", "rte_pbt")
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    assert summary["prepared"]["baseline_eval_acc"] == pytest.approx(expected_baseline(FIXTURES / "glue"))
    for trial in summary["trials"]:
        # rte_pbt: every member on the experiment's one schedule length (no searched epochs).
        assert HYPERPARAMETERS | {"weight_decay"} <= set(trial["config"]) and "epochs" not in trial["config"]
    # The tiny random checkpoint predicts one class on 40 pairs: its trials may collapse, and
    # collapsed trials never rank (core/scores.py); the record then says why there is no best.
    if summary["num_collapsed"] == summary["num_trials"]:
        assert summary["best"] is None
        md = (tmp_path / "pbt" / "summary.md").read_text()
        assert "- best: no trial counts (4 collapsed of 4;" in md
    else:
        assert not summary["best"]["config"].keys() - set(summary["trials"][0]["config"])
        assert not next(t for t in summary["trials"] if t["trial_id"] == summary["best"]["trial_id"])["collapsed"]
    for rows in trial_rows(tmp_path / "pbt"):
        # Each trial ends at its own epochs (or collapses), never past the smoke test's 4.
        last = rows[-1]
        assert float(last["epoch"]) <= 4 and (
            last["done"] == "True" or float(last["epoch"]) == 4 or last["collapsed"] == "True"
        )


@pytest.mark.slow
def test_under_pbt_collapsed_members_are_exploited_and_train_on(tmp_path_factory, tmp_path):
    """A checkpoint that predicts one class for every pair: its members collapse; PBT exploits them at their
    next perturbation instead of ending them (pbt_global.txt), and they train on to the end."""
    constant = build_tiny_roberta(tmp_path_factory.mktemp("constant"), constant_class=1)
    proc = run_script("run_pbt.py", "--model", "roberta_rte", "--model-name-or-path", str(constant), "--data",
                      str(FIXTURES / "glue"), "--smoke-test", "--gpus-per-trial", "0", "--storage-path",
                      str(tmp_path), "--name", "pbt", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiment = tmp_path / "pbt"
    rows = {p.parent.name.split("_")[2]: list(csv.DictReader(open(p, newline="")))
            for p in experiment.glob("*/progress.csv")}
    exploits = [json.loads(line) for line in (experiment / "pbt_global.txt").read_text().splitlines()]
    exploited_after_collapse = 0
    for recipient_tag, _donor, recipient_step, *_ in exploits:
        trial_rows = rows[f"{int(recipient_tag.split('_')[0]):05d}"]
        collapsed_at = [int(r["training_iteration"]) for r in trial_rows if r["collapsed"] == "True"]
        if collapsed_at and collapsed_at[0] <= recipient_step:
            exploited_after_collapse += 1
            later = [r for r in trial_rows if int(r["training_iteration"]) > recipient_step]
            assert not later or later[0]["restored_from_trial"], later[0]  # it went on from a donor's checkpoint
    assert exploited_after_collapse >= 1, (exploits, {k: [r["collapsed"] for r in v] for k, v in rows.items()})
    for trial_rows in rows.values():  # none ended at its collapse: every member trained to the smoke test's end
        assert float(trial_rows[-1]["epoch"]) == 4, [(r["epoch"], r["collapsed"]) for r in trial_rows]


@pytest.mark.slow
def test_bad_label_fails_before_any_trial(tmp_path, tiny_model):
    data = tmp_path / "rte"
    data.mkdir()
    (data / "train.tsv").write_text((FIXTURES / "glue" / "train.tsv").read_text())
    lines = (FIXTURES / "glue" / "dev.tsv").read_text().splitlines()
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\tcontradiction"
    (data / "dev.tsv").write_text("\n".join(lines) + "\n")
    proc = run_script(
        "run_asha.py",
        "--model",
        "roberta_rte",
        "--model-name-or-path",
        str(tiny_model),
        "--data",
        str(data),
        "--smoke-test",
        "--gpus-per-trial",
        "0",
        "--storage-path",
        str(tmp_path),
        "--name",
        "bad",
        cache=tmp_path / "cache",
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {data / 'dev.tsv'}:6: label 'contradiction' is not one of entailment, not_entailment, 0, 1"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_independent_group_lrs_run_and_the_record_plots_the_metric_against_each(tmp_path, tiny_model):
    """A per-group lr space (the write-up's naming, fitted to the tiny model's 4 layers) runs through
    the runner, and the record plots the metric against each group's lr."""
    import yaml

    lr = {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True}
    space = {"params": {"layer_0-2": lr, "layer_2-4": lr, "params_classifier.out_proj.weight": lr},
             "constants": {"lr": 1.0e-4, "layer_groups": 2, "batch_size": 16}}
    (tmp_path / "groups.yaml").write_text(yaml.safe_dump(space))
    proc = run_script(
        "run_random.py", "--model", "roberta_rte", "--model-name-or-path", str(tiny_model),
        "--data", str(FIXTURES / "superglue"), "--smoke-test", "--gpus-per-trial", "0",
        "--num-samples", "2", "--max-epochs", "1", "--space", str(tmp_path / "groups.yaml"),
        "--storage-path", str(tmp_path), "--name", "groups", cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "groups" / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["num_errored"] == 0
    for name in ("layer_0-2", "layer_2-4", "params_classifier.out_proj.weight"):
        assert 1e-5 <= summary["best"]["config"][name] <= 1e-3
        assert (tmp_path / "groups" / f"metric_vs_{name}.png").is_file(), name
