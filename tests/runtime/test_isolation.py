"""The runtime is what goes into images: it must import without the builder's dependencies.

jinja2 is not blocked: Flask itself needs it, so every image has it anyway.
"""
from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'typer', 'docker'} \\
                or name.startswith('mkserve.builder'):
            raise ImportError('blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib, mkserve.runtime
for info in pkgutil.walk_packages(mkserve.runtime.__path__, 'mkserve.runtime.'):
    if info.name.endswith('__main__'):
        continue
    importlib.import_module(info.name)
print('ok')
"""


def test_runtime_imports_without_typer_docker_or_the_builder():
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
