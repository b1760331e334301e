"""Test-only (tests/test_gpu_nodes.py): torch reports one CUDA device in every process that imports it.

A CPU-only build made to look like a GPU node: each Python process started with this folder on
PYTHONPATH (the test's driver sets it, so Ray's workers inherit it) patches ``torch.cuda`` right
after it is imported: ``is_available()`` is True and ``device_count()`` 1. Anything that then really
uses CUDA fails ("Torch not compiled with CUDA enabled"), so a trial that picked ``cuda:0`` because
CUDA "is available" errors. Each patched process writes ``<pid>`` (holding its command line) into
``$FAKE_CUDA_MARKERS``, so the test can assert the workers saw the fake.
"""

import importlib.abc
import importlib.util
import os
import sys


class _FakeCudaFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch.cuda":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            module.is_available = lambda: True
            module.device_count = lambda: 1
            markers = os.environ.get("FAKE_CUDA_MARKERS")
            if markers:
                with open(os.path.join(markers, str(os.getpid())), "w") as handle:
                    handle.write(" ".join(sys.argv))

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _FakeCudaFinder())
