"""The project's modules import one another without cycles, and the runtime stays apart.

Every import counts, at module level or inside a function: a lazy import that closes
a cycle still ties the two modules' designs together.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "mkserve.runtime", "builder": "mkserve.builder", "bench": "mkserve.bench",
            "templates": "mkserve.templates"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a package import means its __init__)."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_walk_sees_the_imports() -> None:
    edges = graph()
    assert "mkserve.builder.labels" in edges["mkserve.builder.engine"]  # from . import labels
    assert "mkserve.runtime.settings" in edges["mkserve.builder.deploy"]  # absolute, nested
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_runtime_never_imports_the_builder() -> None:
    """The image carries the runtime alone (typer, jinja2 and docker are not in it)."""
    offenders = {name: sorted(t for t in targets if t.startswith("mkserve.builder"))
                 for name, targets in graph().items() if name.startswith("mkserve.runtime")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_benchmark_stands_on_its_own() -> None:
    """mkserve.bench uses the runtime and the builder, never the test helpers."""
    for path in (ROOT / "bench").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert '"tests"' not in text and "from archives" not in text, path


def test_every_package_folder_is_in_the_wheel() -> None:
    """pyproject.toml lists the packages by name: a new folder left out would be missing from
    the wheel and the image, while an editable install still finds it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"mkserve." + ".".join(init.parent.relative_to(ROOT).parts)
             for top in ("runtime", "builder", "bench", "templates")
             for init in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set()
