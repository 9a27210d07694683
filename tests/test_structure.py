"""The package's shape: no import circles, modules a reader can hold, one list of names.

The import graph is read from the source (the AST of every module), so a
new circle fails here before it fails at some import order in a child.
"""

from __future__ import annotations

import ast
import multiprocessing
import pathlib
import textwrap
from typing import TYPE_CHECKING, Any

import multiprocess
import pytest

import safeproc
import safeproc.stdlib
from safeproc import _namespace

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

PACKAGE_DIR = pathlib.Path(safeproc.__file__).parent

#: Lines a module may have. A module over it holds more than one idea, or
#: one idea a reader cannot hold at once; split it. The exception is the
#: child's exit sequence: ``_cleanup.py`` is kept whole on purpose, its
#: diagram and steps readable top to bottom in the order they run.
MAX_MODULE_LINES = 400
LONGER_ON_PURPOSE = {"safeproc._cleanup": 600}


# -- the import graph ----------------------------------------------------------


def _module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the package at *root*."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs: module level, in functions, in classes.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run, and an
    annotation that names a higher layer's type (a context's ``Pool()``
    returns the dill backend's pool) is how a typed lower layer refers up.
    """
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _is_type_checking_block(node):
            assert isinstance(node, ast.If)
            yield from _imports(node.orelse)
        else:
            yield from _imports(ast.iter_child_nodes(node))


def _imported_modules(
    name: str, node: ast.Import | ast.ImportFrom, *, is_package: bool, modules: set[str]
) -> Iterator[str]:
    """Yield the package's modules one import statement names."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = name.split(".") if is_package else name.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        # ``from safeproc import _forks`` imports the module safeproc._forks.
        targets = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]
    yield from (t for t in targets if t in modules)


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """Return module -> the package's modules it imports, for the package at *root*."""
    files = _module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = {
            target
            for node in _imports(tree.body)
            for target in _imported_modules(
                name, node, is_package=path.name == "__init__.py", modules=set(files)
            )
            if target != name
        }
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901 - Tarjan, whole
    """Return one circle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_within(graph, set(group)) for group in groups]


def _circle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """Return a path start -> ... -> start inside one strongly connected group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                frontier.append(target)
    return sorted(group)  # pragma: no cover - a strongly connected group has a circle


def test_the_package_has_no_import_circle() -> None:
    """No module of safeproc imports, directly or not, a module that imports it."""
    graph = import_graph(PACKAGE_DIR)
    assert graph["safeproc._cleanup"] >= {"safeproc._forks", "safeproc._state"}
    circles = [" -> ".join(circle) for circle in find_cycles(graph)]
    assert circles == [], "import circles:\n" + "\n".join(circles)


def test_circles_are_found_in_every_import_form(tmp_path: pathlib.Path) -> None:
    """The graph sees absolute, ``from pkg import _mod``, relative and function-level imports."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from pkg import _a\n",
        "_a.py": "import pkg._b\n",
        "_b.py": "def later():\n    from .sub import _c\n",
        "sub/__init__.py": "",
        "sub/_c.py": "from .. import _a\n",
        "_typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg\n",
    }
    for path, source in sources.items():
        (package / path).write_text(textwrap.dedent(source), encoding="utf-8")
    graph = import_graph(package)
    assert graph["pkg._typed"] == set()
    assert find_cycles(graph) == [["pkg._a", "pkg._b", "pkg.sub._c", "pkg._a"]]


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    """Every module stays under the line limit (see MAX_MODULE_LINES)."""
    too_long = {}
    for name, path in _module_files(PACKAGE_DIR).items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LONGER_ON_PURPOSE.get(name, MAX_MODULE_LINES):
            too_long[name] = lines
    assert too_long == {}


# -- the namespaces' names -------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "dill_only"),
    [(safeproc, {"DillUnsupportedError"}), (safeproc.stdlib, set())],
    ids=["multiprocess", "stdlib"],
)
def test_each_namespace_is_built_from_the_one_list(namespace: Any, dill_only: set[str]) -> None:
    """Both namespaces list exactly the names of safeproc._namespace, sorted."""
    expected = {*_namespace.FROM_DEFAULT_CONTEXT, *_namespace.SAFEPROC_NAMES, *dill_only}
    assert namespace.__all__ == sorted(expected)


@pytest.mark.parametrize(
    ("namespace", "backend"),
    [(safeproc, multiprocess), (safeproc.stdlib, multiprocessing)],
    ids=["multiprocess", "stdlib"],
)
def test_default_context_makes_its_own_backends_processes(namespace: Any, backend: Any) -> None:
    """The default context behind each namespace makes that namespace's safe processes."""
    default = namespace.get_context.__self__
    with_policy = type(default)(cleanup=safeproc.CleanupPolicy(timeout=3))
    for ctx in (default, with_policy):
        assert issubclass(ctx.Process, namespace.SafeProcess)
        assert isinstance(ctx.Process(target=print), backend.process.BaseProcess)
    assert with_policy.Process(target=print).cleanup.timeout == 3


def test_the_stdlib_names_a_type_checker_sees_are_the_list() -> None:
    """safeproc.stdlib's typed declarations name exactly the names bound at run time."""
    tree = ast.parse((PACKAGE_DIR / "stdlib.py").read_text(encoding="utf-8"))
    # The block whose run-time branch binds the names (the other one types
    # the names loaded on first use).
    blocks = [
        node
        for node in tree.body
        if _is_type_checking_block(node) and isinstance(node, ast.If) and node.orelse
    ]
    assert len(blocks) == 1
    assert isinstance(blocks[0], ast.If)
    declared = [
        target.id
        for statement in blocks[0].body
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Name)
    ]
    assert sorted(declared) == sorted(_namespace.FROM_DEFAULT_CONTEXT)
