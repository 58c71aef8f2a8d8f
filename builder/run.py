"""`mkserve run` and `mkserve predict`: start a built image, wait until it is ready, call it."""
from __future__ import annotations

import json
import math
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mkserve.runtime import routes
from mkserve.runtime.settings import BY_NAME

from . import labels as L
from .engine import Container, Engine
from .errors import EngineError, MkserveError, UsageError
from .spec import key_value

Out = Callable[[str], None]


@dataclass(frozen=True)
class Started:
    container: Container
    url: str
    model: str
    port: int
    stop_timeout: int


def env_pairs(items: list[str]) -> dict[str, str]:
    """`-e NAME=VALUE` options (run, bench) as a mapping."""
    pairs = {}
    for item in items:
        pair = key_value(item)
        if pair is None:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        pairs[pair[0]] = pair[1]
    return pairs


def http(method: str, url: str, body: bytes | None = None,
         headers: Mapping[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes, str]:
    """(status, body, content type); HTTP errors are answers here, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def wait_ready(url: str, timeout: float, container: Container | None = None) -> None:
    """Poll /readyz until 200; fail early with the container's log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, _ = http("GET", url + routes.READINESS, timeout=2)
            if status == 200:
                return
        except OSError:
            pass  # not listening yet
        if container is not None and container.status() in ("exited", "dead"):
            raise EngineError("the container exited before it was ready; its last log lines:\n"
                              + container.logs(tail=20).rstrip())
        time.sleep(0.25)
    tail = ("; its last log lines:\n" + container.logs(tail=20).rstrip()) if container else ""
    raise EngineError(f"{url}{routes.READINESS} did not answer 200 within {timeout:g}s{tail}")


# What `docker stop` waits past the runtime's graceful timeout before it kills: the
# master's own shutdown after the workers have drained.
STOP_MARGIN_S = 4


def stop_timeout(labels: Mapping[str, str], env: Mapping[str, str]) -> int:
    """Seconds between SIGTERM and SIGKILL that cover the image's drain."""
    setting = BY_NAME["graceful_timeout_s"]
    graceful = (env.get(setting.env) or labels.get(L.GRACEFUL_TIMEOUT_S)
                or str(setting.default))
    try:
        return math.ceil(float(graceful)) + STOP_MARGIN_S
    except ValueError:
        raise UsageError(f"{setting.env}={graceful!r}: expected seconds") from None


def start(engine: Engine, image: str, host_port: int | None = None,
          environment: Mapping[str, str] | None = None, read_only: bool = False,
          name: str | None = None) -> Started:
    """Run IMAGE with its serving port published; return once /readyz says 200."""
    info = engine.inspect(image)
    if info is None:
        raise UsageError(f"the engine has no image {image}; build one with `mkserve build`")
    labels = info.labels
    env = dict(environment or {})
    exposed = [int(p.split("/")[0]) for p in info.exposed_ports]
    port = int(env.get("PORT") or labels.get(L.PORT) or (exposed[0] if exposed else 8080))
    ports: dict[int, int | None] = {port: host_port}
    http_port = port
    protocol = env.get(BY_NAME["protocol"].env) or labels.get(L.SETTING_LABELS["protocol"])
    if protocol == "grpc":  # gRPC on the serving port; /readyz (and the HTTP APIs) beside it
        http_port = int(env.get(BY_NAME["http_port"].env)
                        or labels.get(L.SETTING_LABELS["http_port"]) or 8081)
        ports[http_port] = None
    waits = stop_timeout(labels, env)
    container = engine.run(image, ports=ports, environment=env, name=name,
                           read_only=read_only, tmpfs={"/tmp": "rw,mode=1777"} if read_only
                           else None, stop_timeout=waits)
    try:
        published = container.host_port(http_port)
        if published is None:
            raise EngineError(f"the engine did not publish port {http_port} of {image}")
        url = f"http://127.0.0.1:{published}"
        timeout = float(labels.get(L.STARTUP_TIMEOUT_S) or 300) + 30
        wait_ready(url, timeout, container)
    except BaseException:
        container.remove()
        raise
    return Started(container, url, labels.get(L.MODEL_NAME) or "", port, waits)


def run(engine: Engine, image: str, host_port: int | None, detach: bool, out: Out,
        environment: Mapping[str, str] | None = None, read_only: bool = False) -> Started:
    """`mkserve run`: start, print where it listens, then follow logs until Ctrl-C."""
    out(f"starting {image} ...")
    started = start(engine, image, host_port, environment, read_only)
    out(f"ready: {started.url}  (POST {started.url}{routes.predictions(started.model)})")
    if detach:
        out(f"container {started.container.id[:12]} keeps running; stop it with "
            f"`docker stop {started.container.id[:12]}`")
        return started
    out("following its log; Ctrl-C stops and removes it")
    try:
        for chunk in started.container.follow_logs():
            sys.stderr.write(chunk)
    except KeyboardInterrupt:
        pass
    finally:
        out("stopping ...")
        started.container.stop(timeout=started.stop_timeout)
        started.container.remove()
    return started


HOST_PORT = re.compile(r"(localhost|\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|"
                       r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+):\d{1,5}")


def server_url(target: str) -> str | None:
    """The URL of a server named as http(s)://... or HOST:PORT; None for an image."""
    if target.startswith(("http://", "https://")):
        return target.rstrip("/")
    if HOST_PORT.fullmatch(target):
        return f"http://{target}"
    return None


def host_port(text: str | None) -> int | None:
    """`-p 8080` or docker's `-p 8080:8080`: the host port to publish on."""
    if text is None:
        return None
    host, _, _container = text.partition(":")
    if not host.isdigit() or not 0 < int(host) < 65536 or (_container and not
                                                          _container.isdigit()):
        raise UsageError(f"--port {text}: expected a port (8080) or HOST:CONTAINER (8080:8080)")
    return int(host)


def read_data(data: str) -> bytes:
    """`@file`, `-` (stdin) or the literal text."""
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        path = Path(data[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--data {data}: cannot read {path} ({exc.strerror})") from exc
    return data.encode("utf-8")


def content_type_of(body: bytes) -> str:
    try:
        json.loads(body)
        return "application/json"
    except ValueError:
        return "application/octet-stream"


def model_at(url: str) -> str:
    """The model a server serves, from its /readyz answer."""
    status, body, _ = http("GET", url + routes.READINESS, timeout=10)
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        model = None
    if status != 200 or not model:
        raise MkserveError(f"{url} is not a ready mkserve server ({routes.READINESS} answered "
                           f"{status}); pass --model NAME if it serves one")
    return str(model)


def predict_url(url: str, body: bytes, model: str | None = None,
                content_type: str | None = None) -> tuple[int, str]:
    url = url.rstrip("/")
    name = model or model_at(url)
    status, answer, _ = http("POST", url + routes.predictions(name), body,
                             {"Content-Type": content_type or content_type_of(body)})
    text = answer.decode("utf-8", "replace")
    try:
        text = json.dumps(json.loads(text), indent=2)
    except ValueError:
        pass
    return status, text


def predict(target: str, body: bytes, engine_factory: Callable[[], Engine],
            model: str | None = None, content_type: str | None = None, out: Out = print,
            ) -> tuple[int, str]:
    """One request to a URL, or to IMAGE in a throw-away container."""
    url = server_url(target)
    if url is not None:
        try:
            return predict_url(url, body, model, content_type)
        except urllib.error.URLError as exc:
            raise MkserveError(f"nothing is listening at {url} ({exc.reason}); start a "
                               "server with `mkserve serve MODEL` or `mkserve run IMAGE`, or "
                               "check the host and port") from None
        except OSError as exc:
            raise MkserveError(f"no answer from {url} ({exc}); check the host and port"
                               ) from None
    engine = engine_factory()
    out(f"starting {target} for one request ...")
    started = start(engine, target)
    try:
        return predict_url(started.url, body, model or started.model, content_type)
    finally:
        started.container.stop(timeout=started.stop_timeout)
        started.container.remove()
