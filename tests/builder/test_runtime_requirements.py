"""The image installs what `pip install mkserve` installs, and that covers what the runtime imports."""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from mkserve.builder.wheels import BUILDER_ONLY, canonical, runtime_requirements

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def name_of(requirement: str) -> str:
    return canonical(re.split(r"[\s\[<>=!~(;]", requirement.strip(), maxsplit=1)[0])


def closure(names: set[str]) -> set[str]:
    """`names` and every distribution they require, transitively (extras aside)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue  # a requirement for other Pythons (its marker is false here)
        for text in needs:
            if "extra" not in text.partition(";")[2]:
                todo.append(name_of(text))
    return seen


def test_the_image_requirements_are_the_package_metadata_less_the_builder():
    metadata = [r for r in requires("mkserve") or [] if "extra" not in r.partition(";")[2]]
    image = runtime_requirements()
    assert sorted(image) == sorted(r for r in metadata if name_of(r) not in BUILDER_ONLY)
    assert {name_of(r) for r in metadata} - {name_of(r) for r in image} == BUILDER_ONLY


def test_every_module_the_runtime_imports_is_installed_in_the_image():
    imported: set[str] = set()
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names
                   and m not in ("mkserve", "__future__")}
    installed = closure({name_of(r) for r in runtime_requirements()} | {"torch"})
    owners = packages_distributions()
    missing = {m for m in third_party
               if not {canonical(d) for d in owners.get(m, [m])} & installed}
    # Imported only where present (optional backends), never needed to serve; psutil only
    # by ts.metrics.system_metrics' functions, for handlers that call them; grpc_tools only
    # when the package is built (rpc/stubs.generate, called by setup.py).
    optional = {"pynvml", "numpy", "torchvision", "torchaudio", "torchtext", "PIL",
                "captum", "transformers", "onnxruntime", "intel_extension_for_pytorch",
                "psutil", "grpc_tools"}
    assert missing - optional == set(), missing
