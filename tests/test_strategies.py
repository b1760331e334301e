"""Every strategy end to end: the run scripts, the runner's searcher/scheduler composition, PBT exploits.

The slow tests run real experiments: the scripts as subprocesses with --smoke-test, and the
runner's searchers and schedulers in one shared local Ray session with the real CGCNN trainable
on a tiny built-in dataset.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.core.config import ConfigError, build_parser, resolve_config
from experiments.core.runner import checkpoint_config, main
from experiments.core.strategies import STRATEGIES, build_scheduler, build_search
from search_spaces import load_space
from search_spaces.spec import parse_space

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("random", "grid", "asha", "ahb", "pbt", "bohb")


def experiment_config(strategy: str, **args):
    chosen = STRATEGIES[strategy]
    return resolve_config(strategy, args, {"search": chosen.searchers[0]}, chosen.smoke)


@pytest.fixture(scope="module")
def cache_dir(smoke_cache) -> Path:
    """The suite's cache of the tiny smoke-test dataset (built once, tests/conftest.py)."""
    return smoke_cache


def run_script(strategy: str, *args: str, tmp_path: Path, cache: Path, timeout: int = 300) -> dict:
    """Run ``experiments/run_<strategy>.py --smoke-test`` and return its summary.json."""
    env = {**os.environ, "HPO_SUITE_CACHE": str(cache), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / f"run_{strategy}.py"), "--smoke-test",
         "--storage-path", str(tmp_path), "--name", strategy, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / strategy / "summary.json").read_text())


# --- fast: composition and configuration errors -------------------------------------------------

@pytest.mark.parametrize("strategy", SCRIPTS)
def test_every_script_exists_with_help_saying_when_to_use_it(strategy, capsys):
    script = REPO / "experiments" / f"run_{strategy}.py"
    assert script.is_file() and f'main("{strategy}", __doc__)' in script.read_text()
    with pytest.raises(SystemExit) as info:
        main(strategy, f"doc of {strategy}", ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"doc of {strategy}" in out and "--smoke-test" in out
    assert ("--search" in out) == (strategy in ("random", "asha", "ahb"))
    assert ("--force" in out) == (strategy == "grid")


@pytest.mark.parametrize("strategy", ["random", "grid", "ahb", "pbt"])
def test_default_configs_compose_their_searcher_and_scheduler(strategy):
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator

    config = experiment_config(strategy)
    assert config.config_file.endswith(f"configs/cgcnn/{strategy}.yaml")
    searcher, _ = build_search(config, load_space(config.space))
    scheduler = build_scheduler(config, load_space(config.space))
    assert isinstance(searcher, BasicVariantGenerator)
    expected = {"random": FIFOScheduler, "grid": FIFOScheduler, "ahb": AsyncHyperBandScheduler,
                "pbt": PopulationBasedTraining}[strategy]
    # PBT: Ray's class with only its choice of the next paused member changed (strategies.fair_pbt_class).
    assert (type(scheduler).__bases__ == (expected,)) if strategy == "pbt" else (type(scheduler) is expected)
    if strategy == "pbt":
        pbt = (config.num_samples, config.perturbation_interval, config.burn_in_period, config.synch)
        assert pbt == (8, 2, 2, True)


def test_pbt_settings_reach_rays_scheduler_and_flags_override_the_yaml(monkeypatch):
    import ray.tune.schedulers as schedulers

    seen = {}

    class Recording(schedulers.PopulationBasedTraining):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(schedulers, "PopulationBasedTraining", Recording)
    args = {"perturbation_interval": 3, "burn_in_period": 5, "synch": False, "max_epochs": 20}
    config = resolve_config("pbt", args, {"search": "random"}, {})
    build_scheduler(config, load_space(config.space))
    assert (seen["perturbation_interval"], seen["burn_in_period"], seen["synch"]) == (3, 5, False)
    parsed = vars(build_parser("pbt", "").parse_args(["--no-synch", "--burn-in-period", "5"]))
    assert parsed == {"synch": False, "burn_in_period": 5}
    assert vars(build_parser("ahb", "").parse_args(["--brackets", "2"])) == {"brackets": 2}


@pytest.mark.parametrize(("args", "epoch"), [({"burn_in_period": 12}, 12), ({"perturbation_interval": 14}, 14)])
def test_pbt_that_would_never_perturb_is_refused(args, epoch):
    with pytest.raises(ConfigError, match=f"PBT would never perturb: its first perturbation comes at epoch {epoch} "):
        resolve_config("pbt", {**args, "max_epochs": 12}, {"search": "random"}, {})


def test_checkpoints_only_where_pbt_needs_them():
    pbt = checkpoint_config(experiment_config("pbt"))
    asha = checkpoint_config(experiment_config("asha"))
    assert pbt.checkpoint_at_end is False and asha.checkpoint_at_end is False
    assert asha.num_to_keep is None and asha.checkpoint_frequency == 0
    # Ray's num_to_keep is per trial: two per member, whatever the population (not one per member each).
    assert pbt.num_to_keep == 2


@pytest.mark.parametrize(("strategy", "args", "message"), [
    ("asha", {"grace_period": 5, "max_epochs": 5},
     "grace_period (5) equals max-epochs: ASHA would never stop a trial early (its only rung is the last epoch); "
     "lower --grace-period or use run_random.py"),
    ("ahb", {"grace_period": 3, "max_epochs": 12, "reduction_factor": 2, "brackets": 4},
     "brackets 4 is more than max-epochs 12, grace-period 3 and reduction-factor 2 allow (3, the last of them "
     "never stopping a trial); brackets beyond it have no rungs and run plain random search"),
    ("ahb", {"grace_period": 1, "max_epochs": 5, "reduction_factor": 2, "brackets": 4},
     "brackets 4 is more than max-epochs 5, grace-period 1 and reduction-factor 2 allow (3, "),
])
def test_brackets_and_grace_periods_that_never_stop_are_one_line_errors(strategy, args, message, capsys, tmp_path):
    with pytest.raises(ConfigError) as info:
        experiment_config(strategy, **args)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    flags = [x for key, value in args.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    assert main(strategy, "doc", [*flags, "--storage-path", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_every_allowed_bracket_has_a_rung_and_the_shipped_ahb_brackets_are_allowed():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from experiments.core.config import max_brackets

    for max_t, grace, eta in ((12, 3, 2), (5, 1, 2), (27, 1, 3), (81, 1, 3), (20, 4, 2), (9, 1, 3.0)):
        allowed = max_brackets(max_t, grace, eta)
        scheduler = AsyncHyperBandScheduler(max_t=max_t, grace_period=grace, reduction_factor=eta,
                                            brackets=allowed + 1)
        rungs = [len(b._rungs) for b in scheduler._brackets]
        assert all(rungs[:allowed]) and rungs[allowed] == 0, (max_t, grace, eta, rungs)
    for model in ("cgcnn", "roberta_rte"):
        experiment_config("ahb", model=model)  # the shipped configs pass the check
    # configs/cgcnn/ahb.yaml: rung counts 3, 2, 1; Ray draws a trial's bracket by their softmax.
    config = experiment_config("ahb")
    scheduler = build_scheduler(config, load_space(config.space))
    sizes = [len(b._rungs) for b in scheduler._brackets]
    assert sizes == [3, 2, 1]
    import math
    shares = [math.exp(s) / sum(math.exp(t) for t in sizes) for s in sizes]
    assert [round(100 * x) for x in shares] == [67, 24, 9]


@pytest.mark.parametrize("search", ["hyperopt", "dragonfly", "optuna"])
def test_max_concurrent_trials_other_than_the_searchers_limit_is_one_line_before_any_trial(search, capsys, tmp_path):
    args = ["--search", search, "--max-concurrent-trials", "3", "--storage-path", str(tmp_path)]
    assert main("asha", "doc", args) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --max-concurrent-trials 3 with search {search}: its proposals are already held to "
                   "max_concurrent_search 4; set max_concurrent_search to 3 instead (or leave "
                   "--max-concurrent-trials 0)\n")
    assert not list(tmp_path.iterdir())
    experiment_config("asha", search=search, max_concurrent_trials=4)  # the same limit is fine


def test_grid_above_the_size_limit_is_refused_in_one_line_unless_forced(tmp_path, capsys):
    args = ["--space", "rte_grid", "--num-samples", "6", "--storage-path", str(tmp_path)]
    assert main("grid", "grid", args) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: the grid of search space 'rte_grid' has 18 points x 6 repeat(s) = 108 trials, above "
                   "max_grid_size 100; shrink the grid, raise max_grid_size or pass --force")
    forced = experiment_config("grid", space="rte_grid", num_samples=6, force=True)
    assert forced.force and forced.to_yaml_dict()["force"] is True  # the reproduce snapshot keeps it
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_grid_over_a_space_without_grid_values_is_one_line(capsys, tmp_path):
    assert main("grid", "grid", ["--space", "cgcnn_default", "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: search space 'cgcnn_default': parameter 'lr' (float) has no 'grid' values")
    assert "\n" not in err


def test_pbt_refuses_a_population_of_one_and_a_space_with_nothing_to_mutate(tmp_path):
    with pytest.raises(ConfigError, match="PBT needs a population of at least 2 trials, got num-samples 1"):
        build_scheduler(experiment_config("pbt", num_samples=1), load_space("cgcnn_default"))
    frozen = parse_space("frozen", {"params": {"bs": {"type": "choice", "values": [16, 32], "mutable": False}}})
    with pytest.raises(ConfigError, match="search space 'frozen' has no mutable parameter for PBT"):
        build_scheduler(experiment_config("pbt"), frozen)


# --- slow: the scripts end to end --------------------------------------------------------------

@pytest.mark.slow
def test_run_random_smoke_test_runs_every_trial_to_the_end(tmp_path, cache_dir):
    summary = run_script("random", tmp_path=tmp_path, cache=cache_dir)
    assert (summary["strategy"], summary["searcher"], summary["scheduler"]) == ("random", "random", "fifo")
    assert summary["num_trials"] == 3 and summary["num_errored"] == 0
    assert {t["iteration"] for t in summary["trials"]} == {2} and summary["num_early_stopped"] == 0


@pytest.mark.slow
def test_run_grid_smoke_test_enumerates_the_full_product_once(tmp_path, cache_dir):
    summary = run_script("grid", tmp_path=tmp_path, cache=cache_dir)
    assert (summary["searcher"], summary["scheduler"], summary["space"]) == ("grid", "fifo", "cgcnn_grid")
    space = load_space("cgcnn_grid")
    points = [tuple(t["config"][p.name] for p in space.params) for t in summary["trials"]]
    expected = {(lr, bs, emb) for lr in (1e-3, 3e-3, 1e-2) for bs in (32, 64) for emb in (16, 32)}
    assert len(points) == len(expected) == 12 and set(points) == expected
    # The space's constants reach every trial.
    assert all(t["config"]["num_graph_conv_layers"] == 3 for t in summary["trials"])


@pytest.mark.slow
def test_run_ahb_smoke_test_with_hyperopt(tmp_path, cache_dir):
    summary = run_script("ahb", "--search", "hyperopt", tmp_path=tmp_path, cache=cache_dir)
    assert (summary["strategy"], summary["searcher"], summary["scheduler"]) == ("ahb", "hyperopt", "ahb")
    assert summary["num_trials"] == 6 and summary["num_errored"] == 0
    space = load_space("cgcnn_default")
    assert all(space.contains(t["config"]) for t in summary["trials"])


@pytest.mark.slow
def test_run_pbt_exploits_continue_from_the_donors_checkpoint_with_a_changed_config(tmp_path, cache_dir):
    max_epochs = 6  # a few more perturbation rounds than the smoke test's own, so exploits surely happen
    summary = run_script("pbt", "--max-epochs", str(max_epochs), tmp_path=tmp_path, cache=cache_dir)
    assert (summary["strategy"], summary["searcher"], summary["scheduler"]) == ("pbt", "random", "pbt")
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0
    exploits = [json.loads(line) for line in (tmp_path / "pbt" / "pbt_global.txt").read_text().splitlines()]
    assert exploits, "PBT performed no exploit"
    trial_paths = {Path(t["path"]).name.split("_")[2]: Path(t["path"]) for t in summary["trials"]}
    trial_ids = {Path(t["path"]).name.split("_")[2]: t["trial_id"] for t in summary["trials"]}
    rows = {tag: [json.loads(line) for line in (path / "result.json").read_text().splitlines()]
            for tag, path in trial_paths.items()}

    verified, superseded = 0, 0
    for n, (recipient_tag, donor_tag, _recipient_step, donor_step, donor_config, new_config) in enumerate(exploits):
        if donor_step >= max_epochs:
            continue  # exploited as training ended: no epoch follows
        # Ray's PBT: the lr (log scale, mutable) changes; batch size and architecture are the donor's.
        assert new_config["lr"] != donor_config["lr"]
        assert {k: v for k, v in new_config.items() if k != "lr"} == {k: v for k, v in donor_config.items()
                                                                     if k != "lr"}
        recipient, donor = (f"{int(tag.split('_')[0]):05d}" for tag in (recipient_tag, donor_tag))
        # Tune logs no row for a result on which PBT pauses a trial, so take the first one logged after.
        after = [r for r in rows[recipient] if r["training_iteration"] > donor_step and r["config"] == new_config]
        if not after:
            # Exploited again before it logged a row with this config: the later exploit is checked instead.
            assert any(e[0] == recipient_tag for e in exploits[n + 1:]), (recipient_tag, donor_step)
            superseded += 1
            continue
        # The recipient's trial log names the checkpoint its model came from: the donor's, saved by the
        # donor's own trial at the epoch PBT cloned (trainables/checkpoint_origin.py; a later reload of the
        # recipient's own checkpoint keeps that origin). Synchronous PBT logs the donor's step one behind.
        assert after[0]["restored_from_trial"] == trial_ids[donor], (after[0], trial_ids[donor])
        assert after[0]["restored_from_epoch"] in (donor_step, donor_step + 1), (after[0], donor_step)
        assert after[0]["epoch"] > after[0]["restored_from_epoch"], after[0]
        # The epoch counter came back with the weights (a rebuilt, unrestored model would count from 1).
        # (Synchronous PBT logs the donor's iteration one behind while the donor is paused at the
        # perturbation: Ray reads it from the donor's last result Tune kept, hence only > donor_step.)
        assert after[0]["epoch"] == after[0]["training_iteration"] >= 2
        assert after[0]["training_iteration"] > donor_step
        verified += 1
    assert verified >= 1 and verified + superseded == sum(1 for e in exploits if e[3] < max_epochs)
    # No trial ever reports a checkpoint of a trial that was not its donor or itself.
    donors = {f"{int(e[0].split('_')[0]):05d}": set() for e in exploits}
    for e in exploits:
        donors[f"{int(e[0].split('_')[0]):05d}"].add(trial_ids[f"{int(e[1].split('_')[0]):05d}"])
    for tag, trial_rows in rows.items():
        sources = {r["restored_from_trial"] for r in trial_rows} - {"", trial_ids[tag]}
        assert sources <= donors.get(tag, set()), (tag, sources)
    # Ray's num_to_keep is per trial: each member keeps its 2 newest checkpoints, and no exploit found its
    # donor's gone (a failed restore errors the trial: num_errored is 0 above).
    kept = {tag: len(list(path.glob("checkpoint_*"))) for tag, path in trial_paths.items()}
    assert max(kept.values()) <= 2 and sum(kept.values()) >= 1, kept


# --- slow: searchers and schedulers in one Ray session -----------------------------------------

@pytest.fixture(scope="module")
def ray_session(smoke_cache):
    import ray

    from trainables.registry import MODELS

    options = {**MODELS["cgcnn"].options, **MODELS["cgcnn"].smoke_options, "cache_dir": str(smoke_cache),
               "cpus_per_trial": 1}
    MODELS["cgcnn"].load_prepare()(options)  # build the tiny dataset once, as the runner's driver does
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield options
    ray.shutdown()


def tune_in_session(options: dict, config, storage: Path):
    """Run the runner's searcher and scheduler for ``config`` on the shared Ray session."""
    from ray import tune

    from trainables.cgcnn import CGCNNTrainable

    space = load_space(config.space)
    searcher, param_space = build_search(config, space)
    scheduler = build_scheduler(config, space)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(CGCNNTrainable, options=options), {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=config.metric, mode=config.mode, search_alg=searcher,
                                    scheduler=scheduler, num_samples=config.num_samples, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{config.strategy}_{config.search}", storage_path=str(storage),
                                  stop={"training_iteration": config.max_epochs},
                                  checkpoint_config=checkpoint_config(config), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert all(space.contains(r.config) for r in results)
    return results, scheduler, searcher


@pytest.mark.slow
def test_asha_with_dragonfly_stops_trials_early(ray_session, tmp_path):
    config = experiment_config("asha", smoke_test=True, search="dragonfly", num_samples=8, max_epochs=4)
    config.max_concurrent_search = 2
    results, _, searcher = tune_in_session(ray_session, config, tmp_path)
    epochs = [r.metrics["training_iteration"] for r in results]
    assert len(epochs) == 8 and min(epochs) < 4 and max(epochs) == 4
    # Dragonfly learnt the full-budget values only (searcher: limiter -> FinalResultSearcher -> Dragonfly).
    told = sorted(-value for _, value in searcher.searcher.searcher.history)  # told negated: it maximises
    full = sorted(r.metrics["val_mae"] for r in results if r.metrics["training_iteration"] == 4)
    assert told == pytest.approx(full)


@pytest.mark.slow
def test_ahb_with_quasirandom_uses_several_brackets_and_stops_trials_early(ray_session, tmp_path):
    import numpy as np

    config = experiment_config("ahb", smoke_test=True, search="quasirandom", num_samples=8, max_epochs=4)
    assert config.brackets == 2
    np.random.seed(8)  # AsyncHyperBandScheduler draws each trial's bracket from numpy's global state
    results, scheduler, _ = tune_in_session(ray_session, config, tmp_path)
    epochs = [r.metrics["training_iteration"] for r in results]
    assert len(epochs) == 8 and min(epochs) < 4 and max(epochs) == 4
    # Each bracket's rungs record the trials that reached them: trials ran in more than one bracket.
    used = [bracket for bracket in scheduler._brackets if any(recorded for _, recorded in bracket._rungs)]
    assert len(scheduler._brackets) == 2 and len(used) == 2


@pytest.mark.slow
def test_optuna_under_asha_and_ahb_learns_full_budget_values_and_prunes_stopped_trials(ray_session, tmp_path):
    for strategy in ("asha", "ahb"):
        # 4 trials of 3 epochs; rungs at 1 and 2 (AHB's second bracket only at 2); 2 random, then TPE.
        config = experiment_config(strategy, smoke_test=True, search="optuna", num_samples=4, max_epochs=3,
                                   n_initial_points=2)
        config.max_concurrent_search = 2
        results, _, searcher = tune_in_session(ray_session, config, tmp_path / strategy)
        epochs = {r.metrics["trial_id"]: r.metrics["training_iteration"] for r in results}
        assert len(epochs) == 4 and max(epochs.values()) == 3
        study = searcher.searcher.searcher._ot_study  # limiter -> FinalResultSearcher -> OptunaSearch
        states = sorted(t.state.name for t in study.get_trials(deepcopy=False))
        assert states == sorted("COMPLETE" if e == 3 else "PRUNED" for e in epochs.values()), strategy
        completed = sorted(t.value for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
        assert completed == pytest.approx(sorted(r.metrics["val_mae"] for r in results
                                                 if r.metrics["training_iteration"] == 3))


@pytest.mark.slow
def test_run_bohb_smoke_test_pauses_promotes_and_finishes_every_trial(tmp_path, cache_dir):
    summary = run_script("bohb", tmp_path=tmp_path, cache=cache_dir)
    assert (summary["strategy"], summary["searcher"], summary["scheduler"]) == ("bohb", "bohb", "bohb")
    assert summary["num_trials"] == 4 and summary["num_errored"] == 0 and summary["num_unfinished"] == 0
    epochs = [t["iteration"] for t in summary["trials"]]
    assert min(epochs) == 1 and max(epochs) == 4  # stopped at the first budget, and promoted to the full one
    space = load_space("cgcnn_default")
    assert all(space.contains(t["config"]) for t in summary["trials"])
