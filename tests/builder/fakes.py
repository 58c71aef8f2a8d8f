"""Builder test helpers: tiny model folders written by hand, a fake engine, a fake lock."""
from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkserve.builder.engine import ImageInfo
from mkserve.builder.wheels import Lock, Pinned

HANDLER = textwrap.dedent("""\
    def handle(data, context):
        if data is None:
            return None
        return [row.get("body") for row in data]
    """)


def write_model(folder: Path, *, name: str = "tiny", handler: str = HANDLER,
                manifest: dict[str, Any] | None = None, config: str | None = "batchSize: 4\n",
                weights: bytes = b"\0" * 64, extra: dict[str, bytes] | None = None) -> Path:
    """An unpacked archive: MAR-INF/MANIFEST.json, handler.py, weights.bin, model-config.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    model: dict[str, Any] = {"modelName": name, "modelVersion": "2.0",
                             "serializedFile": "weights.bin", "handler": "handler.py"}
    if config is not None:
        model["configFile"] = "model-config.yaml"
        (folder / "model-config.yaml").write_text(config)
    (folder / "MAR-INF").mkdir(exist_ok=True)
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(
        manifest if manifest is not None else
        {"runtime": "python", "model": model, "archiverVersion": "0.12.0"}))
    (folder / "handler.py").write_text(handler)
    (folder / "weights.bin").write_bytes(weights)
    for rel, data in (extra or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


class FakeContainer:
    id = "c0ffee" * 10


class FakeEngine:
    """Implements the Engine protocol and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.contexts: list[dict[str, str]] = []

    def build(self, context: Path, tags: Any, *, buildargs: Any, platform: Any, nocache: bool,
              on_event: Callable[[dict[str, Any]], None]) -> str:
        self.calls.append(("build", {"tags": list(tags), "buildargs": dict(buildargs),
                                     "platform": platform, "nocache": nocache}))
        # Keep the text files of the context: the test reads them after the temp dir is gone.
        self.contexts.append({p.relative_to(context).as_posix(): p.read_text(errors="replace")
                              for p in context.rglob("*") if p.is_file()
                              and p.stat().st_size < 1_000_000})
        for line in ("[1/2] STEP 1/2: FROM base AS deps", "--> Using cache 1234567",
                     "--> 1234567", "[2/2] STEP 1/1: FROM base", "Successfully built abc"):
            on_event({"stream": line + "\n"})
        return "sha256:" + "ab" * 32

    def push(self, tag: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.calls.append(("push", tag))
        on_event({"status": "Pushed", "id": tag})

    def run(self, image: str, **kwargs: Any) -> FakeContainer:
        self.calls.append(("run", image))
        return FakeContainer()

    def inspect(self, image: str) -> ImageInfo | None:
        self.calls.append(("inspect", image))
        return ImageInfo(id=image, tags=("tiny:2.0",), size=123_456_789, labels={}, env={},
                         entrypoint=(), user="1000:0", exposed_ports=("8080/tcp",),
                         healthcheck=(), layers=("sha256:1",),
                         history=((1000, "COPY dir in /opt/mkserve/model/"),
                                  (100_000_000, "COPY dir in /opt/mkserve/venv")))

    def remove(self, image: str) -> None:
        self.calls.append(("remove", image))

    def stage_images(self) -> int:
        self.calls.append(("stage_images", None))
        return 0

    def prune_stages(self) -> int:
        self.calls.append(("prune_stages", None))
        return 0


def make_lock(folder: Path) -> Lock:
    """A lock over two dummy wheel files (stand-ins for torch and flask)."""
    folder.mkdir(parents=True, exist_ok=True)
    pinned = []
    for name, version in (("flask", "3.1.3"), ("torch", "2.13.0+cpu")):
        path = folder / f"{name}-{version}-py3-none-any.whl"
        path.write_bytes(name.encode())
        pinned.append(Pinned(name, version, path, hashlib.sha256(name.encode()).hexdigest()))
    return Lock(tuple(pinned), "cp311 manylinux_2_28_x86_64")
