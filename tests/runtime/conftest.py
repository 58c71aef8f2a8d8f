"""Build in-process apps around real ModelServices with small handlers written to tmp folders."""
from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mkserve.runtime.app import create_app
from mkserve.runtime.metrics import Metrics
from mkserve.runtime.service import ModelService
from mkserve.runtime.settings import resolve
from mkserve.runtime.source import open_source
from prometheus_client import CollectorRegistry


class Served:
    def __init__(self, service: ModelService, app: Any, registry: CollectorRegistry) -> None:
        self.service = service
        self.app = app
        self.client = app.test_client()
        self.registry = registry
        self.failures: list[str] = []

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.service.ready:
            assert time.monotonic() < deadline, self.service.reason
            time.sleep(0.01)


@pytest.fixture
def serve_handler(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    made: list[Served] = []
    counter = iter(range(1000))

    def make(handler_code: str, env: dict[str, str] | None = None, name: str = "m",
             wait: bool = True, files: dict[str, str] | None = None) -> Served:
        folder = tmp_path / f"model{next(counter)}"
        folder.mkdir()
        module = f"handler_{folder.name}"  # unique, so modules of other tests never collide
        (folder / f"{module}.py").write_text(textwrap.dedent(handler_code))
        (folder / "mkserve.yaml").write_text(f"modelName: {name}\nhandler: {module}.py\n")
        for rel, text in (files or {}).items():
            (folder / rel).write_text(text)
        source = open_source(folder)
        settings = resolve(env or {}, source.model_config)
        registry = CollectorRegistry()
        metrics = Metrics(source.name, source.version, registry=registry)
        service = ModelService(source, settings, None, metrics)
        served = Served(service, create_app(service, metrics, access_log=False), registry)
        service._on_load_failed = served.failures.append
        service.start()
        made.append(served)
        if wait:
            served.wait_ready()
        return served

    yield make
    for served in made:
        served.service.stop(1)
    for name in [n for n in sys.modules if n.startswith("handler_model")]:
        del sys.modules[name]
