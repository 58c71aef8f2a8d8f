"""The container engine behind a small interface (build, run, push, inspect, remove).

`DockerEngine` implements it with the Docker SDK against whatever DOCKER_HOST
points to: Docker Engine, or Podman's Docker-compatible service. Tests use
fakes that implement the same protocol.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import labels as L
from .errors import EngineError

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

HOW_TO_CONNECT = (
    "Point DOCKER_HOST at a Docker or Podman engine: Docker listens on "
    "unix:///var/run/docker.sock; for Podman run `podman system service --time=0 "
    "unix:///run/podman/podman.sock &` and `export DOCKER_HOST=unix:///run/podman/podman.sock` "
    "(in mkserve's repository: eval \"$(bash .ci/engine.sh start)\"). Or write the build "
    "context with --context-only DIR and build it with your own tool.")


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows about an image, without starting it."""

    id: str
    tags: tuple[str, ...]
    size: int
    labels: dict[str, str]
    env: dict[str, str]
    entrypoint: tuple[str, ...]
    user: str
    exposed_ports: tuple[str, ...]
    healthcheck: tuple[str, ...]
    layers: tuple[str, ...]  # RootFS diff ids, base first
    history: tuple[tuple[int, str], ...] = field(default=())  # (size, created by), newest first
    created: str = ""
    architecture: str = ""


class Container(Protocol):
    id: str

    def host_port(self, port: int) -> int | None: ...
    def status(self) -> str: ...
    def logs(self, tail: int | None = None) -> str: ...
    def follow_logs(self) -> Iterator[str]: ...
    def stop(self, timeout: float = 10) -> None: ...
    def remove(self) -> None: ...


class Engine(Protocol):
    def build(self, context: Path, tags: Sequence[str], *, buildargs: Mapping[str, str],
              platform: str | None, nocache: bool, on_event: OnEvent) -> str: ...
    def push(self, tag: str, on_event: OnEvent) -> None: ...
    def run(self, image: str, *, ports: Mapping[int, int | None],
            environment: Mapping[str, str] | None = None, name: str | None = None,
            read_only: bool = False, tmpfs: Mapping[str, str] | None = None,
            stop_timeout: int | None = None) -> Container: ...
    def inspect(self, image: str) -> ImageInfo | None: ...
    def remove(self, image: str) -> None: ...
    def stage_images(self) -> int: ...
    def prune_stages(self) -> int: ...


def split_tag(reference: str) -> tuple[str, str]:
    """'reg:5000/team/m:1.0' -> ('reg:5000/team/m', '1.0'); no tag -> 'latest'."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1:]
    return reference, "latest"


def engine_hint(message: str, base_image: str | None = None) -> str:
    """What to do about an engine error, from its message."""
    text = message.lower()
    if base_image and any(s in text for s in ("pull", "manifest unknown", "name unknown",
                                              "short-name", "initializing source",
                                              "no such image", "not found", "resolve")):
        return (f"the engine could not get the base image {base_image}: pull it first "
                f"(docker pull {base_image}) or pass --base-image with an image the engine "
                "already has")
    if "mkserve.runtime.check" in text:
        return ("the handler failed to load inside the image (the step output above says why); "
                "try `mkserve serve SOURCE` locally")
    if "no space left" in text:
        return "the engine ran out of disk: remove unused images (docker/podman system prune)"
    if "unauthorized" in text or "authentication required" in text or "denied" in text:
        return "log in to the registry first (docker login / podman login REGISTRY)"
    return "see the engine output above"


class _DockerContainer:
    def __init__(self, container: Any) -> None:
        self._c = container
        self.id: str = container.id

    def host_port(self, port: int) -> int | None:
        self._c.reload()
        bindings = (self._c.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{port}/tcp") or []
        for binding in bindings:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
        return None

    def status(self) -> str:
        self._c.reload()
        return str(self._c.status)

    def logs(self, tail: int | None = None) -> str:
        raw = self._c.logs(tail=tail if tail is not None else "all")
        return raw.decode("utf-8", "replace")

    def follow_logs(self) -> Iterator[str]:
        for chunk in self._c.logs(stream=True, follow=True):
            yield chunk.decode("utf-8", "replace")

    def stop(self, timeout: float = 10) -> None:
        self._c.stop(timeout=int(timeout))

    def remove(self) -> None:
        self._c.remove(force=True)


class DockerEngine:
    """Engine over the Docker SDK (Docker Engine API, as Docker and Podman serve it)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker.errors
        import requests

        return (docker.errors.DockerException, requests.exceptions.RequestException)

    def build(self, context: Path, tags: Sequence[str], *, buildargs: Mapping[str, str],
              platform: str | None, nocache: bool, on_event: OnEvent) -> str:
        image_id = None
        last_error = None
        try:
            stream = self.client.api.build(
                path=str(context), tag=tags[0] if tags else None, decode=True, rm=True,
                forcerm=True, nocache=nocache, buildargs=dict(buildargs), platform=platform,
                # Never copy proxy settings (and any credentials in them) into build args.
                use_config_proxy=False)
            for event in stream:
                on_event(event)
                if "error" in event or "errorDetail" in event:
                    last_error = (event.get("errorDetail") or {}).get("message") or event.get(
                        "error")
                aux = event.get("aux") or {}
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
                line = event.get("stream", "")
                found = re.match(r"\s*Successfully built ([0-9a-f]+)", line)
                if found:
                    image_id = found.group(1)
        except self._errors() as exc:
            raise EngineError(f"the engine failed the build: {exc}; {engine_hint(str(exc))}"
                              ) from exc
        if last_error or not image_id:
            message = last_error or "the engine reported no image"
            raise EngineError(f"the engine failed the build: {message.strip()}; "
                              f"{engine_hint(message, _base_of(context))}")
        for tag in tags[1:]:
            repo, name = split_tag(tag)
            try:
                self.client.api.tag(image_id, repo, name)
            except self._errors() as exc:
                raise EngineError(f"could not tag {image_id} as {tag}: {exc}") from exc
        return str(image_id)

    def push(self, tag: str, on_event: OnEvent) -> None:
        repo, name = split_tag(tag)
        try:
            for event in self.client.api.push(repo, tag=name, stream=True, decode=True):
                on_event(event)
                if "error" in event or "errorDetail" in event:
                    message = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise EngineError(f"push of {tag} failed: {message}; "
                                      f"{engine_hint(message)}")
        except self._errors() as exc:
            raise EngineError(f"push of {tag} failed: {exc}; {engine_hint(str(exc))}") from exc

    def run(self, image: str, *, ports: Mapping[int, int | None],
            environment: Mapping[str, str] | None = None, name: str | None = None,
            read_only: bool = False, tmpfs: Mapping[str, str] | None = None,
            stop_timeout: int | None = None) -> Container:
        """Create and start a container; one that fails to start is removed again.

        `stop_timeout` is the engine's wait between SIGTERM and SIGKILL on a `docker
        stop` without -t (Podman's Docker API otherwise gives its containers 0: killed
        at once, no drain).
        """
        api = self.client.api
        try:
            host_config = api.create_host_config(
                port_bindings={f"{p}/tcp": h for p, h in ports.items()}, read_only=read_only,
                tmpfs=dict(tmpfs or {}))
            created = api.create_container(
                image, detach=True, name=name, environment=dict(environment or {}),
                ports=[f"{p}/tcp" for p in ports], host_config=host_config,
                stop_timeout=stop_timeout)
        except self._errors() as exc:
            raise EngineError(f"could not start {image}: {exc}; {engine_hint(str(exc))}"
                              ) from exc
        container = self.client.containers.get(created["Id"])
        try:
            container.start()
        except self._errors() as exc:
            container.remove(force=True)  # never leave a "Created" container behind
            text = str(exc)
            if "address already in use" in text.lower():
                taken = ", ".join(str(h) for h in ports.values() if h)
                raise EngineError(f"could not start {image}: port {taken} is already in use "
                                  "on this machine; pass another with --port/-p, or leave it "
                                  "out for a free one") from exc
            raise EngineError(f"could not start {image}: {text}; {engine_hint(text)}") from exc
        return _DockerContainer(container)

    def inspect(self, image: str) -> ImageInfo | None:
        import docker.errors

        try:
            data = self.client.api.inspect_image(image)
            history = self.client.api.history(image)
        except docker.errors.ImageNotFound:
            return None
        except self._errors() as exc:
            raise EngineError(f"could not inspect {image}: {exc}") from exc
        config = data.get("Config") or {}
        env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
        return ImageInfo(
            id=data["Id"], tags=tuple(data.get("RepoTags") or ()), size=int(data.get("Size", 0)),
            labels=dict(config.get("Labels") or {}), env=env,
            entrypoint=tuple(config.get("Entrypoint") or ()), user=config.get("User") or "",
            exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
            healthcheck=tuple((config.get("Healthcheck") or self._libpod_healthcheck(image)
                               or {}).get("Test") or ()),
            layers=tuple((data.get("RootFS") or {}).get("Layers") or ()),
            history=tuple((int(h.get("Size", 0)), str(h.get("CreatedBy", ""))) for h in history),
            created=str(data.get("Created", "")), architecture=str(data.get("Architecture", "")))

    def _libpod_healthcheck(self, image: str) -> dict[str, Any] | None:
        """Podman keeps HEALTHCHECK (docker format) but its compat inspect leaves it out
        (seen with 4.3); its native endpoint on the same socket has it."""
        try:
            response = self.client.api._get(self.client.api._url("/libpod/images/{0}/json",
                                                                 image))
            if response.status_code == 200:
                return response.json().get("Healthcheck")
        except self._errors():
            pass
        return None

    def remove(self, image: str) -> None:
        import docker.errors

        try:
            self.client.api.remove_image(image, force=True)
        except docker.errors.ImageNotFound:
            return
        except self._errors() as exc:
            raise EngineError(f"could not remove {image}: {exc}") from exc


    def stage_images(self) -> int:
        """How many finished mkserve build stages the engine keeps as untagged images (layer
        cache): the leaves of their chains, which no tagged image needs."""
        try:
            found = self.client.api.images(all=True, filters={"label": L.STAGE,
                                                              "dangling": True})
        except self._errors() as exc:
            raise EngineError(f"could not list images: {exc}") from exc
        return sum(1 for image in found if not _tagged(image))

    def prune_stages(self) -> int:
        """Remove untagged stage images; how many. (Not the bytes: Podman's SpaceReclaimed
        adds up every removed image's full size, shared base layers included.)

        Images no container uses and no tag needs; tagged images and the layers they
        share stay. Podman removes a stage's whole chain at once; an engine that removes
        only the leaves (what it calls dangling) gets another pass for their parents.
        """
        removed = 0
        for _ in range(64):  # a stage is a few steps deep; a bound all the same
            try:
                result = self.client.api.prune_images(
                    filters={"dangling": True, "label": L.STAGE})
            except self._errors() as exc:
                raise EngineError(f"could not remove build-stage images: {exc}") from exc
            deleted = [d for d in (result.get("ImagesDeleted") or []) if d.get("Deleted")]
            if not deleted:
                break
            removed += len(deleted)
        return removed


def _tagged(image: Mapping[str, Any]) -> bool:
    return any(tag and tag != "<none>:<none>" for tag in image.get("RepoTags") or [])


def _base_of(context: Path) -> str | None:
    """The FROM image of a context's Dockerfile, to name it in error messages."""
    try:
        for line in (context / "Dockerfile").read_text().splitlines():
            if line.startswith("FROM "):
                return line.split()[1]
    except OSError:
        pass
    return None


def connect(timeout: int = 1800) -> DockerEngine:
    """An engine at DOCKER_HOST (or the default socket), checked with a ping."""
    import docker
    import requests

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is unset)"
    try:
        # The long timeout is per read: a silent build step (pip install) can take minutes.
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        reason = str(exc).split(": ", 1)[-1][:200]
        raise EngineError(f"cannot reach a container engine at {where} ({reason}). "
                          f"{HOW_TO_CONNECT}") from exc
    return DockerEngine(client)
