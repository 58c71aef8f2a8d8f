"""render(spec): golden Dockerfiles, determinism, and what every image must say about itself.

Regenerate the golden files after an intended change:
MKSERVE_UPDATE_GOLDEN=1 python -m pytest tests/builder/test_render.py
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import jinja2
import pytest
from fakes import make_lock, write_model
from mkserve.builder import labels as L
from mkserve.builder import render as R
from mkserve.builder.context import DEFAULT_EPOCH, write_context
from mkserve.builder.spec import BuildSpec
from mkserve.runtime.settings import SETTINGS

GOLDEN = Path(__file__).parent / "golden" / "image"
REQUIRED_LABELS = (L.MODEL_NAME, L.MODEL_VERSION, L.HANDLER, L.ARCHIVE_SHA256, L.SOURCE_KIND,
                   L.BATCH_SIZE, L.MAX_BATCH_DELAY_MS, L.QUEUE_SIZE, L.RESPONSE_TIMEOUT_S,
                   L.STARTUP_TIMEOUT_S, L.GRACEFUL_TIMEOUT_S, L.PORT, L.WORKERS, L.THREADS, L.GPU,
                   L.TORCH_VERSION, L.MKSERVE_VERSION, L.OCI_TITLE, L.OCI_VERSION,
                   L.OCI_DESCRIPTION, L.OCI_REVISION, L.OCI_SOURCE)


def make_spec(**changes: object) -> BuildSpec:
    labels = {key: f"value of {key}" for key in REQUIRED_LABELS}
    labels[L.OCI_DESCRIPTION] = 'a "quoted" $HOME \\ description'
    fields: dict[str, object] = {
        "model_dir": "/nowhere", "source": "classifier.mar", "source_kind": "mar",
        "model_name": "classifier", "model_version": "1.0", "handler": "handler.py",
        "archive_sha256": "0" * 64,
        "model_files": ("MAR-INF/MANIFEST.json", "handler.py", "model_scripted.pt"),
        "weight_files": ("model_scripted.pt",), "tags": ("classifier:1.0",),
        "base_image": "docker.io/library/python:3.11-slim", "gpu": False,
        "platform": "linux/amd64", "python_version": "3.11", "torch_version": "2.13.0+cpu",
        "requirement_files": (),
        "env": (("MKSERVE_BATCH_SIZE", "32"), ("MKSERVE_MAX_BATCH_DELAY_MS", "5.0")),
        "env_sources": (("MKSERVE_BATCH_SIZE", "--batch-size"),
                        ("MKSERVE_MAX_BATCH_DELAY_MS", "--max-batch-delay")),
        "labels": tuple(sorted(labels.items())), "port": 8080, "startup_timeout_s": 300.0,
        "mkserve_version": "0.1.0"}
    fields.update(changes)
    return BuildSpec(**fields)  # type: ignore[arg-type]


CASES = {
    "Dockerfile.cpu": {},
    "Dockerfile.gpu": {"gpu": True, "torch_version": "2.13.0"},
    "Dockerfile.weights-only": {"model_files": ("model.pt",), "weight_files": ("model.pt",),
                                "env": (), "port": 9000, "startup_timeout_s": 42.0,
                                "check": False},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    text = R.render(make_spec(**CASES[name]))["Dockerfile"]
    path = GOLDEN / name
    if os.environ.get("MKSERVE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden file {path}; run with MKSERVE_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_rendering_is_deterministic_and_complete() -> None:
    spec = make_spec()
    first, second = R.render(spec), R.render(spec)
    assert first == second
    assert set(first) == {"Dockerfile", ".dockerignore"}


def test_strict_undefined(monkeypatch: pytest.MonkeyPatch) -> None:
    original = R.context
    monkeypatch.setattr(R, "context", lambda spec: {k: v for k, v in original(spec).items()
                                                    if k != "port"})
    with pytest.raises(jinja2.UndefinedError):
        R.render(make_spec())


def test_dockerfile_promises() -> None:
    text = R.render(make_spec())["Dockerfile"]
    # Classic syntax only: the SDK cannot use BuildKit.
    for buildkit in ("--mount", "<<", "--link", "--chmod", "# syntax="):
        assert buildkit not in text
    assert text.count("\nFROM docker.io/library/python:3.11-slim") == 3
    assert re.search(r"^USER 1000:0$", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    entrypoint = re.search(r"^ENTRYPOINT (.*)$", text, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == [
        "/opt/mkserve/venv/bin/python", "-m", "mkserve.runtime"]  # exec form: PID 1 is gunicorn
    healthcheck = re.search(r"^HEALTHCHECK .* CMD (\[.*\])$", text, re.MULTILINE)
    assert healthcheck and "/readyz" in json.loads(healthcheck.group(1))[-1]
    assert "--start-period=300s" in text
    for key in REQUIRED_LABELS + (L.OCI_CREATED,):
        assert f"{key}=" in text, key
    # Values are quoted so that nothing is expanded or split.
    assert '"a \\"quoted\\" \\$HOME \\\\ description"' in text
    # The handler check runs as the serving user, after the model is in place.
    lines = text.splitlines()
    index = {name: next(i for i, line in enumerate(lines) if line.startswith(name))
             for name in ("USER", "RUN [", "COPY model/code/", "COPY --from=deps")}
    assert index["COPY --from=deps"] < index["COPY model/code/"] < index["USER"] < index["RUN ["]
    # Layers from rarely to often changed: packages, runtime, weights, code.
    order = [line.split()[1] for line in lines if line.startswith("COPY ")][4:]
    assert order == ["--from=deps", "--from=model-deps", "mkserve/lib/", "model/weights/",
                     "model/code/"]


def test_env_uses_the_runtime_contract_names() -> None:
    spec = make_spec()
    text = R.render(spec)["Dockerfile"]
    contract = {s.env for s in SETTINGS}
    for key, value in spec.env:
        assert key in contract
        assert f'{key}="{value}"' in text
    assert 'MKSERVE_MODEL="/opt/mkserve/model"' in text


def test_gpu_and_cpu_differ_only_where_they_should() -> None:
    cpu = R.render(make_spec())["Dockerfile"]
    gpu = R.render(make_spec(gpu=True))["Dockerfile"]
    assert "NVIDIA_VISIBLE_DEVICES" in gpu and "NVIDIA_VISIBLE_DEVICES" not in cpu


def test_write_context(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", extra={"run.sh": b"#!/bin/sh\n"})
    os.chmod(model / "run.sh", 0o700)
    os.chmod(model / "weights.bin", 0o600)  # an archive unpacked with a strict umask
    spec = make_spec(model_dir=str(model),
                     model_files=("MAR-INF/MANIFEST.json", "handler.py", "model-config.yaml",
                                  "run.sh", "weights.bin"),
                     weight_files=("weights.bin",))
    lock = make_lock(tmp_path / "wheelhouse")
    info = write_context(spec, lock, R.render(spec), tmp_path / "ctx")
    ctx = info.path
    assert (ctx / "Dockerfile").read_text() == R.render(spec)["Dockerfile"]
    assert (ctx / "model/weights/weights.bin").is_file()
    assert (ctx / "model/code/handler.py").is_file()
    assert (ctx / "model/code/MAR-INF/MANIFEST.json").is_file()
    assert not (ctx / "model/code/weights.bin").exists()
    runtime = ctx / "mkserve/lib/mkserve/runtime"
    assert (runtime / "__main__.py").is_file() and (runtime / "check.py").is_file()
    assert not list(runtime.rglob("__pycache__"))
    assert not (ctx / "mkserve/lib/mkserve/__init__.py").exists()  # a namespace package
    lock_text = (ctx / "mkserve/requirements.lock").read_text()
    assert "torch==2.13.0+cpu --hash=sha256:" in lock_text
    assert sorted(p.name for p in (ctx / "mkserve/wheels").iterdir()) == [
        "flask-3.1.3-py3-none-any.whl", "torch-2.13.0+cpu-py3-none-any.whl"]
    assert (ctx / "mkserve/model-wheels").is_dir()
    # Readable by any UID, writable by none but root; one fixed mtime (cache hits on rebuild).
    assert stat.S_IMODE((ctx / "model/weights/weights.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((ctx / "model/code/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((ctx / "model/code/MAR-INF").stat().st_mode) == 0o755
    assert (ctx / "model/code/handler.py").stat().st_mtime == DEFAULT_EPOCH
    # The user's wheel files are linked, never modified.
    assert (tmp_path / "wheelhouse/flask-3.1.3-py3-none-any.whl").stat().st_mtime != DEFAULT_EPOCH
    assert info.files == len([p for p in ctx.rglob("*") if p.is_file()])
