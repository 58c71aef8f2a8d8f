"""The gRPC stubs: generated from protos/*.proto when the package is built, never committed.

`generate()` runs grpcio-tools' protoc into this folder, as `*_pb2.py` and
`*_pb2_grpc.py` (git ignores them; setup.py calls it from
build_py, so `pip install .` and `pip install -e .` both make them; the image gets
them with the rest of mkserve.runtime). `load()` imports them, with an error that
says what to do when they are missing.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
NAMES = ("torchserve_inference", "open_inference")


def generate(dest: Path = HERE) -> list[Path]:
    """protoc --python_out --grpc_python_out for every proto; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc  # a build-time dependency (pyproject's build-system)

    dest.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    for name in NAMES:
        code = protoc.main(["protoc", f"-I{PROTOS}", f"-I{well_known}",
                            f"--python_out={dest}", f"--grpc_python_out={dest}",
                            str(PROTOS / f"{name}.proto")])
        if code != 0:
            raise RuntimeError(f"protoc failed on {name}.proto (exit {code})")
    written = []
    for path in sorted(p for name in NAMES for p in dest.glob(f"{name}_pb2*.py")):
        # protoc writes top-level imports between the generated modules: make them relative.
        text = re.sub(r"^import (\w+_pb2) as ", r"from . import \1 as ",
                      path.read_text(), flags=re.MULTILINE)
        path.write_text(text)
        written.append(path)
    return written


def load() -> dict[str, ModuleType]:
    """{name_pb2 and name_pb2_grpc: module} for every proto."""
    import importlib

    modules = {}
    try:
        for name in NAMES:
            for suffix in ("_pb2", "_pb2_grpc"):
                module = importlib.import_module(f"{__package__}.{name}{suffix}")
                modules[name + suffix] = module
    except ImportError as exc:
        raise RuntimeError(
            f"mkserve's gRPC stubs are missing or broken ({exc}); they are generated when "
            "mkserve is installed: reinstall it (pip install .) with grpcio-tools "
            "available") from exc
    return modules


if __name__ == "__main__":
    for written in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written)
