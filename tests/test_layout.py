"""The shape of the code: no import cycles, packages used through their faces, modules that fit.

Every import in ``inspector``, ``camera`` and ``web`` is read from the source (lazy
imports inside functions included), so a cycle that only bites at run time on one code
path is caught here too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PRODUCT = ("inspector", "camera", "web")
MAX_LINES = 400
KEPT_WHOLE = "# Kept whole:"  # the first line of a longer module says why it stays one


def _modules() -> dict[str, Path]:
    found = {}
    for top in PRODUCT:
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The product modules that module ``name`` imports, wherever the statement stands."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c`` takes c from a.b's face when it offers c, else the
            # module a.b.c when there is one; inside a.b itself it is always the module.
            inside = name == node.module or name.startswith(f"{node.module}.")
            face = set() if inside else FACES.get(node.module, set())
            names = [node.module if alias.name in face or f"{node.module}.{alias.name}"
                     not in MODULES else f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        targets.update(name for name in names if name in MODULES)
    return targets


def _face(path: Path) -> set[str]:
    """The names a package's ``__init__`` offers in ``__all__``."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]:
            return set(ast.literal_eval(node.value))
    return set()


FACES = {name: _face(path) for name, path in MODULES.items() if path.name == "__init__.py"}
GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def unit(module: str) -> str:
    """The part a module belongs to: an ``inspector`` subpackage or top-level module,
    or ``camera`` / ``web`` as a whole."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "inspector" and len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_scan_sees_the_product() -> None:
    # A scan that found nothing would pass every check below.
    assert {"inspector.store", "inspector.bus.wire", "camera.capture", "web.api"} <= set(GRAPH)
    assert "inspector.bus" in GRAPH["camera.capture"]


def test_no_module_imports_itself_back() -> None:
    assert _cycles(GRAPH) == []


def test_no_cycle_between_packages() -> None:
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        units[unit(module)].update(unit(t) for t in targets if unit(t) != unit(module))
    assert _cycles(units) == []


def test_inspector_never_imports_web() -> None:
    offenders = {m: sorted(t for t in ts if t.split(".")[0] == "web")
                 for m, ts in GRAPH.items() if m.startswith("inspector")}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_packages_are_used_through_their_faces() -> None:
    """Outside ``inspector.X``, only ``inspector.X`` itself is imported, never its modules."""
    offenders = []
    for module, targets in GRAPH.items():
        for target in targets:
            parts = target.split(".")
            deep = parts[0] == "inspector" and len(parts) > 2
            if deep and unit(target) != unit(module):
                offenders.append(f"{module} -> {target}")
    assert offenders == []


@pytest.mark.parametrize("package", sorted(
    name for name, path in MODULES.items()
    if path.name == "__init__.py" and name.startswith("inspector.")))
def test_a_package_face_is_a_docstring_and_imports(package: str) -> None:
    tree = ast.parse(MODULES[package].read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{package} says nothing about what it offers"
    for node in tree.body[1:]:
        allowed = isinstance(node, ast.Import | ast.ImportFrom) or (
            isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"])
        assert allowed, f"{package}/__init__.py line {node.lineno} is more than a face"


def test_long_modules_say_why_they_stay_whole() -> None:
    too_long = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not lines[0].startswith(KEPT_WHOLE):
            too_long.append(f"{name}: {len(lines)} lines")
    assert too_long == []
