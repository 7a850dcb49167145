"""The house's import rules, read from the source with `ast` (nothing is imported):

- no import circles among the project's modules. An import inside a function counts: a
  lazy import hides a circle, it does not break it;
- no module imports another module's private (`_name`) names, by `from X import _name` or
  as `X._name`;
- the core (`moked`) imports no service, and no service imports another;
- nothing installed imports the tests or the scripts (the images ship neither).

The packages and their directories are pyproject's `[tool.setuptools] package-dir`.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "moked"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    private: tuple[str, ...] = ()
    """Private names taken from the target (`from target import _x`, or `target._x`)."""


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    return {package: root / directory for package, directory in mapping.items()}


def discover(packages: Mapping[str, Path]) -> dict[str, Module]:
    """Every module of the packages, by dotted name (gunicorn.conf.py is not a module)."""
    modules: dict[str, Module] = {}
    for package, directory in packages.items():
        for path in sorted(directory.rglob("*.py")):
            if "." in path.stem:
                continue
            parts = list(path.relative_to(directory).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([package, *parts])
            modules[name] = Module(name, path, is_package)
    return modules


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner(name: str, modules: Mapping[str, Module]) -> str | None:
    """The project module `name` is, or lives in (a.b.c → a.b when c is an attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def edges_of(module: Module, modules: Mapping[str, Module]) -> list[Edge]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    here = module.name if module.is_package else module.name.rpartition(".")[0]
    edges: list[Edge] = []
    aliases: dict[str, str] = {}  # local name → the project module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, modules)
                if target is None:
                    continue
                edges.append(Edge(module.name, target, node.lineno))
                if alias.asname:
                    aliases[alias.asname] = target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:  # from package import module
                    edges.append(Edge(module.name, submodule, node.lineno))
                    aliases[alias.asname or alias.name] = submodule
                    continue
                target = _owner(base, modules)
                if target is None:
                    continue
                private = (alias.name,) if _is_private(alias.name) else ()
                edges.append(Edge(module.name, target, node.lineno, private))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _is_private(node.attr)
        ):
            target = aliases[node.value.id]
            edges.append(Edge(module.name, target, node.lineno, (node.attr,)))
    return [edge for edge in edges if edge.target != module.name]


def import_graph(modules: Mapping[str, Module]) -> dict[str, list[Edge]]:
    return {name: edges_of(module, modules) for name, module in modules.items()}


def cycles(graph: Mapping[str, Iterable[Edge]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    successors = {name: sorted({edge.target for edge in edges}) for name, edges in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long chain of imports cannot reach the recursion limit.
        work = [(start, iter(successors.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for name in successors:
        if name not in index:
            visit(name)
    return sorted(found)


def describe(component: list[str], graph: Mapping[str, Iterable[Edge]]) -> str:
    members = set(component)
    lines = [
        f"  {edge.source} → {edge.target} (line {edge.line})"
        for name in component
        for edge in graph[name]
        if edge.target in members
    ]
    return "\n".join(sorted(set(lines)))


def private_imports(graph: Mapping[str, Iterable[Edge]]) -> list[str]:
    return sorted(
        f"{edge.source}:{edge.line} takes {name} from {edge.target}"
        for edges in graph.values()
        for edge in edges
        for name in edge.private
    )


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def layer_violations(graph: Mapping[str, Iterable[Edge]], core: str = CORE) -> list[str]:
    """Imports from the core up into a service, or from one service into another."""
    return sorted(
        f"{edge.source}:{edge.line} imports {edge.target}"
        for edges in graph.values()
        for edge in edges
        if _top(edge.source) != _top(edge.target) and _top(edge.target) != core
    )


# --- the project ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Edge]]:
    modules = discover(package_dirs())
    assert {"moked.settings", "webhooks.app", "transcriber.pool", "crm_ui.app"} <= set(modules)
    return import_graph(modules)


def test_no_import_cycles(graph: dict[str, list[Edge]]) -> None:
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n\n".join(describe(c, graph) for c in found)


def test_no_module_imports_another_modules_private_names(graph: dict[str, list[Edge]]) -> None:
    assert private_imports(graph) == []


def test_the_core_imports_no_service_and_no_service_imports_another(
    graph: dict[str, list[Edge]],
) -> None:
    assert set(package_dirs()) == {CORE, "webhooks", "transcriber", "crm_ui", "notifier"}
    assert layer_violations(graph) == []


def test_nothing_installed_imports_tests_or_scripts() -> None:
    found = []
    for module in discover(package_dirs()).values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [
                f"{module.name}:{node.lineno} imports {name}"
                for name in names
                if _top(name) in ("tests", "scripts")
            ]
    assert found == []


# --- the checks themselves: each fails on a tree that breaks its rule --------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, list[Edge]]:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    packages = {"core": tmp_path / "core", "svc_a": tmp_path / "a", "svc_b": tmp_path / "b"}
    return import_graph(discover(packages))


def test_the_checks_find_what_they_forbid(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/low.py": "_hidden = 1\n",
            # a lazy import closes a circle just as well as one at the top
            "core/one.py": "def f():\n    from core import two\n",
            "core/two.py": "from core.one import f\nfrom core.low import _hidden\n",
            "core/three.py": "import core.low as low\nX = low._hidden\n",
            "core/up.py": "import svc_a.app\n",
            "a/__init__.py": "",
            "a/app.py": "from . import pool\n",
            "a/pool.py": "from .app import x\nfrom svc_b import y\n",
            "b/__init__.py": "y = 1\n",
        },
    )
    assert cycles(graph) == [["core.one", "core.two"], ["svc_a.app", "svc_a.pool"]]
    assert "core.two → core.one (line 1)" in describe(["core.one", "core.two"], graph)
    assert private_imports(graph) == [
        "core.three:2 takes _hidden from core.low",
        "core.two:2 takes _hidden from core.low",
    ]
    assert layer_violations(graph, core="core") == [
        "core.up:1 imports svc_a.app",
        "svc_a.pool:2 imports svc_b",
    ]


def test_the_checks_pass_a_tree_without_them(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/low.py": "_hidden = 1\nX = _hidden\n",
            "core/high.py": "from core.low import X\nfrom core import low\nY = low.X\n",
            "a/__init__.py": "from core.high import Y\n",
            "a/app.py": "from svc_a import Y\n",
            "b/__init__.py": "import core.low\n",
        },
    )
    assert cycles(graph) == []
    assert private_imports(graph) == []
    assert layer_violations(graph, core="core") == []
