"""The layout's rules, read from the code: no import cycle (in-function imports included) and
imports that point one way: scripts -> workflows, benchmarks (and the other composing
subpackages) -> core/runner.py -> analysis -> the rest of core -> searchers -> search_spaces, trainables.
The model layer and the spaces never import ``experiments``.

The graph is built from the source's ASTs, not by importing anything, so an import that only runs
inside a function (the usual way a cycle hides) counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("experiments", "trainables", "search_spaces")


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file (a package is its __init__)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported dotted name refers to (its longest known prefix), if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (functions included)."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(t for alias in node.names if (t := _resolve(alias.name, modules)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    target = _resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules)
                    if target:
                        targets.add(target)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer(module: str) -> int:
    """The layer of a module: an import may only point to the same layer or a lower one.

    Subpackages other than core, analysis and searchers (workflows, benchmarks, simulation, ...)
    compose the library, so they sit above the runner and below the scripts.
    """
    parts = module.split(".")
    if parts[0] in ("trainables", "search_spaces") or len(parts) == 1:
        return 0
    if len(parts) == 2 and not (REPO / "experiments" / parts[1]).is_dir():
        return 6  # a script a user runs: experiments/run_asha.py, analyze.py, ...
    if module == "experiments.core.runner":
        return 4
    return {"analysis": 3, "core": 2, "searchers": 1}.get(parts[1], 5)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points to a higher layer, or from the model/space layer into experiments."""
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            into_experiments = target.startswith("experiments") and not module.startswith("experiments")
            if into_experiments or layer(target) > layer(module):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_the_suite_has_no_import_cycle():
    graph = import_graph(REPO, PACKAGES)
    assert "experiments.core.runner" in graph and "trainables.roberta_rte" in graph  # the walk found the code
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_imports_point_one_way():
    graph = import_graph(REPO, PACKAGES)
    assert upward_imports(graph) == []
    scripts = [m for m in graph if layer(m) == 6]
    assert "experiments.run_asha" in scripts and "experiments.analyze" in scripts
    assert not any(target in scripts for targets in graph.values() for target in targets)  # nothing imports a script


def test_the_checks_catch_a_cycle_hidden_in_a_function_and_an_upward_import(tmp_path):
    # A constructed tree with known answers, so the two tests above can fail.
    (tmp_path / "experiments" / "core").mkdir(parents=True)
    (tmp_path / "trainables").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("")
    (tmp_path / "experiments" / "core" / "__init__.py").write_text("")
    (tmp_path / "trainables" / "__init__.py").write_text("")
    (tmp_path / "experiments" / "core" / "config.py").write_text(
        "from trainables import model\n\ndef f():\n    from experiments.core import summary\n")
    (tmp_path / "experiments" / "core" / "summary.py").write_text("from . import config\n")
    (tmp_path / "trainables" / "model.py").write_text("import experiments.core.config as c\n")
    graph = import_graph(tmp_path, ("experiments", "trainables"))
    assert graph["experiments.core.config"] == {"trainables.model", "experiments.core.summary"}
    assert graph["experiments.core.summary"] == {"experiments.core.config"}
    assert find_cycle(graph) == ["experiments.core.config", "experiments.core.summary", "experiments.core.config"]
    assert upward_imports(graph) == ["trainables.model -> experiments.core.config"]
    del graph["trainables.model"], graph["experiments.core.summary"]
    assert find_cycle(graph) is None and upward_imports(graph) == []
