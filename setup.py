"""Only what pyproject.toml cannot say: the gRPC stubs are generated while building.

build_py runs runtime/rpc/stubs.py's protoc step into runtime/rpc/_generated/ (so a
wheel, an sdist install and an editable install all have them); everything else
about the package is in pyproject.toml.
"""
import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self) -> None:
        spec = importlib.util.spec_from_file_location("mkserve_stubs",
                                                      HERE / "runtime" / "rpc" / "stubs.py")
        stubs = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(stubs)
        stubs.generate()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
