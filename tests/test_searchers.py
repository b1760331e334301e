"""Searchers: quasi-random (scipy.stats.qmc), HyperOpt TPE as the runner builds it, the Dragonfly adapter."""

import math
import os
import subprocess
import sys
from pathlib import Path

import hyperopt
import numpy as np
import pytest
from scipy.stats import qmc

from experiments.core.config import resolve_config
from experiments.core.strategies import STRATEGIES, build_search
from experiments.searchers.quasirandom import QuasiRandomSearch
from search_spaces import load_space
from search_spaces.compile import to_hyperopt, to_ray
from search_spaces.spec import parse_space

REPO = Path(__file__).resolve().parents[1]
FLOATS = parse_space("floats", {"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.3},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}})


def to_unit(config: dict) -> list[float]:
    """Position of a FLOATS config in the unit cube, each parameter on its own scale."""
    p = FLOATS["lr"]
    return [(math.log(config["lr"]) - math.log(p.low)) / (math.log(p.high) - math.log(p.low)),
            config["weight_decay"] / 0.3, config["dropout"] / 0.5]


def experiment_config(strategy: str = "random", **args):
    chosen = STRATEGIES[strategy]
    return resolve_config(strategy, args, {"search": chosen.searchers[0]}, chosen.smoke)


def test_quasirandom_same_seed_same_points_other_seed_other_points():
    space = load_space("cgcnn_default")
    first = [QuasiRandomSearch(space, "val_mae", "min", seed=7).suggest(str(i)) for i in range(1)]
    a = QuasiRandomSearch(space, "val_mae", "min", seed=7)
    b = QuasiRandomSearch(space, "val_mae", "min", seed=7)
    c = QuasiRandomSearch(space, "val_mae", "min", seed=8)
    points_a = [a.suggest(f"t{i}") for i in range(40)]
    assert points_a == [b.suggest(f"t{i}") for i in range(40)]
    assert points_a != [c.suggest(f"t{i}") for i in range(40)]
    assert points_a[0] == first[0]


@pytest.mark.parametrize("sampler", ["sobol", "halton"])
def test_quasirandom_is_more_even_than_rays_random_search(sampler):
    n = 64
    searcher = QuasiRandomSearch(FLOATS, "val_mae", "min", sampler=sampler, seed=0)
    quasi = np.array([to_unit(searcher.suggest(str(i))) for i in range(n)])
    quasi_discrepancy = qmc.discrepancy(quasi)
    domains = to_ray(FLOATS)
    for seed in range(10):  # Ray's random search, the same count, ten seeds
        rng = np.random.RandomState(seed)
        configs = [{k: d.sample(random_state=rng) for k, d in domains.items()} for _ in range(n)]
        assert quasi_discrepancy < qmc.discrepancy(np.array([to_unit(c) for c in configs]))


def test_quasirandom_configs_lie_inside_the_spec():
    for name in ("cgcnn_default", "cgcnn_nersc", "rte_hyperopt_ahb", "rte_pbt"):
        space = load_space(name)
        searcher = QuasiRandomSearch(space, "val_mae", "min", seed=3)
        configs = [searcher.suggest(str(i)) for i in range(200)]
        assert all(space.contains(c) for c in configs), name
        for p in space.params:  # 200 even points reach every value of a small finite parameter
            if p.kind in ("choice", "discrete") and len(p.values) <= 12:
                assert {c[p.name] for c in configs} == set(p.values)


def test_quasirandom_resumes_the_same_sequence_after_save_and_restore(tmp_path):
    space = load_space("cgcnn_default")
    whole = QuasiRandomSearch(space, "val_mae", "min", seed=5)
    expected = [whole.suggest(str(i)) for i in range(40)]
    first = QuasiRandomSearch(space, "val_mae", "min", seed=5)
    got = [first.suggest(str(i)) for i in range(21)]
    first.save(str(tmp_path / "searcher.pkl"))
    second = QuasiRandomSearch(space, "val_mae", "min", seed=0)
    second.restore(str(tmp_path / "searcher.pkl"))
    got += [second.suggest(str(i)) for i in range(21, 40)]
    assert got == expected


def test_hyperopt_first_n_initial_points_are_random_then_tpe():
    config = experiment_config(search="hyperopt", seed=11, space="rte_hyperopt_ahb")
    config.n_initial_points = 4
    space = load_space(config.space)
    limiter, param_space = build_search(config, space)
    assert param_space == {"seed": 11}  # the space lives in the searcher, only constants in param_space
    assert limiter.max_concurrent == config.max_concurrent_search
    searcher = limiter.searcher
    # What hyperopt's random sampler draws from the same seeds HyperOptSearch hands TPE.
    seeds = np.random.RandomState(11)
    expression = to_hyperopt(space)
    domain = hyperopt.Domain(lambda s: s, expression)

    def random_draw(seed: int) -> dict:
        doc = hyperopt.rand.suggest([0], domain, hyperopt.Trials(), seed)[0]
        return hyperopt.space_eval(expression, {k: v[0] for k, v in doc["misc"]["vals"].items()})

    from_random, from_tpe = [], []
    for i in range(8):
        suggested = limiter.suggest(f"t{i}")
        assert space.contains(suggested)
        (from_random if suggested == random_draw(seeds.randint(2**31 - 1)) else from_tpe).append(i)
        # A smooth objective with its optimum inside the space, so TPE has something to model.
        score = abs(math.log(suggested["lr"] / 2e-5)) + suggested["weight_decay"]
        # At the full budget: a model-based searcher learns only final values (FinalResultSearcher).
        limiter.on_trial_complete(f"t{i}", {config.metric: score, "training_iteration": config.max_epochs})
    assert from_random == [0, 1, 2, 3] and from_tpe == [4, 5, 6, 7]
    assert searcher.metric == "val_mae" and searcher.mode == "min"


def test_dragonfly_ask_tell_rounds_stay_in_the_domain_with_int_and_discrete_numeric():
    from experiments.searchers.dragonfly import DragonflySearch

    space = load_space("cgcnn_nersc")  # ints, a float and the discrete numeric batch-size list
    searcher = DragonflySearch(space, "val_mae", "min", seed=2)
    suggested = []
    for i in range(7):
        config = searcher.suggest(str(i))
        suggested.append(config)
        assert space.contains(config), config
        assert all(isinstance(config[p.name], int) for p in space.params if p.kind == "int")
        assert config["batch_size"] in (40, 61, 79, 102, 120, 141, 163, 183, 201, 210, 225, 238)
        value = config["lr"] * 10 + config["num_graph_conv_layers"] / 40
        searcher.on_trial_complete(str(i), {"val_mae": value})
    assert len(searcher.history) == 7
    # Dragonfly maximises: a "min" metric is told negated.
    assert searcher.history[0][1] == pytest.approx(-(suggested[0]["lr"] * 10
                                                     + suggested[0]["num_graph_conv_layers"] / 40))
    # Seeded: a second searcher proposes the same first point; numpy's global state is untouched.
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    again = DragonflySearch(space, "val_mae", "min", seed=2)
    assert again.suggest("0") == suggested[0]
    assert np.random.random() == before


def test_dragonfly_missing_extra_is_one_clear_line_before_any_trial(tmp_path):
    # A shadow package that fails to import like an absent one; the real Ray and suite run.
    shadow = tmp_path / "shadow" / "dragonfly"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'dragonfly'\", name='dragonfly')\n")
    env = {**os.environ, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{REPO}",
           "HPO_SUITE_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run_random.py"), "--search", "dragonfly", "--smoke-test",
         "--storage-path", str(tmp_path / "results"), "--name", "df"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: --search dragonfly needs the optional dragonfly-opt package")
    assert "pip install --no-build-isolation -e '.[dragonfly]'" in lines[0]
    assert not (tmp_path / "results" / "df").exists() and not (tmp_path / "cache").exists()


def test_searchers_import_nothing_from_experiments_outside_searchers(tmp_path):
    # Imports point one way (scripts -> library -> search_spaces): the searchers must load on their
    # own and raise their own error, or experiments.core.config -> searchers -> config is a cycle.
    code = ("import sys\n"
            "import experiments.searchers, experiments.searchers.dragonfly, experiments.searchers.quasirandom\n"
            "outside = sorted(m for m in sys.modules if m.startswith('experiments.')\n"
            "                 and not m.startswith('experiments.searchers'))\n"
            "print(outside)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_missing_dragonfly_raises_the_searchers_own_one_line_error(tmp_path):
    shadow = tmp_path / "shadow" / "dragonfly"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'dragonfly'\", name='dragonfly')\n")
    code = ("from experiments.searchers import SearcherError\n"
            "from experiments.searchers.dragonfly import import_dragonfly\n"
            "try:\n    import_dragonfly()\n"
            "except SearcherError as err:\n    print(type(err).__module__, err)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{REPO}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("experiments.searchers.base --search dragonfly needs the optional dragonfly-opt")
    assert len(proc.stdout.strip().splitlines()) == 1


def test_quasirandom_unknown_sampler_is_a_searcher_error():
    from experiments.searchers import SearcherError

    with pytest.raises(SearcherError, match="quasi-random sampler must be one of sobol, halton, got 'latin'"):
        QuasiRandomSearch(FLOATS, "val_mae", "min", sampler="latin")
