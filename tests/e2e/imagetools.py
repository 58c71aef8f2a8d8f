"""Test support for image tests: start the engine, fill a wheelhouse, build and serve images."""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO / ".ci" / "engine.sh"
BASE_IMAGE = "localhost/mkserve-base:bookworm"
SESSION = uuid.uuid4().hex[:8]  # keeps tags apart from other sessions on a shared engine


def parse_exports(text: str) -> dict[str, str]:
    """`export NAME=value` lines (shell-quoted, as `printf %q` writes them) -> {NAME: value}."""
    exports = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    return exports


def engine_answers(docker_host: str) -> bool:
    try:
        import docker

        docker.DockerClient(base_url=docker_host, timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def start_engine() -> tuple[dict[str, str] | None, bool, str]:
    """(exports or None, whether this call started the service, why not)."""
    if not ENGINE_SCRIPT.is_file():
        return None, False, f"{ENGINE_SCRIPT} is missing"
    before = parse_exports(subprocess.run(["bash", str(ENGINE_SCRIPT), "env"],
                                          capture_output=True, text=True, check=False).stdout)
    was_running = bool(before.get("DOCKER_HOST")) and engine_answers(before["DOCKER_HOST"])
    try:
        proc = subprocess.run(["bash", str(ENGINE_SCRIPT), "start"], capture_output=True,
                              text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, False, f"bash .ci/engine.sh start failed: {exc}"
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return None, False, f"bash .ci/engine.sh start exited {proc.returncode}:\n{tail}"
    exports = parse_exports(proc.stdout)
    if "DOCKER_HOST" not in exports:
        return None, False, "bash .ci/engine.sh start printed no DOCKER_HOST"
    return exports, not was_running, ""


def stop_engine() -> None:
    subprocess.run(["bash", str(ENGINE_SCRIPT), "stop"], capture_output=True, text=True,
                   check=False)


def fill_wheelhouse(dest: Path, torch_version: str) -> None:
    """`pip download` the image's packages for cp311 manylinux x86_64, once per session."""
    from mkserve.builder.wheels import Target, runtime_requirements

    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--progress-bar", "off",
           *Target("x86_64", "3.11").pip_args(), f"torch=={torch_version}",
           *runtime_requirements()]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"pip download failed:\n{proc.stdout}\n{proc.stderr}"


@dataclass
class Built:
    tag: str
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Images:
    """Builds through the real CLI and remembers what to remove at the end."""

    wheelhouse: Path
    engine: Any
    tags: list[str] = field(default_factory=list)
    containers: list[Any] = field(default_factory=list)

    def tag(self, name: str) -> str:
        return f"localhost/mkserve-e2e/{name}:{SESSION}"

    def build(self, source: Path | str, name: str, *args: str,
              env: dict[str, str] | None = None) -> Built:
        tag = self.tag(name)
        cmd = [sys.executable, "-m", "mkserve.builder.cli", "build", str(source), "-t", tag,
               "--base-image", BASE_IMAGE, "--wheelhouse", str(self.wheelhouse), *args]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, **(env or {})})
        self.tags.append(tag)
        assert proc.returncode == 0, f"build failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
        return Built(tag, proc.stdout, proc.stderr, time.monotonic() - started)

    @contextlib.contextmanager
    def serve(self, image: str, **run: Any) -> Iterator[tuple[Any, str]]:
        """Run IMAGE with its port published to a free host port; yield (container, url)."""
        from mkserve.builder.run import wait_ready

        container = self.engine.run(image, ports={8080: None}, **run)
        self.containers.append(container)
        try:
            url = f"http://127.0.0.1:{container.host_port(8080)}"
            wait_ready(url, 120, container)
            yield container, url
        finally:
            with contextlib.suppress(Exception):
                container.stop(timeout=10)
            with contextlib.suppress(Exception):
                container.remove()

    def cleanup(self) -> None:
        for container in self.containers:
            with contextlib.suppress(Exception):
                container.remove()
        for tag in self.tags:
            with contextlib.suppress(Exception):
                self.engine.remove(tag)


# -- a local Prometheus image (no registry to pull docker.io/prom/prometheus from) ----------

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
# Laid out like the official prom/prometheus image: binary in /bin, config at
# /etc/prometheus/prometheus.yml (what the rendered compose file mounts), data in
# /prometheus, user nobody. Debian's binary links only against glibc, which the base has;
# its web UI assets and console templates are left out (the HTTP API needs neither).
PROMETHEUS_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown 65534:65534 /prometheus \\
    && /bin/prometheus --version
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


def build_prometheus_image(images: Images, work: Path) -> str:
    """Build (or take from the engine's cache) a Prometheus image from the host's binary.

    Tagged per session and removed with the session's other images by `images.cleanup()`.
    """
    import shutil

    if not PROMETHEUS_BINARY.is_file():
        raise AssertionError(f"{PROMETHEUS_BINARY} is missing: `apt-get install prometheus` "
                             "(.ci/run does)")
    work.mkdir(parents=True, exist_ok=True)
    (work / "Dockerfile").write_text(PROMETHEUS_DOCKERFILE)
    shutil.copy2(PROMETHEUS_BINARY, work / "prometheus")
    tag = images.tag("prometheus")
    images.tags.append(tag)
    images.engine.build(work, [tag], buildargs={}, platform=None, nocache=False,
                        on_event=lambda _event: None)
    return tag


def built_in_session(images: Images, name: str) -> str | None:
    """The tag of image NAME if this session already built it (and the engine still has it)."""
    tag = images.tag(name)
    if tag in images.tags and images.engine.inspect(tag) is not None:
        return tag
    return None
