"""Two-stage seed search: seed ranking and the generated stage spaces on constructed data; bad input;
and a real smoke run through the runner on a local Ray (stage 2 starts from exactly stage 1's top
seeds; resuming after an interruption between the stages does not run stage 1 again)."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from experiments.core.config import ConfigError
from experiments.workflows.two_stage import (
    STAGE1,
    STAGE2,
    completed_summary,
    main,
    rank_seeds,
    resolve_two_stage,
    stage2_space,
    top_seeds,
)
from search_spaces import load_space
from search_spaces.compile import to_grid, to_pbt_mutations
from search_spaces.spec import parse_space


def trial(seed, metric, iteration, errored=False):
    return {"trial_id": f"t{seed}", "config": {"seed": seed, "lr": 0.01}, "metric": metric, "test_mae": 0.5,
            "iteration": iteration, "errored": errored}


def summary(mode, trials):
    return {"mode": mode, "trials": trials}


# --- ranking and spaces ---------------------------------------------------------------------------------

def test_seeds_rank_by_rungs_reached_then_metric():
    trials = [trial(0, 0.30, 1), trial(1, 0.50, 4), trial(2, 0.40, 4), trial(3, 0.10, 2),
              trial(4, float("nan"), 4), trial(5, None, 4), trial(6, 0.01, 4, errored=True)]
    assert [r["seed"] for r in rank_seeds(summary("min", trials))] == [2, 1, 3, 0]
    assert [r["seed"] for r in rank_seeds(summary("max", trials))] == [1, 2, 3, 0]
    assert top_seeds(summary("min", trials), 2) == [2, 1]
    with pytest.raises(ConfigError, match="finished only 4 seed"):
        top_seeds(summary("min", trials), 5)


def test_diverged_and_collapsed_seeds_rank_last():
    trials = [trial(0, 0.9, 2), {**trial(1, 0.1, 4), "collapsed": True}, {**trial(2, 0.05, 4), "diverged": True}]
    assert [r["seed"] for r in rank_seeds(summary("min", trials))] == [0, 2, 1]


def test_a_seed_counts_once():
    trials = [trial(7, 0.2, 3), trial(7, 0.1, 3), trial(8, 0.3, 3)]
    assert [r["seed"] for r in rank_seeds(summary("min", trials))] == [7, 8]


def test_stage2_space_starts_from_the_fixed_values_and_perturbs_only_the_pbt_space():
    config = resolve_two_stage({"model": "roberta_rte"})
    raw = stage2_space(config, [5, 2], load_space("rte_pbt"))
    space = parse_space("stage2", raw)
    assert space["seed"].values == (5, 2) and not space["seed"].mutable
    grid = to_grid(space)
    assert grid["seed"] == {"grid_search": [5, 2]}
    assert grid["lr"] == {"grid_search": [2e-5]} and grid["weight_decay"] == {"grid_search": [0.0]}
    assert space.constants == {"batch_size": 16, "epochs": 3, "warmup_ratio": 0.06}
    mutations, _ = to_pbt_mutations(space, seed=0)
    assert set(mutations) <= {"lr", "weight_decay"} and "seed" not in mutations
    assert (space["lr"].low, space["lr"].high) == (1e-5, 5e-5)  # PBT stays inside rte_pbt's bounds


def test_completed_summary(tmp_path):
    assert completed_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text(json.dumps({"num_unfinished": 2, "num_errored": 0}))
    assert completed_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text(json.dumps({"num_unfinished": 0, "num_errored": 1}))
    assert completed_summary(tmp_path) is not None
    assert completed_summary(tmp_path, retry_errored=True) is None


@pytest.mark.parametrize("argv, message", [
    (["--num-samples", "8"], "--num-samples does not apply"),
    (["--num-seeds", "3", "--top-seeds", "4"], "top-seeds (4) cannot exceed num-seeds (3)"),
    (["--population-per-seed", "1"], "population-per-seed must be at least 2"),
    (["--space", "rte_pbt"], "hyperparameters lack 'weight_decay'"),
    (["--space", "nosuch"], "unknown search space 'nosuch'"),
    (["--max-epochs", "0"], "max-epochs must be a positive integer"),
    (["--max-epochs", "2"], "grace_period (3) must not exceed max-epochs (2)"),
    (["--resume"], "--resume needs --name"),
    (["--resume", "--name", "nothing-here"], "no two-stage run to resume"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_bad_config_file_and_hyperparameters(tmp_path, capsys):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("model: cgcnn\nnum_seedz: 4\n")
    assert main(["--config", str(bad_key)]) == 2
    assert "unknown config key 'num_seedz'; did you mean 'num_seeds'?" in capsys.readouterr().err
    own = tmp_path / "own.yaml"
    own.write_text("model: cgcnn\nsearch: hyperopt\n")
    assert main(["--config", str(own)]) == 2
    assert "'search' is set by the two-stage run itself" in capsys.readouterr().err
    typed = tmp_path / "typed.yaml"
    typed.write_text("model: cgcnn\nmax_epochs: many\n")
    assert main(["--config", str(typed)]) == 2
    assert "'max_epochs' must be int, got 'many'" in capsys.readouterr().err
    listed = tmp_path / "listed.yaml"
    listed.write_text("model: cgcnn\nhyperparameters: [1, 2]\n")
    assert main(["--config", str(listed)]) == 2
    assert "'hyperparameters' must be a mapping" in capsys.readouterr().err
    outside = tmp_path / "hp.yaml"
    outside.write_text("lr: 5.0\n")
    assert main(["--hyperparameters", str(outside), "--storage-path", str(tmp_path)]) == 2
    assert "lr=5.0 lies outside pbt space 'cgcnn_default'" in capsys.readouterr().err
    seeded = tmp_path / "seed.yaml"
    seeded.write_text("seed: 3\n")
    assert main(["--hyperparameters", str(seeded)]) == 2
    assert "must not fix 'seed'" in capsys.readouterr().err


# --- a real two-stage run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, smoke_cache):
    """One CGCNN --smoke-test run: 4 seeds in stage 1, the best 2 x 2 PBT trials in stage 2."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HPO_SUITE_CACHE", str(smoke_cache))
    mp.setenv("RAY_ADDRESS", "local")  # a fresh local Ray, never another user's cluster on this machine
    storage = tmp_path_factory.mktemp("results")
    probe = tmp_path_factory.mktemp("probe") / "batch.yaml"
    probe.write_text("# from probe_batch_size.py\nbatch_size: 16\n")
    code = main(["--smoke-test", "--storage-path", str(storage), "--name", "run", "--hyperparameters", str(probe)])
    yield storage, storage / "run", code
    mp.undo()


def _initial_seed(trial_record: dict) -> int:
    # PBT copies a donor's config (seed included) into the trials it exploits, so the seed a trial
    # started with is in its params.json, written when it started.
    return json.loads((Path(trial_record["path"]) / "params.json").read_text())["seed"]


@pytest.mark.slow
def test_stage2_receives_exactly_the_top_seeds_of_stage1(smoke_run):
    _, parent, code = smoke_run
    assert code == 0
    stage1 = json.loads((parent / STAGE1 / "summary.json").read_text())
    stage2 = json.loads((parent / STAGE2 / "summary.json").read_text())
    record = json.loads((parent / "two_stage.json").read_text())
    assert sorted(t["config"]["seed"] for t in stage1["trials"]) == [0, 1, 2, 3]  # every seed, once
    assert all(t["config"]["batch_size"] == 16 for t in stage1["trials"])  # the probe's YAML overlaid
    # The top 2 by ASHA's ranking, computed here from stage 1's own results.
    ranked = sorted((t for t in stage1["trials"] if not t["errored"]),
                    key=lambda t: (t["diverged"] or t["collapsed"], -t["iteration"], t["metric"]))
    expected = []
    for t in ranked:
        if t["config"]["seed"] not in expected:
            expected.append(t["config"]["seed"])
    expected = expected[:2]
    assert record["top_seeds"] == expected and record["status"] == "complete"
    assert Counter(_initial_seed(t) for t in stage2["trials"]) == {expected[0]: 2, expected[1]: 2}
    assert stage2["scheduler"] == "pbt" and stage1["scheduler"] == "asha"
    # One record links both, with the command that reproduces the whole run.
    assert record["stage1"]["summary"] == str(parent / STAGE1 / "summary.json")
    assert record["best"] == stage2["best"]
    assert record["reproduce_command"] == f"python experiments/run_two_stage.py --config {parent / 'two_stage.yaml'}"
    assert stage1["reproduce_command"] == stage2["reproduce_command"] == record["reproduce_command"]
    snapshot = yaml.safe_load((parent / "two_stage.yaml").read_text())
    assert snapshot["num_seeds"] == 4 and snapshot["hyperparameters"]["batch_size"] == 16
    md = (parent / "two_stage.md").read_text()
    assert "## Stage 1: seeds, best first" in md and record["reproduce_command"] in md


@pytest.mark.slow
def test_resume_between_the_stages_does_not_rerun_stage1(smoke_run, capsys):
    storage, parent, code = smoke_run
    assert code == 0
    before = json.loads((parent / "two_stage.json").read_text())
    stage1_files = {p: p.stat().st_mtime_ns for p in (parent / STAGE1).rglob("*")
                    if p.name in ("progress.csv", "result.json") or p.name.startswith("experiment_state")}
    # The state an interruption after stage 1 leaves: stage 1 complete, stage 2 never started.
    shutil.rmtree(parent / STAGE2)
    (parent / "two_stage.json").unlink()
    capsys.readouterr()
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_ADDRESS", "local")
    try:
        assert main(["--resume", "--name", "run", "--storage-path", str(storage)]) == 0
    finally:
        mp.undo()
    out = capsys.readouterr().out
    assert f"{STAGE1}: already complete" in out
    after_files = {p: p.stat().st_mtime_ns for p in stage1_files}
    assert after_files == stage1_files  # no stage-1 trial wrote anything
    after = json.loads((parent / "two_stage.json").read_text())
    assert after["top_seeds"] == before["top_seeds"] and after["status"] == "complete"
    assert (parent / STAGE2 / "summary.json").is_file()
    # A second attempt at the same --name without --resume is refused rather than mixed in.
    assert main(["--name", "run", "--storage-path", str(storage), "--smoke-test"]) == 2
