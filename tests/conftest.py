"""Shared test set-up: isolated caches and an explicit Ray auth mode."""

import os
import shutil
from pathlib import Path

import pytest

# Ray 2.60 turns token authentication on for a fresh local ray.init(); the local test clusters
# run without it so tests never touch the user's ~/.ray token. The Slurm tests turn it on
# explicitly and check that a wrong token is refused.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """A dataset cache holding the CGCNN ``--smoke-test`` data (240 built-in structures), built once.

    Tests that run smoke-test experiments and do not test the cache itself point HPO_SUITE_CACHE
    here instead of each building the same 240 EMT relaxations again (15-30 s each on 2 cores).
    Cached files are keyed by every parameter they depend on, so a test that asks for other data
    still builds its own file next to this one. Tests of the cache and of building use their own.
    """
    from trainables.registry import MODELS

    cache = tmp_path_factory.mktemp("smoke-cache")
    spec = MODELS["cgcnn"]
    spec.load_prepare()({**spec.options, **spec.smoke_options, "cache_dir": str(cache)})
    return cache


@pytest.fixture
def own_smoke_cache(tmp_path, smoke_cache) -> Path:
    """``tmp_path / "cache"``, this test's own cache, holding a copy of the smoke-test data.

    For tests whose trainables leave marker files in the cache folder (the fault-injecting ones in
    faulty_trainables.py), which must not leak into another test.
    """
    own = tmp_path / "cache"
    shutil.copytree(smoke_cache, own, ignore=shutil.ignore_patterns("*.lock"))
    return own


@pytest.fixture
def faulty_models(monkeypatch, own_smoke_cache):
    """Register the fault-injecting trainables of faulty_trainables.py as models, for one test.

    ``cgcnn_fail_once``: each trial crashes once; ``cgcnn_fail_once_in_all``: one trial of the
    experiment crashes once; ``cgcnn_poisoned``: trials diverge; ``cgcnn_hang_once``: one step
    hangs. Their markers go into the test's own cache folder.
    """
    from dataclasses import replace

    from trainables.registry import MODELS

    tests_dir = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(tests_dir)
    # Ray's workers inherit the environment of the process that starts Ray, not its sys.path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HPO_SUITE_CACHE", str(own_smoke_cache))
    for name, trainable in (("cgcnn_fail_once", "FailOnceCGCNN"), ("cgcnn_fail_once_in_all", "FailOnceInAllCGCNN"),
                            ("cgcnn_poisoned", "PoisonedCGCNN"), ("cgcnn_hang_once", "HangOnceCGCNN"),
                            ("cgcnn_oom_once", "OOMOnceCGCNN")):
        spec = replace(MODELS["cgcnn"], name=name, trainable=f"faulty_trainables:{trainable}")
        monkeypatch.setitem(MODELS, name, spec)
