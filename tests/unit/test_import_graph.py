"""The import graph of the core, read from the source (no import runs): every `import` counts, at module level and
inside functions, methods and lambdas alike (an import inside a function is one the next caller pays for, and every
import cycle the core had closed through one); imports under `if TYPE_CHECKING:` do not (they never run).

Importing `tlops.a.b` also runs `tlops/a/__init__.py`, so an importer outside `tlops.a` depends on that package too.
A registry's discovery of its plugin modules (`tlops.strategies.registry`, `tlops.task_types.registry` importing
every module of their folder by name at the first lookup) is not an edge: a plugin imports the core, the core finds
the plugin through the registry and never imports it by name (the last tests hold the core to that).

tests/system/test_layering.py imports every module with Prefect and MLflow blocked; this reads what it cannot see:
imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PLUGIN_FOLDERS = {"tlops.strategies": ("registry", "context"), "tlops.task_types": ("registry", "base")}  # package: its non-plugins


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, modules: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import that runs, at any depth of the module's syntax tree."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package up
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                for a in child.names:  # `from pkg import submodule` imports the submodule
                    found.append((f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base, child.lineno))
            walk(child)

    walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_graph(root: Path, package: str) -> dict[str, dict[str, list[int]]]:
    """module -> {module of the same package it imports -> the lines}, for every module under root/package."""
    paths = {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, dict[str, list[int]]] = {}
    for name, path in paths.items():
        edges = graph.setdefault(name, {})
        for target, line in _imports(path, name, modules):
            while target and target not in modules:  # `from m import a_function`: the module m
                target = target.rpartition(".")[0]
            if not target or target == name:
                continue
            edges.setdefault(target, []).append(line)
            parent = target.rpartition(".")[0]  # the packages above it that the importer is not inside: their __init__ runs
            while parent in modules and parent != name and not name.startswith(parent + "."):
                edges.setdefault(parent, []).append(line)
                parent = parent.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, targets = work[-1]
            for w in targets:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, {}))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _describe(graph: dict[str, dict[str, list[int]]], component: list[str]) -> str:
    inside = set(component)
    return "\n".join(f"  {a} -> {b} (line {', '.join(map(str, lines))})"
                     for a in component for b, lines in sorted(graph[a].items()) if b in inside)


def test_the_core_has_no_import_cycle():
    graph = import_graph(REPO, "tlops")
    found = cycles(graph)
    assert not found, f"{len(found)} import cycle(s) in tlops/ (imports inside functions count):\n" + "\n\n".join(
        _describe(graph, c) for c in found)


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "fake"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import json\n\ndef f():\n    from fake.b import g\n    return g\n")
    (pkg / "b.py").write_text("from fake import a\n\ndef g():\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fake.a import f\n")
    (pkg / "sub" / "__init__.py").write_text("from fake.sub.inner import x\n")
    (pkg / "sub" / "inner.py").write_text("x = 1\n\ndef h():\n    from fake.d import y\n    return y\n")
    (pkg / "d.py").write_text("y = 2\n\ndef k():\n    from fake.sub import inner\n    return lambda: __import__('os') and inner\n")
    graph = import_graph(tmp_path, "fake")
    assert graph["fake.a"] == {"fake.b": [4]} and graph["fake.c"] == {}  # in a function: counted; under TYPE_CHECKING: not
    assert graph["fake.d"] == {"fake.sub.inner": [4], "fake.sub": [4]}  # the package's __init__ runs first
    assert sorted(cycles(graph)) == [["fake.a", "fake.b"], ["fake.d", "fake.sub", "fake.sub.inner"]]
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    (pkg / "d.py").write_text("y = 2\n")
    assert cycles(import_graph(tmp_path, "fake")) == []


def test_the_core_imports_no_plugin_by_name():
    """Strategies and task types are found through their registries: only the plugins themselves (and their own
    package) import a strategy or task-type module, so a new one is one module and no import elsewhere."""
    graph = import_graph(REPO, "tlops")
    wrong = [f"{a} imports {b} (line {', '.join(map(str, lines))})"
             for a, edges in graph.items() for b, lines in edges.items()
             for package, not_plugins in PLUGIN_FOLDERS.items()
             if b.startswith(package + ".") and not b.rpartition(".")[2].startswith("_")
             and b.rpartition(".")[2] not in not_plugins and not a.startswith(package + ".")]
    assert not wrong, "\n".join(wrong)


def test_no_layer_imports_one_above_it_even_inside_a_function():
    """flows -> tasks -> tlops: the core imports neither Prefect, MLflow nor the orchestration packages, and the tasks
    do not import the flows, at any depth (tests/system/test_layering.py checks the imports that run on import)."""
    above = {"tlops": ("prefect", "mlflow", "flows", "tasks"), "tasks": ("flows",)}
    wrong = []
    for package, blocked in above.items():
        for path in sorted((REPO / package).rglob("*.py")):
            name = _module_name(REPO, path)
            for target, line in _imports(path, name, set()):
                if target.split(".")[0] in blocked:
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def _task_name_comparisons(path: Path, names: set[str]) -> list[int]:
    """Lines comparing something with a task type's name (`== "regression"`, `!= "classification"`, `in (...)`)."""

    def names_in(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(names_in(e) for e in node.elts)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted({n.lineno for n in ast.walk(tree) if isinstance(n, ast.Compare) and any(names_in(x) for x in (n.left, *n.comparators))})


def task_name_branches(root: Path, names: set[str]) -> dict[str, list[int]]:
    """file (relative to root) -> its lines comparing with a task name, for tlops/ outside tlops/task_types/."""
    found = {}
    for path in sorted((root / "tlops").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith("tlops/task_types/"):
            lines = _task_name_comparisons(path, names)
            if lines:
                found[rel] = lines
    return found


def test_no_branch_on_a_task_name_outside_the_task_types():
    """What differs by task is a hook or an attribute of its `TaskType` (tlops/task_types/), never an `if task ==`
    elsewhere: a new task type is one module, not an edit of every place that asks."""
    from tlops.task_types import all_task_types

    found = task_name_branches(REPO, set(all_task_types()))
    assert not found, "compare with a task name outside tlops/task_types/ (make it a TaskType hook):\n" + "\n".join(
        f"  {f}:{','.join(map(str, lines))}" for f, lines in found.items())


def test_a_branch_on_a_task_name_is_found(tmp_path):
    (tmp_path / "tlops" / "task_types").mkdir(parents=True)
    (tmp_path / "tlops" / "task_types" / "regression.py").write_text('name = "regression"\nok = name == "regression"\n')
    (tmp_path / "tlops" / "core.py").write_text('def f(ds, task="regression"):\n    if ds.task == "regression":\n        return 1\n'
                                               '    return task in ("classification", "other")\n')
    (tmp_path / "tlops" / "fine.py").write_text('TASK = "regression"\nx = TASK == "something"\n')
    assert task_name_branches(tmp_path, {"classification", "regression"}) == {"tlops/core.py": [2, 4]}


def strategy_name_lists(root: Path, names: set[str]) -> dict[str, list[int]]:
    """file -> lines of a tuple/list/set literal or dict of two or more strategy names, in tlops/ (outside
    tlops/strategies/), flows/ and tasks/."""
    found = {}
    for package in ("tlops", "flows", "tasks"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("tlops/strategies/"):
                continue
            lines = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                elts = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else []
                if sum(isinstance(e, ast.Constant) and e.value in names for e in elts) >= 2:
                    lines.add(node.lineno)
            if lines:
                found[rel] = sorted(lines)
    return found


# The meta-learners' own algorithm tables (tlops.training.meta implements protonet, MAML, FOMAML, Meta-SGD: names the
# strategies that use them share), not lists of strategies
ALGORITHM_TABLES = {"tlops/training/meta.py"}


def test_no_strategy_name_list_outside_the_strategies():
    """What a strategy supports (tasks, heads, DDP, head-only, its starter, its settings) is declared on its registry
    entry; a list of strategy names elsewhere goes stale when one is added."""
    from tlops.strategies import all_strategies

    found = {f: lines for f, lines in strategy_name_lists(REPO, set(all_strategies())).items() if f not in ALGORITHM_TABLES}
    assert not found, "lists of strategy names outside tlops/strategies/ (declare it on StrategyEntry):\n" + "\n".join(
        f"  {f}:{','.join(map(str, lines))}" for f, lines in found.items())


def test_a_strategy_name_list_is_found(tmp_path):
    (tmp_path / "tlops" / "strategies").mkdir(parents=True)
    (tmp_path / "tlops" / "strategies" / "x.py").write_text('OWN = ("a", "b")\n')
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "f.py").write_text('ONE = ["a"]\nHEADS = {"a": 1,\n "b": 2}\nx = 1 if n in {"b", "a"} else 2\n')
    assert strategy_name_lists(tmp_path, {"a", "b"}) == {"flows/f.py": [2, 4]}


def test_the_records_are_data():
    """tlops/records.py holds the typed records steps hand each other: it imports no other part of tlops at run time
    (what is done with a record lives in the module that owns it), and a record's methods only read its own fields
    or files."""
    path = REPO / "tlops" / "records.py"
    assert [t for t, _ in _imports(path, "tlops.records", set()) if t.split(".")[0] == "tlops"] == []
    methods = {f"{c.name}.{f.name}" for c in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(c, ast.ClassDef)
               for f in c.body if isinstance(f, ast.FunctionDef)}
    assert methods == {"FeatureSet.path", "FeatureSet.arrays", "FeatureSet.extras", "ValidationReport.failed"}, methods
