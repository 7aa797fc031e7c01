"""The import rules of docs/architecture.md section 4, read from the source (every import statement, those
inside functions included): no cycles between the project's modules, and each folder imports only what
sits below it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "model_store": ROOT,
    "service": ROOT,
    "training": ROOT,
    "alexnet_cli": ROOT,
    "alexnet_client": ROOT / "clients",
}
# what each package may import of the others (and of torch)
ALLOWED = {
    "model_store": set(),
    "service": {"model_store"},
    "training": {"model_store", "service", "torch"},
    "alexnet_cli": {"model_store", "service", "training", "torch"},
    "alexnet_client": set(),
}


def modules() -> dict[str, Path]:
    found = {}
    for package, parent in PACKAGES.items():
        for path in sorted((parent / package).rglob("*.py")):
            parts = path.relative_to(parent).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path) -> Iterator[str]:
    """Every module name an import statement in ``path`` names (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`


def graph() -> dict[str, set[str]]:
    """module -> the project's modules importing it runs: the named module and, as Python does, every package
    above it (but not a package the importer sits in: that one is already being initialised)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for target in imported(name, path):
            parts = target.split(".")
            for depth in range(1, len(parts) + 1):
                above = ".".join(parts[:depth])
                inside = depth < len(parts) and (name == above or name.startswith(above + "."))
                if above in known and not inside:
                    targets.add(above)
        edges[name] = targets - {name}
    return edges


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_folder_imports_only_what_sits_below_it(package: str) -> None:
    forbidden = (set(PACKAGES) | {"torch"}) - ALLOWED[package] - {package}
    wrong = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if name.split(".")[0] == package
        for target in imported(name, path)
        if target.split(".")[0] in forbidden
    )
    assert wrong == []
