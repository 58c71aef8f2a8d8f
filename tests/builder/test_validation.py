"""Everything that can fail because of the source or the flags fails before the engine is called."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, make_lock, write_model
from mkserve.builder import build as B
from mkserve.builder import wheels
from mkserve.builder.engine import DockerEngine, connect
from mkserve.builder.errors import EngineError, SourceProblem, UsageError
from mkserve.builder.progress import BuildProgress, summary
from mkserve.builder.spec import BuildRequest, make_spec
from mkserve.runtime.source import open_source

SECRET = "s3cr3t-t0ken"


class Factory:
    """An engine factory that records whether anyone asked for the engine."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.calls = 0

    def __call__(self) -> FakeEngine:
        self.calls += 1
        return self.engine


@pytest.fixture
def no_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Resolve wheels to a fake lock: these tests are about what happens around the engine."""
    lock = make_lock(tmp_path / "fake-wheelhouse")
    monkeypatch.setattr(B, "resolve_wheels", lambda spec, out: lock)


def _break_missing_weights(folder: Path) -> None:
    (folder / "weights.bin").unlink()


def _break_handler_import(folder: Path) -> None:
    (folder / "handler.py").write_text("import mkserve_no_such_module_xyz\n\n"
                                       "def handle(data, context):\n    return data\n")


def _break_handler_syntax(folder: Path) -> None:
    (folder / "handler.py").write_text("def handle(data, context)\n    return data\n")


def _break_handler_init(folder: Path) -> None:
    (folder / "handler.py").write_text("def handle(data, context):\n"
                                       "    raise RuntimeError('weights are corrupt')\n")


def _break_manifest_json(folder: Path) -> None:
    (folder / "MAR-INF" / "MANIFEST.json").write_text("{not json")


def _break_manifest_model(folder: Path) -> None:
    (folder / "MAR-INF" / "MANIFEST.json").write_text('{"runtime": "python"}')


BROKEN = {
    "missing weights file": (_break_missing_weights, "serializedFile 'weights.bin'"),
    "handler does not import": (_break_handler_import, "mkserve_no_such_module_xyz"),
    "handler syntax error": (_break_handler_syntax, "SyntaxError"),
    "handler fails at load": (_break_handler_init, "weights are corrupt (at handler.py line 2)"),
    "manifest is not JSON": (_break_manifest_json, "MANIFEST.json is not valid JSON"),
    "manifest has no model": (_break_manifest_model, 'has no "model" section'),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_source_fails_before_the_engine(case: str, tiny_model: Path,
                                               fake_engine: FakeEngine) -> None:
    breaker, expected = BROKEN[case]
    breaker(tiny_model)
    factory = Factory(fake_engine)
    lines: list[str] = []
    with pytest.raises(SourceProblem) as info:
        B.run_build(BuildRequest(source=str(tiny_model)), lines.append, factory)
    assert expected in str(info.value)
    assert info.value.exit_code == 3
    assert factory.calls == 0 and fake_engine.calls == []


def test_cli_prints_one_line_and_exits_non_zero(tiny_model: Path) -> None:
    _break_handler_import(tiny_model)
    proc = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "build", str(tiny_model)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/engine.sock"})
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "mkserve_no_such_module_xyz" in errors[0]
    assert "Traceback" not in proc.stderr


def test_unreachable_engine_says_how_to_point_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/engine.sock")
    with pytest.raises(EngineError) as info:
        connect()
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "unix:///nonexistent/engine.sock" in message
    assert "DOCKER_HOST" in message and "podman system service" in message
    assert "unix:///var/run/docker.sock" in message and ".ci/engine.sh start" in message


def test_cli_unreachable_engine_exit_code(tiny_model: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkserve.builder.cli", "build", str(tiny_model)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/engine.sock"})
    assert proc.returncode == 4, proc.stderr
    assert "cannot reach a container engine" in proc.stderr and "DOCKER_HOST" in proc.stderr


def test_missing_module_is_left_to_the_image_when_requirements_provide_it(
        tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", extra={"requirements.txt": b"mkserve-tinydep\n"})
    _break_handler_import(folder)
    manifest = folder / "MAR-INF" / "MANIFEST.json"
    manifest.write_text(manifest.read_text().replace(
        '"handler": "handler.py"', '"handler": "handler.py", "requirementsFile": "requirements.txt"'))
    spec = make_spec(BuildRequest(source=str(folder)), open_source(folder), host_torch="2.13.0")
    lines: list[str] = []
    B.check_on_host(spec, lines.append)
    assert any("checked again inside the image" in line for line in lines)


def test_build_then_push_through_the_engine_interface(tiny_model: Path, fake_engine: FakeEngine,
                                                      no_wheels: None) -> None:
    factory = Factory(fake_engine)
    lines: list[str] = []
    result = B.run_build(BuildRequest(source=str(tiny_model), push=True,
                                      tags=("registry.example.com/team/tiny:2.0", "tiny:latest"),
                                      build_args=("HTTP_PROXY=http://proxy:3128",)),
                         lines.append, factory)
    assert factory.calls == 1
    assert [c[0] for c in fake_engine.calls] == ["build", "inspect", "stage_images", "push",
                                                "push"]
    build = fake_engine.calls[0][1]
    assert build["tags"] == ["registry.example.com/team/tiny:2.0", "tiny:latest"]
    assert build["platform"] == "linux/amd64" and build["nocache"] is False
    assert build["buildargs"]["HTTP_PROXY"] == "http://proxy:3128"
    assert "MKSERVE_CREATED" in build["buildargs"]
    assert [c[1] for c in fake_engine.calls[3:]] == list(build["tags"])
    assert isinstance(result, B.BuildResult)
    assert result.pushed == tuple(build["tags"]) and result.size == 123_456_789
    text = summary(result)
    assert "size:  123.5 MB (123456789 bytes)" in text and "pushed: tiny:latest" in text
    assert "100.0 MB  COPY dir in /opt/mkserve/venv" in text
    assert any("step 1/2: FROM base AS deps" in line for line in lines)


def test_index_credentials_never_reach_the_context(tiny_model: Path, fake_engine: FakeEngine,
                                                   no_wheels: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", f"https://ci:{SECRET}@pypi.example.com/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"https://ci:{SECRET}@extra.example.com/simple")
    B.run_build(BuildRequest(source=str(tiny_model)), lambda line: None, Factory(fake_engine))
    files = fake_engine.contexts[0]
    assert "Dockerfile" in files and "mkserve/requirements.lock" in files
    for path, text in files.items():
        assert SECRET not in text and "PIP_INDEX_URL" not in text, path
    assert SECRET not in repr(fake_engine.calls)


def test_lock_resolves_in_isolation_and_fill_uses_the_host_config(
        tiny_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = make_spec(BuildRequest(source=str(tiny_model)), open_source(tiny_model),
                     host_torch="2.13.0+cpu")
    seen: list[list[str]] = []

    def fake_pip(args: list[str], env: Any = None) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution "
                                                        "found for torch==2.13.0+cpu\n")

    monkeypatch.setattr(wheels, "_pip", fake_pip)
    with pytest.raises(wheels.WheelhouseError, match="no wheel of torch==2.13.0\\+cpu"):
        wheels.lock(spec, tmp_path)
    assert "--isolated" in seen[0] and "--no-index" in seen[0]
    assert seen[0][seen[0].index("--platform") + 1] == "manylinux_2_28_x86_64"
    with pytest.raises(wheels.WheelhouseError, match="--torch-index-url"):
        wheels.fill(spec, tmp_path / "wh", lambda line: None)
    assert seen[1][0] == "download" and "--isolated" not in seen[1]
    assert "torch==2.13.0+cpu" in seen[1] and "--only-binary=:all:" in seen[1]


def test_context_only_needs_no_engine(tiny_model: Path, fake_engine: FakeEngine,
                                      no_wheels: None, tmp_path: Path) -> None:
    factory = Factory(fake_engine)
    out = tmp_path / "ctx"
    result = B.run_build(BuildRequest(source=str(tiny_model), context_only=str(out)),
                         lambda line: None, factory)
    assert factory.calls == 0
    assert isinstance(result, B.ContextResult)
    assert (out / "Dockerfile").is_file() and (out / "model/weights/weights.bin").is_file()
    assert any(c.startswith("podman build --format docker") for c in result.commands)
    with pytest.raises(UsageError, match="not empty"):
        B.run_build(BuildRequest(source=str(tiny_model), context_only=str(out)),
                    lambda line: None, factory)


class _FakeApi:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def build(self, **kwargs: Any) -> Any:
        assert kwargs["use_config_proxy"] is False and kwargs["rm"] and kwargs["forcerm"]
        return iter(self.events)


class _FakeClient:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.api = _FakeApi(events)


def test_engine_errors_keep_the_engines_message_and_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM docker.io/library/python:3.11-slim AS deps\n")
    message = ("creating build container: initializing source docker://python:3.11-slim: "
               "pinging container registry registry-1.docker.io: dial tcp: no such host")
    engine = DockerEngine(_FakeClient([{"stream": "STEP 1/3: FROM ...\n"},
                                       {"error": message, "errorDetail": {"message": message}}]))
    with pytest.raises(EngineError) as info:
        engine.build(tmp_path, ["t:1"], buildargs={}, platform=None, nocache=False,
                     on_event=lambda event: None)
    text = str(info.value)
    assert message in text and "--base-image" in text
    assert "docker pull docker.io/library/python:3.11-slim" in text


def test_progress_reads_podman_and_docker_streams() -> None:
    lines: list[str] = []
    progress = BuildProgress(lines.append)
    for chunk in ("[1/2] STEP 1/2: FROM a AS deps\n--> Using cache 0123456789ab\n--> 0123456",
                  "789ab\n[1/2] STEP 2/2: RUN x\nhello\n[2/2] STEP 1/3: FROM a\n"):
        progress({"stream": chunk})
    progress.flush()
    assert progress.steps == 3 and progress.total == 5 and progress.cached == 1
    assert any("stage 1/2 step 2/2: RUN x" in line for line in lines)
    assert any(line.strip() == "hello" for line in lines)
    assert not any("0123456789ab" in line for line in lines)
    docker = BuildProgress(lines.append)
    for text in ("Step 1/9 : FROM a AS deps\n", " ---> Using cache\n", "Step 2/9 : RUN y\n"):
        docker({"stream": text})
    assert (docker.steps, docker.total, docker.cached) == (2, 9, 1)
