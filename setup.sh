#!/usr/bin/env bash
# Set up the suite in a virtual environment at .venv (the README's two commands and CI run this).
#
#   bash setup.sh          # runtime: every strategy, Dragonfly included
#   bash setup.sh dev      # the same plus the test tools (pytest, ruff)
#
# Each package builds in the environment it needs:
#   1. torch==2.13.0 first, so no other package pulls a multi-GB CUDA build.
#   2. dragonfly-opt 0.1.7 (a 2022 sdist whose setup.py imports numpy.distutils) is built into a
#      wheel in a throwaway build environment holding exactly what its setup.py needs:
#      setuptools<60 (numpy.distutils imports distutils.msvccompiler, which later setuptools
#      removed) and numpy>=1.26,<2 (numpy 2 has no numpy.distutils). The wheel is pure Python,
#      so that old numpy does not follow it into .venv.
#   3. The project itself, with normal build isolation, and the runtime numpy pyproject.toml
#      allows (<2.4: Dragonfly's GP code fails on 2.4).
# Python >= 3.10 is needed; set PYTHON to choose the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")"

extras="dragonfly"
case "${1:-}" in
  "") ;;
  dev) extras="dragonfly,dev" ;;
  *) echo "error: unknown argument '$1' (use: bash setup.sh [dev])" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "error: $python is $("$python" --version 2>&1); the suite needs Python >= 3.10 (set PYTHON=...)" >&2; exit 2; }

start=$SECONDS
"$python" -m venv .venv
venv_python="$PWD/.venv/bin/python"
pip() { "$venv_python" -m pip "$@"; }

echo "setup: [1/3] torch 2.13.0 (CPU build)"
pip install -q torch==2.13.0

echo "setup: [2/3] dragonfly-opt 0.1.7, built in its own build environment"
if ! "$venv_python" -c 'import importlib.metadata as m; assert m.version("dragonfly-opt") == "0.1.7"' 2>/dev/null; then
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
  "$python" -m venv "$build_dir/venv"
  "$build_dir/venv/bin/python" -m pip install -q 'setuptools<60' 'numpy>=1.26,<2' wheel
  "$build_dir/venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation \
    -w "$build_dir/wheels" dragonfly-opt==0.1.7
  pip install -q "$build_dir"/wheels/dragonfly_opt-0.1.7-*.whl
fi

echo "setup: [3/3] the project ([$extras]) and its runtime dependencies"
pip install -q -e ".[$extras]"

"$venv_python" -c 'import numpy, ray, torch; import dragonfly' 2>/dev/null \
  || { echo "error: the installed suite does not import (numpy, ray, torch, dragonfly)" >&2; exit 1; }
echo "setup: done in $((SECONDS - start)) s: $("$venv_python" -c 'import numpy, ray, torch; print(f"torch {torch.__version__}, ray {ray.__version__}, numpy {numpy.__version__}")')"
echo "setup: activate with '. .venv/bin/activate'"
